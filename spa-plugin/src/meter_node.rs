//! `mugge.meter`: N input channels, no output. Per-channel readings are published at the
//! snapshot rate as `Props` (custom keys) and streamed on a Unix socket
//! (record layout in `mugge_dsp::snapshot`).
//!
//! Creation properties: `audio.channels` (1..=32, default 2), `audio.rate` (default 48000),
//! `meter.ppm` ("I" | "II", default "I"), `meter.rms-window` (s, default 0.3),
//! `meter.snapshot-rate` (Hz, default 30), `meter.socket` (path, default
//! `$XDG_RUNTIME_DIR/mugge/meter-<node.name>.sock`).

use crate::node::{
    ignored, Config, Control, Cycle, Direction, Kind, MainSide, NodeParts, PropsUpdate, RtSide,
};
use crate::params::{Param, ParamInfo, ParamType};
use crate::server::{Feed, Frame, Server};
use mugge_dsp::meter::{Ballistics, PpmType, DEFAULT_RMS_WINDOW_S};
use mugge_dsp::snapshot::{Meter, Snapshot, DEFAULT_SNAPSHOT_HZ};
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// Snapshots buffered between the data loop and each consumer (~2 s at 30 Hz).
const SNAPSHOT_RING: usize = 64;

pub struct MeterRt {
    meter: Meter,
    to_main: HeapProd<Snapshot>,
    to_socket: HeapProd<Snapshot>,
}

impl RtSide for MeterRt {
    fn control(&mut self, c: Control) {
        match c {
            Control::MeterResetClip => self.meter.reset_clip(),
            Control::MeterBallistics(b) => self.meter.set_ballistics(b),
            _ => {}
        }
    }

    fn process_input(&mut self, planes: &[&[f32]], cycle: &Cycle) {
        self.meter.process_planes(planes);
        if let Some(s) = self
            .meter
            .end_cycle(cycle.quantum, cycle.position, cycle.nsec)
        {
            // A full ring means a stalled consumer: the snapshot is dropped for it.
            let _ = self.to_main.try_push(s);
            let _ = self.to_socket.try_push(s);
        }
    }
}

struct SnapshotFeed {
    rx: HeapCons<Snapshot>,
    buf: Vec<u8>,
}

impl Feed for SnapshotFeed {
    fn drain(&mut self, emit: &mut dyn FnMut(Frame<'_>)) {
        while let Some(s) = self.rx.try_pop() {
            self.buf.resize(s.encoded_len(), 0);
            if let Some(n) = s.encode(&mut self.buf) {
                emit(Frame {
                    bytes: &self.buf[..n],
                    frames: 1,
                    lost_offset: None,
                    upstream_lost: 0,
                });
            }
        }
    }
}

pub struct MeterMain {
    channels: u32,
    rate: u32,
    ppm: PpmType,
    rms_window_s: f64,
    snapshot_hz: f64,
    from_rt: HeapCons<Snapshot>,
    last: Snapshot,
    server: Server,
}

/// Builds the meter's two halves and starts its socket.
pub fn create(cfg: &Config) -> Result<NodeParts, String> {
    let (main, rt) = create_parts(cfg)?;
    Ok((Box::new(main), Box::new(rt)))
}

pub fn create_parts(cfg: &Config) -> Result<(MeterMain, MeterRt), String> {
    let channels = cfg.channels(2)?;
    let rate = cfg.rate()?;
    let ppm = match cfg.get("meter.ppm") {
        None => PpmType::TypeI,
        Some(s) => PpmType::parse(s).ok_or(format!("meter.ppm = {s:?}: want \"I\" or \"II\""))?,
    };
    let rms_window_s = cfg.f64_or("meter.rms-window", DEFAULT_RMS_WINDOW_S, 0.01, 10.0)?;
    let snapshot_hz = cfg.f64_or("meter.snapshot-rate", DEFAULT_SNAPSHOT_HZ, 1.0, 200.0)?;
    let path = cfg.socket_path("meter.socket", "meter")?;
    let ballistics = Ballistics::new(rate, ppm, rms_window_s);
    let (p1, c1) = HeapRb::<Snapshot>::new(SNAPSHOT_RING).split();
    let (p2, c2) = HeapRb::<Snapshot>::new(SNAPSHOT_RING).split();
    // Snapshots come every ~33 ms: a 5 ms poll adds little delay and few wake-ups.
    let server = Server::start(
        path.clone(),
        std::time::Duration::from_millis(5),
        SnapshotFeed {
            rx: c2,
            buf: Vec::new(),
        },
    )
    .map_err(|e| format!("meter socket {}: {e}", path.display()))?;
    let meter = Meter::new(channels as usize, ballistics, snapshot_hz);
    let last = Snapshot {
        channels,
        rate,
        ..Snapshot::default()
    };
    Ok((
        MeterMain {
            channels,
            rate,
            ppm,
            rms_window_s: ballistics.rms_window_s(),
            snapshot_hz,
            from_rt: c1,
            last,
            server,
        },
        MeterRt {
            meter,
            to_main: p1,
            to_socket: p2,
        },
    ))
}

const PARAMS: &[(&str, &str)] = &[
    (
        "meter.reset-clip",
        "write true to reset every channel's clip latch and count",
    ),
    (
        "meter.ppm",
        "PPM type: \"I\" (IEC 60268-10 Type I) or \"II\" (Type II)",
    ),
    ("meter.seq", "snapshot sequence number"),
    (
        "meter.position",
        "graph clock position (samples) of the snapshot",
    ),
    ("meter.nsec", "graph clock nsec of the snapshot"),
    (
        "meter.peak",
        "sample peak per channel since the previous snapshot, dBFS",
    ),
    ("meter.rms", "RMS per channel over the RMS window, dBFS"),
    (
        "meter.display",
        "display ballistics per channel (hold 2 s, fall 20 dB/s), dBFS",
    ),
    ("meter.ppm-level", "PPM reading per channel, dBFS"),
    (
        "meter.clip",
        "clip latch per channel (1 = clipped since reset)",
    ),
    (
        "meter.clip-count",
        "clipped samples per channel since reset",
    ),
];

impl MainSide for MeterMain {
    fn kind(&self) -> Kind {
        Kind::Meter
    }
    fn direction(&self) -> Direction {
        Direction::Input
    }
    fn channels(&self) -> u32 {
        self.channels
    }
    fn rate(&self) -> u32 {
        self.rate
    }

