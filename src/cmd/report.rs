//! `remus-ckpt report`: one summary row per run CSV.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::report::{render, rows, summarize_csv, Format};
use crate::units::Bytes;

/// Command-line arguments of `remus-ckpt report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Checkpoint CSVs, one per run.
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Lower edge of the checkpoint size band (B, KiB, MiB, GiB, KB, MB, GB).
    #[arg(long, value_name = "SIZE", default_value = crate::policy::LMIN_DEFAULT)]
    pub lmin: Bytes,
    /// Upper edge of the checkpoint size band (B, KiB, MiB, GiB, KB, MB, GB).
    #[arg(long, value_name = "SIZE", default_value = crate::policy::LMAX_DEFAULT)]
    pub lmax: Bytes,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Name of each run, in file order (default: the file stem).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Count the initial live round as a checkpoint (left out by default).
    #[arg(long)]
    pub include_live: bool,
}

/// Reads every file, summarises each run, prints the table to stdout.
pub fn run(args: &ReportArgs) -> Result<()> {
    crate::cmd::print_stdout(format_args!("{}", report_text(args)?))?;
    Ok(())
}

/// What [`run`] prints, for callers that want the text.
pub fn report_text(args: &ReportArgs) -> Result<String> {
    if args.lmin > args.lmax {
        bail!("--lmin {} is above --lmax {}", args.lmin, args.lmax);
    }
    let labels = rows::run_labels(&args.files, &args.labels)?;
    let mut summaries = Vec::with_capacity(args.files.len());
    for (file, label) in args.files.iter().zip(&labels) {
        summaries.push(summarize_csv(
            file,
            label,
            args.lmin.0,
            args.lmax.0,
            args.include_live,
        )?);
    }
    Ok(render(&summaries, args.format))
}
