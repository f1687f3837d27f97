//! `mugge setup`: one idempotent tool that turns a Debian / Raspberry Pi OS box into a headless
//! user-session audio box for one audio user (SPEC §8, issue 6).
//!
//! detect (files under the root) -> plan (the difference to the wanted state) -> apply (journal
//! first, then the change) -> activate (the user manager picks it up) -> gates (0)-(5) -> summary.
//! `--rollback` replays the journal backwards. Every command goes through [`runner::CommandRunner`].

pub mod actions;
pub mod assets;
pub mod detect;
pub mod gates;
pub mod journal;
pub mod root;
pub mod runner;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::PathBuf;

use self::journal::Journal;
use self::root::Root;
use self::runner::{Cmd, CommandRunner};

#[derive(Clone, Debug)]
pub struct Options {
    pub user: String,
    pub root: PathBuf,
    pub dry_run: bool,
    /// Talk to the running system (activate units, check gates). Off for an offline root.
    pub live: bool,
    pub paths: assets::Paths,
}

/// What a run found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub changes: Vec<String>,
    pub warnings: Vec<String>,
    pub gates: Vec<gates::Gate>,
}

impl Outcome {
    pub fn all_passed(&self) -> bool {
        self.gates.iter().all(gates::Gate::passed)
    }
}

/// A POSIX-portable user name, so it is safe in paths and command lines.
pub fn valid_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.len() <= 32
}

fn check_user(opts: &Options) -> Result<(), String> {
    if valid_user_name(&opts.user) {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a valid user name (lower-case letters, digits, '_' and '-', starting with a letter or '_')",
            opts.user
        ))
    }
}

macro_rules! say {
    ($out:expr, $($arg:tt)*) => { writeln!($out, $($arg)*).map_err(|e| e.to_string()) };
}

pub fn setup(
    opts: &Options,
    runner: &dyn CommandRunner,
    out: &mut dyn Write,
) -> Result<Outcome, String> {
    check_user(opts)?;
    let root = Root::new(&opts.root);
    let mut journal = match Journal::load(&root)? {
        Some(j) if j.user != opts.user => {
            return Err(format!(
                "this box was set up for user {}; run `mugge setup --rollback --user {}` first",
                j.user, j.user
            ))
        }
        Some(j) => j,
        None => Journal {
            user: opts.user.clone(),
            entries: Vec::new(),
        },
    };

    let state = detect::detect(&root, &opts.user);
    report_state(&state, &opts.user, out)?;

    let plan = actions::plan(&root, &state, &opts.user, &opts.paths);
    actions::preflight(&root, &opts.user, &plan)?;
    let mut outcome = Outcome {
        changes: plan.iter().map(ToString::to_string).collect(),
        ..Outcome::default()
    };
    let verb = if opts.dry_run { "would" } else { "will" };
    if plan.is_empty() {
        say!(out, "changes: none, the box is already set up")?;
    }
    for a in &plan {
        say!(out, "change ({verb}): {a}")?;
    }
    if !state.run_pipewire_refs.is_empty() {
        outcome.warnings.push(
            "/run/pipewire references are not edited automatically; fix the lines gate (0) lists"
                .into(),
        );
    }

    if !opts.dry_run && !plan.is_empty() {
        actions::apply(&root, runner, &mut journal, &opts.user, &plan)?;
        if opts.live {
            outcome.warnings.extend(activate(&root, runner, &opts.user));
        }
    }

    if opts.live {
        let state = detect::detect(&root, &opts.user);
        outcome.gates = gates::all(&gates::GateInput {
            root: &root,
            state: &state,
            user: &opts.user,
            runner,
        });
        for g in &outcome.gates {
            say!(out, "{g}")?;
        }
    } else {
        say!(
            out,
            "gates: skipped (not the live system; run `mugge setup` on the booted box)"
        )?;
    }
    for w in &outcome.warnings {
        say!(out, "warning: {w}")?;
    }
    let passed = outcome.gates.iter().filter(|g| g.passed()).count();
    say!(
        out,
        "summary: {} change(s) {}, {} warning(s), gates {passed}/{} passed{}",
        outcome.changes.len(),
        if opts.dry_run {
            "planned (dry run)"
        } else {
            "made"
        },
        outcome.warnings.len(),
        outcome.gates.len(),
        if journal.entries.is_empty() {
            String::new()
        } else {
            format!(", rollback journal {}", journal::JOURNAL_PATH)
        }
    )?;
    Ok(outcome)
}

