//! Steps 2 and 3 of `mugge setup`: the changes that turn the detected state into the wanted one,
//! applied one by one with the journal written before each change, and their exact inverse.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::assets::{self, Paths};
use super::detect::{State, GROUPS};
use super::journal::{original_of, Entry, Journal, Original};
use super::root::{self, Root};
use super::runner::{run_checked, Cmd, CommandRunner};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    InstallPackages(Vec<String>),
    CreateGroup(String),
    CreateUser,
    AddToGroup(String),
    EnableLinger,
    WriteFile(assets::Asset),
    Link {
        link: PathBuf,
        target: PathBuf,
        user_owned: bool,
    },
    DisableSystemUnit(String),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::InstallPackages(p) => write!(f, "install packages: {}", p.join(" ")),
            Action::CreateGroup(g) => write!(f, "create group {g}"),
            Action::CreateUser => write!(f, "create the audio user"),
            Action::AddToGroup(g) => write!(f, "add the audio user to group {g}"),
            Action::EnableLinger => write!(f, "enable lingering for the audio user"),
            Action::WriteFile(a) => write!(f, "write {}", a.path.display()),
            Action::Link { link, target, .. } => {
                write!(f, "enable {} -> {}", link.display(), target.display())
            }
            Action::DisableSystemUnit(u) => write!(f, "disable and stop system unit {u}"),
        }
    }
}

/// The home the user has, or will have once `useradd` made it.
pub fn home_of(state: &State, user: &str) -> PathBuf {
    state
        .user
        .as_ref()
        .map(|u| u.home.clone())
        .unwrap_or_else(|| PathBuf::from(format!("/home/{user}")))
}

/// Everything that differs from the wanted state, in the order it must be done. Empty when the
/// box is already set up: that is what makes a second run a no-op.
pub fn plan(root: &Root, state: &State, user: &str, paths: &Paths) -> Vec<Action> {
    let mut out = Vec::new();
    if let Some(missing) = &state.missing_packages {
        if !missing.is_empty() {
            out.push(Action::InstallPackages(missing.clone()));
        }
    }
    for g in &state.missing_groups {
        out.push(Action::CreateGroup(g.clone()));
    }
    if state.user.is_none() {
        out.push(Action::CreateUser);
    }
    for g in GROUPS {
        if state.groups_without_user.iter().any(|x| x == g) {
            out.push(Action::AddToGroup(g.to_string()));
        }
    }
    if !state.linger {
        out.push(Action::EnableLinger);
    }
    let home = home_of(state, user);
    for a in assets::assets(&home, paths) {
        // Ownership is not compared: a fixture tree cannot always show it.
        let up_to_date = matches!(
            original_of(root, &a.path),
            Original::File { contents, mode, .. } if contents == a.contents.as_bytes() && mode == a.mode
        );
        if !up_to_date {
            out.push(Action::WriteFile(a));
        }
    }
    let mut links: Vec<(PathBuf, PathBuf)> = assets::mugge_enables(&home)
        .into_iter()
        .map(|e| (e.link, e.target))
        .collect();
    for (wants, unit) in assets::STACK_ENABLES {
        let global = Path::new(assets::GLOBAL_USER_CONF).join(wants).join(unit);
        let target = Path::new(assets::USER_UNIT_DIR).join(unit);
        // Only enable what is installed; a missing package shows up in the package list instead.
        if !root.join(&global).exists() && root.join(&target).exists() {
            let link = home.join(".config/systemd/user").join(wants).join(unit);
            links.push((link, target));
        }
    }
    for (link, target) in links {
        if original_of(root, &link)
            != (Original::Symlink {
                target: target.clone(),
            })
        {
            out.push(Action::Link {
                link,
                target,
                user_owned: true,
            });
        }
    }
    for u in &state.system_units {
        if u.enabled {
            out.push(Action::DisableSystemUnit(u.name.clone()));
        }
    }
    out
}

/// Checks what can be checked before anything changes, so bad input changes nothing.
pub fn preflight(root: &Root, user: &str, actions: &[Action]) -> Result<(), String> {
    for a in actions {
        match a {
            Action::WriteFile(asset) if asset.user_owned => {
                refuse_symlinked_dirs(root, user, &asset.path)?
            }
            Action::Link {
                link,
                user_owned: true,
                ..
            } => refuse_symlinked_dirs(root, user, link)?,
            _ => {}
        }
    }
    Ok(())
}

