//! The disk side end to end: parsers on fixtures in the formats of DRBD 8.3,
//! 8.4, remus-drbd and DRBD 9, the /proc/drbd source on a rewritten file,
//! the DRBD 9 source against a fake `drbdsetup`, and the meter's
//! degrade-on-failure behaviour.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use proptest::prelude::*;
use remus_ckpt::disk::{
    open_with, parse_events2, parse_proc_drbd, DiskArgs, DiskBackends, DiskDelta, DiskMeter,
    DiskSample, DiskSource, DiskSpec, Events2Config, ProcFlavor, ProcPaths, SimulatedDiskHandle,
};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/drbd")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const FIXTURES: &[&str] = &[
    "drbd83.txt",
    "drbd84.txt",
    "remus_drbd.txt",
    "drbd9_proc.txt",
    "drbd84_truncated.txt",
    "drbd9_events2.txt",
];

// ---------------------------------------------------------------- parsers

#[test]
fn drbd83_every_minor() {
    let p = parse_proc_drbd(&fixture("drbd83.txt"));
    assert_eq!(p.flavor(), ProcFlavor::Drbd83);
    let v = p.version.as_ref().unwrap();
    assert_eq!((v.major, v.minor, v.patch), (8, 3, 11));
    type Row<'a> = (u32, &'a str, Option<&'a str>, Option<&'a str>, Option<u64>);
    let got: Vec<Row> = p
        .minors
        .iter()
        .map(|m| {
            (
                m.minor,
                m.cs.as_str(),
                m.ro.as_deref(),
                m.ds.as_deref(),
                m.ns_kib,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                0,
                "Connected",
                Some("Primary/Secondary"),
                Some("UpToDate/UpToDate"),
                Some(1_048_576)
            ),
            (
                1,
                "WFConnection",
                Some("Primary/Unknown"),
                Some("UpToDate/DUnknown"),
                Some(0)
            ),
            (2, "Unconfigured", None, None, None),
            (
                3,
                "SyncSource",
                Some("Primary/Secondary"),
                Some("UpToDate/Inconsistent"),
                Some(524_288)
            ),
            (
                4,
                "StandAlone",
                Some("Secondary/Unknown"),
                Some("Diskless/DUnknown"),
                Some(0)
            ),
        ]
    );
    assert!(p
        .minors
        .iter()
        .all(|m| m.deferred.is_none() && m.checkpoints.is_none()));
    let connected: Vec<u32> = p
        .minors
        .iter()
        .filter(|m| m.is_connected())
        .map(|m| m.minor)
        .collect();
    assert_eq!(connected, vec![0, 3]);
    assert!(!p.minor(2).unwrap().is_configured());
    assert_eq!(
        p.describe_minors(),
        "0 (Connected), 1 (WFConnection), 3 (SyncSource), 4 (StandAlone)"
    );
}

#[test]
fn drbd84_every_minor() {
    let p = parse_proc_drbd(&fixture("drbd84.txt"));
    assert_eq!(p.flavor(), ProcFlavor::Drbd84);
    assert_eq!(p.version.as_ref().unwrap().text, "8.4.11-1");
    let got: Vec<(u32, &str, Option<&str>, Option<u64>)> = p
        .minors
        .iter()
        .map(|m| (m.minor, m.cs.as_str(), m.ds.as_deref(), m.ns_kib))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "Connected", Some("UpToDate/UpToDate"), Some(10_167_368)),
            (
                1,
                "Connected",
                Some("UpToDate/UpToDate"),
                Some(4_294_967_000)
            ),
            (2, "Connected", Some("Diskless/UpToDate"), Some(2048)),
            (5, "SyncTarget", Some("Inconsistent/UpToDate"), Some(0)),
            (6, "StandAlone", Some("UpToDate/DUnknown"), Some(0)),
            (7, "Unconfigured", None, None),
        ]
    );
    assert_eq!(p.minor(5).unwrap().ro.as_deref(), Some("Secondary/Primary"));
    assert!(p.minor(5).unwrap().is_connected());
    assert!(!p.minor(6).unwrap().is_connected());
}

