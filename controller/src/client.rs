//! A D-Bus client for the controller, used by the CLI and the tests.

use std::collections::HashMap;

use crate::daemon::levels::Levels;
use crate::daemon::service::Readiness;

#[zbus::proxy(
    interface = "org.mugge.Controller1",
    default_service = "org.mugge.Controller",
    default_path = "/org/mugge/Controller"
)]
pub trait Controller {
    fn set_mode(&self, mode: &str) -> zbus::Result<Readiness>;
    fn reload_filters(&self, set: &str) -> zbus::Result<Vec<(String, u64)>>;
    fn get_status(&self) -> zbus::Result<String>;
    fn start_tap(&self, source: &str, channels: u32) -> zbus::Result<String>;
    fn stop_tap(&self, source: &str) -> zbus::Result<()>;
    fn activate_profile(&self, name: &str, force: bool) -> zbus::Result<Vec<(String, u64)>>;
    fn abort_activation(&self) -> zbus::Result<String>;
    fn unmute(&self) -> zbus::Result<()>;
    #[zbus(signal, name = "ActivationProgress")]
    fn activation_progress(&self, phase: &str, percent: u32) -> zbus::Result<()>;
    fn start_measurement(&self, channels: &[u32], options: &str) -> zbus::Result<String>;
    fn abort_measurement(&self) -> zbus::Result<String>;
    fn continue_measurement(&self) -> zbus::Result<()>;
    fn recall_preset(&self, name: &str, options: &str) -> zbus::Result<String>;
    fn store_preset(&self, name: &str, measurement: &str) -> zbus::Result<String>;
    fn presets(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn measurement_result(&self) -> zbus::Result<String>;
    #[zbus(signal, name = "MeasurementProgress")]
    fn measurement_progress(
        &self,
        phase: &str,
        channel: u32,
        percent: f64,
        level_db: f64,
    ) -> zbus::Result<()>;
    #[zbus(signal, name = "MeasurementFinished")]
    fn measurement_finished(&self, dir: &str, ok: bool, message: &str) -> zbus::Result<()>;
    fn get_levels(&self, meter: &str) -> zbus::Result<Levels>;
    fn reset_clip(&self, meter: &str) -> zbus::Result<()>;
    fn watch_levels(&self, seconds: u32) -> zbus::Result<()>;
    #[zbus(property)]
    fn mode(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn quantum(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn profile(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn health(&self) -> zbus::Result<HashMap<String, String>>;
    #[zbus(property)]
    fn links(&self) -> zbus::Result<Vec<(String, String, bool, bool)>>;
    #[zbus(property)]
    fn ready(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn missing(&self) -> zbus::Result<Vec<String>>;
    #[zbus(signal, name = "ModeChanged")]
    fn mode_signal(&self, mode: &str) -> zbus::Result<()>;
    #[zbus(signal, name = "LevelsChanged")]
    fn levels_signal(&self, meter: &str, levels: Levels) -> zbus::Result<()>;
    #[zbus(signal, name = "HealthChanged")]
    fn health_signal(&self, health: HashMap<String, String>) -> zbus::Result<()>;
}

/// A blocking proxy on the session bus.
pub fn connect() -> anyhow::Result<ControllerProxyBlocking<'static>> {
    let conn = zbus::blocking::Connection::session()
        .map_err(|e| anyhow::anyhow!("cannot reach the session bus: {e}"))?;
    Ok(ControllerProxyBlocking::new(&conn)?)
}

/// A blocking proxy that reads every property from the daemon (no cache that a signal has
/// yet to update).
pub fn connect_uncached() -> anyhow::Result<ControllerProxyBlocking<'static>> {
    let conn = zbus::blocking::Connection::session()
        .map_err(|e| anyhow::anyhow!("cannot reach the session bus: {e}"))?;
    Ok(ControllerProxyBlocking::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()?)
}

/// Turns a D-Bus error into the message people should read.
pub fn explain(e: zbus::Error) -> anyhow::Error {
    match e {
        zbus::Error::MethodError(name, Some(msg), _) => {
            let short = name.as_str().rsplit('.').next().unwrap_or("").to_string();
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown" {
                anyhow::anyhow!(
                    "the mugge controller is not running (start it with `mugge daemon`)"
                )
            } else {
                anyhow::anyhow!("{short}: {msg}")
            }
        }
        e => anyhow::anyhow!("{e}"),
    }
}
