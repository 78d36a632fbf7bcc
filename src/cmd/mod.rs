//! The subcommands that wire sources, the controller and sinks together.

pub mod doctor;
pub mod dump;
pub mod generate;
pub mod plot;
pub mod report;
pub mod py_remus;
pub mod run;
pub mod simulate;
pub mod watch;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};

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