#[test]
fn remus_drbd_deferred_and_checkpoints() {
    let p = parse_proc_drbd(&fixture("remus_drbd.txt"));
    assert_eq!(p.flavor(), ProcFlavor::RemusDrbd);
    let m0 = p.minor(0).unwrap();
    assert_eq!(
        (m0.ns_kib, m0.deferred, m0.checkpoints),
        (Some(81_920), Some(12), Some(1500))
    );
    let m1 = p.minor(1).unwrap();
    assert_eq!(
        (m1.cs.as_str(), m1.deferred, m1.checkpoints),
        ("WFConnection", Some(0), Some(0))
    );
    assert_eq!(p.minor(2).unwrap().cs, "Unconfigured");
}

#[test]
fn drbd9_proc_is_detected_and_has_no_minors() {
    let p = parse_proc_drbd(&fixture("drbd9_proc.txt"));
    assert_eq!(p.flavor(), ProcFlavor::Drbd9);
    assert_eq!(p.version.as_ref().unwrap().text, "9.2.8");
    assert!(p.minors.is_empty());
}

#[test]
fn truncated_and_garbage_proc() {
    let p = parse_proc_drbd(&fixture("drbd84_truncated.txt"));
    assert_eq!(p.minor(0).unwrap().ns_kib, Some(777));
    assert_eq!(p.minor(1).unwrap().cs, "Connected");
    assert_eq!(p.minor(1).unwrap().ns_kib, None);

    let p =
        parse_proc_drbd("\u{0}\u{ff}garbage\n: cs:\n 9:\n99999999999: cs:Connected\n 3: ns:5\n");
    assert_eq!(p.flavor(), ProcFlavor::Unknown);
    let minors: Vec<(u32, &str, Option<u64>)> = p
        .minors
        .iter()
        .map(|m| (m.minor, m.cs.as_str(), m.ns_kib))
        .collect();
    // " 9:" is a header with no fields; "99999999999" does not fit a u32;
    // " 3: ns:5" is a header whose fields are not cs/ro/ds.
    assert_eq!(minors, vec![(9, "", None), (3, "", None)]);
    assert_eq!(parse_proc_drbd("").minors.len(), 0);
}

