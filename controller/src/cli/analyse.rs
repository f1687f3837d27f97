//! `mugge analyse DIR`: a saved measurement analysed offline: arrival, level and distortion per
//! channel, and with `--profile` the proposed correction (delays, trims, cuts); with `--after`
//! the verification of a second measurement against it; `--plots` writes PNGs.

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use mugge_filter_chain::measure::correction::CorrectionParams;
use mugge_filter_chain::measure::design::{
    design, design_through, verify, write_corrected_set_for, DesignOptions, RoomDesign,
    VerifyReport,
};
use mugge_filter_chain::measure::record::ChannelResult;
use mugge_filter_chain::validate::load_rig;
use serde::Serialize;
use std::path::PathBuf;

use super::analysed;

#[derive(ClapArgs)]
pub struct Args {
    /// A saved measurement (measurement.json + captures).
    dir: PathBuf,
    /// The profile whose own set the measurement played through: proposes delays, trims and
    /// cut-only corrections.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// The set the measurement played through, when it was not the profile's own (an earlier
    /// corrected set): its filters are divided out.
    #[arg(long, requires = "profile")]
    through: Option<PathBuf>,
    /// A verification measurement taken through the corrected set: deviation per 1/3 octave.
    #[arg(long, requires = "profile")]
    after: Option<PathBuf>,
    /// Print JSON instead of the summary.
    #[arg(long)]
    json: bool,
    /// Write one PNG per channel here: response, correction, before/after.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Write the corrected set under this directory (as `<tag>-<millis>`).
    #[arg(long, requires = "profile")]
    write_set: Option<PathBuf>,
    #[arg(long, default_value = "b")]
    tag: String,
    /// ISO 226 equal-loudness compensation at this SPL (phon).
    #[arg(long, default_value_t = 85.0)]
    operating_spl: f64,
    /// Correct up to this frequency (rooms: ~500 Hz; speaker EQ: 20000).
    #[arg(long, default_value_t = 500.0)]
    correct_up_to: f64,
    /// Verification tolerance, dB.
    #[arg(long, default_value_t = 1.5)]
    tolerance: f64,
}

#[derive(Serialize)]
struct HarmonicSummary {
    order: usize,
    /// The largest level over the fundamentals the channel plays (within 20 dB of its loudest),
    /// dB re the fundamental.
    max_db: f64,
    at_hz: f64,
    /// Power average over the same fundamentals, dB re the fundamental.
    mean_db: f64,
}

#[derive(Serialize)]
struct ChannelSummary {
    channel: usize,
    positions: usize,
    arrival_ms: f64,
    /// Power average of the response over its grid, dB re the played reference.
    level_db: f64,
    harmonics: Vec<HarmonicSummary>,
}

#[derive(Serialize)]
struct SetSummary {
    dir: PathBuf,
    set_id: String,
}

#[derive(Serialize)]
struct Report {
    measurement: PathBuf,
    channels: Vec<ChannelSummary>,
    design: Option<RoomDesign>,
    verify: Option<VerifyReport>,
    set: Option<SetSummary>,
}

fn summary(r: &ChannelResult) -> ChannelSummary {
    let level_db = {
        let p: Vec<f64> = r.response.db.iter().map(|d| 10f64.powf(d / 10.0)).collect();
        10.0 * (p.iter().sum::<f64>() / p.len().max(1) as f64).log10()
    };
    // Only fundamentals the channel plays (within 20 dB of its loudest): in a crossover's
    // stopband the fundamental is filtered away and the ratio says nothing about the driver.
    let top = r.response.db.iter().cloned().fold(f64::MIN, f64::max);
    let plays = |f: f64| r.response.at(f) >= top - 20.0;
    let mut harmonics = Vec::new();
    for h in r.positions.first().map(|a| &a.harmonics[..]).unwrap_or(&[]) {
        let points: Vec<(f64, f64)> = h.points.iter().copied().filter(|p| plays(p.0)).collect();
        if points.is_empty() {
            continue;
        }
        let (at_hz, max_db) =
            points
                .iter()
                .copied()
                .fold((0.0, f64::MIN), |m, p| if p.1 > m.1 { p } else { m });
        let mean = points.iter().map(|p| 10f64.powf(p.1 / 10.0)).sum::<f64>() / points.len() as f64;
        harmonics.push(HarmonicSummary {
            order: h.order,
            max_db,
            at_hz,
            mean_db: 10.0 * mean.log10(),
        });
    }
    ChannelSummary {
        channel: r.channel,
        positions: r.positions.len(),
        arrival_ms: r.arrival_s * 1000.0,
        level_db,
        harmonics,
    }
}

