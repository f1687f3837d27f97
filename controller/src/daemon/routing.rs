//! Routing tables per mode, as data: links by node name and one-based channel.
//!
//! Names are the system contract (docs/controller.md). A table holds required and optional
//! routes and the plugin nodes that must exist; the reconciler turns it into links.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub const HW_OUT: &str = "usbstreamer-out";
pub const HW_IN: &str = "usbstreamer-in";
pub const MIC: &str = "umik1-in";
pub const PROGRAM: &str = "mugge-program";
pub const HEADPHONES: &str = "mugge-headphones";
pub const INEARS: &str = "mugge-inears";
pub const METER_PROGRAM: &str = "mugge-meter-program";
pub const METER_HW_OUT: &str = "mugge-meter-hw-out";
pub const METER_HW_IN: &str = "mugge-meter-hw-in";
/// The measurement mic's meter: in Measurement mode (level finding and its safety layer) and
/// whenever the activation's mic interlock is configured.
pub const METER_MIC: &str = "mugge-meter-mic";
pub const SIGGEN: &str = "mugge-siggen";
pub const TAP_PREFIX: &str = "mugge-tap-";
pub const FILTERS_IN_PREFIX: &str = "mugge-filters-in.";
pub const FILTERS_OUT_PREFIX: &str = "mugge-filters-out.";

pub fn filters_in(tag: &str) -> String {
    format!("{FILTERS_IN_PREFIX}{tag}")
}
pub fn filters_out(tag: &str) -> String {
    format!("{FILTERS_OUT_PREFIX}{tag}")
}

/// Names of nodes the controller itself creates (bare plugin nodes, see docs/plugin.md).
pub fn is_plugin_node(name: &str) -> bool {
    matches!(
        name,
        METER_PROGRAM | METER_HW_OUT | METER_HW_IN | METER_MIC | SIGGEN
    ) || name.starts_with(TAP_PREFIX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Standby,
    Dj,
    Live,
    Measurement,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Standby, Mode::Dj, Mode::Live, Mode::Measurement];
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Standby => "standby",
            Mode::Dj => "dj",
            Mode::Live => "live",
            Mode::Measurement => "measurement",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "standby" => Ok(Mode::Standby),
            "dj" => Ok(Mode::Dj),
            "live" => Ok(Mode::Live),
            "measurement" => Ok(Mode::Measurement),
            _ => Err(format!(
                "unknown mode '{s}': expected one of standby, dj, live, measurement"
            )),
        }
    }
}

/// One end of a route: a node's one-based channel; `monitor` selects a sink's monitor outputs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct End {
    pub node: String,
    pub channel: u32,
    #[serde(default)]
    pub monitor: bool,
}

impl End {
    pub fn new(node: &str, channel: u32) -> Self {
        End {
            node: node.into(),
            channel,
            monitor: false,
        }
    }
    pub fn monitor(node: &str, channel: u32) -> Self {
        End {
            node: node.into(),
            channel,
            monitor: true,
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.monitor {
            write!(f, "{}:monitor:{}", self.node, self.channel)
        } else {
            write!(f, "{}:{}", self.node, self.channel)
        }
    }
}

impl FromStr for End {
    type Err = String;
    /// `node:N` or `node:monitor:N`, N one-based.
    fn from_str(s: &str) -> Result<Self, String> {
        let (rest, ch) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("'{s}': expected NODE:CHANNEL or NODE:monitor:CHANNEL"))?;
        let channel: u32 = ch
            .parse()
            .map_err(|_| format!("'{s}': channel '{ch}' is not a number"))?;
        if channel == 0 {
            return Err(format!("'{s}': channels are numbered from 1"));
        }
        let (node, monitor) = match rest.strip_suffix(":monitor") {
            Some(n) => (n, true),
            None => (rest, false),
        };
        if node.is_empty() {
            return Err(format!("'{s}': empty node name"));
        }
        Ok(End {
            node: node.into(),
            channel,
            monitor,
        })
    }
}

/// A desired link from an output (`from`) to an input (`to`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Route {
    pub from: End,
    pub to: End,
    /// Optional routes are made when both ends exist but do not hold back readiness.
    #[serde(default)]
    pub optional: bool,
}

impl Route {
    fn req(from: End, to: End) -> Self {
        Route {
            from,
            to,
            optional: false,
        }
    }
    fn opt(from: End, to: End) -> Self {
        Route {
            from,
            to,
            optional: true,
        }
    }
}