#[test]
fn drbd9_events2_state() {
    let s = parse_events2(&fixture("drbd9_events2.txt"));
    assert!(s.initial_dump_done);
    assert_eq!(
        s.resources.iter().map(String::as_str).collect::<Vec<_>>(),
        vec!["backup", "r0", "web"]
    );
    type Row<'a> = (
        &'a str,
        &'a str,
        Option<u64>,
        Option<&'a str>,
        Option<&'a str>,
    );
    let r0: Vec<Row> = s
        .peer_devices_of("r0")
        .map(|(k, i)| {
            (
                k.peer_node_id.as_str(),
                k.volume.as_str(),
                i.sent_kib,
                i.replication.as_deref(),
                i.peer_disk.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        r0,
        vec![
            (
                "1",
                "0",
                Some(1_049_600),
                Some("Established"),
                Some("UpToDate")
            ),
            ("1", "1", Some(4096), Some("Established"), Some("UpToDate")),
            (
                "2",
                "0",
                Some(524_288),
                Some("Established"),
                Some("UpToDate")
            ),
            ("2", "1", Some(0), Some("Established"), Some("Diskless")),
        ]
    );
    let conns: Vec<(&str, Option<&str>, Option<&str>)> = s
        .connections_of("r0")
        .map(|(peer, i)| (peer, i.conn_name.as_deref(), i.connection.as_deref()))
        .collect();
    assert_eq!(
        conns,
        vec![
            ("1", Some("alpha"), Some("Connected")),
            ("2", Some("beta"), Some("Connected"))
        ]
    );
    let backup = s.connections_of("backup").next().unwrap().1;
    assert_eq!(backup.connection.as_deref(), Some("StandAlone"));
    assert_eq!(
        s.peer_devices_of("backup")
            .next()
            .unwrap()
            .1
            .replication
            .as_deref(),
        Some("Off")
    );
    assert_eq!(
        s.connections_of("web")
            .next()
            .unwrap()
            .1
            .connection
            .as_deref(),
        Some("Connecting")
    );
    assert_eq!(s.peer_devices_of("web").count(), 0);
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics_the_parsers(text in "\\PC*") {
        let p = parse_proc_drbd(&text);
        let _ = (p.flavor(), p.describe_minors());
        let _ = parse_events2(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_proc_drbd(&text).flavor();
        let _ = parse_events2(&text);
    }

    #[test]
    fn cut_and_spliced_fixtures_never_panic(which in 0..FIXTURES.len(), cut in any::<prop::sample::Index>(), junk in "\\PC{0,40}") {
        let text = fixture(FIXTURES[which]);
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) { at -= 1; }
        let spliced = format!("{}{}{}", &text[..at], junk, &text[at..]);
        for t in [&text[..at], spliced.as_str()] {
            let p = parse_proc_drbd(t);
            let _ = (p.flavor(), p.describe_minors());
            let _ = parse_events2(t);
        }
    }
}

// ---------------------------------------------------------------- specs, clap

#[test]
fn disk_args_with_clap() {
    use clap::Parser;
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        disk: DiskArgs,
    }
    let cli = Cli::try_parse_from(["x", "--disk", "drbd:r0", "--disk", "drbd:/dev/drbd2"]).unwrap();
    assert_eq!(
        cli.disk.disk,
        vec![DiskSpec::Resource("r0".into()), DiskSpec::Minor(2)]
    );
    let err = Cli::try_parse_from(["x", "--disk", "r0"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("drbd:RESOURCE or drbd:MINOR"), "{err}");
    assert!(Cli::try_parse_from(["x"]).unwrap().disk.disk.is_empty());
}

// ---------------------------------------------------------------- /proc/drbd source

struct FakeProc {
    dir: tempfile::TempDir,
}

impl FakeProc {
    fn new(text: &str) -> FakeProc {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("by-res")).unwrap();
        let fake = FakeProc { dir };
        fake.write(text);
        fake
    }
    fn write(&self, text: &str) {
        // Write-then-rename, like the kernel's one-shot seq_file read: never torn.
        let tmp = self.dir.path().join("drbd.tmp");
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, self.dir.path().join("drbd")).unwrap();
    }
    fn options(&self) -> DiskBackends {
        DiskBackends {
            proc_paths: ProcPaths {
                proc_drbd: self.dir.path().join("drbd"),
                by_res_dir: self.dir.path().join("by-res"),
            },
            ..DiskBackends::default()
        }
    }
}

fn drbd84_with(ns: &[(u32, u64)]) -> String {
    let mut text = String::from("version: 8.4.11-1 (api:1/proto:86-101)\n");
    for (minor, ns) in ns {
        text.push_str(&format!(
            " {minor}: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n    \
             ns:{ns} nr:0 dw:{ns} dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n"
        ));
    }
    text
}

