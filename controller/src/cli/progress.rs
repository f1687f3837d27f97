//! How a measurement's progress looks on stderr: on a terminal one bar per channel and phase
//! (finished bars stay, so the screen ends as a record of the run); otherwise, for logs and
//! scripts, one line per change.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal as _;

/// One MeasurementProgress signal.
pub struct Step<'a> {
    pub phase: &'a str,
    /// One-based speaker channel, 0 for the run as a whole.
    pub channel: u32,
    pub percent: f64,
    /// The mic's reading during level finding, dB SPL (0: none).
    pub level_db: f64,
}

impl Step<'_> {
    fn channel_label(&self) -> String {
        if self.channel > 0 {
            format!("ch {}", self.channel)
        } else {
            String::new()
        }
    }

    fn level_label(&self) -> String {
        if self.level_db != 0.0 {
            format!("{:.1} dB SPL", self.level_db)
        } else {
            String::new()
        }
    }
}

pub enum Display {
    Lines {
        last: String,
    },
    Bars {
        bar: Option<(ProgressBar, u32, String)>,
    },
}

impl Display {
    /// Bars when stderr is a terminal.
    pub fn for_stderr() -> Display {
        if std::io::stderr().is_terminal() {
            Display::Bars { bar: None }
        } else {
            Display::Lines {
                last: String::new(),
            }
        }
    }

    pub fn show(&mut self, s: &Step) {
        match self {
            Display::Lines { last } => {
                let level = s.level_label();
                let line = format!(
                    "{:<4} {:<13} {:>5.0} %{}{level}",
                    s.channel_label(),
                    s.phase,
                    s.percent,
                    if level.is_empty() { "" } else { "  " }
                );
                if line != *last {
                    eprintln!("{line}");
                    *last = line;
                }
            }
            Display::Bars { bar } => {
                let same = bar
                    .as_ref()
                    .is_some_and(|(_, c, p)| *c == s.channel && p == s.phase);
                if !same {
                    if let Some((b, ..)) = bar.take() {
                        b.finish();
                    }
                    let b = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
                    b.set_style(
                        ProgressStyle::with_template("{prefix:<4} [{bar:32}] {pos:>3} % {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    b.set_prefix(s.channel_label());
                    *bar = Some((b, s.channel, s.phase.to_string()));
                }
                if let Some((b, ..)) = bar.as_ref() {
                    b.set_position(s.percent.clamp(0.0, 100.0) as u64);
                    b.set_message(format!("{:<13} {}", s.phase, s.level_label()));
                }
            }
        }
    }

    /// Leaves the current bar drawn (before a prompt or the summary).
    pub fn finish(&mut self) {
        if let Display::Bars { bar } = self {
            if let Some((b, ..)) = bar.take() {
                b.finish();
            }
        }
    }
}
