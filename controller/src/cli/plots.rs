//! PNGs of measured channels: the response, the correction, before/after against the target.
//! Used by `mugge analyse --plots` (offline) and `mugge measure --plots` (the saved run).

use anyhow::{Context, Result};
use mugge_filter_chain::measure::design::RoomDesign;
use mugge_filter_chain::measure::record::ChannelResult;

use super::analysed;
use mugge_filter_chain::measure::response::{smooth, Response};
use std::path::{Path, PathBuf};

/// Plots of a measurement `mugge measure` saved in `dir`: its captures, its design
/// (`design.json`, absent after a dry run) and its verification (`verify/`, absent unless the
/// whole loop ran). Returns the files written.
pub fn saved_measurement(dir: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let results = analysed(dir)?;
    let design_file = dir.join("design.json");
    let design: Option<RoomDesign> = match std::fs::read_to_string(&design_file) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("reading {}", design_file.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", design_file.display())),
    };
    let verify = dir.join("verify");
    // A verification that aborted before its captures were saved has no measurement.json.
    let after = if verify.join("measurement.json").exists() {
        Some(analysed(&verify)?)
    } else {
        None
    };
    plots(out, &results, design.as_ref(), after.as_deref())
}

/// One PNG per channel: the measured response (raw and 1/6 octave), the correction, and before
/// vs after (predicted from the correction, and measured with `--after`) against the target.
/// Returns the files written (`ch<N>.png`).
pub fn plots(
    out: &Path,
    results: &[ChannelResult],
    design: Option<&RoomDesign>,
    after: Option<&[ChannelResult]>,
) -> Result<Vec<PathBuf>> {
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
    let mut written = Vec::new();
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
            written.push(file.clone());
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
        written.push(file.clone());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mugge_filter_chain::measure::analysis::AnalysisOptions;
    use mugge_filter_chain::measure::design::{design, DesignOptions};
    use mugge_filter_chain::measure::record::{Capture, Recording};
    use mugge_filter_chain::measure::sweep::SweepParams;

    /// Channels 1 and 3 (a top and a sub of the default rig), each a plain delay, saved in
    /// `dir`.
    fn save_measurement(dir: &Path) {
        let sweep = SweepParams {
            start_hz: 10.0,
            end_hz: 20_000.0,
            duration_s: 1.0,
            ..SweepParams::default()
        };
        let x = sweep.generate().unwrap();
        let captures = [1, 3]
            .into_iter()
            .map(|ch| {
                let d = 200 + 10 * ch;
                let mut mic = vec![0.0f32; x.len() + 12_000];
                for (i, s) in x.iter().enumerate() {
                    mic[i + d] = 0.3 * *s as f32;
                }
                let mut reference: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                reference.resize(mic.len(), 0.0);
                Capture {
                    channel: ch,
                    position: 1,
                    clock: None,
                    lost_frames: 0,
                    mic,
                    reference,
                }
            })
            .collect();
        Recording {
            sweep,
            options: AnalysisOptions::default(),
            calibration: None,
            captures,
        }
        .save(dir)
        .unwrap();
    }

    fn png_size(path: &Path) -> (u32, u32) {
        let mut reader = png::Decoder::new(std::fs::File::open(path).unwrap())
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut buf).unwrap();
        (frame.width, frame.height)
    }

    #[test]
    fn a_saved_run_is_plotted_with_its_design_and_verification_when_present() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m");
        save_measurement(&dir);

        // A dry run: the responses only.
        let out = tmp.path().join("dry");
        let files = saved_measurement(&dir, &out).unwrap();
        assert_eq!(files, vec![out.join("ch1.png"), out.join("ch3.png")]);
        for f in &files {
            assert_eq!(png_size(f), (1200, 330));
        }

        // The whole loop: design.json as the controller writes it, verify/ with the captures
        // through the correction (here the same ones).
        let rig = mugge_filter_chain::validate::load_rig(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../conf/profiles/2way-80hz-sealed-subs.toml"),
            None,
        )
        .unwrap();
        let d = design(&rig, &analysed(&dir).unwrap(), &DesignOptions::default()).unwrap();
        std::fs::write(
            dir.join("design.json"),
            serde_json::to_string_pretty(&d).unwrap(),
        )
        .unwrap();
        save_measurement(&dir.join("verify"));
        let out = tmp.path().join("full");
        let files = saved_measurement(&dir, &out).unwrap();
        assert_eq!(files.len(), 2);
        for f in &files {
            assert_eq!(png_size(f), (1200, 990));
        }

        // A broken design file is an error, not a plot without the design.
        std::fs::write(dir.join("design.json"), "{").unwrap();
        let e = saved_measurement(&dir, &tmp.path().join("bad")).unwrap_err();
        assert!(format!("{e:#}").contains("design.json"), "{e:#}");
    }
}