#[test]
fn proc_source_deltas_across_a_u32_wrap() {
    let fake = FakeProc::new(&fixture("drbd84.txt"));
    let source = open_with(&"drbd:1".parse().unwrap(), &fake.options()).unwrap();
    assert!(
        source.name().contains("drbd:1") && source.name().contains("8.4"),
        "{}",
        source.name()
    );
    let mut meter = DiskMeter::new(vec![source]);
    assert_eq!(
        meter.on_checkpoint().disk_bytes,
        0,
        "first call is the baseline"
    );
    fake.write(&drbd84_with(&[(1, 300)]));
    // 4294967000 -> 300 is 296 + 300 = 596 KiB across the wrap.
    assert_eq!(meter.on_checkpoint().disk_bytes, 596 * 1024);
    fake.write(&drbd84_with(&[(1, 1324)]));
    assert_eq!(meter.on_checkpoint().disk_bytes, 1024 * 1024);
    fake.write(&drbd84_with(&[(1, 1324)]));
    assert_eq!(meter.on_checkpoint().disk_bytes, 0);
    assert!(!meter.is_empty());
}

#[test]
fn proc_source_resource_by_res_volumes_sum() {
    let fake = FakeProc::new(&drbd84_with(&[(0, 100), (1, 1000), (2, 5000)]));
    let by_res = fake.dir.path().join("by-res");
    // 8.3 style: NAME -> ../../drbdN; 8.4 style: NAME/VOLUME -> ../../../drbdN.
    symlink("../../drbd0", by_res.join("solo")).unwrap();
    fs::create_dir(by_res.join("web")).unwrap();
    symlink("../../../drbd1", by_res.join("web/0")).unwrap();
    symlink("../../../drbd2", by_res.join("web/1")).unwrap();

    let web = open_with(&"drbd:web".parse().unwrap(), &fake.options()).unwrap();
    assert!(web.name().contains("minors 1,2"), "{}", web.name());
    let solo = open_with(
        &"drbd:/dev/drbd/by-res/solo".parse().unwrap(),
        &fake.options(),
    )
    .unwrap();
    assert!(solo.name().contains("minor 0"), "{}", solo.name());
    let mut meter = DiskMeter::new(vec![web, solo]);
    assert_eq!(meter.on_checkpoint(), DiskDelta::default());
    fake.write(&drbd84_with(&[(0, 110), (1, 1200), (2, 5300)]));
    // web: 200 + 300 KiB; solo: 10 KiB.
    assert_eq!(meter.on_checkpoint().disk_bytes, 510 * 1024);
}

#[test]
fn proc_source_remus_drbd_counters_pass_through() {
    let fake = FakeProc::new(&fixture("remus_drbd.txt"));
    let mut meter = DiskMeter::open(&["drbd:0".parse().unwrap()], &fake.options()).unwrap();
    let first = meter.on_checkpoint();
    assert_eq!(
        first,
        DiskDelta {
            disk_bytes: 0,
            drbd_deferred: Some(12),
            drbd_checkpoints: Some(1500),
            ..DiskDelta::default()
        }
    );
    fake.write(
        &fixture("remus_drbd.txt")
            .replace("ns:81920", "ns:82944")
            .replace("chkpt:1500", "chkpt:1501")
            .replace("def:12", "def:0"),
    );
    assert_eq!(
        meter.on_checkpoint(),
        DiskDelta {
            disk_bytes: 1024 * 1024,
            drbd_deferred: Some(0),
            drbd_checkpoints: Some(1501),
            ..DiskDelta::default()
        }
    );
}

