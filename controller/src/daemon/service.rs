//! The D-Bus service `org.mugge.Controller` (interface `org.mugge.Controller1` at
//! `/org/mugge/Controller`). It turns calls into desired states for the PipeWire thread and
//! answers from the status that thread publishes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zbus::object_server::SignalEmitter;
use zbus::zvariant::Type;

use super::config::Config;
use super::levels::Levels;
use super::pw::Command;
use super::reconcile::Desired;
use super::routing::{self, Mode, Table, TableInput};
use super::status::Status;

mod activation;
mod interlock;
mod measurement;
mod presets;

pub const BUS_NAME: &str = "org.mugge.Controller";
pub const OBJECT_PATH: &str = "/org/mugge/Controller";
pub const INTERFACE: &str = "org.mugge.Controller1";

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.mugge.Controller1.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// A bad argument; nothing was changed.
    InvalidArgs(String),
    /// The request is valid but not allowed in this state (e.g. Live without in-ears).
    Refused(String),
    /// The graph did not match the table in time; the text names what is missing.
    NotReady(String),
}

/// SetMode's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Readiness {
    pub ready: bool,
    pub mode: String,
    pub quantum: u32,
    pub missing: Vec<String>,
    /// Optional parts that are absent, and application notes (not blocking readiness).
    pub notes: Vec<String>,
    pub elapsed_us: u64,
}

struct Shared {
    mode: Option<Mode>,
    generation: u64,
    /// The latest status (what properties read).
    status: Status,
    /// (generation, ready) of the latest status whose change signals went out: what SetMode
    /// waits on, so its answer never overtakes the PropertiesChanged signals.
    settled: (u64, bool),
    taps: Vec<(String, u32)>,
    /// Latest snapshot per meter node.
    levels: BTreeMap<String, Levels>,
    /// When each meter's latest snapshot arrived (a stale one means the meter is gone).
    levels_at: BTreeMap<String, Instant>,
    /// Meters' Props are subscribed until then (a lease renewed by readers).
    levels_until: Option<Instant>,
    apps: BTreeMap<Mode, Child>,
    app_notes: Vec<String>,
    /// Measurement mode: the program inputs the generator may feed (one speaker at a time);
    /// `None` outside a measurement (both).
    solo: Option<Vec<u32>>,
    /// The running measurement's mic snapshots (measurement.rs).
    mic_watch: Option<async_channel::Sender<Levels>>,
    /// A measurement is running: SetMode, ActivateProfile and ReloadFilters are refused.
    measuring: bool,
    /// The last measurement's result (JSON of `measure::report::Report`).
    measurement: String,
}

pub struct Controller {
    config: Config,
    shared: Arc<Mutex<Shared>>,
    changed: Arc<event_listener::Event>,
    lease_changed: Arc<event_listener::Event>,
    commands: Mutex<pipewire::channel::Sender<Command>>,
    transaction: async_lock::Mutex<()>,
    state_file: Option<PathBuf>,
    /// The filter-chain the controller drives (activation.rs).
    chain: activation::State,
    abort: std::sync::atomic::AtomicBool,
    /// AbortMeasurement / ContinueMeasurement wake the measurement loop.
    measure_abort: std::sync::atomic::AtomicBool,
    measure_wake: event_listener::Event,
}

/// Groups "link A -> B: reason" lines by reason, so one absent node is one note.
fn summarise(lines: &[String]) -> Vec<String> {
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for l in lines {
        match l.strip_prefix("link ").and_then(|r| r.split_once(": ")) {
            Some((_, reason)) => *by_reason.entry(reason).or_default() += 1,
            None => out.push(l.clone()),
        }
    }
    for (reason, n) in by_reason {
        out.push(format!(
            "{reason} ({n} optional link{})",
            if n == 1 { "" } else { "s" }
        ));
    }
    out
}

/// Health entries are "Connected" or "Disconnected".
fn health_word(up: bool) -> String {
    if up { "Connected" } else { "Disconnected" }.to_string()
}

