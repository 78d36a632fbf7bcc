//! The subcommands that wire sources, the controller and sinks together.

pub mod doctor;
pub mod dump;
pub mod generate;
pub mod plot;
pub mod py_remus;
pub mod report;
pub mod run;
pub mod simulate;
pub mod watch;

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};

/// Stdout's reader went away (EPIPE), as in `remus-ckpt dump … | head`.
/// Not a failure: [`crate::cli::main`] ends the process quietly with
/// status 0, as other Unix filters do. Only stdout writes produce it, so
/// an EPIPE on a FIFO or a socket stays an error.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// The error of a failed write to stdout: [`StdoutClosed`] for EPIPE, the
/// I/O error naming stdout otherwise.
pub fn stdout_error(err: io::Error) -> anyhow::Error {
    if err.kind() == io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(err).context("cannot write to stdout")
    }
}

/// `print!` that returns the error instead of panicking (`print!` panics
/// on EPIPE): call as `cmd::print_stdout(format_args!(…))?`.
pub fn print_stdout(text: fmt::Arguments<'_>) -> Result<()> {
    io::stdout().lock().write_fmt(text).map_err(stdout_error)
}

/// A flag set by SIGINT or SIGTERM, so a run can stop cleanly and keep
/// every record it has.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install a signal handler")?;
    }
    Ok(stop)
}
