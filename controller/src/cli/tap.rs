//! `mugge tap SOURCE`: starts a PCM tap on a source and copies the tap's framed stream (the
//! plugin's versioned frame format: header with channels, rate and graph clock, then
//! interleaved f32) to a file or stdout for a while, then stops the tap.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use mugge_controller::client;

#[derive(clap::Args)]
pub struct Args {
    /// Source node, e.g. usbstreamer-in, usbstreamer-out, umik1-in, mugge-program.
    source: String,
    /// Channels to tap (one-based 1..N of the source).
    #[arg(long, default_value_t = 2)]
    channels: u32,
    /// How long to record.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Output file (default: stdout).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let proxy = client::connect()?;
    let path = proxy
        .start_tap(&args.source, args.channels)
        .map_err(client::explain)?;
    eprintln!("tap on {} ({} ch): {path}", args.source, args.channels);
    let result = (|| -> anyhow::Result<u64> {
        let mut sock = std::os::unix::net::UnixStream::connect(&path)?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut out: Box<dyn Write> = match &args.out {
            Some(p) => Box::new(std::fs::File::create(p)?),
            None => Box::new(std::io::stdout().lock()),
        };
        let end = Instant::now() + Duration::from_secs_f64(args.seconds);
        let mut buf = vec![0u8; 65536];
        let mut total = 0u64;
        while Instant::now() < end {
            match sock.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.write_all(&buf[..n])?;
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
        out.flush()?;
        Ok(total)
    })();
    proxy.stop_tap(&args.source).map_err(client::explain)?;
    let total = result?;
    eprintln!("{total} bytes");
    Ok(())
}
