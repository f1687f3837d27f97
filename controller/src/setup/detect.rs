//! Step 1 of `mugge setup`: what the box looks like now. Reads files under the root only, so it
//! works on a fixture tree and on an image that is not booted.

use std::path::{Path, PathBuf};

use super::root::{self, Root, User};

/// Groups the audio user needs: sound devices, DRM/GPU (HDMI audio, render nodes), input events.
pub const GROUPS: [&str; 4] = ["audio", "video", "render", "input"];

/// Packages a headless user session needs. `dbus-user-session` gives the user manager its own
/// session bus, without which lingering starts units that cannot reach D-Bus.
pub const PACKAGES: [&str; 5] = [
    "pipewire",
    "pipewire-pulse",
    "wireplumber",
    "dbus-user-session",
    "pulseaudio-utils",
];

/// Where system units live; anything running audio here is a system-mode audio stack.
const SYSTEM_UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Programs that make a system unit an audio unit.
const AUDIO_PROGRAMS: [&str; 5] = [
    "pipewire",
    "pipewire-pulse",
    "wireplumber",
    "pipewire-media-session",
    "mugge",
];

/// A system-manager unit that runs audio.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemUnit {
    pub name: String,
    /// The unit file, as an absolute system path.
    pub path: PathBuf,
    /// Pulled in by a `.wants/` or `.requires/` link under /etc/systemd/system.
    pub enabled: bool,
}

/// A line that names `/run/pipewire`, the socket directory of a system-mode daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub path: PathBuf,
    /// One-based.
    pub line: usize,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub user: Option<User>,
    /// Required groups that do not exist at all.
    pub missing_groups: Vec<String>,
    /// Required groups (existing or not) the user is not in.
    pub groups_without_user: Vec<String>,
    pub linger: bool,
    pub system_units: Vec<SystemUnit>,
    pub run_pipewire_refs: Vec<Reference>,
    /// `None` when the root has no dpkg database.
    pub missing_packages: Option<Vec<String>>,
}

pub fn detect(root: &Root, user_name: &str) -> State {
    let user = root::find_user(root, user_name);
    let mut missing_groups = Vec::new();
    let mut groups_without_user = Vec::new();
    for g in GROUPS {
        match root::find_group(root, g) {
            None => {
                missing_groups.push(g.to_string());
                groups_without_user.push(g.to_string());
            }
            Some(group) => {
                if !user.as_ref().is_some_and(|u| root::is_member(&group, u)) {
                    groups_without_user.push(g.to_string());
                }
            }
        }
    }
    let linger = root
        .join(format!("/var/lib/systemd/linger/{user_name}"))
        .exists();
    let missing_packages = root::installed_packages(root).map(|installed| {
        PACKAGES
            .iter()
            .filter(|p| !installed.iter().any(|i| i == *p))
            .map(|p| p.to_string())
            .collect()
    });
    State {
        system_units: system_audio_units(root),
        run_pipewire_refs: run_pipewire_references(root, user.as_ref()),
        user,
        missing_groups,
        groups_without_user,
        linger,
        missing_packages,
    }
}

fn system_audio_units(root: &Root) -> Vec<SystemUnit> {
    let enabled = enabled_system_units(root);
    let mut units: Vec<SystemUnit> = Vec::new();
    for dir in SYSTEM_UNIT_DIRS {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".service") || n.ends_with(".socket"))
            .collect();
        names.sort();
        for name in names {
            // The first directory in the search path wins, as in systemd.
            if units.iter().any(|u| u.name == name) {
                continue;
            }
            let abs = Path::new(dir).join(&name);
            let text = root.read(&abs).unwrap_or_default();
            if is_audio_unit(&name, &text) {
                units.push(SystemUnit {
                    enabled: enabled.contains(&name),
                    name,
                    path: abs,
                });
            }
        }
    }
    units
}

/// A unit is an audio unit when its name says so or one of its `Exec*=` lines runs an audio
/// daemon (whatever the unit is called: the previous attempt hid one in `media-bridge-*`).
pub fn is_audio_unit(name: &str, text: &str) -> bool {
    if name.starts_with("pipewire") || name.starts_with("wireplumber") {
        return true;
    }
    text.lines().any(|l| {
        let l = l.trim();
        let Some((key, value)) = l.split_once('=') else {
            return false;
        };
        if !key.trim().starts_with("Exec") {
            return false;
        }
        // Strip systemd's exec prefixes (`-`, `@`, `+`, `!`, `:`) before the program path.
        let program = value
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_start_matches(['-', '@', '+', '!', ':']);
        let base = program.rsplit('/').next().unwrap_or(program);
        AUDIO_PROGRAMS.contains(&base)
    })
}

/// Unit names linked from `/etc/systemd/system/*.wants/` and `*.requires/`. Masks (links to
/// /dev/null directly in the directory) are not enables.
fn enabled_system_units(root: &Root) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root.join("/etc/systemd/system")) else {
        return out;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !(n.ends_with(".wants") || n.ends_with(".requires")) {
            continue;
        }
        if let Ok(links) = std::fs::read_dir(e.path()) {
            out.extend(
                links
                    .flatten()
                    .map(|l| l.file_name().to_string_lossy().into_owned()),
            );
        }
    }
    out
}

/// Places where a helper script or unit could point clients at a system-mode socket.
fn reference_roots(user: Option<&User>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = [
        "/etc/systemd/system",
        "/etc/systemd/user",
        "/usr/local/lib/systemd",
        "/usr/local/bin",
        "/usr/local/sbin",
        "/etc/default",
        "/etc/profile.d",
        "/etc/environment",
        "/etc/environment.d",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    if let Some(u) = user {
        for rel in [
            ".config/systemd/user",
            ".config/environment.d",
            ".profile",
            ".bashrc",
            ".pam_environment",
        ] {
            dirs.push(u.home.join(rel));
        }
    }
    dirs
}

fn run_pipewire_references(root: &Root, user: Option<&User>) -> Vec<Reference> {
    let mut refs = Vec::new();
    for abs in reference_roots(user) {
        scan(root, &abs, 0, &mut refs);
    }
    refs
}

const MAX_DEPTH: usize = 4;
const MAX_FILE_BYTES: u64 = 512 * 1024;

fn scan(root: &Root, abs: &Path, depth: usize, out: &mut Vec<Reference>) {
    let real = root.join(abs);
    // symlink_metadata: a `.wants/` link is the unit it points to, scanned where it lives.
    let Ok(meta) = std::fs::symlink_metadata(&real) else {
        return;
    };
    if meta.is_dir() && depth < MAX_DEPTH {
        let Ok(entries) = std::fs::read_dir(&real) else {
            return;
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            scan(root, &abs.join(n), depth + 1, out);
        }
    } else if meta.is_file() && meta.len() <= MAX_FILE_BYTES {
        let Some(text) = root.read(abs) else {
            return;
        };
        for (i, line) in text.lines().enumerate() {
            if mentions_run_pipewire(line) {
                out.push(Reference {
                    path: abs.to_path_buf(),
                    line: i + 1,
                    text: line.trim().to_string(),
                });
            }
        }
    }
}

/// Any mention counts, `/var/run/pipewire` included (a symlink to the same place); the per-user
/// socket `/run/user/<uid>/pipewire-0` never contains this string.
pub fn mentions_run_pipewire(line: &str) -> bool {
    line.contains("/run/pipewire")
}