    fn info_props(&self) -> Vec<(String, String)> {
        vec![
            (
                "mugge.meter.socket".into(),
                self.server.path().display().to_string(),
            ),
            ("mugge.meter.ppm".into(), self.ppm.name().into()),
            (
                "mugge.meter.rms-window".into(),
                format!("{}", self.rms_window_s),
            ),
            (
                "mugge.meter.snapshot-rate".into(),
                format!("{}", self.snapshot_hz),
            ),
            (
                "mugge.meter.display".into(),
                "peak hold 2 s, then 20 dB/s".into(),
            ),
        ]
    }

    fn param_info(&self) -> Vec<ParamInfo> {
        PARAMS
            .iter()
            .enumerate()
            .map(|(i, (key, description))| ParamInfo {
                key,
                description,
                kind: match i {
                    0 => ParamType::Bool(false),
                    1 => ParamType::Str("I".into()),
                    2..=4 => ParamType::Long(0),
                    9 | 10 => ParamType::Ints,
                    _ => ParamType::Floats,
                },
                read_only: i >= 2,
            })
            .collect()
    }

    fn param_values(&self) -> Vec<(&'static str, Param)> {
        let ch = self.last.channels();
        let f = |g: fn(&mugge_dsp::meter::ChannelReading) -> f32| {
            Param::Floats(ch.iter().map(g).collect())
        };
        vec![
            ("meter.reset-clip", Param::Bool(false)),
            ("meter.ppm", Param::Str(self.ppm.name().into())),
            ("meter.seq", Param::Long(self.last.seq as i64)),
            ("meter.position", Param::Long(self.last.position as i64)),
            ("meter.nsec", Param::Long(self.last.nsec as i64)),
            ("meter.peak", f(|r| r.peak_db)),
            ("meter.rms", f(|r| r.rms_db)),
            ("meter.display", f(|r| r.display_db)),
            ("meter.ppm-level", f(|r| r.ppm_db)),
            (
                "meter.clip",
                Param::Ints(ch.iter().map(|r| i32::from(r.clipped)).collect()),
            ),
            (
                "meter.clip-count",
                Param::Ints(
                    ch.iter()
                        .map(|r| r.clip_count.min(i32::MAX as u32) as i32)
                        .collect(),
                ),
            ),
        ]
    }

    fn set_params(&mut self, pairs: Vec<(String, Result<Param, String>)>) -> PropsUpdate {
        let mut u = PropsUpdate::default();
        for (k, v) in pairs {
            let v = match v {
                Ok(v) => v,
                Err(t) => {
                    u.ignored
                        .push(ignored(&k, format!("unsupported value type {t}")));
                    continue;
                }
            };
            match k.as_str() {
                "meter.reset-clip" => match v.as_bool() {
                    Some(true) => u.controls.push(Control::MeterResetClip),
                    Some(false) => {}
                    None => u.ignored.push(ignored(&k, "want a bool")),
                },
                "meter.ppm" => match v.as_str().and_then(PpmType::parse) {
                    Some(t) => {
                        self.ppm = t;
                        u.controls.push(Control::MeterBallistics(Ballistics::new(
                            self.rate,
                            t,
                            self.rms_window_s,
                        )));
                    }
                    None => u.ignored.push(ignored(&k, "want \"I\" or \"II\"")),
                },
                k if k.starts_with("meter.") => {
                    u.ignored.push(ignored(k, "read-only or unknown key"))
                }
                // Keys of the adapter's converter travel in the same struct: not ours.
                _ => {}
            }
        }
        u
    }

    fn poll(&mut self) -> bool {
        let mut changed = false;
        while let Some(s) = self.from_rt.try_pop() {
            self.last = s;
            changed = true;
        }
        changed
    }

    fn poll_interval_ms(&self) -> u64 {
        // Twice the snapshot rate: every snapshot is seen, each within half a period.
        ((500.0 / self.snapshot_hz) as u64).max(2)
    }
}
