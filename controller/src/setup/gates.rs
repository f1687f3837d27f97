//! Step 4 of `mugge setup`: the gates (0)-(5), each one named PASS/FAIL line with the reasons.
//! Every fact comes from a file under the root or from a command through the runner; the parsing
//! is pure so it is tested against recorded output.

use std::fmt;

use super::detect::{State, GROUPS};
use super::root::Root;
use super::runner::{Cmd, CmdOutput, CommandRunner};

/// The virtual devices applications must get (names are a contract; see
/// conf/pipewire.conf.d/60-mugge-virtual-devices.conf).
pub const VIRTUAL_SINKS: [&str; 3] = ["mugge-program", "mugge-headphones", "mugge-inears"];
pub const DEFAULT_SINK: &str = "mugge-program";
/// Raw hardware that must never be a default.
pub const HARDWARE_NODES: [&str; 3] = ["usbstreamer-out", "usbstreamer-in", "umik1-in"];
/// User units that must be active, the audio stack first.
pub const USER_UNITS: [&str; 5] = [
    "pipewire.service",
    "pipewire-pulse.service",
    "wireplumber.service",
    "mugge-controller.service",
    "mugge-filters.service",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    pub id: u8,
    pub name: &'static str,
    /// Empty when the gate passes; otherwise what failed, one reason per entry.
    pub failures: Vec<String>,
}

impl Gate {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        write!(f, "gate ({}) {}: {verdict}", self.id, self.name)?;
        for r in &self.failures {
            // One reason per line, even when a tool's stderr had several.
            let r: Vec<&str> = r.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            write!(f, "\n    - {}", r.join("; "))?;
        }
        Ok(())
    }
}

pub struct GateInput<'a> {
    pub root: &'a Root,
    pub state: &'a State,
    pub user: &'a str,
    pub runner: &'a dyn CommandRunner,
}

impl GateInput<'_> {
    fn run(&self, cmd: Cmd) -> Result<CmdOutput, String> {
        self.runner
            .run(&cmd)
            .map_err(|e| format!("`{cmd}` could not be started: {e}"))
    }

    fn uid(&self) -> Option<u32> {
        self.state.user.as_ref().map(|u| u.uid)
    }
}

pub fn all(input: &GateInput) -> Vec<Gate> {
    vec![
        gate0(input),
        gate1(input),
        gate2(input),
        gate3(input),
        gate4(input),
        gate5(input),
    ]
}

fn gate(id: u8, name: &'static str, failures: Vec<String>) -> Gate {
    Gate { id, name, failures }
}

/// (0) No system-mode PipeWire and no `/run/pipewire` references.
pub fn gate0(input: &GateInput) -> Gate {
    let mut f = Vec::new();
    for u in &input.state.system_units {
        if u.enabled {
            f.push(format!(
                "system unit {} ({}) is enabled",
                u.name,
                u.path.display()
            ));
        }
        match input.run(Cmd::new("systemctl", ["is-active", u.name.as_str()])) {
            Ok(o) if o.line() == "active" || o.line() == "activating" => {
                f.push(format!("system unit {} is running", u.name))
            }
            Ok(_) => {}
            Err(e) => f.push(e),
        }
    }
    for r in &input.state.run_pipewire_refs {
        f.push(format!(
            "{}:{} mentions /run/pipewire: {}",
            r.path.display(),
            r.line,
            r.text
        ));
    }
    gate(0, "no system-mode PipeWire", f)
}

/// (1) User, groups and realtime limits, the limits as a user service really gets them.
pub fn gate1(input: &GateInput) -> Gate {
    let mut f = Vec::new();
    let Some(user) = &input.state.user else {
        return gate(
            1,
            "user, groups, limits",
            vec![format!("user {} does not exist", input.user)],
        );
    };
    if user.uid < 1000 {
        f.push(format!(
            "UID {} < 1000: logind gives system users no user manager",
            user.uid
        ));
    }
    match input.run(Cmd::new("id", ["-nG", input.user])) {
        Ok(o) if o.success() => {
            let have: Vec<&str> = o.stdout.split_whitespace().collect();
            for g in GROUPS {
                if !have.contains(&g) {
                    f.push(format!("not in group {g} (id -nG: {})", o.line()));
                }
            }
        }
        Ok(o) => f.push(format!("id -nG failed: {}", o.stderr.trim())),
        Err(e) => f.push(e),
    }
    match input.run(Cmd::in_user_session(
        input.user,
        &["cat", "/proc/self/limits"],
    )) {
        Ok(o) if o.success() => f.extend(check_limits(&o.stdout)),
        Ok(o) => f.push(format!(
            "cannot run a user service to read its limits: {}",
            o.stderr.trim()
        )),
        Err(e) => f.push(e),
    }
    gate(1, "user, groups, limits", f)
}

