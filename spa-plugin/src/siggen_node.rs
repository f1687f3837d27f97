//! `mugge.siggen`: one mono output. Settings and the sweep's published parameters are custom
//! `Props` keys; the output cap (-20 dBFS peak) is `mugge_dsp::siggen::MAX_PEAK_DBFS`, a
//! constant no key can change. Creation properties: `audio.rate` (default 48000).

use crate::node::{
    ignored, Config, Control, Cycle, Direction, Kind, MainSide, NodeParts, PropsUpdate, RtSide,
};
use crate::params::{Param, ParamInfo, ParamType};
use mugge_dsp::siggen::{Generator, Signal, SweepParams, MAX_PEAK_DBFS, MIN_LEVEL_DBFS};
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// What the data loop reports to the main loop, stamped with the graph clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiggenEvent {
    SweepStarted { position: u64, nsec: u64 },
    SweepEnded { position: u64 },
}

pub struct SiggenRt {
    gen: Generator,
    events: HeapProd<SiggenEvent>,
}

fn offset_clock(c: &Cycle, i: usize) -> (u64, u64) {
    let rate = u64::from(c.rate.max(1));
    (
        c.position + i as u64,
        c.nsec + (i as u64 * 1_000_000_000) / rate,
    )
}

impl RtSide for SiggenRt {
    fn control(&mut self, c: Control) {
        match c {
            Control::SiggenSignal(s) => self.gen.set_signal(s),
            Control::SiggenLevel(db) => {
                self.gen.set_level_db(db);
            }
            Control::SiggenRunning(true) => self.gen.start(),
            Control::SiggenRunning(false) => self.gen.stop(),
            Control::SiggenSeed(s) => self.gen.set_seed(s),
            _ => {}
        }
    }

    fn process_output(&mut self, out: &mut [f32], cycle: &Cycle) -> bool {
        let r = self.gen.fill(out);
        if let Some(i) = r.sweep_started_at {
            let (position, nsec) = offset_clock(cycle, i);
            let _ = self
                .events
                .try_push(SiggenEvent::SweepStarted { position, nsec });
        }
        if let Some(i) = r.sweep_ended_at {
            let _ = self.events.try_push(SiggenEvent::SweepEnded {
                position: offset_clock(cycle, i).0,
            });
        }
        true
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kinds {
    Silence,
    Sine,
    White,
    Pink,
    Sweep,
}

pub struct SiggenMain {
    rate: u32,
    kind: Kinds,
    frequency: f64,
    sweep: SweepParams,
    repeat: bool,
    running: bool,
    level_requested: f32,
    level: f32,
    seed: u32,
    events: HeapCons<SiggenEvent>,
    sweep_started: Option<(u64, u64)>,
    sweep_ended: Option<u64>,
    sweep_count: u64,
}

pub fn create(cfg: &Config) -> Result<NodeParts, String> {
    let (main, rt) = create_parts(cfg)?;
    Ok((Box::new(main), Box::new(rt)))
}

pub fn create_parts(cfg: &Config) -> Result<(SiggenMain, SiggenRt), String> {
    let channels = cfg.channels(1)?;
    if channels != 1 {
        return Err(format!(
            "audio.channels = {channels}: the generator has one mono output"
        ));
    }
    let rate = cfg.rate()?;
    let (p, c) = HeapRb::<SiggenEvent>::new(64).split();
    let mut gen = Generator::new(rate);
    gen.set_level_db(MAX_PEAK_DBFS);
    Ok((
        SiggenMain {
            rate,
            kind: Kinds::Silence,
            frequency: 1000.0,
            sweep: SweepParams::default(),
            repeat: false,
            running: false,
            level_requested: MAX_PEAK_DBFS,
            level: MAX_PEAK_DBFS,
            seed: mugge_dsp::siggen::DEFAULT_SEED,
            events: c,
            sweep_started: None,
            sweep_ended: None,
            sweep_count: 0,
        },
        SiggenRt { gen, events: p },
    ))
}

impl SiggenMain {
    fn signal(&self) -> Signal {
        match self.kind {
            Kinds::Silence => Signal::Silence,
            Kinds::Sine => Signal::Sine { hz: self.frequency },
            Kinds::White => Signal::White,
            Kinds::Pink => Signal::Pink,
            Kinds::Sweep => Signal::Sweep {
                params: self.sweep,
                repeat: self.repeat,
            },
        }
    }

    fn nyquist(&self) -> f64 {
        self.rate as f64 / 2.0
    }
}

fn kind_name(k: Kinds) -> &'static str {
    match k {
        Kinds::Silence => "silence",
        Kinds::Sine => "sine",
        Kinds::White => "white",
        Kinds::Pink => "pink",
        Kinds::Sweep => "sweep",
    }
}

impl MainSide for SiggenMain {
    fn kind(&self) -> Kind {
        Kind::Siggen
    }
    fn direction(&self) -> Direction {
        Direction::Output
    }
    fn channels(&self) -> u32 {
        1
    }
    fn rate(&self) -> u32 {
        self.rate
    }
    fn info_props(&self) -> Vec<(String, String)> {
        vec![
            (
                "mugge.siggen.max-peak-dbfs".into(),
                format!("{MAX_PEAK_DBFS}"),
            ),
            (
                "mugge.siggen.signals".into(),
                "silence sine white pink sweep".into(),
            ),
        ]
    }

