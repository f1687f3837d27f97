//! Tap readers and the sweep capture's cut. A reader thread per tap socket decodes the
//! plugin's frames (graph-clock position of each cycle, cumulative loss count) and hands them
//! to the orchestrator; a [`Track`] keeps one tap's samples indexed by graph position, so the
//! mic and the reference are cut at exactly the same graph frames.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;

use mugge_dsp::tapframe::{decode_frame, TAP_HEADER_LEN};

/// One decoded tap frame (channel 1 only: both taps are mono).
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub position: u64,
    pub nsec: u64,
    /// Frames this reader has lost so far (the plugin's cumulative count).
    pub lost: u64,
    pub samples: Vec<f32>,
}

/// A connected tap; frames arrive on `frames`. Dropping it closes the socket and ends the
/// thread.
pub struct Reader {
    sock: UnixStream,
    pub frames: async_channel::Receiver<Frame>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    pub fn open(path: &Path, name: &str) -> std::io::Result<Reader> {
        let sock = UnixStream::connect(path)?;
        let mut rd = sock.try_clone()?;
        let (tx, rx) = async_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name(format!("mugge-tap-{name}"))
            .spawn(move || {
                let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
                let mut chunk = vec![0u8; 1 << 16];
                loop {
                    let n = match rd.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let mut used = 0;
                    while buf.len() - used >= TAP_HEADER_LEN {
                        let Some((h, samples, len)) = decode_frame(&buf[used..]) else {
                            if mugge_dsp::tapframe::TapHeader::decode(&buf[used..]).is_none() {
                                // Not a frame boundary: the stream is unusable from here.
                                return;
                            }
                            break; // incomplete payload
                        };
                        used += len;
                        let ch = h.channels.max(1) as usize;
                        let f = Frame {
                            position: h.position,
                            nsec: h.nsec,
                            lost: h.lost,
                            samples: samples.iter().step_by(ch).copied().collect(),
                        };
                        if tx.send_blocking(f).is_err() {
                            return;
                        }
                    }
                    buf.drain(..used);
                }
            })?;
        Ok(Reader {
            sock,
            frames: rx,
            thread: Some(thread),
        })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        self.frames.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One tap's samples by graph position; gaps are zero-filled and counted as lost.
#[derive(Clone, Debug, Default)]
pub struct Track {
    pub start: Option<u64>,
    pub samples: Vec<f32>,
    /// Graph nsec per frame start (position, nsec), for the capture's clock stamp.
    stamps: Vec<(u64, u64)>,
    first_lost: Option<u64>,
    last_lost: u64,
    gap_frames: u64,
}

impl Track {
    pub fn push(&mut self, f: &Frame) {
        let start = *self.start.get_or_insert(f.position);
        self.first_lost.get_or_insert(f.lost);
        self.last_lost = f.lost;
        let end = start + self.samples.len() as u64;
        if f.position < end {
            // Overlap: the clock went back (a restart of the graph): nothing lines up.
            self.gap_frames += f.samples.len() as u64;
            return;
        }
        if f.position > end {
            let gap = f.position - end;
            self.gap_frames += gap;
            self.samples.resize(self.samples.len() + gap as usize, 0.0);
        }
        self.stamps.push((f.position, f.nsec));
        self.samples.extend_from_slice(&f.samples);
    }

    /// Graph position after the last sample.
    pub fn end(&self) -> Option<u64> {
        self.start.map(|s| s + self.samples.len() as u64)
    }

    /// Frames lost so far: the plugin's count plus gaps in the positions.
    pub fn lost(&self) -> u64 {
        self.last_lost - self.first_lost.unwrap_or(self.last_lost) + self.gap_frames
    }

    pub fn at(&self, position: u64) -> Option<f32> {
        let s = self.start?;
        self.samples.get(position.checked_sub(s)? as usize).copied()
    }

    /// `len` samples from graph position `from`, if the track covers them.
    pub fn cut(&self, from: u64, len: usize) -> Option<Vec<f32>> {
        let s = self.start?;
        let i = from.checked_sub(s)? as usize;
        self.samples.get(i..i + len).map(<[f32]>::to_vec)
    }

    /// Graph nsec of the cycle containing `position`.
    pub fn nsec_at(&self, position: u64) -> Option<u64> {
        self.stamps
            .iter()
            .rev()
            .find(|(p, _)| *p <= position)
            .map(|(_, n)| *n)
    }

    /// First graph position at or after `from` whose sample is not exactly zero.
    pub fn first_sound(&self, from: u64) -> Option<u64> {
        let s = self.start?;
        let i0 = from.saturating_sub(s) as usize;
        self.samples
            .iter()
            .enumerate()
            .skip(i0)
            .find(|(_, v)| **v != 0.0)
            .map(|(i, _)| s + i as u64)
    }

    /// Length of the exactly-silent run at the end.
    pub fn silent_tail(&self) -> usize {
        self.samples.iter().rev().take_while(|v| **v == 0.0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(position: u64, lost: u64, v: &[f32]) -> Frame {
        Frame {
            position,
            nsec: position * 1000,
            lost,
            samples: v.to_vec(),
        }
    }

    #[test]
    fn a_track_cuts_by_graph_position_and_counts_gaps_and_losses() {
        let mut t = Track::default();
        t.push(&frame(100, 5, &[0.0, 0.0]));
        t.push(&frame(102, 5, &[0.0, 0.5]));
        assert_eq!(t.lost(), 0);
        assert_eq!(t.first_sound(100), Some(103));
        assert_eq!(t.cut(102, 2), Some(vec![0.0, 0.5]));
        assert_eq!(t.cut(103, 2), None);
        assert_eq!(t.nsec_at(103), Some(102_000));
        t.push(&frame(106, 7, &[1.0]));
        assert_eq!(
            t.lost(),
            2 + 2,
            "two frames the plugin lost, two missing positions"
        );
        assert_eq!(t.at(106), Some(1.0));
        assert_eq!(t.end(), Some(107));
        assert_eq!(t.silent_tail(), 0);
    }

    #[test]
    fn a_reader_decodes_frames_from_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tap.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let r = Reader::open(&path, "test").unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut out = Vec::new();
        for k in 0..3u64 {
            let h = mugge_dsp::tapframe::TapHeader {
                channels: 2,
                rate: 48_000,
                position: 10 + 2 * k,
                nsec: k,
                frames: 2,
                lost: 0,
            };
            mugge_dsp::tapframe::encode_frame(&h, &[1.0, 9.0, 2.0, 9.0], &mut out);
        }
        // Split mid-header: the reader must reassemble.
        use std::io::Write;
        s.write_all(&out[..30]).unwrap();
        s.flush().unwrap();
        s.write_all(&out[30..]).unwrap();
        let mut t = Track::default();
        for _ in 0..3 {
            t.push(&r.frames.recv_blocking().unwrap());
        }
        assert_eq!(t.samples, vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        assert_eq!(t.start, Some(10));
        drop(r);
    }
}
