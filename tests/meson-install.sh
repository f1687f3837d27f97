#!/bin/sh
# Installs mugge with meson twice, into temporary roots, and checks every file lands where a
# distro package puts it:
#   1. --prefix=<tmp>/prefix          (a self-contained prefix; units verified with systemd-analyze)
#   2. --prefix=/usr + DESTDIR=<tmp>  (a package build; paths inside files must not contain DESTDIR)
# Cargo reuses $CARGO_TARGET_DIR (default: the workspace's target/) so nothing is rebuilt needlessly.
# Exit status 0 only when every check passed.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$src/target}
tmp=$(mktemp -d /tmp/mugge-meson-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0

check() { # check <description> <command...>
    desc=$1; shift
    if "$@" >/dev/null 2>&1; then echo "ok   $desc"; else echo "FAIL $desc"; fails=$((fails + 1)); fi
}
has_line() { grep -qxF -- "$2" "$1"; }
is_elf() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

plugindir=$(pkg-config --variable=plugindir libspa-0.2)      # e.g. /usr/lib/<triplet>/spa-0.2
relplugindir=${plugindir#/usr/}                             # lib/<triplet>/spa-0.2
userunitdir=$(pkg-config --variable=systemduserunitdir systemd 2>/dev/null || echo /usr/lib/systemd/user)
reluserunitdir=${userunitdir#/usr/}

# The files both installs must contain, relative to the prefix; etc/ is the sysconfdir.
expected() {
    cat <<LIST
bin/mugge
$relplugindir/mugge/libspa-mugge.so
share/pipewire/pipewire.conf.d/60-mugge-virtual-devices.conf
share/wireplumber/wireplumber.conf.d/50-mugge-profile.conf
share/wireplumber/wireplumber.conf.d/51-mugge-hardware.conf
share/wireplumber/wireplumber.conf.d/52-mugge-settings.conf
$reluserunitdir/mugge-controller.service
$reluserunitdir/mugge-filters.service
share/dbus-1/services/org.mugge.Controller.service
share/mugge/pipewire/pipewire-headless.conf
share/mugge/pipewire/mock-hardware.conf
LIST
    [ -f "$src/docs/deployment.md" ] && echo share/doc/mugge/deployment.md
    for d in profiles speakers; do
        [ -d "$src/conf/$d" ] && (cd "$src/conf" && find "$d" -type f | sed 's#^#share/mugge/#')
    done
    true
}

check_tree() { # check_tree <prefix-as-seen> <sysconfdir-as-seen> <prefix-inside-files>
    p=$1 etc=$2 inside=$3
    expected | while read -r f; do
        check "installed $f" test -f "$p/$f" || true
    done
    check "installed etc/security/limits.d/95-mugge-audio.conf" test -f "$etc/security/limits.d/95-mugge-audio.conf"
    check "bin/mugge is an executable ELF" sh -c "test -x '$p/bin/mugge' && head -c4 '$p/bin/mugge' | grep -q ELF"
    check "plugin is an ELF shared object" is_elf "$p/$relplugindir/mugge/libspa-mugge.so"
    check "plugin carries PipeWire's name, not cargo's" test ! -e "$p/$relplugindir/mugge/libspa_mugge.so"
    check "controller unit runs $inside/bin/mugge" has_line "$p/$reluserunitdir/mugge-controller.service" "ExecStart=$inside/bin/mugge daemon"
    check "D-Bus service execs $inside/bin/mugge" has_line "$p/share/dbus-1/services/org.mugge.Controller.service" "Exec=$inside/bin/mugge daemon"
    check "D-Bus service hands over to systemd" has_line "$p/share/dbus-1/services/org.mugge.Controller.service" "SystemdService=mugge-controller.service"
    check "no unsubstituted @var@ left" sh -c "! grep -rq '@[a-z_]*@' '$p/$reluserunitdir' '$p/share/dbus-1'"
    check "units have no User=, XDG_RUNTIME_DIR or ExecStartPost directive" sh -c \
        "! grep -hv '^#' '$p/$reluserunitdir'/mugge-*.service | grep -qE '^(User=|Environment=.*XDG_RUNTIME_DIR|ExecStartPost=)'"
}

# Every "Installing <src> to <dir>" line of a meson install log must name a dir under <root>.
only_under() { # only_under <install-log> <root>
    grep -q '^Installing ' "$1" && ! grep '^Installing ' "$1" | sed 's/.* to //' | grep -v "^$2/"
}

echo "== 1. --prefix=$tmp/prefix"
meson setup "$tmp/b1" --prefix="$tmp/prefix" -Dcargo_target_dir="$target" >"$tmp/setup1.log" 2>&1 ||
    { cat "$tmp/setup1.log"; exit 1; }
meson compile -C "$tmp/b1" >"$tmp/compile1.log" 2>&1 || { cat "$tmp/compile1.log"; exit 1; }
meson install -C "$tmp/b1" >"$tmp/install1.log" 2>&1 || { cat "$tmp/install1.log"; exit 1; }
(cd "$tmp/prefix" && find . -type f | sort)
check_tree "$tmp/prefix" "$tmp/prefix/etc" "$tmp/prefix" | tee "$tmp/r1"
check "nothing installed outside the prefix" only_under "$tmp/install1.log" "$tmp/prefix" | tee -a "$tmp/r1"
mkdir -m 700 "$tmp/run"
for u in mugge-controller mugge-filters; do
    unit="$tmp/prefix/$reluserunitdir/$u.service"
    # verify exits 0 on parse warnings, so any output at all is a failure.
    check "systemd-analyze verify --user $u.service (no output)" sh -c \
        "out=\$(XDG_RUNTIME_DIR='$tmp/run' systemd-analyze verify --user '$unit' 2>&1) && [ -z \"\$out\" ] || { echo \"\$out\" >&2; exit 1; }" | tee -a "$tmp/r1"
done

echo "== 2. --prefix=/usr DESTDIR=$tmp/dest"
meson setup "$tmp/b2" --prefix=/usr -Dcargo_target_dir="$target" >"$tmp/setup2.log" 2>&1 ||
    { cat "$tmp/setup2.log"; exit 1; }
meson compile -C "$tmp/b2" >"$tmp/compile2.log" 2>&1 || { cat "$tmp/compile2.log"; exit 1; }
DESTDIR="$tmp/dest" meson install -C "$tmp/b2" >"$tmp/install2.log" 2>&1 || { cat "$tmp/install2.log"; exit 1; }
(cd "$tmp/dest" && find . -type f | sort)
check_tree "$tmp/dest/usr" "$tmp/dest/etc" /usr | tee "$tmp/r2"
check "plugin at the plugindir libspa-0.2.pc reports" test -f "$tmp/dest$plugindir/mugge/libspa-mugge.so" | tee -a "$tmp/r2"
check "no DESTDIR inside installed files" sh -c "! grep -rqF '$tmp/dest' '$tmp/dest'" | tee -a "$tmp/r2"
check "nothing installed outside DESTDIR" only_under "$tmp/install2.log" "$tmp/dest" | tee -a "$tmp/r2"

failed=$(cat "$tmp/r1" "$tmp/r2" | grep -c '^FAIL' || true)
passed=$(cat "$tmp/r1" "$tmp/r2" | grep -c '^ok' || true)
echo "meson-install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
