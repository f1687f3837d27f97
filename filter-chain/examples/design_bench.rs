//! Benchmark: one channel from a 10 s sweep at 48 kHz to a gated 16,384-tap corrected filter
//! (analysis, design, filter design + gates + set written), and the same for the 4 channels of
//! the default 2-way rig, offline. Prints the median of several runs and the ratio to one
//! forward + inverse real FFT of the deconvolution's size, measured in the same run.
//!
//!     cargo run --release -p mugge-filter-chain --example design_bench

use mugge_filter_chain::generate::generate;
use mugge_filter_chain::measure::analysis::{analyse_channel, AnalysisOptions};
use mugge_filter_chain::measure::design::{design, write_corrected_set_for, DesignOptions};
use mugge_filter_chain::measure::record::ChannelResult;
use mugge_filter_chain::measure::sweep::SweepParams;
use mugge_filter_chain::response::Correction;
use mugge_filter_chain::validate::{load_rig, Rig};
use mugge_testkit::room::RoomSpec;
use realfft::RealFftPlanner;
use std::path::Path;
use std::time::{Duration, Instant};

const RUNS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

use mugge_filter_chain::measure::spectrum::convolve;

/// Captures of `channels` of the rig's own set played through the example room.
fn captures(rig: &Rig, x: &[f64], channels: &[u32]) -> Vec<(u32, Vec<f64>)> {
    let filters = generate(rig, None, &|_| {}).expect("the shipped profile passes its gates");
    let irs = RoomSpec::example(4)
        .impulse_responses()
        .expect("example room");
    channels
        .iter()
        .map(|&ch| {
            let f = filters.iter().find(|f| f.channel == ch).expect("channel");
            let taps: Vec<f64> = f.taps.iter().map(|&t| f64::from(t)).collect();
            let room: Vec<f64> = irs[ch as usize - 1].iter().map(|&v| f64::from(v)).collect();
            let mut y = convolve(x, &convolve(&taps, &room));
            // The capture runs a second past the sweep.
            y.resize(x.len() + 48_000, 0.0);
            (ch, y)
        })
        .collect()
}

fn analyse(x: &[f64], sweep: &SweepParams, caps: &[(u32, Vec<f64>)]) -> Vec<ChannelResult> {
    let mut reference = x.to_vec();
    reference.resize(caps[0].1.len(), 0.0);
    caps.iter()
        .map(|(ch, y)| {
            let a = analyse_channel(y, &reference, sweep, &AnalysisOptions::default())
                .expect("analysis");
            ChannelResult {
                channel: *ch as usize,
                response: a.response.clone(),
                arrival_s: a.arrival.seconds,
                positions: vec![a],
            }
        })
        .collect()
}

fn main() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let rig = load_rig(&conf.join("profiles/2way-80hz-sealed-subs.toml"), None).expect("rig");
    let sweep = SweepParams::default(); // 10 Hz .. 22 kHz, 10 s, 48 kHz
    let x = sweep.generate().expect("default sweep");
    let all = captures(&rig, &x, &[1, 2, 3, 4]);
    let n = (all[0].1.len() * 2).next_power_of_two();
    println!(
        "rig \"{}\": {} taps; {} s sweep at {} Hz, captures of {} samples, deconvolution FFT {n} points",
        rig.profile.name,
        rig.profile.taps,
        sweep.duration_s,
        sweep.rate,
        all[0].1.len()
    );
    // The rig reduced to the sub on channel 3, for designing its filter alone.
    let mut one = rig.clone();
    one.profile.speakers.retain(|s| s.channel == 3);
    let tmp = tempfile::tempdir().expect("temp dir");

    let mut planner = RealFftPlanner::<f64>::new();
    let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let mut t_ref = Vec::new();
    let names = [
        "1 ch: analysis",
        "1 ch: design",
        "1 ch: gated filter",
        "1 ch: total",
        "4 ch: analysis",
        "4 ch: design",
        "4 ch: gated filters + set",
        "4 ch: total",
    ];
    let mut steps: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    for run in 0..RUNS {
        let mut a = vec![0.0; n];
        a[..all[0].1.len()].copy_from_slice(&all[0].1);
        let t = Instant::now();
        let mut spec = fwd.make_output_vec();
        fwd.process(&mut a, &mut spec).expect("sized by plan");
        let mut back = inv.make_output_vec();
        inv.process(&mut spec, &mut back).expect("sized by plan");
        t_ref.push(t.elapsed());

        // One channel: the sub on channel 3, its corrected filter designed and gated in memory.
        let t0 = Instant::now();
        let results = analyse(&x, &sweep, &all[2..3]);
        let t1 = Instant::now();
        let d = design(&rig, &results, &DesignOptions::default()).expect("design");
        let t2 = Instant::now();
        let curve = &d.channels[0].correction;
        let gain = |hz: f64| curve.gain_at(hz);
        let lookup = |ch: u32| (ch == 3).then_some(&gain as Correction<'_>);
        let filters = generate(&one, Some(&lookup), &|_| {}).expect("gated");
        let t3 = Instant::now();
        assert_eq!(filters.len(), 1);
        assert_eq!(filters[0].taps.len(), 16_384);
        for (i, dt) in [t1 - t0, t2 - t1, t3 - t2, t3 - t0].into_iter().enumerate() {
            steps[i].push(dt);
        }
        // The rig: 4 channels analysed, designed, written as a gated set.
        let t0 = Instant::now();
        let results = analyse(&x, &sweep, &all);
        let t1 = Instant::now();
        let d = design(&rig, &results, &DesignOptions::default()).expect("design");
        let t2 = Instant::now();
        let (_, m) = write_corrected_set_for(&rig, &d, &tmp.path().join(run.to_string()), "b")
            .expect("corrected set");
        let t3 = Instant::now();
        assert_eq!(m.channels.len(), 4);
        assert!(d.channels.iter().all(|c| c.correction.max_gain() <= 1.0));
        for (i, dt) in [t1 - t0, t2 - t1, t3 - t2, t3 - t0].into_iter().enumerate() {
            steps[4 + i].push(dt);
        }
    }
    let r = median(t_ref);
    println!(
        "reference: one {n}-point real FFT forward + inverse: {:.1} ms",
        ms(r)
    );
    for (name, v) in names.iter().zip(steps) {
        let m = median(v);
        println!(
            "{name:>26}: {:8.1} ms  ({:6.1} x reference)",
            ms(m),
            m.as_secs_f64() / r.as_secs_f64()
        );
    }
    println!(
        "(median of {RUNS} runs on {} cores; design includes generating the played and the corrected filters for the alignment)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
}