/// The soft limit of one `/proc/<pid>/limits` row (`None`: row missing).
pub fn soft_limit(limits: &str, row: &str) -> Option<String> {
    limits.lines().find_map(|l| {
        l.strip_prefix(row)
            .and_then(|rest| rest.split_whitespace().next().map(String::from))
    })
}

/// rtprio 95, nice -19 (RLIMIT_NICE 20 - (-19) = 39), memlock unlimited, checked on the soft
/// limits because those are what a process gets without asking.
pub fn check_limits(limits: &str) -> Vec<String> {
    let mut f = Vec::new();
    let num = |row: &str| soft_limit(limits, row).and_then(|v| v.parse::<u64>().ok());
    match num("Max realtime priority") {
        Some(v) if v >= 95 => {}
        v => f.push(format!("realtime priority limit {v:?}, want 95")),
    }
    match num("Max nice priority") {
        Some(v) if v >= 39 => {}
        v => f.push(format!("nice limit {v:?}, want 39 (nice -19)")),
    }
    match soft_limit(limits, "Max locked memory").as_deref() {
        Some("unlimited") => {}
        v => f.push(format!("locked memory limit {v:?}, want unlimited")),
    }
    f
}

/// (2) The user manager and `/run/user/<uid>` exist without anyone logging in.
pub fn gate2(input: &GateInput) -> Gate {
    let mut f = Vec::new();
    let Some(uid) = input.uid() else {
        return gate(
            2,
            "user manager without login",
            vec![format!("user {} does not exist", input.user)],
        );
    };
    match input.run(Cmd::new(
        "loginctl",
        ["show-user", input.user, "--property=Linger", "--value"],
    )) {
        Ok(o) if o.line() == "yes" => {}
        Ok(o) => f.push(format!(
            "lingering is off ({}{})",
            o.line(),
            o.stderr.trim()
        )),
        Err(e) => f.push(e),
    }
    let manager = format!("user@{uid}.service");
    match input.run(Cmd::new("systemctl", ["is-active", manager.as_str()])) {
        Ok(o) if o.line() == "active" => {}
        Ok(o) => f.push(format!("{manager} is {}", o.line())),
        Err(e) => f.push(e),
    }
    let run = format!("/run/user/{uid}");
    if !input.root.join(&run).is_dir() {
        f.push(format!("{run} does not exist"));
    }
    match input.run(Cmd::user_systemctl(
        input.user,
        &["is-active", "default.target"],
    )) {
        Ok(o) if o.line() == "active" => {}
        Ok(o) => f.push(format!(
            "the user manager's default.target is {}{}",
            o.line(),
            o.stderr.trim()
        )),
        Err(e) => f.push(e),
    }
    gate(2, "user manager without login", f)
}

/// The value of `key` in `KEY=value` lines (systemctl show-environment).
pub fn env_value<'a>(env: &'a str, key: &str) -> Option<&'a str> {
    env.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// `Server String: ...` from `pactl info`.
pub fn pulse_server(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix("Server String:").map(str::trim))
}

