//! Serde types for the two source files: a speaker identity (`conf/speakers/*.toml`, one driver or
//! cabinet) and a speaker profile (`conf/profiles/*.toml`, one rig). Unknown keys are refused so a
//! typo never silently drops a protection setting. Semantic checks live in `validate.rs`.

use serde::{Deserialize, Serialize};

/// One speaker model. The file stem is its id (`identity = "<stem>"` in a profile).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub name: String,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub enclosure: Enclosure,
    pub impedance_ohm: Option<f64>,
    /// dB SPL at 1 W / 1 m.
    pub sensitivity_db_spl: Option<f64>,
    pub power_limit_w: Option<f64>,
    /// Largest boost this speaker's compensation EQ may apply; sets the global attenuation.
    #[serde(default)]
    pub max_boost_db: f64,
    /// Required (validation refuses its absence by name); Option only so the message is ours.
    pub mandatory_hpf_hz: Option<f64>,
    /// Compensation EQ, realised inside the FIR (never as IIR nodes).
    #[serde(default)]
    pub eq: Vec<EqBand>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "kebab-case")]
pub enum Enclosure {
    Sealed,
    /// Ported boxes get a steeper (LR8) protection slope: below tuning the cone is unloaded.
    Ported {
        port_tuning_hz: Vec<f64>,
    },
    Horn,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EqBand {
    #[serde(rename = "type")]
    pub kind: EqKind,
    pub freq_hz: f64,
    pub gain_db: f64,
    #[serde(default = "default_q")]
    pub q: f64,
}

fn default_q() -> f64 {
    std::f64::consts::FRAC_1_SQRT_2
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EqKind {
    Peak,
    LowShelf,
    HighShelf,
}

/// One rig: topology, crossovers, which speaker sits on which one-based output channel.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub topology: Topology,
    #[serde(default = "default_taps")]
    pub taps: usize,
    #[serde(default = "default_rate")]
    pub sample_rate: u32,
    /// One entry per crossover point, lowest first.
    #[serde(default, rename = "crossover")]
    pub crossovers: Vec<Crossover>,
    #[serde(rename = "speaker")]
    pub speakers: Vec<Speaker>,
    #[serde(default)]
    pub monitors: Monitors,
    #[serde(default)]
    pub target: Target,
}

fn default_taps() -> usize {
    16_384
}
fn default_rate() -> u32 {
    48_000
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum Topology {
    #[serde(rename = "2-way")]
    TwoWay,
    #[serde(rename = "3-way")]
    ThreeWay,
    #[serde(rename = "3-way-mono-sub")]
    ThreeWayMonoSub,
    #[serde(rename = "4-way")]
    FourWay,
}

impl Topology {
    pub fn bands(self) -> usize {
        match self {
            Topology::TwoWay => 2,
            Topology::ThreeWay | Topology::ThreeWayMonoSub => 3,
            Topology::FourWay => 4,
        }
    }
    pub fn speaker_count(self) -> usize {
        match self {
            Topology::TwoWay => 4,
            Topology::ThreeWay => 6,
            Topology::ThreeWayMonoSub => 5,
            Topology::FourWay => 8,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Topology::TwoWay => "2-way",
            Topology::ThreeWay => "3-way",
            Topology::ThreeWayMonoSub => "3-way-mono-sub",
            Topology::FourWay => "4-way",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Crossover {
    pub freq_hz: f64,
    #[serde(default = "default_slope")]
    pub slope_db_per_oct: u32,
    #[serde(default, rename = "type")]
    pub kind: CrossoverKind,
}

fn default_slope() -> u32 {
    24
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CrossoverKind {
    #[default]
    LinkwitzRiley,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Speaker {
    pub name: String,
    /// File stem of a speaker identity in the speakers directory.
    pub identity: String,
    /// Which program signal feeds it.
    pub role: Role,
    /// One-based output channel (1..=8).
    pub channel: u32,
    /// One-based band, lowest first (1 = sub/low band).
    pub band: u32,
    #[serde(default)]
    pub polarity: Polarity,
    /// Level trim in dB; cut only (no stage adds gain).
    #[serde(default)]
    pub trim_db: f64,
    /// Alignment delay in milliseconds.
    #[serde(default)]
    pub delay_ms: f64,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Left,
    Right,
    /// L+R at -6 dB each (subs).
    Sum,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Polarity {
    #[default]
    Normal,
    Inverted,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Monitors {
    #[serde(default)]
    pub headphones: Vec<u32>,
    #[serde(default)]
    pub in_ears: Vec<u32>,
}

/// Target curve: optional ISO 226:2003 loudness adjustment plus optional breakpoints.
/// Both are normalised to cut only, the same function for every channel so bands still sum.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Operating SPL (phon) the rig plays at; enables the ISO 226 adjustment.
    pub operating_spl_db: Option<f64>,
    /// Loudness the programme was balanced at (phon).
    #[serde(default = "default_ref_phon")]
    pub reference_phon: f64,
    /// `[[freq_hz, db], ...]`, interpolated on log frequency.
    #[serde(default)]
    pub points: Vec<[f64; 2]>,
}

fn default_ref_phon() -> f64 {
    83.0
}

impl Default for Target {
    fn default() -> Self {
        Target {
            operating_spl_db: None,
            reference_phon: default_ref_phon(),
            points: Vec::new(),
        }
    }
}