impl Controller {
    /// Sends a command that answers on `reply` and waits (bounded) for the answer.
    fn ask_pw<T>(
        &self,
        command: impl FnOnce(std::sync::mpsc::Sender<Result<T, String>>) -> Command,
    ) -> Result<T, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.commands
            .lock()
            .unwrap()
            .send(command(tx))
            .map_err(|_| "the PipeWire thread is gone".to_string())?;
        rx.recv_timeout(Duration::from_secs(2))
            .map_err(|_| "the PipeWire thread did not answer".to_string())?
    }

    pub fn new(
        config: Config,
        commands: pipewire::channel::Sender<Command>,
        state_file: Option<PathBuf>,
    ) -> Self {
        Controller {
            config,
            shared: Arc::new(Mutex::new(Shared {
                mode: None,
                generation: 0,
                status: Status::default(),
                settled: (0, false),
                taps: Vec::new(),
                levels: BTreeMap::new(),
                levels_at: BTreeMap::new(),
                levels_until: None,
                apps: BTreeMap::new(),
                app_notes: Vec::new(),
                solo: None,
                mic_watch: None,
                measuring: false,
                measurement: String::new(),
            })),
            changed: Arc::new(event_listener::Event::new()),
            lease_changed: Arc::new(event_listener::Event::new()),
            commands: Mutex::new(commands),
            transaction: async_lock::Mutex::new(()),
            state_file,
            chain: Default::default(),
            abort: Default::default(),
            measure_abort: Default::default(),
            measure_wake: event_listener::Event::new(),
        }
    }

    fn table_for(
        &self,
        mode: Mode,
        taps: &[(String, u32)],
        solo: Option<&[u32]>,
    ) -> Result<Table, Error> {
        let extra = self.config.extra_routes(mode);
        let app = self.config.apps.get(&mode).map(|a| &a.routing);
        let topology = self.active_topology();
        let inp = TableInput {
            mode,
            topology: &topology,
            filter_tag: &self.filter_tag(),
            app,
            extra: &extra,
            taps,
            require_plugins: self.config.require_plugins,
        };
        routing::table(&inp)
            .map(|t| match (mode, solo) {
                (Mode::Measurement, Some(inputs)) => super::measure::solo::restrict(t, inputs),
                _ => t,
            })
            .map(|t| self.with_mic_meter(self.with_parallel(t)))
            .map_err(|e| match e {
                routing::TableError::NoInears(_) => Error::Refused(e.to_string()),
                _ => Error::InvalidArgs(e.to_string()),
            })
    }

    fn components(&self, mode: Mode, table: &Table) -> Vec<String> {
        let mut c: Vec<String> = [
            routing::HW_OUT,
            routing::HW_IN,
            routing::MIC,
            routing::PROGRAM,
            routing::HEADPHONES,
            routing::INEARS,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        c.push(routing::filters_in(&self.filter_tag()));
        c.push(routing::filters_out(&self.filter_tag()));
        c.extend(table.plugins.iter().map(|p| p.name.clone()));
        if let Some(app) = self.config.apps.get(&mode) {
            if matches!(mode, Mode::Dj | Mode::Live) {
                c.push(app.routing.node.clone());
            }
        }
        c
    }

    /// Sends the desired state for `mode` to the PipeWire thread; returns its generation.
    fn apply(&self, mode: Mode) -> Result<u64, Error> {
        let mut sh = self.shared.lock().unwrap();
        let table = self.table_for(mode, &sh.taps, sh.solo.as_deref())?;
        let components = self.components(mode, &table);
        sh.generation += 1;
        let generation = sh.generation;
        let desired = Desired {
            table,
            require_plugins: self.config.require_plugins,
        };
        let cmd = Command::Apply {
            generation,
            desired,
            quantum: self.config.quantum_for(mode),
            components,
        };
        if self.commands.lock().unwrap().send(cmd).is_err() {
            return Err(Error::NotReady("the PipeWire thread is gone".into()));
        }
        sh.mode = Some(mode);
        Ok(generation)
    }

    /// Applies the mode a previous run left (restart safety: adopt, do not tear down).
    pub fn restore(&self, mode: Mode) -> Result<(), Error> {
        self.apply(mode).map(|_| ())
    }

    fn persist(&self, mode: Mode) {
        if let Some(p) = &self.state_file {
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Err(e) = std::fs::write(p, mode.as_str()) {
                tracing::warn!("cannot write {}: {e}", p.display());
            }
        }
    }

    /// Starts the mode's application if its node is absent and we have not started it yet.
    fn ensure_app(&self, mode: Mode) -> Vec<String> {
        let Some(app) = self.config.apps.get(&mode) else {
            return vec![];
        };
        if !matches!(mode, Mode::Dj | Mode::Live) || app.command.is_empty() {
            return vec![];
        }
        let mut sh = self.shared.lock().unwrap();
        if sh.status.health.get(&app.routing.node) == Some(&true) {
            return vec![];
        }
        if let Some(child) = sh.apps.get_mut(&mode) {
            if matches!(child.try_wait(), Ok(None)) {
                return vec![format!(
                    "{} started, waiting for node {}",
                    app.command[0], app.routing.node
                )];
            }
        }
        match std::process::Command::new(&app.command[0])
            .args(&app.command[1..])
            .stdin(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => {
                sh.apps.insert(mode, child);
                vec![format!("started {}", app.command.join(" "))]
            }
            Err(e) => vec![format!("application {} not started: {e}", app.command[0])],
        }
    }

    /// Waits until the status for `generation` is ready, or the deadline.
    async fn wait_ready(&self, generation: u64, timeout: Duration) -> (bool, Status) {
        let deadline = Instant::now() + timeout;
        loop {
            let listener = self.changed.listen();
            {
                let sh = self.shared.lock().unwrap();
                if sh.settled == (generation, true) {
                    return (true, sh.status.clone());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                let sh = self.shared.lock().unwrap();
                return (false, sh.status.clone());
            }
            futures_lite::future::or(
                async {
                    listener.await;
                },
                async {
                    async_io::Timer::at(deadline).await;
                },
            )
            .await;
        }
    }

    pub async fn set_mode_inner(&self, mode: &str) -> Result<Readiness, Error> {
        let mode: Mode = mode.parse().map_err(Error::InvalidArgs)?;
        let _tx = self.transaction.lock().await;
        let start = Instant::now();
        let generation = self.apply(mode)?;
        self.persist(mode);
        let mut notes = self.ensure_app(mode);
        let (ready, st) = self
            .wait_ready(
                generation,
                Duration::from_millis(self.config.ready_timeout_ms),
            )
            .await;
        let elapsed_us = start.elapsed().as_micros() as u64;
        notes.extend(summarise(&st.optional_missing));
        self.shared.lock().unwrap().app_notes = notes.clone();
        let r = Readiness {
            ready,
            mode: mode.to_string(),
            quantum: st.quantum.unwrap_or(0),
            missing: st.missing.clone(),
            notes,
            elapsed_us,
        };
        if !ready {
            let what = if st.generation != generation {
                "the PipeWire thread has not answered".to_string()
            } else {
                st.missing.join("; ")
            };
            return Err(Error::NotReady(format!(
                "mode {mode} not ready after {} ms: {what}",
                self.config.ready_timeout_ms
            )));
        }
        Ok(r)
    }

    pub fn status_json(&self) -> String {
        let sh = self.shared.lock().unwrap();
        let v = serde_json::json!({
            "mode": sh.mode.map(|m| m.to_string()).unwrap_or_default(),
            "quantum_wanted": sh.mode.map(|m| self.config.quantum_for(m)),
            "status": sh.status,
            "notes": sh.app_notes,
            "taps": sh.taps,
            "chain": self.chain_json(),
        });
        v.to_string()
    }
}

#[zbus::interface(name = "org.mugge.Controller1")]
impl Controller {
    /// Sets the mode (standby, dj, live, measurement) and answers once the graph matches.
    async fn set_mode(&self, mode: &str) -> Result<Readiness, Error> {
        self.refuse_while_measuring()?;
        self.set_mode_inner(mode).await
    }

    /// Everything in one JSON document (for `mugge status --json` and scripts).
    fn get_status(&self) -> String {
        self.status_json()
    }

    /// Starts a PCM tap on a source node (`usbstreamer-in`, `usbstreamer-out`, `umik1-in`,
    /// `mugge-program`, ...) with `channels` channels; returns the tap's socket path.
    async fn start_tap(&self, source: &str, channels: u32) -> Result<String, Error> {
        if source.is_empty() || source.contains(char::is_whitespace) || source.contains('/') {
            return Err(Error::InvalidArgs(format!("'{source}' is not a node name")));
        }
        if !(1..=32).contains(&channels) {
            return Err(Error::InvalidArgs(format!(
                "channels must be 1..32, not {channels}"
            )));
        }
        let _tx = self.transaction.lock().await;
        let mode = {
            let mut sh = self.shared.lock().unwrap();
            // Taps go on managed components only; anything else is a bad argument.
            if !sh.status.health.contains_key(source) || routing::is_plugin_node(source) {
                let known: Vec<&String> = sh
                    .status
                    .health
                    .keys()
                    .filter(|k| !routing::is_plugin_node(k))
                    .collect();
                return Err(Error::InvalidArgs(format!(
                    "unknown source '{source}'; sources: {known:?}"
                )));
            }
            if sh.taps.iter().any(|(s, _)| s == source) {
                return Err(Error::Refused(format!(
                    "a tap on {source} is already running"
                )));
            }
            let Some(mode) = sh.mode else {
                return Err(Error::Refused("no mode is set".into()));
            };
            sh.taps.push((source.to_string(), channels));
            mode
        };
        let generation = match self.apply(mode) {
            Ok(g) => g,
            Err(e) => {
                self.shared
                    .lock()
                    .unwrap()
                    .taps
                    .retain(|(s, _)| s != source);
                return Err(e);
            }
        };
        let tap = format!("{}{source}", routing::TAP_PREFIX);
        let (_, st) = self
            .wait_ready(
                generation,
                Duration::from_millis(self.config.ready_timeout_ms),
            )
            .await;
        if st.health.get(&tap) == Some(&true) {
            // The plugin publishes its socket; its documented default otherwise.
            Ok(st.sockets.get(&tap).cloned().unwrap_or_else(|| {
                self.tap_dir()
                    .join(format!("tap-{tap}.sock"))
                    .display()
                    .to_string()
            }))
        } else {
            self.shared
                .lock()
                .unwrap()
                .taps
                .retain(|(s, _)| s != source);
            let _ = self.apply(mode);
            Err(Error::NotReady(format!(
                "tap node {tap} did not appear (is the mugge plugin installed?)"
            )))
        }
    }

    /// Stops the tap on `source`.
    async fn stop_tap(&self, source: &str) -> Result<(), Error> {
        let _tx = self.transaction.lock().await;
        let mode = {
            let mut sh = self.shared.lock().unwrap();
            let before = sh.taps.len();
            sh.taps.retain(|(s, _)| s != source);
            if sh.taps.len() == before {
                return Err(Error::InvalidArgs(format!(
                    "no tap is running on '{source}'"
                )));
            }
            sh.mode
        };
        if let Some(m) = mode {
            self.apply(m)?;
        }
        Ok(())
    }

    /// The latest snapshot of a meter (`mugge-meter-program`, `mugge-meter-hw-out`,
    /// `mugge-meter-hw-in`): graph clock, then per channel peak, RMS, display, PPM (dBFS), clip.
    fn get_levels(&self, meter: &str) -> Result<Levels, Error> {
        check_meter(meter)?;
        self.watch_levels_for(Duration::from_secs(5));
        self.shared
            .lock()
            .unwrap()
            .levels
            .get(meter)
            .cloned()
            .ok_or_else(|| {
                Error::NotReady(format!("no snapshot from {meter} yet (is it running?)"))
            })
    }

    /// Keeps meter snapshots flowing (GetLevels, LevelsChanged) for `seconds` (1..60); readers
    /// renew it. Without a reader the meters' Props are not subscribed: no wake-ups.
    fn watch_levels(&self, seconds: u32) -> Result<(), Error> {
        if !(1..=60).contains(&seconds) {
            return Err(Error::InvalidArgs(format!(
                "seconds must be 1..60, not {seconds}"
            )));
        }
        self.watch_levels_for(Duration::from_secs(seconds as u64));
        Ok(())
    }

    /// Resets every channel's clip latch of a meter.
    async fn reset_clip(&self, meter: &str) -> Result<(), Error> {
        check_meter(meter)?;
        // Idle meters are not bound: a short lease binds them, ahead of the reset in the
        // PipeWire thread's queue.
        self.watch_levels_for(Duration::from_secs(1));
        let (tx, rx) = async_channel::bounded(1);
        let cmd = Command::ResetClip {
            meter: meter.to_string(),
            reply: tx,
        };
        if self.commands.lock().unwrap().send(cmd).is_err() {
            return Err(Error::NotReady("the PipeWire thread is gone".into()));
        }
        match rx.recv().await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(Error::NotReady(why)),
            Err(_) => Err(Error::NotReady("the PipeWire thread did not answer".into())),
        }
    }

    #[zbus(signal, name = "LevelsChanged")]
    async fn emit_levels_changed(
        emitter: &SignalEmitter<'_>,
        meter: &str,
        levels: Levels,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    fn mode(&self) -> String {
        self.shared
            .lock()
            .unwrap()
            .mode
            .map(|m| m.to_string())
            .unwrap_or_default()
    }

    /// The applied quantum (`clock.force-quantum` in the settings metadata), 0 if none.
    #[zbus(property)]
    fn quantum(&self) -> u32 {
        self.shared.lock().unwrap().status.quantum.unwrap_or(0)
    }

    /// The active profile as the filter-chain node reports it (`mugge.profile`), else the
    /// configured topology's profile.
    #[zbus(property)]
    fn profile(&self) -> String {
        let sh = self.shared.lock().unwrap();
        sh.status
            .profile
            .clone()
            .unwrap_or_else(|| self.config.topology.profile.clone())
    }

    /// Component -> "Connected" | "Disconnected".
    #[zbus(property)]
    fn health(&self) -> HashMap<String, String> {
        let sh = self.shared.lock().unwrap();
        let mut h: HashMap<String, String> = sh
            .status
            .health
            .iter()
            .map(|(k, v)| (k.clone(), health_word(*v)))
            .collect();
        h.insert("pipewire".into(), health_word(sh.status.connected));
        h
    }

    /// Desired links (from, to, optional) and whether each exists.
    #[zbus(property)]
    fn links(&self) -> Vec<(String, String, bool, bool)> {
        let sh = self.shared.lock().unwrap();
        sh.status
            .links
            .iter()
            .map(|l| (l.from.clone(), l.to.clone(), l.optional, l.present))
            .collect()
    }

    #[zbus(property)]
    fn ready(&self) -> bool {
        self.shared.lock().unwrap().status.ready
    }

    #[zbus(property)]
    fn missing(&self) -> Vec<String> {
        self.shared.lock().unwrap().status.missing.clone()
    }

    /// Validates, generates and gates the profile `name`, then runs the safety flow (mute,
    /// new chain, re-link, stop the old chain, ramp up). Refused in DJ/Live unless `force`.
    /// Answers the phase timings in ms.
    async fn activate_profile(
        &self,
        name: &str,
        force: bool,
        #[zbus(signal_emitter)] em: SignalEmitter<'_>,
    ) -> Result<Vec<(String, u64)>, Error> {
        self.refuse_while_measuring()?;
        self.activate_inner(name, force, Some(&em)).await
    }

    /// Mutes every speaker output now and stops a running activation.
    fn abort_activation(&self) -> Result<String, Error> {
        self.abort_inner()
    }

    /// Ramps the active chain up to its profile's trims (after a muted start).
    async fn unmute(&self, #[zbus(signal_emitter)] em: SignalEmitter<'_>) -> Result<(), Error> {
        self.refuse_while_measuring()?;
        self.unmute_inner(Some(&em)).await
    }

    /// Swaps in the matched set in directory `set` (same profile) without a dropout: second
    /// chain beside the active one, equal-gain crossfade, old chain stopped. If the new chain
    /// fails, the old keeps playing and the call fails with the reason. Answers phase timings.
    async fn reload_filters(
        &self,
        set: &str,
        #[zbus(signal_emitter)] em: SignalEmitter<'_>,
    ) -> Result<Vec<(String, u64)>, Error> {
        self.refuse_while_measuring()?;
        self.reload_inner(set, Some(&em)).await
    }

    /// Measures `channels` (one-based speaker channels of the active set; empty: all) one at
    /// a time: level finding, sweep, capture; then analysis, design, deploy and verification
    /// (`options` JSON, docs/measurement.md). Answers at once with the directory the
    /// measurement is saved to; progress comes as MeasurementProgress, the end as
    /// MeasurementFinished and the MeasurementResult property.
    async fn start_measurement(
        &self,
        channels: Vec<u32>,
        options: &str,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, Error> {
        let req = super::measure::options::Request::parse(options).map_err(Error::InvalidArgs)?;
        self.start_measurement_inner(channels, &req, conn, None)
            .await
    }

    /// Deploys installation preset `name` (the set its design made, for the active profile)
    /// and verifies it: a measurement of its channels like StartMeasurement's dry run, whose
    /// result (MeasurementResult's `preset`) is the drift per 1/3 octave from the stored
    /// measurement, with a warning past `drift_threshold_db` (`options` JSON,
    /// docs/measurement.md). Answers the measurement's directory; the end comes as
    /// MeasurementFinished. Refused, with nothing changed, for a preset that is missing, for
    /// another profile, or whose set cannot be made again identically.
    async fn recall_preset(
        &self,
        name: &str,
        options: &str,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, Error> {
        self.recall_preset_inner(name, options, conn).await
    }

    /// Stores the finished measurement in directory `measurement` (one that deployed and
    /// verified a corrected set) as installation preset `name`: the design, the set's id and
    /// the verification measurement later recalls are compared with. Answers the preset's
    /// directory. An existing name is refused and stays as it was.
    async fn store_preset(&self, name: &str, measurement: &str) -> Result<String, Error> {
        self.store_preset_inner(name, measurement).await
    }

    /// The stored installation presets' names.
    fn presets(&self) -> Result<Vec<String>, Error> {
        mugge_filter_chain::measure::preset::list(&self.config.measurement.presets_dir())
            .map_err(|e| Error::NotReady(e.to_string()))
    }

    /// Mutes now, stops the generator and makes a running measurement end (previous mode and
    /// filter set restored; the speakers stay muted until Unmute).
    fn abort_measurement(&self) -> Result<String, Error> {
        self.abort_measurement_inner()
    }

    /// The operator has moved the mic to the next position.
    fn continue_measurement(&self) -> Result<(), Error> {
        self.continue_measurement_inner()
    }

    /// The last measurement's result as JSON ("" before the first one).
    #[zbus(property)]
    fn measurement_result(&self) -> String {
        self.shared.lock().unwrap().measurement.clone()
    }

    #[zbus(signal, name = "MeasurementProgress")]
    async fn measurement_progress(
        emitter: &SignalEmitter<'_>,
        phase: &str,
        channel: u32,
        percent: f64,
        level_db: f64,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "MeasurementFinished")]
    async fn measurement_finished(
        emitter: &SignalEmitter<'_>,
        dir: &str,
        ok: bool,
        message: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "ActivationProgress")]
    async fn activation_progress(
        emitter: &SignalEmitter<'_>,
        phase: &str,
        percent: u32,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "ModeChanged")]
    async fn emit_mode_changed(emitter: &SignalEmitter<'_>, mode: &str) -> zbus::Result<()>;

    #[zbus(signal, name = "HealthChanged")]
    async fn emit_health_changed(
        emitter: &SignalEmitter<'_>,
        health: HashMap<String, String>,
    ) -> zbus::Result<()>;
}

impl Controller {
    fn watch_levels_for(&self, d: Duration) {
        let now = Instant::now();
        let mut sh = self.shared.lock().unwrap();
        let active = sh.levels_until.is_some_and(|t| t > now);
        sh.levels_until = Some(sh.levels_until.filter(|t| *t > now + d).unwrap_or(now + d));
        if !active {
            let _ = self
                .commands
                .lock()
                .unwrap()
                .send(Command::WantLevels(true));
        }
        self.lease_changed.notify(usize::MAX);
    }

    fn tap_dir(&self) -> PathBuf {
        self.config.tap_dir.clone().unwrap_or_else(|| {
            std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir)
                .join("mugge")
        })
    }
}