/// Applies `actions` in order, recording each original in `journal` (saved before the change).
/// Stops at the first failure: what was done so far is journaled and can be rolled back.
pub fn apply(
    root: &Root,
    runner: &dyn CommandRunner,
    journal: &mut Journal,
    user: &str,
    actions: &[Action],
) -> Result<(), String> {
    for action in actions {
        apply_one(root, runner, journal, user, action).map_err(|e| format!("{action}: {e}"))?;
    }
    Ok(())
}

fn apply_one(
    root: &Root,
    runner: &dyn CommandRunner,
    journal: &mut Journal,
    user: &str,
    action: &Action,
) -> Result<(), String> {
    let note = |journal: &mut Journal, e: Entry| {
        journal.record(e);
        journal.save(root)
    };
    match action {
        Action::InstallPackages(pkgs) => {
            note(journal, Entry::PackagesInstalled(pkgs.clone()))?;
            let mut args = vec!["install", "-y", "--no-install-recommends"];
            args.extend(pkgs.iter().map(String::as_str));
            run_checked(runner, &Cmd::new("apt-get", args))?;
        }
        Action::CreateGroup(g) => {
            note(journal, Entry::GroupCreated(g.clone()))?;
            run_checked(runner, &Cmd::new("groupadd", ["--system", g.as_str()]))?;
        }
        Action::CreateUser => {
            note(journal, Entry::UserCreated(user.to_string()))?;
            let home = format!("/home/{user}");
            // A regular (UID >= 1000) account: logind gives it /run/user/<uid> and a user manager.
            run_checked(
                runner,
                &Cmd::new(
                    "useradd",
                    [
                        "--create-home",
                        "--home-dir",
                        home.as_str(),
                        "--user-group",
                        "--shell",
                        "/bin/bash",
                        user,
                    ],
                ),
            )?;
        }
        Action::AddToGroup(g) => {
            note(journal, Entry::AddedToGroup(g.clone()))?;
            run_checked(
                runner,
                &Cmd::new("usermod", ["--append", "--groups", g.as_str(), user]),
            )?;
        }
        Action::EnableLinger => {
            note(journal, Entry::LingerEnabled)?;
            run_checked(runner, &Cmd::new("loginctl", ["enable-linger", user]))?;
        }
        Action::WriteFile(a) => {
            if a.user_owned {
                refuse_symlinked_dirs(root, user, &a.path)?;
            }
            record_dirs(root, journal, &a.path)?;
            note(
                journal,
                Entry::Path {
                    path: a.path.clone(),
                    original: original_of(root, &a.path),
                },
            )?;
            let real = root.join(&a.path);
            remove_any(&real)?;
            std::fs::write(&real, &a.contents).map_err(|e| format!("{}: {e}", real.display()))?;
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(a.mode))
                .map_err(|e| format!("{}: {e}", real.display()))?;
            if a.user_owned {
                give_to_user(root, user, &a.path)?;
            }
        }
        Action::Link {
            link,
            target,
            user_owned,
        } => {
            if *user_owned {
                refuse_symlinked_dirs(root, user, link)?;
            }
            record_dirs(root, journal, link)?;
            note(
                journal,
                Entry::Path {
                    path: link.clone(),
                    original: original_of(root, link),
                },
            )?;
            let real = root.join(link);
            remove_any(&real)?;
            std::os::unix::fs::symlink(target, &real)
                .map_err(|e| format!("{}: {e}", real.display()))?;
            if *user_owned {
                give_to_user(root, user, link)?;
            }
        }
        Action::DisableSystemUnit(unit) => {
            let was_active = runner
                .run(&Cmd::new("systemctl", ["is-active", unit.as_str()]))
                .map(|o| o.line() == "active")
                .unwrap_or(false);
            note(
                journal,
                Entry::SystemUnitDisabled {
                    name: unit.clone(),
                    was_active,
                },
            )?;
            run_checked(
                runner,
                &Cmd::new("systemctl", ["disable", "--now", unit.as_str()]),
            )?;
        }
    }
    Ok(())
}

/// Root writes into the user's home: a directory there that is a symlink (say `~/.config` ->
/// `/etc`) would redirect those writes anywhere. Refuse instead of following it.
fn refuse_symlinked_dirs(root: &Root, user: &str, abs: &Path) -> Result<(), String> {
    let home = root::find_user(root, user)
        .map(|u| u.home)
        .unwrap_or_else(|| PathBuf::from(format!("/home/{user}")));
    let mut dir = abs.parent();
    while let Some(d) = dir {
        if d == home || !d.starts_with(&home) {
            break;
        }
        if std::fs::symlink_metadata(root.join(d)).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!(
                "{} is a symlink; refusing to write through it as root",
                d.display()
            ));
        }
        dir = d.parent();
    }
    Ok(())
}