/// A plugin node the controller creates (bare, `spa-node-factory` with `factory.name = mugge.*`
/// and `mugge.ports = dsp`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginNode {
    pub name: String,
    pub factory: String,
    pub channels: u32,
}

/// The speaker profile's channel map on the hardware outputs, one-based.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub profile: String,
    pub speakers: Vec<u32>,
    #[serde(default)]
    pub headphones: Vec<u32>,
    #[serde(default)]
    pub inears: Vec<u32>,
    #[serde(default = "default_hw_inputs")]
    pub hw_inputs: u32,
    /// Inputs of the filter-chain capture node (the program's channels).
    #[serde(default = "default_program_channels")]
    pub program_channels: u32,
}

impl Topology {
    /// The topology a deployed set was made for: its speaker channels are exactly the channels
    /// the chain filters (and the bypass rule protects), its monitors those the profile names.
    /// Once a set is active this, not the configured default, decides the routes: a 3-way
    /// profile's horns on channels 5-6 must never get the headphone feed of a 2-way default.
    pub fn from_manifest(m: &mugge_filter_chain::set::Manifest, hw_inputs: u32) -> Topology {
        let mut speakers: Vec<u32> = m.channels.iter().map(|c| c.channel).collect();
        speakers.sort_unstable();
        Topology {
            profile: m.profile_name.clone(),
            speakers,
            headphones: m.profile.monitors.headphones.clone(),
            inears: m.profile.monitors.in_ears.clone(),
            hw_inputs,
            program_channels: 2,
        }
    }
}

fn default_hw_inputs() -> u32 {
    8
}
fn default_program_channels() -> u32 {
    2
}

impl Default for Topology {
    /// The default 2-way stereo map (SPEC §2).
    fn default() -> Self {
        Topology {
            profile: "2way-stereo".into(),
            speakers: vec![1, 2, 3, 4],
            headphones: vec![5, 6],
            inears: vec![7, 8],
            hw_inputs: 8,
            program_channels: 2,
        }
    }
}

impl Topology {
    /// Rejects channels outside 1..=8, collisions, and empty speaker sets.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = [false; 9];
        if self.speakers.is_empty() {
            return Err("topology has no speaker channels".into());
        }
        for (what, chans) in [
            ("speaker", &self.speakers),
            ("headphones", &self.headphones),
            ("in-ears", &self.inears),
        ] {
            for &c in chans {
                if !(1..=8).contains(&c) {
                    return Err(format!("{what} channel {c} is outside 1..8"));
                }
                if seen[c as usize] {
                    return Err(format!("channel {c} is assigned twice"));
                }
                seen[c as usize] = true;
            }
        }
        if !self.headphones.is_empty() && self.headphones.len() != 2 {
            return Err("headphones need exactly 2 channels or none".into());
        }
        if !self.inears.is_empty() && self.inears.len() != 2 {
            return Err("in-ears need exactly 2 channels or none".into());
        }
        if !(1..=8).contains(&self.hw_inputs) || self.program_channels == 0 {
            return Err("hw_inputs must be 1..8 and program_channels >= 1".into());
        }
        Ok(())
    }

    /// Hardware output channels in use, ascending: what the hw-out meter shows.
    pub fn used_outputs(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .speakers
            .iter()
            .chain(&self.headphones)
            .chain(&self.inears)
            .copied()
            .collect();
        v.sort_unstable();
        v
    }
}

/// An application's node and where its output channels go (one-based on both sides).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRouting {
    pub node: String,
    #[serde(default)]
    pub program: Vec<u32>,
    #[serde(default)]
    pub headphones: Vec<u32>,
    #[serde(default)]
    pub inears: Vec<u32>,
}

/// Everything a table is computed from.
#[derive(Clone, Debug)]
pub struct TableInput<'a> {
    pub mode: Mode,
    pub topology: &'a Topology,
    pub filter_tag: &'a str,
    pub app: Option<&'a AppRouting>,
    pub extra: &'a [Route],
    /// Active taps (source node names); each gets a `mugge-tap-<source>` node.
    pub taps: &'a [(String, u32)],
    /// Routes to and from plugin nodes hold back readiness only when plugins are required.
    pub require_plugins: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Table {
    pub routes: Vec<Route>,
    pub plugins: Vec<PluginNode>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("live mode needs in-ear channels, but profile '{0}' has none")]
    NoInears(String),
    #[error("invalid topology: {0}")]
    Topology(String),
    #[error("route {0} -> {1} would bypass the filter-chain on speaker channel {2}")]
    Bypass(String, String, u32),
}

