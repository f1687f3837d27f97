//! Profile activation (SPEC §3-§4, D-053): validate + generate + gate, mute, start the new
//! chain muted, re-link for the current mode, stop the old chain, ramp up in steps paced by
//! the controller's timer. The chain process itself is `chain.rs`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zbus::object_server::SignalEmitter;

use super::super::chain::{self, ChainSeen, Running};
use super::super::pw::Command;
use super::super::routing::{self, Mode};
use super::super::status::Status;
use super::{Controller, Error};

/// The chain the controller drives.
#[derive(Debug)]
pub struct Active {
    pub tag: String,
    pub set: String,
    pub profile: String,
    /// Speaker channel -> linear trim (the ramp's 100 %).
    pub trims: Vec<(u32, f32)>,
    /// Current factor of the trims (0 = muted); unknown for an adopted chain.
    pub factor: Option<f32>,
    pub running: Option<Running>,
    /// The set's topology (from its manifest); `None` when the manifest cannot be read.
    pub topology: Option<routing::Topology>,
}

#[derive(Debug, Default)]
pub struct ChainState {
    pub active: Option<Active>,
    /// A second chain linked beside the active one during a reload's crossfade.
    pub parallel: Option<Active>,
    /// Phase timings of the last activation (phase, ms).
    pub timings: Vec<(String, u64)>,
}

/// What a finished activation reports.
pub type Timings = Vec<(String, u64)>;

fn other_tag(tag: &str) -> &'static str {
    if tag == "a" {
        "b"
    } else {
        "a"
    }
}

impl Controller {
    /// The tag the routing tables use: the driven chain's, else the configured one.
    pub(super) fn filter_tag(&self) -> String {
        self.chain
            .lock()
            .unwrap()
            .active
            .as_ref()
            .map(|a| a.tag.clone())
            .unwrap_or_else(|| self.config.filter_tag.clone())
    }

    /// The driven chain for `GetStatus`.
    pub(super) fn chain_json(&self) -> serde_json::Value {
        let cs = self.chain.lock().unwrap();
        match cs.active.as_ref() {
            Some(a) => serde_json::json!({
                "tag": a.tag, "set": a.set, "profile": a.profile,
                "gain_factor": a.factor,
                "pid": a.running.as_ref().map(|r| r.pid),
                "last_activation_ms": cs.timings,
            }),
            None => serde_json::Value::Null,
        }
    }

    /// During a reload, the active chain's routes again for the parallel chain.
    pub(super) fn with_parallel(&self, mut t: routing::Table) -> routing::Table {
        let cs = self.chain.lock().unwrap();
        let (Some(a), Some(p)) = (cs.active.as_ref(), cs.parallel.as_ref()) else {
            return t;
        };
        let retag = |e: &routing::End| {
            let mut e = e.clone();
            if e.node == routing::filters_in(&a.tag) {
                e.node = routing::filters_in(&p.tag);
            } else if e.node == routing::filters_out(&a.tag) {
                e.node = routing::filters_out(&p.tag);
            }
            e
        };
        let twins: Vec<routing::Route> = t
            .routes
            .iter()
            .filter_map(|r| {
                let (from, to) = (retag(&r.from), retag(&r.to));
                (from != r.from || to != r.to).then(|| routing::Route {
                    from,
                    to,
                    ..r.clone()
                })
            })
            .collect();
        t.routes.extend(twins);
        t
    }

