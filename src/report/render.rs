//! Turning [`RunSummary`]s into text: an aligned table for the terminal,
//! Markdown for a thesis draft, CSV with raw numbers for further analysis.
//!
//! Table and Markdown show sizes in MiB and times in ms with a fixed number
//! of decimals, so runs compare column by column; CSV carries bytes and ms
//! unrounded, so nothing is lost when a script reads it back.

use crate::report::rows::BYTES_PER_MIB;
use crate::report::sketch::EXACT_MAX;
use crate::report::summary::{Quantiles, RunSummary};
use crate::units::format_bytes;

/// Output format of `remus-ckpt report`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Markdown,
}

/// Shown where a run has no value (e.g. no checkpoints at all).
const MISSING: &str = "-";

/// One column: the human header, the CSV header, and how to fill each.
struct Column {
    human: &'static str,
    raw: &'static str,
    human_cell: fn(&RunSummary) -> String,
    raw_cell: fn(&RunSummary) -> String,
}

fn opt<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map(show).unwrap_or_else(|| MISSING.to_string())
}

fn mib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / BYTES_PER_MIB)
}

fn size_q(summary: &RunSummary, pick: fn(&Quantiles<u64>) -> u64, raw: bool) -> String {
    opt(summary.size_bytes.as_ref(), |q| {
        if raw {
            pick(q).to_string()
        } else {
            mib(pick(q))
        }
    })
}

fn ms_q(q: Option<&Quantiles<f64>>, pick: fn(&Quantiles<f64>) -> f64, raw: bool) -> String {
    opt(q, |q| {
        if raw {
            pick(q).to_string()
        } else {
            format!("{:.1}", pick(q))
        }
    })
}

fn columns(with_disk: bool) -> Vec<Column> {
    let mut columns = vec![
        Column {
            human: "run",
            raw: "label",
            human_cell: |s| s.label.clone(),
            raw_cell: |s| s.label.clone(),
        },
        Column {
            human: "ckpts",
            raw: "checkpoints",
            human_cell: |s| s.checkpoints.to_string(),
            raw_cell: |s| s.checkpoints.to_string(),
        },
        Column {
            human: "ckpt/s",
            raw: "checkpoints_per_s",
            human_cell: |s| opt(s.checkpoints_per_s, |v| format!("{v:.2}")),
            raw_cell: |s| opt(s.checkpoints_per_s, |v| v.to_string()),
        },
        Column {
            human: "size p50 MiB",
            raw: "size_p50_bytes",
            human_cell: |s| size_q(s, |q| q.p50, false),
            raw_cell: |s| size_q(s, |q| q.p50, true),
        },
        Column {
            human: "p95 MiB",
            raw: "size_p95_bytes",
            human_cell: |s| size_q(s, |q| q.p95, false),
            raw_cell: |s| size_q(s, |q| q.p95, true),
        },
        Column {
            human: "p99 MiB",
            raw: "size_p99_bytes",
            human_cell: |s| size_q(s, |q| q.p99, false),
            raw_cell: |s| size_q(s, |q| q.p99, true),
        },
        Column {
            human: "max MiB",
            raw: "size_max_bytes",
            human_cell: |s| size_q(s, |q| q.max, false),
            raw_cell: |s| size_q(s, |q| q.max, true),
        },
        Column {
            human: "<=Lmax %",
            raw: "pct_at_most_lmax",
            human_cell: |s| opt(s.pct_at_most_lmax, |v| format!("{v:.1}")),
            raw_cell: |s| opt(s.pct_at_most_lmax, |v| v.to_string()),
        },
        Column {
            human: "in band %",
            raw: "pct_in_band",
            human_cell: |s| opt(s.pct_in_band, |v| format!("{v:.1}")),
            raw_cell: |s| opt(s.pct_in_band, |v| v.to_string()),
        },
        Column {
            human: "interval p50 ms",
            raw: "interval_p50_ms",
            human_cell: |s| ms_q(s.interval_ms.as_ref(), |q| q.p50, false),
            raw_cell: |s| ms_q(s.interval_ms.as_ref(), |q| q.p50, true),
        },
        Column {
            human: "p95 ms",
            raw: "interval_p95_ms",
            human_cell: |s| ms_q(s.interval_ms.as_ref(), |q| q.p95, false),
            raw_cell: |s| ms_q(s.interval_ms.as_ref(), |q| q.p95, true),
        },
        Column {
            human: "interval from",
            raw: "interval_source",
            human_cell: |s| s.interval_source.column().to_string(),
            raw_cell: |s| s.interval_source.column().to_string(),
        },
        Column {
            human: "pause p50 ms",
            raw: "pause_p50_ms",
            human_cell: |s| ms_q(s.pause_ms.as_ref(), |q| q.p50, false),
            raw_cell: |s| ms_q(s.pause_ms.as_ref(), |q| q.p50, true),
        },
        Column {
            human: "p99 ms",
            raw: "pause_p99_ms",
            human_cell: |s| ms_q(s.pause_ms.as_ref(), |q| q.p99, false),
            raw_cell: |s| ms_q(s.pause_ms.as_ref(), |q| q.p99, true),
        },
        Column {
            human: "sent",
            raw: "total_bytes_sent",
            human_cell: |s| format_bytes(s.total_bytes_sent),
            raw_cell: |s| s.total_bytes_sent.to_string(),
        },
    ];
    if with_disk {
        columns.push(Column {
            human: "disk",
            raw: "total_disk_bytes",
            human_cell: |s| format_bytes(s.total_disk_bytes),
            raw_cell: |s| s.total_disk_bytes.to_string(),
        });
    }
    columns
}

