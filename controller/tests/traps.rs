//! The graph traps of the previous implementation (../shared/notes/traps.md), each as a test
//! on the real stack: links made behind the controller's back, stale links, links that must
//! outlive the controller (object.linger), adoption without duplicates after a controller
//! crash and after a PipeWire restart.

mod common;
use common::*;
use mugge_testkit::ChildGuard;
use std::time::{Duration, Instant};

fn status(stack: &mugge_testkit::Stack) -> serde_json::Value {
    serde_json::from_str(&proxy(stack).unwrap().get_status().unwrap()).unwrap()
}

#[test]
fn links_made_behind_the_controllers_back_are_destroyed_and_others_left_alone() {
    let stack = stack();
    let _fc = filter_chain(&stack);
    let _ctl = controller(&stack, BASE_CONFIG, "controller");
    let p = proxy(&stack).unwrap();
    assert!(p.set_mode("dj").unwrap().ready);
    wait_links(&stack, &program_links(), &[]).unwrap();

    // A JACK-style client linking itself straight to the speakers, the headphones, the in-ear
    // channels and into the program: every one is destroyed.
    let _rogue = stack.play("rogue", 2, vec![0.0; 96]).unwrap();
    let _other = stack.record("bystander", 2).unwrap();
    let mut times = Vec::new();
    for (out, inp) in [
        ("rogue:output_AUX0", "usbstreamer-out:playback_AUX0"),
        ("rogue:output_AUX1", "usbstreamer-out:playback_AUX3"),
        ("rogue:output_AUX0", "usbstreamer-out:playback_AUX6"),
        ("rogue:output_AUX0", "mugge-program:playback_FL"),
        // A stale link between two managed nodes that no table has.
        ("mugge-program:monitor_FL", "mugge-inears:playback_FL"),
        // The hardware input into a stream: touches a managed node, not in the table.
        ("usbstreamer-in:capture_AUX0", "bystander:input_AUX0"),
    ] {
        let t0 = Instant::now();
        rogue_link(&stack, out, inp);
        wait_links(&stack, &program_links(), &["rogue", "bystander"])
            .unwrap_or_else(|e| panic!("{out} -> {inp} not destroyed: {e}"));
        times.push(t0.elapsed());
        let st = status(&stack);
        let us = st["status"]["stats"]["last_destroy_us"].as_u64();
        eprintln!(
            "{out} -> {inp}: gone within {:?} of pw-link starting (pw-link + pw-dump round trips); \
             controller: registry appearance -> removal {:?} us",
            t0.elapsed(),
            us
        );
    }
    let st = status(&stack);
    assert!(
        st["status"]["stats"]["links_destroyed"].as_u64().unwrap() >= 6,
        "{st}"
    );
    eprintln!(
        "max appearance -> removal: {} us",
        st["status"]["stats"]["max_destroy_us"]
    );

    // A link between two nodes the controller does not manage is none of its business.
    rogue_link(&stack, "rogue:output_AUX0", "bystander:input_AUX1");
    // A later rogue link proves the controller has processed the registry past that link.
    rogue_link(&stack, "rogue:output_AUX1", "usbstreamer-out:playback_AUX1");
    let mut want = program_links();
    want.extend(pairs(&[("rogue:output_AUX0", "bystander:input_AUX1")]));
    wait_links(&stack, &want, &["rogue", "bystander"]).unwrap();
}