    /// Waits until `pred` holds for the latest status, or the timeout.
    pub(super) async fn wait_status(
        &self,
        timeout: Duration,
        pred: impl Fn(&Status) -> bool,
    ) -> Result<Status, Status> {
        let deadline = Instant::now() + timeout;
        loop {
            let listener = self.changed.listen();
            let st = self.shared.lock().unwrap().status.clone();
            if pred(&st) {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                return Err(st);
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

    pub(super) fn send_controls(
        &self,
        tag: &str,
        controls: Vec<(String, f32)>,
    ) -> Result<(), String> {
        self.ask_pw(|tx| Command::SetControls {
            node: routing::filters_in(tag),
            controls,
            reply: Some(tx),
        })
    }

    /// The chain's numeric controls (`ch<N>_gain:Mult`, ...) from its node's Props.
    fn read_controls(&self, tag: &str) -> Result<Vec<(String, f32)>, String> {
        self.ask_pw(|tx| Command::ReadControls {
            node: routing::filters_in(tag),
            reply: tx,
        })
    }

    /// Crossfade step: the active chain at `old` and the parallel one at `new` (factors).
    fn set_pair(&self, old: f32, new: f32) -> Result<(), String> {
        let (a, p) = {
            let mut cs = self.chain.lock().unwrap();
            let cs = &mut *cs;
            let (Some(a), Some(p)) = (cs.active.as_mut(), cs.parallel.as_mut()) else {
                return Err("no reload in progress".into());
            };
            a.factor = Some(old);
            p.factor = Some(new);
            (
                (a.tag.clone(), a.trims.clone()),
                (p.tag.clone(), p.trims.clone()),
            )
        };
        // The rising side first: a late message leaves a little more, never a hole.
        self.send_controls(&p.0, chain::gain_controls(&p.1, new))?;
        self.send_controls(&a.0, chain::gain_controls(&a.1, old))
    }

    /// ReloadFilters: see the interface doc.
    pub async fn reload_inner(
        &self,
        set: &str,
        em: Option<&SignalEmitter<'_>>,
    ) -> Result<Timings, Error> {
        let dir = PathBuf::from(set);
        let _tx = self.transaction.lock().await;
        let mut timings = Vec::new();
        let mut t = Instant::now();
        let mut lap = |timings: &mut Timings, phase: &str| {
            timings.push((phase.to_string(), t.elapsed().as_millis() as u64));
            t = Instant::now();
        };
        let (m, _) = mugge_filter_chain::set::verify(&dir)
            .map_err(|e| Error::InvalidArgs(format!("set refused, nothing changed: {e}")))?;
        let (old_tag, old_factor) = {
            let cs = self.chain.lock().unwrap();
            let Some(a) = cs.active.as_ref() else {
                return Err(Error::Refused(
                    "no active filter-chain to reload: use ActivateProfile".into(),
                ));
            };
            let chans: Vec<u32> = a.trims.iter().map(|t| t.0).collect();
            let new: Vec<u32> = m.channels.iter().map(|c| c.channel).collect();
            if m.profile_name != a.profile || (!chans.is_empty() && chans != new) {
                return Err(Error::Refused(format!(
                    "set {} is for \"{}\" (channels {new:?}), the active chain runs \"{}\": \
                     another profile or topology needs ActivateProfile",
                    m.set_id, m.profile_name, a.profile
                )));
            }
            // An adopted chain's gain is unknown: it was left playing at its trims.
            (a.tag.clone(), a.factor.unwrap_or(1.0))
        };
        let conf = dir.join("filter-chain.conf");
        std::fs::read_to_string(&conf)
            .map_err(|e| e.to_string())
            .and_then(|t| chain::check_files(&dir, &t).map_err(|e| format!("{e:#}")))
            .map_err(|e| Error::InvalidArgs(format!("set refused, nothing changed: {e}")))?;
        lap(&mut timings, "verify");
        let tag = other_tag(&old_tag);
        let running = self.start_chain_as(&dir, &m, tag).await?;
        lap(&mut timings, "start");
        self.chain.lock().unwrap().parallel = Some(Active {
            tag: tag.to_string(),
            set: m.set_id.clone(),
            profile: m.profile_name.clone(),
            trims: chain::trims(&m),
            factor: Some(0.0),
            running: Some(running),
            topology: Some(self.topology_of(&m)),
        });
        if let Err(e) = self.relink().await {
            let p = self.chain.lock().unwrap().parallel.take();
            let _ = self.relink().await;
            if let Some(r) = p.and_then(|p| p.running) {
                let _ = chain::stop(r, Duration::from_secs(2));
            }
            return Err(e);
        }
        lap(&mut timings, "link");
        let cfg = &self.config.activation;
        let n = cfg.crossfade_steps;
        let dt = Duration::from_millis(cfg.crossfade_ms) / n;
        let start = Instant::now();
        for k in 1..=n {
            let x = k as f32 / n as f32;
            let (old, new) = if k == n {
                (0.0, old_factor)
            } else {
                ((1.0 - x) * old_factor, x * old_factor)
            };
            self.set_pair(old, new).map_err(Error::NotReady)?;
            if let Some(em) = em {
                let _ = Self::activation_progress(em, "crossfade", k * 100 / n).await;
            }
            if k < n {
                async_io::Timer::at(start + dt * k).await;
            }
        }
        lap(&mut timings, "crossfade");
        let old = {
            let mut cs = self.chain.lock().unwrap();
            let p = cs.parallel.take();
            std::mem::replace(&mut cs.active, p)
        };
        let relinked = self.relink().await;
        lap(&mut timings, "unlink");
        if let Some(r) = old.and_then(|o| o.running) {
            let _ = chain::stop(r, Duration::from_secs(2));
        } else {
            self.stop_others(tag, None);
        }
        lap(&mut timings, "stop-old");
        relinked?;
        if let Some(em) = em {
            let _ = Self::activation_progress(em, "done", 100).await;
        }
        Ok(timings)
    }

    /// Sets the active chain to `factor` x its trims.
    pub(super) fn set_factor(&self, factor: f32) -> Result<(), String> {
        let (tag, trims) = {
            let mut cs = self.chain.lock().unwrap();
            let Some(a) = cs.active.as_mut() else {
                return Ok(());
            };
            a.factor = Some(factor);
            (a.tag.clone(), a.trims.clone())
        };
        self.send_controls(&tag, chain::gain_controls(&trims, factor))
    }

    /// Steps the active chain's gain to `to` over `total`, paced by our timer; stops at an
    /// abort request (then mutes).
    pub(super) async fn ramp_to(
        &self,
        to: f32,
        total: Duration,
        steps: u32,
        phase: &str,
        em: Option<&SignalEmitter<'_>>,
    ) -> Result<(), Error> {
        let from = self
            .chain
            .lock()
            .unwrap()
            .active
            .as_ref()
            .and_then(|a| a.factor);
        // An unknown gain (adopted chain) is never ramped down through values that could be
        // above it: straight to the target when muting, from silence when rising.
        let factors = match from {
            None if to == 0.0 => vec![0.0],
            from => chain::ramp(from.unwrap_or(0.0), to, steps),
        };
        let dt = total / factors.len() as u32;
        // Rising: the mic interlock (if a measurement mic is linked) judges every step before
        // the next one rises, and the last one after one more step's time.
        let guard = if to > from.unwrap_or(0.0) {
            match self.mic_guard(total).await {
                Ok(g) => g,
                Err(why) => return Err(self.interlocked(why, 0, em).await),
            }
        } else {
            None
        };
        let start = Instant::now();
        let mut pct = 0;
        for (k, f) in factors.iter().enumerate() {
            if self.abort.load(Ordering::SeqCst) {
                return Err(self.aborted());
            }
            if let Some(g) = guard.as_ref().filter(|_| k > 0) {
                if let Err(why) = self.mic_check(g) {
                    return Err(self.interlocked(why, pct, em).await);
                }
            }
            self.set_factor(*f).map_err(Error::NotReady)?;
            pct = ((k + 1) * 100 / factors.len()) as u32;
            if let Some(em) = em {
                let _ = Self::activation_progress(em, phase, pct).await;
            }
            if k + 1 < factors.len() || guard.is_some() {
                async_io::Timer::at(start + dt * (k as u32 + 1)).await;
            }
        }
        if let Some(g) = guard.as_ref() {
            if let Err(why) = self.mic_check(g) {
                return Err(self.interlocked(why, pct, em).await);
            }
        }
        Ok(())
    }

    /// The mic interlock tripped: mute everything, say so (signal and answer).
    async fn interlocked(&self, why: String, pct: u32, em: Option<&SignalEmitter<'_>>) -> Error {
        let muted = self.set_factor(0.0);
        tracing::warn!("mic interlock: {why}; muting");
        if let Some(em) = em {
            let _ = Self::activation_progress(em, "mic-interlock", pct).await;
        }
        Error::Refused(match muted {
            Ok(()) => {
                format!("ramp stopped by the mic interlock: {why}; all speaker outputs muted")
            }
            Err(e) => format!("ramp stopped by the mic interlock: {why}; muting failed: {e}"),
        })
    }

    fn aborted(&self) -> Error {
        let muted = self.set_factor(0.0);
        Error::Refused(match muted {
            Ok(()) => "activation aborted: all speaker outputs muted".into(),
            Err(e) => format!("activation aborted; muting failed: {e}"),
        })
    }

    /// Mutes everything at once and makes a running activation stop.
    pub fn abort_inner(&self) -> Result<String, Error> {
        self.abort.store(true, Ordering::SeqCst);
        self.set_factor(0.0).map_err(Error::NotReady)?;
        Ok("all speaker outputs muted".into())
    }

    fn profile_path(&self, name: &str) -> Result<PathBuf, Error> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::InvalidArgs(format!(
                "'{name}' is not a profile name"
            )));
        }
        let p = self
            .config
            .activation
            .profiles_dir
            .join(format!("{name}.toml"));
        if !p.is_file() {
            return Err(Error::InvalidArgs(format!(
                "no profile '{name}' ({} does not exist)",
                p.display()
            )));
        }
        Ok(p)
    }