/// (3) `wpctl status` and `pactl info` work as the user and point at `/run/user/<uid>`.
pub fn gate3(input: &GateInput) -> Gate {
    let mut f = Vec::new();
    let Some(uid) = input.uid() else {
        return gate(
            3,
            "wpctl and pactl as the user",
            vec![format!("user {} does not exist", input.user)],
        );
    };
    let run = format!("/run/user/{uid}");
    match input.run(Cmd::user_systemctl(input.user, &["show-environment"])) {
        Ok(o) if o.success() => match env_value(&o.stdout, "XDG_RUNTIME_DIR") {
            Some(v) if v == run => {}
            v => f.push(format!(
                "user manager's XDG_RUNTIME_DIR is {v:?}, want {run}"
            )),
        },
        Ok(o) => f.push(format!(
            "systemctl --user show-environment: {}",
            o.stderr.trim()
        )),
        Err(e) => f.push(e),
    }
    match input.run(Cmd::in_user_session(input.user, &["wpctl", "status"])) {
        Ok(o) if o.success() && o.stdout.contains("PipeWire") => {}
        Ok(o) => f.push(format!(
            "wpctl status failed: {}",
            first_words(&o.stderr, &o.stdout)
        )),
        Err(e) => f.push(e),
    }
    match input.run(Cmd::in_user_session(input.user, &["pactl", "info"])) {
        Ok(o) if o.success() => match pulse_server(&o.stdout) {
            Some(s)
                if s.trim_start_matches("unix:")
                    .starts_with(&format!("{run}/")) => {}
            s => f.push(format!("pactl talks to {s:?}, want {run}/pulse/native")),
        },
        Ok(o) => f.push(format!(
            "pactl info failed: {}",
            first_words(&o.stderr, &o.stdout)
        )),
        Err(e) => f.push(e),
    }
    gate(3, "wpctl and pactl as the user", f)
}

fn first_words(a: &str, b: &str) -> String {
    let t = if a.trim().is_empty() { b } else { a };
    t.lines().next().unwrap_or("no output").trim().to_string()
}

/// Sink names from `pactl list short sinks` (second tab-separated column).
pub fn short_names(list: &str) -> Vec<&str> {
    list.lines()
        .filter_map(|l| l.split('\t').nth(1))
        .map(str::trim)
        .collect()
}

/// (4) mugge's virtual devices exist and are the defaults; no hardware is a default.
pub fn gate4(input: &GateInput) -> Gate {
    let mut f = Vec::new();
    if input.state.user.is_none() {
        f.push(format!("user {} does not exist", input.user));
        return gate(4, "virtual devices are the defaults", f);
    }
    let pactl = |args: &[&str]| {
        let mut argv = vec!["pactl"];
        argv.extend_from_slice(args);
        input.run(Cmd::in_user_session(input.user, &argv))
    };
    match pactl(&["list", "short", "sinks"]) {
        Ok(o) if o.success() => {
            let names = short_names(&o.stdout);
            for s in VIRTUAL_SINKS {
                if !names.contains(&s) {
                    f.push(format!("sink {s} missing (have: {})", names.join(", ")));
                }
            }
        }
        Ok(o) => f.push(format!("pactl list short sinks: {}", o.stderr.trim())),
        Err(e) => f.push(e),
    }
    match pactl(&["get-default-sink"]) {
        Ok(o) if o.line() == DEFAULT_SINK => {}
        Ok(o) => f.push(format!(
            "default sink is {:?}, want {DEFAULT_SINK}",
            o.line()
        )),
        Err(e) => f.push(e),
    }
    match pactl(&["get-default-source"]) {
        Ok(o) if HARDWARE_NODES.contains(&o.line()) => {
            f.push(format!("default source is the hardware node {}", o.line()))
        }
        Ok(_) => {}
        Err(e) => f.push(e),
    }
    gate(4, "virtual devices are the defaults", f)
}

/// (5) mugge's user units (and the stack under them) are active; no system unit runs audio.
pub fn gate5(input: &GateInput) -> Gate {
    let mut f = Vec::new();
    if input.state.user.is_none() {
        f.push(format!("user {} does not exist", input.user));
    }
    let mut argv = vec!["is-active"];
    argv.extend(USER_UNITS);
    match input.run(Cmd::user_systemctl(input.user, &argv)) {
        _ if input.state.user.is_none() => {}
        // One answer line per unit, in order; is-active exits non-zero if any is not active.
        Ok(o) => {
            let lines: Vec<&str> = o.stdout.lines().map(str::trim).collect();
            for (i, unit) in USER_UNITS.iter().enumerate() {
                match lines.get(i) {
                    Some(&"active") => {}
                    Some(s) => f.push(format!("user unit {unit} is {s}")),
                    None => f.push(format!("user unit {unit}: no answer ({})", o.stderr.trim())),
                }
            }
        }
        Err(e) => f.push(e),
    }
    for u in &input.state.system_units {
        if let Ok(o) = input.run(Cmd::new("systemctl", ["is-active", u.name.as_str()])) {
            if o.line() == "active" {
                f.push(format!("system unit {} runs audio", u.name));
            }
        }
    }
    gate(5, "mugge user units active", f)
}
