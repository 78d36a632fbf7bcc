//! `--metrics ADDR`: Prometheus/OpenMetrics metrics of every checkpoint,
//! served at `http://ADDR/metrics` (docs/metrics.md lists them).
//!
//! Three parts, so that scraping never reaches the control path:
//!
//! ```text
//! controller --Observation (try_send)--> update thread -> metric objects
//!                                                 HTTP thread -> encode
//! ```
//!
//! - [`MetricsHandle::observe`] is the controller's only call: it builds a
//!   small [`Observation`] and hands it over with a `try_send` on a
//!   bounded channel. It never waits; an observation that does not fit
//!   (the update thread starved) is counted
//!   (`remus_ckpt_metrics_observations_dropped_total`).
//! - The update thread ([`families`]) keeps the per-domain state (the save
//!   side's cumulative counts, the streak above Lmax) and updates the
//!   `prometheus-client` metric objects.
//! - The HTTP thread ([`server`], `tiny_http`) encodes the registry on
//!   each GET; the encoding is the crate's, in the format the scraper asks
//!   for (OpenMetrics for Prometheus, the 0.0.4 text format otherwise).

mod families;
mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use prometheus_client::metrics::counter::Counter;

use crate::pipeline::Step;
use crate::record::Record;
use crate::row::Row;
use crate::units::Millis;

pub use families::{CTL_STATES, STATS_STATES};

/// Observations waiting for the update thread before they are dropped
/// (and counted).
pub const OBSERVATION_QUEUE: usize = 4096;

#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Serve Prometheus/OpenMetrics metrics at http://ADDR/metrics, e.g.
    /// `127.0.0.1:9477` (docs/metrics.md lists them). Loopback addresses
    /// only, unless --metrics-public.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,

    /// Allow --metrics on an address that is not loopback. The endpoint
    /// has no authentication: anyone who can reach it sees the domain
    /// names and their checkpoint figures.
    #[arg(long, requires = "metrics")]
    pub metrics_public: bool,

    /// Keep serving metrics this long after the run ends (ms, s, ...), so
    /// that a last scrape sees the final counts.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "0s",
        requires = "metrics"
    )]
    pub metrics_linger: Millis,
}

impl MetricsArgs {
    /// The address to serve on, once checked: `None` without --metrics.
    pub fn address(&self) -> Result<Option<SocketAddr>> {
        let Some(addr) = self.metrics else {
            return Ok(None);
        };
        if !addr.ip().is_loopback() && !self.metrics_public {
            bail!(
                "--metrics {addr} is not a loopback address: the endpoint has no \
                 authentication; use 127.0.0.1:PORT (and a scraper on this host, or an \
                 SSH tunnel), or pass --metrics-public to serve it on {addr} anyway"
            );
        }
        Ok(Some(addr))
    }
}

/// What the metrics know about the run from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// The domain's name, when known (`run` has it from xl's command line).
    pub name: Option<String>,
    /// Whether disk replication is counted (--disk).
    pub disk: bool,
    /// The policy's Lmax, bytes.
    pub lmax_bytes: u64,
}

/// One record as the controller saw it: what the update thread needs.
#[derive(Debug, Clone)]
pub struct Observation {
    pub row: Row,
    pub domid: u32,
    pub stream: &'static str,
    /// The save side's cumulative count of control lines it refused.
    pub ctl_rejected: u64,
    /// `stats=` and `ctl=`, as one of [`STATS_STATES`] / [`CTL_STATES`]
    /// (`other` for a value this build does not know); `None`: absent.
    pub stats_state: Option<&'static str>,
    pub ctl_state: Option<&'static str>,
    /// Records missing before this one (counted), and whether the record
    /// began a new save.
    pub gap: u64,
    pub new_save: bool,
    /// When the controller saw it.
    pub at: Instant,
}

/// The controller's end: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct MetricsHandle {
    tx: Sender<Observation>,
    dropped: Counter,
}