    fn param_info(&self) -> Vec<ParamInfo> {
        let nyq = self.nyquist() as f32;
        let f = |default: f32, min: f32, max: f32| ParamType::Float { default, min, max };
        let rw = |key, description, kind| ParamInfo {
            key,
            description,
            kind,
            read_only: false,
        };
        let ro = |key, description, kind| ParamInfo {
            key,
            description,
            kind,
            read_only: true,
        };
        vec![
            rw(
                "siggen.signal",
                "silence | sine | white | pink | sweep",
                ParamType::Str("silence".into()),
            ),
            rw(
                "siggen.running",
                "start (true) / stop (false), both ramped",
                ParamType::Bool(false),
            ),
            rw(
                "siggen.level",
                "peak level in dBFS (clamped to the -20 dBFS cap)",
                f(-20.0, MIN_LEVEL_DBFS, 0.0),
            ),
            rw(
                "siggen.frequency",
                "sine frequency, Hz",
                f(1000.0, 1.0, nyq * 0.98),
            ),
            rw(
                "siggen.sweep.start",
                "sweep start frequency, Hz",
                f(20.0, 1.0, nyq * 0.99),
            ),
            rw(
                "siggen.sweep.end",
                "sweep end frequency, Hz",
                f(20000.0, 1.0, nyq * 0.99),
            ),
            rw(
                "siggen.sweep.duration",
                "sweep duration, s",
                f(10.0, 0.1, 600.0),
            ),
            rw(
                "siggen.sweep.fade-in",
                "raised-cosine fade-in, s",
                f(0.05, 0.0, 300.0),
            ),
            rw(
                "siggen.sweep.fade-out",
                "raised-cosine fade-out, s",
                f(0.01, 0.0, 300.0),
            ),
            rw(
                "siggen.repeat",
                "repeat the sweep (false: one-shot)",
                ParamType::Bool(false),
            ),
            rw(
                "siggen.seed",
                "noise seed (xorshift32)",
                ParamType::Int {
                    default: 0,
                    min: 0,
                    max: i32::MAX,
                },
            ),
            ro(
                "siggen.max-peak",
                "the hard output cap, dBFS",
                ParamType::Float {
                    default: -20.0,
                    min: -20.0,
                    max: -20.0,
                },
            ),
            ro(
                "siggen.level-clamped",
                "the last level request was above the cap",
                ParamType::Bool(false),
            ),
            ro(
                "siggen.level-requested",
                "the last level requested, dBFS",
                f(-20.0, -1000.0, 1000.0),
            ),
            ro(
                "siggen.sweep.rate-constant",
                "Farina L = T / ln(f2/f1), s",
                ParamType::Float {
                    default: 0.0,
                    min: 0.0,
                    max: 1e6,
                },
            ),
            ro(
                "siggen.sweep.started-position",
                "graph clock position of the last sweep start",
                ParamType::Long(-1),
            ),
            ro(
                "siggen.sweep.started-nsec",
                "graph clock nsec of the last sweep start",
                ParamType::Long(-1),
            ),
            ro(
                "siggen.sweep.ended-position",
                "graph clock position where the last one-shot sweep ended",
                ParamType::Long(-1),
            ),
            ro(
                "siggen.sweep.count",
                "sweep starts so far",
                ParamType::Long(0),
            ),
        ]
    }

