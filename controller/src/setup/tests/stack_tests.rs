//! The fragments `mugge setup` installs, in a real PipeWire + WirePlumber (hardware mocked): the
//! profile loads cleanly, devices get their ports, mugge's virtual devices are the defaults, and
//! WirePlumber links nothing, not even a stream that asks to be autoconnected.

use std::time::{Duration, Instant};

use mugge_testkit::{Stack, HW_IN, HW_OUT, MIC};
use serde_json::Value;

use crate::setup::assets::{PIPEWIRE_FRAGMENTS, WIREPLUMBER_FRAGMENTS};
use crate::setup::gates::{DEFAULT_SINK, VIRTUAL_SINKS};

const T: Duration = Duration::from_secs(15);

fn stack() -> Stack {
    let (name, text) = PIPEWIRE_FRAGMENTS[0];
    let mut b = Stack::builder().pipewire_fragment(name, text);
    // The stack loads the workspace's wireplumber/ already; setup's embedded copies are written
    // over them under the same names, so the test runs exactly what setup installs.
    for (name, text) in WIREPLUMBER_FRAGMENTS {
        b = b.wireplumber_fragment(name, text);
    }
    b.start().expect("stack starts")
}

fn default_name(stack: &Stack, key: &str) -> Option<String> {
    let g = stack.dump().ok()?;
    let v = g.metadata_value("default", key)?;
    // pw-dump shows the JSON value either parsed or as a string.
    let v = match v {
        Value::String(s) => serde_json::from_str::<Value>(&s).ok()?,
        v => v,
    };
    v.get("name").and_then(Value::as_str).map(String::from)
}

