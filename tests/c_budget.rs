//! The dirty-page budget of csrc/remus_ckpt.c's gate, driven through
//! `remus_ckpt::ffi` with a fake clock and a fake probe (Rust closures
//! behind the C callbacks), so that no test depends on real time: the
//! clock only moves when the gate sleeps, a probe costs, or the test says
//! the guest was suspended.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use remus_ckpt::ffi::{self, Ckpt, CkptStream, Clock, Mark, Probe};
use remus_ckpt::record::{self, Trigger};

const MS: u64 = 1_000_000;
const US: u64 = 1_000;
/// The C gate never probes more often than this (PROBE_MIN_PERIOD_NS).
const MIN_PERIOD_FLOOR_NS: u64 = MS;

/// The fake guest and clock, shared by the test and the C callbacks.
struct World {
    t_ns: u64,
    /// When the guest last resumed: its dirty count grows from 0 there.
    resumed_ns: u64,
    rate_pages_per_ms: u64,
    working_set_pages: u64,
    probe_cost_ns: u64,
    /// Probe calls seen (whatever the C side counts).
    probe_calls: u64,
    /// Times the probe fails from now on (u64::MAX: always).
    failures_left: u64,
    /// Sleeps asked by the gate (deadlines).
    sleeps: Vec<u64>,
    /// Written to the control pipe at the first sleep of a gate.
    inject_at_sleep: Option<(File, String)>,
}

impl World {
    fn dirty(&self) -> u64 {
        let ran_ns = u128::from(self.t_ns.saturating_sub(self.resumed_ns));
        let pages = ran_ns * u128::from(self.rate_pages_per_ms) / u128::from(MS);
        u64::try_from(pages)
            .unwrap_or(u64::MAX)
            .min(self.working_set_pages)
    }
}

type Shared = Arc<Mutex<World>>;

struct FakeClock(Shared);

impl Clock for FakeClock {
    fn now_ns(&mut self) -> u64 {
        self.0.lock().unwrap().t_ns
    }

    fn sleep_until(&mut self, deadline_ns: u64) {
        let mut w = self.0.lock().unwrap();
        w.sleeps.push(deadline_ns);
        if let Some((mut f, line)) = w.inject_at_sleep.take() {
            // The control line arrives at once; the sleep is cut short.
            f.write_all(line.as_bytes()).unwrap();
            return;
        }
        w.t_ns = w.t_ns.max(deadline_ns);
    }
}

struct FakeProbe(Shared);

impl Probe for FakeProbe {
    fn dirty_pages(&mut self) -> Option<u64> {
        let mut w = self.0.lock().unwrap();
        w.probe_calls += 1;
        // The count is taken while the guest is paused, at the start.
        let dirty = w.dirty();
        w.t_ns += w.probe_cost_ns;
        if w.failures_left > 0 {
            w.failures_left = w.failures_left.saturating_sub(1);
            return None;
        }
        Some(dirty)
    }
}

/// A rc whose control is a pipe the test writes, on the fake clock.
struct Rig {
    ckpt: Ckpt,
    world: Shared,
    control: File,
    _control_read: OwnedFd,
    /// Suspend latency the fake save loop takes (trigger -> suspended).
    suspend_ns: u64,
}

fn pipe() -> (OwnedFd, File) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created by pipe2 and are owned by no one
    // else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

impl Rig {
    fn new(stream: CkptStream, with_probe: bool) -> Rig {
        use std::os::fd::AsRawFd;
        let (read, control) = pipe();
        let spec = format!("fd:{}", read.as_raw_fd());
        let mut ckpt = Ckpt::open_with(7, stream, 4096, None, Some(&spec))
            .unwrap()
            .expect("configured with a control fd");
        let world = Arc::new(Mutex::new(World {
            t_ns: 1_000 * MS,
            resumed_ns: 1_000 * MS,
            rate_pages_per_ms: 100,
            working_set_pages: u64::MAX,
            probe_cost_ns: 20 * US,
            probe_calls: 0,
            failures_left: 0,
            sleeps: Vec::new(),
            inject_at_sleep: None,
        }));
        ckpt.set_clock(Box::new(FakeClock(Arc::clone(&world))));
        if with_probe {
            ckpt.set_probe(Box::new(FakeProbe(Arc::clone(&world))));
        }
        Rig {
            ckpt,
            world,
            control: control.try_clone().unwrap(),
            _control_read: read,
            suspend_ns: 2 * MS,
        }
    }

    fn command(&mut self, lines: &str) {
        self.control.write_all(lines.as_bytes()).unwrap();
    }