    fn param_values(&self) -> Vec<(&'static str, Param)> {
        let sw = self.sweep.sanitized(self.rate);
        vec![
            ("siggen.signal", Param::Str(kind_name(self.kind).into())),
            ("siggen.running", Param::Bool(self.running)),
            ("siggen.level", Param::Float(self.level)),
            ("siggen.frequency", Param::Float(self.frequency as f32)),
            ("siggen.sweep.start", Param::Float(sw.start_hz as f32)),
            ("siggen.sweep.end", Param::Float(sw.end_hz as f32)),
            ("siggen.sweep.duration", Param::Float(sw.duration_s as f32)),
            ("siggen.sweep.fade-in", Param::Float(sw.fade_in_s as f32)),
            ("siggen.sweep.fade-out", Param::Float(sw.fade_out_s as f32)),
            ("siggen.repeat", Param::Bool(self.repeat)),
            ("siggen.seed", Param::Int(self.seed as i32)),
            ("siggen.max-peak", Param::Float(MAX_PEAK_DBFS)),
            (
                "siggen.level-clamped",
                Param::Bool(self.level_requested > MAX_PEAK_DBFS),
            ),
            ("siggen.level-requested", Param::Float(self.level_requested)),
            (
                "siggen.sweep.rate-constant",
                Param::Double(sw.rate_constant_l()),
            ),
            (
                "siggen.sweep.started-position",
                Param::Long(self.sweep_started.map_or(-1, |s| s.0 as i64)),
            ),
            (
                "siggen.sweep.started-nsec",
                Param::Long(self.sweep_started.map_or(-1, |s| s.1 as i64)),
            ),
            (
                "siggen.sweep.ended-position",
                Param::Long(self.sweep_ended.map_or(-1, |s| s as i64)),
            ),
            ("siggen.sweep.count", Param::Long(self.sweep_count as i64)),
        ]
    }

