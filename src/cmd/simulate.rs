//! `remus-ckpt simulate`: the whole loop without Xen.
//!
//! Real time (the default): a thread plays the save helper through the
//! real C library, records cross a real stats FIFO, the consumer steers
//! through the real control FIFO. `--fast`: the same domain and policy in
//! virtual time, deterministic for its seed. `--compare`: one fast run per
//! policy on the identical workload, with a report table and a plot.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::disk::{DiskArgs, DiskBackends, DiskMeter, SimulatedDiskHandle};
use crate::fifo;
use crate::metrics::MetricsArgs;
use crate::pipeline::{self, Controller};
use crate::plot::{self, Panel, PlotOptions};
use crate::policy::compare::{self as compare_spec, CompareRun, CompareSpec};
use crate::policy::{FixedBudget, Policy, PolicyArgs, PolicyKind};
use crate::report::{self, Format, RunSummary};
use crate::row::CsvWriter;
use crate::row::Row;
use crate::source::sim::domain::{Domain, DomainArgs};
use crate::source::sim::drive;
use crate::source::sim::oracle::{self, Oracle};
use crate::source::sim::workload::{Workload, WorkloadArgs};
use crate::source::stats_fifo::{self, OnEof};
use crate::units::{Bytes, Millis};

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,

    #[command(flatten)]
    pub workload: WorkloadArgs,

    #[command(flatten)]
    pub domain: DomainArgs,

    /// Simulated disk replication: `--disk drbd:sim` adds a disk writer
    /// whose bytes count as the DRBD side of each checkpoint.
    #[command(flatten)]
    pub disk: DiskArgs,

    /// Real time only (not with --fast or --compare).
    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// With --disk drbd:sim: bytes per second the guest writes to disk at
    /// the workload's high rate (scaled with the dirty rate).
    #[arg(long, value_name = "SIZE", default_value = "64MiB")]
    pub disk_rate: Bytes,

    /// How long to run (simulated time with --fast).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub duration: Millis,

    /// Virtual time: no sleeping, deterministic for --seed.
    #[arg(long)]
    pub fast: bool,

    /// Experiments: a FIXED dirty-page budget for the save side's gate
    /// (pages of 4 KiB; 0: off) beside the policy's intervals, which cap
    /// the wait (e.g. `--policy fixed --interval 200ms`). The gate probes
    /// the dirty count while it waits and suspends before a checkpoint
    /// would exceed it. At most 2^40. `--policy budget` chooses its own
    /// budget from --lmax and takes no --budget-pages.
    #[arg(long, value_name = "PAGES", default_value_t = 0)]
    pub budget_pages: u64,

    /// Where to write one row per checkpoint.
    #[arg(long, value_name = "FILE", default_value = "remus-ckpt-simulate.csv")]
    pub csv: PathBuf,

    /// Compare policies on the identical workload (implies --fast), e.g.
    /// `fixed:25ms,fixed:100ms,threshold,target,byterate,budget`; also
    /// `sweep:FROM..TO[:N]` (N fixed intervals on a log scale, default 8;
    /// `sweep` alone spans --tmin..--tmax) and `oracle` (the offline
    /// optimum; the report then gives each run's checkpoints against it).
    #[arg(long, value_name = "POLICY,...", value_delimiter = ',')]
    pub compare: Vec<CompareSpec>,

    /// With --compare: directory for the CSVs, report.md and compare.png.
    #[arg(long, value_name = "DIR", default_value = "remus-ckpt-compare")]
    pub out_dir: PathBuf,

    /// No live status line.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: &SimulateArgs) -> Result<()> {
    args.policy.validate()?;
    if args.budget_pages > crate::ffi::REMUS_CKPT_BUDGET_MAX_PAGES {
        bail!(
            "--budget-pages must be at most 2^40 (got {})",
            args.budget_pages
        );
    }
    if args.metrics.metrics.is_some() && (args.fast || !args.compare.is_empty()) {
        bail!("--metrics needs real time: leave out --fast and --compare");
    }
    let budget_named = args.policy.policy == PolicyKind::Budget
        || args
            .compare
            .iter()
            .any(|c| matches!(c, CompareSpec::Policy(p) if p.kind == PolicyKind::Budget));
    if args.budget_pages != 0 && budget_named {
        bail!(
            "--budget-pages fixes the budget, the budget policy chooses its own: \
             drop --budget-pages, or use another policy with it"
        );
    }
    if args.disk.disk.iter().any(|d| !d.is_simulated()) {
        bail!("simulate only takes the simulated disk: --disk drbd:sim");
    }
    let workload = Workload::new(
        &args.workload,
        crate::source::sim::domain::PAGE_SIZE,
        args.duration.0.as_secs_f64(),
    )?;
    let args = &ends_with_the_trace(args, &workload);
    let duration_s = args.duration.0.as_secs_f64();
    let domain = Domain::new(&args.domain, workload)?;
    if !args.compare.is_empty() {
        return compare(args, &domain);
    }
    let policy = with_fixed_budget(args.policy.build()?, args.budget_pages);
    eprintln!(
        "remus-ckpt: simulating {} for {:.0}s{} with policy {} (Lmin {}, Lmax {}, size metric {:?}); CSV -> {}",
        args.workload.workload,
        duration_s,
        if args.fast { " of virtual time" } else { "" },
        policy.name(),
        args.policy.lmin,
        args.policy.lmax,
        args.policy.size_metric,
        args.csv.display()
    );
    let controller = Controller::new(policy, args.policy.size_metric);
    if args.fast {
        run_fast(args, &domain, controller, &args.csv)?;
    } else {
        run_realtime(args, &domain, controller)?;
    }
    print_summary(&[(label_of(&args.csv), args.csv.clone())], &args.policy)
}

