//! `mugge` subcommands, one module per command group, so several people can add subcommands
//! without conflicts.

/// `println!` for the CLI: a reader that went away (`mugge status | head`) ends the program
/// quietly instead of a panic on EPIPE (Rust ignores SIGPIPE, so every write reports it).
macro_rules! outln {
    ($($t:tt)*) => { $crate::cli::out(format_args!("{}\n", format_args!($($t)*))) };
}

/// `print!` with the same closed-pipe handling as [`outln!`].
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::out(format_args!($($t)*)) };
}

pub mod analyse;
pub mod daemon;
pub mod filters;
pub mod follow;
pub mod links;
pub mod measure;
pub mod meters;
pub mod mode;
pub mod plots;
pub mod preset;
pub mod profile;
pub mod progress;
pub mod setup;
pub mod status;
pub mod tap;

/// A measurement saved by `mugge measure` (or a test), loaded and analysed.
pub fn analysed(
    dir: &std::path::Path,
) -> anyhow::Result<Vec<mugge_filter_chain::measure::record::ChannelResult>> {
    use anyhow::Context as _;
    let rec = mugge_filter_chain::measure::record::Recording::load(dir)
        .with_context(|| format!("loading {}", dir.display()))?;
    rec.analyse()
        .with_context(|| format!("analysing {}", dir.display()))
}

/// Writes to stdout and flushes; a closed pipe ends the process with status 0 (the reader
/// has what it wanted), any other write error with status 1 and the reason.
pub fn out(args: std::fmt::Arguments) {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.flush()) {
        exit_on_write_error(&e);
    }
}

/// What a failed write to stdout means for the program (see [`out`]).
pub fn exit_on_write_error(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("Error: cannot write to stdout: {e}");
    std::process::exit(1);
}