fn open_err(spec: &str, options: &DiskBackends) -> String {
    match open_with(&spec.parse().unwrap(), options) {
        Ok(source) => panic!("{spec} opened as {}", source.name()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn open_errors_say_what_to_do() {
    let fake = FakeProc::new(&fixture("drbd83.txt"));
    let opts = fake.options();

    let err = open_err("drbd:9", &opts);
    assert!(err.contains("minor 9 is not configured"), "{err}");
    assert!(
        err.contains("0 (Connected), 1 (WFConnection), 3 (SyncSource), 4 (StandAlone)"),
        "{err}"
    );
    let err = open_err("drbd:2", &opts);
    assert!(err.contains("minor 2 is not configured"), "{err}");

    let err = open_err("drbd:1", &opts);
    assert!(
        err.contains("not connected (cs:WFConnection)") && err.contains("drbdadm connect"),
        "{err}"
    );
    let err = open_err("drbd:4", &opts);
    assert!(err.contains("cs:StandAlone"), "{err}");

    let err = open_err("drbd:nosuch", &opts);
    assert!(
        err.contains("unknown DRBD resource 'nosuch'") && err.contains("0 (Connected)"),
        "{err}"
    );

    symlink("../../drbd1", opts.proc_paths.by_res_dir.join("r1")).unwrap();
    let err = open_err("drbd:r1", &opts);
    assert!(err.contains("drbdadm connect r1"), "{err}");

    let err = open_err("drbd:sim", &opts);
    assert!(err.contains("only under `remus-ckpt simulate`"), "{err}");

    let mut missing = opts.clone();
    missing.proc_paths.proc_drbd = fake.dir.path().join("absent");
    let err = open_err("drbd:0", &missing);
    assert!(
        err.contains("is the drbd module loaded? (modprobe drbd)"),
        "{err}"
    );

    let err = match DiskMeter::open(
        &["drbd:0".parse().unwrap(), "drbd:1".parse().unwrap()],
        &opts,
    ) {
        Ok(_) => panic!("opened"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.starts_with("--disk drbd:1: "), "{err}");
}

#[test]
fn drbd9_without_drbdsetup_says_install_drbd_utils() {
    let fake = FakeProc::new(&fixture("drbd9_proc.txt"));
    let mut opts = fake.options();
    opts.events2.program = fake.dir.path().join("no-drbdsetup-here");
    let err = open_err("drbd:r0", &opts);
    assert!(err.contains("install drbd-utils"), "{err}");
    let err = open_err("drbd:0", &opts);
    assert!(
        err.contains("drbd:0: listing DRBD 9 devices") && err.contains("install drbd-utils"),
        "{err}"
    );
}

#[test]
fn proc_source_that_loses_its_minor_is_dropped_by_the_meter() {
    let fake = FakeProc::new(&drbd84_with(&[(0, 10)]));
    let mut meter = DiskMeter::open(&["drbd:0".parse().unwrap()], &fake.options()).unwrap();
    meter.on_checkpoint();
    fake.write(&drbd84_with(&[(0, 20)]));
    assert_eq!(meter.on_checkpoint().disk_bytes, 10 * 1024);
    fake.write("version: 8.4.11-1 (api:1/proto:86-101)\n 0: cs:Unconfigured\n");
    assert_eq!(meter.on_checkpoint(), DiskDelta::default());
    assert!(meter.is_empty());
    fake.write(&drbd84_with(&[(0, 99)]));
    assert_eq!(meter.on_checkpoint(), DiskDelta::default());
}

// ---------------------------------------------------------------- simulated

#[test]
fn simulated_disk_through_open_and_meter() {
    let handle = SimulatedDiskHandle::new();
    let opts = DiskBackends {
        simulated: Some(handle.clone()),
        ..DiskBackends::default()
    };
    let mut meter = DiskMeter::open(&["drbd:sim".parse().unwrap()], &opts).unwrap();
    handle.add_written_bytes(8192);
    assert_eq!(meter.on_checkpoint().disk_bytes, 0);
    handle.add_written_bytes(3 * 4096);
    assert_eq!(meter.on_checkpoint().disk_bytes, 12_288);
    handle.add_written_bytes(512);
    assert_eq!(
        meter.on_checkpoint().disk_bytes,
        0,
        "half a KiB is not counted yet"
    );
    handle.add_written_bytes(512);
    assert_eq!(meter.on_checkpoint().disk_bytes, 1024);
}

// ---------------------------------------------------------------- meter degrade

/// Counts up 100 KiB per sample; fails from the `fail_at`-th sample on.
struct FailsAt {
    calls: Arc<AtomicUsize>,
    fail_at: usize,
    name: String,
}

impl DiskSource for FailsAt {
    fn name(&self) -> &str {
        &self.name
    }
    fn sample(&mut self) -> Result<DiskSample> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.fail_at {
            bail!("link to peer lost (sample {n})");
        }
        Ok(DiskSample {
            sent_kib: 100 * n as u64,
            deferred: None,
            checkpoints: None,
        })
    }
}

fn degrade_scenario() {
    let failing_calls = Arc::new(AtomicUsize::new(0));
    let steady_calls = Arc::new(AtomicUsize::new(0));
    let mut meter = DiskMeter::new(vec![
        Box::new(FailsAt {
            calls: failing_calls.clone(),
            fail_at: 3,
            name: "flaky-disk".into(),
        }),
        Box::new(FailsAt {
            calls: steady_calls.clone(),
            fail_at: usize::MAX,
            name: "steady-disk".into(),
        }),
    ]);
    assert_eq!(meter.on_checkpoint().disk_bytes, 0);
    assert_eq!(meter.on_checkpoint().disk_bytes, 2 * 100 * 1024);
    // Third sample: flaky fails and is dropped; steady still counts.
    assert_eq!(meter.on_checkpoint().disk_bytes, 100 * 1024);
    assert_eq!(meter.source_names(), vec!["steady-disk".to_owned()]);
    for _ in 0..5 {
        assert_eq!(meter.on_checkpoint().disk_bytes, 100 * 1024);
    }
    assert_eq!(
        failing_calls.load(Ordering::SeqCst),
        3,
        "a dropped source is never sampled again"
    );
    assert_eq!(steady_calls.load(Ordering::SeqCst), 8);
}

#[test]
fn meter_drops_a_failing_source_and_carries_on() {
    degrade_scenario();
}

/// Runs [`meter_drops_a_failing_source_and_carries_on`] in a child test
/// process to see its real stderr: exactly one warning, naming the source
/// and the error.
#[test]
fn meter_warns_exactly_once() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "meter_drops_a_failing_source_and_carries_on",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("flaky-disk") && warnings[0].contains("link to peer lost (sample 3)"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------- DRBD 9 via a fake drbdsetup

/// How the fake `drbdsetup` behaves after its initial dump.
struct FakeDrbdsetup {
    dir: tempfile::TempDir,
}

impl FakeDrbdsetup {
    /// `polls_before_exit`: answer this many `n`s, then exit 1 (0: never exit).
    fn new(polls_before_exit: u32) -> FakeDrbdsetup {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            r#"#!/bin/sh
echo $$ > "{dir}/pid"
if [ "$1 $2" = "events2 --now" ]; then
  echo "exists resource name:r0 role:Primary suspended:no"
  echo "exists resource name:down role:Primary suspended:no"
  echo "exists device name:r0 volume:0 minor:0 disk:UpToDate"
  echo "exists device name:r0 volume:1 minor:1 disk:UpToDate"
  echo "exists device name:down volume:0 minor:5 disk:UpToDate"
  echo "exists -"
  exit 0
fi
if [ "$1 $2 $3" != "events2 --statistics --poll" ]; then
  echo "unexpected arguments: $*" >&2; exit 20
fi
case "$4" in
  r0) ;;
  down)
    echo "exists resource name:down role:Primary suspended:no"
    echo "exists connection name:down peer-node-id:1 conn-name:alpha connection:StandAlone role:Unknown"
    echo "exists peer-device name:down peer-node-id:1 conn-name:alpha volume:0 replication:Off peer-disk:DUnknown sent:0"
    echo "exists -"
    while read cmd; do :; done; exit 0 ;;
  ghost)
    echo "exists -"
    while read cmd; do :; done; exit 0 ;;
  mute)
    echo "exists resource name:mute role:Primary suspended:no"
    echo "exists connection name:mute peer-node-id:1 conn-name:alpha connection:Connected role:Secondary"
    echo "exists peer-device name:mute peer-node-id:1 conn-name:alpha volume:0 replication:Established peer-disk:UpToDate sent:4096"
    echo "exists -"
    while read cmd; do :; done; exit 0 ;;
  *) echo "$4: No such resource" >&2; exit 10 ;;
esac
cat <<'DUMP'
exists resource name:r0 role:Primary suspended:no force-io-failures:no may_promote:no promotion_score:10103
exists connection name:r0 peer-node-id:1 conn-name:alpha connection:Connected role:Secondary
exists connection name:r0 peer-node-id:2 conn-name:beta connection:Connected role:Secondary
exists device name:r0 volume:0 minor:0 disk:UpToDate client:no quorum:yes size:1048576
exists device name:r0 volume:1 minor:1 disk:UpToDate client:no quorum:yes size:1048576
exists peer-device name:r0 peer-node-id:1 conn-name:alpha volume:0 replication:Established peer-disk:UpToDate resync-suspended:no received:0 sent:1000 out-of-sync:0 pending:0 unacked:0
exists peer-device name:r0 peer-node-id:1 conn-name:alpha volume:1 replication:Established peer-disk:UpToDate resync-suspended:no received:0 sent:500 out-of-sync:0 pending:0 unacked:0
exists peer-device name:r0 peer-node-id:2 conn-name:beta volume:0 replication:Established peer-disk:UpToDate resync-suspended:no received:0 sent:2000 out-of-sync:0 pending:0 unacked:0
exists -
DUMP
n=0
while read cmd; do
  [ "$cmd" = n ] || continue
  n=$((n + 1))
  if [ {max} -gt 0 ] && [ $n -gt {max} ]; then echo "lost netlink socket" >&2; exit 1; fi
  echo "change resource name:r0 role:Primary suspended:no"
  echo "change peer-device name:r0 peer-node-id:1 conn-name:alpha volume:0 received:0 sent:$((1000 + n * 100)) out-of-sync:0 pending:0 unacked:0"
  echo "change peer-device name:r0 peer-node-id:1 conn-name:alpha volume:1 received:0 sent:$((500 + n * 10)) out-of-sync:0 pending:0 unacked:0"
  echo "change peer-device name:r0 peer-node-id:2 conn-name:beta volume:0 received:0 sent:$((2000 + n * 1000)) out-of-sync:0 pending:0 unacked:0"
done
"#,
            dir = dir.path().display(),
            max = polls_before_exit
        );
        let path = dir.path().join("drbdsetup");
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        FakeDrbdsetup { dir }
    }

    fn options(&self) -> DiskBackends {
        let proc = self.dir.path().join("proc-drbd");
        fs::write(&proc, fixture("drbd9_proc.txt")).unwrap();
        DiskBackends {
            proc_paths: ProcPaths {
                proc_drbd: proc,
                by_res_dir: self.dir.path().join("by-res"),
            },
            events2: Events2Config {
                program: self.dir.path().join("drbdsetup"),
                poll_timeout: Duration::from_secs(2),
                start_timeout: Duration::from_secs(5),
            },
            simulated: None,
        }
    }

    fn pid(&self) -> PathBuf {
        self.dir.path().join("pid")
    }
}

