//! The command line: one subcommand per way of using the tool.

use clap::{Parser, Subcommand};

use crate::cmd::{doctor, dump, generate, plot, report, run, simulate, watch};

/// See and steer what every Xen Remus/COLO checkpoint costs.
///
/// Records come from a patched libxenguest (one line per checkpoint: dirty
/// pages, bytes sent, pause and checkpoint times); the controller chooses
/// the next interval from each checkpoint's size (shorter above --lmax,
/// longer below --lmin) and writes it back. Sizes take B, KiB, MiB, GiB;
/// durations take ns, us, ms, s (a bare number is ms).
#[derive(Debug, Parser)]
#[command(name = "remus-ckpt", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a simulated domain through the real C library and controller (no Xen needed).
    Simulate(Box<simulate::SimulateArgs>),
    /// Attach to a running patched libxenguest through its stats and control FIFOs.
    Watch(watch::WatchArgs),
    /// Run `xl remus` with the patched library and the controller attached.
    Run(run::RunArgs),
    /// Check a dom0 for what `run` needs, and say what to fix.
    Doctor(doctor::DoctorArgs),
    /// Pretty-print checkpoint records from a FIFO, a file or stdin.
    Dump(dump::DumpArgs),
    /// One summary row per run CSV: sizes, band compliance, intervals, pauses.
    Report(report::ReportArgs),
    /// Stacked per-checkpoint panels (size vs band, interval, pause, dirty rate) as SVG or PNG.
    Plot(plot::PlotArgs),
    /// Write the manual pages and shell completions (for packaging).
    #[command(hide = true)]
    GenerateAssets(generate::GenerateArgs),
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Simulate(args) => simulate::run(args).map(|()| 0),
        Command::Watch(args) => watch::run(args).map(|()| 0),
        Command::Run(args) => run::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Dump(args) => dump::run(args).map(|()| 0),
        Command::Report(args) => report::run(args).map(|()| 0),
        Command::Plot(args) => plot::run(args).map(|()| 0),
        Command::GenerateAssets(args) => generate::run(args).map(|()| 0),
    };
    match result {
        Ok(code) => code,
        // `remus-ckpt dump … | head`: the reader has what it wanted.
        Err(e) if e.chain().any(|c| c.is::<crate::cmd::StdoutClosed>()) => 0,
        Err(e) => {
            eprintln!("remus-ckpt: error: {e:#}");
            1
        }
    }
}
