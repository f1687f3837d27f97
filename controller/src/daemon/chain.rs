//! The filter-chain instance of a deployed set: a `pipewire -c <config>` process in its own
//! session, so that audio survives a controller crash, known in the graph by its nodes
//! `mugge-filters-{in,out}.<tag>` (property `mugge.set`) and by its client's process id.
//!
//! A chain is always started from a muted copy of the set's config (every `ch<N>_gain:Mult`
//! = 0): its filters and delays are in place before any gain rises, and gains only rise
//! through the controller's ramp.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use mugge_filter_chain::set::{self, Manifest};
use serde::{Deserialize, Serialize};

use super::graph::Graph;
use super::props::gain_control;
use super::routing::{FILTERS_IN_PREFIX, FILTERS_OUT_PREFIX};

/// `[activation]` in the controller config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivationConfig {
    /// Profile activated (muted) at first start when no chain runs; none: the controller
    /// starts no chain by itself.
    pub default_profile: Option<String>,
    /// Where `ActivateProfile(name)` finds `<name>.toml`.
    pub profiles_dir: PathBuf,
    /// Where generated sets go (default `$XDG_STATE_HOME/mugge/sets`).
    pub sets_dir: Option<PathBuf>,
    /// Mute ramp before a topology change.
    pub mute_ms: u64,
    /// Ramp up to the profile's trims after an activation, in `ramp_steps` equal steps.
    pub ramp_ms: u64,
    pub ramp_steps: u32,
    /// How long a new chain may take to show its nodes.
    pub chain_timeout_ms: u64,
    /// ReloadFilters: equal-gain crossfade from the old chain to the new one.
    pub crossfade_ms: u64,
    pub crossfade_steps: u32,
    /// Mic interlock during a ramp up: with a limit set, `umik1-in` gets a meter
    /// (`mugge-meter-mic`), and while it is linked a ramp stops and mutes when the mic's peak
    /// exceeds this many dB SPL or its signal vanishes. None: no interlock.
    pub mic_spl_limit_db: Option<f64>,
    /// The mic's reading in dBFS for 94 dB SPL (its calibration): SPL = dBFS - this + 94.
    pub mic_dbfs_at_94_db_spl: f64,
    /// A mic peak at or below this (dBFS) is a vanished signal (digital silence).
    pub mic_silence_dbfs: f64,
}

impl Default for ActivationConfig {
    fn default() -> Self {
        ActivationConfig {
            default_profile: None,
            profiles_dir: PathBuf::from("/usr/share/mugge/profiles"),
            sets_dir: None,
            mute_ms: 10,
            ramp_ms: 3000,
            ramp_steps: 30,
            chain_timeout_ms: 10_000,
            crossfade_ms: 200,
            crossfade_steps: 20,
            mic_spl_limit_db: None,
            mic_dbfs_at_94_db_spl: -18.0,
            mic_silence_dbfs: -100.0,
        }
    }
}

impl ActivationConfig {
    pub fn sets_dir(&self) -> PathBuf {
        self.sets_dir.clone().unwrap_or_else(default_sets_dir)
    }
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1000).contains(&self.ramp_steps) || !(1..=1000).contains(&self.crossfade_steps) {
            return Err("activation.ramp_steps and crossfade_steps must be 1..=1000".into());
        }
        if self.ramp_ms > 60_000 || self.mute_ms > 1000 {
            return Err("activation.ramp_ms must be <= 60000 and mute_ms <= 1000".into());
        }
        if self
            .mic_spl_limit_db
            .is_some_and(|l| !(40.0..=140.0).contains(&l))
        {
            return Err("activation.mic_spl_limit_db must be 40..=140 dB SPL".into());
        }
        if !(-80.0..=0.0).contains(&self.mic_dbfs_at_94_db_spl)
            || !(-200.0..=-40.0).contains(&self.mic_silence_dbfs)
        {
            return Err(
                "activation.mic_dbfs_at_94_db_spl must be -80..=0 and mic_silence_dbfs -200..=-40"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Gain factors (0..=1, of the trims) of a ramp from `from` to `to` in `steps` equal steps,
/// the last one exactly `to`.
pub fn ramp(from: f32, to: f32, steps: u32) -> Vec<f32> {
    let n = steps.max(1);
    (1..=n)
        .map(|k| {
            if k == n {
                to
            } else {
                from + (to - from) * k as f32 / n as f32
            }
        })
        .collect()
}

/// A chain seen in the graph (running, started by us or by a previous run).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChainSeen {
    pub tag: String,
    pub set: String,
    pub profile: String,
    /// The client's `application.process.id`, once its client is known.
    pub pid: Option<u32>,
    /// Both nodes (in and out) are present.
    pub complete: bool,
    /// Highest `object.serial` of its nodes: serials only grow, so the larger is the newer.
    pub serial: u64,
}

/// Chains in the graph: nodes named `mugge-filters-{in,out}.<tag>` that carry `mugge.set`.
/// `clients` maps a client id to its process id.
pub fn seen(g: &Graph, clients: &std::collections::HashMap<u32, u32>) -> Vec<ChainSeen> {
    let mut out: std::collections::BTreeMap<String, (ChainSeen, u8)> = Default::default();
    for n in g.nodes.values() {
        let (tag, bit) = if let Some(t) = n.name.strip_prefix(FILTERS_IN_PREFIX) {
            (t, 1)
        } else if let Some(t) = n.name.strip_prefix(FILTERS_OUT_PREFIX) {
            (t, 2)
        } else {
            continue;
        };
        let Some(set) = n.props.get("mugge.set") else {
            continue;
        };
        let pid = n
            .props
            .get("client.id")
            .and_then(|c| c.parse::<u32>().ok())
            .and_then(|c| clients.get(&c).copied());
        let e = out.entry(tag.to_string()).or_insert_with(|| {
            (
                ChainSeen {
                    tag: tag.to_string(),
                    set: set.clone(),
                    profile: n.props.get("mugge.profile").cloned().unwrap_or_default(),
                    pid: None,
                    complete: false,
                    serial: 0,
                },
                0,
            )
        });
        e.0.pid = e.0.pid.or(pid);
        let serial = n.props.get("object.serial").and_then(|s| s.parse().ok());
        e.0.serial = e.0.serial.max(serial.unwrap_or(0));
        e.1 |= bit;
    }
    out.into_values()
        .map(|(mut c, bits)| {
            c.complete = bits == 3;
            c
        })
        .collect()
}

/// Where generated sets live: `$XDG_STATE_HOME/mugge/sets` (default `~/.local/state/...`).
pub fn default_sets_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"))
        .join("mugge/sets")
}

