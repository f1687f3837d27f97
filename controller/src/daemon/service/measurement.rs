//! The online measurement loop (issue 8, docs/measurement.md): per speaker channel, solo
//! routing through its own filters, ambient + level finding with the safety layer, a Farina
//! sweep captured through the mic tap and the generator's reference tap (cut by graph clock),
//! then analysis, design, deploy (ReloadFilters) and a verification measurement.
//!
//! Everything waits on events: mic meter snapshots, tap frames, status changes, the abort
//! request. The safety check runs on every mic snapshot as it arrives, and an abort mutes
//! before anything else is done.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mugge_filter_chain::measure::analysis::AnalysisOptions;
use mugge_filter_chain::measure::calibration::{Calibration, MicSensitivity};
use mugge_filter_chain::measure::record::{Capture, ChannelResult, ClockStamp, Recording};
use mugge_filter_chain::measure::sweep::SweepParams;
use mugge_filter_chain::measure::{design, preset};
use mugge_filter_chain::set::Manifest;
use zbus::object_server::SignalEmitter;

use super::super::levels::Levels;
use super::super::measure::capture::{Frame, Reader, Track};
use super::super::measure::level::{Abort, Finder, Guard, Reading, Step, GENERATOR_CAP_DBFS};
use super::super::measure::options::{MeasureConfig, Request};
use super::super::measure::report::{ChannelReport, Harmonic, PresetCheck, Report};
use super::super::measure::{siggen, solo};
use super::super::props::PropValue;
use super::super::pw::Command;
use super::super::routing::{self, Mode};
use super::presets::{Recall, REPORT_FILE};
use super::{Controller, Error, OBJECT_PATH};

/// Why the loop ended early.
enum Stop {
    Abort(Abort),
    Fail(String),
}

impl From<Abort> for Stop {
    fn from(a: Abort) -> Self {
        Stop::Abort(a)
    }
}

/// The graph is quiet this long (reference exactly silent) before a sweep starts.
const QUIET_BEFORE_SWEEP_S: f64 = 0.25;
/// Captured before the sweep's first sample (both taps, same graph frames).
const PRE_ROLL: u64 = 256;
/// The generator must start a requested sweep within this (wall time bound, not a sleep).
const SWEEP_START_TIMEOUT: Duration = Duration::from_secs(3);
/// Meters snapshot at 30 Hz by default (docs/plugin.md).
const SNAPSHOT_HZ: f64 = 30.0;

enum Ev {
    Mic(Levels),
    Reference(Frame),
    MicTap(Frame),
    /// Abort or continue requested, or a status change: re-check.
    Wake,
    Timeout,
    Closed(&'static str),
}

fn reading(l: &Levels) -> Reading {
    Reading {
        seq: l.seq,
        position: l.position,
        rms_dbfs: l.rms.first().copied().unwrap_or(-200.0),
        peak_dbfs: l.peak.first().copied().unwrap_or(-200.0),
    }
}

/// Everything one run needs.
struct Run<'a> {
    ctl: &'a Controller,
    em: &'a SignalEmitter<'a>,
    cfg: MeasureConfig,
    sens: MicSensitivity,
    calibration: Option<Calibration>,
    mic: async_channel::Receiver<Levels>,
    last_snapshot: Instant,
    tag: String,
    trims: Vec<(u32, f32)>,
    manifest: Manifest,
    /// The set the measurement plays through (an earlier corrected set is divided out).
    played_set: PathBuf,
    rate: u32,
    loopback: f64,
    ambient: Option<f64>,
    sweeps: Duration,
    timings: Vec<(String, u64)>,
    lap: Instant,
    /// Verifying a recalled preset: the analysis is compared with its stored measurement.
    recall: Option<&'a Recall>,
}

/// A measurement needs a mode, and a show running only with `force`.
pub(super) fn may_measure_in(mode: Option<Mode>, force: bool) -> Result<(), Error> {
    match mode {
        None => Err(Error::Refused("no mode is set".into())),
        Some(m @ (Mode::Dj | Mode::Live)) if !force => Err(Error::Refused(format!(
            "refused in {m} mode: the program stops and test signals play for the whole \
             measurement; force to do it anyway"
        ))),
        _ => Ok(()),
    }
}

impl Controller {
    pub(super) fn refuse_while_measuring(&self) -> Result<(), Error> {
        if self.shared.lock().unwrap().measuring {
            return Err(Error::Refused(
                "a measurement is running (AbortMeasurement stops it)".into(),
            ));
        }
        Ok(())
    }

    fn set_props(&self, node: &str, params: Vec<(String, PropValue)>) -> Result<(), String> {
        self.ask_pw(|tx| Command::SetProps {
            node: node.to_string(),
            params,
            reply: Some(tx),
        })
    }

