//! With the real mugge plugin (`libspa-mugge.so`, built by `cargo build -p mugge-spa` or given
//! with MUGGE_SPA_PLUGIN): the controller creates the meters, the generator and the mic tap
//! through the adapter factory, resolves their ports from the registry and links them; levels
//! come from the meters' Props; clip reset and taps work. Build the plugin first
//! (`cargo build --workspace`, as scripts/test.sh does).

mod common;
use common::*;
use std::time::{Duration, Instant};

fn need_plugin() {
    assert!(
        mugge_testkit::stack::built_plugin().is_some(),
        "no libspa_mugge.so: build mugge-spa or set MUGGE_SPA_PLUGIN"
    );
}

#[test]
fn plugin_nodes_are_created_linked_and_read() {
    need_plugin();
    let stack = stack();
    let _fc = filter_chain(&stack);
    let _ctl = controller(
        &stack,
        "require_plugins = true\nready_timeout_ms = 5000\n",
        "controller",
    );
    let p = proxy(&stack).unwrap();
    let r = p
        .set_mode("measurement")
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.log("controller")));
    assert!(r.ready, "{:?}", r.missing);
    let g = stack.dump().unwrap();
    // Every plugin node exists once, with the channel count of the topology.
    for (name, ins) in [
        ("mugge-meter-program", 2usize),
        ("mugge-meter-hw-out", 8),
        ("mugge-meter-hw-in", 8),
        ("mugge-tap-umik1-in", 1),
    ] {
        assert_eq!(g.nodes_named(name).len(), 1, "{name}");
        let n = g.node(name).unwrap();
        let inputs: Vec<_> = g
            .ports_of(n.id)
            .into_iter()
            .filter(|p| p.direction == "input")
            .collect();
        assert_eq!(inputs.len(), ins, "{name} inputs");
        // Each input is linked (the table's routes for it all resolved).
        for port in inputs {
            assert!(
                g.links.iter().any(|l| l.input_port == port.id),
                "{name}:{} unlinked",
                port.name
            );
        }
    }
    let gen = g.node("mugge-siggen").expect("generator");
    let out: Vec<_> = g
        .ports_of(gen.id)
        .into_iter()
        .filter(|p| p.direction == "output")
        .collect();
    assert_eq!(out.len(), 1);
    assert_eq!(
        g.links
            .iter()
            .filter(|l| l.output_port == out[0].id)
            .count(),
        3,
        "siggen -> program FL, FR and the measurement's reference tap"
    );
    assert!(g.node("mugge-tap-mugge-siggen").is_some());
    assert!(g.node("mugge-meter-mic").is_some());
    // Levels arrive (graph clock advancing) and the clip reset is accepted.
    let start = Instant::now();
    let first = loop {
        if let Ok(l) = p.get_levels("mugge-meter-hw-in") {
            break l;
        }
        assert!(start.elapsed() < T, "no levels");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(first.peak.len(), 8);
    std::thread::sleep(Duration::from_millis(300));
    let later = p.get_levels("mugge-meter-hw-in").unwrap();
    assert!(
        later.position > first.position,
        "graph clock did not advance"
    );
    p.reset_clip("mugge-meter-hw-out").unwrap();
    // Without a reader the lease runs out: the subscription is dropped and stale snapshots go.
    p.watch_levels(1).unwrap();
    std::thread::sleep(Duration::from_millis(5500));
    let e = p.get_levels("mugge-meter-hw-in").unwrap_err();
    assert!(e.to_string().contains("no snapshot"), "{e}");
    p.watch_levels(5).unwrap();
    // LevelsChanged, rate-limited (default 10 Hz per meter: ~1 s gives <= ~11 per meter).
    let mut sigs = p.receive_levels_signal().unwrap();
    let t0 = Instant::now();
    let mut n_hw_in = 0;
    while t0.elapsed() < Duration::from_secs(1) {
        let s = sigs.next().expect("LevelsChanged");
        let a = s.args().unwrap();
        if a.meter == "mugge-meter-hw-in" {
            assert_eq!(a.levels.peak.len(), 8);
            n_hw_in += 1;
        }
    }
    assert!(
        (3..=12).contains(&n_hw_in),
        "{n_hw_in} LevelsChanged in 1 s for one meter"
    );
    // Leaving measurement removes the generator and the mic tap, keeps the meters.
    assert!(p.set_mode("dj").unwrap().ready);
    let g = stack
        .wait_until("generator and mic tap gone", T, |g| {
            g.node("mugge-siggen").is_none() && g.node("mugge-tap-umik1-in").is_none()
        })
        .unwrap();
    assert!(g.node("mugge-meter-hw-in").is_some());
    // A tap on request.
    let path = p.start_tap("usbstreamer-in", 8).unwrap();
    assert!(std::path::Path::new(&path).exists(), "{path}");
    p.stop_tap("usbstreamer-in").unwrap();
}
