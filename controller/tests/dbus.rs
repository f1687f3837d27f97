//! Every D-Bus method and property of org.mugge.Controller1, with good and bad arguments, on
//! the real session bus of the test stack; signals; serialised concurrent SetMode; the CLI.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn set_mode_good_and_bad_arguments() {
    let stack = stack();
    let _fc = filter_chain(&stack);
    let _ctl = controller(&stack, BASE_CONFIG, "controller");
    let p = proxy(&stack).unwrap();
    let r = p.set_mode("DJ").unwrap();
    assert!(r.ready && r.mode == "dj" && r.missing.is_empty());
    let g0 = wait_links(&stack, &program_links(), &[]).unwrap();
    for bad in ["", "party", "dj ", "standby;rm", "measurement2"] {
        let e = p.set_mode(bad).unwrap_err();
        assert_eq!(
            error_name(&e),
            "org.mugge.Controller1.Error.InvalidArgs",
            "{bad:?}: {e}"
        );
        assert!(
            e.to_string()
                .contains("expected one of standby, dj, live, measurement"),
            "{e}"
        );
        // Nothing changed.
        assert_eq!(p.mode().unwrap(), "dj");
    }
    let g1 = stack.dump().unwrap();
    // Links of plugin nodes (present when the plugin is built) are made as the meters come up.
    let ids = |g: &mugge_testkit::Graph| {
        let plugin = |id: u32| g.node_by_id(id).is_some_and(|n| is_plugin(&n.name));
        let mut v: Vec<u32> = g
            .links
            .iter()
            .filter(|l| !plugin(l.output_node) && !plugin(l.input_node))
            .map(|l| l.id)
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&g0), ids(&g1), "a bad SetMode touched the graph");
}