impl Column {
    /// Text columns read left to right; numbers line up on the right.
    fn is_text(&self) -> bool {
        matches!(self.raw, "label" | "interval_source")
    }
}

/// Extra CSV-only columns: what the numbers were computed against.
fn csv_context_columns() -> Vec<Column> {
    vec![
        Column {
            human: "",
            raw: "live_rows_excluded",
            human_cell: |_| String::new(),
            raw_cell: |s| s.live_rows_excluded.to_string(),
        },
        Column {
            human: "",
            raw: "lmin_bytes",
            human_cell: |_| String::new(),
            raw_cell: |s| s.lmin_bytes.to_string(),
        },
        Column {
            human: "",
            raw: "lmax_bytes",
            human_cell: |_| String::new(),
            raw_cell: |s| s.lmax_bytes.to_string(),
        },
    ]
}

/// The line under a table that says what the numbers are against.
fn note(summaries: &[RunSummary]) -> String {
    let (lmin, lmax) = summaries
        .first()
        .map(|s| (s.lmin_bytes, s.lmax_bytes))
        .unwrap_or((0, 0));
    let live: usize = summaries.iter().map(|s| s.live_rows_excluded).sum();
    let histogram = if summaries.iter().any(|s| s.checkpoints > EXACT_MAX) {
        format!(" (past {EXACT_MAX} checkpoints from a histogram: up to 0.8% high)")
    } else {
        String::new()
    };
    format!(
        "Band [Lmin, Lmax] = [{}, {}]; percentiles nearest-rank over checkpoints{histogram}; \
         interval from interval_ms (period_ms for runs without a gate); \
         live-round rows excluded: {live}.",
        format_bytes(lmin),
        format_bytes(lmax)
    )
}

/// Renders one row per run in `format`.
pub fn render(summaries: &[RunSummary], format: Format) -> String {
    // The disk column only earns its width when some run replicated disk;
    // CSV always has it so scripts see a fixed set of columns.
    let with_disk = format == Format::Csv || summaries.iter().any(|s| s.total_disk_bytes > 0);
    let columns = columns(with_disk);
    match format {
        Format::Csv => render_csv(summaries, &columns),
        Format::Markdown => render_markdown(summaries, &columns),
        Format::Table => render_table(summaries, &columns),
    }
}

fn render_csv(summaries: &[RunSummary], columns: &[Column]) -> String {
    let context = csv_context_columns();
    let all: Vec<&Column> = columns.iter().chain(context.iter()).collect();
    let mut out = String::new();
    let quote = |cell: String| {
        if cell.contains([',', '"', '\n']) {
            format!("\"{}\"", cell.replace('"', "\"\""))
        } else {
            cell
        }
    };
    out.push_str(&all.iter().map(|c| c.raw).collect::<Vec<_>>().join(","));
    out.push('\n');
    for summary in summaries {
        let cells: Vec<String> = all.iter().map(|c| quote((c.raw_cell)(summary))).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

fn render_markdown(summaries: &[RunSummary], columns: &[Column]) -> String {
    let mut out = String::new();
    let escape = |cell: String| cell.replace('|', "\\|");
    out.push_str(&format!(
        "| {} |\n",
        columns
            .iter()
            .map(|c| c.human)
            .collect::<Vec<_>>()
            .join(" | ")
    ));
    let separators: Vec<&str> = columns
        .iter()
        .map(|c| if c.is_text() { ":---" } else { "---:" })
        .collect();
    out.push_str(&format!("|{}|\n", separators.join("|")));
    for summary in summaries {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| escape((c.human_cell)(summary)))
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push('\n');
    out.push_str(&note(summaries));
    out.push('\n');
    out
}

fn render_table(summaries: &[RunSummary], columns: &[Column]) -> String {
    let cells: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| columns.iter().map(|c| (c.human_cell)(s)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain(std::iter::once(c.human.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: Vec<String>| {
        row.iter()
            .enumerate()
            .map(|(i, cell)| {
                if columns[i].is_text() {
                    format!("{cell:<width$}", width = widths[i])
                } else {
                    format!("{cell:>width$}", width = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = String::new();
    out.push_str(&line(columns.iter().map(|c| c.human.to_string()).collect()));
    out.push('\n');
    for row in cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    out.push_str(&note(summaries));
    out.push('\n');
    out
}