/// Validates, designs and gates `profile` into `<sets_dir>/<tag>-<unique>`; on any failure
/// nothing is left behind and nothing running is touched. The design runs as a `nice -n 19`
/// child (`mugge filters generate`): it uses every core for a while and must not take them from
/// the chain that is still playing.
pub fn generate(profile: &Path, sets_dir: &Path, tag: &str) -> Result<(PathBuf, Manifest)> {
    std::fs::create_dir_all(sets_dir)
        .with_context(|| format!("cannot create {}", sets_dir.display()))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let dir = std::fs::canonicalize(sets_dir)?.join(format!("{tag}-{stamp}"));
    let exe = std::env::current_exe().context("cannot find the mugge binary")?;
    let out = Command::new("nice")
        .args(["-n", "19"])
        .arg(exe)
        .args(["filters", "generate", "--profile"])
        .arg(profile)
        .arg("--out")
        .arg(&dir)
        .arg("--tag")
        .arg(tag)
        .stdin(Stdio::null())
        .output()
        .context("cannot run mugge filters generate")?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let m = set::read_manifest(&dir)?;
    Ok((dir, m))
}

/// The set's speaker trims as `ch<N>_gain:Mult` targets (linear, as the config writes them).
pub fn trims(m: &Manifest) -> Vec<(u32, f32)> {
    m.channels
        .iter()
        .map(|c| (c.channel, 10f64.powf(c.trim_db / 20.0) as f32))
        .collect()
}

/// Controls setting every speaker gain to `factor` x its trim.
pub fn gain_controls(trims: &[(u32, f32)], factor: f32) -> Vec<(String, f32)> {
    trims
        .iter()
        .map(|(ch, t)| (gain_control(*ch), t * factor))
        .collect()
}

/// The factor of the trims a chain plays at, from its `ch<N>_gain:Mult` controls as read
/// back: the largest control/trim ratio over the speaker channels (a ramp down from it never
/// rises, a ramp up from it never jumps). `None` when a speaker channel's control is missing.
pub fn factor_of(controls: &[(String, f32)], trims: &[(u32, f32)]) -> Option<f32> {
    let mut factor: Option<f32> = None;
    for (ch, trim) in trims {
        let v = controls.iter().find(|c| c.0 == gain_control(*ch))?.1;
        let f = if *trim > 0.0 { v / trim } else { 0.0 };
        factor = Some(factor.map_or(f, |x| x.max(f)));
    }
    factor.map(|f| f.max(0.0))
}