fn process_exists(pid_file: &Path) -> bool {
    let pid = fs::read_to_string(pid_file).unwrap();
    Path::new("/proc").join(pid.trim()).exists()
}

#[test]
fn drbd9_source_end_to_end_through_the_meter() {
    let fake = FakeDrbdsetup::new(0);
    let source = open_with(&"drbd:r0".parse().unwrap(), &fake.options()).unwrap();
    assert_eq!(
        source.name(),
        "drbd:r0 (drbdsetup events2, DRBD 9, volumes 0,1, peers alpha,beta)"
    );
    let mut meter = DiskMeter::new(vec![source]);
    assert_eq!(meter.on_checkpoint(), DiskDelta::default(), "baseline");
    for _ in 0..4 {
        let started = Instant::now();
        // Each poll: 100 + 10 + 1000 KiB over three peer devices.
        assert_eq!(
            meter.on_checkpoint(),
            DiskDelta {
                disk_bytes: 1110 * 1024,
                drbd_deferred: None,
                drbd_checkpoints: None,
                ..DiskDelta::default()
            }
        );
        assert!(
            started.elapsed() < Duration::from_millis(1900),
            "poll waited for the timeout"
        );
    }
    assert!(process_exists(&fake.pid()));
    drop(meter);
    assert!(
        !process_exists(&fake.pid()),
        "drbdsetup child must be killed on drop"
    );
}

