//! Unix-socket fan-out served from a plain (non-RT) thread.
//!
//! The thread polls its feed (a lock-free ring filled by the data loop) every `period` and sends
//! whole frames to every connected reader through non-blocking sockets. Each reader has a
//! bounded queue: a frame that does not fit is dropped for that reader only and counted, so a
//! slow or stalled reader loses data and never holds anything up. Readers come and go at any
//! time. The socket is created mode 0600 in a 0700 directory.

use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One encoded frame for all readers.
pub struct Frame<'a> {
    pub bytes: &'a [u8],
    /// Audio frames it carries (for loss counting).
    pub frames: u64,
    /// Byte offset of a u64 LE "lost so far" field to fill per reader.
    pub lost_offset: Option<usize>,
    /// Frames the data loop had lost (ring full) up to this frame, cumulative.
    pub upstream_lost: u64,
}

/// Where the server thread gets its frames.
pub trait Feed: Send + 'static {
    /// Hands every frame available now to `emit`.
    fn drain(&mut self, emit: &mut dyn FnMut(Frame<'_>));
}

/// Counters shared with the main loop (shown in Props).
#[derive(Debug, Default)]
pub struct ServerStats {
    pub readers: AtomicU64,
    /// Frames dropped for slow readers, summed over readers.
    pub reader_drops: AtomicU64,
    pub frames_sent: AtomicU64,
}

/// A running server; dropping it stops the thread and removes the socket file.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    pub stats: Arc<ServerStats>,
}

struct Reader {
    stream: UnixStream,
    queue: Vec<u8>,
    sent: usize,
    dropped: u64,
    upstream_base: Option<u64>,
}

/// Per-reader queue bound.
const READER_QUEUE_BYTES: usize = 4 << 20;

fn prepare_path(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Server {
    /// Binds `path` and starts the thread.
    pub fn start(path: PathBuf, period: Duration, feed: impl Feed) -> io::Result<Server> {
        prepare_path(&path)?;
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ServerStats::default());
        let thread = std::thread::Builder::new()
            .name("mugge-sock".into())
            .spawn({
                let stop = stop.clone();
                let stats = stats.clone();
                move || serve(listener, feed, period, &stop, &stats)
            })?;
        Ok(Server {
            stop,
            thread: Some(thread),
            path,
            stats,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(
    listener: UnixListener,
    mut feed: impl Feed,
    period: Duration,
    stop: &AtomicBool,
    stats: &ServerStats,
) {
    let mut readers: Vec<Reader> = Vec::new();
    let mut scratch = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        while let Ok((stream, _)) = listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                readers.push(Reader {
                    stream,
                    queue: Vec::new(),
                    sent: 0,
                    dropped: 0,
                    upstream_base: None,
                });
            }
        }
        feed.drain(&mut |f: Frame<'_>| {
            for r in readers.iter_mut() {
                let base = *r.upstream_base.get_or_insert(f.upstream_lost);
                if r.queue.len() - r.sent + f.bytes.len() > READER_QUEUE_BYTES {
                    r.dropped += f.frames;
                    stats.reader_drops.fetch_add(f.frames, Ordering::Relaxed);
                    continue;
                }
                if r.sent > 0 && r.sent == r.queue.len() {
                    r.queue.clear();
                    r.sent = 0;
                }
                let start = r.queue.len();
                r.queue.extend_from_slice(f.bytes);
                if let Some(o) = f.lost_offset {
                    let lost = f.upstream_lost.saturating_sub(base) + r.dropped;
                    scratch.clear();
                    scratch.extend_from_slice(&lost.to_le_bytes());
                    r.queue[start + o..start + o + 8].copy_from_slice(&scratch);
                }
            }
            stats.frames_sent.fetch_add(f.frames, Ordering::Relaxed);
        });
        readers.retain_mut(|r| flush(r).is_ok());
        stats.readers.store(readers.len() as u64, Ordering::Relaxed);
        std::thread::sleep(period);
    }
}

/// Writes what the socket takes now. Err means the reader is gone.
fn flush(r: &mut Reader) -> io::Result<()> {
    // A reader that closed shows up as EOF on read (we never expect data from readers).
    let mut probe = [0u8; 64];
    match (&r.stream).read(&mut probe) {
        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    while r.sent < r.queue.len() {
        // MSG_NOSIGNAL: a vanished reader must not raise SIGPIPE inside the PipeWire daemon.
        match rustix::net::send(
            &r.stream,
            &r.queue[r.sent..],
            rustix::net::SendFlags::NOSIGNAL,
        ) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => r.sent += n,
            Err(rustix::io::Errno::AGAIN) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    if r.sent == r.queue.len() {
        r.queue.clear();
        r.sent = 0;
    }
    Ok(())
}

/// Shared "frames lost upstream" counter, bumped by the data loop with one relaxed atomic add.
pub type LostCounter = Arc<AtomicU64>;
