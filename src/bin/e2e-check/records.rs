//! Checks on one run's records: the CSV against itself, against xl's log
//! and against the policy that produced it.

use anyhow::{bail, Context, Result};
use clap::Parser;
use remus_ckpt::policy::{Observation, PolicyArgs};
use remus_ckpt::record::Trigger;
use remus_ckpt::report::rows::selected_rows;
use remus_ckpt::row::Row;

use crate::verdict::{outcome, Outcome};

/// How the save side was paced in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// The gate paced at the interval the controller commanded.
    Commanded,
    /// The gate paced at the cap and ended early at a dirty-page budget.
    Budget,
    /// No gate: a fixed policy observes only and xl's -i paces.
    Unpaced,
}

/// The record checks for a run paced as `pacing`, by name (each becomes
/// `<prefix>records.<name>`).
pub fn names(pacing: Pacing, replay: bool) -> Vec<&'static str> {
    let mut v = vec![
        "count", "seq", "xl", "live", "dirty", "bytes", "period", "pause", "overlap",
    ];
    match pacing {
        Pacing::Commanded => v.extend(["gate", "commanded"]),
        Pacing::Budget => v.extend(["gate", "cap"]),
        Pacing::Unpaced => v.push("unpaced"),
    }
    if replay {
        v.push("policy");
    }
    v
}

/// Runs the record check `name` on `rows`.
pub fn check(
    name: &str,
    rows: &[Row],
    xl_checkpoints: usize,
    policy_args: Option<&str>,
    cap_ms: u64,
) -> Result<Outcome> {
    if rows.len() < 5 && name != "count" {
        bail!("only {} records: too few to check", rows.len());
    }
    let n = rows.len();
    let after_live = || rows.iter().skip(1);
    Ok(match name {
        "count" => outcome(n >= 5, format!("{n} records"), format!("only {n} records")),
        "seq" => {
            let bad = rows
                .iter()
                .enumerate()
                .filter(|(i, r)| r.seq != *i as u64 || r.dropped != 0 || r.gap != 0)
                .count();
            outcome(
                bad == 0,
                format!("seq 0..{} without a gap, none dropped", n - 1),
                format!("{bad} records out of sequence, dropped or after a gap"),
            )
        }
        "xl" => {
            // The checkpoint in flight when the run was stopped may have
            // no record.
            outcome(
                n == xl_checkpoints || n + 1 == xl_checkpoints,
                format!(
                    "one record per checkpoint: {n} records, xl logged {xl_checkpoints} suspends"
                ),
                format!("{n} records but xl logged \"has suspended\" {xl_checkpoints} times"),
            )
        }
        "live" => {
            let later = after_live().filter(|r| r.live != 0).count();
            outcome(
                rows[0].live == 1 && later == 0,
                format!(
                    "the first record is the live round ({} pages sent)",
                    rows[0].pages_sent
                ),
                format!(
                    "live flags wrong: first {}, {later} later rows claim live",
                    rows[0].live
                ),
            )
        }
        "dirty" => {
            let bad = after_live().filter(|r| r.dirty_pages == 0).count();
            outcome(
                bad == 0,
                format!("dirty_pages > 0 in all {} checkpoints", n - 1),
                format!("{bad} checkpoints with dirty_pages = 0"),
            )
        }
        "bytes" => {
            let bad = rows
                .iter()
                .filter(|r| r.bytes_sent == 0 || r.bytes_sent < r.pages_sent.saturating_mul(4096))
                .count();
            outcome(
                bad == 0,
                "bytes_sent >= pages_sent x 4096 in every record",
                format!("{bad} records with bytes_sent < pages_sent x 4096"),
            )
        }
        "period" => {
            let dev = rows
                .windows(2)
                .map(|w| (w[1].period_ms - (w[1].t_s - w[0].t_s) * 1000.0).abs())
                .fold(0.0, f64::max);
            outcome(
                dev <= 0.01,
                format!("period_ms = t_s difference (max off {dev:.4} ms)"),
                format!("period_ms is not the t_s difference (off by up to {dev:.3} ms)"),
            )
        }
        "pause" => {
            let bad = after_live()
                .filter(|r| !(r.pause_ms > 0.0 && r.pause_ms <= r.checkpoint_ms))
                .count();
            outcome(
                bad == 0,
                "0 < pause_ms <= checkpoint_ms in every checkpoint",
                format!("{bad} checkpoints without 0 < pause_ms <= checkpoint_ms"),
            )
        }
        "overlap" => {
            let bad = rows
                .windows(2)
                .skip(1)
                .filter(|w| w[0].checkpoint_ms > w[1].period_ms)
                .count();
            outcome(
                bad == 0,
                "every checkpoint ends before the next begins",
                format!("{bad} checkpoints last longer than the period after them"),
            )
        }
        "gate" => {
            // A budget ends the wait early on purpose; every other paced
            // checkpoint waited at least its interval.
            let bad = after_live()
                .filter(|r| r.interval_ms > 0 && r.trigger != "budget")
                .filter(|r| r.period_ms < r.interval_ms as f64 - 0.01)
                .count();
            let paced = after_live().filter(|r| r.interval_ms > 0).count();
            outcome(
                bad == 0 && paced > 0,
                format!("the gate paced {paced} checkpoints and held the interval in each not ended by a budget"),
                format!("{bad} checkpoints shorter than their interval; {paced} paced"),
            )
        }
        "commanded" => {
            // The interval the gate paced is the one commanded after the
            // previous checkpoint or, when a checkpoint outran the command
            // (the protocol allows a line to arrive one checkpoint late),
            // after the one before.
            let (mut exact, mut late, mut other) = (0, 0, 0);
            for i in 2..n {
                let iv = rows[i].interval_ms;
                if iv == 0 {
                    continue;
                }
                if iv == rows[i - 1].next_interval_ms {
                    exact += 1;
                } else if iv == rows[i - 2].next_interval_ms {
                    late += 1;
                } else {
                    other += 1;
                }
            }
            outcome(
                other == 0 && exact + late > 0,
                format!("the gate paced {} checkpoints at the commanded interval ({exact} at once, {late} one checkpoint late)", exact + late),
                format!("{other} paced checkpoints used an interval never commanded just before ({exact} exact, {late} late)"),
            )
        }
        "cap" => {
            let bad = after_live()
                .filter(|r| r.interval_ms != 0 && r.interval_ms != cap_ms)
                .count();
            let budgeted = after_live().filter(|r| r.budget_pages > 0).count();
            outcome(
                bad == 0 && budgeted + 1 >= n - 1,
                format!("interval = the {cap_ms} ms cap and a budget in force at every checkpoint"),
                format!("{bad} checkpoints paced at another interval than the {cap_ms} ms cap; {budgeted} of {} had a budget", n - 1),
            )
        }
        "unpaced" => {
            let paced = rows.iter().filter(|r| r.interval_ms != 0).count();
            outcome(
                paced == 0,
                "no checkpoint was paced by the library (the policy observes; xl's -i paces)",
                format!("{paced} checkpoints paced by the library under an observing policy"),
            )
        }
        "policy" => {
            let args = policy_args.context("the run names no policy arguments")?;
            replay(rows, args)?
        }
        other => bail!("no record check named '{other}'"),
    })
}

