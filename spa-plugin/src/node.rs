//! The safe node model behind the FFI module: one [`MainSide`] (main loop: params, props,
//! sockets) and one [`RtSide`] (data loop: `process`) per node, joined only by
//! [`Control`] messages (main -> data loop, via a blocking `spa_loop_invoke`) and lock-free
//! SPSC rings (data loop -> main / socket threads).

use crate::params::{Param, ParamInfo};
use mugge_dsp::meter::Ballistics;
use mugge_dsp::siggen::Signal;
use std::collections::BTreeMap;

/// The three factories of the plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Meter,
    Tap,
    Siggen,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Meter, Kind::Tap, Kind::Siggen];

    pub fn factory_name(self) -> &'static str {
        match self {
            Kind::Meter => "mugge.meter",
            Kind::Tap => "mugge.tap",
            Kind::Siggen => "mugge.siggen",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Kind::Meter => "mugge meter",
            Kind::Tap => "mugge tap",
            Kind::Siggen => "mugge signal generator",
        }
    }
}

/// Port direction of a node's single port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

/// How a node shows its channels to the graph.
///
/// `Dsp` is the node created bare (`spa-node-factory`): one mono f32 port per channel, named
/// for people (`input_1` is channel 1) with position `AUX0`, like PipeWire's own DSP ports, so
/// it links straight to any DSP port with no converter in between (the cheap path).
/// `Planar` is the single port of N planes that the `adapter` factory wraps: the adapter's
/// converter then makes the DSP ports (`input_AUX0`, ...) at the cost of a conversion stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortLayout {
    Planar,
    Dsp,
}

/// What a DSP port says about itself, as PipeWire's DSP ports do.
pub const DSP_FORMAT_NAME: &str = "32 bit float mono audio";

/// The properties of DSP port `index` (0-based) in direction `dir`: `port.name` names the
/// channel one-based, `audio.channel` is the position `AUX<index>`.
pub fn dsp_port_props(dir: Direction, index: u32) -> Vec<(String, String)> {
    let prefix = match dir {
        Direction::Input => "input",
        Direction::Output => "output",
    };
    vec![
        ("format.dsp".into(), DSP_FORMAT_NAME.into()),
        ("port.name".into(), format!("{prefix}_{}", index + 1)),
        ("audio.channel".into(), format!("AUX{index}")),
    ]
}

/// `audio.position` of a DSP-port node: `[ AUX0 AUX1 ... ]`, channel 1 first.
pub fn dsp_positions(channels: u32) -> String {
    let p: Vec<String> = (0..channels).map(|i| format!("AUX{i}")).collect();
    format!("[ {} ]", p.join(" "))
}

/// The graph clock of the current cycle, from the position IO area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cycle {
    pub position: u64,
    pub nsec: u64,
    pub quantum: u32,
    pub rate: u32,
}

/// A control message for the data loop. Plain data (`Copy`): nothing is freed on the data loop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Control {
    MeterResetClip,
    MeterBallistics(Ballistics),
    SiggenSignal(Signal),
    SiggenLevel(f32),
    SiggenRunning(bool),
    SiggenSeed(u32),
}

/// Data-loop half of a node. Contract: bounded, no allocation, lock, syscall, log or panic.
pub trait RtSide: Send {
    fn control(&mut self, c: Control);
    /// Input nodes: one slice per channel (planar), all of the cycle's length.
    fn process_input(&mut self, _planes: &[&[f32]], _cycle: &Cycle) {}
    /// Output nodes: fills `out`; false when there is nothing to send.
    fn process_output(&mut self, _out: &mut [f32], _cycle: &Cycle) -> bool {
        false
    }
}

/// What a `Props` write asks of the node.
#[derive(Debug, Default)]
pub struct PropsUpdate {
    pub controls: Vec<Control>,
    /// Log lines for ignored keys and values.
    pub ignored: Vec<String>,
}

