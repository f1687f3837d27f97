//! Real audio in and out of a test stack: `pw-play` and `pw-record` streams (raw f32) that link
//! nowhere by themselves. The test links their ports where it wants them.

use crate::process::ChildGuard;
use crate::stack::Stack;
use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn channel_map(channels: usize) -> String {
    (0..channels)
        .map(|i| format!("AUX{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A capture stream; its input ports are `input_AUX0..` (channel N is `input_AUX{N-1}`).
pub struct Recorder {
    name: String,
    channels: usize,
    child: ChildGuard,
    data: Arc<Mutex<Vec<f32>>>,
    reader: Option<JoinHandle<()>>,
}

impl Recorder {
    /// `"<node>:input_AUX{n-1}"` for one-based channel `n`.
    pub fn port(&self, n: usize) -> String {
        assert!(
            (1..=self.channels).contains(&n),
            "channel {n} of {}",
            self.channels
        );
        format!("{}:input_AUX{}", self.name, n - 1)
    }

    pub fn node_name(&self) -> &str {
        &self.name
    }

    /// Frames captured so far.
    pub fn frames(&self) -> usize {
        self.data.lock().map(|d| d.len()).unwrap_or(0) / self.channels
    }

    /// Waits (bounded) until at least `frames` frames have arrived.
    pub fn wait_frames(&self, frames: usize, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        while self.frames() < frames {
            if start.elapsed() > timeout {
                bail!(
                    "{}: {} of {frames} frames after {timeout:?}",
                    self.name,
                    self.frames()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// A copy of what arrived so far, one `Vec` per channel.
    pub fn snapshot(&self) -> Vec<Vec<f32>> {
        let d = self.data.lock().map(|d| d.clone()).unwrap_or_default();
        deinterleave(&d, self.channels)
    }

    /// Stops the stream and returns everything captured, one `Vec` per channel.
    pub fn stop(mut self) -> Vec<Vec<f32>> {
        interrupt(self.child.pid());
        let start = Instant::now();
        while self.child.is_running() && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child.kill();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.snapshot()
    }
}

/// A playback stream of fixed samples; output ports `output_AUX0..`.
pub struct Player {
    name: String,
    channels: usize,
    _child: ChildGuard,
    _writer: JoinHandle<()>,
}

impl Player {
    /// `"<node>:output_AUX{n-1}"` for one-based channel `n`.
    pub fn port(&self, n: usize) -> String {
        assert!(
            (1..=self.channels).contains(&n),
            "channel {n} of {}",
            self.channels
        );
        format!("{}:output_AUX{}", self.name, n - 1)
    }

    pub fn node_name(&self) -> &str {
        &self.name
    }
}

/// Splits interleaved samples into channels.
pub fn deinterleave(interleaved: &[f32], channels: usize) -> Vec<Vec<f32>> {
    (0..channels)
        .map(|c| {
            interleaved
                .iter()
                .skip(c)
                .step_by(channels)
                .copied()
                .collect()
        })
        .collect()
}

/// Interleaves channels of equal length.
pub fn interleave(channels: &[Vec<f32>]) -> Vec<f32> {
    let frames = channels.iter().map(Vec::len).min().unwrap_or(0);
    (0..frames)
        .flat_map(|i| channels.iter().map(move |c| c[i]))
        .collect()
}

/// Room for about a second of 8-channel audio in the pipe: a capture tool that cannot write
/// blocks in its process callback and loses cycles, so a reader thread that the scheduler
/// delays (a loaded CI machine) must not be able to fill the pipe.
const PIPE_BYTES: usize = 1 << 20;

fn widen_pipe(fd: impl std::os::fd::AsFd) {
    // The system limit may be lower; the default 64 KiB then stays, which still works.
    let _ = rustix::pipe::fcntl_setpipe_size(fd, PIPE_BYTES);
}

fn interrupt(pid: u32) {
    // SIGINT lets pw-record flush what it buffered; no libc needed for a one-off signal.
    let _ = std::process::Command::new("kill")
        .arg("-INT")
        .arg(pid.to_string())
        .status();
}

impl Stack {
    /// `pw-record`/`pw-play` as an unlinked raw f32 stream named `name` with AUX positions; it
    /// dies with the test process.
    fn raw_stream(
        &self,
        tool: &str,
        name: &str,
        channels: usize,
        stdin: Stdio,
        stdout: Stdio,
    ) -> Result<std::process::Child> {
        let mut cmd = self.command(tool);
        cmd.args([
            "--raw",
            "--format",
            "f32",
            "--rate",
            "48000",
            "--latency",
            "256",
        ])
        .arg("--channels")
        .arg(channels.to_string())
        .arg("--channel-map")
        .arg(channel_map(channels))
        .arg("-P")
        .arg(format!("{{ node.name={name} node.autoconnect=false }}"))
        .arg("-");
        crate::process::with_parent_death_signal(&cmd)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {tool}"))
    }

    /// Starts an unlinked f32 capture stream named `name` with `channels` inputs.
    pub fn record(&self, name: &str, channels: usize) -> Result<Recorder> {
        let mut child =
            self.raw_stream("pw-record", name, channels, Stdio::null(), Stdio::piped())?;
        let mut out = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("pw-record has no stdout"))?;
        widen_pipe(&out);
        let data = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&data);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            let mut carry: Vec<u8> = Vec::new();
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                carry.extend_from_slice(&buf[..n]);
                let whole = carry.len() / 4 * 4;
                let samples = carry[..whole]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                if let Ok(mut d) = sink.lock() {
                    d.extend(samples);
                }
                carry.drain(..whole);
            }
        });
        let rec = Recorder {
            name: name.to_owned(),
            channels,
            child: ChildGuard::adopt("pw-record", child),
            data,
            reader: Some(reader),
        };
        self.wait_for_port(
            name,
            &format!("input_AUX{}", channels - 1),
            Duration::from_secs(10),
        )?;
        Ok(rec)
    }

    /// Starts an unlinked f32 playback stream that plays `interleaved` once it is linked, then
    /// silence. The samples are written as the stream consumes them.
    pub fn play(&self, name: &str, channels: usize, interleaved: Vec<f32>) -> Result<Player> {
        let mut child =
            self.raw_stream("pw-play", name, channels, Stdio::piped(), Stdio::null())?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("pw-play has no stdin"))?;
        widen_pipe(&stdin);
        let writer = std::thread::spawn(move || {
            let bytes: Vec<u8> = interleaved.iter().flat_map(|s| s.to_le_bytes()).collect();
            let _ = stdin.write_all(&bytes);
            // Keep the pipe open (silence follows) until the player is killed.
            let _ = stdin.flush();
            std::thread::park();
        });
        let player = Player {
            name: name.to_owned(),
            channels,
            _child: ChildGuard::adopt("pw-play", child),
            _writer: writer,
        };
        self.wait_for_port(
            name,
            &format!("output_AUX{}", channels - 1),
            Duration::from_secs(10),
        )?;
        Ok(player)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_round_trips() {
        let ch = vec![vec![1.0, 2.0, 3.0], vec![-1.0, -2.0, -3.0]];
        let i = interleave(&ch);
        assert_eq!(i, vec![1.0, -1.0, 2.0, -2.0, 3.0, -3.0]);
        assert_eq!(deinterleave(&i, 2), ch);
    }
}
