//! A fake system behind the command runner: it performs the account, linger and unit commands on
//! the fixture tree the way the real tools change the real files, and records every command.
//! Commands it does not know fail, as they would on a box that is not booted.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::setup::runner::{Cmd, CmdOutput, CommandRunner};

pub struct FakeSystem {
    root: PathBuf,
    pub calls: RefCell<Vec<String>>,
    /// System units `systemctl is-active` reports as active.
    pub active: RefCell<BTreeSet<String>>,
    /// A command line (prefix) that fails, to test a run that dies half-way.
    pub fail_on: Option<String>,
}

impl FakeSystem {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            calls: RefCell::new(Vec::new()),
            active: RefCell::new(BTreeSet::new()),
            fail_on: None,
        }
    }

    fn p(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn edit(&self, abs: &str, f: impl Fn(Vec<String>) -> Vec<String>) {
        let text = std::fs::read_to_string(self.p(abs)).unwrap_or_default();
        let lines = f(text.lines().map(String::from).collect());
        let mut out = lines.join("\n");
        out.push('\n');
        std::fs::write(self.p(abs), out).unwrap();
    }

    fn next_id(&self, abs: &str, from: u32) -> u32 {
        let text = std::fs::read_to_string(self.p(abs)).unwrap_or_default();
        let used: BTreeSet<u32> = text
            .lines()
            .filter_map(|l| l.split(':').nth(2)?.parse().ok())
            .collect();
        (from..).find(|i| !used.contains(i)).unwrap()
    }

    fn set_members(&self, group: &str, f: impl Fn(&mut Vec<String>)) {
        self.edit("/etc/group", |lines| {
            lines
                .into_iter()
                .map(|l| {
                    let mut parts: Vec<String> = l.split(':').map(String::from).collect();
                    if parts.len() == 4 && parts[0] == group {
                        let mut m: Vec<String> = parts[3]
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect();
                        f(&mut m);
                        parts[3] = m.join(",");
                    }
                    parts.join(":")
                })
                .collect()
        });
    }

    fn unit_wanted_by(&self, unit: &str) -> Option<(PathBuf, String)> {
        for dir in ["/etc/systemd/system", "/usr/lib/systemd/system"] {
            let abs = format!("{dir}/{unit}");
            if let Ok(text) = std::fs::read_to_string(self.p(&abs)) {
                let target = text
                    .lines()
                    .find_map(|l| l.strip_prefix("WantedBy="))?
                    .to_string();
                return Some((PathBuf::from(abs), target));
            }
        }
        None
    }

    fn perform(&self, a: &[&str], program: &str) -> CmdOutput {
        match (program, a) {
            ("useradd", [.., user]) => {
                let uid = self.next_id("/etc/passwd", 1000);
                let home = format!("/home/{user}");
                self.edit("/etc/passwd", |mut l| {
                    l.push(format!("{user}:x:{uid}:{uid}::{home}:/bin/bash"));
                    l
                });
                self.edit("/etc/group", |mut l| {
                    l.push(format!("{user}:x:{uid}:"));
                    l
                });
                std::fs::create_dir_all(self.p(&home)).unwrap();
                CmdOutput::ok("")
            }
            ("userdel", ["--remove", user]) => {
                let prefix = format!("{user}:");
                self.edit("/etc/passwd", |l| {
                    l.into_iter().filter(|x| !x.starts_with(&prefix)).collect()
                });
                self.edit("/etc/group", |l| {
                    l.into_iter().filter(|x| !x.starts_with(&prefix)).collect()
                });
                std::fs::remove_dir_all(self.p(&format!("/home/{user}"))).unwrap();
                CmdOutput::ok("")
            }
            ("groupadd", ["--system", group]) => {
                let gid = self.next_id("/etc/group", 100);
                self.edit("/etc/group", |mut l| {
                    l.push(format!("{group}:x:{gid}:"));
                    l
                });
                CmdOutput::ok("")
            }
            ("groupdel", [group]) => {
                let prefix = format!("{group}:");
                self.edit("/etc/group", |l| {
                    l.into_iter().filter(|x| !x.starts_with(&prefix)).collect()
                });
                CmdOutput::ok("")
            }
            ("usermod", ["--append", "--groups", group, user]) => {
                self.set_members(group, |m| m.push(user.to_string()));
                CmdOutput::ok("")
            }
            ("gpasswd", ["--delete", user, group]) => {
                self.set_members(group, |m| m.retain(|x| x != user));
                CmdOutput::ok("")
            }
            ("loginctl", ["enable-linger", user]) => {
                std::fs::create_dir_all(self.p("/var/lib/systemd/linger")).unwrap();
                std::fs::write(self.p(&format!("/var/lib/systemd/linger/{user}")), "").unwrap();
                CmdOutput::ok("")
            }
            ("loginctl", ["disable-linger", user]) => {
                // Like logind: disabling what is not enabled is not an error.
                let _ = std::fs::remove_file(self.p(&format!("/var/lib/systemd/linger/{user}")));
                CmdOutput::ok("")
            }
            ("systemctl", ["is-active", unit]) => {
                if self.active.borrow().contains(*unit) {
                    CmdOutput::ok("active\n")
                } else {
                    CmdOutput {
                        code: Some(3),
                        stdout: "inactive\n".into(),
                        stderr: String::new(),
                    }
                }
            }
            ("systemctl", ["disable", "--now", unit]) => {
                if let Some((_, target)) = self.unit_wanted_by(unit) {
                    let _ = std::fs::remove_file(
                        self.p(&format!("/etc/systemd/system/{target}.wants/{unit}")),
                    );
                }
                self.active.borrow_mut().remove(*unit);
                CmdOutput::ok("")
            }
            ("systemctl", ["enable", how, unit]) => {
                let (path, target) = self.unit_wanted_by(unit).unwrap();
                let link = self.p(&format!("/etc/systemd/system/{target}.wants/{unit}"));
                std::fs::create_dir_all(link.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(path, link).unwrap();
                if *how == "--now" {
                    self.active.borrow_mut().insert(unit.to_string());
                }
                CmdOutput::ok("")
            }
            ("apt-get", ["install", "-y", "--no-install-recommends", pkgs @ ..]) => {
                let mut text =
                    std::fs::read_to_string(self.p("/var/lib/dpkg/status")).unwrap_or_default();
                for p in pkgs {
                    text.push_str(&format!("Package: {p}\nStatus: install ok installed\n\n"));
                }
                std::fs::write(self.p("/var/lib/dpkg/status"), text).unwrap();
                CmdOutput::ok("")
            }
            _ => CmdOutput::failed(1, "System has not been booted with systemd (fake)"),
        }
    }
}

impl CommandRunner for FakeSystem {
    fn run(&self, cmd: &Cmd) -> std::io::Result<CmdOutput> {
        let line = cmd.to_string();
        self.calls.borrow_mut().push(line.clone());
        if self.fail_on.as_deref().is_some_and(|f| line.starts_with(f)) {
            return Ok(CmdOutput::failed(1, "injected failure"));
        }
        let args: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        Ok(self.perform(&args, &cmd.program))
    }
}

/// Replays recorded output: each command line maps to what it printed on a real box.
pub struct Recorded(pub Vec<(String, CmdOutput)>);

impl CommandRunner for Recorded {
    fn run(&self, cmd: &Cmd) -> std::io::Result<CmdOutput> {
        let line = cmd.to_string();
        self.0
            .iter()
            .find(|(l, _)| *l == line)
            .map(|(_, o)| o.clone())
            .ok_or_else(|| std::io::Error::other(format!("no recording for `{line}`")))
    }
}
