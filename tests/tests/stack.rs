//! Proves the test stack itself: the mock hardware has the interface's shape, nothing is linked
//! by WirePlumber, a stock node links and runs, the quantum really applies, and a killed test
//! leaves no daemon behind.

use mugge_testkit::{Stack, HW_IN, HW_OUT, MIC};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

#[test]
fn mock_hardware_has_the_interface_shape() {
    let stack = Stack::start().unwrap();
    let g = stack.dump().unwrap();
    let names = |node: &str, dir: &str| -> Vec<String> {
        let n = g.node(node).unwrap_or_else(|| panic!("{node} missing"));
        g.ports_of(n.id)
            .iter()
            .filter(|p| p.direction == dir)
            .map(|p| p.name.clone())
            .collect()
    };
    let aux = |prefix: &str| {
        (0..8)
            .map(|i| format!("{prefix}_AUX{i}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(HW_OUT, "input"), aux("playback"));
    assert_eq!(names(HW_IN, "output"), aux("capture"));
    assert_eq!(names(MIC, "output"), vec!["capture_MONO".to_string()]);
    assert_eq!(g.node(HW_OUT).unwrap().media_class, "Audio/Sink");
    // The production policy: WirePlumber links nothing.
    assert!(g.links.is_empty(), "unexpected links: {:?}", g.links);
}

#[test]
fn audiotestsrc_links_to_the_mock_sink_and_runs() {
    let stack = Stack::start().unwrap();
    stack
        .pw_cli(&[
            "create-node",
            "adapter",
            "{ factory.name=audiotestsrc node.name=stack-test-tone object.linger=true }",
        ])
        .unwrap();
    stack
        .wait_for_port("stack-test-tone", "capture_FL", T)
        .unwrap();
    // WirePlumber must not have linked the new source anywhere.
    let g = stack.dump().unwrap();
    let tone = g.node("stack-test-tone").unwrap();
    assert!(
        g.links_of(tone.id).is_empty(),
        "WirePlumber linked the tone: {:?}",
        g.links_of(tone.id)
    );

    stack
        .link(
            "stack-test-tone:capture_FL",
            "usbstreamer-out:playback_AUX0",
        )
        .unwrap();
    stack
        .link(
            "stack-test-tone:capture_FR",
            "usbstreamer-out:playback_AUX1",
        )
        .unwrap();
    let g = stack
        .wait_until("the sink running with two active links", T, |g| {
            let sink_running = g.node(HW_OUT).is_some_and(|n| n.state == "running");
            let active = ["playback_AUX0", "playback_AUX1"]
                .iter()
                .zip(["capture_FL", "capture_FR"])
                .all(|(i, o)| {
                    g.link(&format!("stack-test-tone:{o}"), &format!("{HW_OUT}:{i}"))
                        .is_some_and(|l| l.state == "active")
                });
            sink_running && active
        })
        .unwrap();
    assert_eq!(g.node("stack-test-tone").unwrap().state, "running");
    // Both nodes really ran in the profiled cycles.
    let p = stack.profile(32).unwrap();
    assert!(
        p.node("stack-test-tone").is_some_and(|c| c.cycles > 0),
        "tone not scheduled: {p:?}"
    );
    assert!(p.node(HW_OUT).is_some_and(|c| c.cycles > 0));
}

#[test]
fn forced_quantum_really_applies() {
    let stack = Stack::builder().quantum(128).start().unwrap();
    assert_eq!(stack.profile(16).unwrap().quantum, 128);
    for q in [256, 1024, 128] {
        stack.set_quantum(q).unwrap();
        let p = stack.profile(16).unwrap();
        assert_eq!(p.quantum, q, "asked for {q}");
    }
}

#[test]
fn plugin_path_keeps_system_plugins() {
    let stack = Stack::start().unwrap();
    let spa = stack
        .env()
        .into_iter()
        .find(|(k, _)| k == "SPA_PLUGIN_DIR")
        .unwrap()
        .1;
    let spa = spa.to_string_lossy().into_owned();
    // audiotestsrc loads from the system directory even with the plugin dir in front.
    assert!(
        spa.split(':')
            .any(|d| std::path::Path::new(d).join("audiotestsrc").is_dir()),
        "{spa}"
    );
    if let Some(p) = mugge_testkit::stack::built_plugin() {
        let first = spa.split(':').next().unwrap();
        let link = std::path::Path::new(first).join("mugge/libspa-mugge.so");
        assert_eq!(
            std::fs::canonicalize(link).unwrap(),
            std::fs::canonicalize(p).unwrap()
        );
    }
}

/// Run only as the child of `a_killed_test_leaves_no_daemon_behind`.
#[test]
#[ignore = "helper: run by a_killed_test_leaves_no_daemon_behind"]
fn helper_start_stack_and_hang() {
    if std::env::var_os("MUGGE_TESTKIT_CHILD").is_none() {
        return;
    }
    let stack = Stack::start().unwrap();
    let pids = pids_of_stack(&stack);
    println!(
        "PIDS {}",
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    std::thread::sleep(Duration::from_secs(120));
    drop(stack);
}

fn pids_of_stack(stack: &Stack) -> Vec<u32> {
    // Every process whose environment names this stack's runtime dir.
    let needle = format!("XDG_RUNTIME_DIR={}", stack.runtime_dir().display());
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
            if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
                pids.push(pid);
            }
        }
    }
    pids
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie has finished; only its parent's reaping is left.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn a_killed_test_leaves_no_daemon_behind() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_start_stack_and_hang",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MUGGE_TESTKIT_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pids = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest prints "test <name> ... " on the same line first.
        if let Some((_, rest)) = line.split_once("PIDS ") {
            pids = rest
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
            break;
        }
    }
    // dbus-daemon, pipewire, wireplumber (each behind setpriv, which execs in place).
    assert!(
        pids.len() >= 3,
        "expected the three daemons, found {pids:?}"
    );
    assert!(pids.iter().all(|p| alive(*p)));
    child.kill().unwrap(); // SIGKILL: no destructor runs in the test process.
    child.wait().unwrap();
    let start = Instant::now();
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still alive after the test died: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_played_signal_arrives_bit_exact_at_a_recorder_through_the_mock_hardware() {
    let stack = Stack::start().unwrap();
    // A known signal, routed the way hardware would carry it: player -> usbstreamer-out ch 3 ->
    // its monitor port -> recorder.
    let signal: Vec<f32> = (0..24_000)
        .map(|i| ((i * 7919) % 2000) as f32 / 2000.0 - 0.5)
        .collect();
    let rec = stack.record("stack-rec", 1).unwrap();
    stack
        .link(&format!("{HW_OUT}:monitor_AUX2"), &rec.port(1))
        .unwrap();
    let player = stack.play("stack-play", 1, signal.clone()).unwrap();
    stack
        .link(&player.port(1), &format!("{HW_OUT}:playback_AUX2"))
        .unwrap();
    rec.wait_frames(48_000, Duration::from_secs(10)).unwrap();
    let got = rec.stop().remove(0);
    let start = got
        .iter()
        .position(|s| *s != 0.0)
        .expect("the signal never arrived");
    let window = &got[start..start + 1000];
    // The first non-zero sample is the signal's first non-zero sample (index 0 is -0.5).
    assert_eq!(window, &signal[..1000], "samples changed on the way");
}
