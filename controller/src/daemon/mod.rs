//! The controller daemon: desired state per mode, the observed graph and the reconciler.

pub mod chain;
pub mod config;
pub mod graph;
pub mod levels;
pub mod measure;
pub mod props;
pub mod pw;
pub mod reconcile;
pub mod routing;
pub mod service;
pub mod status;

use std::path::PathBuf;

use anyhow::Context as _;

use config::Config;
use routing::Mode;
use service::{Controller, BUS_NAME, OBJECT_PATH};

/// Where the daemon remembers its mode, so that a restart adopts the graph instead of
/// tearing it down to standby.
pub fn state_file() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR").map(|d| PathBuf::from(d).join("mugge/controller-mode"))
}

/// Runs the daemon until the session bus connection or the PipeWire thread ends.
pub fn run(config: Config, initial: Option<Mode>) -> anyhow::Result<()> {
    let (status_tx, status_rx) = async_channel::unbounded();
    let (levels_tx, levels_rx) = async_channel::bounded(64);
    let pw = pw::spawn(status_tx, levels_tx);
    let state = state_file();
    let remembered = state
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse::<Mode>().ok());
    let ctl = Controller::new(config, pw.commands.clone(), state);
    let mode = initial.or(remembered).unwrap_or(Mode::Standby);
    if let Err(e) = ctl.restore(mode) {
        tracing::warn!("cannot restore mode {mode}: {e}; using standby");
        ctl.restore(Mode::Standby)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    tracing::info!("starting in mode {mode}");
    async_io::block_on(async move {
        let builder = match session_socket() {
            Some(s) => zbus::connection::Builder::async_io_unix_stream(s),
            None => zbus::connection::Builder::session()?,
        };
        let conn = builder
            .name(BUS_NAME)?
            .serve_at(OBJECT_PATH, ctl)?
            .build()
            .await
            .context("cannot own org.mugge.Controller on the session bus")?;
        let startup = async {
            let iface = conn
                .object_server()
                .interface::<_, Controller>(OBJECT_PATH)
                .await?;
            if let Err(e) = iface.get().await.startup_chain().await {
                tracing::error!("filter-chain at start: {e}");
            }
            anyhow::Ok(())
        };
        let (a, (b, _)) = futures_lite::future::zip(
            service::pump_status(conn.clone(), status_rx),
            futures_lite::future::zip(service::pump_levels(conn.clone(), levels_rx), startup),
        )
        .await;
        a?;
        b?;
        anyhow::Ok(())
    })?;
    let _ = pw.commands.send(pw::Command::Quit);
    let _ = pw.thread.join();
    Ok(())
}

/// The session bus socket, connected here rather than by zbus: zbus connects in a `blocking`
/// pool task, and that pool's thread then stays for good and wakes every 500 ms (blocking 1.7
/// only retires threads above its limit), an idle daemon's wake-ups without events. `None`
/// for addresses other than a unix socket path or abstract name (zbus handles those).
fn session_socket() -> Option<std::os::unix::net::UnixStream> {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::net::{SocketAddr, UnixStream};
    use zbus::address::transport::{Transport, UnixSocket};
    let addr = zbus::Address::session().ok()?;
    let Transport::Unix(unix) = addr.transport() else {
        return None;
    };
    let sa = match unix.path() {
        UnixSocket::File(p) => SocketAddr::from_pathname(p).ok()?,
        UnixSocket::Abstract(name) => {
            SocketAddr::from_abstract_name(name.as_encoded_bytes()).ok()?
        }
        _ => return None,
    };
    UnixStream::connect_addr(&sa).ok()
}