fn check_meter(meter: &str) -> Result<(), Error> {
    match meter {
        routing::METER_PROGRAM
        | routing::METER_HW_OUT
        | routing::METER_HW_IN
        | routing::METER_MIC => Ok(()),
        _ => Err(Error::InvalidArgs(format!(
            "unknown meter '{meter}': expected one of {}, {}, {}, {} (measurement mode)",
            routing::METER_PROGRAM,
            routing::METER_HW_OUT,
            routing::METER_HW_IN,
            routing::METER_MIC
        ))),
    }
}

/// Keeps the latest snapshot per meter and emits LevelsChanged at most `levels_hz` per meter.
pub async fn pump_levels(
    conn: zbus::Connection,
    rx: async_channel::Receiver<(String, Levels)>,
) -> zbus::Result<()> {
    let iface = conn
        .object_server()
        .interface::<_, Controller>(OBJECT_PATH)
        .await?;
    let period = {
        let c = iface.get().await;
        Duration::from_secs_f64(1.0 / c.config.levels_hz)
    };
    let (shared, lease_changed) = {
        let c = iface.get().await;
        (c.shared.clone(), c.lease_changed.clone())
    };
    enum Ev {
        Snapshot(Option<(String, Levels)>),
        Expired,
        LeaseChanged,
    }
    let mut last: HashMap<String, Instant> = HashMap::new();
    loop {
        let listener = lease_changed.listen();
        let until = shared.lock().unwrap().levels_until;
        let ev = futures_lite::future::or(
            async { Ev::Snapshot(rx.recv().await.ok()) },
            futures_lite::future::or(
                async {
                    match until {
                        Some(t) => {
                            async_io::Timer::at(t).await;
                            Ev::Expired
                        }
                        None => futures_lite::future::pending().await,
                    }
                },
                async {
                    listener.await;
                    Ev::LeaseChanged
                },
            ),
        )
        .await;
        let (meter, levels) = match ev {
            Ev::Snapshot(None) => break,
            Ev::Snapshot(Some(x)) => x,
            Ev::LeaseChanged => continue,
            Ev::Expired => {
                let c = iface.get().await;
                let mut sh = shared.lock().unwrap();
                if sh.levels_until.is_some_and(|t| t <= Instant::now()) {
                    // Nobody reads: stop the snapshots, forget stale ones. Sent under the
                    // lease's lock: a reader renewing now sends its WantLevels(true) after this
                    // one, never before (which would leave a lease without snapshots).
                    sh.levels_until = None;
                    sh.levels.clear();
                    sh.levels_at.clear();
                    let _ = c.commands.lock().unwrap().send(Command::WantLevels(false));
                }
                continue;
            }
        };
        {
            let mut sh = shared.lock().unwrap();
            if sh.levels_until.is_none() {
                // Sent before the PipeWire thread saw WantLevels(false): a snapshot from a lease
                // that ended must not come back as the latest reading.
                continue;
            }
            sh.levels.insert(meter.clone(), levels.clone());
            sh.levels_at.insert(meter.clone(), Instant::now());
            if meter == routing::METER_MIC {
                if let Some(tx) = &sh.mic_watch {
                    let _ = tx.try_send(levels.clone());
                }
            }
        }
        let now = Instant::now();
        if last
            .get(&meter)
            .is_some_and(|t| now.duration_since(*t) < period)
        {
            continue;
        }
        last.insert(meter.clone(), now);
        Controller::emit_levels_changed(iface.signal_emitter(), &meter, levels).await?;
    }
    Ok(())
}