/// `policy`, with the fixed --budget-pages beside its intervals if given.
fn with_fixed_budget(policy: Box<dyn Policy>, budget_pages: u64) -> Box<dyn Policy> {
    if budget_pages == 0 {
        policy
    } else {
        Box::new(FixedBudget::new(policy, budget_pages))
    }
}

/// A trace shorter than --duration ends the run (no rate is invented past
/// its end); says so on stderr.
fn ends_with_the_trace(args: &SimulateArgs, workload: &Workload) -> SimulateArgs {
    let mut args = args.clone();
    if let Some(end_s) = workload.end_s() {
        if end_s < args.duration.0.as_secs_f64() {
            eprintln!(
                "remus-ckpt: note: the trace covers {end_s:.1}s, so the run stops there \
                 instead of at --duration {} (--loop replays it)",
                args.duration
            );
            args.duration = Millis(std::time::Duration::from_secs_f64(end_s));
        }
    }
    args
}

/// Disk bytes the simulated guest writes per page it dirties: --disk-rate
/// at the workload's high rate, so disk-heavy phases are the memory-heavy
/// ones.
fn disk_bytes_per_page(args: &SimulateArgs) -> f64 {
    args.disk_rate.0 as f64 / args.workload.high_rate.max(args.workload.rate).max(1.0)
}

/// Bytes the simulated guest wrote to its disk in [from_s, to_s).
fn epoch_disk_bytes(domain: &Domain, per_page: f64, from_s: f64, to_s: f64) -> u64 {
    crate::units::round_to_u64_saturating(domain.workload.writes(from_s, to_s) * per_page)
}

fn disk_meter(args: &SimulateArgs) -> Result<Option<(DiskMeter, SimulatedDiskHandle)>> {
    if args.disk.disk.is_empty() {
        return Ok(None);
    }
    let handle = SimulatedDiskHandle::new();
    let options = DiskBackends {
        simulated: Some(handle.clone()),
        ..DiskBackends::default()
    };
    Ok(Some((DiskMeter::open(&args.disk.disk, &options)?, handle)))
}

fn run_fast(
    args: &SimulateArgs,
    domain: &Domain,
    mut controller: Controller,
    csv: &Path,
) -> Result<()> {
    let mut sink = CsvWriter::create(csv)?;
    let mut disk = disk_meter(args)?;
    let per_page = disk_bytes_per_page(args);
    drive::run_virtual(
        domain,
        args.duration.0.as_secs_f64(),
        &mut controller,
        |from_s, to_s| match &mut disk {
            Some((meter, handle)) => {
                handle.add_written_bytes(epoch_disk_bytes(domain, per_page, from_s, to_s));
                meter.on_checkpoint()
            }
            None => Default::default(),
        },
        |row| sink.write(&row),
    )?;
    sink.finish()
}

