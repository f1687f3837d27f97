//! `mugge tap SOURCE`: starts a PCM tap on a source, records for a while, then stops the tap.
//! Writes the tap's framed stream as is (`--format raw`: the plugin's versioned frames, header
//! with channels, rate and graph clock, then interleaved f32; docs/plugin.md) or a WAV file
//! (`--format wav`, 32-bit float, the tap's channels 1..N in order, frames the tap lost filled
//! with silence so that the file keeps the graph's timing).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use mugge_controller::client;
use mugge_dsp::tapframe::{decode_frame, TapHeader, TAP_HEADER_LEN};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// The tap's framed stream, byte for byte.
    Raw,
    /// WAV, 32-bit float (needs --out: the header is completed at the end).
    Wav,
}

#[derive(clap::Args)]
pub struct Args {
    /// Source node, e.g. usbstreamer-in, usbstreamer-out, umik1-in, mugge-program.
    source: String,
    /// Channels to tap: the source's channels 1..N.
    #[arg(long, default_value_t = 2)]
    channels: u32,
    /// How long to record.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Output file (default: stdout, raw only).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Output format (default: wav for an --out ending in .wav, else raw).
    #[arg(long, value_enum)]
    format: Option<Format>,
}

/// Where the recording goes.
enum Sink {
    Raw(Box<dyn Write>),
    Wav {
        path: PathBuf,
        /// Bytes not yet parsed into whole frames.
        pending: Vec<u8>,
        writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
        /// (channels, rate) of the first frame: every later frame must match.
        spec: Option<(u32, u32)>,
        /// Graph clock position expected next; a jump is filled with silence.
        next: Option<u64>,
        frames: u64,
        filled: u64,
    },
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match self {
            Sink::Raw(w) => Ok(w.write_all(bytes)?),
            Sink::Wav {
                path,
                pending,
                writer,
                spec,
                next,
                frames,
                filled,
            } => {
                pending.extend_from_slice(bytes);
                let mut used = 0;
                while pending.len() - used >= TAP_HEADER_LEN {
                    if TapHeader::decode(&pending[used..]).is_none() {
                        bail!("the tap sent something that is not a tap frame (wrong magic or version)");
                    }
                    let Some((h, samples, n)) = decode_frame(&pending[used..]) else {
                        break; // the rest of this frame is still coming
                    };
                    used += n;
                    match *spec {
                        None => {
                            *spec = Some((h.channels, h.rate));
                            let ws = hound::WavSpec {
                                channels: u16::try_from(h.channels)
                                    .context("too many channels for a WAV")?,
                                sample_rate: h.rate,
                                bits_per_sample: 32,
                                sample_format: hound::SampleFormat::Float,
                            };
                            *writer = Some(
                                hound::WavWriter::create(&*path, ws)
                                    .with_context(|| format!("creating {}", path.display()))?,
                            );
                        }
                        Some(s) if s != (h.channels, h.rate) => bail!(
                            "the tap changed from {} channels at {} Hz to {} channels at {} Hz",
                            s.0,
                            s.1,
                            h.channels,
                            h.rate
                        ),
                        Some(_) => {}
                    }
                    let w = writer.as_mut().expect("created with the first frame");
                    if let Some(gap) = next.and_then(|p| h.position.checked_sub(p)) {
                        // Frames the tap lost: silence keeps the file on the graph's clock.
                        for _ in 0..gap * u64::from(h.channels) {
                            w.write_sample(0f32)?;
                        }
                        *filled += gap;
                    }
                    for s in samples {
                        w.write_sample(s)?;
                    }
                    *frames += u64::from(h.frames);
                    *next = Some(h.position + u64::from(h.frames));
                }
                pending.drain(..used);
                Ok(())
            }
        }
    }

    fn finish(self) -> anyhow::Result<String> {
        match self {
            Sink::Raw(mut w) => {
                w.flush()?;
                Ok(String::new())
            }
            Sink::Wav {
                path,
                writer,
                spec,
                frames,
                filled,
                ..
            } => {
                let Some(w) = writer else {
                    bail!("the tap sent no audio; {} not written", path.display());
                };
                w.finalize()?;
                let (ch, rate) = spec.unwrap_or_default();
                Ok(format!(
                    "{}: WAV, 32-bit float, channels 1..{ch}, {rate} Hz, {frames} frames{}",
                    path.display(),
                    if filled > 0 {
                        format!(" (+{filled} lost frames filled with silence)")
                    } else {
                        String::new()
                    }
                ))
            }
        }
    }
}

fn format_of(args: &Args) -> anyhow::Result<Format> {
    let by_name = args
        .out
        .as_deref()
        .and_then(Path::extension)
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
    let f = args
        .format
        .unwrap_or(if by_name { Format::Wav } else { Format::Raw });
    if f == Format::Wav && args.out.is_none() {
        bail!("a WAV needs --out FILE (its header is completed at the end)");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        bail!("--seconds must be a positive number, not {}", args.seconds);
    }
    Ok(f)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let format = format_of(&args)?;
    let proxy = client::connect()?;
    let path = proxy
        .start_tap(&args.source, args.channels)
        .map_err(client::explain)?;
    eprintln!(
        "tap on {} (channels 1..{}): {path}",
        args.source, args.channels
    );
    let result = (|| -> anyhow::Result<(u64, String)> {
        let mut sock = std::os::unix::net::UnixStream::connect(&path)?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut sink = match (&args.out, format) {
            (Some(p), Format::Wav) => Sink::Wav {
                path: p.clone(),
                pending: Vec::new(),
                writer: None,
                spec: None,
                next: None,
                frames: 0,
                filled: 0,
            },
            (Some(p), Format::Raw) => Sink::Raw(Box::new(std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            ))),
            (None, _) => Sink::Raw(Box::new(std::io::stdout().lock())),
        };
        let end = Instant::now() + Duration::from_secs_f64(args.seconds);
        let mut buf = vec![0u8; 65536];
        let mut total = 0u64;
        while Instant::now() < end {
            match sock.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    sink.write(&buf[..n])?;
                    total += n as u64;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok((total, sink.finish()?))
    })();
    proxy.stop_tap(&args.source).map_err(client::explain)?;
    match result {
        Ok((total, summary)) => {
            eprintln!("{total} bytes from the tap");
            if !summary.is_empty() {
                eprintln!("{summary}");
            }
            Ok(())
        }
        // The reader of stdout went away: the tap is stopped, nothing to report.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::exit(0)
        }
        Err(e) => Err(e),
    }
}
