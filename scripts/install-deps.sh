#!/usr/bin/env bash
# Installs the system packages mugge needs to build, test and demo. Idempotent: a second run only
# checks and returns. Debian 12 gets PipeWire 1.4 / WirePlumber 0.5 from bookworm-backports;
# Debian 13 has them in its main suite.
set -euo pipefail

need_pkgs=(pipewire pipewire-bin wireplumber libpipewire-0.3-dev libspa-0.2-dev
           pipewire-alsa dbus-daemon pkg-config clang libclang-dev meson ninja-build
           systemd util-linux)

missing=()
for p in "${need_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

pw_ok() {
  command -v pipewire >/dev/null 2>&1 || return 1
  local v
  v=$(pipewire --version 2>/dev/null | sed -n 's/.*libpipewire \([0-9.]*\).*/\1/p' | head -n1)
  dpkg --compare-versions "${v:-0}" ge 1.4
}

if [ ${#missing[@]} -eq 0 ] && pw_ok; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]:-pipewire>=1.4}); run as root" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
target=()
if [ "$codename" = bookworm ]; then
  list=/etc/apt/sources.list.d/bookworm-backports.list
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" > "$list"
  fi
  target=(-t bookworm-backports)
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${target[@]}" \
  pipewire pipewire-bin wireplumber libpipewire-0.3-dev libspa-0.2-dev pipewire-alsa
apt-get install -y -qq --no-install-recommends dbus-daemon pkg-config clang libclang-dev \
  meson ninja-build systemd util-linux
pw_ok || { echo "install-deps: PipeWire >= 1.4 not available after install" >&2; exit 1; }