fn run_realtime(args: &SimulateArgs, domain: &Domain, controller: Controller) -> Result<()> {
    let stop = super::stop_on_signals()?;
    let dir = tempfile::Builder::new()
        .prefix("remus-ckpt-sim.")
        .tempdir()
        .context("cannot create a runtime directory")?;
    let stats = dir.path().join("stats.fifo");
    let control = dir.path().join("control.fifo");
    fifo::ensure_private_fifo(&stats)?;
    fifo::ensure_private_fifo(&control)?;

    let mut exporter = super::watch::start_metrics(&args.metrics, &args.policy, &args.disk, None)?;
    let disk = disk_meter(args)?;
    let disk_handle = disk.as_ref().map(|(_, h)| h.clone());
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let reader_stop = Arc::new(AtomicBool::new(false));
    let reader = stats_fifo::spawn(stats.clone(), OnEof::Stop, Arc::clone(&reader_stop), tx)?;

    let duration = args.duration.0;
    let sim_domain = domain.clone();
    let sim_stop = Arc::clone(&stop);
    let per_page = disk_bytes_per_page(args);
    let sim = std::thread::Builder::new()
        .name("sim-domain".into())
        .spawn(move || {
            let on_epoch = |from_s: f64, to_s: f64| {
                if let Some(h) = &disk_handle {
                    h.add_written_bytes(epoch_disk_bytes(&sim_domain, per_page, from_s, to_s));
                }
            };
            drive::run_realtime(&sim_domain, duration, &stats, &control, &sim_stop, on_epoch)
        })
        .context("cannot start the simulated domain")?;

    let cfg = pipeline::Config {
        controller,
        lmax_bytes: args.policy.lmax.0,
        csv: Some(args.csv.clone()),
        control: Some(dir.path().join("control.fifo")),
        disk: disk.map(|(meter, _)| meter),
        quiet: args.quiet,
        metrics: exporter.as_mut().and_then(|e| e.handle()),
    };
    let outcome = pipeline::run(cfg, rx);
    let taken = sim
        .join()
        .map_err(|_| anyhow::anyhow!("the simulated domain panicked"))??;
    reader_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the stats reader panicked"))??;
    let outcome = outcome?;
    super::watch::finish_metrics(exporter, &args.metrics)?;
    if outcome.checkpoints + 1 < taken {
        eprintln!(
            "remus-ckpt: warning: the domain took {taken} checkpoints but {} records arrived ({} lost)",
            outcome.checkpoints + 1,
            outcome.lost
        );
    }
    Ok(())
}

fn label_of(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Reads back each run's CSV (the summary describes what was written).
fn read_runs(runs: &[(String, PathBuf)]) -> Result<Vec<(String, Vec<Row>)>> {
    runs.iter()
        .map(|(label, path)| Ok((label.clone(), crate::row::read_csv(path)?)))
        .collect()
}

fn summaries(runs: &[(String, Vec<Row>)], policy: &PolicyArgs) -> Vec<RunSummary> {
    runs.iter()
        .map(|(label, rows)| report::summarize(label, rows, policy.lmin.0, policy.lmax.0))
        .collect()
}

/// Prints the summary table of runs on disk, reading each CSV as a stream
/// (a long `--fast` run writes millions of rows).
fn print_summary(runs: &[(String, PathBuf)], policy: &PolicyArgs) -> Result<()> {
    let summaries = runs
        .iter()
        .map(|(label, path)| {
            report::summarize_csv(path, label, policy.lmin.0, policy.lmax.0, false)
        })
        .collect::<Result<Vec<_>>>()?;
    super::print_stdout(format_args!(
        "{}\n",
        report::render(&summaries, Format::Table)
    ))?;
    for (label, path) in runs {
        print_budget_summary(label, path)?;
    }
    Ok(())
}

/// How a run's gates ended and what its probes cost, counted as the CSV
/// streams by.
#[derive(Debug, Default)]
struct GateTally {
    with_budget: bool,
    budget: u64,
    interval: u64,
    control: u64,
    none: u64,
    probes: u64,
    probe_ms: f64,
    /// t_s of the last row: the run time.
    last_t_s: f64,
}

impl GateTally {
    fn add(&mut self, row: &Row) {
        self.last_t_s = row.t_s;
        if row.live != 0 {
            return;
        }
        self.with_budget |= row.budget_pages != 0 || row.probes != 0;
        match row.trigger.as_str() {
            "budget" => self.budget += 1,
            "interval" => self.interval += 1,
            "control" => self.control += 1,
            "none" => self.none += 1,
            _ => {}
        }
        self.probes = self.probes.saturating_add(row.probes);
        self.probe_ms += row.probe_ms;
    }
}

/// With a budget: how the gates ended and what the probes cost (the
/// guest is paused in each probe). One more streaming pass over the CSV.
fn print_budget_summary(label: &str, path: &Path) -> Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open checkpoint CSV {}", path.display()))?;
    let mut tally = GateTally::default();
    crate::row::for_each_row(file, &path.display().to_string(), |row| tally.add(&row))?;
    if tally.with_budget {
        // Run time: from the first record's suspend to the last one's.
        let run_ms = tally.last_t_s * 1e3;
        let share = if run_ms > 0.0 {
            format!("{:.3} %", 100.0 * tally.probe_ms / run_ms)
        } else {
            "-".to_string()
        };
        super::print_stdout(format_args!(
            "{label}: gates ended by budget {}, interval {}, control {}, none {}; \
             {} probes, {:.3} ms of guest pause in probes ({share} of {:.1} s run time)\n",
            tally.budget,
            tally.interval,
            tally.control,
            tally.none,
            tally.probes,
            tally.probe_ms,
            run_ms / 1e3
        ))?;
    }
    Ok(())
}

