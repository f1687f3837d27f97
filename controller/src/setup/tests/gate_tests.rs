//! Gate logic against command output recorded in the shape real tools print it.

use super::fake::Recorded;
use super::fixture::{fresh_image, legacy_box};
use crate::setup::detect::detect;
use crate::setup::gates::{self, check_limits, GateInput};
use crate::setup::root::Root;
use crate::setup::runner::CmdOutput;

/// `/proc/self/limits` of a user service with limits.d applied.
const LIMITS_OK: &str = "\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max locked memory         unlimited            unlimited            bytes     
Max nice priority         39                   39                   
Max realtime priority     95                   95                   
Max realtime timeout      unlimited            unlimited            us        
";

/// The same without limits.d (Debian's defaults).
const LIMITS_DEFAULT: &str = "\
Limit                     Soft Limit           Hard Limit           Units     
Max locked memory         8388608              8388608              bytes     
Max nice priority         0                    0                    
Max realtime priority     0                    0                    
";

fn rec(line: &str, out: CmdOutput) -> (String, CmdOutput) {
    (line.to_string(), out)
}

const IN_SESSION: &str = "systemd-run --user -M pi@ --wait --pipe --quiet --collect --";

#[test]
fn limits_are_read_from_the_soft_column() {
    assert_eq!(check_limits(LIMITS_OK), Vec::<String>::new());
    let f = check_limits(LIMITS_DEFAULT);
    assert_eq!(f.len(), 3, "{f:?}");
    assert!(f[0].contains("realtime priority limit Some(0)"));
    assert!(f[2].contains("Some(\"8388608\")"));
    assert_eq!(
        check_limits("").len(),
        3,
        "missing rows fail, they do not pass"
    );
}

fn pi_box() -> super::fixture::TempRoot {
    let r = fresh_image("gates");
    r.write(
        "/etc/group",
        "audio:x:29:pi\nvideo:x:44:pi\nrender:x:105:pi\ninput:x:101:pi\npi:x:1000:\n",
    );
    r.mkdir("/run/user/1000");
    r
}

fn gate_ids(
    root: &super::fixture::TempRoot,
    recorded: Vec<(String, CmdOutput)>,
) -> Vec<gates::Gate> {
    let root = Root::new(&root.0);
    let state = detect(&root, "pi");
    gates::all(&GateInput {
        root: &root,
        state: &state,
        user: "pi",
        runner: &Recorded(recorded),
    })
}

fn healthy_box() -> Vec<(String, CmdOutput)> {
    vec![
        rec("id -nG pi", CmdOutput::ok("pi audio video render input\n")),
        rec(
            &format!("{IN_SESSION} cat /proc/self/limits"),
            CmdOutput::ok(LIMITS_OK),
        ),
        rec(
            "loginctl show-user pi --property=Linger --value",
            CmdOutput::ok("yes\n"),
        ),
        rec("systemctl is-active user@1000.service", CmdOutput::ok("active\n")),
        rec(
            "systemctl --user -M pi@ is-active default.target",
            CmdOutput::ok("active\n"),
        ),
        rec(
            "systemctl --user -M pi@ show-environment",
            CmdOutput::ok("HOME=/home/pi\nXDG_RUNTIME_DIR=/run/user/1000\nDBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus\n"),
        ),
        rec(
            &format!("{IN_SESSION} wpctl status"),
            CmdOutput::ok("PipeWire 'pipewire-0' [1.4.2, pi@box, cookie:1]\n └─ Clients:\n"),
        ),
        rec(
            &format!("{IN_SESSION} pactl info"),
            CmdOutput::ok("Server String: /run/user/1000/pulse/native\nLibrary Protocol Version: 35\n"),
        ),
        rec(
            &format!("{IN_SESSION} pactl list short sinks"),
            CmdOutput::ok("57\tmugge-program\tPipeWire\tfloat32le 2ch 48000Hz\tSUSPENDED\n58\tmugge-headphones\tPipeWire\tfloat32le 2ch 48000Hz\tSUSPENDED\n59\tmugge-inears\tPipeWire\tfloat32le 2ch 48000Hz\tSUSPENDED\n60\tusbstreamer-out\tPipeWire\tfloat32le 8ch 48000Hz\tRUNNING\n"),
        ),
        rec(
            &format!("{IN_SESSION} pactl get-default-sink"),
            CmdOutput::ok("mugge-program\n"),
        ),
        rec(
            &format!("{IN_SESSION} pactl get-default-source"),
            CmdOutput::ok("mugge-program.monitor\n"),
        ),
        rec(
            "systemctl --user -M pi@ is-active pipewire.service pipewire-pulse.service wireplumber.service mugge-controller.service mugge-filters.service",
            CmdOutput::ok("active\nactive\nactive\nactive\nactive\n"),
        ),
    ]
}

