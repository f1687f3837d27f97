//! `mugge.tap`: N input channels, no output. Copies every cycle into a preallocated lock-free
//! SPSC ring; the socket thread frames it (`mugge_dsp::tapframe`) for any number of readers.
//! When the ring is full the cycle is dropped and counted (`tap.lost`, and in the `lost`
//! header field of every reader's next frame).
//!
//! Creation properties: `audio.channels` (1..=32, default 2), `audio.rate` (default 48000),
//! `tap.buffer-ms` (ring length, default 2000), `tap.socket` (path, default
//! `$XDG_RUNTIME_DIR/mugge/tap-<node.name>.sock`).

use crate::node::{
    ignored, Config, Control, Cycle, Direction, Kind, MainSide, NodeParts, PropsUpdate, RtSide,
};
use crate::params::{Param, ParamInfo, ParamType, MAX_QUANTUM};
use crate::server::{Feed, Frame, LostCounter, Server};
use mugge_dsp::tapframe::{TapHeader, TAP_HEADER_LEN};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One cycle's worth of samples in the sample ring.
#[derive(Clone, Copy, Debug, Default)]
pub struct Chunk {
    pub position: u64,
    pub nsec: u64,
    pub frames: u32,
    /// RT losses (frames) before this chunk, cumulative.
    pub lost_before: u64,
}

pub struct TapRt {
    channels: usize,
    samples: HeapProd<f32>,
    chunks: HeapProd<Chunk>,
    scratch: Vec<f32>,
    lost: LostCounter,
    lost_local: u64,
}

impl RtSide for TapRt {
    fn control(&mut self, _c: Control) {}

    fn process_input(&mut self, planes: &[&[f32]], cycle: &Cycle) {
        let frames = planes.iter().map(|p| p.len()).min().unwrap_or(0);
        let n = frames * self.channels;
        if frames == 0 {
            return;
        }
        if planes.len() < self.channels
            || n > self.scratch.len()
            || self.samples.vacant_len() < n
            || self.chunks.is_full()
        {
            self.lost_local += frames as u64;
            self.lost.store(self.lost_local, Ordering::Relaxed);
            return;
        }
        // Channel by channel with a strided write: no index checks in the inner loop.
        for (c, p) in planes.iter().take(self.channels).enumerate() {
            for (d, x) in self.scratch[c..n]
                .iter_mut()
                .step_by(self.channels)
                .zip(&p[..frames])
            {
                *d = *x;
            }
        }
        self.samples.push_slice(&self.scratch[..n]);
        let _ = self.chunks.try_push(Chunk {
            position: cycle.position,
            nsec: cycle.nsec,
            frames: frames as u32,
            lost_before: self.lost_local,
        });
    }
}

pub struct TapFeed {
    channels: u32,
    rate: u32,
    samples: HeapCons<f32>,
    chunks: HeapCons<Chunk>,
    buf: Vec<f32>,
    out: Vec<u8>,
}

