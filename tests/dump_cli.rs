//! `remus-ckpt dump`: records in, a readable table out, bad lines named.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_remus-ckpt");

#[test]
fn dump_prints_records_and_names_bad_lines() {
    let line = |seq: u64, t_ms: u64| {
        format!(
            "ckpt v=1 seq={seq} domid=1 stream=remus live=0 page_size=4096 dirty_pages=10 deferred_pages=0 \
             pages_sent=10 bytes_sent=41040 t_gate=1 t_suspend={ts} t_suspended={t1} t_sent={t2} t_resumed={t2} \
             t_done={t3} interval_ms=100 cmd_interval_ms=50 gate_wait_ns=0 dropped=0 ctl_rejected=0 new_key=1\n",
            ts = t_ms * 1_000_000,
            t1 = t_ms * 1_000_000 + 1_000_000,
            t2 = t_ms * 1_000_000 + 3_500_000,
            t3 = t_ms * 1_000_000 + 4_000_000
        )
    };
    let input = format!("{}not a record\n{}", line(1, 1000), line(2, 1100));
    let mut child = Command::new(BIN)
        .args(["dump", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    // seq 2: pause 2.5 ms, checkpoint 4.0 ms, period 100.0 ms, 100/50 ms.
    let fields: Vec<&str> = rows[1].split_whitespace().collect();
    assert_eq!(fields[0], "2");
    assert_eq!(&fields[5..8], &["2.5", "4.0", "100.0"]);
    assert_eq!(fields[9], "100/50");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("not a checkpoint record"),
        "{stderr}"
    );
}

fn record_line(seq: u64) -> String {
    format!(
        "ckpt v=1 seq={seq} dirty_pages=10 pages_sent=10 bytes_sent=41040 t_suspend={ts} \
         t_suspended={ts} t_resumed={ts} t_done={ts}\n",
        ts = 1_000_000 * (seq + 1)
    )
}

fn dump_file(path: &std::path::Path) -> std::process::Output {
    Command::new(BIN).arg("dump").arg(path).output().unwrap()
}

#[test]
fn dump_file_skips_invalid_utf8_and_overlong_lines() {
    // Before: `dump FILE` stopped at the first invalid UTF-8 ("stream did
    // not contain valid UTF-8") and held any line whole in memory.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records");
    let mut bytes = record_line(1).into_bytes();
    bytes.extend_from_slice(b"ckpt v=1 \xff\xfe broken\n");
    bytes.extend(std::iter::repeat(b'x').take(10 << 20));
    bytes.push(b'\n');
    // The last line has no newline: it is still read.
    bytes.extend_from_slice(record_line(2).trim_end().as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let out = dump_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seqs: Vec<&str> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(seqs, ["1", "2"], "{stdout}");
    assert!(
        stderr.contains("line 2: not UTF-8 text (skipped)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 3: line longer than 4096 bytes (skipped)"),
        "{stderr}"
    );
}

#[test]
fn twenty_megabytes_of_garbage_cost_a_bounded_number_of_stderr_lines() {
    // Before: one stderr line per garbage line (78,000 for 20 MB).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage");
    let mut text = String::with_capacity(21 << 20);
    let mut n = 0u64;
    while text.len() < 20 << 20 {
        text.push_str(&format!("garbage line {n} of no record at all\n"));
        n += 1;
    }
    text.push_str(&record_line(7));
    std::fs::write(&path, text).unwrap();
    let out = dump_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(
        stderr.lines().count() < 100,
        "{} stderr lines",
        stderr.lines().count()
    );
    // Every skipped line is accounted for: shown in full, or counted in a
    // summary ("… and N more malformed lines").
    let shown = stderr.lines().filter(|l| l.contains(") (skipped)")).count() as u64;
    let counted: u64 = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("remus-ckpt: … and "))
        .filter_map(|l| l.strip_suffix(" more malformed lines"))
        .map(|count| count.parse::<u64>().unwrap())
        .sum();
    assert_eq!((shown, shown + counted), (5, n), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "header and the one record");
}

/// VmRSS of `pid` in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/<pid>/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn dump_dev_zero_stays_bounded() {
    // Before: one endless line, buffered whole: hundreds of MB a second.
    let mut child = Command::new(BIN)
        .args(["dump", "/dev/zero"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut samples = Vec::new();
    for _ in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(400));
        assert!(child.try_wait().unwrap().is_none(), "dump /dev/zero ended");
        samples.push(vm_rss_kib(child.id()));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        samples.iter().all(|kib| *kib < 100 * 1024),
        "VmRSS samples (KiB): {samples:?}"
    );
}

/// Runs the binary with stdout on a pipe whose read end is already closed,
/// so its first write to stdout fails with EPIPE (SIGPIPE is ignored by
/// Rust programs): what `remus-ckpt dump … | head` meets once head exits.
fn output_into_closed_pipe(args: &[&std::ffi::OsStr]) -> std::process::Output {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read_end);
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn assert_quiet_success(what: &str, out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {:?}, stderr: {stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "{what}: stderr not empty: {stderr}");
}

#[test]
fn a_closed_stdout_ends_every_printing_command_quietly_with_status_0() {
    // Before: `dump` said "error: Broken pipe (os error 32)" and exited 1;
    // `report` and `simulate` panicked in print! and exited 101.
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    std::fs::write(&records, (1..=50).map(record_line).collect::<String>()).unwrap();
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let out = output_into_closed_pipe(&[os("dump"), records.as_os_str()]);
    assert_quiet_success("dump FILE", &out);

    let csv =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report/small.csv");
    let out = output_into_closed_pipe(&[os("report"), csv.as_os_str()]);
    assert_quiet_success("report", &out);

    let sim_csv = dir.path().join("sim.csv");
    let out = output_into_closed_pipe(&[
        os("simulate"),
        os("--quiet"),
        os("--duration"),
        os("2s"),
        os("--csv"),
        sim_csv.as_os_str(),
    ]);
    // simulate reports its progress on stderr by design: no error there.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "simulate: {stderr}");
    assert!(
        !stderr.contains("error") && !stderr.contains("panicked"),
        "simulate: {stderr}"
    );
    // The run itself still happened: only the summary had nowhere to go.
    assert!(std::fs::read_to_string(&sim_csv).unwrap().lines().count() > 1);
}

#[test]
fn an_unwritable_stdout_other_than_a_closed_pipe_is_still_an_error() {
    // /dev/full fails every write with ENOSPC: that is a real failure.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let csv =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report/small.csv");
    let out = Command::new(BIN)
        .arg("report")
        .arg(csv)
        .stdout(Stdio::from(full))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write to stdout"), "{stderr}");
}
