//! `mugge filters generate|verify|plot|bench`: matched filter sets from speaker profiles.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use mugge_filter_chain::gates::{GAIN_LIMIT_DB, PROTECTION_MIN_DB};
use mugge_filter_chain::generate::generate;
use mugge_filter_chain::minphase::MinPhase;
use mugge_filter_chain::set::{self, SetError};
use mugge_filter_chain::validate::load_rig;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
pub struct FiltersArgs {
    #[command(subcommand)]
    cmd: FiltersCmd,
}

#[derive(Subcommand)]
enum FiltersCmd {
    /// Design, gate and write a matched set (WAVs, filter-chain configs, manifest) to DIR.
    Generate {
        #[arg(long)]
        profile: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Instance tag in the node names (mugge-filters-in.<tag>).
        #[arg(long, default_value = "main")]
        tag: String,
        #[arg(long)]
        speakers: Option<PathBuf>,
    },
    /// Re-check a set on disk: hashes, formats and every gate.
    Verify { dir: PathBuf },
    /// Plot magnitude, phase and group delay per channel (PNG) with the gate limits.
    Plot {
        dir: PathBuf,
        /// Output file (default: <dir>/filters.png).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Time design + gates for a 4-channel and an 8-channel 16,384-tap set.
    Bench {
        /// Profiles directory (default: conf/profiles).
        #[arg(long, default_value = "conf/profiles")]
        profiles: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

pub fn run(a: FiltersArgs) -> Result<()> {
    match a.cmd {
        FiltersCmd::Generate {
            profile,
            out,
            tag,
            speakers,
        } => generate_cmd(&profile, &out, &tag, speakers.as_deref()),
        FiltersCmd::Verify { dir } => verify_cmd(&dir),
        FiltersCmd::Plot { dir, out } => {
            let out = out.unwrap_or_else(|| dir.join("filters.png"));
            plot(&dir, &out)?;
            outln!("wrote {}", out.display());
            Ok(())
        }
        FiltersCmd::Bench { profiles, runs } => bench(&profiles, runs),
    }
}

fn generate_cmd(profile: &Path, out: &Path, tag: &str, speakers: Option<&Path>) -> Result<()> {
    let rig = match load_rig(profile, speakers) {
        Ok(r) => r,
        Err(p) => {
            eprintln!("{p}");
            std::process::exit(1);
        }
    };
    for w in &rig.warnings {
        eprintln!("{w}");
    }
    let text = std::fs::read_to_string(profile)?;
    let start = Instant::now();
    eprintln!(
        "designing {} channels x {} taps ...",
        rig.profile.speakers.len(),
        rig.profile.taps
    );
    let progress = |line: &str| eprintln!("  {line} ({:.2} s)", start.elapsed().as_secs_f64());
    match set::write_set(&rig, &text, out, tag, None, &progress) {
        Ok(m) => {
            outln!(
                "set {} for \"{}\" written to {} ({} speaker channels, {:.2} s)",
                m.set_id,
                m.profile_name,
                out.display(),
                m.channels.len(),
                start.elapsed().as_secs_f64()
            );
            for c in &m.channels {
                outln!(
                    "  channel {}: peak {:.2} dB, phase error {:.4} rad, {:.1} dB at/below HPF/2",
                    c.channel,
                    c.gates.gain_max_db,
                    c.gates.phase_max_error_rad,
                    c.gates.protection_db
                );
            }
            Ok(())
        }
        Err(e @ SetError::Gates(_)) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
        Err(e) => Err(e.into()),
    }
}

fn verify_cmd(dir: &Path) -> Result<()> {
    match set::verify(dir) {
        Ok((m, reports)) => {
            outln!(
                "set {} (\"{}\", {} files) verified: hashes match, all gates pass",
                m.set_id,
                m.profile_name,
                m.files.len()
            );
            for (ch, r) in reports {
                outln!(
                    "  channel {ch}: peak {:.2} dB at {:.0} Hz, phase error {:.4} rad, {:.1} dB at/below HPF/2",
                    r.gain_max_db, r.gain_worst_hz, r.phase_max_error_rad, r.protection_db
                );
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

fn bench(profiles: &Path, runs: usize) -> Result<()> {
    // Reference from issue 4 (not re-measured here: no numpy/scipy on this machine): the previous
    // numpy/scipy pipeline took 0.26-0.33 s for a 4-channel 16,384-tap 2-way set, without gates.
    const REF_S: (f64, f64) = (0.26, 0.33);
    let cases = [
        ("2way-80hz-sealed-subs.toml", 4usize),
        ("4way-stereo.toml", 8usize),
    ];
    outln!(
        "threads: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    for (file, channels) in cases {
        let rig = load_rig(&profiles.join(file), None).map_err(|e| anyhow::anyhow!("{e}"))?;
        if rig.profile.speakers.len() != channels || rig.profile.taps != 16_384 {
            bail!("{file}: expected {channels} channels x 16384 taps");
        }
        let mut times = Vec::new();
        let cpu0 = cpu_seconds();
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            generate(&rig, None, &|_| {}).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            times.push(t.elapsed().as_secs_f64());
        }
        let cpu = (cpu_seconds() - cpu0) / times.len() as f64;
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        outln!(
            "{channels}-channel 16384-tap set ({file}), {} runs: wall median {med:.3} s, min {:.3} s, \
             max {:.3} s; CPU {cpu:.3} s per set (all threads)",
            times.len(),
            times[0],
            times[times.len() - 1],
        );
        outln!(
            "  vs reference 0.26-0.33 s (4 channels, numpy/scipy, no gates): median {:.1}x-{:.1}x, \
             min {:.1}x-{:.1}x, CPU {:.1}x-{:.1}x faster",
            REF_S.0 / med,
            REF_S.1 / med,
            REF_S.0 / times[0],
            REF_S.1 / times[0],
            REF_S.0 / cpu,
            REF_S.1 / cpu
        );
    }
    Ok(())
}

/// This process's user + system CPU time (Linux /proc, USER_HZ = 100).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut: f64 = f.get(11)?.parse().ok()?;
            let st: f64 = f.get(12)?.parse().ok()?;
            Some((ut + st) / 100.0)
        })
        .unwrap_or(0.0)
}

fn plot(dir: &Path, out: &Path) -> Result<()> {
    use plotters::prelude::*;
    let m = set::read_manifest(dir)?;
    // plotters' ab_glyph backend needs a font registered at run time.
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        .context("reading DejaVuSans.ttf for plot labels")?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("bad font"))?;

    let rate = f64::from(m.sample_rate);
    let n_fft = m.taps * 4;
    let mut fft = MinPhase::with_fft(m.taps, n_fft);
    let df = rate / n_fft as f64;
    let rows = m.channels.len();
    let root = BitMapBackend::new(out, (1500, 330 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((rows, 3));
    let x_range = (10f64..(rate / 2.0)).log_scale();
    for (i, c) in m.channels.iter().enumerate() {
        let (taps, _) = set::read_wav(&dir.join(&c.file))?;
        let h: Vec<f64> = taps.iter().map(|&v| f64::from(v)).collect();
        let spec = fft.spectrum(&h);
        let pts: Vec<(f64, f64, f64, f64)> = spec
            .windows(2)
            .enumerate()
            .skip(1)
            .filter_map(|(k, w)| {
                let f = k as f64 * df;
                if f < 10.0 {
                    return None;
                }
                let mag = 20.0 * w[0].norm().max(1e-12).log10();
                let dphi = (w[1] / w[0]).arg();
                let gd_ms = -dphi / (2.0 * std::f64::consts::PI * df) * 1000.0;
                Some((f, mag, w[0].arg(), gd_ms))
            })
            .collect();
        // Log-spaced points: a log axis shows no more, and dense stopband noise bloats the PNG.
        let mut last_f = 0.0;
        let pts: Vec<_> = pts
            .into_iter()
            .filter(|p| {
                let keep = p.0 >= last_f * 1.004;
                if keep {
                    last_f = p.0;
                }
                keep
            })
            .collect();
        let title = format!("ch{} {} ", c.channel, c.name);
        // magnitude
        let mut ch = ChartBuilder::on(&areas[i * 3])
            .caption(format!("{title}magnitude (dB)"), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(x_range.clone(), -80f64..5f64)?;
        ch.configure_mesh().x_desc("Hz").draw()?;
        ch.draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), &BLUE))?;
        ch.draw_series(LineSeries::new(
            [(10.0, GAIN_LIMIT_DB), (rate / 2.0, GAIN_LIMIT_DB)],
            &RED,
        ))?;
        let hpf2 = c.mandatory_hpf_hz / 2.0;
        if hpf2 > 10.0 {
            let peak = c.gates.gain_max_db;
            ch.draw_series(LineSeries::new(
                [
                    (10.0, peak - PROTECTION_MIN_DB),
                    (hpf2, peak - PROTECTION_MIN_DB),
                    (hpf2, -80.0),
                ],
                &MAGENTA,
            ))?;
        }
        // phase
        let mut ch = ChartBuilder::on(&areas[i * 3 + 1])
            .caption(format!("{title}phase (rad)"), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(x_range.clone(), -3.3f64..3.3f64)?;
        ch.configure_mesh().x_desc("Hz").draw()?;
        // Phase in the stopband (below -60 dB) is numerical noise, not information.
        ch.draw_series(
            pts.iter()
                .filter(|p| p.1 > -60.0)
                .map(|p| Pixel::new((p.0, p.2), GREEN)),
        )?;
        // group delay
        let mut ch = ChartBuilder::on(&areas[i * 3 + 2])
            .caption(format!("{title}group delay (ms)"), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(x_range.clone(), -5f64..40f64)?;
        ch.configure_mesh().x_desc("Hz").draw()?;
        ch.draw_series(LineSeries::new(
            pts.iter()
                .filter(|p| p.1 > -60.0)
                .map(|p| (p.0, p.3.clamp(-5.0, 40.0))),
            &BLACK,
        ))?;
    }
    root.present()?;
    Ok(())
}
