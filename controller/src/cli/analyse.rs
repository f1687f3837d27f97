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
use mugge_filter_chain::measure::record::{ChannelResult, Recording};
use mugge_filter_chain::measure::response::{smooth, Response};
use mugge_filter_chain::validate::load_rig;
use serde::Serialize;
use std::path::{Path, PathBuf};

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

fn load(dir: &Path) -> Result<Vec<ChannelResult>> {
    let rec = Recording::load(dir).with_context(|| format!("loading {}", dir.display()))?;
    rec.analyse()
        .with_context(|| format!("analysing {}", dir.display()))
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
    let results = load(&a.dir)?;
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
        Some(dir) => Some(load(dir)?),
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
        plots(out, &results, report.design.as_ref(), after.as_deref())?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
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
    println!("measurement {}", r.measurement.display());
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
        println!(
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
        println!(
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
            println!(
                "verify channel {}: max deviation {:.2} dB over {} reachable bands{} -> {}",
                c.channel,
                c.max_abs_db,
                c.bands.iter().filter(|b| b.reachable).count(),
                if c.boosted { ", BOOSTED" } else { "" },
                if c.pass { "pass" } else { "FAIL" }
            );
        }
        println!(
            "verification: {} (tolerance {} dB)",
            if v.pass { "pass" } else { "FAIL" },
            v.tolerance_db
        );
    }
    if let Some(s) = &r.set {
        println!("corrected set {} written to {}", s.set_id, s.dir.display());
    }
}

/// One PNG per channel: the measured response (raw and 1/6 octave), the correction, and before
/// vs after (predicted from the correction, and measured with `--after`) against the target.
fn plots(
    out: &Path,
    results: &[ChannelResult],
    design: Option<&RoomDesign>,
    after: Option<&[ChannelResult]>,
) -> Result<()> {
    use plotters::prelude::*;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // plotters' ab_glyph backend needs a font registered at run time.
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        .context("reading DejaVuSans.ttf for plot labels")?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("bad font"))?;
    let x_range = (20f64..20_000f64).log_scale();
    let line = |r: &Response| -> Vec<(f64, f64)> {
        r.freqs
            .iter()
            .zip(&r.db)
            .filter(|(f, _)| (20.0..=20_000.0).contains(*f))
            .map(|(f, d)| (*f, *d))
            .collect()
    };
    for r in results {
        let file = out.join(format!("ch{}.png", r.channel));
        let target = design.and_then(|d| {
            d.channels
                .iter()
                .zip(&d.targets)
                .find(|(c, _)| c.channel as usize == r.channel)
        });
        let panels = if target.is_some() { 3 } else { 1 };
        let root = BitMapBackend::new(&file, (1200, 330 * panels)).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((panels as usize, 1));
        let smoothed = smooth(&r.response, 6.0)?;
        let top = smoothed.db.iter().cloned().fold(f64::MIN, f64::max);
        let y = (top - 50.0)..(top + 6.0);
        let mut ch = ChartBuilder::on(&areas[0])
            .caption(
                format!("channel {}: measured response (dB re reference)", r.channel),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(x_range.clone(), y.clone())?;
        ch.configure_mesh().x_desc("Hz").draw()?;
        ch.draw_series(LineSeries::new(line(&r.response), &RGBColor(170, 170, 220)))?
            .label("raw")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RGBColor(170, 170, 220)));
        ch.draw_series(LineSeries::new(line(&smoothed), &BLUE))?
            .label("1/6 octave")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
        ch.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        let Some((c, t)) = target else {
            root.present()?;
            continue;
        };
        let corr: Vec<(f64, f64)> = t
            .expected
            .freqs
            .iter()
            .filter(|f| (20.0..=20_000.0).contains(*f))
            .map(|&f| (f, 20.0 * c.correction.gain_at(f).log10()))
            .collect();
        let lo = corr.iter().map(|p| p.1).fold(0.0, f64::min);
        let mut ch = ChartBuilder::on(&areas[1])
            .caption(
                format!(
                    "correction (dB, cut only): max cut {:.1} dB, delay {:.3} ms, trim {:.2} dB",
                    c.max_cut_db(),
                    c.delay_ms,
                    c.trim_db
                ),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(x_range.clone(), (lo - 2.0)..2.0)?;
        ch.configure_mesh().x_desc("Hz").draw()?;
        ch.draw_series(LineSeries::new(corr, &RED))?;

        // Before / after on the post-trim level, where verification compares.
        let predicted: Vec<(f64, f64)> = t
            .before
            .freqs
            .iter()
            .zip(&t.before.db)
            .map(|(&f, &d)| (f, d + 20.0 * c.correction.gain_at(f).log10()))
            .filter(|(f, _)| (20.0..=20_000.0).contains(f))
            .collect();
        let top = t.before.db.iter().cloned().fold(f64::MIN, f64::max);
        let mut ch = ChartBuilder::on(&areas[2])
            .caption(
                "before / after vs target (1/6 octave, dB; target dotted where reachable by cutting)",
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(x_range.clone(), (top - 50.0)..(top + 6.0))?;
        ch.configure_mesh().x_desc("Hz").draw()?;
        ch.draw_series(
            t.expected
                .freqs
                .iter()
                .zip(&t.expected.db)
                .zip(&t.reachable)
                .filter(|((f, _), r)| **r && (20.0..=20_000.0).contains(*f))
                .map(|((f, d), _)| Circle::new((*f, *d), 2, RGBColor(140, 220, 140).filled())),
        )?;
        ch.draw_series(LineSeries::new(line(&t.expected), &GREEN))?
            .label("target")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], GREEN));
        ch.draw_series(LineSeries::new(line(&t.before), &BLUE))?
            .label("before")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
        ch.draw_series(LineSeries::new(predicted, &RED))?
            .label("after (predicted)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
        if let Some(m) = after.and_then(|a| a.iter().find(|x| x.channel == r.channel)) {
            let s = smooth(&m.response, 6.0)?;
            ch.draw_series(LineSeries::new(line(&s), &BLACK))?
                .label("after (measured)")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
        }
        ch.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        root.present()?;
    }
    Ok(())
}