/// The set's config with every `ch<N>_gain` Mult at 0.
pub fn muted_config(text: &str) -> String {
    text.lines()
        .map(|l| {
            let gain = l.contains("label = linear")
                && l.split("name = ")
                    .nth(1)
                    .is_some_and(|r| r.starts_with("ch") && r.contains("_gain "));
            match (gain, l.find("\"Mult\" = ")) {
                (true, Some(i)) => {
                    let start = i + "\"Mult\" = ".len();
                    let end = l[start..]
                        .find(char::is_whitespace)
                        .map_or(l.len(), |e| start + e);
                    format!("{}0.0{}", &l[..start], &l[end..])
                }
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A chain process we know: started by this run (`child`) or adopted by PID.
#[derive(Debug)]
pub struct Running {
    pub tag: String,
    pub set: String,
    pub pid: u32,
    child: Option<Child>,
}

impl Running {
    pub fn adopted(c: &ChainSeen) -> Option<Self> {
        Some(Running {
            tag: c.tag.clone(),
            set: c.set.clone(),
            pid: c.pid?,
            child: None,
        })
    }
}

/// Every filter file the config names must be a file inside the set's own directory (which
/// `set::verify` checked). PipeWire 1.4 loads convolver files only when the graph starts, and a
/// missing one leaves nodes that say "running" and play nothing: catch it before starting.
pub fn check_files(dir: &Path, text: &str) -> Result<()> {
    let dir = std::fs::canonicalize(dir)?;
    for part in text.split("filename = \"").skip(1) {
        let Some(path) = part.split('"').next() else {
            continue;
        };
        let ok = std::fs::canonicalize(path)
            .map(|p| p.parent() == Some(dir.as_path()) && p.is_file())
            .unwrap_or(false);
        if !ok {
            bail!(
                "the set's config names a filter outside the set or missing: {path} (set {})",
                dir.display()
            );
        }
    }
    Ok(())
}

/// The config with its instance tag changed from `from` to `to` (node names, `mugge.tag`), so
/// that any set can run beside the active chain.
pub fn retag(text: &str, from: &str, to: &str) -> String {
    if from == to {
        return text.to_string();
    }
    text.replace(
        &format!("mugge.tag = \"{from}\""),
        &format!("mugge.tag = \"{to}\""),
    )
    .replace(
        &format!("node.name = \"{FILTERS_IN_PREFIX}{from}\""),
        &format!("node.name = \"{FILTERS_IN_PREFIX}{to}\""),
    )
    .replace(
        &format!("node.name = \"{FILTERS_OUT_PREFIX}{from}\""),
        &format!("node.name = \"{FILTERS_OUT_PREFIX}{to}\""),
    )
}

/// Starts the set in `dir` muted as instance `tag`, in its own session (`setsid`), logging
/// next to the set.
pub fn start(dir: &Path, m: &Manifest, tag: &str) -> Result<Running> {
    let conf = dir.join("filter-chain.conf");
    let text = std::fs::read_to_string(&conf)
        .with_context(|| format!("cannot read {}", conf.display()))?;
    check_files(dir, &text)?;
    let muted = dir.with_extension(format!("{tag}.muted.conf"));
    std::fs::write(&muted, muted_config(&retag(&text, &m.tag, tag)))
        .with_context(|| format!("cannot write {}", muted.display()))?;
    let log = std::fs::File::create(dir.with_extension(format!("{tag}.log")))?;
    // setsid execs pipewire in place (our child is never a group leader): the PID is the
    // chain's, and it has no controlling terminal or process group to die with.
    let child = Command::new("setsid")
        .arg("pipewire")
        .arg("-c")
        .arg(&muted)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start the filter-chain (setsid pipewire)")?;
    tracing::info!(
        "started filter-chain {tag} (set {}) as PID {}",
        m.set_id,
        child.id()
    );
    Ok(Running {
        tag: tag.to_string(),
        set: m.set_id.clone(),
        pid: child.id(),
        child: Some(child),
    })
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purpose (its nodes are gone).
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, r)| !r.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Stops the chain by PID: TERM, then KILL after `grace`. Reaps it if it is our child.
pub fn stop(mut r: Running, grace: Duration) -> Result<()> {
    if let Some(c) = r.child.as_mut() {
        if c.try_wait()?.is_some() {
            return Ok(());
        }
    }
    signal(r.pid, "TERM");
    let t0 = Instant::now();
    while alive(r.pid) && t0.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(10));
    }
    if alive(r.pid) {
        signal(r.pid, "KILL");
    }
    if let Some(mut c) = r.child.take() {
        c.wait()?;
    } else {
        let t0 = Instant::now();
        while alive(r.pid) {
            if t0.elapsed() > grace {
                bail!("filter-chain PID {} does not stop", r.pid);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    tracing::info!("stopped filter-chain {} (PID {})", r.tag, r.pid);
    Ok(())
}

/// Whether the process we started has exited (the chain failed to come up).
pub fn exited(r: &mut Running) -> Option<String> {
    match r.child.as_mut().map(|c| c.try_wait()) {
        Some(Ok(Some(st))) => Some(format!("filter-chain exited: {st}")),
        _ if !alive(r.pid) => Some("filter-chain is gone".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_factor_is_read_back_from_the_gain_controls() {
        let trims = [(1, 0.5), (2, 0.25)];
        let c = |a: f32, b: f32| vec![(gain_control(1), a), (gain_control(2), b)];
        assert_eq!(factor_of(&c(0.25, 0.125), &trims), Some(0.5));
        assert_eq!(factor_of(&c(0.0, 0.0), &trims), Some(0.0));
        // Unequal ratios: the larger one.
        assert_eq!(factor_of(&c(0.5, 0.0), &trims), Some(1.0));
        assert_eq!(factor_of(&[(gain_control(1), 0.5)], &trims), None);
        assert_eq!(factor_of(&[], &[]), None);
    }

    #[test]
    fn ramps_are_monotonic_equal_steps_ending_exactly_on_target() {
        let up = ramp(0.0, 1.0, 4);
        assert_eq!(up, vec![0.25, 0.5, 0.75, 1.0]);
        let down = ramp(0.8, 0.0, 3);
        assert!(down.windows(2).all(|w| w[1] < w[0]));
        assert_eq!(*down.last().unwrap(), 0.0);
        assert_eq!(ramp(0.0, 1.0, 0), vec![1.0]);
    }

    #[test]
    fn config_filters_must_be_files_of_the_set_itself() {
        let root = std::env::temp_dir().join(format!("mugge-chain-test-{}", std::process::id()));
        let set = root.join("set");
        std::fs::create_dir_all(&set).unwrap();
        std::fs::write(set.join("ch1.wav"), b"x").unwrap();
        std::fs::write(root.join("ch2.wav"), b"x").unwrap();
        let name = |p: &Path| format!("filename = \"{}\"", p.display());
        let inside = name(&set.join("ch1.wav"));
        assert!(check_files(&set, &inside).is_ok());
        let outside = format!("{inside} {}", name(&root.join("ch2.wav")));
        assert!(check_files(&set, &outside).is_err());
        let missing = name(&set.join("ch3.wav"));
        assert!(check_files(&set, &missing).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn retag_renames_nodes_and_tag_only() {
        let t = r#"mugge.set = "s1" mugge.tag = "a" node.name = "mugge-filters-in.a"
node.name = "mugge-filters-out.a" filename = "/x/a/ch1.wav""#;
        let r = retag(t, "a", "b");
        assert!(r.contains(r#"mugge.tag = "b""#));
        assert!(r.contains(r#"node.name = "mugge-filters-in.b""#));
        assert!(r.contains(r#"node.name = "mugge-filters-out.b""#));
        assert!(r.contains(r#"filename = "/x/a/ch1.wav""#));
        assert_eq!(retag(t, "a", "a"), t);
    }

    #[test]
    fn muted_config_zeroes_only_the_gain_mults() {
        let text = r#"          { type = builtin name = ch1_gain label = linear control = { "Mult" = 1.000000000 "Add" = 0.0 } }
          { type = builtin name = ch3_gain label = linear control = { "Mult" = 0.891250938 "Add" = 0.0 } }
          { type = builtin name = sub_sum label = mixer control = { "Gain 1" = 0.5 } }
          { type = builtin name = other label = linear control = { "Mult" = 2.0 "Add" = 0.0 } }"#;
        let m = muted_config(text);
        let l: Vec<&str> = m.lines().collect();
        assert!(l[0].contains(r#""Mult" = 0.0 "Add""#), "{}", l[0]);
        assert!(l[1].contains(r#""Mult" = 0.0 "Add""#), "{}", l[1]);
        assert_eq!(l[2], text.lines().nth(2).unwrap());
        assert!(l[3].contains(r#""Mult" = 2.0"#), "{}", l[3]);
    }

    #[test]
    fn chains_are_found_by_tag_and_set_with_their_pid() {
        use super::super::graph::Node;
        let mut g = Graph::default();
        let node = |id, name: &str, set: Option<&str>| Node {
            id,
            name: name.into(),
            media_class: String::new(),
            props: [("client.id".to_string(), "7".to_string())]
                .into_iter()
                .chain(set.map(|s| ("mugge.set".to_string(), s.to_string())))
                .collect(),
            info: true,
        };
        g.nodes.insert(1, node(1, "mugge-filters-in.a", Some("s1")));
        g.nodes
            .insert(2, node(2, "mugge-filters-out.a", Some("s1")));
        g.nodes.insert(3, node(3, "mugge-filters-in.b", Some("s2")));
        g.nodes.insert(4, node(4, "mugge-filters-out.x", None));
        let clients = [(7, 4242)].into_iter().collect();
        let s = seen(&g, &clients);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (
                s[0].tag.as_str(),
                s[0].set.as_str(),
                s[0].pid,
                s[0].complete
            ),
            ("a", "s1", Some(4242), true)
        );
        assert_eq!((s[1].tag.as_str(), s[1].complete), ("b", false));
    }
}