    /// Generates on a worker thread (design takes a while; the bus keeps answering).
    async fn generate(
        &self,
        profile: PathBuf,
        tag: &str,
    ) -> Result<(PathBuf, mugge_filter_chain::set::Manifest), Error> {
        let (tx, rx) = async_channel::bounded(1);
        let sets = self.config.activation.sets_dir();
        let tag = tag.to_string();
        std::thread::spawn(move || {
            let _ = tx.send_blocking(chain::generate(&profile, &sets, &tag));
        });
        rx.recv()
            .await
            .map_err(|_| Error::NotReady("generator thread died".into()))?
            .map_err(|e| Error::InvalidArgs(format!("profile refused, nothing changed: {e:#}")))
    }

    /// Starts the set muted and waits for both of its nodes (with properties).
    async fn start_chain(
        &self,
        dir: &std::path::Path,
        m: &mugge_filter_chain::set::Manifest,
    ) -> Result<Running, Error> {
        self.start_chain_as(dir, m, &m.tag.clone()).await
    }

    async fn start_chain_as(
        &self,
        dir: &std::path::Path,
        m: &mugge_filter_chain::set::Manifest,
        tag: &str,
    ) -> Result<Running, Error> {
        let mut r = chain::start(dir, m, tag).map_err(|e| Error::NotReady(format!("{e:#}")))?;
        let timeout = Duration::from_millis(self.config.activation.chain_timeout_ms);
        let tag = tag.to_string();
        let set = m.set_id.clone();
        let found = self
            .wait_status(timeout, |st| {
                st.chains
                    .iter()
                    .any(|c| c.tag == tag && c.set == set && c.complete)
            })
            .await;
        if found.is_err() {
            let why = chain::exited(&mut r).unwrap_or_else(|| "its nodes did not appear".into());
            let _ = chain::stop(r, Duration::from_secs(2));
            return Err(Error::NotReady(format!(
                "new filter-chain {tag} failed: {why}"
            )));
        }
        Ok(r)
    }

