//! Fixture trees: a temporary root with just the files detection reads.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A temporary directory removed on drop.
pub struct TempRoot(pub PathBuf);

impl TempRoot {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mugge-setup-test-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn write(&self, abs: &str, text: &str) {
        let p = self.0.join(abs.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn link(&self, abs: &str, target: &str) {
        let p = self.0.join(abs.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    pub fn mkdir(&self, abs: &str) {
        std::fs::create_dir_all(self.0.join(abs.trim_start_matches('/'))).unwrap();
    }

    pub fn exists(&self, abs: &str) -> bool {
        std::fs::symlink_metadata(self.0.join(abs.trim_start_matches('/'))).is_ok()
    }

    pub fn read(&self, abs: &str) -> String {
        std::fs::read_to_string(self.0.join(abs.trim_start_matches('/'))).unwrap()
    }

    /// Every path with its kind, contents or link target, mode and owner: two equal snapshots
    /// mean two identical trees as far as anything here can tell.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        walk(&self.0, &self.0, &mut out);
        out
    }
}

fn walk(base: &Path, p: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let m = std::fs::symlink_metadata(p).unwrap();
    let rel = p.strip_prefix(base).unwrap().to_path_buf();
    let own = format!(
        "{:o} {}:{}",
        m.permissions().mode() & 0o7777,
        m.uid(),
        m.gid()
    );
    if m.file_type().is_symlink() {
        out.insert(
            rel,
            format!("link -> {}", std::fs::read_link(p).unwrap().display()),
        );
    } else if m.is_dir() {
        out.insert(rel, format!("dir {own}"));
        for e in std::fs::read_dir(p).unwrap() {
            walk(base, &e.unwrap().path(), out);
        }
    } else {
        let text = String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
        out.insert(rel, format!("file {own}\n{text}"));
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
pi:x:1000:1000:,,,:/home/pi:/bin/bash\n";

pub const GROUP: &str = "root:x:0:\n\
audio:x:29:pi\n\
video:x:44:pi\n\
input:x:101:\n\
pi:x:1000:\n";

fn dpkg_stanza(pkg: &str) -> String {
    format!("Package: {pkg}\nStatus: install ok installed\nVersion: 1\n\n")
}

/// A freshly flashed image: a login user `pi`, no `render` group, no audio user, pipewire and
/// wireplumber installed (their user units enabled globally, as Debian does) but no
/// pipewire-pulse, pulseaudio-utils or dbus-user-session.
pub fn fresh_image(tag: &str) -> TempRoot {
    let r = TempRoot::new(tag);
    r.write("/etc/passwd", PASSWD);
    r.write("/etc/group", GROUP);
    let status: String = ["base-files", "pipewire", "wireplumber", "dbus"]
        .iter()
        .map(|p| dpkg_stanza(p))
        .collect();
    r.write("/var/lib/dpkg/status", &status);
    r.write(
        "/usr/lib/systemd/user/pipewire.socket",
        "[Socket]\nListenStream=%t/pipewire-0\n",
    );
    r.write(
        "/usr/lib/systemd/user/pipewire.service",
        "[Service]\nExecStart=/usr/bin/pipewire\n",
    );
    r.write(
        "/usr/lib/systemd/user/wireplumber.service",
        "[Service]\nExecStart=/usr/bin/wireplumber\n[Install]\nWantedBy=pipewire.service\n",
    );
    r.link(
        "/etc/systemd/user/sockets.target.wants/pipewire.socket",
        "/usr/lib/systemd/user/pipewire.socket",
    );
    r.mkdir("/home/pi");
    // logind's state directory exists on a booted image; it keeps it after disable-linger.
    r.mkdir("/var/lib/systemd/linger");
    r.write(
        "/home/pi/.profile",
        "# per-user socket, not a system one\nexport PULSE_SERVER=unix:/run/user/1000/pulse/native\n",
    );
    r
}

/// The box the previous attempt left: a system-mode PipeWire unit (enabled and running), a
/// `User=` system unit exporting `XDG_RUNTIME_DIR=/run/pipewire`, a helper script bind-mounting
/// the socket, and a masked unit (which must not count as enabled).
pub fn legacy_box(tag: &str) -> TempRoot {
    let r = fresh_image(tag);
    r.write(
        "/etc/systemd/system/pipewire-system.service",
        "[Unit]\nDescription=PipeWire system\n[Service]\nExecStart=/usr/bin/pipewire\n\
         Environment=PIPEWIRE_RUNTIME_DIR=/run/pipewire\n[Install]\nWantedBy=multi-user.target\n",
    );
    r.link(
        "/etc/systemd/system/multi-user.target.wants/pipewire-system.service",
        "/etc/systemd/system/pipewire-system.service",
    );
    r.write(
        "/etc/systemd/system/media-bridge-intercom.service",
        "[Service]\nUser=mediabridge\nEnvironment=XDG_RUNTIME_DIR=/run/pipewire\n\
         ExecStart=-/usr/local/bin/media-bridge-intercom-launcher\n\
         ExecStartPost=/bin/systemctl restart wireplumber-system\n[Install]\nWantedBy=multi-user.target\n",
    );
    r.write(
        "/usr/lib/systemd/system/wireplumber-system.service",
        "[Service]\nExecStart=/usr/bin/wireplumber\n[Install]\nWantedBy=multi-user.target\n",
    );
    r.link(
        "/etc/systemd/system/multi-user.target.wants/wireplumber-system.service",
        "/usr/lib/systemd/system/wireplumber-system.service",
    );
    r.link(
        "/etc/systemd/system/pipewire-pulse-system.service",
        "/dev/null",
    );
    r.write(
        "/usr/local/bin/media-bridge-intercom-launcher",
        "#!/bin/sh\nmount --bind /run/user/1001/pipewire-0 /run/pipewire/pipewire-0\nexec chromium\n",
    );
    r
}