    fn w(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    /// One checkpoint as Xen's hooks make it; returns the record and the
    /// dirty count the guest had when it was paused.
    fn checkpoint(&mut self, live: bool) -> (ffi::remus_ckpt_record, u64) {
        self.ckpt.gate(live);
        self.w().t_ns += self.suspend_ns;
        let dirty_at_pause = self.w().dirty();
        self.ckpt.mark(Mark::Suspended);
        self.ckpt.dirty(dirty_at_pause, 0);
        self.w().t_ns += MS;
        self.ckpt.mark(Mark::Sent);
        self.ckpt.mark(Mark::Resumed);
        {
            let mut w = self.w();
            w.resumed_ns = w.t_ns;
        }
        self.ckpt.emit();
        (self.ckpt.last().expect("a record"), dirty_at_pause)
    }

    /// The live round and one paced checkpoint, so that the gate has a
    /// previous checkpoint and suspend latency to work from.
    fn warm_up(&mut self) {
        self.checkpoint(true);
        self.checkpoint(false);
    }
}

fn line_of(rec: &ffi::remus_ckpt_record) -> String {
    ffi::format_record(rec).expect("the record fits")
}

#[test]
fn the_budget_ends_the_wait_before_the_count_reaches_it() {
    let mut rig = Rig::new(CkptStream::Remus, true);
    rig.command("interval_ms=100\n");
    rig.warm_up();
    rig.command("budget_pages=3000\n");
    for _ in 0..5 {
        let (rec, dirty_at_pause) = rig.checkpoint(false);
        // 100 pages/ms: the budget is 30 ms of dirtying, the interval 100.
        assert_eq!(
            rec.trigger,
            ffi::remus_ckpt_trigger_REMUS_CKPT_TRIGGER_BUDGET
        );
        assert!(dirty_at_pause <= 3000, "paused at {dirty_at_pause} pages");
        // The rule ends the wait when dirty + rate * (lat + min_period)
        // >= budget, lat = 2 ms, min_period = max(1 ms, 100 x 20 us) =
        // 2 ms: so at 2600 pages or more, and at most one probe period
        // (2 ms, 200 pages) earlier than needed.
        assert!(
            (2400..=3000).contains(&rec.dirty_at_trigger),
            "dirty_at_trigger {}",
            rec.dirty_at_trigger
        );
        assert!(dirty_at_pause >= rec.dirty_at_trigger);
        assert!(rec.probes >= 2, "probes {}", rec.probes);
        assert_eq!(rec.probe_ns, rec.probes * 20 * US, "probe time measured");
        assert!(rec.gate_wait_ns < 100 * MS);
        let line = line_of(&rec);
        assert!(line.contains(" trigger=budget dirty_at_trigger="), "{line}");
        let parsed = record::parse_line(&line).unwrap();
        assert_eq!(parsed.trigger, Trigger::Budget);
        assert_eq!(parsed.budget_pages, 3000);
        assert_eq!(parsed.probes, rec.probes);
    }
}

#[test]
fn the_interval_caps_when_the_count_never_reaches_the_budget() {
    let mut rig = Rig::new(CkptStream::Remus, true);
    rig.w().working_set_pages = 1000;
    rig.command("interval_ms=200\nbudget_pages=5000\n");
    rig.warm_up();
    let (rec, _) = rig.checkpoint(false);
    assert_eq!(
        rec.trigger,
        ffi::remus_ckpt_trigger_REMUS_CKPT_TRIGGER_INTERVAL
    );
    assert_eq!(rec.interval_ms, 200);
    assert_eq!(
        rec.dirty_at_trigger, 1000,
        "the last probe saw the working set"
    );
    let prev = rig.ckpt.last().unwrap();
    let (next, _) = rig.checkpoint(false);
    assert_eq!(
        next.t_suspend - prev.t_suspend,
        200 * MS,
        "the deadline is kept exactly"
    );
    // Probe rate: consecutive probes are at least min_period apart.
    for r in [rec, next] {
        assert!(
            r.probes <= r.gate_wait_ns / MIN_PERIOD_FLOOR_NS + 1,
            "{} probes in {} ns",
            r.probes,
            r.gate_wait_ns
        );
        // min_period >= 100 x the mean cost: probes take <= ~1 % of the wait.
        assert!(r.probe_ns * 100 <= r.gate_wait_ns + 100 * 20 * US);
    }
    // A flat count: probes back off to max_period = min(interval / 4,
    // 4 x min_period) = 8 ms: about 200 / 8 + the climb to it, far from
    // the 200 a 1 ms period would make.
    assert!(next.probes <= 30, "{} probes", next.probes);
}

#[test]
fn probe_rate_bound_holds_when_probes_are_expensive() {
    let mut rig = Rig::new(CkptStream::Remus, true);
    // 1 ms per probe: min_period is 100 ms, longer than interval / 4.
    rig.w().probe_cost_ns = MS;
    rig.w().rate_pages_per_ms = 1;
    rig.command("interval_ms=1000\nbudget_pages=100000\n");
    rig.warm_up();
    for _ in 0..3 {
        let (rec, _) = rig.checkpoint(false);
        let min_period = 100 * MS;
        assert!(
            rec.probes <= rec.gate_wait_ns / min_period + 1,
            "{} probes in {} ns",
            rec.probes,
            rec.gate_wait_ns
        );
        assert_eq!(
            rec.trigger,
            ffi::remus_ckpt_trigger_REMUS_CKPT_TRIGGER_INTERVAL
        );
    }
}

#[test]
fn a_failing_probe_falls_back_to_the_interval() {
    let mut rig = Rig::new(CkptStream::Remus, true);
    rig.command("interval_ms=100\nbudget_pages=1000\n");
    rig.warm_up();
    rig.w().failures_left = u64::MAX;
    let calls_before = rig.w().probe_calls;
    let (rec, _) = rig.checkpoint(false);
    assert_eq!(
        rec.trigger,
        ffi::remus_ckpt_trigger_REMUS_CKPT_TRIGGER_INTERVAL
    );
    assert_eq!(rec.probes, 1, "no second probe after a failure");
    assert_eq!(rig.w().probe_calls - calls_before, 1);
    assert_eq!(rec.dirty_at_trigger, 0);
    assert!(rec.probe_errors >= 1);
    let errors = rec.probe_errors;
    // Next checkpoint: probing is tried again, and works again.
    rig.w().failures_left = 0;
    let (rec, _) = rig.checkpoint(false);
    assert_eq!(rec.probe_errors, errors, "counted once per failure");
    assert_eq!(
        rec.trigger,
        ffi::remus_ckpt_trigger_REMUS_CKPT_TRIGGER_BUDGET
    );
    assert!(line_of(&rec).contains(&format!(" probe_errors={errors}")));
}

#[test]
fn no_probe_call_without_a_budget_or_a_paced_gate() {
    // A probe but no budget: never called, records as before budgets.
    let mut rig = Rig::new(CkptStream::Remus, true);
    rig.command("interval_ms=50\n");
    rig.warm_up();
    for _ in 0..3 {
        let (rec, _) = rig.checkpoint(false);
        assert_eq!(rec.probes, 0);
        assert!(!line_of(&rec).contains("trigger="), "{}", line_of(&rec));
    }
    assert_eq!(rig.w().probe_calls, 0);
    // budget_pages=0 turns a budget off again.
    rig.command("budget_pages=500\n");
    rig.checkpoint(false);
    let calls = rig.w().probe_calls;
    assert!(calls > 0);
    rig.command("budget_pages=0\n");
    let (rec, _) = rig.checkpoint(false);
    assert_eq!(rig.w().probe_calls, calls);
    assert_eq!(rec.budget_pages, 0);

    // A budget on COLO, or in the live round: not paced, never probed.
    let mut colo = Rig::new(CkptStream::Colo, true);
    colo.command("interval_ms=50\nbudget_pages=10\n");
    colo.warm_up();
    let (rec, _) = colo.checkpoint(false);
    assert_eq!(colo.w().probe_calls, 0);
    assert_eq!(rec.trigger, ffi::remus_ckpt_trigger_REMUS_CKPT_TRIGGER_NONE);
    assert!(
        line_of(&rec).contains(" trigger=none "),
        "budget is commanded"
    );

    // A budget without a probe (a Xen without the PEEK hook): the interval.
    let mut bare = Rig::new(CkptStream::Remus, false);
    bare.command("interval_ms=50\nbudget_pages=10\n");
    bare.warm_up();
    let (rec, _) = bare.checkpoint(false);
    assert_eq!(
        rec.trigger,
        ffi::remus_ckpt_trigger_REMUS_CKPT_TRIGGER_INTERVAL
    );
    assert_eq!((rec.probes, rec.budget_pages), (0, 10));
}

#[test]
fn a_control_line_that_moves_the_deadline_into_the_past() {
    let mut rig = Rig::new(CkptStream::Remus, false);
    rig.command("interval_ms=500\nbudget_pages=1\n");
    rig.warm_up();
    let writer = rig.control.try_clone().unwrap();
    rig.w().inject_at_sleep = Some((writer, "interval_ms=1\n".into()));
    let (rec, _) = rig.checkpoint(false);
    assert_eq!(
        rec.trigger,
        ffi::remus_ckpt_trigger_REMUS_CKPT_TRIGGER_CONTROL
    );
    assert_eq!(rec.interval_ms, 1);
    let (rec, _) = rig.checkpoint(false);
    assert_eq!(
        rec.trigger,
        ffi::remus_ckpt_trigger_REMUS_CKPT_TRIGGER_NONE,
        "1 ms passed during the previous checkpoint: no wait"
    );
}

fn parse_kv(line: &str) -> Option<(u32, u64)> {
    let (mut key, mut value) = (0u32, 0u64);
    // SAFETY: line points to line.len() readable bytes; key and value are
    // valid out-pointers.
    let r = unsafe {
        ffi::remus_ckpt_parse_control_kv(line.as_ptr().cast(), line.len(), &mut key, &mut value)
    };
    (r == 0).then_some((key, value))
}

#[test]
fn budget_pages_control_lines() {
    let budget = ffi::remus_ckpt_ctl_key_REMUS_CKPT_CTL_BUDGET_PAGES;
    let interval = ffi::remus_ckpt_ctl_key_REMUS_CKPT_CTL_INTERVAL_MS;
    let max = ffi::REMUS_CKPT_BUDGET_MAX_PAGES;
    assert_eq!(max, 1 << 40);
    let valid: &[(&str, u32, u64)] = &[
        ("budget_pages=0", budget, 0),
        ("budget_pages=1", budget, 1),
        ("budget_pages=25600", budget, 25600),
        ("budget_pages=1099511627776", budget, max),
        ("budget_pages=7 \t\r", budget, 7),
        ("interval_ms=1", interval, 1),
        ("interval_ms=60000", interval, 60000),
    ];
    for (line, key, value) in valid {
        assert_eq!(parse_kv(line), Some((*key, *value)), "{line:?}");
    }
    let invalid = [
        "budget_pages=",
        "budget_pages=00",
        "budget_pages=01",
        "budget_pages=-1",
        "budget_pages=+1",
        "budget_pages=1099511627777",
        "budget_pages=18446744073709551616",
        "budget_pages=99999999999999999999999",
        "budget_pages=1x",
        "budget_pages=1 2",
        "budget_pages =1",
        " budget_pages=1",
        "BUDGET_PAGES=1",
        "budget_pages",
        "budget_pages=0x10",
        "interval_ms=0",
        "interval_ms=60001",
        "",
    ];
    for line in invalid {
        assert_eq!(parse_kv(line), None, "{line:?}");
    }
    // The interval-only parser keeps its contract: budget lines are 0.
    let line = "budget_pages=5";
    // SAFETY: line points to line.len() readable bytes.
    let v = unsafe { ffi::remus_ckpt_parse_control(line.as_ptr().cast(), line.len()) };
    assert_eq!(v, 0);
}

#[test]
fn budget_lines_count_and_the_last_valid_one_wins() {
    let mut rig = Rig::new(CkptStream::Remus, true);
    rig.command("interval_ms=100\n");
    rig.warm_up();
    let before = rig.ckpt.last().unwrap().ctl_rejected;
    rig.command("budget_pages=100\nbudget_pages=x\nbudget_pages=2000\nbudget_pages=01\n");
    let (rec, _) = rig.checkpoint(false);
    assert_eq!(rec.ctl_rejected - before, 2);
    assert_eq!(rec.budget_pages, 2000);
    assert_eq!(
        rec.cmd_interval_ms, 100,
        "a budget line leaves the interval"
    );
    assert_eq!(
        rec.trigger,
        ffi::remus_ckpt_trigger_REMUS_CKPT_TRIGGER_BUDGET
    );
}

#[test]
fn the_real_clock_still_works_with_a_budget() {
    use std::os::fd::AsRawFd;
    // No fake clock: the gate uses CLOCK_MONOTONIC and ppoll. The probe
    // reports the budget reached, so a 60 s interval must not be waited.
    struct Full;
    impl Probe for Full {
        fn dirty_pages(&mut self) -> Option<u64> {
            Some(1_000_000)
        }
    }
    let (read, mut control) = pipe();
    let spec = format!("fd:{}", read.as_raw_fd());
    let mut ckpt = Ckpt::open_with(7, CkptStream::Remus, 4096, None, Some(&spec))
        .unwrap()
        .unwrap();
    ckpt.set_probe(Box::new(Full));
    control
        .write_all(b"interval_ms=60000\nbudget_pages=100\n")
        .unwrap();
    let start = std::time::Instant::now();
    for live in [true, false, false] {
        ckpt.gate(live);
        ckpt.mark(Mark::Suspended);
        ckpt.mark(Mark::Sent);
        ckpt.mark(Mark::Resumed);
        ckpt.emit();
    }
    let rec = ckpt.last().unwrap();
    assert_eq!(
        rec.trigger,
        ffi::remus_ckpt_trigger_REMUS_CKPT_TRIGGER_BUDGET
    );
    assert_eq!((rec.probes, rec.dirty_at_trigger), (1, 1_000_000));
    // Generous: the interval is 60 s per checkpoint.
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
}
