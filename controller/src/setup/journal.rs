//! The rollback journal: the state `mugge setup` found before each of its changes, written to disk
//! before the change is made (so a run that dies half-way can still be rolled back). Later runs
//! add entries for new changes but never replace a recorded original: `--rollback` restores the
//! state from before the first run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::root::Root;

pub const JOURNAL_PATH: &str = "/var/lib/mugge/setup-journal.json";

/// What a path was before mugge touched it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Original {
    Absent,
    File {
        contents: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: PathBuf,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    PackagesInstalled(Vec<String>),
    GroupCreated(String),
    UserCreated(String),
    AddedToGroup(String),
    LingerEnabled,
    DirCreated(PathBuf),
    Path { path: PathBuf, original: Original },
    SystemUnitDisabled { name: String, was_active: bool },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub user: String,
    pub entries: Vec<Entry>,
}

impl Journal {
    pub fn load(root: &Root) -> Result<Option<Self>, String> {
        let path = root.join(JOURNAL_PATH);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: unreadable journal: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Written through a temporary file and a rename, so a crash leaves the old or the new journal.
    pub fn save(&self, root: &Root) -> Result<(), String> {
        let path = root.join(JOURNAL_PATH);
        let dir = path.parent().expect("journal path has a parent");
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Removes the journal and, when nothing else is in it, mugge's state directory.
    pub fn remove(root: &Root) -> Result<(), String> {
        let path = root.join(JOURNAL_PATH);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.to_string()),
            _ => {}
        }
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }

    /// Records `entry` unless the same thing was already recorded (the first original wins).
    pub fn record(&mut self, entry: Entry) {
        let seen = self.entries.iter().any(|e| match (e, &entry) {
            (Entry::Path { path: a, .. }, Entry::Path { path: b, .. }) => a == b,
            _ => e == &entry,
        });
        if !seen {
            self.entries.push(entry);
        }
    }
}

/// What is at `abs` under `root` right now.
pub fn original_of(root: &Root, abs: &Path) -> Original {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let real = root.join(abs);
    match std::fs::symlink_metadata(&real) {
        Err(_) => Original::Absent,
        Ok(m) if m.file_type().is_symlink() => Original::Symlink {
            target: std::fs::read_link(&real).unwrap_or_default(),
        },
        Ok(m) => Original::File {
            contents: std::fs::read(&real).unwrap_or_default(),
            mode: m.permissions().mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        },
    }
}
