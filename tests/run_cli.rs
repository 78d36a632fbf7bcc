//! `remus-ckpt run` without Xen: a stand-in `xl` starts whatever
//! LIBXL_SAVE_HELPER names, as libxl does, and a stand-in save helper
//! writes records and reads the control FIFO the way the patched
//! libxenguest does. What is checked is `run`'s own job: the wrapper and
//! its environment, `-i 1`, consuming and steering, the CSV, signal
//! forwarding, xl's exit status, and cleaning up. (The real library under
//! a real `xl remus` is the QEMU end-to-end test's job.)

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use remus_ckpt::report::read_csv;

const BIN: &str = env!("CARGO_BIN_EXE_remus-ckpt");

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A lib dir that passes `run`'s check (it only needs the SONAME file).
fn fake_lib_dir(dir: &Path) -> std::path::PathBuf {
    let lib = dir.join("lib");
    std::fs::create_dir(&lib).unwrap();
    std::fs::write(lib.join("libxenguest.so.4.17"), b"").unwrap();
    lib
}

#[test]
fn run_wraps_the_helper_steers_and_returns_xl_status() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let lib = fake_lib_dir(out);
    // xl: remember its arguments, then start the save helper like libxl.
    script(
        &out.join("xl"),
        &format!(
            "echo \"$@\" > {o}/xl-args\n\"$LIBXL_SAVE_HELPER\" --helper-arg\nexit $?\n",
            o = out.display()
        ),
    );
    // The helper: five records (the first is the live round, 64 MiB: above
    // Lmax), then wait for the controller's interval, then fail with 3.
    let mut body = format!(
        "env > {o}/helper-env\necho \"$@\" > {o}/helper-args\n",
        o = out.display()
    );
    for seq in 0..5u64 {
        let (pages, live) = if seq == 0 { (16384, 1) } else { (4096, 0) };
        let t = 1_000_000_000 + seq * 100_000_000;
        body += &format!(
            "printf 'ckpt v=1 seq={seq} domid=1 stream=remus live={live} page_size=4096 dirty_pages={pages} \
             deferred_pages=0 pages_sent={pages} bytes_sent={bytes} t_gate={t} t_suspend={t} t_suspended={t1} \
             t_sent={t2} t_resumed={t2} t_done={t2} interval_ms=0 cmd_interval_ms=0 gate_wait_ns=0 dropped=0 \
             ctl_rejected=0\\n' > \"$REMUS_CKPT_STATS\"\n",
            bytes = pages * 4104,
            t1 = t + 1_000_000,
            t2 = t + 5_000_000
        );
    }
    body += &format!(
        "timeout 10 head -n 1 < \"$REMUS_CKPT_CONTROL\" > {o}/ctl\nexit 3\n",
        o = out.display()
    );
    script(&out.join("helper"), &body);

    let csv = out.join("run.csv");
    let status = Command::new(BIN)
        .args([
            "run",
            "--quiet",
            "--policy",
            "threshold",
            "--lmax",
            "8MiB",
            "--lmin",
            "1MiB",
        ])
        .arg("--csv")
        .arg(&csv)
        .arg("--lib-dir")
        .arg(&lib)
        .arg("--helper")
        .arg(out.join("helper"))
        .arg("--")
        .arg(out.join("xl"))
        .args(["-vvv", "remus", "-F", "-b", "guest", "dummyhost"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3), "run returns xl's exit status");

    let xl_args = std::fs::read_to_string(out.join("xl-args")).unwrap();
    assert_eq!(
        xl_args.trim(),
        "-vvv remus -i 1 -F -b guest dummyhost",
        "-i 1 added for an adaptive policy"
    );
    let env = std::fs::read_to_string(out.join("helper-env")).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} not in the helper's environment"))
            .to_string()
    };
    assert!(var("LD_LIBRARY_PATH").starts_with(lib.canonicalize().unwrap().to_str().unwrap()));
    let stats = var("REMUS_CKPT_STATS");
    assert!(var("REMUS_CKPT_CONTROL").ends_with("control.fifo"));
    assert_eq!(
        std::fs::read_to_string(out.join("helper-args"))
            .unwrap()
            .trim(),
        "--helper-arg"
    );
    let runtime = Path::new(&stats).parent().unwrap();
    assert!(
        !runtime.exists(),
        "runtime directory {} left behind",
        runtime.display()
    );

    let rows = read_csv(&csv).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(rows[1].size_bytes, 4096 * 4104);
    assert_eq!(rows[1].period_ms, 100.0);
    // 16 MiB > Lmax 8 MiB: 200 ms halves to 100 ms.
    assert_eq!(rows[1].next_interval_ms, 100);
    let ctl = std::fs::read_to_string(out.join("ctl")).unwrap();
    assert!(
        ctl.starts_with("interval_ms="),
        "the helper read an interval: {ctl:?}"
    );
}

#[test]
fn run_forwards_sigint_to_xl_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let lib = fake_lib_dir(out);
    script(
        &out.join("xl"),
        &format!(
        "trap 'echo INT >> {o}/signals; exit 0' INT\ntrap 'echo TERM >> {o}/signals; exit 0' TERM\n\
         touch {o}/started\nsleep 30 &\nwait\n",
        o = out.display()
    ),
    );
    script(&out.join("helper"), "exit 0\n");
    let mut child = Command::new(BIN)
        .args(["run", "--quiet", "--policy", "fixed"])
        .arg("--csv")
        .arg(out.join("run.csv"))
        .arg("--lib-dir")
        .arg(&lib)
        .arg("--helper")
        .arg(out.join("helper"))
        .arg("--")
        .arg(out.join("xl"))
        .args(["remus", "-i", "100", "guest", "host"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !out.join("started").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "xl never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill has no memory-safety preconditions; the pid is our
    // child, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "run did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(out.join("signals")).unwrap(),
        "INT\n",
        "xl got SIGINT exactly once"
    );
}

#[test]
fn run_explains_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["run", "--csv", "x.csv", "--lib-dir"])
        .arg(dir.path())
        .args(["--", "xl", "remus", "guest", "host"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("libxenguest.so.4.17") && err.contains("xen-source"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["run", "--csv", "x.csv", "--", "xl", "migrate", "g", "h"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("remus"));
}

#[test]
fn doctor_names_each_problem_and_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("wide.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: c is a valid NUL-terminated path for the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(BIN)
        .args(["doctor", "--lib-dir"])
        .arg(dir.path())
        .arg("--helper")
        .arg(dir.path().join("no-such-helper"))
        .arg("--fifo")
        .arg(&fifo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL  save helper") && text.contains("xen-utils-4.17"),
        "{text}"
    );
    assert!(text.contains("no libxenguest.so.4.17 in"), "{text}");
    assert!(text.contains("mode 666") && text.contains("0600"), "{text}");
    assert!(text.contains("check(s) failed"), "{text}");
}
