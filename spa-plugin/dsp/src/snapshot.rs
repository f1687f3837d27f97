//! A multi-channel meter, its snapshot cadence derived from graph cycles, and the snapshot
//! record streamed on the meter socket.
//!
//! Meter socket record (all little-endian), `SNAPSHOT_HEADER_LEN` + 24 bytes per channel:
//! ```text
//! 0  [u8;4] magic "MUGM"     4  u16 version (1)   6  u16 header length (40)
//! 8  u32 channels            12 u32 rate
//! 16 u64 sequence number     24 u64 graph clock position (samples)   32 u64 graph clock nsec
//! then per channel: f32 peak dBFS, f32 RMS dBFS, f32 display dBFS, f32 PPM dBFS,
//!                   u32 clip count, u32 flags (bit 0 = clip latched)
//! ```

use crate::meter::{
    ppm_step, sane_group, Ballistics, ChannelMeter, ChannelReading, GROUPS_PER_PIECE, PIECE,
};
use crate::MAX_CHANNELS;

pub const SNAPSHOT_MAGIC: [u8; 4] = *b"MUGM";
pub const SNAPSHOT_VERSION: u16 = 1;
pub const SNAPSHOT_HEADER_LEN: usize = 40;
pub const SNAPSHOT_CHANNEL_LEN: usize = 24;
/// Default snapshot rate (D-044: 25-30 Hz).
pub const DEFAULT_SNAPSHOT_HZ: f64 = 30.0;

/// One meter snapshot, stamped with the graph clock of the cycle that completed it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    pub seq: u64,
    pub position: u64,
    pub nsec: u64,
    pub rate: u32,
    pub channels: u32,
    pub readings: [ChannelReading; MAX_CHANNELS],
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            seq: 0,
            position: 0,
            nsec: 0,
            rate: 0,
            channels: 0,
            readings: [ChannelReading::default(); MAX_CHANNELS],
        }
    }
}

impl Snapshot {
    /// The active channels' readings.
    pub fn channels(&self) -> &[ChannelReading] {
        &self.readings[..(self.channels as usize).min(MAX_CHANNELS)]
    }

    /// Encoded length of this snapshot.
    pub fn encoded_len(&self) -> usize {
        SNAPSHOT_HEADER_LEN + SNAPSHOT_CHANNEL_LEN * self.channels().len()
    }

    /// Writes the socket record into `out`; returns the bytes written, or `None` if `out` is short.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let len = self.encoded_len();
        let out = out.get_mut(..len)?;
        out[0..4].copy_from_slice(&SNAPSHOT_MAGIC);
        out[4..6].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&(SNAPSHOT_HEADER_LEN as u16).to_le_bytes());
        out[8..12].copy_from_slice(&(self.channels().len() as u32).to_le_bytes());
        out[12..16].copy_from_slice(&self.rate.to_le_bytes());
        out[16..24].copy_from_slice(&self.seq.to_le_bytes());
        out[24..32].copy_from_slice(&self.position.to_le_bytes());
        out[32..40].copy_from_slice(&self.nsec.to_le_bytes());
        for (i, r) in self.channels().iter().enumerate() {
            let o =
                &mut out[SNAPSHOT_HEADER_LEN + i * SNAPSHOT_CHANNEL_LEN..][..SNAPSHOT_CHANNEL_LEN];
            o[0..4].copy_from_slice(&r.peak_db.to_le_bytes());
            o[4..8].copy_from_slice(&r.rms_db.to_le_bytes());
            o[8..12].copy_from_slice(&r.display_db.to_le_bytes());
            o[12..16].copy_from_slice(&r.ppm_db.to_le_bytes());
            o[16..20].copy_from_slice(&r.clip_count.to_le_bytes());
            o[20..24].copy_from_slice(&u32::from(r.clipped).to_le_bytes());
        }
        Some(len)
    }

    /// Parses one record from the start of `buf` (reader side and tests).
    pub fn decode(buf: &[u8]) -> Option<(Snapshot, usize)> {
        let u32_at = |o: usize| {
            buf.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let u64_at = |o: usize| {
            buf.get(o..o + 8)
                .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        };
        if buf.get(0..4)? != SNAPSHOT_MAGIC || buf.get(4..6)? != SNAPSHOT_VERSION.to_le_bytes() {
            return None;
        }
        let hdr = u16::from_le_bytes([buf[6], buf[7]]) as usize;
        let channels = u32_at(8)? as usize;
        if channels > MAX_CHANNELS || hdr < SNAPSHOT_HEADER_LEN {
            return None;
        }
        let mut s = Snapshot {
            channels: channels as u32,
            rate: u32_at(12)?,
            seq: u64_at(16)?,
            position: u64_at(24)?,
            nsec: u64_at(32)?,
            ..Snapshot::default()
        };
        let f = |o: usize| u32_at(o).map(f32::from_bits);
        for i in 0..channels {
            let o = hdr + i * SNAPSHOT_CHANNEL_LEN;
            s.readings[i] = ChannelReading {
                peak_db: f(o)?,
                rms_db: f(o + 4)?,
                display_db: f(o + 8)?,
                ppm_db: f(o + 12)?,
                clip_count: u32_at(o + 16)?,
                clipped: u32_at(o + 20)? & 1 == 1,
            };
        }
        Some((s, hdr + channels * SNAPSHOT_CHANNEL_LEN))
    }
}