fn app_routes(routes: &mut Vec<Route>, app: &AppRouting, sink: &str, sink_chans: &[u32]) {
    for (i, &src) in sink_chans.iter().enumerate() {
        routes.push(Route::opt(
            End::new(&app.node, src),
            End::new(sink, i as u32 + 1),
        ));
    }
}

/// The routing table of a mode for a topology.
pub fn table(inp: &TableInput<'_>) -> Result<Table, TableError> {
    let t = inp.topology;
    t.validate().map_err(TableError::Topology)?;
    if inp.mode == Mode::Live && t.inears.is_empty() {
        return Err(TableError::NoInears(t.profile.clone()));
    }
    let plugin = |from: End, to: End| Route {
        from,
        to,
        optional: !inp.require_plugins,
    };
    let fin = filters_in(inp.filter_tag);
    let fout = filters_out(inp.filter_tag);
    let mut routes = Vec::new();
    let mut plugins = Vec::new();

    // The filter-chain always owns the speaker channels: only its outputs feed them. Its output
    // N is hardware channel N (the filter engine's contract), so a profile whose speakers are not
    // channels 1..n still lands on the right amplifier.
    for &hw in &t.speakers {
        routes.push(Route::req(End::new(&fout, hw), End::new(HW_OUT, hw)));
    }
    if inp.mode != Mode::Standby {
        for ch in 1..=t.program_channels {
            routes.push(Route::req(End::monitor(PROGRAM, ch), End::new(&fin, ch)));
        }
        for (i, &hw) in t.headphones.iter().enumerate() {
            routes.push(Route::req(
                End::monitor(HEADPHONES, i as u32 + 1),
                End::new(HW_OUT, hw),
            ));
        }
    }
    if inp.mode == Mode::Live {
        for (i, &hw) in t.inears.iter().enumerate() {
            routes.push(Route::req(
                End::monitor(INEARS, i as u32 + 1),
                End::new(HW_OUT, hw),
            ));
        }
    }
    if let (Some(app), Mode::Dj | Mode::Live) = (inp.app, inp.mode) {
        app_routes(&mut routes, app, PROGRAM, &app.program);
        app_routes(&mut routes, app, HEADPHONES, &app.headphones);
        if inp.mode == Mode::Live {
            app_routes(&mut routes, app, INEARS, &app.inears);
        }
    }

    // Three standing meters, sized from the topology.
    plugins.push(PluginNode {
        name: METER_PROGRAM.into(),
        factory: "mugge.meter".into(),
        channels: t.program_channels,
    });
    for ch in 1..=t.program_channels {
        routes.push(plugin(
            End::monitor(PROGRAM, ch),
            End::new(METER_PROGRAM, ch),
        ));
    }
    let used = t.used_outputs();
    plugins.push(PluginNode {
        name: METER_HW_OUT.into(),
        factory: "mugge.meter".into(),
        channels: used.len() as u32,
    });
    for (i, &hw) in used.iter().enumerate() {
        routes.push(plugin(
            End::monitor(HW_OUT, hw),
            End::new(METER_HW_OUT, i as u32 + 1),
        ));
    }
    plugins.push(PluginNode {
        name: METER_HW_IN.into(),
        factory: "mugge.meter".into(),
        channels: t.hw_inputs,
    });
    for ch in 1..=t.hw_inputs {
        routes.push(plugin(End::new(HW_IN, ch), End::new(METER_HW_IN, ch)));
    }

    if inp.mode == Mode::Measurement {
        // The generator plays into the program sink, so the program meter sees it and the
        // filter-chain's protection high-passes stay in the path. One speaker at a time is
        // selected with the filter-chain's per-channel gains, not by routing.
        plugins.push(PluginNode {
            name: SIGGEN.into(),
            factory: "mugge.siggen".into(),
            channels: 1,
        });
        for ch in 1..=t.program_channels {
            routes.push(plugin(End::new(SIGGEN, 1), End::new(PROGRAM, ch)));
        }
        let tap = format!("{TAP_PREFIX}{MIC}");
        plugins.push(PluginNode {
            name: tap.clone(),
            factory: "mugge.tap".into(),
            channels: 1,
        });
        routes.push(plugin(End::new(MIC, 1), End::new(&tap, 1)));
        // The generator's own output as the measurement's timing and signal reference.
        let reference = format!("{TAP_PREFIX}{SIGGEN}");
        plugins.push(PluginNode {
            name: reference.clone(),
            factory: "mugge.tap".into(),
            channels: 1,
        });
        routes.push(plugin(End::new(SIGGEN, 1), End::new(&reference, 1)));
        plugins.push(PluginNode {
            name: METER_MIC.into(),
            factory: "mugge.meter".into(),
            channels: 1,
        });
        routes.push(plugin(End::new(MIC, 1), End::new(METER_MIC, 1)));
    }

    for (source, channels) in inp.taps {
        let tap = format!("{TAP_PREFIX}{source}");
        if plugins.iter().any(|p| p.name == tap) {
            continue;
        }
        plugins.push(PluginNode {
            name: tap.clone(),
            factory: "mugge.tap".into(),
            channels: *channels,
        });
        // Sinks are tapped on their monitor side.
        let monitor = matches!(source.as_str(), HW_OUT | PROGRAM | HEADPHONES | INEARS)
            || source.starts_with(FILTERS_IN_PREFIX);
        for ch in 1..=*channels {
            let from = End {
                node: source.clone(),
                channel: ch,
                monitor,
            };
            routes.push(plugin(from, End::new(&tap, ch)));
        }
    }

    routes.extend(inp.extra.iter().cloned());
    check_bypass(&routes, t, inp.filter_tag)?;
    // One route per (from, to): duplicates in config must not become duplicate links.
    let mut seen = std::collections::HashSet::new();
    routes.retain(|r| seen.insert((r.from.clone(), r.to.clone())));
    Ok(Table { routes, plugins })
}