    /// Re-links for the current mode (the table follows the active tag); waits for readiness.
    pub(super) async fn relink(&self) -> Result<(), Error> {
        let mode = self.shared.lock().unwrap().mode.unwrap_or(Mode::Standby);
        let generation = self.apply(mode)?;
        let (ready, st) = self
            .wait_ready(
                generation,
                Duration::from_millis(self.config.ready_timeout_ms),
            )
            .await;
        if !ready {
            return Err(Error::NotReady(format!(
                "graph not ready after re-linking: {}",
                st.missing.join("; ")
            )));
        }
        Ok(())
    }

    /// Stops every chain in the graph except `keep` (ours by child handle, others by PID).
    fn stop_others(&self, keep: &str, old: Option<Running>) {
        if let Some(r) = old {
            if let Err(e) = chain::stop(r, Duration::from_secs(2)) {
                tracing::warn!("{e:#}");
            }
        }
        let seen: Vec<ChainSeen> = self.shared.lock().unwrap().status.chains.clone();
        for c in seen.iter().filter(|c| c.tag != keep) {
            if let Some(r) = Running::adopted(c) {
                if let Err(e) = chain::stop(r, Duration::from_secs(2)) {
                    tracing::warn!("{e:#}");
                }
            }
        }
    }

    /// The safety flow. Returns the phase timings (ms).
    pub async fn activate_inner(
        &self,
        name: &str,
        force: bool,
        em: Option<&SignalEmitter<'_>>,
    ) -> Result<Timings, Error> {
        let profile = self.profile_path(name)?;
        let mode = self.shared.lock().unwrap().mode;
        if matches!(mode, Some(Mode::Dj | Mode::Live)) && !force {
            return Err(Error::Refused(format!(
                "refused in {} mode: audio will drop while the profile changes; force to do it anyway",
                mode.unwrap()
            )));
        }
        let _tx = self.transaction.lock().await;
        self.abort.store(false, Ordering::SeqCst);
        let cfg = self.config.activation.clone();
        let mut timings = Vec::new();
        let mut t = Instant::now();
        let mut lap = |timings: &mut Timings, phase: &str| {
            timings.push((phase.to_string(), t.elapsed().as_millis() as u64));
            tracing::info!("activation {name}: {phase} {} ms", t.elapsed().as_millis());
            t = Instant::now();
        };
        let progress = |phase: &'static str, pct: u32| async move {
            if let Some(em) = em {
                let _ = Self::activation_progress(em, phase, pct).await;
            }
        };

