//! Shared helpers for the controller's integration tests: a stack (with the virtual sinks), a
//! stand-in filter-chain (PipeWire's own filter-chain module with plain copies), the daemon
//! and a D-Bus client on the stack's private bus.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use mugge_controller::client::ControllerProxyBlocking;
use mugge_testkit::{ChildGuard, Graph, Stack};

pub const T: Duration = Duration::from_secs(10);

pub fn stack() -> Stack {
    // Every stack carries the production virtual devices (conf/pipewire.conf.d).
    let stack = Stack::start().expect("stack");
    for s in ["mugge-program", "mugge-headphones", "mugge-inears"] {
        stack
            .wait_for_port(s, "monitor_FR", T)
            .expect("virtual sink ports");
    }
    stack
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Starts the stand-in filter-chain and waits for both of its nodes' ports.
pub fn filter_chain(stack: &Stack) -> ChildGuard {
    let mut cmd = stack.command("pipewire");
    cmd.arg("-c").arg(fixture("filter-chain-copy.conf"));
    let g = stack.spawn("filter-chain", &cmd).expect("filter-chain");
    stack
        .wait_for_port("mugge-filters-out.main", "output_AUX3", T)
        .expect("filters-out ports");
    stack
        .wait_for_port("mugge-filters-in.main", "playback_FR", T)
        .expect("filters-in ports");
    g
}

pub const BASE_CONFIG: &str = "require_plugins = false\nready_timeout_ms = 5000\n";

/// Apps as JACK-style test clients: `Mixxx` (4 ch) in DJ, `REAPER` (6 ch) in Live, no command
/// (nothing to start).
pub const APPS: &str = r#"
[apps.dj]
node = "Mixxx"
program = [1, 2]
headphones = [3, 4]

[apps.live]
node = "REAPER"
program = [1, 2]
headphones = [3, 4]
inears = [5, 6]
"#;

pub struct Controller {
    pub guard: ChildGuard,
    pub config: PathBuf,
}

/// Writes the config and starts `mugge daemon`; returns once it owns its bus name.
pub fn controller(stack: &Stack, config: &str, name: &str) -> Controller {
    let path = stack.root().join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    let guard = spawn_controller(stack, &path, name);
    Controller {
        guard,
        config: path,
    }
}

pub fn spawn_controller(stack: &Stack, config: &PathBuf, name: &str) -> ChildGuard {
    let mut cmd = stack.command(env!("CARGO_BIN_EXE_mugge"));
    cmd.arg("daemon")
        .arg("--config")
        .arg(config)
        .env("MUGGE_LOG", "info");
    let guard = stack.spawn(name, &cmd).expect("spawn controller");
    let start = Instant::now();
    loop {
        if let Ok(p) = proxy(stack) {
            if p.mode().is_ok() {
                break;
            }
        }
        assert!(
            start.elapsed() < T,
            "controller did not come up:\n{}",
            stack.log(name)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    guard
}

pub fn bus(stack: &Stack) -> zbus::blocking::Connection {
    zbus::blocking::connection::Builder::address(stack.bus_address())
        .unwrap()
        .build()
        .unwrap()
}

/// An uncached proxy: every property read asks the daemon (a cached value is updated by a
/// signal that may be processed after a method reply).
pub fn proxy(stack: &Stack) -> Result<ControllerProxyBlocking<'static>> {
    let conn = bus(stack);
    Ok(ControllerProxyBlocking::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()?)
}

/// D-Bus error name of a failed call.
pub fn error_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        e => format!("{e}"),
    }
}

pub fn is_plugin(name: &str) -> bool {
    name.starts_with("mugge-meter-") || name.starts_with("mugge-tap-") || name == "mugge-siggen"
}

pub const MANAGED: &[&str] = &[
    "usbstreamer-out",
    "usbstreamer-in",
    "umik1-in",
    "mugge-program",
    "mugge-headphones",
    "mugge-inears",
    "mugge-filters-in.main",
    "mugge-filters-out.main",
];