#[test]
fn a_healthy_box_passes_every_gate_with_one_named_line_each() {
    let r = pi_box();
    let gates = gate_ids(&r, healthy_box());
    let lines: Vec<String> = gates.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "gate (0) no system-mode PipeWire: PASS",
            "gate (1) user, groups, limits: PASS",
            "gate (2) user manager without login: PASS",
            "gate (3) wpctl and pactl as the user: PASS",
            "gate (4) virtual devices are the defaults: PASS",
            "gate (5) mugge user units active: PASS",
        ]
    );
}

fn replace(
    mut rec: Vec<(String, CmdOutput)>,
    line: &str,
    out: CmdOutput,
) -> Vec<(String, CmdOutput)> {
    let slot = rec.iter_mut().find(|(l, _)| l.ends_with(line)).expect(line);
    slot.1 = out;
    rec
}

fn failing(gates: &[gates::Gate]) -> Vec<(u8, String)> {
    gates
        .iter()
        .filter(|g| !g.passed())
        .map(|g| (g.id, g.failures.join(" | ")))
        .collect()
}

#[test]
fn each_failure_lands_in_its_own_gate() {
    let r = pi_box();
    let cases: Vec<(&str, CmdOutput, u8, &str)> = vec![
        (
            "cat /proc/self/limits",
            CmdOutput::ok(LIMITS_DEFAULT),
            1,
            "realtime priority",
        ),
        (
            "id -nG pi",
            CmdOutput::ok("pi audio\n"),
            1,
            "not in group render",
        ),
        (
            "--property=Linger --value",
            CmdOutput::ok("no\n"),
            2,
            "lingering is off",
        ),
        (
            "is-active user@1000.service",
            CmdOutput {
                code: Some(3),
                stdout: "inactive\n".into(),
                stderr: String::new(),
            },
            2,
            "user@1000.service is inactive",
        ),
        (
            "show-environment",
            CmdOutput::ok("XDG_RUNTIME_DIR=/run/pipewire\n"),
            3,
            "XDG_RUNTIME_DIR",
        ),
        (
            "pactl info",
            CmdOutput::ok("Server String: /run/pipewire/pulse/native\n"),
            3,
            "pactl talks to",
        ),
        (
            "wpctl status",
            CmdOutput::failed(1, "Could not connect to PipeWire"),
            3,
            "Could not connect",
        ),
        (
            "pactl get-default-sink",
            CmdOutput::ok("usbstreamer-out\n"),
            4,
            "default sink is \"usbstreamer-out\"",
        ),
        (
            "pactl get-default-source",
            CmdOutput::ok("umik1-in\n"),
            4,
            "hardware node umik1-in",
        ),
        (
            "pactl list short sinks",
            CmdOutput::ok("60\tusbstreamer-out\tPipeWire\t-\tRUNNING\n"),
            4,
            "sink mugge-program missing",
        ),
        (
            "mugge-filters.service",
            CmdOutput {
                code: Some(3),
                stdout: "active\nactive\nactive\nactive\ninactive\n".into(),
                stderr: String::new(),
            },
            5,
            "mugge-filters.service is inactive",
        ),
    ];
    for (line, out, gate, reason) in cases {
        let gates = gate_ids(&r, replace(healthy_box(), line, out));
        let f = failing(&gates);
        assert_eq!(f.len(), 1, "{line}: {f:?}");
        assert_eq!(f[0].0, gate, "{line}: {f:?}");
        assert!(f[0].1.contains(reason), "{line}: {f:?}");
    }
}

#[test]
fn commands_that_cannot_run_fail_their_gates() {
    let r = pi_box();
    let gates = gate_ids(&r, vec![]);
    assert_eq!(
        failing(&gates).iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
}

#[test]
fn gate0_and_gate5_see_the_legacy_stack() {
    let r = legacy_box("gate0");
    r.write(
        "/etc/group",
        "audio:x:29:pi\nvideo:x:44:pi\nrender:x:105:pi\ninput:x:101:pi\npi:x:1000:\n",
    );
    r.mkdir("/run/user/1000");
    let mut rec = healthy_box();
    rec.push((
        "systemctl is-active pipewire-system.service".into(),
        CmdOutput::ok("active\n"),
    ));
    rec.push((
        "systemctl is-active wireplumber-system.service".into(),
        CmdOutput {
            code: Some(3),
            stdout: "inactive\n".into(),
            stderr: String::new(),
        },
    ));
    let gates = gate_ids(&r, rec);
    let f = failing(&gates);
    assert_eq!(
        f.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![0, 5],
        "{f:?}"
    );
    assert!(f[0].1.contains("system unit pipewire-system.service (/etc/systemd/system/pipewire-system.service) is enabled"));
    assert!(f[0].1.contains("pipewire-system.service is running"));
    assert!(f[0]
        .1
        .contains("/usr/local/bin/media-bridge-intercom-launcher:2 mentions /run/pipewire"));
    assert!(f[1]
        .1
        .contains("system unit pipewire-system.service runs audio"));
    assert!(!f[1].1.contains("wireplumber-system"));
}
