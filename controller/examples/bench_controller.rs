//! Benchmark: SetMode-to-ready for a table of >= 50 links once the nodes exist, and the
//! controller's CPU time and wake-ups over an idle minute.
//!
//!     cargo build --release -p mugge-controller
//!     cargo run --release -p mugge-controller --example bench_controller [-- --idle-secs 60 --rounds 20]
//!
//! Everything runs on a private test stack (only hardware mocked). References measured in the
//! same run: one `pw-link` creating a single link (the old subprocess way), and WirePlumber's
//! own CPU time and wake-ups over the same idle window.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use mugge_controller::client::ControllerProxyBlocking;
use mugge_testkit::Stack;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime (clock ticks) and context switches (all threads) of a process.
fn cpu_and_switches(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut switches = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for l in s.lines() {
                if l.starts_with("voluntary_ctxt_switches")
                    || l.starts_with("nonvoluntary_ctxt_switches")
                {
                    switches += l
                        .split_whitespace()
                        .last()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    (ticks, switches)
}

/// Context switches per thread (name, count), to tell which thread wakes.
fn switches_by_thread(pid: u32) -> Vec<(String, u64)> {
    let mut v = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            let name = s
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .unwrap_or("")
                .trim()
                .to_string();
            let n: u64 = s
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
            v.push((format!("{name}/{}", t.file_name().to_string_lossy()), n));
        }
    }
    v
}