/// Journals and creates each missing parent directory of `abs`, outermost first, owned by the
/// user when inside its home.
fn record_dirs(root: &Root, journal: &mut Journal, abs: &Path) -> Result<(), String> {
    let mut missing = Vec::new();
    let mut dir = abs.parent();
    while let Some(d) = dir {
        if root.join(d).exists() {
            break;
        }
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    for d in missing.into_iter().rev() {
        journal.record(Entry::DirCreated(d.clone()));
        journal.save(root)?;
        let real = root.join(&d);
        std::fs::create_dir(&real).map_err(|e| format!("{}: {e}", real.display()))?;
        if let Some(u) = root::find_user(root, &journal.user) {
            if d.starts_with(&u.home) {
                chown(root, &real, u.uid, u.gid)?;
            }
        }
    }
    Ok(())
}

fn give_to_user(root: &Root, user: &str, abs: &Path) -> Result<(), String> {
    let u = root::find_user(root, user).ok_or_else(|| format!("user {user} does not exist"))?;
    chown(root, &root.join(abs), u.uid, u.gid)
}

fn chown(root: &Root, real: &Path, uid: u32, gid: u32) -> Result<(), String> {
    match std::os::unix::fs::lchown(real, Some(uid), Some(gid)) {
        Ok(()) => Ok(()),
        // A fixture tree owned by an unprivileged test run: ownership cannot be shown there.
        Err(e) if !root.is_live() && e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        Err(e) => Err(format!("chown {}: {e}", real.display())),
    }
}

fn remove_any(real: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(real) {
        Ok(m) if m.is_dir() => Err(format!("{} is a directory", real.display())),
        Ok(_) => std::fs::remove_file(real).map_err(|e| format!("{}: {e}", real.display())),
        Err(_) => Ok(()),
    }
}

/// Undoes the journal, newest entry first, dropping each entry from the saved journal once it is
/// undone, so a rollback that fails half-way can be run again. Packages are kept: removing them
/// could take other software with them.
pub fn rollback(
    root: &Root,
    runner: &dyn CommandRunner,
    journal: &mut Journal,
    dry_run: bool,
    log: &mut dyn FnMut(String),
) -> Result<(), String> {
    let user = journal.user.clone();
    let user = user.as_str();
    for entry in journal.entries.clone().iter().rev() {
        let cmd = match entry {
            Entry::PackagesInstalled(p) => {
                log(format!("keep packages installed by setup: {}", p.join(" ")));
                None
            }
            Entry::GroupCreated(g) => Some(Cmd::new("groupdel", [g.as_str()])),
            Entry::UserCreated(u) => Some(Cmd::new("userdel", ["--remove", u.as_str()])),
            Entry::AddedToGroup(g) => Some(Cmd::new("gpasswd", ["--delete", user, g.as_str()])),
            Entry::LingerEnabled => Some(Cmd::new("loginctl", ["disable-linger", user])),
            Entry::SystemUnitDisabled { name, was_active } => {
                let verb = if *was_active { "--now" } else { "--quiet" };
                Some(Cmd::new("systemctl", ["enable", verb, name.as_str()]))
            }
            Entry::DirCreated(d) => {
                log(format!("remove directory {}", d.display()));
                if !dry_run {
                    // Only if empty: anything else in it was put there by someone else.
                    let _ = std::fs::remove_dir(root.join(d));
                }
                None
            }
            Entry::Path { path, original } => {
                log(format!("restore {}", path.display()));
                if !dry_run {
                    restore(root, path, original)?;
                }
                None
            }
        };
        if let Some(cmd) = cmd {
            log(format!("run {cmd}"));
            if !dry_run {
                run_checked(runner, &cmd)?;
            }
        }
        if !dry_run {
            journal.entries.pop();
            journal.save(root)?;
        }
    }
    Ok(())
}

fn restore(root: &Root, abs: &Path, original: &Original) -> Result<(), String> {
    let real = root.join(abs);
    remove_any(&real)?;
    match original {
        Original::Absent => Ok(()),
        Original::File {
            contents,
            mode,
            uid,
            gid,
        } => {
            std::fs::write(&real, contents).map_err(|e| format!("{}: {e}", real.display()))?;
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| format!("{}: {e}", real.display()))?;
            chown(root, &real, *uid, *gid)
        }
        Original::Symlink { target } => std::os::unix::fs::symlink(target, &real)
            .map_err(|e| format!("{}: {e}", real.display())),
    }
}