/// Consumes status updates from the PipeWire thread, wakes waiters and emits signals.
pub async fn pump_status(
    conn: zbus::Connection,
    rx: async_channel::Receiver<Status>,
) -> zbus::Result<()> {
    let iface = conn
        .object_server()
        .interface::<_, Controller>(OBJECT_PATH)
        .await?;
    let mut last_mode = String::new();
    let mut last_health = HashMap::new();
    let mut last = Status::default();
    while let Ok(st) = rx.recv().await {
        let (mode, health) = {
            let c = iface.get().await;
            {
                let mut sh = c.shared.lock().unwrap();
                sh.status = st.clone();
            }
            (c.mode(), c.health())
        };
        let em = iface.signal_emitter();
        if mode != last_mode {
            Controller::emit_mode_changed(em, &mode).await?;
            iface.get().await.mode_changed(em).await?;
            last_mode = mode;
        }
        if health != last_health {
            Controller::emit_health_changed(em, health.clone()).await?;
            iface.get().await.health_changed(em).await?;
            last_health = health;
        }
        let c = iface.get().await;
        if st.links != last.links {
            c.links_changed(em).await?;
        }
        if st.quantum != last.quantum {
            c.quantum_changed(em).await?;
        }
        if st.profile != last.profile {
            c.profile_changed(em).await?;
        }
        if st.ready != last.ready {
            c.ready_changed(em).await?;
        }
        if st.missing != last.missing {
            c.missing_changed(em).await?;
        }
        c.shared.lock().unwrap().settled = (st.generation, st.ready);
        last = st;
        // Waiters (SetMode) answer only after the PropertiesChanged signals went out, so a
        // client's cached properties agree with the answer it gets.
        c.changed.notify(usize::MAX);
    }
    Ok(())
}
