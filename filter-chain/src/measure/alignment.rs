//! Per-channel delays and level trims that make every speaker arrive at the listening position
//! at the same time and level. Both only ever add delay and cut level: the latest arrival gets
//! no delay, the quietest channel no trim.

use super::{MeasureError, Result};
use serde::{Deserialize, Serialize};

/// What the analysis found for one speaker channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChannelMeasurement {
    /// One-based speaker channel.
    pub channel: usize,
    /// Arrival at the mic, seconds after the reference (sub-sample).
    pub arrival_s: f64,
    /// Level over the alignment band, dB (any common reference).
    pub level_db: f64,
}

/// What the filter-chain applies for one channel (`ch<N>_delay:Delay (s)`, `ch<N>_gain:Mult`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChannelAlignment {
    pub channel: usize,
    pub delay_s: f64,
    /// <= 0 dB.
    pub trim_db: f64,
}

pub fn align(channels: &[ChannelMeasurement]) -> Result<Vec<ChannelAlignment>> {
    if channels.is_empty() {
        return Err(MeasureError::Invalid("no channels to align".into()));
    }
    if let Some(c) = channels
        .iter()
        .find(|c| c.channel == 0 || !c.arrival_s.is_finite() || !c.level_db.is_finite())
    {
        return Err(MeasureError::Invalid(format!(
            "channel {} (channels are one-based; arrival and level must be finite)",
            c.channel
        )));
    }
    let latest = channels
        .iter()
        .map(|c| c.arrival_s)
        .fold(f64::MIN, f64::max);
    let quietest = channels.iter().map(|c| c.level_db).fold(f64::MAX, f64::min);
    Ok(channels
        .iter()
        .map(|c| ChannelAlignment {
            channel: c.channel,
            delay_s: latest - c.arrival_s,
            trim_db: quietest - c.level_db,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_and_quietest_channel_set_the_reference() {
        let m = [
            ChannelMeasurement {
                channel: 1,
                arrival_s: 0.010,
                level_db: -20.0,
            },
            ChannelMeasurement {
                channel: 2,
                arrival_s: 0.0125,
                level_db: -23.5,
            },
            ChannelMeasurement {
                channel: 3,
                arrival_s: 0.004,
                level_db: -21.0,
            },
        ];
        let a = align(&m).unwrap();
        for (x, (d, t)) in a.iter().zip([(0.0025, -3.5), (0.0, 0.0), (0.0085, -2.5)]) {
            assert!(
                (x.delay_s - d).abs() < 1e-12 && (x.trim_db - t).abs() < 1e-12,
                "{x:?}"
            );
        }
        // Aligned arrivals coincide.
        for (x, c) in a.iter().zip(&m) {
            assert!((c.arrival_s + x.delay_s - 0.0125).abs() < 1e-12);
        }
        assert!(align(&[]).is_err());
        let mut zero = m;
        zero[0].channel = 0;
        assert!(align(&zero).is_err());
    }
}