fn report_state(state: &detect::State, user: &str, out: &mut dyn Write) -> Result<(), String> {
    match &state.user {
        Some(u) => say!(
            out,
            "detected: user {user} uid {} home {}",
            u.uid,
            u.home.display()
        )?,
        None => say!(out, "detected: user {user} does not exist")?,
    }
    say!(
        out,
        "detected: groups missing for {user}: {}",
        list_or_none(&state.groups_without_user)
    )?;
    say!(
        out,
        "detected: linger {}",
        if state.linger { "on" } else { "off" }
    )?;
    let units: Vec<String> = state
        .system_units
        .iter()
        .map(|u| format!("{}{}", u.name, if u.enabled { " (enabled)" } else { "" }))
        .collect();
    say!(
        out,
        "detected: system-mode audio units: {}",
        list_or_none(&units)
    )?;
    let refs: Vec<String> = state
        .run_pipewire_refs
        .iter()
        .map(|r| format!("{}:{}", r.path.display(), r.line))
        .collect();
    say!(
        out,
        "detected: /run/pipewire references: {}",
        list_or_none(&refs)
    )?;
    match &state.missing_packages {
        Some(p) => say!(out, "detected: missing packages: {}", list_or_none(p)),
        None => say!(
            out,
            "detected: missing packages: unknown (no dpkg database)"
        ),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// Makes the running user manager pick up what was installed. Failures are warnings: the gates
/// that follow say what is actually wrong.
fn activate(root: &Root, runner: &dyn CommandRunner, user: &str) -> Vec<String> {
    let Some(u) = root::find_user(root, user) else {
        return vec![format!("user {user} missing after setup")];
    };
    let manager = format!("user@{}.service", u.uid);
    let steps = [
        Cmd::new("systemctl", ["start", manager.as_str()]),
        Cmd::user_systemctl(user, &["daemon-reload"]),
        // A restart is what makes PipeWire and WirePlumber read new fragments.
        Cmd::user_systemctl(
            user,
            &[
                "restart",
                "pipewire.service",
                "pipewire-pulse.service",
                "wireplumber.service",
            ],
        ),
        Cmd::user_systemctl(
            user,
            &["start", "mugge-controller.service", "mugge-filters.service"],
        ),
    ];
    steps
        .iter()
        .filter_map(|c| runner::run_checked(runner, c).err())
        .collect()
}

/// Restores what the journal recorded and forgets it. Nothing recorded: nothing to do.
pub fn rollback(
    opts: &Options,
    runner: &dyn CommandRunner,
    out: &mut dyn Write,
) -> Result<(), String> {
    check_user(opts)?;
    let root = Root::new(&opts.root);
    let Some(mut journal) = Journal::load(&root)? else {
        return say!(out, "rollback: nothing recorded, nothing to do");
    };
    if journal.user != opts.user {
        return Err(format!(
            "the journal is for user {}, not {}",
            journal.user, opts.user
        ));
    }
    let mut lines = Vec::new();
    let result = actions::rollback(&root, runner, &mut journal, opts.dry_run, &mut |l| {
        lines.push(l)
    });
    let prefix = if opts.dry_run {
        "rollback (would)"
    } else {
        "rollback"
    };
    for l in &lines {
        say!(out, "{prefix}: {l}")?;
    }
    result?;
    if !opts.dry_run {
        Journal::remove(&root)?;
        say!(out, "rollback: done, journal removed")?;
    }
    Ok(())
}