#[test]
fn drbd9_source_dying_mid_run_degrades_to_memory_only() {
    let fake = FakeDrbdsetup::new(2);
    let mut meter = DiskMeter::open(&["drbd:r0".parse().unwrap()], &fake.options()).unwrap();
    assert_eq!(meter.on_checkpoint().disk_bytes, 0); // poll 1: baseline
    assert_eq!(meter.on_checkpoint().disk_bytes, 1110 * 1024); // poll 2
    assert_eq!(meter.on_checkpoint().disk_bytes, 0); // poll 3: child exits
    assert!(meter.is_empty());
    assert_eq!(meter.on_checkpoint(), DiskDelta::default());
}

#[test]
fn drbd9_open_errors() {
    let fake = FakeDrbdsetup::new(0);
    let opts = fake.options();
    let err = open_err("drbd:nosuch", &opts);
    assert!(err.contains("nosuch: No such resource"), "{err}");
    assert!(err.contains("(DRBD 9 resources: down, r0)"), "{err}");
    let err = open_err("drbd:ghost", &opts);
    assert!(
        err.contains("unknown DRBD resource 'ghost' (DRBD 9 resources: down, r0)"),
        "{err}"
    );
    let err = open_err("drbd:down", &opts);
    assert!(
        err.contains("not connected (alpha: StandAlone)") && err.contains("drbdadm connect down"),
        "{err}"
    );
}