/// Snapshot cadence counted in graph cycles: every ceil(rate / (hz * quantum)) cycles.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotClock {
    hz: f64,
    count: u32,
}

impl SnapshotClock {
    pub fn new(hz: f64) -> Self {
        let hz = if hz.is_finite() {
            hz.clamp(1.0, 200.0)
        } else {
            DEFAULT_SNAPSHOT_HZ
        };
        SnapshotClock { hz, count: 0 }
    }

    pub fn hz(&self) -> f64 {
        self.hz
    }

    /// Cycles between snapshots at this rate and quantum (at least 1).
    pub fn cycles_per_snapshot(&self, rate: u32, quantum: u32) -> u32 {
        if rate == 0 || quantum == 0 {
            return 1;
        }
        (rate as f64 / (self.hz * quantum as f64))
            .ceil()
            .clamp(1.0, 1e6) as u32
    }

    /// Counts one graph cycle; true when this cycle completes a snapshot.
    pub fn tick(&mut self, rate: u32, quantum: u32) -> bool {
        self.count += 1;
        if self.count >= self.cycles_per_snapshot(rate, quantum) {
            self.count = 0;
            true
        } else {
            false
        }
    }
}

/// All channels of one meter node.
#[derive(Clone, Debug)]
pub struct Meter {
    ballistics: Ballistics,
    channels: Vec<ChannelMeter>,
    clock: SnapshotClock,
    seq: u64,
    /// Group peaks of up to [`LANES`] channels, channel-major (preallocated: no allocation
    /// while processing).
    scratch: Box<[[f32; GROUPS_PER_PIECE]; LANES]>,
}

/// Channels whose PPM integrators step in lockstep: independent recursions side by side keep
/// the CPU busy where one alone waits on each step's result.
pub const LANES: usize = 8;