fn pid_of(comm: &str, runtime_dir: &Path) -> Option<u32> {
    let want = format!("XDG_RUNTIME_DIR={}", runtime_dir.display());
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            != comm
        {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (q(0.5), q(0.9), v[v.len() - 1])
}

fn main() -> anyhow::Result<()> {
    let rounds = arg("--rounds", 20) as usize;
    let idle = arg("--idle-secs", 60);
    let recorders = 8usize;
    let stack = Stack::start()?;
    stack.wait_for_port("mugge-headphones", "monitor_FR", Duration::from_secs(10))?;
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/filter-chain-copy.conf");
    let mut fc = stack.command("pipewire");
    fc.arg("-c").arg(&fixture);
    let _fc = stack.spawn("filter-chain", &fc)?;
    stack.wait_for_port(
        "mugge-filters-out.main",
        "output_AUX3",
        Duration::from_secs(10),
    )?;
    stack.wait_for_port(
        "mugge-filters-in.main",
        "playback_FR",
        Duration::from_secs(10),
    )?;
    // 8 JACK-style capture clients x 8 channels from the hardware inputs: 64 extra links in DJ.
    let mut recs = Vec::new();
    let mut config = String::from("require_plugins = false\nready_timeout_ms = 5000\n");
    for r in 0..recorders {
        let name = format!("bench-rec-{r}");
        recs.push(stack.record(&name, 8)?);
        for ch in 1..=8 {
            config.push_str(&format!(
                "[[extra.dj]]\nfrom = \"usbstreamer-in:{ch}\"\nto = \"{name}:{ch}\"\n"
            ));
        }
    }
    let cfg_path = stack.root().join("bench.toml");
    std::fs::write(&cfg_path, &config)?;
    // The daemon binary of the same profile (build it first: cargo build --release -p mugge-controller).
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("mugge"))
        .filter(|p| p.exists());
    let Some(bin) = bin else {
        anyhow::bail!("build the daemon first: cargo build --release -p mugge-controller")
    };
    let mut cmd = stack.command(bin);
    cmd.arg("daemon")
        .arg("--config")
        .arg(&cfg_path)
        .env("MUGGE_LOG", "warn");
    let ctl = stack.spawn("controller", &cmd)?;
    let conn = zbus::blocking::connection::Builder::address(stack.bus_address())?.build()?;
    let start = Instant::now();
    let p = loop {
        // Uncached: every property read asks the daemon.
        if let Ok(p) = ControllerProxyBlocking::builder(&conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
        {
            if p.mode().is_ok() {
                break p;
            }
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(10),
            "controller did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };

    let r = p.set_mode("dj")?;
    let links = p.links()?.iter().filter(|l| l.3).count();
    let mut daemon_ms = Vec::new();
    let mut client_ms = Vec::new();
    for _ in 0..rounds {
        let r = p.set_mode("standby")?;
        anyhow::ensure!(r.ready, "standby not ready");
        let t = Instant::now();
        let r = p.set_mode("dj")?;
        client_ms.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(r.ready, "dj not ready: {:?}", r.missing);
        daemon_ms.push(r.elapsed_us as f64 / 1e3);
    }
    let g = stack.dump()?;
    // Reference 1: a SetMode that changes nothing (D-Bus round trip + one reconcile pass).
    let mut noop_ms = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        anyhow::ensure!(p.set_mode("dj")?.ready);
        noop_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // Reference 2: one pw-link subprocess making ONE link between two unmanaged streams (the
    // old way of linking), bounded because pw-link can wait on link state.
    let _src = stack.play("bench-src", 1, vec![0.0; 48])?;
    let _dst = stack.record("bench-dst", 1)?;
    let mut ref_ms = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let out = stack
            .command("timeout")
            .args([
                "3",
                "pw-link",
                "bench-src:output_AUX0",
                "bench-dst:input_AUX0",
            ])
            .output()?;
        if out.status.success() {
            ref_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        stack
            .command("timeout")
            .args([
                "3",
                "pw-link",
                "-d",
                "bench-src:output_AUX0",
                "bench-dst:input_AUX0",
            ])
            .output()?;
    }
    let (dm, d90, dmax) = stats(daemon_ms);
    let (cm, c90, cmax) = stats(client_ms);
    let (nm, _, _) = stats(noop_ms);
    println!("SetMode standby -> dj: {links} links in the dj table present ({} links in the graph), {rounds} rounds", g.links.len());
    println!("  daemon-measured to ready : median {dm:.2} ms, p90 {d90:.2} ms, max {dmax:.2} ms (target <= 100 ms)");
    println!("  client round trip        : median {cm:.2} ms, p90 {c90:.2} ms, max {cmax:.2} ms");
    println!(
        "  reference 1, SetMode that changes nothing: median {nm:.2} ms; ratio {:.1}x",
        cm / nm
    );
    if ref_ms.is_empty() {
        println!(
            "  reference 2, one pw-link subprocess for one link: n/a (pw-link did not finish)"
        );
    } else {
        let (rm, _, _) = stats(ref_ms);
        println!(
            "  reference 2, one pw-link subprocess for ONE link: median {rm:.2} ms; SetMode for {links} links = {:.2}x of it ({:.3} ms per link)",
            cm / rm,
            cm / links.max(1) as f64
        );
    }
    let _ = r;

    // Idle: no events, no calls.
    let ctl_pid = ctl.pid();
    let wp_pid = pid_of("wireplumber", stack.runtime_dir());
    std::thread::sleep(Duration::from_secs(2));
    let c0 = cpu_and_switches(ctl_pid);
    let t0 = switches_by_thread(ctl_pid);
    let w0 = wp_pid.map(cpu_and_switches);
    std::thread::sleep(Duration::from_secs(idle));
    let c1 = cpu_and_switches(ctl_pid);
    let t1 = switches_by_thread(ctl_pid);
    let w1 = wp_pid.map(cpu_and_switches);
    let tick_ms = 10.0; // USER_HZ = 100 on Linux
    println!(
        "Idle {idle} s (graph running, {} links, nothing changing):",
        g.links.len()
    );
    println!(
        "  controller : {:.0} ms CPU ({:.4} % of a core), {} context switches (all threads)",
        (c1.0 - c0.0) as f64 * tick_ms,
        (c1.0 - c0.0) as f64 * tick_ms / (idle as f64 * 10.0),
        c1.1 - c0.1
    );
    for (name, n1) in &t1 {
        let n0 = t0.iter().find(|t| &t.0 == name).map_or(0, |t| t.1);
        println!("    thread {name:<28} {} context switches", n1 - n0);
    }
    if let (Some(w0), Some(w1)) = (w0, w1) {
        println!(
            "  reference, WirePlumber in the same window: {:.0} ms CPU, {} context switches",
            (w1.0 - w0.0) as f64 * tick_ms,
            w1.1 - w0.1
        );
    }
    drop(recs);
    Ok(())
}
