//! Rig -> one gated filter per speaker channel, in memory. Channels are designed in parallel (one
//! FFT plan per worker); nothing is returned unless every channel passed every gate.

use crate::gates::{Analyzer, ChannelReport, Failure};
use crate::minphase::MinPhase;
use crate::profile::Polarity;
use crate::response::{channel_design, target_on_bins, Correction, TargetCurve};
use crate::validate::Rig;
use std::sync::Mutex;

/// One speaker channel's final filter.
#[derive(Debug, Clone)]
pub struct ChannelFilter {
    /// One-based output channel.
    pub channel: u32,
    /// Index into the profile's speakers.
    pub speaker: usize,
    /// As stored (float32), polarity applied.
    pub taps: Vec<f32>,
    pub report: ChannelReport,
}

/// Per-channel room correction, looked up by one-based channel (None = placeholder set).
pub type CorrectionFor<'a> = &'a (dyn Fn(u32) -> Option<Correction<'a>> + Sync);

/// Designs and gates every speaker channel. `progress` gets one line per finished channel.
pub fn generate(
    rig: &Rig,
    correction: Option<CorrectionFor<'_>>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Vec<ChannelFilter>, Vec<Failure>> {
    let p = &rig.profile;
    let rate = f64::from(p.sample_rate);
    let n_fft = MinPhase::new_fft_len(p.taps);
    let target = target_on_bins(&TargetCurve::new(&p.target, rate), rate, n_fft);
    let next = Mutex::new(0usize);
    let results = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(p.speakers.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut design = MinPhase::new(p.taps);
                let mut gates = Analyzer::new(p.taps);
                loop {
                    let i = {
                        let mut n = next.lock().expect("no panics while held");
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(sp) = p.speakers.get(i) else { break };
                    let corr = correction.and_then(|c| c(sp.channel));
                    let d = channel_design(rig, sp, &target, corr, n_fft);
                    let h = design.design_combined(&d.exact, &d.rest, d.low_floor_db);
                    let sign = match sp.polarity {
                        Polarity::Normal => 1.0,
                        Polarity::Inverted => -1.0,
                    };
                    let taps: Vec<f32> = h.iter().map(|&v| (sign * v) as f32).collect();
                    let hpf = rig.identity_of(sp).mandatory_hpf_hz;
                    let r = gates.check(sp.channel, &taps, rate, hpf);
                    progress(&format!(
                        "channel {} ({}): {} taps designed, gates {}",
                        sp.channel,
                        sp.name,
                        p.taps,
                        if r.is_ok() { "passed" } else { "FAILED" }
                    ));
                    results
                        .lock()
                        .expect("no panics while held")
                        .push((i, taps, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("workers done");
    results.sort_by_key(|r| r.0);
    let mut out = Vec::new();
    let mut fails = Vec::new();
    for (i, taps, r) in results {
        match r {
            Ok(report) => out.push(ChannelFilter {
                channel: p.speakers[i].channel,
                speaker: i,
                taps,
                report,
            }),
            Err(f) => fails.extend(f),
        }
    }
    if fails.is_empty() {
        out.sort_by_key(|c| c.channel);
        Ok(out)
    } else {
        Err(fails)
    }
}