#[test]
fn drbd9_silent_drbdsetup_costs_one_bounded_wait_not_the_run() {
    let fake = FakeDrbdsetup::new(0);
    let mut opts = fake.options();
    opts.events2.poll_timeout = Duration::from_millis(100);
    let mut meter = DiskMeter::open(&["drbd:mute".parse().unwrap()], &opts).unwrap();
    for _ in 0..9 {
        let started = Instant::now();
        assert_eq!(meter.on_checkpoint().disk_bytes, 0);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }
    assert!(!meter.is_empty(), "a silent poll is not a failure");
    // The tenth unanswered request in a row: drbdsetup is stuck, give up on it.
    assert_eq!(meter.on_checkpoint().disk_bytes, 0);
    assert!(meter.is_empty());
}

#[test]
fn drbd9_by_minor_counts_that_volume_only() {
    let fake = FakeDrbdsetup::new(0);
    let opts = fake.options();
    let source = open_with(&"drbd:/dev/drbd1".parse().unwrap(), &opts).unwrap();
    assert_eq!(
        source.name(),
        "drbd:1 (drbdsetup events2, DRBD 9, resource r0 volume 1, peers alpha,beta)"
    );
    let mut meter = DiskMeter::new(vec![source]);
    assert_eq!(meter.on_checkpoint().disk_bytes, 0);
    // Volume 1 has one peer device (alpha), +10 KiB per poll.
    assert_eq!(meter.on_checkpoint().disk_bytes, 10 * 1024);
    assert_eq!(meter.on_checkpoint().disk_bytes, 10 * 1024);
    let err = open_err("drbd:7", &opts);
    assert!(
        err.contains("no DRBD 9 device has minor 7 (devices: down/0 = minor 5, r0/0 = minor 0, r0/1 = minor 1)"),
        "{err}"
    );
}
