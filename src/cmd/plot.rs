//! `remus-ckpt plot`: stacked per-checkpoint panels as SVG or PNG.

use std::path::PathBuf;

use anyhow::Result;

use crate::plot::{default_height_px, plot, ImageFormat, Panel, PlotOptions, DEFAULT_WIDTH_PX};
use crate::report::rows::run_labels;
use crate::row::read_csv;
use crate::units::Bytes;

/// Command-line arguments of `remus-ckpt plot`.
#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// Checkpoint CSVs, one per run; overlaid in distinct colours.
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Output file: .svg or .png.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Name of each run, in file order (default: the file stem).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Panels, top to bottom.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "size,interval,pause,dirty"
    )]
    pub panels: Vec<Panel>,
    /// Lower edge of the size band drawn on the size panel (B, KiB, MiB,
    /// GiB, KB, MB, GB).
    #[arg(long, value_name = "SIZE", default_value = crate::policy::LMIN_DEFAULT)]
    pub lmin: Bytes,
    /// Upper edge of the size band drawn on the size panel (B, KiB, MiB,
    /// GiB, KB, MB, GB).
    #[arg(long, value_name = "SIZE", default_value = crate::policy::LMAX_DEFAULT)]
    pub lmax: Bytes,
    /// Figure width in pixels.
    #[arg(long, default_value_t = DEFAULT_WIDTH_PX)]
    pub width: u32,
    /// Figure height in pixels (default: 110 + 250 per panel).
    #[arg(long)]
    pub height: Option<u32>,
    /// Figure title (default: names the runs).
    #[arg(long)]
    pub title: Option<String>,
    /// Also plot the initial live round (left out by default: it is a full
    /// memory copy and would squash every checkpoint against the x axis).
    #[arg(long)]
    pub include_live: bool,
}

/// Reads every file and writes the figure named by `--output`.
pub fn run(args: &PlotArgs) -> Result<()> {
    ImageFormat::from_path(&args.output)?;
    let labels = run_labels(&args.files, &args.labels)?;
    let mut runs = Vec::with_capacity(args.files.len());
    for (file, label) in args.files.iter().zip(labels) {
        runs.push((label, read_csv(file)?));
    }
    let opts = PlotOptions {
        panels: args.panels.clone(),
        lmin_bytes: args.lmin.0,
        lmax_bytes: args.lmax.0,
        width_px: args.width,
        height_px: args
            .height
            .unwrap_or_else(|| default_height_px(args.panels.len())),
        title: args.title.clone(),
        include_live: args.include_live,
    };
    plot(&runs, &opts, &args.output)
}