    /// Generator silent and every speaker output at 0, at once (no ramp beyond the nodes' own).
    fn measure_mute(&self) -> Result<(), String> {
        let active = {
            let cs = self.chain.lock().unwrap();
            cs.active.as_ref().map(|a| (a.tag.clone(), a.trims.clone()))
        };
        // The speakers first: their gains act on the next cycle, the generator ramps 10 ms.
        let chain = match active {
            Some((tag, trims)) => self.send_controls(&tag, solo::gains(&trims, None)),
            None => Ok(()),
        };
        let gen = self.set_props(routing::SIGGEN, siggen::silent());
        chain.and(gen)
    }

    pub(super) async fn start_measurement_inner(
        &self,
        channels: Vec<u32>,
        req: &Request,
        conn: &zbus::Connection,
        recall: Option<Recall>,
    ) -> Result<String, Error> {
        let req = req.clone();
        let cfg = req
            .apply(&self.config.measurement)
            .map_err(Error::InvalidArgs)?;
        cfg.calibration().map_err(Error::InvalidArgs)?;
        let set_id = {
            let cs = self.chain.lock().unwrap();
            let Some(a) = cs.active.as_ref() else {
                return Err(Error::Refused(
                    "no active filter set: activate a profile first".into(),
                ));
            };
            a.set.clone()
        };
        let m = self.manifest_of(&set_id).ok_or_else(|| {
            Error::Refused(format!(
                "the active set {set_id} is not under the sets directory: activate a profile"
            ))
        })?;
        let all: Vec<u32> = m.channels.iter().map(|c| c.channel).collect();
        let channels = if channels.is_empty() {
            all.clone()
        } else {
            channels
        };
        for c in &channels {
            if !all.contains(c) {
                return Err(Error::InvalidArgs(format!(
                    "channel {c} is not a speaker channel of the active set (channels {all:?})"
                )));
            }
        }
        let mut sorted = channels.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != channels.len() {
            return Err(Error::InvalidArgs(format!(
                "channel listed twice: {channels:?}"
            )));
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let dir = cfg.measurements_dir().join(format!("measurement-{stamp}"));
        {
            let _tx = self.transaction.lock().await;
            let mut sh = self.shared.lock().unwrap();
            if sh.measuring {
                return Err(Error::Refused("a measurement is already running".into()));
            }
            may_measure_in(sh.mode, req.force)?;
            sh.measuring = true;
        }
        self.measure_abort.store(false, Ordering::SeqCst);
        let conn = conn.clone();
        let d = dir.clone();
        let spawned = std::thread::Builder::new()
            .name("mugge-measure".into())
            .spawn(move || {
                async_io::block_on(async move {
                    let Ok(iface) = conn
                        .object_server()
                        .interface::<_, Controller>(OBJECT_PATH)
                        .await
                    else {
                        return;
                    };
                    let ctl = iface.get().await;
                    let em = iface.signal_emitter();
                    let report = ctl
                        .measure_task(&channels, &req, cfg, &d, em, recall.as_ref())
                        .await;
                    let json = serde_json::to_string(&report).unwrap_or_default();
                    // Beside the captures: what StorePreset and offline readers start from.
                    if d.is_dir() {
                        let _ = std::fs::write(d.join(REPORT_FILE), &json);
                    }
                    let message = match (&report.abort, &report.error) {
                        (Some(a), _) => a.to_string(),
                        (None, Some(e)) => e.clone(),
                        _ => "done".to_string(),
                    };
                    {
                        let mut sh = ctl.shared.lock().unwrap();
                        sh.measurement = json;
                        sh.measuring = false;
                    }
                    let _ = ctl.measurement_result_changed(em).await;
                    let _ = Controller::measurement_finished(em, &report.dir, report.ok, &message)
                        .await;
                });
            });
        if let Err(e) = spawned {
            self.shared.lock().unwrap().measuring = false;
            return Err(Error::NotReady(format!(
                "cannot start the measurement: {e}"
            )));
        }
        Ok(dir.display().to_string())
    }

    pub(super) fn abort_measurement_inner(&self) -> Result<String, Error> {
        self.measure_abort.store(true, Ordering::SeqCst);
        self.measure_wake.notify(usize::MAX);
        self.measure_mute().map_err(Error::NotReady)?;
        Ok("generator stopped, all speaker outputs muted".into())
    }

    pub(super) fn continue_measurement_inner(&self) -> Result<(), Error> {
        if !self.shared.lock().unwrap().measuring {
            return Err(Error::Refused("no measurement is running".into()));
        }
        self.measure_wake.notify(usize::MAX);
        Ok(())
    }

    /// Runs the whole loop and always restores: generator silent, previous mode; the
    /// previous gain only after a clean run (an abort leaves the speakers muted).
    async fn measure_task(
        &self,
        channels: &[u32],
        req: &Request,
        cfg: MeasureConfig,
        dir: &Path,
        em: &SignalEmitter<'_>,
        recall: Option<&Recall>,
    ) -> Report {
        let start = Instant::now();
        let prev_mode = self.shared.lock().unwrap().mode.unwrap_or(Mode::Standby);
        let (prev_factor, prev_set) = {
            let cs = self.chain.lock().unwrap();
            let a = cs.active.as_ref();
            (
                a.and_then(|a| a.factor).unwrap_or(0.0),
                a.map(|a| a.set.clone()).unwrap_or_default(),
            )
        };
        let (tx, rx) = async_channel::bounded(256);
        self.shared.lock().unwrap().mic_watch = Some(tx);
        let mut report = Report {
            dir: dir.display().to_string(),
            dry_run: req.dry_run,
            target_spl_db: cfg.target_spl_db,
            ..Report::default()
        };
        let mut deployed = false;
        let outcome = self
            .measure_run(
                channels,
                req,
                cfg,
                dir,
                em,
                rx,
                &mut report,
                &mut deployed,
                recall,
            )
            .await;
        // Whatever happened: silence first.
        let muted = self.measure_mute();
        let _ = self.set_factor(0.0);
        self.shared.lock().unwrap().mic_watch = None;
        let aborted = !matches!(outcome, Ok(()));
        match outcome {
            Ok(()) => report.ok = true,
            Err(Stop::Abort(a)) => {
                tracing::warn!("measurement aborted: {a}");
                report.abort = Some(a);
            }
            Err(Stop::Fail(e)) => {
                tracing::warn!("measurement failed: {e}");
                report.error = Some(e);
            }
        }
        if let Err(e) = muted {
            report.error.get_or_insert(format!("muting failed: {e}"));
        }
        if aborted && deployed {
            // The previous filters come back (muted) when the run did not finish.
            match self.set_dir_of(&prev_set) {
                Some(d) => {
                    if let Err(e) = self.reload_inner(&d.display().to_string(), None).await {
                        report
                            .error
                            .get_or_insert(format!("restoring set {prev_set} failed: {e}"));
                    } else {
                        report.deployed_set = None;
                    }
                }
                None => {
                    report
                        .error
                        .get_or_insert(format!("previous set {prev_set} not found to restore"));
                }
            }
        }
        self.shared.lock().unwrap().solo = None;
        {
            let _tx = self.transaction.lock().await;
            let generation = self.apply(prev_mode);
            if let Ok(g) = generation {
                let _ = self
                    .wait_ready(g, Duration::from_millis(self.config.ready_timeout_ms))
                    .await;
            }
        }
        if !aborted && prev_factor > 0.0 {
            let a = &self.config.activation;
            let _ = self
                .ramp_to(
                    prev_factor,
                    Duration::from_millis(a.ramp_ms),
                    a.ramp_steps,
                    "ramp",
                    None,
                )
                .await;
        }
        let phase = if report.abort.is_some() {
            "aborted"
        } else if report.error.is_some() {
            "failed"
        } else {
            "done"
        };
        let _ = Self::measurement_progress(em, phase, 0, 100.0, 0.0).await;
        report.total_ms = start.elapsed().as_millis() as u64;
        report
    }

    /// A set directory by its id, under the sets directory.
    pub(super) fn set_dir_of(&self, set_id: &str) -> Option<PathBuf> {
        let rd = std::fs::read_dir(self.config.activation.sets_dir()).ok()?;
        rd.flatten()
            .map(|e| e.path())
            .find(|p| mugge_filter_chain::set::read_manifest(p).is_ok_and(|m| m.set_id == set_id))
    }

    #[allow(clippy::too_many_arguments)]
    async fn measure_run(
        &self,
        channels: &[u32],
        req: &Request,
        cfg: MeasureConfig,
        dir: &Path,
        em: &SignalEmitter<'_>,
        mic_rx: async_channel::Receiver<Levels>,
        report: &mut Report,
        deployed: &mut bool,
        recall: Option<&Recall>,
    ) -> Result<(), Stop> {
        let calibration = cfg.calibration().map_err(Stop::Fail)?;
        let sens = cfg.sensitivity(calibration.as_ref());
        if let Some(r) = recall.filter(|r| r.deploy) {
            // Same profile and channels (checked by RecallPreset): a dropout-free reload.
            let _ = Self::measurement_progress(em, "deploy", 0, 0.0, 0.0).await;
            let set = r.set_dir.display().to_string();
            self.reload_inner(&set, None)
                .await
                .map_err(|e| Stop::Fail(format!("deploy of preset set {set} failed: {e}")))?;
            *deployed = true;
            report.deployed_set = Some(set);
        }
        let (tag, trims, set_id) = {
            let cs = self.chain.lock().unwrap();
            let a = cs
                .active
                .as_ref()
                .ok_or_else(|| Stop::Fail("no active filter set".into()))?;
            (a.tag.clone(), a.trims.clone(), a.set.clone())
        };
        let manifest = self
            .manifest_of(&set_id)
            .ok_or_else(|| Stop::Fail(format!("manifest of set {set_id} not found")))?;
        let played_set = self
            .set_dir_of(&set_id)
            .ok_or_else(|| Stop::Fail(format!("directory of set {set_id} not found")))?;
        let mut run = Run {
            ctl: self,
            em,
            cfg: cfg.clone(),
            sens,
            calibration,
            mic: mic_rx,
            last_snapshot: Instant::now(),
            tag,
            trims,
            rate: manifest.sample_rate,
            manifest,
            played_set,
            loopback: 0.0,
            ambient: None,
            sweeps: Duration::ZERO,
            timings: Vec::new(),
            lap: Instant::now(),
            recall,
        };
        let r = run.measure_all(channels, req, dir, report, deployed).await;
        report.timings = std::mem::take(&mut run.timings);
        report.sweeps_ms = run.sweeps.as_millis() as u64;
        report.ambient_spl_db = run.ambient;
        report.loopback_samples = run.loopback;
        r
    }
}

impl Run<'_> {
    fn lap(&mut self, phase: &str) {
        self.timings
            .push((phase.to_string(), self.lap.elapsed().as_millis() as u64));
        self.lap = Instant::now();
    }