impl MetricsHandle {
    /// Hands the record and what the controller made of it to the update
    /// thread without waiting; one that does not fit is counted.
    pub fn observe(&self, rec: &Record, step: &Step, at: Instant) {
        let obs = Observation {
            row: step.row.clone(),
            domid: rec.domid,
            stream: rec.stream.as_str(),
            ctl_rejected: rec.ctl_rejected,
            stats_state: rec.stats_state.as_deref().map(|s| known(STATS_STATES, s)),
            ctl_state: rec.ctl_state.as_deref().map(|s| known(CTL_STATES, s)),
            gap: step.gap,
            new_save: step.new_save,
            at,
        };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(obs) {
            self.dropped.inc();
        }
    }
}

/// `value` as the `&'static str` of `states`, or `other`.
fn known(states: &[&'static str], value: &str) -> &'static str {
    states
        .iter()
        .find(|s| **s == value)
        .copied()
        .unwrap_or("other")
}

/// The running exporter: its update and HTTP threads.
pub struct Exporter {
    handle: Option<MetricsHandle>,
    addr: SocketAddr,
    update: JoinHandle<()>,
    http: server::Server,
}

impl Exporter {
    /// Binds `addr` and starts both threads.
    pub fn start(addr: SocketAddr, info: RunInfo) -> Result<Exporter> {
        let (tx, rx) = crossbeam_channel::bounded(OBSERVATION_QUEUE);
        let dropped = Counter::default();
        let (registry, families) = families::Families::new(info, dropped.clone());
        let http = server::Server::start(addr, registry)?;
        let update = spawn_update(families, rx)?;
        eprintln!(
            "remus-ckpt: metrics at http://{}/metrics",
            http.local_addr()
        );
        Ok(Exporter {
            handle: Some(MetricsHandle { tx, dropped }),
            addr: http.local_addr(),
            update,
            http,
        })
    }

    /// Starts the exporter when --metrics was given.
    pub fn from_args(args: &MetricsArgs, info: RunInfo) -> Result<Option<Exporter>> {
        args.address()?
            .map(|addr| Exporter::start(addr, info))
            .transpose()
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The handle for the controller (the exporter keeps none once taken,
    /// so the update thread ends when the controller's handle drops).
    pub fn handle(&mut self) -> Option<MetricsHandle> {
        self.handle.take()
    }

    /// Waits for the update thread to take every observation (the
    /// controller's handle must be gone), serves for `linger` more (or
    /// until `stop`), then stops the server.
    pub fn finish(mut self, linger: Duration, stop: &AtomicBool) -> Result<()> {
        drop(self.handle.take());
        self.update
            .join()
            .map_err(|_| anyhow!("the metrics update thread panicked"))?;
        let until = Instant::now() + linger;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
        }
        self.http.stop()
    }
}

/// Lowers the calling thread's CPU priority (nice 10): on a busy dom0
/// the metrics threads yield to the controller and the control thread.
pub(crate) fn yield_to_control() {
    // SAFETY: gettid and setpriority take plain integers and only act on
    // this thread's scheduling priority; a failure (not permitted) is
    // harmless and ignored.
    unsafe {
        if let Ok(tid) = libc::id_t::try_from(libc::gettid()) {
            libc::setpriority(libc::PRIO_PROCESS, tid, 10);
        }
    }
}

fn spawn_update(
    mut families: families::Families,
    rx: Receiver<Observation>,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("metrics-update".into())
        .spawn(move || {
            yield_to_control();
            for obs in &rx {
                families.apply(&obs);
            }
        })
        .context("cannot start the metrics update thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(addr: &str, public: bool) -> MetricsArgs {
        MetricsArgs {
            metrics: Some(addr.parse().unwrap()),
            metrics_public: public,
            metrics_linger: Millis(Duration::ZERO),
        }
    }

    #[test]
    fn only_loopback_without_public() {
        assert!(args("127.0.0.1:9477", false).address().unwrap().is_some());
        assert!(args("[::1]:9477", false).address().unwrap().is_some());
        let err = args("0.0.0.0:9477", false).address().unwrap_err();
        assert!(err.to_string().contains("--metrics-public"), "{err}");
        assert!(args("192.0.2.1:9477", false).address().is_err());
        assert!(args("0.0.0.0:9477", true).address().unwrap().is_some());
    }

    #[test]
    fn unknown_states_are_other() {
        assert_eq!(known(CTL_STATES, "fallback"), "fallback");
        assert_eq!(known(CTL_STATES, "x\ny"), "other");
    }
}