/// The tone plays through Mixxx -> program -> filter-chain -> hardware.
fn tone(frames: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(frames * 4);
    for i in 0..frames {
        let s = 0.25 * (2.0 * std::f32::consts::PI * 997.0 * i as f32 / 48000.0).sin();
        v.extend([s, s, s, s]);
    }
    v
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

fn link_ids(stack: &mugge_testkit::Stack) -> Vec<(String, String, u32)> {
    let g = stack.dump().unwrap();
    let mut v: Vec<_> = g
        .links
        .iter()
        .map(|l| {
            (
                g.describe_port(l.output_port),
                g.describe_port(l.input_port),
                l.id,
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn kill_9_keeps_links_and_audio_and_a_restart_adopts_without_duplicates() {
    let stack = stack();
    let _fc = filter_chain(&stack);
    let _mixxx = stack.play("Mixxx", 4, tone(48000 * 60)).unwrap();
    let mut ctl = controller(&stack, &format!("{BASE_CONFIG}{APPS}"), "controller");
    let p = proxy(&stack).unwrap();
    assert!(p.set_mode("dj").unwrap().ready);
    let want = with_mixxx(program_links());
    wait_links(&stack, &want, &["Mixxx"]).unwrap();
    let before = link_ids(&stack);

    ctl.guard.kill(); // SIGKILL
    assert!(
        proxy(&stack).unwrap().mode().is_err(),
        "controller still answers"
    );
    // Every link stays (object.linger).
    assert_eq!(link_ids(&stack), before);
    // And audio keeps reaching the hardware: capture its monitor (nobody destroys this link now).
    let rec = stack.record("rec", 4).unwrap();
    for ch in 0..4 {
        stack
            .link_active(
                &format!("usbstreamer-out:monitor_AUX{ch}"),
                &format!("rec:input_AUX{ch}"),
                T,
            )
            .unwrap();
    }
    // Count from the moment every link is active: before that the recorder reads silence.
    let start = rec.frames();
    rec.wait_frames(start + 48000, T).unwrap();
    let got = rec.stop();
    for (ch, x) in got.iter().enumerate() {
        let tail = &x[x.len() - 9600..];
        let r = rms(tail);
        let peak = tail.iter().fold(0f32, |m, s| m.max(s.abs()));
        // The 0.25-peak tone through copies (RMS 0.177); a loaded machine may drop a cycle, so
        // the RMS bound leaves room for that, while silence or a wrong route reads ~0.
        assert!(
            (peak - 0.25).abs() < 0.01 && r > 0.12,
            "hardware channel {} peak {peak} rms {r}",
            ch + 1
        );
    }

    // Restart: the remembered mode is adopted. Same link ids = nothing torn down and re-made,
    // no duplicates; the recorder's links touch the hardware and are not in the table: gone.
    let _ctl2 = spawn_controller(&stack, &ctl.config, "controller-2");
    let p = proxy(&stack).unwrap();
    assert_eq!(p.mode().unwrap(), "dj");
    let g = wait_links(&stack, &want, &["Mixxx", "rec"]).unwrap();
    let after = link_ids(&stack);
    assert_eq!(after, before, "links were re-made instead of adopted");
    let mut seen = std::collections::HashSet::new();
    for l in &g.links {
        assert!(
            seen.insert((l.output_port, l.input_port)),
            "duplicate link {l:?}"
        );
    }
    let st = status(&stack);
    assert_eq!(
        st["status"]["stats"]["links_created"].as_u64(),
        Some(0),
        "{st}"
    );
}

/// Finds the stack's own PipeWire daemon: the `pipewire` process whose environment carries
/// this stack's private config dir (the filter-chain's pipewire has none).
fn stack_pipewire_pid(stack: &mugge_testkit::Stack) -> Option<u32> {
    let want = format!(
        "PIPEWIRE_CONFIG_DIR={}",
        stack.root().join("pipewire").display()
    );
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "pipewire" {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn pipewire_restart_reconnects_and_converges_without_duplicates() {
    let stack = stack();
    let mut fc = filter_chain(&stack);
    let _ctl = controller(&stack, BASE_CONFIG, "controller");
    let p = proxy(&stack).unwrap();
    assert!(p.set_mode("dj").unwrap().ready);
    wait_links(&stack, &program_links(), &[]).unwrap();

    let pid = stack_pipewire_pid(&stack).expect("the stack's pipewire");
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    // Health reports PipeWire as gone.
    let start = Instant::now();
    loop {
        if p.health().unwrap().get("pipewire").map(String::as_str) == Some("Disconnected") {
            break;
        }
        assert!(
            start.elapsed() < T,
            "controller did not notice PipeWire going away"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    fc.kill();
    // A new PipeWire, WirePlumber and filter-chain on the same runtime dir.
    // Stack::spawn drops PIPEWIRE_CONFIG_DIR (clients must not read it): spawn directly.
    let mut pw = stack.command("pipewire");
    pw.env("PIPEWIRE_CONFIG_DIR", stack.root().join("pipewire"));
    let logs = stack.root().join("logs");
    let _pw = ChildGuard::spawn("pipewire-2", &pw, &logs.join("pipewire-2.log")).unwrap();
    // WirePlumber gives up when PipeWire is not there yet.
    stack.wait_for_node("usbstreamer-out", T).unwrap();
    let _wp = stack
        .spawn("wireplumber-2", &stack.command("wireplumber"))
        .unwrap();
    stack
        .wait_for_port("usbstreamer-out", "playback_AUX7", T)
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n{}\n{}",
                stack.log("wireplumber-2"),
                stack.log("wireplumber")
            )
        });
    stack
        .wait_for_port("mugge-headphones", "monitor_FR", T)
        .unwrap();
    let _fc2 = filter_chain(&stack);
    let g = wait_links(&stack, &program_links(), &[]).unwrap();
    let mut seen = std::collections::HashSet::new();
    for l in &g.links {
        assert!(
            seen.insert((l.output_port, l.input_port)),
            "duplicate link {l:?}"
        );
    }
    let start = Instant::now();
    while !p.ready().unwrap() {
        assert!(
            start.elapsed() < T,
            "not ready after the restart: {:?}",
            p.missing().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        p.health().unwrap().get("pipewire").map(String::as_str),
        Some("Connected")
    );
    assert_eq!(p.quantum().unwrap(), 1024);
}
