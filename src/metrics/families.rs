//! The metric objects and how each observation updates them. Names, units
//! and types here are the ones docs/metrics.md lists; the encoding is
//! `prometheus-client`'s.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{Observation, RunInfo};

/// Every `stats=` value a record can carry (docs/protocol.md), and `other`.
pub const STATS_STATES: &[&str] = &["ok", "reopened", "other"];
/// Every `ctl=` value a record can carry (docs/protocol.md), and `other`.
pub const CTL_STATES: &[&str] = &[
    "unset",
    "ok",
    "nowriter",
    "refused",
    "reopening",
    "fallback",
    "other",
];

/// Which domain and stream a series is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Labels {
    pub domid: u32,
    /// Empty (so absent, to Prometheus) when unknown.
    pub name: Option<String>,
    pub stream: &'static str,
}

/// [`Labels`] and a channel state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub domid: u32,
    pub name: Option<String>,
    pub stream: &'static str,
    pub state: &'static str,
}

type GaugeF64 = Gauge<f64, AtomicU64>;

/// Byte-size buckets: 64 KiB .. 1 GiB, doubling (a Remus checkpoint of a
/// quiet guest is a few hundred KiB, a busy one tens to hundreds of MiB).
fn size_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(64.0 * 1024.0, 2.0, 15)
}

/// Pause and checkpoint durations: 0.25 ms .. 4 s, doubling.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_25, 2.0, 15)
}

/// Periods: 1 ms .. 65 s, doubling (intervals are 1 ms .. 60 s).
fn period_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 17)
}

/// The save side's counts are cumulative per save; what was last seen of
/// one domain, and its streak above Lmax.
#[derive(Default)]
struct DomainState {
    ctl_rejected: Option<u64>,
    over_lmax_streak: i64,
    budget_seen: bool,
}

/// The update thread's side: every metric object.
pub struct Families {
    info: RunInfo,
    checkpoints: Family<Labels, Counter>,
    over_lmax: Family<Labels, Counter>,
    records_dropped: Family<Labels, Counter>,
    stalls: Family<Labels, Counter>,
    control_rejected: Family<Labels, Counter>,
    disk_bytes: Family<Labels, Counter>,
    size: Family<Labels, Histogram>,
    pause: Family<Labels, Histogram>,
    duration: Family<Labels, Histogram>,
    period: Family<Labels, Histogram>,
    interval: Family<Labels, GaugeF64>,
    commanded: Family<Labels, GaugeF64>,
    budget: Family<Labels, Gauge>,
    dirty_rate: Family<Labels, GaugeF64>,
    streak: Family<Labels, Gauge>,
    stats_state: Family<StateLabels, Gauge>,
    ctl_state: Family<StateLabels, Gauge>,
    last: Arc<LastCheckpoint>,
    domains: HashMap<(u32, &'static str), DomainState>,
}

impl Families {
    /// The registry (for the HTTP thread) and the objects in it (for the
    /// update thread). `dropped` counts observations the controller could
    /// not hand over.
    pub fn new(info: RunInfo, dropped: Counter) -> (Registry, Families) {
        let mut reg = Registry::with_prefix("remus_ckpt");
        let f = Families {
            info,
            checkpoints: Family::default(),
            over_lmax: Family::default(),
            records_dropped: Family::default(),
            stalls: Family::default(),
            control_rejected: Family::default(),
            disk_bytes: Family::default(),
            size: Family::new_with_constructor(|| Histogram::new(size_buckets())),
            pause: Family::new_with_constructor(|| Histogram::new(duration_buckets())),
            duration: Family::new_with_constructor(|| Histogram::new(duration_buckets())),
            period: Family::new_with_constructor(|| Histogram::new(period_buckets())),
            interval: Family::default(),
            commanded: Family::default(),
            budget: Family::default(),
            dirty_rate: Family::default(),
            streak: Family::default(),
            stats_state: Family::default(),
            ctl_state: Family::default(),
            last: Arc::new(LastCheckpoint::default()),
            domains: HashMap::new(),
        };
        reg.register(
            "checkpoints",
            "Checkpoints taken (the initial live round not counted)",
            f.checkpoints.clone(),
        );
        reg.register(
            "checkpoints_over_lmax",
            "Checkpoints whose size was above Lmax",
            f.over_lmax.clone(),
        );
        reg.register(
            "records_dropped",
            "Checkpoint records lost before reaching the controller (sequence gaps, or the save side's dropped count rising)",
            f.records_dropped.clone(),
        );
        reg.register(
            "stalls",
            "Records that came after a stall (no record for several intervals) with none missing",
            f.stalls.clone(),
        );
        reg.register(
            "control_rejected",
            "Control lines the save side refused",
            f.control_rejected.clone(),
        );
        if f.info.disk {
            reg.register_with_unit(
                "disk",
                "Bytes the disk replication sent (--disk)",
                Unit::Bytes,
                f.disk_bytes.clone(),
            );
        }
        reg.register_with_unit(
            "checkpoint_size",
            "Checkpoint size as the policy sees it (--size-metric)",
            Unit::Bytes,
            f.size.clone(),
        );
        reg.register_with_unit(
            "pause",
            "Time the guest was paused for a checkpoint",
            Unit::Seconds,
            f.pause.clone(),
        );
        reg.register_with_unit(
            "checkpoint_duration",
            "Whole checkpoint, suspend to done",
            Unit::Seconds,
            f.duration.clone(),
        );
        reg.register_with_unit(
            "period",
            "Time from one checkpoint's suspend to the next (rows after a gap or stall left out)",
            Unit::Seconds,
            f.period.clone(),
        );
        reg.register_with_unit(
            "interval",
            "Interval the save side's gate paced the last checkpoint for (0: not paced)",
            Unit::Seconds,
            f.interval.clone(),
        );
        reg.register_with_unit(
            "commanded_interval",
            "Interval the controller wants after the last checkpoint",
            Unit::Seconds,
            f.commanded.clone(),
        );
        reg.register(
            "budget_pages",
            "Dirty-page budget commanded to the save side (0: off; present once a budget was set)",
            f.budget.clone(),
        );
        reg.register_with_unit(
            "dirty_rate",
            "Memory dirtied per second over the last period",
            Unit::Other("bytes_per_second".into()),
            f.dirty_rate.clone(),
        );
        reg.register(
            "over_lmax_streak",
            "Consecutive checkpoints above Lmax up to the last one (0: the last was within)",
            f.streak.clone(),
        );
        reg.register(
            "stats_state",
            "State of the stats channel in the last record (1 for the current state)",
            f.stats_state.clone(),
        );
        reg.register(
            "control_state",
            "State of the control channel at the save side's gate in the last record (1 for the current state)",
            f.ctl_state.clone(),
        );
        let lmax = Gauge::<i64>::default();
        lmax.set(i64::try_from(f.info.lmax_bytes).unwrap_or(i64::MAX));
        reg.register_with_unit("lmax", "The policy's Lmax", Unit::Bytes, lmax);
        reg.register(
            "metrics_observations_dropped",
            "Checkpoints the metrics missed because their update thread was behind",
            dropped,
        );
        reg.register_collector(Box::new(Arc::clone(&f.last)));
        (reg, f)
    }

