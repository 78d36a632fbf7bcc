//! The one font figures are drawn with, compiled into the binary.
//!
//! PNG text needs glyph outlines. Taking them from the system (plotters'
//! `ttf` feature: font-kit, fontconfig) fails on minimal hosts and CI
//! images without fonts, which would give figures without axis labels.
//! So DejaVu Sans (Bitstream Vera licence, see DejaVuSans-LICENSE.txt) is
//! embedded and registered with plotters' `ab_glyph` renderer, subset to
//! ASCII, Latin-1 and a few signs (README-font.md says how).

use std::sync::OnceLock;

use anyhow::{bail, Result};
use plotters::style::{register_font, FontStyle};

static DEJAVU_SANS_TTF: &[u8] = include_bytes!("DejaVuSans.ttf");

/// The family name every text style in `plot` uses.
pub const FAMILY: &str = "sans-serif";

/// Registers the embedded font once per process; later calls are free.
pub fn ensure_registered() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS_TTF).is_ok());
    if !ok {
        bail!("the embedded DejaVu Sans font could not be loaded");
    }
    Ok(())
}