impl Feed for TapFeed {
    fn drain(&mut self, emit: &mut dyn FnMut(Frame<'_>)) {
        while let Some(c) = self.chunks.try_pop() {
            let n = c.frames as usize * self.channels as usize;
            self.buf.resize(n, 0.0);
            let got = self.samples.pop_slice(&mut self.buf[..n]);
            if got != n {
                // Cannot happen (samples are pushed before their chunk); never emit a torn frame.
                continue;
            }
            let h = TapHeader {
                channels: self.channels,
                rate: self.rate,
                position: c.position,
                nsec: c.nsec,
                frames: c.frames,
                lost: 0,
            };
            self.out.clear();
            mugge_dsp::tapframe::encode_frame(&h, &self.buf[..n], &mut self.out);
            emit(Frame {
                bytes: &self.out,
                frames: u64::from(c.frames),
                lost_offset: Some(TAP_HEADER_LEN - 8),
                upstream_lost: c.lost_before,
            });
        }
    }
}

pub struct TapMain {
    channels: u32,
    rate: u32,
    buffer_ms: f64,
    lost: LostCounter,
    server: Server,
    last: (u64, u64, u64, u64),
}

pub fn create(cfg: &Config) -> Result<NodeParts, String> {
    let (main, rt) = create_parts(cfg)?;
    Ok((Box::new(main), Box::new(rt)))
}

pub fn create_parts(cfg: &Config) -> Result<(TapMain, TapRt), String> {
    let channels = cfg.channels(2)?;
    let rate = cfg.rate()?;
    let buffer_ms = cfg.f64_or("tap.buffer-ms", 2000.0, 50.0, 60_000.0)?;
    let path = cfg.socket_path("tap.socket", "tap")?;
    let ring_frames = ((buffer_ms / 1000.0 * rate as f64) as usize).max(2 * MAX_QUANTUM as usize);
    let (sp, sc) = HeapRb::<f32>::new(ring_frames * channels as usize).split();
    // Enough chunk slots for the ring filled with 16-frame cycles.
    let (cp, cc) = HeapRb::<Chunk>::new(ring_frames / 16 + 1).split();
    let lost: LostCounter = Arc::default();
    let feed = TapFeed {
        channels,
        rate,
        samples: sc,
        chunks: cc,
        buf: Vec::new(),
        out: Vec::new(),
    };
    // Frames come every quantum (2.7 ms at q128): a 4 ms poll batches one or two.
    let server = Server::start(path.clone(), std::time::Duration::from_millis(4), feed)
        .map_err(|e| format!("tap socket {}: {e}", path.display()))?;
    Ok((
        TapMain {
            channels,
            rate,
            buffer_ms,
            lost: lost.clone(),
            server,
            last: (0, 0, 0, 0),
        },
        TapRt {
            channels: channels as usize,
            samples: sp,
            chunks: cp,
            scratch: vec![0.0; MAX_QUANTUM as usize * channels as usize],
            lost,
            lost_local: 0,
        },
    ))
}

impl MainSide for TapMain {
    fn kind(&self) -> Kind {
        Kind::Tap
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
                "mugge.tap.socket".into(),
                self.server.path().display().to_string(),
            ),
            ("mugge.tap.buffer-ms".into(), format!("{}", self.buffer_ms)),
            (
                "mugge.tap.format".into(),
                "MUGT v1: 48-byte header, interleaved f32 LE".into(),
            ),
        ]
    }
    fn param_info(&self) -> Vec<ParamInfo> {
        [
            (
                "tap.lost",
                "frames dropped because the ring was full (graph side)",
            ),
            (
                "tap.reader-drops",
                "frames dropped for slow readers, summed over readers",
            ),
            ("tap.readers", "connected readers"),
            ("tap.frames-sent", "frames handed to the readers"),
        ]
        .into_iter()
        .map(|(key, description)| ParamInfo {
            key,
            description,
            kind: ParamType::Long(0),
            read_only: true,
        })
        .collect()
    }
    fn param_values(&self) -> Vec<(&'static str, Param)> {
        let (lost, drops, readers, sent) = self.last;
        vec![
            ("tap.lost", Param::Long(lost as i64)),
            ("tap.reader-drops", Param::Long(drops as i64)),
            ("tap.readers", Param::Long(readers as i64)),
            ("tap.frames-sent", Param::Long(sent as i64)),
        ]
    }
    fn set_params(&mut self, pairs: Vec<(String, Result<Param, String>)>) -> PropsUpdate {
        let mut u = PropsUpdate::default();
        for (k, _) in pairs {
            if k.starts_with("tap.") {
                u.ignored.push(ignored(&k, "read-only or unknown key"));
            }
        }
        u
    }
    fn poll(&mut self) -> bool {
        let s = &self.server.stats;
        let now = (
            self.lost.load(Ordering::Relaxed),
            s.reader_drops.load(Ordering::Relaxed),
            s.readers.load(Ordering::Relaxed),
            s.frames_sent.load(Ordering::Relaxed),
        );
        // Loss and reader changes are news; the running frame count alone is not worth an event.
        let changed = (now.0, now.1, now.2) != (self.last.0, self.last.1, self.last.2);
        self.last = now;
        changed
    }
    fn poll_interval_ms(&self) -> u64 {
        250
    }
}