pub fn run(a: Args) -> Result<()> {
    let results = analysed(&a.dir)?;
    let mut report = Report {
        measurement: a.dir.clone(),
        channels: results.iter().map(summary).collect(),
        design: None,
        verify: None,
        set: None,
    };
    let mut rig = None;
    if let Some(p) = &a.profile {
        let r = load_rig(p, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        let opts = DesignOptions {
            correction: CorrectionParams {
                hi_hz: a.correct_up_to,
                ..CorrectionParams::default()
            },
            operating_spl_db: a.operating_spl,
            tolerance_db: a.tolerance,
            align: true,
        };
        let d = match &a.through {
            Some(set) => design_through(&r, set, &results, &opts),
            None => design(&r, &results, &opts),
        }
        .context("designing the correction")?;
        report.design = Some(d);
        rig = Some(r);
    }
    let after = match &a.after {
        Some(dir) => Some(analysed(dir)?),
        None => None,
    };
    if let (Some(d), Some(after)) = (&report.design, &after) {
        report.verify = Some(verify(d, after));
    }
    if let (Some(d), Some(sets), Some(r)) = (&report.design, &a.write_set, &rig) {
        let (dir, m) = write_corrected_set_for(r, d, sets, &a.tag)
            .context("writing the corrected set (nothing was written)")?;
        report.set = Some(SetSummary {
            dir,
            set_id: m.set_id,
        });
    }
    if let Some(out) = &a.plots {
        super::plots::plots(out, &results, report.design.as_ref(), after.as_deref())?;
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report, rig.as_ref());
    }
    if report.verify.as_ref().is_some_and(|v| !v.pass) {
        bail!(
            "verification failed: deviation past {} dB or a boost",
            a.tolerance
        );
    }
    Ok(())
}

fn print_summary(r: &Report, rig: Option<&mugge_filter_chain::validate::Rig>) {
    outln!("measurement {}", r.measurement.display());
    for c in &r.channels {
        let thd: Vec<String> = c
            .harmonics
            .iter()
            .map(|h| {
                format!(
                    "H{} max {:.1} dB at {:.0} Hz (mean {:.1})",
                    h.order, h.max_db, h.at_hz, h.mean_db
                )
            })
            .collect();
        outln!(
            "channel {}: arrival {:.3} ms, level {:.1} dB, {} position(s){}{}",
            c.channel,
            c.arrival_ms,
            c.level_db,
            c.positions,
            if thd.is_empty() { "" } else { ", " },
            thd.join(", ")
        );
        let Some(d) = &r.design else { continue };
        let (Some(cd), Some(t)) = (
            d.channels.iter().find(|x| x.channel as usize == c.channel),
            d.targets.iter().find(|x| x.channel as usize == c.channel),
        ) else {
            continue;
        };
        let sp = rig.and_then(|g| g.profile.speakers.iter().find(|s| s.channel == cd.channel));
        let (worst_hz, _) = cd
            .correction
            .points
            .iter()
            .copied()
            .fold((0.0, 1.0), |m, p| if p.1 < m.1 { p } else { m });
        outln!(
            "  proposed: delay {:.3} ms (profile {:.3}), trim {:.2} dB (profile {:.2}), max cut {:.1} dB{}; level vs target {:.1} dB",
            cd.delay_ms,
            sp.map(|s| s.delay_ms).unwrap_or(0.0),
            cd.trim_db,
            sp.map(|s| s.trim_db).unwrap_or(0.0),
            cd.max_cut_db(),
            if cd.max_cut_db() < 0.0 {
                format!(" at {worst_hz:.0} Hz")
            } else {
                String::new()
            },
            t.level_db
        );
    }
    if let Some(v) = &r.verify {
        for c in &v.channels {
            outln!(
                "verify channel {}: max deviation {:.2} dB over {} reachable bands{} -> {}",
                c.channel,
                c.max_abs_db,
                c.bands.iter().filter(|b| b.reachable).count(),
                if c.boosted { ", BOOSTED" } else { "" },
                if c.pass { "pass" } else { "FAIL" }
            );
        }
        outln!(
            "verification: {} (tolerance {} dB)",
            if v.pass { "pass" } else { "FAIL" },
            v.tolerance_db
        );
    }
    if let Some(s) = &r.set {
        outln!("corrected set {} written to {}", s.set_id, s.dir.display());
    }
}