    fn set_params(&mut self, pairs: Vec<(String, Result<Param, String>)>) -> PropsUpdate {
        let mut u = PropsUpdate::default();
        let before = self.signal();
        let mut running = None;
        let nyq = self.nyquist();
        for (k, v) in pairs {
            let v = match v {
                Ok(v) => v,
                Err(t) => {
                    if k.starts_with("siggen.") {
                        u.ignored
                            .push(ignored(&k, format!("unsupported value type {t}")));
                    }
                    continue;
                }
            };
            let num = v.as_f64().filter(|x| x.is_finite());
            let mut bad = |why: &str| u.ignored.push(ignored(&k, why));
            match k.as_str() {
                "siggen.signal" => match v.as_str() {
                    Some("silence") => self.kind = Kinds::Silence,
                    Some("sine") => self.kind = Kinds::Sine,
                    Some("white") => self.kind = Kinds::White,
                    Some("pink") => self.kind = Kinds::Pink,
                    Some("sweep") => self.kind = Kinds::Sweep,
                    _ => bad("want silence | sine | white | pink | sweep"),
                },
                "siggen.running" => match v.as_bool() {
                    Some(b) => running = Some(b),
                    None => bad("want a bool"),
                },
                "siggen.repeat" => match v.as_bool() {
                    Some(b) => self.repeat = b,
                    None => bad("want a bool"),
                },
                "siggen.level" => match num {
                    Some(db) if db >= MIN_LEVEL_DBFS as f64 => {
                        // Above the cap: clamped and reported (siggen.level-clamped).
                        self.level_requested = db as f32;
                        self.level = (db as f32).min(MAX_PEAK_DBFS);
                        u.controls.push(Control::SiggenLevel(self.level));
                    }
                    _ => bad("want a finite dBFS value >= -120"),
                },
                "siggen.frequency" => match num {
                    Some(f) if f >= 1.0 && f <= nyq * 0.98 => self.frequency = f,
                    _ => bad("want 1 Hz .. 0.98 x Nyquist"),
                },
                "siggen.sweep.start" | "siggen.sweep.end" => match num {
                    Some(f) if f >= 1.0 && f <= nyq * 0.99 => {
                        if k.ends_with("start") {
                            self.sweep.start_hz = f
                        } else {
                            self.sweep.end_hz = f
                        }
                    }
                    _ => bad("want 1 Hz .. 0.99 x Nyquist"),
                },
                "siggen.sweep.duration" => match num {
                    Some(d) if (0.1..=600.0).contains(&d) => self.sweep.duration_s = d,
                    _ => bad("want 0.1 .. 600 s"),
                },
                "siggen.sweep.fade-in" | "siggen.sweep.fade-out" => match num {
                    Some(d) if (0.0..=300.0).contains(&d) => {
                        if k.ends_with("in") {
                            self.sweep.fade_in_s = d
                        } else {
                            self.sweep.fade_out_s = d
                        }
                    }
                    _ => bad("want 0 .. 300 s (at most half the duration is used)"),
                },
                "siggen.seed" => match num {
                    Some(s) if s >= 0.0 && s <= u32::MAX as f64 => {
                        self.seed = s as u32;
                        u.controls.push(Control::SiggenSeed(self.seed));
                    }
                    _ => bad("want 0 .. 2^32-1"),
                },
                k if k.starts_with("siggen.") => {
                    u.ignored.push(ignored(k, "read-only or unknown key"))
                }
                _ => {}
            }
        }
        let after = self.signal();
        if after != before || (self.kind == Kinds::Sweep && running == Some(true) && !self.running)
        {
            u.controls.push(Control::SiggenSignal(after));
        }
        if let Some(r) = running {
            self.running = r;
            u.controls.push(Control::SiggenRunning(r));
        }
        u
    }

    fn poll(&mut self) -> bool {
        let mut changed = false;
        while let Some(e) = self.events.try_pop() {
            match e {
                SiggenEvent::SweepStarted { position, nsec } => {
                    self.sweep_started = Some((position, nsec));
                    self.sweep_count += 1;
                }
                SiggenEvent::SweepEnded { position } => self.sweep_ended = Some(position),
            }
            changed = true;
        }
        changed
    }

    fn poll_interval_ms(&self) -> u64 {
        50
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(m: &mut SiggenMain, k: &str, v: Param) -> PropsUpdate {
        m.set_params(vec![(k.to_string(), Ok(v))])
    }

    #[test]
    fn level_above_cap_is_clamped_and_reported() {
        let (mut m, _) = create_parts(&Config::default()).unwrap();
        let u = set(&mut m, "siggen.level", Param::Float(6.0));
        assert_eq!(u.controls, vec![Control::SiggenLevel(-20.0)]);
        let v = m.param_values();
        assert!(v.contains(&("siggen.level-clamped", Param::Bool(true))));
        assert!(v.contains(&("siggen.level", Param::Float(-20.0))));
    }

    #[test]
    fn bad_values_and_unknown_keys_change_nothing() {
        let (mut m, _) = create_parts(&Config::default()).unwrap();
        let before = m.param_values();
        for (k, v) in [
            ("siggen.frequency", Param::Float(-5.0)),
            ("siggen.frequency", Param::Double(f64::NAN)),
            ("siggen.frequency", Param::Float(30000.0)),
            ("siggen.signal", Param::Str("brown".into())),
            ("siggen.level", Param::Float(f32::NAN)),
            ("siggen.sweep.duration", Param::Float(0.0)),
            ("siggen.max-peak", Param::Float(0.0)),
            ("siggen.bogus", Param::Int(1)),
        ] {
            let u = set(&mut m, k, v);
            assert!(u.controls.is_empty(), "{k}");
            assert_eq!(u.ignored.len(), 1, "{k}");
        }
        assert_eq!(m.param_values(), before);
        // Converter keys in the same struct are not ours and not logged.
        assert!(set(&mut m, "monitor.channel-volumes", Param::Bool(true))
            .ignored
            .is_empty());
    }
}
