//! One summary row per run, so interval policies can be compared on the
//! same workload at a glance (the command is in `cmd::report`).
//!
//! - [`rows`]: which rows count and what each means (shared with `plot`);
//! - [`summary`]: the numbers, in one pass over the rows;
//! - [`sketch`]: percentiles of a stream in bounded memory;
//! - [`render`]: the numbers as table, Markdown or CSV text.

pub mod render;
pub mod rows;
pub mod sketch;
pub mod summary;

pub use render::{render, Format};
pub use summary::{summarize, summarize_csv, summarize_with, RunSummary};