/// Main-loop half of a node.
pub trait MainSide: Send {
    fn kind(&self) -> Kind;
    fn direction(&self) -> Direction;
    fn channels(&self) -> u32;
    fn rate(&self) -> u32;
    /// Properties published in the node info (show up on the PipeWire node).
    fn info_props(&self) -> Vec<(String, String)>;
    fn param_info(&self) -> Vec<ParamInfo>;
    /// Current values of every custom key.
    fn param_values(&self) -> Vec<(&'static str, Param)>;
    /// Applies a `Props` write: validates every pair, returns what to send to the data loop.
    fn set_params(&mut self, pairs: Vec<(String, Result<Param, String>)>) -> PropsUpdate;
    /// Called from a main-loop timer: drains what the data loop reported. True when the
    /// readable `Props` changed (the FFI then emits a param change).
    fn poll(&mut self) -> bool;
    /// Timer period for [`MainSide::poll`].
    fn poll_interval_ms(&self) -> u64;
}

/// Node creation properties (the `spa_dict` given to the factory).
#[derive(Clone, Debug, Default)]
pub struct Config(pub BTreeMap<String, String>);

impl Config {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// `audio.channels`, 1..=32 (default 1 for the generator, 2 otherwise).
    pub fn channels(&self, default: u32) -> Result<u32, String> {
        match self.get("audio.channels") {
            None => Ok(default),
            Some(s) => match s.trim().parse::<u32>() {
                Ok(n) if (1..=mugge_dsp::MAX_CHANNELS as u32).contains(&n) => Ok(n),
                _ => Err(format!(
                    "audio.channels = {s:?}: want 1..={}",
                    mugge_dsp::MAX_CHANNELS
                )),
            },
        }
    }

    /// `audio.rate` (default 48000).
    pub fn rate(&self) -> Result<u32, String> {
        match self.get("audio.rate") {
            None => Ok(48000),
            Some(s) => match s.trim().parse::<u32>() {
                Ok(n) if (8000..=384_000).contains(&n) => Ok(n),
                _ => Err(format!("audio.rate = {s:?}: want 8000..=384000")),
            },
        }
    }

    pub fn f64_or(&self, k: &str, default: f64, min: f64, max: f64) -> Result<f64, String> {
        match self.get(k) {
            None => Ok(default),
            Some(s) => match s.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v >= min && v <= max => Ok(v),
                _ => Err(format!("{k} = {s:?}: want {min}..={max}")),
            },
        }
    }

    /// `mugge.ports`: `dsp` (one mono port per channel, for bare creation through
    /// `spa-node-factory`) or `planar` (one port of N planes, the follower layout the `adapter`
    /// factory needs; the default, so the adapter path works without the key).
    pub fn port_layout(&self) -> Result<PortLayout, String> {
        match self.get("mugge.ports").map(str::trim) {
            None | Some("planar") => Ok(PortLayout::Planar),
            Some("dsp") => Ok(PortLayout::Dsp),
            Some(s) => Err(format!("mugge.ports = {s:?}: want \"dsp\" or \"planar\"")),
        }
    }

    pub fn node_name(&self) -> String {
        self.get("node.name").unwrap_or("mugge").to_string()
    }

    /// The socket path: the property `key` if given, else `$XDG_RUNTIME_DIR/mugge/<prefix>-<node.name>.sock`.
    pub fn socket_path(&self, key: &str, prefix: &str) -> Result<std::path::PathBuf, String> {
        if let Some(p) = self.get(key) {
            return Ok(p.into());
        }
        let dir = std::env::var_os("XDG_RUNTIME_DIR").ok_or("XDG_RUNTIME_DIR is not set")?;
        let name: String = self
            .node_name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok(std::path::Path::new(&dir)
            .join("mugge")
            .join(format!("{prefix}-{name}.sock")))
    }
}

/// Both halves of a node.
pub type NodeParts = (Box<dyn MainSide>, Box<dyn RtSide>);

/// Builds both halves of a node. Main thread only.
pub fn create(kind: Kind, cfg: &Config) -> Result<NodeParts, String> {
    match kind {
        Kind::Meter => crate::meter_node::create(cfg),
        Kind::Tap => crate::tap_node::create(cfg),
        Kind::Siggen => crate::siggen_node::create(cfg),
    }
}

/// A log line for an ignored Props pair.
pub fn ignored(key: &str, why: impl std::fmt::Display) -> String {
    format!("Props: ignoring {key:?}: {why}")
}