        progress("generate", 0).await;
        let tag = other_tag(&self.filter_tag()).to_string();
        let (dir, m) = self.generate(profile, &tag).await?;
        lap(&mut timings, "generate");

        progress("mute", 0).await;
        self.ramp_to(0.0, Duration::from_millis(cfg.mute_ms), 2, "mute", em)
            .await?;
        lap(&mut timings, "mute");

        progress("start", 0).await;
        let running = self.start_chain(&dir, &m).await?;
        lap(&mut timings, "start");

        let old = self.chain.lock().unwrap().active.replace(Active {
            tag: tag.clone(),
            set: m.set_id.clone(),
            profile: m.profile_name.clone(),
            trims: chain::trims(&m),
            factor: Some(0.0),
            running: Some(running),
            topology: Some(self.topology_of(&m)),
        });
        // Muted by its config already; say it again through Props before any link exists.
        self.set_factor(0.0).map_err(Error::NotReady)?;
        progress("link", 0).await;
        let linked = self.relink().await;
        lap(&mut timings, "link");
        self.stop_others(&tag, old.and_then(|o| o.running));
        lap(&mut timings, "stop-old");
        linked?;
        // The new convolvers see the program only since the link: let them fill (one filter
        // length) so the ramp raises a settled signal, not the onset transient.
        progress("settle", 0).await;
        async_io::Timer::after(Duration::from_secs_f64(
            m.taps as f64 / f64::from(m.sample_rate.max(1)),
        ))
        .await;
        lap(&mut timings, "settle");
        if self.abort.load(Ordering::SeqCst) {
            return Err(self.aborted());
        }
        self.ramp_to(
            1.0,
            Duration::from_millis(cfg.ramp_ms),
            cfg.ramp_steps,
            "ramp",
            em,
        )
        .await?;
        lap(&mut timings, "ramp");
        progress("done", 100).await;
        self.chain.lock().unwrap().timings = timings.clone();
        Ok(timings)
    }

    /// At start: adopt a running chain (converging to one), else start the default profile's
    /// set muted. Gains rise only through ActivateProfile or Unmute.
    pub async fn startup_chain(&self) -> Result<(), Error> {
        let Some(default) = self.config.activation.default_profile.clone() else {
            return Ok(());
        };
        let st = self
            .wait_status(Duration::from_secs(10), |st| st.connected)
            .await
            .map_err(|_| Error::NotReady("not connected to PipeWire".into()))?;
        // Nodes and clients arrive with the initial enumeration: give their infos a moment.
        async_io::Timer::after(Duration::from_millis(300)).await;
        let _ = st;
        let chains = self.shared.lock().unwrap().status.chains.clone();
        let _tx = self.transaction.lock().await;
        // Two chains: a reload was cut short. Keep the newer (its set is the one asked for).
        let newest = chains
            .iter()
            .filter(|c| c.complete && c.pid.is_some())
            .max_by_key(|c| c.serial);
        if let Some(c) = newest {
            tracing::info!("adopting filter-chain {} (set {})", c.tag, c.set);
            let manifest = self.manifest_of(&c.set);
            let trims = manifest.as_ref().map(chain::trims).unwrap_or_default();
            let topology = manifest.as_ref().map(|m| self.topology_of(m));
            // The gain it plays at, read back from its controls: status, the next ramp and
            // the next crossfade start from the truth.
            // A PipeWire busy at startup may miss one bounded read: try again before the gain
            // stays unknown (which forbids ramps through it until the next activation).
            let mut factor = None;
            for attempt in 1..=3 {
                match self.read_controls(&c.tag) {
                    Ok(controls) => {
                        factor = chain::factor_of(&controls, &trims);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "cannot read the gain of chain {} (attempt {attempt}): {e}",
                            c.tag
                        );
                        async_io::Timer::after(Duration::from_millis(200)).await;
                    }
                }
            }
            tracing::info!("chain {} plays at {factor:?} of its trims", c.tag);
            self.chain.lock().unwrap().active = Some(Active {
                tag: c.tag.clone(),
                set: c.set.clone(),
                profile: c.profile.clone(),
                trims,
                factor,
                running: None,
                topology,
            });
            self.stop_others(&c.tag, None);
            return self.relink().await;
        }
        let profile = self.profile_path(&default)?;
        let (dir, m) = self.generate(profile, "a").await?;
        let running = self.start_chain(&dir, &m).await?;
        self.chain.lock().unwrap().active = Some(Active {
            tag: m.tag.clone(),
            set: m.set_id.clone(),
            profile: m.profile_name.clone(),
            trims: chain::trims(&m),
            factor: Some(0.0),
            running: Some(running),
            topology: Some(self.topology_of(&m)),
        });
        self.relink().await
    }

    /// The manifest of a set we generated earlier (found by id under the sets dir).
    pub(super) fn manifest_of(&self, set_id: &str) -> Option<mugge_filter_chain::set::Manifest> {
        let rd = std::fs::read_dir(self.config.activation.sets_dir()).ok()?;
        rd.flatten()
            .filter_map(|e| mugge_filter_chain::set::read_manifest(&e.path()).ok())
            .find(|m| m.set_id == set_id)
    }

    fn topology_of(&self, m: &mugge_filter_chain::set::Manifest) -> routing::Topology {
        routing::Topology::from_manifest(m, self.config.topology.hw_inputs)
    }

    /// The topology the routing tables follow: the active set's, else the configured default.
    pub(super) fn active_topology(&self) -> routing::Topology {
        self.chain
            .lock()
            .unwrap()
            .active
            .as_ref()
            .and_then(|a| a.topology.clone())
            .unwrap_or_else(|| self.config.topology.clone())
    }

    /// Ramps the active chain up to its trims (after a muted start).
    pub async fn unmute_inner(&self, em: Option<&SignalEmitter<'_>>) -> Result<(), Error> {
        let _tx = self.transaction.lock().await;
        self.abort.store(false, Ordering::SeqCst);
        let cfg = &self.config.activation;
        self.ramp_to(
            1.0,
            Duration::from_millis(cfg.ramp_ms),
            cfg.ramp_steps,
            "ramp",
            em,
        )
        .await
    }
}

pub type State = Mutex<ChainState>;
