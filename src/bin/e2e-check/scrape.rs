//! What dom0 saw of the tool as an operator would: the package it
//! installed with apt-get, and the metrics endpoint of stage A's run,
//! scraped once while Remus ran and once after, while the run lingered.

use std::path::Path;

use anyhow::{bail, Context, Result};
use remus_ckpt::report::rows::selected_rows;
use remus_ckpt::row::Row;

use crate::rundir::{read_lossy, Env};
use crate::verdict::{outcome, Outcome};

/// The package step: apt-get succeeded, dpkg has the .deb's version
/// installed (`ii`).
pub fn package(out: &Path) -> Result<Outcome> {
    let path = out.join("package.env");
    let env = Env::read(&path)?;
    let apt = env.need("apt_exit", &path)?;
    let status = env.get("status").unwrap_or("(not installed)");
    let installed = env.get("version").unwrap_or("");
    let deb = env.need("deb_version", &path)?;
    Ok(outcome(
        apt == "0" && status.trim() == "ii" && installed == deb,
        format!("apt-get installed remus-ckpt {deb} from the .deb in dom0"),
        format!(
            "apt-get exit {apt}, dpkg status '{status}', version '{installed}' (the .deb: {deb}); see out/package-install.txt"
        ),
    ))
}

/// The sum of `remus_ckpt_checkpoints_total` over its series in one
/// scrape (headers and body as HTTP/1.0 returned them); an error when the
/// answer is not a 200 or has no such series.
pub fn checkpoints_total(path: &Path) -> Result<u64> {
    let text = read_lossy(path)?;
    let status = text.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.") || status.split_whitespace().nth(1) != Some("200") {
        bail!("{}: not an HTTP 200 answer: '{status}'", path.display());
    }
    let mut total = 0u64;
    let mut series = 0usize;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("remus_ckpt_checkpoints_total") else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = rest
            .rsplit(' ')
            .next()
            .with_context(|| format!("{}: no value in '{line}'", path.display()))?;
        let v: f64 = value
            .parse()
            .with_context(|| format!("{}: '{value}' is not a number", path.display()))?;
        if !(v >= 0.0 && v.fract() == 0.0) {
            bail!("{}: checkpoints_total {v} is not a count", path.display());
        }
        // A whole, non-negative value just checked: exact.
        total += remus_ckpt::units::round_to_u64_saturating(v);
        series += 1;
    }
    if series == 0 {
        bail!("{}: no remus_ckpt_checkpoints_total series", path.display());
    }
    Ok(total)
}

/// Stage A's endpoint: the scrape after the run counts exactly the CSV's
/// checkpoints (live round left out), the one while Remus ran between 1
/// and that.
pub fn metrics(running: &Path, last: &Path, rows: &[Row]) -> Result<Outcome> {
    let csv = selected_rows(rows, false).len() as u64;
    let running = checkpoints_total(running)?;
    let last = checkpoints_total(last)?;
    Ok(outcome(
        last == csv && (1..=last).contains(&running),
        format!(
            "the endpoint counted {running} checkpoints while Remus ran and {last} at the end = the CSV's {csv}"
        ),
        format!(
            "checkpoints_total {running} while running, {last} at the end, the CSV has {csv}"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(body: &str) -> tempfile::TempPath {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), body).unwrap();
        f.into_temp_path()
    }

    #[test]
    fn sums_the_series_of_a_200_answer() {
        let p = scrape(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n\
             # TYPE remus_ckpt_checkpoints counter\n\
             remus_ckpt_checkpoints_total{name=\"guest\",domid=\"1\",stream=\"remus\"} 41\n\
             remus_ckpt_checkpoints_over_lmax_total{name=\"guest\",domid=\"1\",stream=\"remus\"} 3\n",
        );
        assert_eq!(checkpoints_total(&p).unwrap(), 41);
    }

    #[test]
    fn refuses_an_error_answer_or_a_missing_series() {
        let p = scrape("HTTP/1.0 404 Not Found\r\n\r\nremus_ckpt_checkpoints_total 1\n");
        assert!(checkpoints_total(&p).is_err());
        let p = scrape("HTTP/1.0 200 OK\r\n\r\nremus_ckpt_records_dropped_total 1\n");
        assert!(checkpoints_total(&p).is_err());
    }
}