    /// Updates every metric with one record.
    pub fn apply(&mut self, obs: &Observation) {
        let labels = Labels {
            domid: obs.domid,
            name: self.info.name.clone(),
            stream: obs.stream,
        };
        let row = &obs.row;
        let domain = self.domains.entry((obs.domid, obs.stream)).or_default();
        if obs.new_save {
            domain.ctl_rejected = None;
        }
        // Cumulative per save: count the rise (a fall is a new save).
        let rejected_rise = match domain.ctl_rejected {
            Some(prev) => obs.ctl_rejected.saturating_sub(prev),
            None => obs.ctl_rejected,
        };
        domain.ctl_rejected = Some(obs.ctl_rejected);
        self.control_rejected
            .get_or_create(&labels)
            .inc_by(rejected_rise);
        self.records_dropped.get_or_create(&labels).inc_by(obs.gap);
        self.stalls
            .get_or_create(&labels)
            .inc_by(u64::from(obs.gap == 0 && row.gap > 0));
        if self.info.disk {
            self.disk_bytes
                .get_or_create(&labels)
                .inc_by(row.disk_bytes);
        }
        if row.live == 0 {
            self.checkpoints.get_or_create(&labels).inc();
            let over = row.size_bytes > self.info.lmax_bytes;
            self.over_lmax
                .get_or_create(&labels)
                .inc_by(u64::from(over));
            domain.over_lmax_streak = if over { domain.over_lmax_streak + 1 } else { 0 };
            self.size
                .get_or_create(&labels)
                .observe(row.size_bytes as f64);
            self.pause
                .get_or_create(&labels)
                .observe(row.pause_ms / 1e3);
            self.duration
                .get_or_create(&labels)
                .observe(row.checkpoint_ms / 1e3);
            if row.period_ms > 0.0 && row.gap == 0 {
                self.period
                    .get_or_create(&labels)
                    .observe(row.period_ms / 1e3);
                self.dirty_rate
                    .get_or_create(&labels)
                    .set(row.memory_bytes as f64 / (row.period_ms / 1e3));
            }
        }
        self.streak
            .get_or_create(&labels)
            .set(domain.over_lmax_streak);
        self.interval
            .get_or_create(&labels)
            .set(row.interval_ms as f64 / 1e3);
        self.commanded
            .get_or_create(&labels)
            .set(row.next_interval_ms as f64 / 1e3);
        domain.budget_seen |= row.budget_pages != 0;
        if domain.budget_seen {
            self.budget
                .get_or_create(&labels)
                .set(i64::try_from(row.budget_pages).unwrap_or(i64::MAX));
        }
        set_state(&self.stats_state, &labels, STATS_STATES, obs.stats_state);
        set_state(&self.ctl_state, &labels, CTL_STATES, obs.ctl_state);
        self.last.set(labels, obs.at);
    }
}

/// One series per known state, 1 for `current` and 0 for the others;
/// nothing while the records carry no state.
fn set_state(
    family: &Family<StateLabels, Gauge>,
    labels: &Labels,
    states: &[&'static str],
    current: Option<&'static str>,
) {
    let Some(current) = current else {
        return;
    };
    for state in states {
        let key = StateLabels {
            domid: labels.domid,
            name: labels.name.clone(),
            stream: labels.stream,
            state,
        };
        family.get_or_create(&key).set(i64::from(*state == current));
    }
}

/// `last_checkpoint_age_seconds`: computed at each scrape from when the
/// controller last saw a record of each domain.
#[derive(Debug, Default)]
struct LastCheckpoint {
    seen: Mutex<HashMap<Labels, Instant>>,
}

impl LastCheckpoint {
    fn set(&self, labels: Labels, at: Instant) {
        // Only the update and HTTP threads take this lock.
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(labels, at);
        }
    }
}

impl Collector for LastCheckpoint {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let seen: Vec<(Labels, Instant)> = match self.seen.lock() {
            Ok(seen) => seen.iter().map(|(l, t)| (l.clone(), *t)).collect(),
            Err(_) => return Ok(()),
        };
        let now = Instant::now();
        let mut metric = encoder.encode_descriptor(
            "last_checkpoint_age",
            "Seconds since the controller last received a checkpoint record.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (labels, at) in &seen {
            let age_s = now.saturating_duration_since(*at).as_secs_f64();
            ConstGauge::new(age_s).encode(metric.encode_family(labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Row;

    fn obs(seq: u64, size_bytes: u64, ctl_rejected: u64, new_save: bool) -> Observation {
        Observation {
            row: Row {
                seq,
                size_bytes,
                period_ms: 200.0,
                ..Row::default()
            },
            domid: 7,
            stream: "remus",
            ctl_rejected,
            stats_state: Some("ok"),
            ctl_state: Some("fallback"),
            gap: 0,
            new_save,
            at: Instant::now(),
        }
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{series} not in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn cumulative_counts_and_the_streak() {
        let info = RunInfo {
            name: Some("guest".into()),
            disk: false,
            lmax_bytes: 100,
        };
        let (registry, mut f) = Families::new(info, Counter::default());
        // ctl_rejected is per save: 3, 5 -> 5; a new save at 1 -> 6; a
        // fall without a new save counts nothing.
        f.apply(&obs(1, 150, 3, false));
        f.apply(&obs(2, 150, 5, false));
        f.apply(&obs(3, 50, 1, true));
        f.apply(&obs(4, 150, 0, false));
        f.apply(&obs(5, 150, 0, false));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        let l = r#"{domid="7",name="guest",stream="remus"}"#;
        assert_eq!(
            value(&text, &format!("remus_ckpt_control_rejected_total{l}")),
            6.0
        );
        assert_eq!(
            value(&text, &format!("remus_ckpt_checkpoints_total{l}")),
            5.0
        );
        assert_eq!(
            value(&text, &format!("remus_ckpt_checkpoints_over_lmax_total{l}")),
            4.0
        );
        assert_eq!(
            value(&text, &format!("remus_ckpt_over_lmax_streak{l}")),
            2.0
        );
        let state = r#"{domid="7",name="guest",stream="remus",state="fallback"}"#;
        assert_eq!(
            value(&text, &format!("remus_ckpt_control_state{state}")),
            1.0
        );
        let state = r#"{domid="7",name="guest",stream="remus",state="ok"}"#;
        assert_eq!(
            value(&text, &format!("remus_ckpt_control_state{state}")),
            0.0
        );
        assert!(
            !text.contains("remus_ckpt_budget_pages{"),
            "no budget was set"
        );
        assert!(!text.contains("remus_ckpt_disk_bytes_total"), "no --disk");
    }
}