fn wait_default(stack: &Stack, key: &str, want: &str) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let got = default_name(stack, key);
        if got.as_deref() == Some(want) {
            return Ok(());
        }
        if start.elapsed() > T {
            return Err(format!("{key} is {got:?}, want {want}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn virtual_devices_exist_with_ports_and_mugge_program_is_the_default() {
    let stack = stack();
    for sink in VIRTUAL_SINKS {
        for port in ["playback_FL", "playback_FR", "monitor_FL", "monitor_FR"] {
            stack.wait_for_port(sink, port, T).unwrap();
        }
        let g = stack.dump().unwrap();
        let n = g.node(sink).unwrap();
        assert_eq!(n.media_class, "Audio/Sink", "{sink}");
        assert_eq!(
            n.props.get("object.linger"),
            Some(&Value::Bool(true)),
            "{sink}"
        );
    }
    // The hardware keeps its ports under the same profile.
    stack.wait_for_port(HW_OUT, "playback_AUX7", T).unwrap();
    stack.wait_for_port(HW_IN, "capture_AUX7", T).unwrap();
    stack.wait_for_port(MIC, "capture_MONO", T).unwrap();

    wait_default(&stack, "default.audio.sink", DEFAULT_SINK).unwrap();
    let source = default_name(&stack, "default.audio.source");
    assert!(
        !matches!(source.as_deref(), Some(HW_IN) | Some(MIC)),
        "the default source is raw hardware: {source:?}"
    );

    let log = stack.log("wireplumber");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("E ") || l.contains("failed to") || l.contains("syntax error"))
        .collect();
    assert!(
        errors.is_empty(),
        "WirePlumber reported errors:\n{}",
        errors.join("\n")
    );
}

#[test]
fn a_user_may_choose_another_mugge_sink_but_never_the_hardware() {
    let stack = stack();
    wait_default(&stack, "default.audio.sink", DEFAULT_SINK).unwrap();
    let id = |name: &str| stack.wait_for_node(name, T).unwrap().id.to_string();
    // Every value WirePlumber writes to the "default" metadata, in order.
    let mut monitor = stack.command("pw-metadata");
    monitor.args(["--monitor", "--name", "default"]);
    let _monitor = stack.spawn("metadata-monitor", &monitor).unwrap();

    // `wpctl set-default` stores default.configured.audio.sink, which adds 30000 to that node's
    // priority: enough for a mugge sink to win...
    stack
        .run("wpctl", &["set-default", &id("mugge-headphones")])
        .unwrap();
    wait_default(&stack, "default.audio.sink", "mugge-headphones").unwrap();
    // ...but not for the hardware (driver priority 300000 + 30000 < 1000000). Asking for it must
    // move the default away from the headphones, back to mugge-program: a visible change, so the
    // test does not depend on how long WirePlumber takes.
    stack.run("wpctl", &["set-default", &id(HW_OUT)]).unwrap();
    let start = Instant::now();
    let now = loop {
        let d = default_name(&stack, "default.audio.sink");
        if d.as_deref() != Some("mugge-headphones") || start.elapsed() > T {
            break d;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(now.as_deref(), Some(DEFAULT_SINK));

    let log = stack.log("metadata-monitor");
    assert!(
        log.contains(
            "key:'default.configured.audio.sink' value:'{ \"name\": \"usbstreamer-out\" }'"
        ),
        "the hardware request never reached the metadata:\n{log}"
    );
    let chosen: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("key:'default.audio.sink'"))
        .collect();
    assert!(
        chosen.iter().all(|l| !l.contains(HW_OUT)),
        "the hardware became the default sink:\n{}",
        chosen.join("\n")
    );
}

/// Plays silence through an autoconnecting stream and returns every link seen while watching
/// for `window` after the stream node appeared.
/// The links that appear around an autoconnecting stream within `window`; stops early once
/// `enough` holds for what was seen.
fn links_made_for_an_autoconnecting_stream(
    stack: &Stack,
    window: Duration,
    enough: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    wait_default(stack, "default.audio.sink", DEFAULT_SINK).unwrap();
    // Thirty seconds of silence, enough to outlive the observation window.
    let raw = stack.root().join("silence.raw");
    std::fs::write(&raw, vec![0u8; 48_000 * 2 * 2 * 30]).unwrap();
    let mut cmd = stack.command("pw-cat");
    cmd.args([
        "--playback",
        "--raw",
        "--format",
        "s16",
        "--rate",
        "48000",
        "--channels",
        "2",
        "--properties",
        "{ node.name = mugge-test-autoconnect }",
    ])
    .arg(&raw);
    let _player = stack.spawn("pw-cat", &cmd).unwrap();
    stack.wait_for_node("mugge-test-autoconnect", T).unwrap();
    let until = Instant::now() + window;
    let mut seen = Vec::new();
    while Instant::now() < until {
        let g = stack.dump().unwrap();
        for l in &g.links {
            let d = format!(
                "{} -> {}",
                g.describe_port(l.output_port),
                g.describe_port(l.input_port)
            );
            if !seen.contains(&d) {
                seen.push(d);
            }
        }
        if enough(&seen) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    seen
}

/// WirePlumber links an autoconnecting stream well inside this window when its linking policy
/// is on (the control test below proves it on this machine; unloaded it takes well under 1 s).
const WINDOW: Duration = Duration::from_secs(3);
/// The control's bound: it stops as soon as the link appears, so only a loaded machine waits.
const CONTROL_BOUND: Duration = Duration::from_secs(20);

#[test]
fn a_stream_asking_for_autoconnect_is_not_linked_by_wireplumber() {
    let stack = stack();
    let links = links_made_for_an_autoconnecting_stream(&stack, WINDOW, |_| false);
    assert!(links.is_empty(), "WirePlumber linked: {links:?}");
}

/// The control for the test above: the same stream under WirePlumber's stock linking policy is
/// linked to the default sink (mugge-program) within the same window, so an empty result above
/// means "policy off", not "too little time".
#[test]
fn control_with_stock_linking_the_same_stream_is_linked_to_mugge_program() {
    let stack = Stack::builder()
        .pipewire_fragment(PIPEWIRE_FRAGMENTS[0].0, PIPEWIRE_FRAGMENTS[0].1)
        .wireplumber_fragment(
            "99-test-linking-on.conf",
            "wireplumber.profiles = { main = { policy.standard = required policy.linking.standard = required policy.linking.role-based = required } }",
        )
        .start()
        .unwrap();
    let linked = |l: &String| l.contains("mugge-test-autoconnect") && l.contains("mugge-program");
    let started = Instant::now();
    let links = links_made_for_an_autoconnecting_stream(&stack, CONTROL_BOUND, |seen| {
        seen.iter().any(linked)
    });
    eprintln!(
        "stock policy linked the stream after {:?}",
        started.elapsed()
    );
    assert!(
        links
            .iter()
            .any(|l| l.contains("mugge-test-autoconnect") && l.contains("mugge-program")),
        "stock policy did not link the stream to mugge-program: {links:?}"
    );
}
