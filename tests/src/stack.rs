//! A private, headless audio stack: D-Bus session bus, PipeWire, WirePlumber and the hardware mock.
//!
//! Everything lives in one temporary directory (runtime dir, configs, state, logs). Each `Stack` is
//! independent, so parallel tests never share one. Teardown kills the daemons by PID in reverse
//! start order; if the test process dies without unwinding, the kernel kills them (see `process`).

use crate::graph::{split_port, Graph};
use crate::process::{with_parent_death_signal, ChildGuard};
use crate::profile::Profile;
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How often the bounded waits look at the graph again.
const POLL: Duration = Duration::from_millis(20);
/// Default bound for waits during startup.
const STARTUP: Duration = Duration::from_secs(20);

/// The node names of the hardware mock (`conf/mock-hardware.conf`).
pub const HW_OUT: &str = "usbstreamer-out";
pub const HW_IN: &str = "usbstreamer-in";
pub const MIC: &str = "umik1-in";

/// The workspace root, for `conf/`, `wireplumber/` and the built plugin.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The freshly built plugin, if there is one: `$MUGGE_SPA_PLUGIN`, else
/// `<target>/{debug,release}/libspa_mugge.so`, newest first.
pub fn built_plugin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MUGGE_SPA_PLUGIN") {
        return Some(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let mut found: Vec<PathBuf> = ["debug", "release"]
        .iter()
        .map(|p| target.join(p).join("libspa_mugge.so"))
        .filter(|p| p.exists())
        .collect();
    found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found.pop()
}