/// Nothing but the filter-chain's outputs may feed a speaker channel of the hardware.
pub fn check_bypass(routes: &[Route], t: &Topology, tag: &str) -> Result<(), TableError> {
    let fout = filters_out(tag);
    for r in routes {
        if r.to.node == HW_OUT
            && !r.to.monitor
            && t.speakers.contains(&r.to.channel)
            && r.from.node != fout
        {
            return Err(TableError::Bypass(
                r.from.to_string(),
                r.to.to_string(),
                r.to.channel,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(mode: Mode, t: &'a Topology) -> TableInput<'a> {
        TableInput {
            mode,
            topology: t,
            filter_tag: "main",
            app: None,
            extra: &[],
            taps: &[],
            require_plugins: false,
        }
    }

    fn three_way() -> Topology {
        Topology {
            profile: "3way-stereo".into(),
            speakers: vec![1, 2, 3, 4, 5, 6],
            headphones: vec![7, 8],
            inears: vec![],
            hw_inputs: 8,
            program_channels: 2,
        }
    }

    #[test]
    fn every_speaker_channel_is_fed_by_the_filter_chain_in_every_mode_and_topology() {
        for t in [Topology::default(), three_way()] {
            for mode in Mode::ALL {
                let Ok(tab) = table(&input(mode, &t)) else {
                    continue;
                };
                for &hw in &t.speakers {
                    let feeders: Vec<_> = tab
                        .routes
                        .iter()
                        .filter(|r| r.to == End::new(HW_OUT, hw))
                        .collect();
                    assert_eq!(feeders.len(), 1, "{mode} {hw}");
                    assert_eq!(feeders[0].from.node, "mugge-filters-out.main");
                    assert!(!feeders[0].optional);
                }
            }
        }
    }

    #[test]
    fn filter_chain_output_n_feeds_hardware_channel_n_even_with_gaps() {
        // Speakers on 1, 2, 5, 6 (monitors on 3-4, 7-8): chain output 5 must reach amp 5, not 3.
        let t = Topology {
            profile: "gapped".into(),
            speakers: vec![1, 2, 5, 6],
            headphones: vec![3, 4],
            inears: vec![7, 8],
            hw_inputs: 8,
            program_channels: 2,
        };
        let tab = table(&input(Mode::Dj, &t)).unwrap();
        for hw in [1, 2, 5, 6] {
            let r = tab
                .routes
                .iter()
                .find(|r| r.to == End::new(HW_OUT, hw))
                .unwrap();
            assert_eq!(
                r.from,
                End::new("mugge-filters-out.main", hw),
                "hardware channel {hw}"
            );
        }
    }

    #[test]
    fn an_active_three_way_set_decides_the_routes_not_the_two_way_default() {
        use mugge_filter_chain::{set, validate::load_rig};
        let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        let profile = ws.join("conf/profiles/3way-stereo.toml");
        let rig = load_rig(&profile, None).unwrap();
        let text = std::fs::read_to_string(&profile).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let m = set::write_set(&rig, &text, &dir.path().join("s"), "a", None, &|_| {}).unwrap();
        let t = Topology::from_manifest(&m, 8);
        assert_eq!(t.speakers, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(
            (t.headphones.clone(), t.inears.clone()),
            (vec![7, 8], vec![])
        );
        let tab = table(&input(Mode::Dj, &t)).unwrap();
        for hw in 1..=6 {
            let feeders: Vec<_> = tab
                .routes
                .iter()
                .filter(|r| r.to == End::new(HW_OUT, hw))
                .collect();
            assert_eq!(feeders.len(), 1, "channel {hw}");
            assert_eq!(feeders[0].from, End::new("mugge-filters-out.main", hw));
        }
        // The headphone feed goes to 7-8, never to the horns on 5-6; Live has no in-ears.
        let hp: Vec<u32> = tab
            .routes
            .iter()
            .filter(|r| r.from.node == HEADPHONES)
            .map(|r| r.to.channel)
            .collect();
        assert_eq!(hp, vec![7, 8]);
        assert!(matches!(
            table(&input(Mode::Live, &t)),
            Err(TableError::NoInears(_))
        ));
    }

    #[test]
    fn three_way_channels_five_and_six_are_protected_too() {
        let t = three_way();
        let bad = Route::req(End::new("Mixxx", 1), End::new(HW_OUT, 6));
        let extra = [bad];
        let mut inp = input(Mode::Dj, &t);
        inp.extra = &extra;
        assert!(matches!(table(&inp), Err(TableError::Bypass(_, _, 6))));
        // Channel 7 is headphones in this profile: an extra route there is allowed.
        let ok = [Route::opt(End::new("Mixxx", 1), End::new(HW_OUT, 7))];
        inp.extra = &ok;
        assert!(table(&inp).is_ok());
    }

    #[test]
    fn live_is_refused_without_inears() {
        assert_eq!(
            table(&input(Mode::Live, &three_way())),
            Err(TableError::NoInears("3way-stereo".into()))
        );
        assert!(table(&input(Mode::Live, &Topology::default())).is_ok());
    }

    #[test]
    fn standby_feeds_nothing_into_the_filter_chain() {
        let tab = table(&input(Mode::Standby, &Topology::default())).unwrap();
        assert!(tab
            .routes
            .iter()
            .all(|r| r.to.node != "mugge-filters-in.main"));
        assert!(tab.routes.iter().all(|r| r.from.node != HEADPHONES));
        assert_eq!(tab.plugins.len(), 3);
    }

    #[test]
    fn dj_table_routes_program_headphones_and_meters_one_based() {
        let t = Topology::default();
        let app = AppRouting {
            node: "Mixxx".into(),
            program: vec![1, 2],
            headphones: vec![3, 4],
            inears: vec![],
        };
        let mut inp = input(Mode::Dj, &t);
        inp.app = Some(&app);
        let tab = table(&inp).unwrap();
        let has = |f: End, to: End| tab.routes.iter().any(|r| r.from == f && r.to == to);
        assert!(has(
            End::monitor(PROGRAM, 1),
            End::new("mugge-filters-in.main", 1)
        ));
        assert!(has(
            End::monitor(PROGRAM, 2),
            End::new("mugge-filters-in.main", 2)
        ));
        assert!(has(
            End::new("mugge-filters-out.main", 4),
            End::new(HW_OUT, 4)
        ));
        assert!(has(End::monitor(HEADPHONES, 1), End::new(HW_OUT, 5)));
        assert!(has(End::monitor(HEADPHONES, 2), End::new(HW_OUT, 6)));
        assert!(!tab.routes.iter().any(|r| r.from.node == INEARS));
        assert!(has(End::new("Mixxx", 3), End::new(HEADPHONES, 1)));
        assert!(has(End::monitor(HW_OUT, 8), End::new(METER_HW_OUT, 8)));
        assert!(has(End::new(HW_IN, 8), End::new(METER_HW_IN, 8)));
        assert!(!tab.plugins.iter().any(|p| p.name == SIGGEN));
    }

    #[test]
    fn meters_follow_the_topology_not_a_fixed_count() {
        let t = Topology {
            speakers: vec![1, 2, 3, 4, 5],
            headphones: vec![],
            inears: vec![],
            ..three_way()
        };
        let tab = table(&input(Mode::Dj, &t)).unwrap();
        let m = tab.plugins.iter().find(|p| p.name == METER_HW_OUT).unwrap();
        assert_eq!(m.channels, 5);
        assert!(tab.routes.iter().any(|r| r.to == End::new(METER_HW_OUT, 5)));
        assert!(!tab.routes.iter().any(|r| r.to == End::new(METER_HW_OUT, 6)));
    }

    #[test]
    fn measurement_adds_generator_and_mic_tap_only_there() {
        let t = Topology::default();
        let tab = table(&input(Mode::Measurement, &t)).unwrap();
        assert!(tab
            .plugins
            .iter()
            .any(|p| p.name == SIGGEN && p.factory == "mugge.siggen" && p.channels == 1));
        assert!(tab.plugins.iter().any(|p| p.name == "mugge-tap-umik1-in"));
        assert!(tab
            .routes
            .iter()
            .any(|r| r.from == End::new(MIC, 1) && r.to == End::new("mugge-tap-umik1-in", 1)));
        for m in [Mode::Standby, Mode::Dj, Mode::Live] {
            let tab = table(&input(m, &t)).unwrap();
            assert!(!tab.plugins.iter().any(|p| p.name == SIGGEN));
        }
    }

    #[test]
    fn topology_rejects_collisions_and_out_of_range() {
        let mut t = Topology {
            inears: vec![4, 5],
            ..Topology::default()
        };
        assert!(t.validate().unwrap_err().contains("twice"));
        t.inears = vec![9, 10];
        assert!(t.validate().unwrap_err().contains("outside"));
        t.inears = vec![];
        t.speakers = vec![];
        assert!(t.validate().is_err());
    }

    #[test]
    fn ends_parse_one_based() {
        assert_eq!(
            "usbstreamer-out:monitor:3".parse::<End>().unwrap(),
            End::monitor(HW_OUT, 3)
        );
        assert_eq!("umik1-in:1".parse::<End>().unwrap(), End::new(MIC, 1));
        assert!("umik1-in:0".parse::<End>().unwrap_err().contains("from 1"));
        assert!("umik1-in".parse::<End>().is_err());
        assert!("x:y".parse::<End>().is_err());
        assert_eq!("DJ".parse::<Mode>().unwrap(), Mode::Dj);
        assert!("party".parse::<Mode>().is_err());
    }

    #[test]
    fn plugin_routes_are_required_only_when_plugins_are() {
        let t = Topology::default();
        let mut inp = input(Mode::Measurement, &t);
        let tab = table(&inp).unwrap();
        assert!(tab
            .routes
            .iter()
            .filter(|r| r.to.node.starts_with("mugge-meter-"))
            .all(|r| r.optional));
        inp.require_plugins = true;
        let tab = table(&inp).unwrap();
        for r in tab
            .routes
            .iter()
            .filter(|r| is_plugin_node(&r.to.node) || is_plugin_node(&r.from.node))
        {
            assert!(!r.optional, "{} -> {}", r.from, r.to);
        }
    }

    #[test]
    fn taps_get_their_own_node_and_channel_count() {
        let t = Topology::default();
        let taps = [(HW_OUT.to_string(), 8u32), (HW_IN.to_string(), 3u32)];
        let mut inp = input(Mode::Dj, &t);
        inp.taps = &taps;
        let tab = table(&inp).unwrap();
        let tap = tab
            .plugins
            .iter()
            .find(|p| p.name == "mugge-tap-usbstreamer-out")
            .unwrap();
        assert_eq!(tap.channels, 8);
        assert!(tab.routes.iter().any(|r| r.from == End::monitor(HW_OUT, 8)
            && r.to == End::new("mugge-tap-usbstreamer-out", 8)));
        assert!(tab.routes.iter().any(
            |r| r.from == End::new(HW_IN, 3) && r.to == End::new("mugge-tap-usbstreamer-in", 3)
        ));
    }
}
