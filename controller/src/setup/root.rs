//! The directory tree `mugge setup` acts on: `/` on a real box, a fixture tree in tests. Every
//! file path the tool touches is an absolute system path joined onto this root.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    pub fn is_live(&self) -> bool {
        self.0 == Path::new("/")
    }

    /// `/etc/passwd` under this root.
    pub fn join(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.0.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    pub fn read(&self, abs: impl AsRef<Path>) -> Option<String> {
        std::fs::read(self.join(abs))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

/// One line of `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

pub fn find_user(root: &Root, name: &str) -> Option<User> {
    root.read("/etc/passwd")?.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == name).then(|| User {
            name: name.to_string(),
            uid: f[2].parse().unwrap_or(u32::MAX),
            gid: f[3].parse().unwrap_or(u32::MAX),
            home: PathBuf::from(f[5]),
        })
    })
}

/// One line of `/etc/group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

pub fn find_group(root: &Root, name: &str) -> Option<Group> {
    root.read("/etc/group")?.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Group {
            name: name.to_string(),
            gid: f[2].parse().unwrap_or(u32::MAX),
            members: f[3]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(String::from)
                .collect(),
        })
    })
}

/// Is `user` in `group`, either as a listed member or through its primary group?
pub fn is_member(group: &Group, user: &User) -> bool {
    group.gid == user.gid || group.members.iter().any(|m| m == &user.name)
}

/// Installed packages from the dpkg database, or `None` when the root has no dpkg database
/// (then nothing can be said about packages).
pub fn installed_packages(root: &Root) -> Option<Vec<String>> {
    let status = root.read("/var/lib/dpkg/status")?;
    let mut installed = Vec::new();
    for stanza in status.split("\n\n") {
        let field = |key: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        };
        if let (Some(pkg), Some(st)) = (field("Package:"), field("Status:")) {
            if st == "install ok installed" {
                installed.push(pkg);
            }
        }
    }
    Some(installed)
}