/// The system's SPA plugin directory (from libspa-0.2.pc), kept on `SPA_PLUGIN_DIR`.
fn system_spa_dir() -> String {
    Command::new("pkg-config")
        .args(["--variable=plugindir", "libspa-0.2"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/usr/lib/x86_64-linux-gnu/spa-0.2".to_owned())
}

/// Options for a stack; `Stack::start()` is `StackBuilder::default().start()`.
#[derive(Debug, Clone)]
pub struct StackBuilder {
    quantum: Option<u32>,
    wireplumber: bool,
    mock_hardware: bool,
    pipewire_fragments: Vec<(String, String)>,
    wireplumber_fragments: Vec<(String, String)>,
    plugin: Option<PathBuf>,
}

impl Default for StackBuilder {
    fn default() -> Self {
        StackBuilder {
            quantum: None,
            wireplumber: true,
            mock_hardware: true,
            pipewire_fragments: Vec::new(),
            wireplumber_fragments: Vec::new(),
            plugin: built_plugin(),
        }
    }
}

impl StackBuilder {
    /// Forces this quantum after start and checks that it applied.
    pub fn quantum(mut self, q: u32) -> Self {
        self.quantum = Some(q);
        self
    }

    /// Runs without WirePlumber (adapter nodes then have no ports until a PortConfig is set).
    pub fn without_wireplumber(mut self) -> Self {
        self.wireplumber = false;
        self
    }

    /// Runs without the null devices that stand in for the interface and the mic.
    pub fn without_mock_hardware(mut self) -> Self {
        self.mock_hardware = false;
        self
    }

    /// Adds a `pipewire.conf.d` fragment to the daemon.
    pub fn pipewire_fragment(mut self, file_name: &str, text: &str) -> Self {
        self.pipewire_fragments
            .push((file_name.to_owned(), text.to_owned()));
        self
    }

    /// Adds a `wireplumber.conf.d` fragment after the project's own.
    pub fn wireplumber_fragment(mut self, file_name: &str, text: &str) -> Self {
        self.wireplumber_fragments
            .push((file_name.to_owned(), text.to_owned()));
        self
    }

    /// Uses this plugin file instead of the one found in the target directory.
    pub fn plugin(mut self, path: impl Into<PathBuf>) -> Self {
        self.plugin = Some(path.into());
        self
    }

    pub fn start(self) -> Result<Stack> {
        Stack::start_with(self)
    }
}

/// A running private stack. Dropping it stops everything it started.
pub struct Stack {
    // Reverse start order on drop: WirePlumber, PipeWire, D-Bus.
    daemons: Vec<ChildGuard>,
    root: tempfile::TempDir,
    runtime_dir: PathBuf,
    bus_address: String,
    spa_plugin_dir: String,
    has_mock_hardware: bool,
    has_wireplumber: bool,
}

impl Drop for Stack {
    fn drop(&mut self) {
        while let Some(mut d) = self.daemons.pop() {
            d.kill();
        }
    }
}

impl Stack {
    /// The default stack: PipeWire with the project config and the hardware mock, WirePlumber with
    /// the project's fragments, a private session bus, the built plugin on the plugin path.
    pub fn start() -> Result<Stack> {
        StackBuilder::default().start()
    }

    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    fn start_with(b: StackBuilder) -> Result<Stack> {
        let root = tempfile::Builder::new()
            .prefix("mugge-stack-")
            .tempdir_in("/tmp")?;
        let runtime_dir = root.path().join("run");
        mkdir_private(&runtime_dir)?;
        let spa_plugin_dir = prepare_plugin_dir(root.path(), b.plugin.as_deref())?;
        let mut stack = Stack {
            daemons: Vec::new(),
            runtime_dir,
            bus_address: String::new(),
            spa_plugin_dir,
            has_mock_hardware: b.mock_hardware,
            has_wireplumber: b.wireplumber,
            root,
        };
        stack.start_dbus()?;
        stack.start_pipewire(&b)?;
        if b.wireplumber {
            stack.start_wireplumber(&b)?;
        }
        if b.mock_hardware {
            stack.wait_for_mock_hardware()?;
        }
        if let Some(q) = b.quantum {
            stack.set_quantum(q)?;
        }
        Ok(stack)
    }

    fn start_dbus(&mut self) -> Result<()> {
        let socket = self.runtime_dir.join("bus");
        let mut cmd = Command::new("dbus-daemon");
        cmd.args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .env("XDG_RUNTIME_DIR", &self.runtime_dir);
        let mut child = with_parent_death_signal(&cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.log_path("dbus"))?)
            .spawn()
            .context("starting dbus-daemon (package dbus-daemon)")?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from dbus-daemon"))?;
        let guard = ChildGuard::adopt("dbus-daemon", child);
        self.daemons.push(guard);
        // The address line is printed once the bus listens: readiness without a sleep.
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line.trim();
        if addr.is_empty() {
            bail!(
                "dbus-daemon exited before printing its address: {}",
                self.log("dbus")
            );
        }
        self.bus_address = addr.to_owned();
        Ok(())
    }

    fn start_pipewire(&mut self, b: &StackBuilder) -> Result<()> {
        let conf_dir = self.root.path().join("pipewire");
        let frag_dir = conf_dir.join("pipewire.conf.d");
        std::fs::create_dir_all(&frag_dir)?;
        let ws = workspace_root();
        std::fs::copy(
            ws.join("conf/pipewire-headless.conf"),
            conf_dir.join("pipewire.conf"),
        )
        .context("copying conf/pipewire-headless.conf")?;
        if b.mock_hardware {
            std::fs::copy(
                ws.join("conf/mock-hardware.conf"),
                frag_dir.join("10-mock-hardware.conf"),
            )?;
        }
        // The production fragments (mugge's virtual devices) load in every stack, as on the box.
        for entry in std::fs::read_dir(ws.join("conf/pipewire.conf.d"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "conf") {
                std::fs::copy(&path, frag_dir.join(path.file_name().unwrap_or_default()))?;
            }
        }
        for (name, text) in &b.pipewire_fragments {
            std::fs::write(frag_dir.join(name), text)?;
        }
        let mut cmd = Command::new("pipewire");
        self.apply_env(&mut cmd);
        // Only the daemon reads the private config dir; clients keep the system client.conf.
        cmd.env("PIPEWIRE_CONFIG_DIR", &conf_dir);
        let log = self.log_path("pipewire");
        self.daemons
            .push(ChildGuard::spawn("pipewire", &cmd, &log)?);
        let socket = self.runtime_dir.join("pipewire-0");
        self.wait_for("the PipeWire socket", STARTUP, || Ok(socket.exists()))?;
        self.wait_for("PipeWire to answer", STARTUP, || {
            Ok(self.try_dump().is_ok())
        })
    }

    fn start_wireplumber(&mut self, b: &StackBuilder) -> Result<()> {
        let frag_dir = self.config_home().join("wireplumber/wireplumber.conf.d");
        std::fs::create_dir_all(&frag_dir)?;
        for entry in std::fs::read_dir(workspace_root().join("wireplumber"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "conf") {
                std::fs::copy(&path, frag_dir.join(path.file_name().unwrap_or_default()))?;
            }
        }
        for (name, text) in &b.wireplumber_fragments {
            std::fs::write(frag_dir.join(name), text)?;
        }
        let mut cmd = Command::new("wireplumber");
        self.apply_env(&mut cmd);
        let log = self.log_path("wireplumber");
        self.daemons
            .push(ChildGuard::spawn("wireplumber", &cmd, &log)?);
        // WirePlumber publishes its settings metadata once its profile has loaded.
        self.wait_until("WirePlumber's sm-settings metadata", STARTUP, |g| {
            g.metadata.iter().any(|m| {
                m.pointer("/props/metadata.name").and_then(|v| v.as_str()) == Some("sm-settings")
            })
        })
        .map(|_| ())
    }

    fn wait_for_mock_hardware(&self) -> Result<()> {
        if !self.has_wireplumber {
            // Without a session manager nobody sets a PortConfig: the nodes exist without ports.
            for n in [HW_OUT, HW_IN, MIC] {
                self.wait_for_node(n, STARTUP)?;
            }
            return Ok(());
        }
        self.wait_until(
            "the mock hardware's ports (8 out, 8 in, 1 mic)",
            STARTUP,
            |g| {
                // A virtual source's capture ports are its internal sink's monitor ports, so count
                // by direction only.
                let count = |node: &str, dir: &str| {
                    g.node(node)
                        .map(|n| {
                            g.ports_of(n.id)
                                .iter()
                                .filter(|p| p.direction == dir)
                                .count()
                        })
                        .unwrap_or(0)
                };
                count(HW_OUT, "input") == 8
                    && count(HW_IN, "output") == 8
                    && count(MIC, "output") == 1
            },
        )
        .map(|_| ())
    }

    /// The private `XDG_RUNTIME_DIR`.
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// The private session bus address.
    pub fn bus_address(&self) -> &str {
        &self.bus_address
    }

    /// The directory that holds everything of this stack (logs under `logs/`).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    fn config_home(&self) -> PathBuf {
        self.root.path().join("config")
    }

    fn log_path(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join("logs");
        let _ = std::fs::create_dir_all(&dir);
        dir.join(format!("{name}.log"))
    }

    /// A daemon's log so far ("pipewire", "wireplumber", "dbus").
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// The environment a client of this stack needs.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        vec![
            ("XDG_RUNTIME_DIR".into(), self.runtime_dir.clone().into()),
            (
                "DBUS_SESSION_BUS_ADDRESS".into(),
                self.bus_address.clone().into(),
            ),
            ("XDG_CONFIG_HOME".into(), self.config_home().into()),
            (
                "XDG_STATE_HOME".into(),
                self.root.path().join("state").into(),
            ),
            ("SPA_PLUGIN_DIR".into(), self.spa_plugin_dir.clone().into()),
            ("PIPEWIRE_LOG_SYSTEMD".into(), "false".into()),
        ]
    }

    fn apply_env(&self, cmd: &mut Command) {
        for var in [
            "PIPEWIRE_REMOTE",
            "PIPEWIRE_RUNTIME_DIR",
            "PIPEWIRE_CONFIG_DIR",
            "PIPEWIRE_CORE",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(self.env());
    }

    /// A command that talks to this stack (env set, nothing spawned yet).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        self.apply_env(&mut cmd);
        cmd
    }

    /// Starts a long-running client of this stack; it is killed when the guard drops and dies
    /// with the test process. Its output goes to `logs/<name>.log`.
    pub fn spawn(&self, name: &str, cmd: &Command) -> Result<ChildGuard> {
        let mut cmd = with_env_of(cmd);
        self.apply_env(&mut cmd);
        ChildGuard::spawn(name, &cmd, &self.log_path(name))
    }

    /// Runs a short command against the stack and returns its output; fails on a non-zero exit.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program}"))?;
        check_output(program, args, &out)
    }

    /// `pw-cli` with arguments; fails when it exits non-zero or reports an error.
    pub fn pw_cli(&self, args: &[&str]) -> Result<String> {
        let out = self.run("pw-cli", args)?;
        if out.lines().any(|l| l.trim_start().starts_with("Error:")) {
            bail!("pw-cli {}: {}", args.join(" "), out.trim());
        }
        Ok(out)
    }

    fn try_dump(&self) -> Result<Graph> {
        let out = self
            .command("pw-dump")
            .output()
            .context("running pw-dump")?;
        let text = check_output("pw-dump", &[], &out)?;
        Graph::parse(&text)
    }

    /// The graph now, as `pw-dump` reports it.
    pub fn dump(&self) -> Result<Graph> {
        self.try_dump()
            .with_context(|| format!("PipeWire log:\n{}", tail(&self.log("pipewire"), 20)))
    }

    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            if ready().unwrap_or(false) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "timed out after {:?} waiting for {what}\n--- pipewire log ---\n{}\n--- wireplumber log ---\n{}",
                    timeout,
                    tail(&self.log("pipewire"), 20),
                    tail(&self.log("wireplumber"), 20)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits (bounded) until `pred` holds for the graph; returns that graph.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Graph) -> bool,
    ) -> Result<Graph> {
        let start = Instant::now();
        loop {
            if let Ok(g) = self.try_dump() {
                if pred(&g) {
                    return Ok(g);
                }
                if start.elapsed() > timeout {
                    bail!(
                        "timed out after {timeout:?} waiting for {what}; graph has nodes {:?}",
                        g.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>()
                    );
                }
            } else if start.elapsed() > timeout {
                bail!("timed out after {timeout:?} waiting for {what}; pw-dump fails");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for a node by `node.name`.
    pub fn wait_for_node(&self, name: &str, timeout: Duration) -> Result<crate::graph::Node> {
        let g = self.wait_until(&format!("node {name}"), timeout, |g| g.node(name).is_some())?;
        g.node(name)
            .cloned()
            .ok_or_else(|| anyhow!("node {name} vanished"))
    }

    /// Waits for the port `port` of node `node`.
    pub fn wait_for_port(
        &self,
        node: &str,
        port: &str,
        timeout: Duration,
    ) -> Result<crate::graph::Port> {
        let g = self.wait_until(&format!("port {node}:{port}"), timeout, |g| {
            g.port(node, port).is_some()
        })?;
        g.port(node, port)
            .cloned()
            .ok_or_else(|| anyhow!("port {node}:{port} vanished"))
    }

    /// Waits for a link between two `"node:port"` ends.
    pub fn wait_for_link(
        &self,
        out: &str,
        inp: &str,
        timeout: Duration,
    ) -> Result<crate::graph::Link> {
        let g = self.wait_until(&format!("link {out} -> {inp}"), timeout, |g| {
            g.link(out, inp).is_some()
        })?;
        g.link(out, inp)
            .cloned()
            .ok_or_else(|| anyhow!("link {out} -> {inp} vanished"))
    }

    /// Links two `"node:port"` ends with `pw-link` (the link lingers after pw-link exits).
    pub fn link(&self, out: &str, inp: &str) -> Result<()> {
        split_port(out)?;
        split_port(inp)?;
        self.run("pw-link", &[out, inp]).map(|_| ())
    }

    /// Links two `"node:port"` ends and waits (bounded) until the link is active. Until then
    /// the input port reads silence while its node may already run, so a capture that counts
    /// frames must start counting after this.
    pub fn link_active(&self, out: &str, inp: &str, timeout: Duration) -> Result<()> {
        self.link(out, inp)?;
        self.wait_until(&format!("link {out} -> {inp} active"), timeout, |g| {
            g.link(out, inp).is_some_and(|l| l.state == "active")
        })
        .map(|_| ())
    }

    /// Forces the graph quantum and checks, from the profiler's clock, that it really applied.
    pub fn set_quantum(&self, q: u32) -> Result<()> {
        let qs = q.to_string();
        self.run(
            "pw-metadata",
            &["-n", "settings", "0", "clock.force-quantum", &qs],
        )?;
        if !self.has_mock_hardware {
            return Ok(());
        }
        let start = Instant::now();
        loop {
            let p = self.profile(16)?;
            if p.quantum == q {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!(
                    "asked for quantum {q}, the driver runs at {} (clamped by min/max-quantum?)",
                    p.quantum
                );
            }
        }
    }

    /// Records `cycles` graph cycles with the profiler and summarises every node's busy time.
    pub fn profile(&self, cycles: usize) -> Result<Profile> {
        let n = cycles.to_string();
        let out = self.run("pw-profiler", &["-J", "-n", &n])?;
        Profile::parse(&out)
    }
}

/// A copy of `cmd` (program, args, env, cwd) that can be re-spawned.
fn with_env_of(cmd: &Command) -> Command {
    let mut c = Command::new(cmd.get_program());
    c.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    c
}

fn check_output(program: &str, args: &[&str], out: &Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn mkdir_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// `<root>/spa/mugge/libspa-mugge.so` -> the built plugin; returns the `SPA_PLUGIN_DIR` value
/// with the system directory kept behind it.
fn prepare_plugin_dir(root: &Path, plugin: Option<&Path>) -> Result<String> {
    let dir = root.join("spa");
    let system = system_spa_dir();
    if let Some(p) = plugin {
        let p = p
            .canonicalize()
            .with_context(|| format!("plugin {}", p.display()))?;
        std::fs::create_dir_all(dir.join("mugge"))?;
        std::os::unix::fs::symlink(&p, dir.join("mugge/libspa-mugge.so"))?;
        return Ok(format!("{}:{system}", dir.display()));
    }
    Ok(system)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