#[test]
fn set_mode_reports_what_is_missing_when_the_graph_cannot_match() {
    let stack = stack();
    // No filter-chain: DJ cannot be ready; the error names the missing node.
    let cfg = "require_plugins = false\nready_timeout_ms = 300\n";
    let _ctl = controller(&stack, cfg, "controller");
    let p = proxy(&stack).unwrap();
    let e = p.set_mode("dj").unwrap_err();
    assert_eq!(
        error_name(&e),
        "org.mugge.Controller1.Error.NotReady",
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains("mode dj not ready after 300 ms"), "{msg}");
    assert!(
        msg.contains("node mugge-filters-out.main is absent"),
        "{msg}"
    );
    assert!(
        msg.contains("node mugge-filters-in.main is absent"),
        "{msg}"
    );
    // The mode is set and the controller keeps converging: the filter-chain arrives, DJ is ready.
    assert_eq!(p.mode().unwrap(), "dj");
    assert!(!p.ready().unwrap());
    assert!(p
        .missing()
        .unwrap()
        .iter()
        .any(|m| m.contains("mugge-filters-out.main")));
    let _fc = filter_chain(&stack);
    wait_links(&stack, &program_links(), &[]).unwrap();
    let start = std::time::Instant::now();
    while !p.ready().unwrap() {
        assert!(start.elapsed() < T);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(p.missing().unwrap().is_empty());
}

#[test]
fn properties_status_and_signals() {
    let stack = stack();
    let _fc = filter_chain(&stack);
    let _ctl = controller(&stack, BASE_CONFIG, "controller");
    let p = proxy(&stack).unwrap();
    let mut mode_signals = p.receive_mode_signal().unwrap();
    let mut health_signals = p.receive_health_signal().unwrap();
    p.set_mode("live").unwrap();
    let sig = mode_signals.next().expect("ModeChanged");
    assert_eq!(sig.args().unwrap().mode, "live");
    assert_eq!(p.mode().unwrap(), "live");
    assert_eq!(p.quantum().unwrap(), 1024);
    // The filter-chain node carries mugge.profile.
    // (It may follow the node's later info event: wait, bounded.)
    let start = std::time::Instant::now();
    while p.profile().unwrap() != "test-copy" {
        if start.elapsed() > T {
            let g = stack.dump().unwrap();
            panic!(
                "profile {}; filters-out props {:?}; status {}",
                p.profile().unwrap(),
                g.node("mugge-filters-out.main").map(|n| n.props.clone()),
                p.get_status().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let h = p.health().unwrap();
    for c in [
        "usbstreamer-out",
        "usbstreamer-in",
        "umik1-in",
        "mugge-program",
        "mugge-filters-out.main",
        "pipewire",
    ] {
        assert_eq!(
            h.get(c).map(String::as_str),
            Some("Connected"),
            "{c}: {h:?}"
        );
    }
    assert_eq!(h.get("REAPER").map(String::as_str), Some("Disconnected"));
    // Links: desired vs actual, one-based channels.
    let links = p.links().unwrap();
    assert!(links.contains(&(
        "mugge-inears:monitor:1".into(),
        "usbstreamer-out:7".into(),
        false,
        true
    )));
    assert!(links.contains(&("REAPER:5".into(), "mugge-inears:1".into(), true, false)));
    // HealthChanged when a component comes and goes.
    let reaper = stack.play("REAPER", 6, vec![0.0; 96]).unwrap();
    let sig = health_signals.next().expect("HealthChanged");
    let _ = sig.args().unwrap();
    let start = std::time::Instant::now();
    while p.health().unwrap().get("REAPER").map(String::as_str) != Some("Connected") {
        assert!(start.elapsed() < T);
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(reaper);
    let start = std::time::Instant::now();
    while p.health().unwrap().get("REAPER").map(String::as_str) != Some("Disconnected") {
        assert!(start.elapsed() < T);
        std::thread::sleep(Duration::from_millis(20));
    }
    // GetStatus: one JSON document (the graph settles after REAPER's links went).
    let start = std::time::Instant::now();
    while !p.ready().unwrap() {
        assert!(start.elapsed() < T, "not ready: {:?}", p.missing().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    let st: serde_json::Value = serde_json::from_str(&p.get_status().unwrap()).unwrap();
    assert_eq!(st["mode"], "live");
    assert_eq!(st["status"]["ready"], true);
    assert_eq!(st["status"]["quantum"], 1024);
    // Introspectable with busctl.
    let out = stack
        .run(
            "busctl",
            &[
                "--user",
                "introspect",
                "org.mugge.Controller",
                "/org/mugge/Controller",
                "org.mugge.Controller1",
            ],
        )
        .unwrap();
    for member in [
        ".SetMode",
        ".GetStatus",
        ".StartTap",
        ".StopTap",
        ".Mode",
        ".Quantum",
        ".Profile",
        ".Health",
        ".Links",
        ".ModeChanged",
        ".HealthChanged",
    ] {
        assert!(
            out.contains(member),
            "{member} missing from introspection:\n{out}"
        );
    }
}

#[test]
fn taps_good_and_bad_arguments() {
    let stack = stack();
    let _fc = filter_chain(&stack);
    let _ctl = controller(
        &stack,
        "require_plugins = false\nready_timeout_ms = 1500\n",
        "controller",
    );
    let p = proxy(&stack).unwrap();
    p.set_mode("dj").unwrap();
    let invalid = "org.mugge.Controller1.Error.InvalidArgs";
    for (src, ch) in [
        ("", 2),
        ("no-such-node", 2),
        ("usbstreamer-in", 0),
        ("usbstreamer-in", 33),
        ("a b", 1),
        ("mugge-meter-hw-in", 2),
    ] {
        let e = p.start_tap(src, ch).unwrap_err();
        assert_eq!(error_name(&e), invalid, "{src:?} {ch}: {e}");
    }
    let e = p.stop_tap("usbstreamer-in").unwrap_err();
    assert_eq!(error_name(&e), invalid, "{e}");
    // A good request: with the plugin on the stack's plugin path it returns the socket; without,
    // it says why and leaves no tap behind.
    match p.start_tap("usbstreamer-in", 8) {
        Ok(path) => {
            assert!(path.ends_with(".sock"), "{path}");
            let g = stack.wait_for_node("mugge-tap-usbstreamer-in", T).unwrap();
            assert_eq!(g.name, "mugge-tap-usbstreamer-in");
            let e = p.start_tap("usbstreamer-in", 8).unwrap_err();
            assert_eq!(error_name(&e), "org.mugge.Controller1.Error.Refused");
            p.stop_tap("usbstreamer-in").unwrap();
            stack
                .wait_until("tap node removed", T, |g| {
                    g.node("mugge-tap-usbstreamer-in").is_none()
                })
                .unwrap();
        }
        Err(e) => {
            assert_eq!(
                error_name(&e),
                "org.mugge.Controller1.Error.NotReady",
                "{e}"
            );
            assert!(e.to_string().contains("mugge-tap-usbstreamer-in"), "{e}");
            let st: serde_json::Value = serde_json::from_str(&p.get_status().unwrap()).unwrap();
            assert_eq!(st["taps"], serde_json::json!([]));
            // And stopping it now is a bad argument again.
            assert_eq!(
                error_name(&p.stop_tap("usbstreamer-in").unwrap_err()),
                invalid
            );
        }
    }
    // The graph is still exactly DJ.
    wait_links(&stack, &program_links(), &[]).unwrap();
}

#[test]
fn concurrent_set_mode_calls_are_serialised() {
    let stack = stack();
    let _fc = filter_chain(&stack);
    let _ctl = controller(&stack, BASE_CONFIG, "controller");
    let modes = [
        "dj",
        "standby",
        "live",
        "measurement",
        "dj",
        "standby",
        "live",
        "dj",
    ];
    let addr = stack.bus_address().to_string();
    let handles: Vec<_> = modes
        .iter()
        .map(|m| {
            let addr = addr.clone();
            let m = m.to_string();
            std::thread::spawn(move || {
                let conn = zbus::blocking::connection::Builder::address(addr.as_str())
                    .unwrap()
                    .build()
                    .unwrap();
                let p = mugge_controller::client::ControllerProxyBlocking::new(&conn).unwrap();
                p.set_mode(&m).map(|r| (r.mode, r.ready))
            })
        })
        .collect();
    for h in handles {
        let (mode, ready) = h.join().unwrap().expect("every call answers");
        assert!(ready, "{mode}");
    }
    // Whatever won last, the graph is exactly that mode's table.
    let p = proxy(&stack).unwrap();
    let last = p.mode().unwrap();
    let r = p.set_mode(&last).unwrap();
    assert!(r.ready);
    let mut want = speakers();
    if last != "standby" {
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
                "usbstreamer-out:playback_AUX4",
            ),
            (
                "mugge-headphones:monitor_FR",
                "usbstreamer-out:playback_AUX5",
            ),
        ]));
    }
    if last == "live" {
        want.extend(pairs(&[
            ("mugge-inears:monitor_FL", "usbstreamer-out:playback_AUX6"),
            ("mugge-inears:monitor_FR", "usbstreamer-out:playback_AUX7"),
        ]));
    }
    wait_links(&stack, &want, &[]).unwrap();
}

#[test]
fn cli_status_mode_links_human_and_json() {
    let stack = stack();
    let _fc = filter_chain(&stack);
    let _ctl = controller(&stack, BASE_CONFIG, "controller");
    let mugge = env!("CARGO_BIN_EXE_mugge");
    let out = stack.command(mugge).args(["mode", "dj"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("mode dj: ready in"), "{text}");
    let out = stack
        .command(mugge)
        .args(["mode", "party"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mode 'party'"));
    let out = stack
        .command(mugge)
        .args(["mode", "standby", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "standby");
    assert_eq!(v["ready"], true);
    let out = stack.command(mugge).args(["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mode:    standby") && text.contains("ready:   yes"),
        "{text}"
    );
    assert!(
        text.contains("usbstreamer-out") && text.contains("Connected"),
        "{text}"
    );
    let out = stack
        .command(mugge)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "standby");
    let out = stack
        .command(mugge)
        .args(["links", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert!(arr.iter().any(|l| l["from"] == "mugge-filters-out.main:1"
        && l["to"] == "usbstreamer-out:1"
        && l["present"] == true));
    let out = stack.command(mugge).args(["links"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("mugge-filters-out.main:4"));
    // A reader that goes away (`mugge status | head -1`): no panic, a quiet end.
    for args in [
        &["status"][..],
        &["links"],
        &["status", "--json"],
        &["links", "--json"],
    ] {
        let mut child = stack
            .command(mugge)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "mugge {args:?} into a closed pipe: {err}"
        );
        assert!(!err.contains("panicked"), "mugge {args:?}: {err}");
    }
    // Without a controller on the bus: a clear message, non-zero exit.
    drop(_ctl);
    let out = stack.command(mugge).args(["status"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn levels_and_clip_reset_good_and_bad_arguments() {
    let stack = stack();
    let _fc = filter_chain(&stack);
    let _ctl = controller(&stack, BASE_CONFIG, "controller");
    let p = proxy(&stack).unwrap();
    p.set_mode("dj").unwrap();
    let invalid = "org.mugge.Controller1.Error.InvalidArgs";
    for bad in [
        "",
        "mugge-meter",
        "usbstreamer-out",
        "mugge-meter-hw-out ",
        "mugge-tap-umik1-in",
    ] {
        assert_eq!(
            error_name(&p.get_levels(bad).unwrap_err()),
            invalid,
            "{bad:?}"
        );
        assert_eq!(
            error_name(&p.reset_clip(bad).unwrap_err()),
            invalid,
            "{bad:?}"
        );
    }
    for bad in [0u32, 61, u32::MAX] {
        assert_eq!(
            error_name(&p.watch_levels(bad).unwrap_err()),
            invalid,
            "{bad}"
        );
    }
    p.watch_levels(1).unwrap();
    // Good names: with the plugin on the stack the meters run and report; without it the
    // answer says the meter is not running, and nothing changes.
    let plugin = stack.dump().unwrap().node("mugge-meter-hw-in").is_some();
    for m in [
        "mugge-meter-program",
        "mugge-meter-hw-out",
        "mugge-meter-hw-in",
    ] {
        match (plugin, p.get_levels(m), p.reset_clip(m)) {
            (true, _, r) => r.unwrap(),
            (false, Err(e1), Err(e2)) => {
                assert_eq!(
                    error_name(&e1),
                    "org.mugge.Controller1.Error.NotReady",
                    "{e1}"
                );
                assert!(e1.to_string().contains("no snapshot"), "{e1}");
                assert_eq!(
                    error_name(&e2),
                    "org.mugge.Controller1.Error.NotReady",
                    "{e2}"
                );
                assert!(e2.to_string().contains("not running"), "{e2}");
            }
            (false, a, b) => panic!("{m} without a plugin: {a:?} {b:?}"),
        }
    }
    wait_links(&stack, &program_links(), &[]).unwrap();
}

#[test]
fn the_modes_application_is_started_once_and_an_absent_binary_is_reported() {
    let stack = stack();
    let _fc = filter_chain(&stack);
    // The "application" is a JACK-style client named like the configured node; Live's binary
    // does not exist.
    let cfg = format!(
        "{BASE_CONFIG}[apps.dj]\ncommand = [\"pw-record\", \"--raw\", \"-P\", \"{{ node.name=Mixxx node.autoconnect=false }}\", \"/dev/null\"]\nnode = \"Mixxx\"\nprogram = [1, 2]\n\
         [apps.live]\ncommand = [\"/nonexistent/reaper\"]\nnode = \"REAPER\"\nprogram = [1, 2]\n"
    );
    let _ctl = controller(&stack, &cfg, "controller");
    let p = proxy(&stack).unwrap();
    let r = p.set_mode("dj").unwrap();
    assert!(
        r.notes.iter().any(|n| n.starts_with("started pw-record")),
        "{:?}",
        r.notes
    );
    stack.wait_for_node("Mixxx", T).unwrap();
    let start = std::time::Instant::now();
    while p.health().unwrap().get("Mixxx").map(String::as_str) != Some("Connected") {
        assert!(start.elapsed() < T);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Running already: not started again.
    let r = p.set_mode("dj").unwrap();
    assert!(
        !r.notes.iter().any(|n| n.starts_with("started")),
        "{:?}",
        r.notes
    );
    assert_eq!(stack.dump().unwrap().nodes_named("Mixxx").len(), 1);
    // An absent binary is a note, not a failure.
    let r = p.set_mode("live").unwrap();
    assert!(r.ready);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("application /nonexistent/reaper not started")),
        "{:?}",
        r.notes
    );
    // Never killed: leaving DJ leaves the application running.
    assert_eq!(stack.dump().unwrap().nodes_named("Mixxx").len(), 1);
}
