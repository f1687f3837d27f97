//! Each mode converges to exactly its routing table on the real stack (only hardware mocked),
//! SetMode answers ready, the quantum applies, and ports resolve on every node kind: mock
//! hardware, virtual sinks, the filter-chain and JACK-style clients (numbered ports, no
//! channel names that a pattern could guess).

mod common;
use common::*;

fn dj_links() -> Vec<(String, String)> {
    with_mixxx(program_links())
}

fn live_links() -> Vec<(String, String)> {
    let mut v = program_links();
    v.extend(pairs(&[
        ("mugge-inears:monitor_FL", "usbstreamer-out:playback_AUX6"),
        ("mugge-inears:monitor_FR", "usbstreamer-out:playback_AUX7"),
        ("REAPER:output_AUX0", "mugge-program:playback_FL"),
        ("REAPER:output_AUX1", "mugge-program:playback_FR"),
        ("REAPER:output_AUX2", "mugge-headphones:playback_FL"),
        ("REAPER:output_AUX3", "mugge-headphones:playback_FR"),
        ("REAPER:output_AUX4", "mugge-inears:playback_FL"),
        ("REAPER:output_AUX5", "mugge-inears:playback_FR"),
    ]));
    v
}

#[test]
fn each_mode_converges_to_exactly_its_table_and_returns_ready() {
    let stack = stack();
    let _fc = filter_chain(&stack);
    let _mixxx = stack.play("Mixxx", 4, vec![0.0; 4 * 48]).unwrap();
    let _reaper = stack.play("REAPER", 6, vec![0.0; 6 * 48]).unwrap();
    let _ctl = controller(&stack, &format!("{BASE_CONFIG}{APPS}"), "controller");
    let p = proxy(&stack).unwrap();
    let apps = ["Mixxx", "REAPER"];
    // Every transition, including back to the same mode.
    for (mode, want) in [
        ("dj", dj_links()),
        ("standby", speakers()),
        ("live", live_links()),
        ("measurement", program_links()),
        ("dj", dj_links()),
        ("dj", dj_links()),
        ("live", live_links()),
        ("standby", speakers()),
    ] {
        let r = p
            .set_mode(mode)
            .unwrap_or_else(|e| panic!("SetMode({mode}): {e}"));
        assert!(r.ready, "{mode}: {:?}", r.missing);
        assert_eq!(r.mode, mode);
        assert!(r.missing.is_empty());
        assert_eq!(r.quantum, 1024);
        let g = wait_links(&stack, &want, &apps).unwrap_or_else(|e| panic!("{mode}: {e}"));
        // No duplicates: one link per port pair.
        let mut seen = std::collections::HashSet::new();
        for l in &g.links {
            assert!(
                seen.insert((l.output_port, l.input_port)),
                "{mode}: duplicate link {l:?}"
            );
        }
        // Every link the controller made lingers (survives the controller).
        for l in &g.links {
            let linger = l.props.get("object.linger").map(|v| v.to_string());
            assert!(
                matches!(
                    linger.as_deref(),
                    Some("true") | Some("\"true\"") | Some("1") | Some("\"1\"")
                ),
                "{mode}: link {} -> {} without object.linger: {:?}",
                g.describe_port(l.output_port),
                g.describe_port(l.input_port),
                l.props
            );
        }
        assert_eq!(p.mode().unwrap(), mode);
        assert!(p.ready().unwrap());
    }
}

#[test]
fn quantum_follows_the_design_table_when_switched_on() {
    let stack = stack();
    let _fc = filter_chain(&stack);
    let _ctl = controller(
        &stack,
        &format!("{BASE_CONFIG}quantum_table = \"design\"\n"),
        "controller",
    );
    let p = proxy(&stack).unwrap();
    for (mode, q) in [
        ("live", 256u32),
        ("dj", 1024),
        ("measurement", 256),
        ("standby", 256),
        ("dj", 1024),
    ] {
        let r = p.set_mode(mode).unwrap();
        assert_eq!(r.quantum, q, "{mode}");
        assert_eq!(p.quantum().unwrap(), q);
        let g = stack.dump().unwrap();
        let v = g
            .metadata_value("settings", "clock.force-quantum")
            .expect("force-quantum set");
        assert_eq!(v.to_string().trim_matches('"'), q.to_string(), "{mode}");
        // The driver really runs at it (profiler clock).
        let prof = stack.profile(16).unwrap();
        assert_eq!(prof.quantum, q, "{mode}: driver quantum");
    }
}