/// File-name form of a run's label: `fixed:25ms` -> `fixed-25ms`.
fn file_name(run: &CompareRun) -> String {
    run.label().replace(':', "-")
}

/// The policy of one compared run; the oracle plans on `domain`.
fn compare_policy(
    args: &SimulateArgs,
    domain: &Domain,
    run: &CompareRun,
) -> Result<Box<dyn Policy>> {
    let spec = match run {
        CompareRun::Policy(spec) => spec,
        // The oracle plans every interval itself: no budget (a fixed one
        // would end its waits early).
        CompareRun::Oracle => {
            args.policy.validate()?;
            let per_page = disk_bytes_per_page(args);
            let disk_domain = domain.clone();
            let with_disk = !args.disk.disk.is_empty();
            // The meter counts whole KiB of a running total: an epoch's
            // count is at most 1 KiB above its bytes.
            let disk: oracle::DiskModel = Box::new(move |from_s, to_s| {
                if with_disk {
                    epoch_disk_bytes(&disk_domain, per_page, from_s, to_s) + 1024
                } else {
                    0
                }
            });
            return Ok(Box::new(Oracle::new(
                domain.clone(),
                args.policy.size_metric,
                disk,
                args.policy.lmax.0,
                args.policy.clamp(),
                args.policy.initial_ms(),
            )));
        }
    };
    Ok(with_fixed_budget(
        args.policy.build_spec(spec)?,
        args.budget_pages,
    ))
}

fn compare(args: &SimulateArgs, domain: &Domain) -> Result<()> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let mut runs = Vec::new();
    for run in compare_spec::expand(&args.compare, &args.policy)? {
        let policy = compare_policy(args, domain, &run)?;
        let path = args.out_dir.join(format!("{}.csv", file_name(&run)));
        let controller = Controller::new(policy, args.policy.size_metric);
        run_fast(args, domain, controller, &path)?;
        runs.push((run.label(), path));
    }
    let plotted = read_runs(&runs)?;
    let summaries = summaries(&plotted, &args.policy);
    let table = report::render(&summaries, Format::Table);
    let vs_oracle = oracle::against_oracle(&summaries);
    super::print_stdout(format_args!(
        "workload {} (seed {}), {:.0}s of virtual time, Lmin {}, Lmax {}\n{table}{}\n",
        args.workload.workload,
        args.workload.seed,
        args.duration.0.as_secs_f64(),
        args.policy.lmin,
        args.policy.lmax,
        vs_oracle.as_ref().map_or(String::new(), |t| t.table())
    ))?;
    for (label, path) in &runs {
        print_budget_summary(label, path)?;
    }
    let md = args.out_dir.join("report.md");
    let mut markdown = report::render(&summaries, Format::Markdown);
    if let Some(t) = &vs_oracle {
        markdown.push('\n');
        markdown.push_str(&t.markdown());
    }
    std::fs::write(&md, markdown).with_context(|| format!("cannot write {}", md.display()))?;

    let panels = vec![Panel::Size, Panel::Interval, Panel::Pause, Panel::Dirty];
    let opts = PlotOptions {
        height_px: plot::default_height_px(panels.len()),
        panels,
        lmin_bytes: args.policy.lmin.0,
        lmax_bytes: args.policy.lmax.0,
        width_px: plot::DEFAULT_WIDTH_PX,
        title: Some(format!(
            "Policies on the {} workload (seed {})",
            args.workload.workload.short_name(),
            args.workload.seed
        )),
        include_live: false,
    };
    let png = args.out_dir.join("compare.png");
    plot::plot(&plotted, &opts, &png)?;
    eprintln!(
        "remus-ckpt: wrote {} CSVs, {} and {} in {}",
        runs.len(),
        md.display(),
        png.display(),
        args.out_dir.display()
    );
    Ok(())
}
