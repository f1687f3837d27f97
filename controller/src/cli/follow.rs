//! Following a measurement the controller runs, for every command that starts one
//! (`mugge measure`, `mugge preset recall`): progress on stderr, the operator's "move the mic"
//! prompts, and Ctrl-C/SIGTERM turned into AbortMeasurement, then the result.
//!
//! The loop runs in the controller and outlives the CLI: a CLI that died on Ctrl-C left the
//! speakers playing test signals with nobody watching. So an interrupt aborts (the controller
//! mutes at once) and the follower still waits for the end, to show what happened.

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use anyhow::{bail, Context};
use mugge_controller::client::{self, ControllerProxyBlocking};
use mugge_controller::daemon::measure::report::Report;

use super::progress::{Display, Step};

/// Exit status after an interrupt: the shell's for SIGINT.
pub const INTERRUPTED: i32 = 130;

pub struct FollowOptions {
    /// Progress lines on stderr (off for `--json`); the move-mic prompt appears regardless.
    pub progress: bool,
}

/// A run that ended.
pub struct Followed {
    /// The controller's `MeasurementResult`, as it sent it.
    pub json: String,
    pub report: Report,
    /// Ctrl-C or SIGTERM arrived while following (the run was aborted unless it had ended).
    pub interrupted: bool,
}

impl Followed {
    /// The result on stdout: the JSON as the controller sent it, or the summary.
    pub fn print(&self, json: bool) {
        if json {
            outln!("{}", self.json);
        } else {
            out!("{}", self.report.summary());
        }
    }

    /// The process's exit status: [`INTERRUPTED`] after Ctrl-C/SIGTERM, 2 for a run that did
    /// not finish (aborted or failed), 0 otherwise.
    pub fn status(&self) -> i32 {
        if self.interrupted {
            INTERRUPTED
        } else if !self.report.ok {
            2
        } else {
            0
        }
    }
}

enum Event {
    Finished(String),
    Interrupt,
    ControllerGone,
}

/// Where an interrupt goes while a run is followed; none: the process ends as if there were
/// no handler (Ctrl-C outside a run, e.g. while plotting, just quits).
static INTERRUPTS: Mutex<Option<mpsc::Sender<Event>>> = Mutex::new(None);

/// Routes SIGINT, SIGTERM and SIGHUP to `tx` until the guard drops. The handler is process-wide
/// and can be set only once, so it is installed on first use and then only redirected.
fn catch_interrupts(tx: mpsc::Sender<Event>) -> anyhow::Result<InterruptGuard> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            ctrlc::set_handler(|| {
                let sink = INTERRUPTS.lock().unwrap_or_else(|e| e.into_inner());
                match sink.as_ref() {
                    Some(tx) => {
                        let _ = tx.send(Event::Interrupt);
                    }
                    None => std::process::exit(INTERRUPTED),
                }
            })
            .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("cannot catch Ctrl-C: {e}"))?;
    *INTERRUPTS.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    Ok(InterruptGuard)
}

struct InterruptGuard;
impl Drop for InterruptGuard {
    fn drop(&mut self) {
        *INTERRUPTS.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Follows the run that `start` starts (a D-Bus call that answers with the run's directory,
/// like StartMeasurement) to its MeasurementFinished and returns its result. The signals are
/// subscribed to before `start` runs: a short run's end is never missed. An interrupt while
/// `start` runs aborts the run once `start` has returned; an error from `start` is returned as
/// is. Exits the process on a second interrupt.
pub fn follow<F>(
    proxy: &ControllerProxyBlocking<'static>,
    start: F,
    opts: &FollowOptions,
) -> anyhow::Result<Followed>
where
    F: FnOnce() -> anyhow::Result<String>,
{
    // The result is read once the run ended: a cached property may not have seen the change
    // yet, whatever proxy the caller has.
    let proxy = ControllerProxyBlocking::builder(proxy.inner().connection())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()?;
    let progress = proxy.receive_measurement_progress()?;
    let finished = proxy.receive_measurement_finished()?;
    let (tx, events) = mpsc::channel();
    let _interrupts = catch_interrupts(tx.clone())?;
    let done = Arc::new(AtomicBool::new(false));
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for sig in finished {
                let Ok(a) = sig.args() else { continue };
                if tx.send(Event::Finished(a.dir.to_string())).is_err() {
                    return;
                }
            }
            let _ = tx.send(Event::ControllerGone);
        });
    }
    show_progress(progress, proxy.clone(), opts.progress, done.clone());
    drop(tx);