/// Replays the run's own policy (the crate's code, from the arguments the
/// scenario passed) over the records: every `next_interval_ms` must be
/// what the policy says. Rows after a gap were not fed to the policy.
fn replay(rows: &[Row], args: &str) -> Result<Outcome> {
    let mut policy = policy_args(args)?.build()?;
    let mut wanted = policy.initial().interval_ms;
    let mut wrong = Vec::new();
    for row in rows {
        if row.gap == 0 {
            wanted = policy.decide(&observation(row)).interval_ms;
        }
        if row.next_interval_ms != u64::from(wanted) {
            wrong.push(format!(
                "seq {}: {} not {wanted}",
                row.seq, row.next_interval_ms
            ));
        }
    }
    Ok(outcome(
        wrong.is_empty(),
        format!(
            "next_interval_ms is the {} policy's answer in all {} records (replayed)",
            policy.name(),
            rows.len()
        ),
        format!(
            "{} records where next_interval_ms is not the {} policy's answer ({})",
            wrong.len(),
            policy.name(),
            wrong.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        ),
    ))
}

/// The policy arguments the scenario passed to `remus-ckpt run`
/// (`POLICY_ARGS` and the like in scenario.env).
pub fn policy_args(args: &str) -> Result<PolicyArgs> {
    #[derive(Parser)]
    struct Words {
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(long)]
        quiet: bool,
    }
    let words = std::iter::once("policy").chain(args.split_whitespace());
    let parsed = Words::try_parse_from(words)
        .with_context(|| format!("cannot read the run's policy arguments '{args}'"))?;
    Ok(parsed.policy)
}