impl Meter {
    /// Allocates every channel's state (main thread).
    pub fn new(channels: usize, ballistics: Ballistics, snapshot_hz: f64) -> Self {
        Meter {
            ballistics,
            channels: vec![ChannelMeter::default(); channels.clamp(1, MAX_CHANNELS)],
            clock: SnapshotClock::new(snapshot_hz),
            seq: 0,
            scratch: Box::new([[0.0; GROUPS_PER_PIECE]; LANES]),
        }
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub fn ballistics(&self) -> &Ballistics {
        &self.ballistics
    }

    pub fn snapshot_clock(&self) -> &SnapshotClock {
        &self.clock
    }

    /// Feeds channel `ch` (zero-based); channels out of range are ignored.
    pub fn process_channel(&mut self, ch: usize, samples: &[f32]) {
        let b = &self.ballistics;
        let gp = &mut self.scratch[0];
        if let Some(m) = self.channels.get_mut(ch) {
            for piece in samples.chunks(PIECE) {
                let n = m.process_deferred(b, piece, gp);
                m.ppm_run(b, &gp[..n]);
            }
        }
    }

    /// Feeds one cycle of every channel (`planes[c]` is channel c, zero-based; extra planes are
    /// ignored). Same result as [`Meter::process_channel`] per channel, cheaper: the PPM
    /// integrators of up to [`LANES`] channels step side by side.
    pub fn process_planes(&mut self, planes: &[&[f32]]) {
        let n_ch = planes.len().min(self.channels.len());
        let b = &self.ballistics;
        let (attack, release) = b.ppm_coefficients();
        let mut first = 0;
        while first < n_ch {
            let lanes = (n_ch - first).min(LANES);
            let chans = &mut self.channels[first..first + lanes];
            let planes = &planes[first..first + lanes];
            if planes.iter().any(|p| p.len() > PIECE) {
                // Longer than one piece (never at PipeWire's quanta): channel by channel.
                for (m, p) in chans.iter_mut().zip(planes) {
                    for piece in p.chunks(PIECE) {
                        let gp = &mut self.scratch[0];
                        let n = m.process_deferred(b, piece, gp);
                        m.ppm_run(b, &gp[..n]);
                    }
                }
                first += lanes;
                continue;
            }
            let mut counts = [0usize; LANES];
            for ((m, p), (gp, n)) in chans
                .iter_mut()
                .zip(planes)
                .zip(self.scratch.iter_mut().zip(counts.iter_mut()))
            {
                *n = m.process_deferred(b, p, gp);
            }
            let steps = counts[0];
            if counts[..lanes].iter().all(|n| *n == steps) {
                let mut e = [0f32; LANES];
                let mut mx = [0f32; LANES];
                for (l, m) in chans.iter().enumerate() {
                    (e[l], mx[l]) = m.ppm_state();
                }
                for k in 0..steps {
                    for l in 0..lanes {
                        let g = sane_group(self.scratch[l][k]);
                        e[l] = ppm_step(e[l], g, attack, release);
                        mx[l] = if e[l] > mx[l] { e[l] } else { mx[l] };
                    }
                }
                for (l, m) in chans.iter_mut().enumerate() {
                    m.set_ppm_state((e[l], mx[l]));
                }
            } else {
                // Channels out of step (planes of different lengths): one by one.
                for ((m, gp), n) in chans.iter_mut().zip(self.scratch.iter()).zip(counts) {
                    m.ppm_run(b, &gp[..n]);
                }
            }
            first += lanes;
        }
    }

    /// Ends one graph cycle. Returns a snapshot when the cadence says so.
    pub fn end_cycle(&mut self, quantum: u32, position: u64, nsec: u64) -> Option<Snapshot> {
        if !self.clock.tick(self.ballistics.rate, quantum) {
            return None;
        }
        self.seq += 1;
        let mut s = Snapshot {
            seq: self.seq,
            position,
            nsec,
            rate: self.ballistics.rate,
            channels: self.channels.len() as u32,
            ..Snapshot::default()
        };
        for (r, m) in s.readings.iter_mut().zip(self.channels.iter_mut()) {
            *r = m.take(&self.ballistics);
        }
        Some(s)
    }

    /// Swaps the coefficients (e.g. another PPM type); the channel states carry on.
    pub fn set_ballistics(&mut self, b: Ballistics) {
        self.ballistics = b;
    }

    pub fn reset_clip(&mut self) {
        for m in &mut self.channels {
            m.reset_clip();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::PpmType;

    /// The lockstep path reads exactly what the channel-by-channel path reads, whatever the
    /// channel count, cycle length (odd ones leave partial PPM groups) or input (NaN, inf).
    #[test]
    fn process_planes_matches_channel_by_channel() {
        let mut x = 0x9e37_79b9u32;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as f32 / 8_388_608.0 - 1.0
        };
        for channels in [1usize, 3, 8, 11, 24] {
            let b = Ballistics::new(48000, PpmType::TypeI, 0.3);
            let mut a = Meter::new(channels, b, 30.0);
            let mut c = Meter::new(channels, b, 30.0);
            for (cycle, len) in [1024usize, 13, 128, 1000, 7, 256, 1024, 9000]
                .iter()
                .cycle()
                .take(60)
                .enumerate()
            {
                let planes: Vec<Vec<f32>> = (0..channels)
                    .map(|ch| {
                        (0..*len)
                            .map(|i| {
                                let env = if (cycle + ch) % 5 == 0 { 1.2 } else { 0.3 };
                                match (cycle * 7 + ch * 3 + i) % 4001 {
                                    0 => f32::NAN,
                                    1 => f32::INFINITY,
                                    _ => rnd() * env,
                                }
                            })
                            .collect()
                    })
                    .collect();
                let refs: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
                a.process_planes(&refs);
                for (ch, p) in planes.iter().enumerate() {
                    c.process_channel(ch, p);
                }
                let (sa, sc) = (
                    a.end_cycle(*len as u32, 0, 0),
                    c.end_cycle(*len as u32, 0, 0),
                );
                assert_eq!(sa.is_some(), sc.is_some());
                if let (Some(sa), Some(sc)) = (sa, sc) {
                    assert_eq!(sa.channels(), sc.channels(), "{channels} ch, cycle {cycle}");
                }
            }
        }
    }

    #[test]
    fn cadence_follows_rate_and_quantum() {
        let c = SnapshotClock::new(30.0);
        assert_eq!(c.cycles_per_snapshot(48000, 1024), 2);
        assert_eq!(c.cycles_per_snapshot(48000, 256), 7);
        assert_eq!(c.cycles_per_snapshot(48000, 128), 13);
        assert_eq!(c.cycles_per_snapshot(48000, 8192), 1);
        assert_eq!(c.cycles_per_snapshot(0, 0), 1);
        let mut c = SnapshotClock::new(30.0);
        let fired: Vec<bool> = (0..14).map(|_| c.tick(48000, 256)).collect();
        assert_eq!(fired.iter().filter(|f| **f).count(), 2);
        assert!(fired[6] && fired[13]);
    }

    #[test]
    fn snapshot_round_trips_through_the_socket_record() {
        let mut m = Meter::new(3, Ballistics::new(48000, PpmType::TypeII, 0.3), 30.0);
        m.process_channel(1, &[0.5, -1.0]);
        let s = m
            .end_cycle(8192, 123_456, 789)
            .expect("one cycle per snapshot at q8192");
        let mut buf = [0u8; 256];
        let n = s.encode(&mut buf).unwrap();
        assert_eq!(n, 40 + 3 * 24);
        assert_eq!(&buf[0..4], b"MUGM");
        assert_eq!(u64::from_le_bytes(buf[24..32].try_into().unwrap()), 123_456);
        let (d, used) = Snapshot::decode(&buf[..n]).unwrap();
        assert_eq!(used, n);
        assert_eq!(d, s);
        assert!(d.readings[1].clipped && d.readings[1].clip_count == 1);
        assert!(s.encode(&mut buf[..50]).is_none());
        assert!(Snapshot::decode(&buf[..50]).is_none());
    }

    #[test]
    fn sequence_increases_per_snapshot() {
        let mut m = Meter::new(1, Ballistics::new(48000, PpmType::TypeI, 0.3), 30.0);
        let seqs: Vec<u64> = (0..100u64)
            .filter_map(|i| m.end_cycle(1024, i * 1024, i).map(|s| s.seq))
            .collect();
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    }
}
