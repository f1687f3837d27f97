//! The controller's TOML configuration (conf/controller.toml documents every key).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::routing::{AppRouting, Mode, Route, Topology};

/// The quantum per mode from the design table (SPEC §4): DJ 1024, Live 256, Standby 256,
/// Measurement 256.
pub fn design_quantum(mode: Mode) -> u32 {
    match mode {
        Mode::Dj => 1024,
        Mode::Live | Mode::Standby | Mode::Measurement => 256,
    }
}

/// The shipped default until 256 is proven on the target (D-042).
pub const DEFAULT_QUANTUM: u32 = 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantumTable {
    /// 1024 in every mode.
    #[default]
    Safe,
    /// The design table.
    Design,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// Command line to start the application (argv; not run through a shell).
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(flatten)]
    pub routing: AppRouting,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `safe` (1024 everywhere) or `design` (DJ 1024, others 256): the one switch.
    pub quantum_table: QuantumTable,
    /// Per-mode overrides, e.g. `[quantum] live = 512`.
    pub quantum: BTreeMap<Mode, u32>,
    /// Instance tag of the active filter-chain (`mugge-filters-in.<tag>`).
    pub filter_tag: String,
    pub topology: Topology,
    /// How long SetMode waits for the graph before answering with what is missing.
    pub ready_timeout_ms: u64,
    /// Whether absent plugin nodes hold back readiness.
    pub require_plugins: bool,
    /// LevelsChanged rate limit.
    pub levels_hz: f64,
    /// Applications per mode: `[apps.dj]`, `[apps.live]`.
    pub apps: BTreeMap<Mode, App>,
    /// Extra routes per mode, e.g. a recorder: `[[extra.dj]] from = "..." to = "..."`.
    pub extra: BTreeMap<Mode, Vec<ExtraRoute>>,
    /// Directory for tap sockets (default `$XDG_RUNTIME_DIR/mugge`).
    pub tap_dir: Option<PathBuf>,
    /// Profile activation and the filter-chain process (`[activation]`).
    pub activation: super::chain::ActivationConfig,
    /// The measurement loop (`[measurement]`, docs/measurement.md).
    pub measurement: super::measure::options::MeasureConfig,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraRoute {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub optional: bool,
}

impl Default for Config {
    fn default() -> Self {
        let mut apps = BTreeMap::new();
        apps.insert(
            Mode::Dj,
            App {
                command: vec!["mixxx".into()],
                routing: AppRouting {
                    node: "Mixxx".into(),
                    program: vec![1, 2],
                    headphones: vec![3, 4],
                    inears: vec![],
                },
            },
        );
        apps.insert(
            Mode::Live,
            App {
                command: vec!["reaper".into()],
                routing: AppRouting {
                    node: "REAPER".into(),
                    program: vec![1, 2],
                    headphones: vec![3, 4],
                    inears: vec![5, 6],
                },
            },
        );
        Config {
            quantum_table: QuantumTable::Safe,
            quantum: BTreeMap::new(),
            filter_tag: "main".into(),
            topology: Topology::default(),
            ready_timeout_ms: 3000,
            require_plugins: true,
            levels_hz: 10.0,
            apps,
            extra: BTreeMap::new(),
            tap_dir: None,
            activation: Default::default(),
            measurement: Default::default(),
        }
    }
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn validate(&self) -> Result<(), String> {
        self.topology.validate()?;
        self.activation.validate()?;
        self.measurement.validate()?;
        for (m, q) in &self.quantum {
            if !q.is_power_of_two() || !(32..=8192).contains(q) {
                return Err(format!(
                    "quantum for {m} must be a power of two in 32..8192, not {q}"
                ));
            }
        }
        if self.filter_tag.is_empty() || self.filter_tag.contains(char::is_whitespace) {
            return Err("filter_tag must be a non-empty word".into());
        }
        if !(self.levels_hz > 0.0 && self.levels_hz <= 60.0) {
            return Err("levels_hz must be in (0, 60]".into());
        }
        for routes in self.extra.values() {
            for r in routes {
                self.parse_extra(r)?;
            }
        }
        Ok(())
    }

    fn parse_extra(&self, r: &ExtraRoute) -> Result<Route, String> {
        Ok(Route {
            from: r.from.parse()?,
            to: r.to.parse()?,
            optional: r.optional,
        })
    }

    pub fn extra_routes(&self, mode: Mode) -> Vec<Route> {
        self.extra
            .get(&mode)
            .map(|v| v.iter().filter_map(|r| self.parse_extra(r).ok()).collect())
            .unwrap_or_default()
    }

    pub fn quantum_for(&self, mode: Mode) -> u32 {
        if let Some(q) = self.quantum.get(&mode) {
            return *q;
        }
        match self.quantum_table {
            QuantumTable::Safe => DEFAULT_QUANTUM,
            QuantumTable::Design => design_quantum(mode),
        }
    }

    /// `$MUGGE_CONFIG`, else `$XDG_CONFIG_HOME/mugge/controller.toml`, else defaults.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("MUGGE_CONFIG") {
            return Some(PathBuf::from(p));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        let p = base.join("mugge/controller.toml");
        p.exists().then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_1024_everywhere_and_design_is_one_switch() {
        let c = Config::default();
        for m in Mode::ALL {
            assert_eq!(c.quantum_for(m), 1024);
        }
        let c = Config::parse("quantum_table = \"design\"").unwrap();
        assert_eq!(c.quantum_for(Mode::Dj), 1024);
        assert_eq!(c.quantum_for(Mode::Live), 256);
        assert_eq!(c.quantum_for(Mode::Standby), 256);
        assert_eq!(c.quantum_for(Mode::Measurement), 256);
        let c = Config::parse("quantum_table = \"design\"\n[quantum]\nlive = 512").unwrap();
        assert_eq!(c.quantum_for(Mode::Live), 512);
    }

    #[test]
    fn the_shipped_config_parses_and_matches_the_defaults() {
        let text = include_str!("../../../conf/controller.toml");
        let c = Config::parse(text).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn bad_configs_are_rejected_with_a_reason() {
        assert!(Config::parse("[quantum]\ndj = 1000")
            .unwrap_err()
            .contains("power of two"));
        assert!(Config::parse("bogus = 1").is_err());
        assert!(
            Config::parse("[topology]\nprofile = \"x\"\nspeakers = [1, 1]")
                .unwrap_err()
                .contains("twice")
        );
        assert!(Config::parse("[[extra.dj]]\nfrom = \"a:0\"\nto = \"b:1\"")
            .unwrap_err()
            .contains("from 1"));
        assert!(Config::parse("levels_hz = 0").is_err());
    }

    #[test]
    fn apps_and_extra_routes_parse() {
        let c = Config::parse(
            "[apps.dj]\ncommand = [\"mixxx\", \"--dev\"]\nnode = \"Mixxx\"\nprogram = [1, 2]\n\
             [[extra.dj]]\nfrom = \"usbstreamer-out:monitor:1\"\nto = \"rec:1\"\noptional = true",
        )
        .unwrap();
        assert_eq!(c.apps[&Mode::Dj].command, vec!["mixxx", "--dev"]);
        let r = c.extra_routes(Mode::Dj);
        assert_eq!(r.len(), 1);
        assert!(r[0].from.monitor && r[0].optional);
    }
}
