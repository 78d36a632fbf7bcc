//! Stacked panels per run on one time axis — the thesis' headline figure
//! of checkpoint size against the [Lmin, Lmax] band next to the interval
//! the controller chose, plus pause and the dirty-page rate that drove
//! both. The `plot` command itself is in `cmd::plot`.
//!
//! - [`series`]: what each panel shows, as testable data;
//! - [`draw`]: laying it out with plotters;
//! - [`font`]: the embedded font, so PNG text renders anywhere.

pub mod draw;
pub mod font;
pub mod series;

use std::path::Path;

use anyhow::{bail, Context, Result};
use plotters::prelude::{BitMapBackend, IntoDrawingArea, SVGBackend};

use crate::row::Row;

pub use series::Panel;

/// Default figure width; wide enough for ~120 s of 300 ms checkpoints.
pub const DEFAULT_WIDTH_PX: u32 = 1200;
/// Smallest figure that still leaves room for axes and labels.
const MIN_SIDE_PX: u32 = 200;

/// Default height: a title and legend strip plus a fixed share per panel,
/// so `--panels size,interval` is not stretched to four panels' height.
pub fn default_height_px(panel_count: usize) -> u32 {
    let panels = u32::try_from(panel_count.max(1)).unwrap_or(u32::MAX);
    panels.saturating_mul(250).saturating_add(110)
}

/// What to draw, independent of the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotOptions {
    /// Panels top to bottom; duplicates are drawn once.
    pub panels: Vec<Panel>,
    pub lmin_bytes: u64,
    pub lmax_bytes: u64,
    pub width_px: u32,
    pub height_px: u32,
    pub title: Option<String>,
    pub include_live: bool,
}

impl Default for PlotOptions {
    fn default() -> Self {
        let (lmin_bytes, lmax_bytes) = crate::policy::default_band_bytes();
        PlotOptions {
            panels: Panel::ALL.to_vec(),
            lmin_bytes,
            lmax_bytes,
            width_px: DEFAULT_WIDTH_PX,
            height_px: default_height_px(Panel::ALL.len()),
            title: None,
            include_live: false,
        }
    }
}

impl PlotOptions {
    fn validate(&self) -> Result<()> {
        if self.panels.is_empty() {
            bail!("no panels chosen: use some of size,interval,pause,dirty");
        }
        if self.lmin_bytes > self.lmax_bytes {
            bail!(
                "Lmin ({} bytes) is above Lmax ({} bytes)",
                self.lmin_bytes,
                self.lmax_bytes
            );
        }
        if self.width_px < MIN_SIDE_PX || self.height_px < MIN_SIDE_PX {
            bail!(
                "figure {}x{} px is too small to read; use at least {MIN_SIDE_PX}x{MIN_SIDE_PX}",
                self.width_px,
                self.height_px
            );
        }
        Ok(())
    }
}

/// The image format, chosen by the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Svg,
    Png,
}

impl ImageFormat {
    /// `.svg` or `.png` (any case); anything else is an error rather than
    /// a guess, so `-o fig.pdf` does not silently write a PNG.
    pub fn from_path(path: &Path) -> Result<Self> {
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match extension.as_str() {
            "svg" => Ok(ImageFormat::Svg),
            "png" => Ok(ImageFormat::Png),
            _ => bail!("{}: output must end in .svg or .png", path.display()),
        }
    }
}

/// Draws `runs` (label, rows) into `output` (.svg or .png).
pub fn plot(runs: &[(String, Vec<Row>)], opts: &PlotOptions, output: &Path) -> Result<()> {
    let format = ImageFormat::from_path(output)?;
    let mut opts = opts.clone();
    let mut seen = Vec::with_capacity(opts.panels.len());
    opts.panels.retain(|panel| {
        let first = !seen.contains(panel);
        seen.push(*panel);
        first
    });
    opts.validate()?;
    if runs.is_empty() {
        bail!("no runs to plot");
    }
    font::ensure_registered()?;
    let size = (opts.width_px, opts.height_px);
    write_atomically(output, |tmp| {
        let written = || format!("cannot write figure {}", output.display());
        match format {
            ImageFormat::Svg => {
                let root = SVGBackend::new(tmp, size).into_drawing_area();
                draw::draw_figure(&root, runs, &opts)?;
                root.present()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))
                    .with_context(written)?;
            }
            ImageFormat::Png => {
                let root = BitMapBackend::new(tmp, size).into_drawing_area();
                draw::draw_figure(&root, runs, &opts)?;
                root.present()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))
                    .with_context(written)?;
            }
        }
        Ok(())
    })
}

/// Runs `write` on a temporary file next to `output` and renames it over
/// `output` only when it succeeded, so a failed plot leaves no partial
/// figure behind (and an older figure at `output` stays as it was).
pub fn write_atomically(output: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = output
        .file_name()
        .with_context(|| format!("{} has no file name", output.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(
            &output
                .extension()
                .map_or(String::new(), |e| format!(".{}", e.to_string_lossy())),
        )
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    // The temporary file is removed when `tmp` drops, on every error path.
    write(tmp.path())?;
    // A figure is for reading: 0644, not the temporary file's 0600.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .with_context(|| format!("cannot chmod {}", tmp.path().display()))?;
    tmp.persist(output)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write figure {}", output.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_figure_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("fig.png");
        let err = write_atomically(&out, |tmp| {
            std::fs::write(tmp, b"half a PNG").unwrap();
            anyhow::bail!("drawing failed")
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "drawing failed");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        // An older figure stays untouched by a failed one.
        std::fs::write(&out, b"old").unwrap();
        assert!(write_atomically(&out, |_| anyhow::bail!("no")).is_err());
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        write_atomically(&out, |tmp| Ok(std::fs::write(tmp, b"new")?)).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn format_by_extension() {
        assert_eq!(
            ImageFormat::from_path(Path::new("a.SVG")).unwrap(),
            ImageFormat::Svg
        );
        assert_eq!(
            ImageFormat::from_path(Path::new("x/b.png")).unwrap(),
            ImageFormat::Png
        );
        assert!(ImageFormat::from_path(Path::new("c.pdf")).is_err());
        assert!(ImageFormat::from_path(Path::new("noext")).is_err());
    }
}