    async fn progress(&self, phase: &str, channel: u32, percent: f64, level_db: f64) {
        let _ = Controller::measurement_progress(self.em, phase, channel, percent, level_db).await;
    }

    fn mic_timeout(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.cfg.mic_timeout_snapshots) / SNAPSHOT_HZ)
    }

    /// Stops on an abort request or a lost mic (node, its meter, or the link between them).
    fn check(&self) -> Result<(), Stop> {
        if self.ctl.measure_abort.load(Ordering::SeqCst) {
            return Err(Stop::Abort(Abort::Stopped {
                why: "AbortMeasurement".into(),
            }));
        }
        let sh = self.ctl.shared.lock().unwrap();
        let st = &sh.status;
        if !st.connected {
            return Err(Stop::Abort(Abort::MicLost {
                why: "PipeWire connection lost".into(),
            }));
        }
        for node in [routing::MIC, routing::METER_MIC] {
            if st.health.get(node) != Some(&true) {
                return Err(Stop::Abort(Abort::MicLost {
                    why: format!("node {node} is gone"),
                }));
            }
        }
        let to = format!("{}:1", routing::METER_MIC);
        if let Some(l) = st.links.iter().find(|l| l.to == to) {
            if !l.present {
                return Err(Stop::Abort(Abort::MicLost {
                    why: format!("link {} -> {} is gone", l.from, l.to),
                }));
            }
        }
        Ok(())
    }

    /// The next event: a mic snapshot, a tap frame, a wake-up, or the mic's timeout.
    async fn next(&mut self, taps: Option<(&Reader, &Reader)>) -> Result<Ev, Stop> {
        let wake = self.ctl.measure_wake.listen();
        let changed = self.ctl.changed.listen();
        self.check()?;
        let deadline = self.last_snapshot + self.mic_timeout();
        let mic = async {
            match self.mic.recv().await {
                Ok(l) => Ev::Mic(l),
                Err(_) => Ev::Closed("mic watch"),
            }
        };
        let taps_ev = async {
            match taps {
                Some((r, m)) => {
                    futures_lite::future::or(
                        async {
                            match r.frames.recv().await {
                                Ok(f) => Ev::Reference(f),
                                Err(_) => Ev::Closed("reference tap"),
                            }
                        },
                        async {
                            match m.frames.recv().await {
                                Ok(f) => Ev::MicTap(f),
                                Err(_) => Ev::Closed("mic tap"),
                            }
                        },
                    )
                    .await
                }
                None => futures_lite::future::pending().await,
            }
        };
        let other = async {
            futures_lite::future::or(
                async {
                    futures_lite::future::or(wake, changed).await;
                    Ev::Wake
                },
                async {
                    async_io::Timer::at(deadline).await;
                    Ev::Timeout
                },
            )
            .await
        };
        // The mic first: a safety snapshot never waits behind a burst of tap frames.
        let ev = futures_lite::future::or(mic, futures_lite::future::or(taps_ev, other)).await;
        let ev = match ev {
            // A meter's Props before its first snapshot (a node just created): no reading.
            Ev::Mic(l) if l.seq <= 0 => Ev::Wake,
            ev => ev,
        };
        match ev {
            Ev::Mic(ref l) => {
                self.last_snapshot = Instant::now();
                // Keep the snapshots flowing while we read them.
                self.ctl.watch_levels_for(Duration::from_secs(5));
                let _ = l;
            }
            Ev::Timeout => {
                return Err(Stop::Abort(Abort::MicLost {
                    why: format!(
                        "no mic meter snapshot for {} ms",
                        self.mic_timeout().as_millis()
                    ),
                }))
            }
            Ev::Closed(what) => return Err(Stop::Fail(format!("{what} closed"))),
            _ => {}
        }
        Ok(ev)
    }

    /// Mute on the spot, then report: the abort path's first action.
    fn abort_now(&self, a: Abort) -> Stop {
        let _ = self.ctl.measure_mute();
        Stop::Abort(a)
    }

    fn gen(&self, params: Vec<(String, PropValue)>) -> Result<(), Stop> {
        self.ctl
            .set_props(routing::SIGGEN, params)
            .map_err(|e| Stop::Fail(format!("generator: {e}")))
    }

    /// Measurement mode with the generator on no input, every output muted, the plugin
    /// nodes there; the meter lease held.
    async fn enter(&mut self) -> Result<(), Stop> {
        self.ctl.set_factor(0.0).map_err(Stop::Fail)?;
        self.ctl.shared.lock().unwrap().solo = Some(vec![]);
        self.relink(Mode::Measurement).await?;
        self.ctl.watch_levels_for(Duration::from_secs(5));
        let tap_ref = format!("{}{}", routing::TAP_PREFIX, routing::SIGGEN);
        let tap_mic = format!("{}{}", routing::TAP_PREFIX, routing::MIC);
        let mic_link = format!("{}:1", routing::METER_MIC);
        let ok = self
            .ctl
            .wait_status(
                Duration::from_millis(self.ctl.config.ready_timeout_ms),
                |st| {
                    [routing::SIGGEN, routing::METER_MIC, routing::MIC]
                        .iter()
                        .all(|n| st.health.get(*n) == Some(&true))
                        && st.sockets.contains_key(&tap_ref)
                        && st.sockets.contains_key(&tap_mic)
                        && st.links.iter().any(|l| l.to == mic_link && l.present)
                },
            )
            .await;
        let st = match ok {
            Ok(st) => st,
            Err(st) => {
                return Err(Stop::Fail(format!(
                    "measurement nodes not ready (is the mugge plugin installed and the mic \
                     connected?): health {:?}, sockets {:?}",
                    st.health, st.sockets
                )))
            }
        };
        self.loopback = self.cfg.loopback_samples
            + f64::from(self.cfg.loopback_quanta) * f64::from(st.quantum.unwrap_or(0));
        self.gen(siggen::silent())?;
        // Snapshots from before now describe another state.
        while self.mic.try_recv().is_ok() {}
        self.last_snapshot = Instant::now();
        Ok(())
    }

    async fn relink(&self, mode: Mode) -> Result<(), Stop> {
        let _tx = self.ctl.transaction.lock().await;
        let g = self
            .ctl
            .apply(mode)
            .map_err(|e| Stop::Fail(format!("{e}")))?;
        let (ready, st) = self
            .ctl
            .wait_ready(g, Duration::from_millis(self.ctl.config.ready_timeout_ms))
            .await;
        if !ready {
            return Err(Stop::Fail(format!(
                "graph not ready: {}",
                st.missing.join("; ")
            )));
        }
        Ok(())
    }

    /// The generator on the inputs of `channel` only; that output at its trim, all others 0.
    async fn solo(&mut self, channel: Option<u32>) -> Result<(), Stop> {
        let inputs = match channel {
            Some(c) => solo::inputs_for(&self.manifest, c)
                .ok_or_else(|| Stop::Fail(format!("channel {c} is not in the set")))?,
            None => vec![],
        };
        // Mute before the routing changes, unmute the one channel after.
        self.ctl
            .send_controls(&self.tag, solo::gains(&self.trims, None))
            .map_err(Stop::Fail)?;
        self.ctl.shared.lock().unwrap().solo = Some(inputs);
        self.relink(Mode::Measurement).await?;
        if channel.is_some() {
            self.ctl
                .send_controls(&self.tag, solo::gains(&self.trims, channel))
                .map_err(Stop::Fail)?;
        }
        Ok(())
    }

    /// Ambient (first time) and level finding for `channel`: returns (level, SPL).
    async fn find_level(
        &mut self,
        channel: u32,
        phase: &str,
        start_dbfs: Option<f64>,
    ) -> Result<(f64, f64), Stop> {
        let mut cfg = self.cfg.clone();
        if let Some(s) = start_dbfs {
            cfg.start_level_dbfs = s.max(cfg.start_level_dbfs);
        }
        // Snapshots may have stopped while nobody read them (the lease ran out during the
        // analysis): ask again and give the first one a fresh deadline.
        self.ctl.watch_levels_for(Duration::from_secs(5));
        self.last_snapshot = Instant::now();
        let mut f = Finder::new(&cfg, self.sens, self.ambient);
        if let Step::SetLevel(l) = f.start() {
            self.gen(siggen::pink(l))?;
        } else {
            self.progress("ambient", channel, 0.0, 0.0).await;
        }
        while self.mic.try_recv().is_ok() {}
        loop {
            let Ev::Mic(l) = self.next(None).await? else {
                continue;
            };
            let r = reading(&l);
            let step = match f.on_snapshot(&r) {
                Ok(s) => s,
                Err(a) => return Err(self.abort_now(a)),
            };
            if self.ambient.is_none() && f.ambient_spl_db.is_some() {
                self.ambient = f.ambient_spl_db;
                self.lap("ambient");
            }
            let spl = self.sens.spl(r.rms_dbfs);
            match step {
                Step::Wait => {}
                Step::SetLevel(level) => {
                    self.gen(siggen::pink(level))?;
                    self.progress(phase, channel, 100.0 * f.fraction(), spl)
                        .await;
                }
                Step::Done { level_dbfs, spl_db } => {
                    self.progress(phase, channel, 100.0, spl_db).await;
                    return Ok((level_dbfs, spl_db));
                }
            }
        }
    }

    /// One sweep captured through both taps; `None` when a tap lost frames.
    async fn sweep(
        &mut self,
        channel: u32,
        position: usize,
        phase: &str,
        sweep: &SweepParams,
    ) -> Result<Capture, Stop> {
        let paths = {
            let sh = self.ctl.shared.lock().unwrap();
            let get = |n: String| sh.status.sockets.get(&n).cloned();
            (
                get(format!("{}{}", routing::TAP_PREFIX, routing::SIGGEN)),
                get(format!("{}{}", routing::TAP_PREFIX, routing::MIC)),
            )
        };
        let (Some(ref_path), Some(mic_path)) = paths else {
            return Err(Stop::Fail("tap sockets not published".into()));
        };
        let guard = Guard::for_sweep(&self.cfg, self.sens);
        self.gen(siggen::silent())?;
        let reference = Reader::open(Path::new(&ref_path), "reference")
            .map_err(|e| Stop::Fail(format!("reference tap {ref_path}: {e}")))?;
        let mic = Reader::open(Path::new(&mic_path), "mic")
            .map_err(|e| Stop::Fail(format!("mic tap {mic_path}: {e}")))?;
        let (mut rt, mut mt) = (Track::default(), Track::default());
        let n = (sweep.duration_s * f64::from(sweep.rate)).floor() as u64;
        let tail = (self.cfg.tail_s * f64::from(sweep.rate)) as u64;
        let quiet = (QUIET_BEFORE_SWEEP_S * f64::from(sweep.rate)) as usize;
        let arrival_max = (AnalysisOptions::default().max_arrival_s * f64::from(sweep.rate)) as u64;
        // A tap that stops delivering must not hold the loop: a wall-time bound on the whole
        // capture (quiet wait, sweep, tail), generous for a loaded machine.
        let deadline = Instant::now()
            + SWEEP_START_TIMEOUT * 2
            + Duration::from_secs_f64(sweep.duration_s + self.cfg.tail_s) * 2;
        let mut requested: Option<(u64, Instant)> = None;
        let mut started: Option<u64> = None;
        let mut played = Instant::now();
        let mut last_pct = -1.0;
        loop {
            match self.next(Some((&reference, &mic))).await? {
                Ev::Mic(l) => {
                    // Digital silence counts only while the sweep is surely at the mic: from
                    // the latest plausible arrival after its start to its end.
                    let sounding = started.is_some_and(|s| {
                        let p = l.position.max(0) as u64;
                        p >= s + arrival_max && p <= s + n
                    });
                    if let Err(a) = guard.check(&reading(&l), sounding) {
                        return Err(self.abort_now(a));
                    }
                }
                Ev::Reference(f) => rt.push(&f),
                Ev::MicTap(f) => mt.push(&f),
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(Stop::Fail(format!(
                    "the taps did not deliver the sweep in time (reference up to {:?}, mic up \
                     to {:?}, sweep start {started:?})",
                    rt.end(),
                    mt.end()
                )));
            }
            match (requested, started) {
                (None, _) => {
                    if rt.silent_tail() >= quiet && mt.start.is_some() {
                        self.gen(siggen::sweep(sweep))?;
                        requested = Some((rt.end().unwrap_or(0), Instant::now()));
                        played = Instant::now();
                    }
                }
                (Some((from, at)), None) => {
                    started = rt.first_sound(from);
                    if started.is_none() && at.elapsed() > SWEEP_START_TIMEOUT {
                        return Err(Stop::Fail("the generator did not start the sweep".into()));
                    }
                }
                (Some(_), Some(s)) => {
                    let end = s + n + tail;
                    let done = |t: &Track| t.end().is_some_and(|e| e >= end);
                    let pct = rt.end().map_or(0.0, |e| {
                        (100.0 * (e.saturating_sub(s)) as f64 / (n + tail) as f64).min(100.0)
                    });
                    if pct - last_pct >= 10.0 {
                        last_pct = pct;
                        self.progress(phase, channel, pct, 0.0).await;
                    }
                    if done(&rt) && done(&mt) {
                        break;
                    }
                }
            }
        }
        self.gen(siggen::silent())?;
        // Progress goes in 10 % steps: the end is always reported.
        self.progress(phase, channel, 100.0, 0.0).await;
        self.sweeps += played.elapsed();
        let s = started.unwrap_or(0);
        let from = s.saturating_sub(PRE_ROLL);
        let len = (s + n + tail - from) as usize;
        let (Some(refs), Some(mics)) = (rt.cut(from, len), mt.cut(from, len)) else {
            return Err(Stop::Fail(
                "a tap does not cover the sweep (it started late)".into(),
            ));
        };
        Ok(Capture {
            channel: channel as usize,
            position,
            clock: rt.nsec_at(from).map(|nsec| ClockStamp {
                position: from,
                nsec,
            }),
            lost_frames: rt.lost() + mt.lost(),
            mic: mics,
            reference: refs,
        })
    }

    /// Level finding and a lossless sweep (retried) for every channel at every position.
    async fn capture_all(
        &mut self,
        channels: &[u32],
        positions: u32,
        verify: bool,
        start_levels: &[(u32, f64)],
        reports: &mut Vec<ChannelReport>,
    ) -> Result<Vec<Capture>, Stop> {
        let (lphase, sphase) = if verify {
            ("verify-level", "verify-sweep")
        } else {
            ("level", "sweep")
        };
        let mut captures = Vec::new();
        for pos in 1..=positions {
            if pos > 1 {
                self.solo(None).await?;
                self.gen(siggen::silent())?;
                self.progress(
                    "move-mic",
                    0,
                    100.0 * f64::from(pos - 1) / f64::from(positions),
                    f64::from(pos),
                )
                .await;
                // The operator moves the mic and calls ContinueMeasurement.
                let wake = self.ctl.measure_wake.listen();
                self.check()?;
                wake.await;
                self.check()?;
                while self.mic.try_recv().is_ok() {}
                self.last_snapshot = Instant::now();
            }
            for &ch in channels {
                self.solo(Some(ch)).await?;
                let start = start_levels.iter().find(|(c, _)| *c == ch).map(|(_, l)| *l);
                let (level, spl) = self.find_level(ch, lphase, start).await?;
                self.lap(&format!("{lphase} ch{ch}"));
                let sweep = self.cfg.sweep(
                    self.rate,
                    (level + self.cfg.sweep_offset_db).min(GENERATOR_CAP_DBFS),
                );
                let mut attempts = 0;
                let capture = loop {
                    attempts += 1;
                    let c = self.sweep(ch, pos as usize, sphase, &sweep).await?;
                    if c.lost_frames == 0 {
                        break c;
                    }
                    tracing::warn!(
                        "channel {ch}: {} frames lost during the sweep (attempt {attempts})",
                        c.lost_frames
                    );
                    if attempts > self.cfg.capture_retries {
                        break c;
                    }
                };
                self.lap(&format!("{sphase} ch{ch}"));
                if pos == 1 {
                    reports.push(ChannelReport {
                        channel: ch,
                        noise_level_dbfs: level,
                        spl_db: spl,
                        sweep_level_dbfs: sweep.level_dbfs,
                        attempts,
                        lost_frames: capture.lost_frames,
                        ..ChannelReport::default()
                    });
                }
                captures.push(capture);
            }
        }
        self.solo(None).await?;
        Ok(captures)
    }

    fn recording(&self, captures: Vec<Capture>, sweep: SweepParams) -> Recording {
        Recording {
            sweep,
            options: AnalysisOptions {
                loopback_samples: self.loopback,
                ..AnalysisOptions::default()
            },
            calibration: self.calibration.clone(),
            captures,
        }
    }

    /// Saves and analyses on a worker thread (the FFTs take a while; the bus keeps answering).
    async fn save_and_analyse(
        &self,
        rec: Recording,
        dir: PathBuf,
    ) -> Result<Vec<ChannelResult>, Stop> {
        if let Some(c) = rec.captures.iter().find(|c| c.lost_frames > 0) {
            let _ = rec.save(&dir);
            return Err(Stop::Fail(format!(
                "channel {} position {}: {} frames lost in every attempt; saved in {}",
                c.channel,
                c.position,
                c.lost_frames,
                dir.display()
            )));
        }
        let (tx, rx) = async_channel::bounded(1);
        std::thread::spawn(move || {
            let r = rec
                .save(&dir)
                .map_err(|e| e.to_string())
                .and_then(|()| rec.analyse().map_err(|e| e.to_string()));
            let _ = tx.send_blocking(r);
        });
        rx.recv()
            .await
            .map_err(|_| Stop::Fail("analysis thread died".into()))?
            .map_err(Stop::Fail)
    }

    async fn measure_all(
        &mut self,
        channels: &[u32],
        req: &Request,
        dir: &Path,
        report: &mut Report,
        deployed: &mut bool,
    ) -> Result<(), Stop> {
        let positions = req.positions.unwrap_or(1);
        self.progress("prepare", 0, 0.0, 0.0).await;
        self.enter().await?;
        self.lap("prepare");
        let mut reports = Vec::new();
        let caps = self
            .capture_all(channels, positions, false, &[], &mut reports)
            .await;
        report.channels = reports;
        let caps = caps?;
        let sweep = self.cfg.sweep(self.rate, 0.0);
        let levels: Vec<(u32, f64)> = report
            .channels
            .iter()
            .map(|c| (c.channel, c.noise_level_dbfs))
            .collect();
        let rec = self.recording(caps, sweep.clone());
        self.progress("analyse", 0, 0.0, 0.0).await;
        let results = self.save_and_analyse(rec, dir.to_path_buf()).await?;
        self.lap("analyse");
        for (c, r) in report.channels.iter_mut().zip(&results) {
            let a = &r.positions[0];
            c.arrival_samples = a.arrival.samples;
            c.arrival_ms = a.arrival.seconds * 1000.0;
            c.level_db = r.response.band_level(500.0, 2000.0).unwrap_or(f64::NAN);
            // Only fundamentals the channel plays (within 10 dB of its loudest point): in a
            // stopband the "fundamental" is noise and the ratio means nothing.
            let top = a.response.db.iter().cloned().fold(f64::MIN, f64::max);
            c.harmonics = a
                .harmonics
                .iter()
                .filter_map(|h| {
                    let pts: Vec<f64> = h
                        .points
                        .iter()
                        .filter(|(f0, _)| a.response.at(*f0) >= top - 10.0)
                        .map(|(_, db)| 10f64.powf(db / 10.0))
                        .collect();
                    (!pts.is_empty()).then(|| Harmonic {
                        order: h.order,
                        db: 10.0 * (pts.iter().sum::<f64>() / pts.len() as f64).log10(),
                    })
                })
                .collect();
        }
        if let Some(r) = self.recall {
            let drift = preset::drift(&r.preset.measured, &results, r.threshold_db);
            report.preset = Some(PresetCheck {
                name: r.preset.name.clone(),
                set_id: r.preset.set_id.clone(),
                threshold_db: r.threshold_db,
                warn: drift.iter().any(|c| c.warn),
                channels: drift,
            });
        }
        if req.dry_run {
            return Ok(());
        }

        // Design and the corrected set, on a worker thread.
        self.progress("design", 0, 0.0, 0.0).await;
        let profile = PathBuf::from(&self.manifest.profile_file);
        let sets = self.ctl.config.activation.sets_dir();
        let mut opts = design::DesignOptions {
            tolerance_db: self.cfg.verify_tolerance_db,
            ..design::DesignOptions::default()
        };
        if let Some(spl) = self.manifest.profile.target.operating_spl_db {
            opts.operating_spl_db = spl;
        }
        opts.correction.hi_hz = self.cfg.correction_max_hz;
        let (tx, rx) = async_channel::bounded(1);
        let res = results.clone();
        let played = self.played_set.clone();
        std::thread::spawn(move || {
            let r = (|| -> Result<_, String> {
                let rig = mugge_filter_chain::validate::load_rig(&profile, None)
                    .map_err(|e| format!("profile {}: {e}", profile.display()))?;
                // Through the set that played: a room already corrected is not corrected twice.
                let d = design::design_through(&rig, &played, &res, &opts)
                    .map_err(|e| e.to_string())?;
                let (set, m) = design::write_corrected_set_for(&rig, &d, &sets, "room")
                    .map_err(|e| e.to_string())?;
                Ok((d, set, m))
            })();
            let _ = tx.send_blocking(r);
        });
        let (design, set_dir, _m) = rx
            .recv()
            .await
            .map_err(|_| Stop::Fail("design thread died".into()))?
            .map_err(Stop::Fail)?;
        self.lap("design");
        for c in &mut report.channels {
            if let Some(d) = design.channels.iter().find(|d| d.channel == c.channel) {
                c.delay_ms = Some(d.delay_ms);
                c.trim_db = Some(d.trim_db);
                c.max_cut_db = Some(d.max_cut_db());
            }
        }
        // The design (correction curves, targets) is large: a file beside the captures.
        let design_file = dir.join("design.json");
        if std::fs::write(
            &design_file,
            serde_json::to_string_pretty(&design).unwrap_or_default(),
        )
        .is_ok()
        {
            report.design_file = Some(design_file.display().to_string());
        }

        // Deploy: same profile and channels, so ReloadFilters swaps without a dropout.
        self.progress("deploy", 0, 0.0, 0.0).await;
        self.ctl
            .reload_inner(&set_dir.display().to_string(), None)
            .await
            .map_err(|e| Stop::Fail(format!("deploy of {} failed: {e}", set_dir.display())))?;
        *deployed = true;
        report.deployed_set = Some(set_dir.display().to_string());
        {
            let cs = self.ctl.chain.lock().unwrap();
            if let Some(a) = cs.active.as_ref() {
                self.tag = a.tag.clone();
                self.trims = a.trims.clone();
            }
        }
        self.manifest = mugge_filter_chain::set::read_manifest(&set_dir)
            .map_err(|e| Stop::Fail(format!("deployed set: {e}")))?;
        self.lap("deploy");

        // Verification through the corrected set, starting 10 dB under the levels found.
        let starts: Vec<(u32, f64)> = levels.iter().map(|(c, l)| (*c, l - 10.0)).collect();
        let mut vreports = Vec::new();
        let vcaps = self
            .capture_all(channels, 1, true, &starts, &mut vreports)
            .await?;
        let vdir = dir.join("verify");
        let after = self
            .save_and_analyse(self.recording(vcaps, sweep), vdir.clone())
            .await?;
        report.verify_dir = Some(vdir.display().to_string());
        let v = design::verify(&design, &after);
        for c in &mut report.channels {
            if let Some(cv) = v.channels.iter().find(|x| x.channel == c.channel) {
                c.verify_max_abs_db = Some(cv.max_abs_db);
                c.verify_pass = Some(cv.pass);
            }
        }
        report.verify_pass = Some(v.pass);
        report.verify = serde_json::to_value(&v).ok();
        let _ = std::fs::write(
            vdir.join("verify.json"),
            serde_json::to_string_pretty(&v).unwrap_or_default(),
        );
        self.lap("verify");
        Ok(())
    }
}
