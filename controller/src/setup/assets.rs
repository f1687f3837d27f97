//! The files `mugge setup` installs, embedded at build time so the tool is self-contained (the
//! same sources meson installs into the distro directories).

use std::path::{Path, PathBuf};

pub const WIREPLUMBER_FRAGMENTS: [(&str, &str); 3] = [
    (
        "50-mugge-profile.conf",
        include_str!("../../../wireplumber/50-mugge-profile.conf"),
    ),
    (
        "51-mugge-hardware.conf",
        include_str!("../../../wireplumber/51-mugge-hardware.conf"),
    ),
    (
        "52-mugge-settings.conf",
        include_str!("../../../wireplumber/52-mugge-settings.conf"),
    ),
];

pub const PIPEWIRE_FRAGMENTS: [(&str, &str); 1] = [(
    "60-mugge-virtual-devices.conf",
    include_str!("../../../conf/pipewire.conf.d/60-mugge-virtual-devices.conf"),
)];

const CONTROLLER_UNIT: &str = include_str!("../../../conf/systemd/mugge-controller.service.in");
const FILTERS_UNIT: &str = include_str!("../../../conf/systemd/mugge-filters.service.in");
const DBUS_SERVICE: &str = include_str!("../../../conf/dbus/org.mugge.Controller.service.in");
const LIMITS: &str = include_str!("../../../conf/limits.d/95-mugge-audio.conf");

/// mugge's own user units, enabled into `default.target`.
pub const MUGGE_UNITS: [&str; 2] = ["mugge-controller.service", "mugge-filters.service"];

pub const LIMITS_PATH: &str = "/etc/security/limits.d/95-mugge-audio.conf";

/// Where the installed unit files find things.
#[derive(Clone, Debug)]
pub struct Paths {
    pub bindir: PathBuf,
    pub docdir: PathBuf,
    pub pipewire: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            bindir: PathBuf::from("/usr/bin"),
            docdir: PathBuf::from("/usr/share/doc/mugge"),
            pipewire: PathBuf::from("/usr/bin/pipewire"),
        }
    }
}

fn substitute(template: &str, p: &Paths) -> String {
    template
        .replace("@bindir@", &p.bindir.to_string_lossy())
        .replace("@docdir@", &p.docdir.to_string_lossy())
        .replace("@pipewire@", &p.pipewire.to_string_lossy())
}

/// A file to install and who owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asset {
    /// Absolute system path.
    pub path: PathBuf,
    pub contents: String,
    pub mode: u32,
    /// Owned by the audio user (files in its home) rather than root.
    pub user_owned: bool,
}

/// Every file for the audio user whose home is `home`.
pub fn assets(home: &Path, paths: &Paths) -> Vec<Asset> {
    let user_file = |rel: &str, contents: String| Asset {
        path: home.join(rel),
        contents,
        mode: 0o644,
        user_owned: true,
    };
    let mut out = vec![Asset {
        path: PathBuf::from(LIMITS_PATH),
        contents: LIMITS.to_string(),
        mode: 0o644,
        user_owned: false,
    }];
    for (name, text) in WIREPLUMBER_FRAGMENTS {
        out.push(user_file(
            &format!(".config/wireplumber/wireplumber.conf.d/{name}"),
            text.to_string(),
        ));
    }
    for (name, text) in PIPEWIRE_FRAGMENTS {
        out.push(user_file(
            &format!(".config/pipewire/pipewire.conf.d/{name}"),
            text.to_string(),
        ));
    }
    out.push(user_file(
        ".config/systemd/user/mugge-controller.service",
        substitute(CONTROLLER_UNIT, paths),
    ));
    out.push(user_file(
        ".config/systemd/user/mugge-filters.service",
        substitute(FILTERS_UNIT, paths),
    ));
    out.push(user_file(
        ".local/share/dbus-1/services/org.mugge.Controller.service",
        substitute(DBUS_SERVICE, paths),
    ));
    out
}

/// A `.wants/` link, i.e. what `systemctl --user enable` would create, made as a file so it works
/// before the user manager ever ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enable {
    pub link: PathBuf,
    pub target: PathBuf,
}

/// The audio stack's own user units, as Debian's packages install them. Debian enables them
/// globally (`/etc/systemd/user/*.wants/`); when that link is missing the user gets its own.
pub const STACK_ENABLES: [(&str, &str); 3] = [
    ("sockets.target.wants", "pipewire.socket"),
    ("sockets.target.wants", "pipewire-pulse.socket"),
    ("pipewire.service.wants", "wireplumber.service"),
];

pub const USER_UNIT_DIR: &str = "/usr/lib/systemd/user";
pub const GLOBAL_USER_CONF: &str = "/etc/systemd/user";

pub fn mugge_enables(home: &Path) -> Vec<Enable> {
    MUGGE_UNITS
        .iter()
        .map(|u| Enable {
            link: home.join(format!(".config/systemd/user/default.target.wants/{u}")),
            target: home.join(format!(".config/systemd/user/{u}")),
        })
        .collect()
}
