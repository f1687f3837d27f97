//! Cost of the DSP alone per graph cycle (no PipeWire): `cargo run --release -p mugge-dsp --example dsp_cost`.
#![forbid(unsafe_code)]
use mugge_dsp::meter::{Ballistics, PpmType};
use mugge_dsp::siggen::{Generator, Signal};
use mugge_dsp::snapshot::Meter;
use std::time::Instant;

fn main() {
    let q = 1024;
    let mut g = Generator::new(48000);
    g.set_signal(Signal::Pink);
    g.start();
    let mut plane = vec![0f32; q];
    let mut m = Meter::new(24, Ballistics::new(48000, PpmType::TypeII, 0.3), 30.0);
    let cycles: usize = std::env::var("CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let t = Instant::now();
    for _ in 0..cycles {
        g.fill(&mut plane);
    }
    let gen_us = t.elapsed().as_secs_f64() * 1e6 / cycles as f64;
    let t = Instant::now();
    for i in 0..cycles {
        for c in 0..24 {
            m.process_channel(c, &plane);
        }
        std::hint::black_box(m.end_cycle(q as u32, i as u64 * q as u64, 0));
    }
    let by_channel_us = t.elapsed().as_secs_f64() * 1e6 / cycles as f64;
    let planes: Vec<&[f32]> = (0..24).map(|_| plane.as_slice()).collect();
    let t = Instant::now();
    for i in 0..cycles {
        m.process_planes(&planes);
        std::hint::black_box(m.end_cycle(q as u32, i as u64 * q as u64, 0));
    }
    let meter_us = t.elapsed().as_secs_f64() * 1e6 / cycles as f64;
    println!(
        "per cycle at q{q}: siggen (pink) {gen_us:.2} us, meter 24 ch {meter_us:.2} us ({:.2} ns/sample; channel by channel {by_channel_us:.2} us)",
        meter_us * 1000.0 / (24.0 * q as f64)
    );
}