/// What the pipeline fed the policy for this row (the page size from
/// memory_bytes / dirty_pages; 4096 when no page was dirty).
pub fn observation(row: &Row) -> Observation {
    Observation {
        size_bytes: row.size_bytes,
        period_ms: row.period_ms,
        live: row.live != 0,
        page_size: row
            .memory_bytes
            .checked_div(row.dirty_pages)
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(4096),
        dirty_pages: row.dirty_pages,
        bytes_sent: row.bytes_sent,
        disk_bytes: row.disk_bytes,
        trigger: Trigger::parse(&row.trigger),
        dirty_at_trigger: row.dirty_at_trigger,
    }
}

/// Checkpoints (live round left out) above `lmax_bytes`, and how many
/// checkpoints there are: `(above, checkpoints)`; `None` without any.
pub fn count_above(rows: &[Row], lmax_bytes: u64) -> Option<(usize, usize)> {
    let ck = selected_rows(rows, false);
    (!ck.is_empty()).then(|| {
        let above = ck.iter().filter(|r| r.size_bytes > lmax_bytes).count();
        (above, ck.len())
    })
}

/// Share of checkpoints (live round left out) at most `lmax_bytes`.
pub fn share_within(rows: &[Row], lmax_bytes: u64) -> Option<f64> {
    count_above(rows, lmax_bytes).map(|(above, n)| (n - above) as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        let mut v = vec![Row {
            live: 1,
            pages_sent: 100,
            bytes_sent: 500_000,
            dirty_pages: 10,
            pause_ms: 1.0,
            checkpoint_ms: 10.0,
            next_interval_ms: 500,
            ..Row::default()
        }];
        for i in 1..8u64 {
            v.push(Row {
                seq: i,
                t_s: i as f64 * 0.5,
                dirty_pages: 1000,
                pages_sent: 1000,
                bytes_sent: 20 << 20,
                size_bytes: 20 << 20,
                pause_ms: 5.0,
                checkpoint_ms: 50.0,
                period_ms: 500.0,
                interval_ms: 500,
                next_interval_ms: 500,
                ..Row::default()
            });
        }
        v
    }

    #[test]
    fn replay_catches_a_wrong_decision() {
        let args = "--policy threshold --lmin 4MiB --lmax 16MiB --interval 2s --tmin 100ms --tmax 2s --decrease 0.5 --increase 1.5 --below-count 1 --quiet";
        let mut r = rows();
        // 20 MiB > Lmax: each checkpoint halves 2000 → 1000 → 500 → … ≥ 100.
        let mut iv = 2000u64;
        for row in r.iter_mut().skip(1) {
            iv = (iv / 2).max(100);
            row.next_interval_ms = iv;
        }
        r[0].next_interval_ms = 2000;
        assert!(matches!(replay(&r, args).unwrap(), Outcome::Pass(_)));
        r[4].next_interval_ms += 1;
        assert!(matches!(replay(&r, args).unwrap(), Outcome::Fail(_)));
        assert!(replay(&r, "--policy nonsense").is_err());
    }

    #[test]
    fn commanded_allows_one_checkpoint_late_only() {
        let mut r = rows();
        r[3].next_interval_ms = 250;
        // Row 4 paced at 500 = row 2's command: one checkpoint late is fine.
        assert!(matches!(
            check("commanded", &r, 8, None, 0).unwrap(),
            Outcome::Pass(_)
        ));
        r[5].interval_ms = 700;
        assert!(matches!(
            check("commanded", &r, 8, None, 0).unwrap(),
            Outcome::Fail(_)
        ));
    }

    #[test]
    fn xl_count_and_share() {
        let r = rows();
        assert!(matches!(
            check("xl", &r, 9, None, 0).unwrap(),
            Outcome::Pass(_)
        ));
        assert!(matches!(
            check("xl", &r, 10, None, 0).unwrap(),
            Outcome::Fail(_)
        ));
        assert_eq!(share_within(&r, 16 << 20), Some(0.0));
        assert_eq!(share_within(&r, 20 << 20), Some(1.0));
        assert!(check("nosuch", &r, 8, None, 0).is_err());
    }
}
