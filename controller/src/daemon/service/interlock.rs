//! The measurement mic interlock of a ramp up (safety flow step 5): while a measurement mic is
//! linked to its meter, a rising ramp stops and mutes when the mic's peak exceeds the
//! configured SPL limit or its signal vanishes (mic node gone, meter silent or no longer
//! reporting).

use std::time::{Duration, Instant};

use super::super::routing::{End, PluginNode, Route, Table, METER_MIC, MIC};
use super::Controller;

/// How long to wait for the mic meter's first snapshot before a ramp (it is subscribed only
/// while someone reads levels).
const FIRST_SNAPSHOT: Duration = Duration::from_millis(1500);
/// A snapshot older than this means the meter stopped reporting (it sends ~30 per second).
const STALE: Duration = Duration::from_millis(500);

/// An armed interlock: the mic was linked when the ramp started.
pub(super) struct MicGuard {
    limit_spl: f64,
    dbfs_at_94: f64,
    silence_dbfs: f64,
}

/// The verdict on one mic snapshot (peak dBFS per channel): `Err` says why the ramp must stop.
pub(super) fn judge(peaks: &[f64], g: &MicGuard) -> Result<f64, String> {
    let peak = peaks.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // `f64::max` skips NaN: an all-NaN snapshot stays at -inf, a vanished signal.
    if peak <= g.silence_dbfs {
        return Err(format!(
            "the measurement mic's signal vanished (peak {peak:.1} dBFS, digital silence)"
        ));
    }
    let spl = peak - g.dbfs_at_94 + 94.0;
    if spl > g.limit_spl {
        return Err(format!(
            "the measurement mic hears {spl:.1} dB SPL (peak), above the limit of {:.1} dB SPL",
            g.limit_spl
        ));
    }
    Ok(spl)
}

impl Controller {
    /// With the interlock configured: a meter on the mic's channel 1 (optional: the mic may be
    /// absent).
    pub(super) fn with_mic_meter(&self, mut t: Table) -> Table {
        // Measurement mode has the mic meter already (its own safety layer).
        if self.config.activation.mic_spl_limit_db.is_none()
            || t.plugins.iter().any(|p| p.name == METER_MIC)
        {
            return t;
        }
        t.plugins.push(PluginNode {
            name: METER_MIC.into(),
            factory: "mugge.meter".into(),
            channels: 1,
        });
        t.routes.push(Route {
            from: End::new(MIC, 1),
            to: End::new(METER_MIC, 1),
            optional: true,
        });
        t
    }

    /// Arms the interlock for a ramp up of `total` if the mic is linked to its meter; waits
    /// (bounded) for a fresh snapshot. `Ok(None)`: no interlock (not configured, no mic).
    pub(super) async fn mic_guard(&self, total: Duration) -> Result<Option<MicGuard>, String> {
        let cfg = &self.config.activation;
        let Some(limit_spl) = cfg.mic_spl_limit_db else {
            return Ok(None);
        };
        let linked = {
            let sh = self.shared.lock().unwrap();
            let to = format!("{METER_MIC}:1");
            sh.status
                .links
                .iter()
                .any(|l| l.to == to && l.from == format!("{MIC}:1") && l.present)
        };
        if !linked {
            tracing::info!("mic interlock: {MIC} is not linked to {METER_MIC}; ramp unguarded");
            return Ok(None);
        }
        let guard = MicGuard {
            limit_spl,
            dbfs_at_94: cfg.mic_dbfs_at_94_db_spl,
            silence_dbfs: cfg.mic_silence_dbfs,
        };
        let armed = Instant::now();
        self.watch_levels_for(total + FIRST_SNAPSHOT + Duration::from_secs(2));
        while self.mic_snapshot_since(armed).is_none() {
            if armed.elapsed() > FIRST_SNAPSHOT {
                return Err(format!(
                    "the measurement mic's meter {METER_MIC} sends no levels"
                ));
            }
            async_io::Timer::after(Duration::from_millis(20)).await;
        }
        self.mic_check(&guard)?;
        Ok(Some(guard))
    }

    fn mic_snapshot_since(&self, t: Instant) -> Option<Vec<f64>> {
        let sh = self.shared.lock().unwrap();
        let at = *sh.levels_at.get(METER_MIC)?;
        (at >= t).then(|| sh.levels.get(METER_MIC).map(|l| l.peak.clone()))?
    }

    /// The latest mic snapshot against the limit; `Err` says why the ramp must stop.
    pub(super) fn mic_check(&self, g: &MicGuard) -> Result<(), String> {
        let (present, snap) = {
            let sh = self.shared.lock().unwrap();
            let present = sh.status.health.get(MIC) == Some(&true);
            let snap = match (sh.levels.get(METER_MIC), sh.levels_at.get(METER_MIC)) {
                (Some(l), Some(at)) => Some((l.peak.clone(), at.elapsed())),
                _ => None,
            };
            (present, snap)
        };
        if !present {
            return Err(format!(
                "the measurement mic's signal vanished ({MIC} is gone)"
            ));
        }
        match snap {
            Some((peaks, age)) if age <= STALE => judge(&peaks, g).map(|spl| {
                tracing::debug!("mic interlock: {spl:.1} dB SPL");
            }),
            Some((_, age)) => Err(format!(
                "the measurement mic's signal vanished (no level from {METER_MIC} for {} ms)",
                age.as_millis()
            )),
            None => Err(format!(
                "the measurement mic's signal vanished (no level from {METER_MIC})"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mic_verdict_converts_dbfs_to_spl_and_catches_silence() {
        let g = MicGuard {
            limit_spl: 100.0,
            dbfs_at_94: -18.0,
            silence_dbfs: -100.0,
        };
        // -30 dBFS with -18 dBFS at 94 dB SPL: 82 dB SPL.
        assert!((judge(&[-30.0], &g).unwrap() - 82.0).abs() < 1e-9);
        assert!((judge(&[-12.0, -40.0], &g).unwrap() - 100.0).abs() < 1e-9);
        assert!(judge(&[-40.0, -11.9], &g)
            .unwrap_err()
            .contains("above the limit"));
        assert!(judge(&[-120.0], &g).unwrap_err().contains("vanished"));
        assert!(judge(&[f64::NEG_INFINITY], &g)
            .unwrap_err()
            .contains("vanished"));
        assert!(judge(&[], &g).unwrap_err().contains("vanished"));
        assert!(judge(&[f64::NAN], &g).unwrap_err().contains("vanished"));
    }
}