#[test]
fn a_six_speaker_topology_routes_and_protects_channels_five_and_six() {
    let stack = stack();
    // A 6-output filter-chain: the copy fixture rewritten for 6 outputs.
    let conf = std::fs::read_to_string(fixture("filter-chain-copy.conf")).unwrap();
    let six = conf
        .replace(
            "outputs = [ \"ch1_gain:Out\" \"ch2_gain:Out\" \"ch3_gain:Out\" \"ch4_gain:Out\" ]",
            "outputs = [ \"ch1_gain:Out\" \"ch2_gain:Out\" \"ch3_gain:Out\" \"ch4_gain:Out\" \"ch5_gain:Out\" \"ch6_gain:Out\" ]",
        )
        .replace(
            "{ type = builtin name = split_l label = copy }",
            "{ type = builtin name = split_l label = copy }\n { type = builtin name = ch5_gain label = linear control = { \"Mult\" = 1.0 } }\n { type = builtin name = ch6_gain label = linear control = { \"Mult\" = 1.0 } }",
        )
        .replace(
            "{ output = \"split_r:Out\" input = \"ch4_gain:In\" }",
            "{ output = \"split_r:Out\" input = \"ch4_gain:In\" }\n { output = \"split_l:Out\" input = \"ch5_gain:In\" }\n { output = \"split_r:Out\" input = \"ch6_gain:In\" }",
        )
        .replace("audio.channels = 4", "audio.channels = 6")
        .replace("[ AUX0 AUX1 AUX2 AUX3 ]", "[ AUX0 AUX1 AUX2 AUX3 AUX4 AUX5 ]");
    let path = stack.root().join("fc6.conf");
    std::fs::write(&path, six).unwrap();
    let mut cmd = stack.command("pipewire");
    cmd.arg("-c").arg(&path);
    let _fc = stack.spawn("filter-chain-6", &cmd).unwrap();
    stack
        .wait_for_port("mugge-filters-out.main", "output_AUX5", T)
        .unwrap();
    stack
        .wait_for_port("mugge-filters-in.main", "playback_FR", T)
        .unwrap();
    let cfg = format!(
        "{BASE_CONFIG}[topology]\nprofile = \"3way\"\nspeakers = [1, 2, 3, 4, 5, 6]\nheadphones = [7, 8]\ninears = []\n"
    );
    let _ctl = controller(&stack, &cfg, "controller");
    let p = proxy(&stack).unwrap();
    // Live needs in-ears: refused, and nothing changes.
    let before = p.mode().unwrap();
    let e = p.set_mode("live").unwrap_err();
    assert_eq!(error_name(&e), "org.mugge.Controller1.Error.Refused", "{e}");
    assert!(e.to_string().contains("in-ear"), "{e}");
    assert_eq!(p.mode().unwrap(), before);

    assert!(p.set_mode("dj").unwrap().ready);
    let mut want: Vec<(String, String)> = (0..6)
        .map(|i| {
            (
                format!("mugge-filters-out.main:output_AUX{i}"),
                format!("usbstreamer-out:playback_AUX{i}"),
            )
        })
        .collect();
    want.extend(pairs(&[
        (
            "mugge-program:monitor_FL",
            "mugge-filters-in.main:playback_FL",
        ),
        (
            "mugge-program:monitor_FR",
            "mugge-filters-in.main:playback_FR",
        ),
        (
            "mugge-headphones:monitor_FL",
            "usbstreamer-out:playback_AUX6",
        ),
        (
            "mugge-headphones:monitor_FR",
            "usbstreamer-out:playback_AUX7",
        ),
    ]));
    wait_links(&stack, &want, &[]).unwrap();
    // A bypass onto speaker channels 5 and 6 (the ones a fixed count of 4 left open) goes.
    rogue_link(
        &stack,
        "mugge-program:monitor_FL",
        "usbstreamer-out:playback_AUX4",
    );
    rogue_link(
        &stack,
        "mugge-program:monitor_FR",
        "usbstreamer-out:playback_AUX5",
    );
    wait_links(&stack, &want, &[]).unwrap();
}