/// Links (as "node:port" pairs) touching the managed nodes or `extra`, without plugin nodes
/// (which exist only when the mugge plugin is built).
pub fn managed_links(g: &Graph, extra: &[&str]) -> Vec<(String, String)> {
    let managed = |id: u32| {
        g.node_by_id(id)
            .map(|n| MANAGED.contains(&n.name.as_str()) || extra.contains(&n.name.as_str()))
            .unwrap_or(false)
    };
    let plugin = |id: u32| {
        g.node_by_id(id)
            .map(|n| is_plugin(&n.name))
            .unwrap_or(false)
    };
    let mut v: Vec<(String, String)> = g
        .links
        .iter()
        .filter(|l| {
            (managed(l.output_node) || managed(l.input_node))
                && !plugin(l.output_node)
                && !plugin(l.input_node)
        })
        .map(|l| {
            (
                g.describe_port(l.output_port),
                g.describe_port(l.input_port),
            )
        })
        .collect();
    v.sort();
    v
}

pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

/// The 4 speaker links of the stand-in filter-chain: output channel N -> hardware channel N.
pub fn speakers() -> Vec<(String, String)> {
    (0..4)
        .map(|i| {
            (
                format!("mugge-filters-out.main:output_AUX{i}"),
                format!("usbstreamer-out:playback_AUX{i}"),
            )
        })
        .collect()
}

/// The links every playing mode has with the stand-in chain: speakers, program -> filter-chain,
/// headphones -> hardware channels 5-6 (DJ and Measurement exactly; Live adds the in-ears).
pub fn program_links() -> Vec<(String, String)> {
    let mut v = speakers();
    v.extend(pairs(&[
        (
            "mugge-program:monitor_FL",
            "mugge-filters-in.main:playback_FL",
        ),
        (
            "mugge-program:monitor_FR",
            "mugge-filters-in.main:playback_FR",
        ),
        (
            "mugge-headphones:monitor_FL",
            "usbstreamer-out:playback_AUX4",
        ),
        (
            "mugge-headphones:monitor_FR",
            "usbstreamer-out:playback_AUX5",
        ),
    ]));
    v
}

/// `v` plus the DJ application's routes (Mixxx 1-2 -> program, 3-4 -> headphones).
pub fn with_mixxx(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.extend(pairs(&[
        ("Mixxx:output_AUX0", "mugge-program:playback_FL"),
        ("Mixxx:output_AUX1", "mugge-program:playback_FR"),
        ("Mixxx:output_AUX2", "mugge-headphones:playback_FL"),
        ("Mixxx:output_AUX3", "mugge-headphones:playback_FR"),
    ]));
    v
}

/// Waits until the managed links equal `want` exactly; returns the graph.
pub fn wait_links(stack: &Stack, want: &[(String, String)], extra: &[&str]) -> Result<Graph> {
    let mut want = want.to_vec();
    want.sort();
    let start = Instant::now();
    loop {
        let g = stack.dump()?;
        let have = managed_links(&g, extra);
        if have == want {
            return Ok(g);
        }
        if start.elapsed() > T {
            let missing: BTreeSet<_> = want.iter().filter(|w| !have.contains(w)).collect();
            let unexpected: BTreeSet<_> = have.iter().filter(|h| !want.contains(h)).collect();
            bail!("links differ: missing {missing:?}, unexpected {unexpected:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `pw-link` behind the controller's back. pw-link can wait forever for a link that is
/// destroyed under it, so it gets a bound.
pub fn rogue_link(stack: &Stack, out: &str, inp: &str) {
    let _ = stack
        .command("timeout")
        .args(["3", "pw-link", out, inp])
        .output()
        .unwrap();
}

/// One real-convolution stack at a time: several (two 16,384-tap chains each) on a shared
/// 2-core machine starve the test's own player and blur the levels being checked.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops the chains a test's controllers started (their command line names the stack's
/// directory): they run in their own session on purpose and would outlive the stack.
pub struct Chains(pub PathBuf);
impl Drop for Chains {
    fn drop(&mut self) {
        let needle = self.0.display().to_string();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&needle) {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

/// Copies the files of one directory (profiles, speakers) into another.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
