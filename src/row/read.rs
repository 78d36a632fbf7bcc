//! Reading a checkpoint CSV back: the header check, every value checked
//! with its line and column, and the live-round rule for files older than
//! the `live` column. `report`, `plot`, trace replay and the tests all
//! read through here.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use crate::row::Row;

/// Reads a checkpoint CSV written by the CSV sink (or by Xen tooling that
/// emits the same stable twelve columns).
///
/// A file with the header and no row (a run during which no record came)
/// is a valid, empty run. NaN, infinite and negative values are refused
/// with their line and column.
///
/// Errors name the file and the line, so a thesis student with a dozen
/// runs knows which one to fix. Files without a `live` column get the
/// legacy live-round rule applied (see [`mark_legacy_live_round`]).
pub fn read_csv(path: impl AsRef<Path>) -> Result<Vec<Row>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open checkpoint CSV {}", path.display()))?;
    read_csv_from(file, &path.display().to_string())
}

/// [`read_csv`] on any reader; `source_name` is what errors call it.
pub fn read_csv_from<R: Read>(reader: R, source_name: &str) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for_each_row(reader, source_name, |row| rows.push(row))?;
    Ok(rows)
}

/// [`read_csv_from`] one row at a time, in constant memory: `on_row` gets
/// each row as it is read and checked (the legacy live-round rule already
/// applied). On an error, the rows before it have been passed on.
pub fn for_each_row<R: Read>(
    reader: R,
    source_name: &str,
    mut on_row: impl FnMut(Row),
) -> Result<()> {
    let mut csv_reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers = csv_reader
        .headers()
        .with_context(|| format!("{source_name}: cannot read the CSV header line"))?
        .clone();
    for needed in ["seq", "t_s", "size_bytes", "period_ms"] {
        if !headers.iter().any(|h| h == needed) {
            bail!(
                "{source_name}: line 1: header has no '{needed}' column; is this a remus-ckpt CSV?"
            );
        }
    }
    let has_live_column = headers.iter().any(|h| h == "live");
    let mut record = csv::StringRecord::new();
    let mut index: u64 = 0;
    loop {
        let more = csv_reader.read_record(&mut record).map_err(|err| {
            let line = err.position().map_or(index + 2, |p| p.line());
            anyhow!("{source_name}: line {line}: {err}")
        })?;
        if !more {
            break;
        }
        // Data rows start on line 2; the csv crate knows better when the
        // file has quoted newlines, so take its position.
        let line = record.position().map_or(index + 2, |p| p.line());
        let mut row: Row = record.deserialize(Some(&headers)).map_err(|err| {
            let column = match err.kind() {
                csv::ErrorKind::Deserialize { err, .. } => err
                    .field()
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| headers.get(i))
                    .map(|name| format!("column {name}: {err}"))
                    .unwrap_or_else(|| err.to_string()),
                _ => err.to_string(),
            };
            anyhow!("{source_name}: line {line}: {column}")
        })?;
        check_values(&row).map_err(|(column, value)| {
            anyhow!(
                "{source_name}: line {line}: column {column}: {value} is not a valid value \
                 (times must be finite and not negative)"
            )
        })?;
        if index == 0 && !has_live_column {
            mark_legacy_live_round(std::slice::from_mut(&mut row));
        }
        on_row(row);
        index += 1;
    }
    Ok(())
}

/// Every float a row carries must be a finite number, not negative: NaN,
/// infinities and negative times would make percentiles and axes
/// meaningless. Integers cannot be negative (they are read as unsigned).
fn check_values(row: &Row) -> std::result::Result<(), (&'static str, f64)> {
    for (column, value) in [
        ("t_s", row.t_s),
        ("pause_ms", row.pause_ms),
        ("checkpoint_ms", row.checkpoint_ms),
        ("period_ms", row.period_ms),
        ("gate_wait_ms", row.gate_wait_ms),
        ("probe_ms", row.probe_ms),
    ] {
        if !value.is_finite() || value < 0.0 {
            return Err((column, value));
        }
    }
    Ok(())
}

