//! Writing a checkpoint CSV: the header at once, then one row per
//! checkpoint. The caller flushes whenever no more rows are waiting (so a run killed half way still leaves every
//! checkpoint it saw on disk), and a burst of rows costs one write(2)
//! rather than one per row.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::row::{header, Row};

pub struct CsvWriter {
    path: PathBuf,
    writer: csv::Writer<BufWriter<File>>,
}

impl CsvWriter {
    /// Creates (truncates) `path` and writes the header at once, so a run
    /// during which no record came still leaves a valid (empty) CSV.
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file =
            File::create(path).with_context(|| format!("cannot create CSV {}", path.display()))?;
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(BufWriter::new(file));
        writer
            .write_record(&header())
            .and_then(|()| Ok(writer.flush()?))
            .with_context(|| format!("cannot write to {}", path.display()))?;
        Ok(CsvWriter {
            path: path.to_path_buf(),
            writer,
        })
    }

    /// Buffers one row; see [`CsvWriter::flush`].
    pub fn write(&mut self, row: &Row) -> Result<()> {
        self.writer
            .serialize(row)
            .with_context(|| format!("cannot write to {}", self.path.display()))
    }

    /// Puts every buffered row in the file.
    pub fn flush(&mut self) -> Result<()> {
        self.writer
            .flush()
            .with_context(|| format!("cannot flush {}", self.path.display()))
    }

    pub fn finish(mut self) -> Result<()> {
        self.writer.flush()?;
        self.writer
            .into_inner()
            .map_err(|e| anyhow::anyhow!("cannot finish {}: {}", self.path.display(), e.error()))?
            .flush()
            .with_context(|| format!("cannot flush {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_has_the_stable_columns_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.csv");
        let mut sink = CsvWriter::create(&p).unwrap();
        sink.write(&Row {
            seq: 3,
            ..Row::default()
        })
        .unwrap();
        sink.flush().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with(
            "seq,t_s,dirty_pages,pages_sent,bytes_sent,disk_bytes,size_bytes,pause_ms,\
             checkpoint_ms,period_ms,interval_ms,dropped,"
        ));
        assert_eq!(
            text.lines().count(),
            2,
            "the row is in the file after flush"
        );
        sink.finish().unwrap();
    }

    #[test]
    fn a_run_without_rows_is_a_header_only_csv() {
        // Before: the header was written with the first row, so a run in
        // which no record came left an empty file report could not read.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.csv");
        CsvWriter::create(&p).unwrap().finish().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(
            text.trim_end().ends_with(
                "drbd_checkpoints,gap,trigger,dirty_at_trigger,budget_pages,probes,probe_ms,\
                 disk_epochs,disk_unknown,clean_error"
            ),
            "{text}"
        );
        assert!(crate::row::read_csv(&p).unwrap().is_empty());
    }

    #[test]
    fn a_destination_that_cannot_take_the_header_fails_at_once() {
        // Before: `--csv /dev/full` ran silently until the first flush.
        let err = CsvWriter::create(Path::new("/dev/full")).err().unwrap();
        let text = format!("{err:#}");
        assert!(
            text.contains("/dev/full") && text.contains("No space left"),
            "{text}"
        );
    }
}