    let dir = start()?;
    if opts.progress {
        note(format_args!("measuring into {dir}"));
    }
    let mut interrupted = false;
    loop {
        match events.recv() {
            Ok(Event::Finished(d)) if d == dir => break,
            Ok(Event::Finished(_)) => {}
            Ok(Event::Interrupt) if !interrupted => {
                interrupted = true;
                // Abort before saying so: after SIGHUP the terminal may be gone.
                let result = proxy.abort_measurement();
                note(format_args!(
                    "interrupted: aborting the measurement and waiting for its end \
                     (interrupt again to quit at once)"
                ));
                match result {
                    Ok(m) => note(format_args!("{m}")),
                    Err(e) => note(format_args!(
                        "AbortMeasurement failed: {:#}",
                        client::explain(e)
                    )),
                }
            }
            Ok(Event::Interrupt) => {
                note(format_args!(
                    "quitting without the result: the controller has muted the speakers \
                     (`mugge status` shows the mode)"
                ));
                std::process::exit(INTERRUPTED);
            }
            Ok(Event::ControllerGone) | Err(_) => {
                bail!("the controller went away during the measurement")
            }
        }
    }
    done.store(true, Ordering::SeqCst);
    let json = proxy.measurement_result().map_err(client::explain)?;
    let report: Report =
        serde_json::from_str(&json).context("the controller's MeasurementResult")?;
    if report.dir != dir {
        bail!(
            "the controller's result is for {}, not for {dir}",
            report.dir
        );
    }
    Ok(Followed {
        json,
        report,
        interrupted,
    })
}

/// A line on stderr that cannot panic (eprintln! does when stderr is gone, e.g. after the
/// terminal hung up).
fn note(args: std::fmt::Arguments) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{args}");
}

/// Prints progress lines (unless `print` is off) and answers "move-mic" with the operator's
/// Enter, on threads of their own: the signal stream is drained while the prompt waits.
fn show_progress(
    progress: client::MeasurementProgressIterator,
    proxy: ControllerProxyBlocking<'static>,
    print: bool,
    done: Arc<AtomicBool>,
) {
    let (prompt, positions) = mpsc::channel::<f64>();
    std::thread::spawn(move || {
        for position in positions {
            eprintln!("move the mic to position {position:.0} and press Enter (Ctrl-C aborts)");
            let mut line = String::new();
            // End of input continues too: a script has nobody to move the mic.
            let _ = std::io::stdin().lock().read_line(&mut line);
            if let Err(e) = proxy.continue_measurement() {
                eprintln!("ContinueMeasurement failed: {:#}", client::explain(e));
            }
        }
    });
    std::thread::spawn(move || {
        let mut display = Display::for_stderr();
        for sig in progress {
            if done.load(Ordering::SeqCst) {
                display.finish();
                return;
            }
            let Ok(a) = sig.args() else { continue };
            if a.phase == "move-mic" {
                display.finish();
                // The position to go to travels in level_db.
                if prompt.send(a.level_db).is_err() {
                    return;
                }
                continue;
            }
            if print {
                display.show(&Step {
                    phase: a.phase,
                    channel: a.channel,
                    percent: a.percent,
                    level_db: a.level_db,
                });
            }
            if matches!(a.phase, "done" | "aborted" | "failed") {
                display.finish();
            }
        }
    });
}