/// Files written before the `live` column existed (among them the real Xen
/// trace in shared data) still start with the initial live round: a full
/// copy of guest memory, two orders of magnitude larger than a checkpoint.
/// Such a first row is recognised by `period_ms == 0` (nothing came before
/// it) and marked `live = 1`, so statistics and plots treat it like a row
/// the sink itself marked.
pub fn mark_legacy_live_round(rows: &mut [Row]) {
    if let Some(first) = rows.first_mut() {
        if first.period_ms == 0.0 {
            first.live = 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: &str = "seq,t_s,dirty_pages,pages_sent,bytes_sent,disk_bytes,size_bytes,pause_ms,checkpoint_ms,period_ms,interval_ms,dropped\n\
        0,0.0,10,100,1000,0,1000,5.0,9.0,0.0,300,0\n\
        1,0.3,10,10,100,0,100,1.0,2.0,300.0,300,0\n";

    #[test]
    fn legacy_first_row_with_period_zero_is_live() {
        let rows = read_csv_from(LEGACY.as_bytes(), "legacy.csv").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].live, 1);
        assert_eq!(rows[1].live, 0);
    }

    #[test]
    fn live_column_is_trusted_as_written() {
        let text = "seq,t_s,dirty_pages,pages_sent,bytes_sent,disk_bytes,size_bytes,pause_ms,checkpoint_ms,period_ms,interval_ms,dropped,live\n\
            0,0.0,10,10,100,0,100,1.0,2.0,0.0,0,0,0\n";
        let rows = read_csv_from(text.as_bytes(), "new.csv").unwrap();
        assert_eq!(rows[0].live, 0);
    }

    #[test]
    fn errors_name_file_and_line() {
        let text = "seq,t_s,dirty_pages,pages_sent,bytes_sent,disk_bytes,size_bytes,pause_ms,checkpoint_ms,period_ms,interval_ms,dropped\n\
            1,0.3,10,10,100,0,100,1.0,2.0,300.0,300,0\n\
            2,0.6,ten,10,100,0,100,1.0,2.0,300.0,300,0\n";
        let err = read_csv_from(text.as_bytes(), "bad.csv")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad.csv: line 3:"), "{err}");
        let err = read_csv_from("a,b\n1,2\n".as_bytes(), "other.csv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("other.csv") && err.contains("seq"), "{err}");
    }

    const HEADER: &str = "seq,t_s,dirty_pages,pages_sent,bytes_sent,disk_bytes,size_bytes,pause_ms,checkpoint_ms,period_ms,interval_ms,dropped,live";

    #[test]
    fn a_header_only_csv_is_an_empty_run() {
        assert!(read_csv_from(format!("{HEADER}\n").as_bytes(), "empty.csv")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn nan_infinite_and_negative_values_are_refused_with_line_and_column() {
        // Before: NaN, inf and -1.0 were read as numbers and reached the
        // percentiles and the plot axes.
        for (value, column) in [("NaN", 1), ("inf", 7), ("-inf", 8), ("-1.5", 9), ("-3", 6)] {
            let mut cells = vec![
                "2", "0.6", "10", "10", "100", "0", "100", "1.0", "2.0", "300.0", "300", "0", "0",
            ];
            cells[column] = value;
            let text = format!(
                "{HEADER}\n1,0.3,10,10,100,0,100,1.0,2.0,300.0,300,0,0\n{}\n",
                cells.join(",")
            );
            let err = read_csv_from(text.as_bytes(), "bad.csv")
                .unwrap_err()
                .to_string();
            let name = HEADER.split(',').nth(column).unwrap();
            assert!(
                err.starts_with(&format!("bad.csv: line 3: column {name}: ")),
                "{value} in {name}: {err}"
            );
        }
    }
}
