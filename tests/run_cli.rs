//! `remus-ckpt run` without Xen: a stand-in `xl` starts whatever
//! LIBXL_SAVE_HELPER names, as libxl does, and a stand-in save helper
//! writes records and reads the control FIFO the way the patched
//! libxenguest does. What is checked is `run`'s own job: the wrapper and
//! its environment, `-i 1`, consuming and steering, the CSV, signal
//! forwarding, xl's exit status, and cleaning up. (The real library under
//! a real `xl remus` is the QEMU end-to-end test's job.)
//!
//! `run` runs as root on a dom0, so the rest is what an unprivileged local
//! user (nobody, through setpriv) can try against it: a runtime base
//! created first, a library directory or a helper they can write. Every
//! `run` that gets as far as its runtime directory runs in a private mount
//! namespace with its own tmpfs on /run, so no test touches the real /run;
//! where that namespace cannot be made, those tests print `SKIPPED: <why>`
//! (and fail under REMUS_CKPT_XEN_REQUIRE=1, which scripts/test sets).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use remus_ckpt::row::read_csv;

const BIN: &str = env!("CARGO_BIN_EXE_remus-ckpt");
const NOBODY: &str = "setpriv --reuid=65534 --regid=65534 --clear-groups";
const NOBODY_UID: u32 = 65534;

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A lib dir that passes `run`'s checks: the SONAME file, root-owned, in a
/// directory nobody else can write.
fn fake_lib_dir(dir: &Path) -> PathBuf {
    fake_lib_dir_with(dir, "libxenguest.so.4.17")
}

/// [`fake_lib_dir`] holding `soname` (Xen 4.1's is libxenguest.so.4.0).
fn fake_lib_dir_with(dir: &Path, soname: &str) -> PathBuf {
    let lib = dir.join("lib");
    std::fs::create_dir(&lib).unwrap();
    chmod(&lib, 0o755);
    std::fs::write(lib.join(soname), b"").unwrap();
    chmod(&lib.join(soname), 0o644);
    lib
}

/// A temp directory root owns and others may enter (0755), so that
/// nobody can reach what a test hands it.
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    dir
}

/// Runs `sh -c body` as nobody; panics if it fails.
fn as_nobody(body: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {NOBODY} sh -c '{body}'"))
        .status()
        .unwrap();
    assert!(status.success(), "as nobody: {body}");
}

/// Why `run` cannot be given a private /run here, if it cannot.
fn private_run_unavailable() -> Option<String> {
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o mode=0755 remus-ckpt-test /run && test -w /run && exec setpriv --reuid=65534 --regid=65534 --clear-groups true")
        .output();
    match out {
        Err(e) => Some(format!("cannot run unshare: {e}")),
        Ok(o) if !o.status.success() => Some(format!(
            "unshare -m + mount -t tmpfs /run + setpriv not permitted here ({})",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// Whether this test can go on; if not, says why on fd 2 (or fails, when
/// a skip is not acceptable).
fn can_run_privately(test: &str) -> bool {
    let Some(why) = private_run_unavailable() else {
        return true;
    };
    if std::env::var("REMUS_CKPT_XEN_REQUIRE").as_deref() == Ok("1") {
        panic!("{test}: REMUS_CKPT_XEN_REQUIRE=1 but {why}");
    }
    // Straight to fd 2: the harness captures println!, and a skip must
    // show in the run's output.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {why}");
    false
}

/// `remus-ckpt run` in a private mount namespace with a fresh tmpfs of
/// mode `run_mode` on /run. `setup` runs first there, as root, under
/// `set -e` (a `umask` in it applies to `run`). After `run` exits, every
/// entry under /run is written to `out/after-run` as `mode user type path`
/// lines; see [`after_run`]. Add `run`'s arguments to what this returns.
fn private_run(out: &Path, run_mode: &str, setup: &str) -> Command {
    let body = format!(
        "out=$1 mode=$2; shift 2\n\
         mount -t tmpfs -o mode=\"$mode\" remus-ckpt-test /run || exit 97\n\
         set -e\n{setup}\nset +e\n\
         \"$@\"\nrc=$?\n\
         find /run -mindepth 1 -printf '%m %u %y %p\\n' | sort -k4 > \"$out/after-run\"\n\
         exit $rc\n"
    );
    let mut command = Command::new("unshare");
    command
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(body)
        .arg("sh")
        .arg(out)
        .arg(run_mode)
        .arg(BIN)
        .arg("run");
    command
}

/// What was under the private /run once `run` had exited.
fn after_run(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("after-run"))
        .expect("the namespace wrote no listing")
        .lines()
        .map(str::to_string)
        .collect()
}

/// A stand-in xl that records run's pid (its parent) and that it started,
/// runs the save helper like libxl, and exits with `exit_code`.
fn xl_running_helper(out: &Path, exit_code: i32) -> PathBuf {
    let xl = out.join("xl");
    script(
        &xl,
        &format!(
            "echo $PPID > {o}/run-pid\ntouch {o}/started\n\
             find /run -mindepth 1 -printf '%m %u %y %p\\n' | sort -k4 > {o}/during-run\n\
             \"$LIBXL_SAVE_HELPER\"\nexit {exit_code}\n",
            o = out.display()
        ),
    );
    xl
}

/// A stand-in save helper that records its environment.
fn helper_recording_env(out: &Path) -> PathBuf {
    let helper = out.join("helper");
    script(
        &helper,
        &format!("env > {}/helper-env\nexit 0\n", out.display()),
    );
    helper
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_wraps_the_helper_steers_and_returns_xl_status() {
    if !can_run_privately("run_wraps_the_helper_steers_and_returns_xl_status") {
        return;
    }
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
    let status = private_run(out, "0755", "")
        .args([
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
    assert_eq!(var("REMUS_CKPT_FALLBACK_MS"), "200", "--interval's default");
    let runtime = Path::new(&stats).parent().unwrap();
    assert!(
        runtime.starts_with("/run/remus-ckpt"),
        "{}",
        runtime.display()
    );
    assert_eq!(
        after_run(out),
        ["700 root d /run/remus-ckpt"],
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
fn run_with_the_budget_policy_steers_interval_and_budget() {
    if !can_run_privately("run_with_the_budget_policy_steers_interval_and_budget") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let lib = fake_lib_dir(out);
    script(
        &out.join("xl"),
        &format!(
            "echo \"$@\" > {o}/xl-args\n\"$LIBXL_SAVE_HELPER\"\nexit $?\n",
            o = out.display()
        ),
    );
    // The helper reads what the controller commands before any record.
    script(
        &out.join("helper"),
        &format!(
            "env > {o}/helper-env\n\
             timeout 10 head -n 2 < \"$REMUS_CKPT_CONTROL\" > {o}/ctl\nexit 0\n",
            o = out.display()
        ),
    );
    let status = private_run(out, "0755", "")
        .args(["--quiet", "--policy", "budget", "--tmax", "1500ms"])
        .arg("--csv")
        .arg(out.join("run.csv"))
        .arg("--lib-dir")
        .arg(&lib)
        .arg("--helper")
        .arg(out.join("helper"))
        .arg("--")
        .arg(out.join("xl"))
        .args(["remus", "guest", "dummyhost"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let xl_args = std::fs::read_to_string(out.join("xl-args")).unwrap();
    assert_eq!(
        xl_args.trim(),
        "remus -i 1 guest dummyhost",
        "budget is adaptive: -i 1 added"
    );
    let env = std::fs::read_to_string(out.join("helper-env")).unwrap();
    assert!(
        env.lines().any(|l| l == "REMUS_CKPT_FALLBACK_MS=200"),
        "the fallback is --interval"
    );
    // tmax as the latency cap; (16 MiB - 5632) / 4104 = 4086 pages fit
    // Lmax, less the 5 % margin before any overshoot was seen.
    let ctl = std::fs::read_to_string(out.join("ctl")).unwrap();
    assert_eq!(ctl, "interval_ms=1500\nbudget_pages=3881\n");
}

/// Sends `sig` to `run` once its xl has started; returns the exit status
/// of the whole namespace (`run`'s).
fn signal_run_once_xl_started(
    child: &mut std::process::Child,
    out: &Path,
    sig: libc::c_int,
) -> std::process::ExitStatus {
    let start = Instant::now();
    while !out.join("started").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "run exited before xl started"
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "xl never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid: libc::pid_t = std::fs::read_to_string(out.join("run-pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill has no memory-safety preconditions; pid is run's, the
    // parent of an xl still running, so it is not reaped.
    unsafe { libc::kill(pid, sig) };
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "run did not stop after signal {sig}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A stand-in xl that waits for a signal, records it, and exits 0.
fn xl_waiting_for_a_signal(out: &Path) -> PathBuf {
    let xl = out.join("xl");
    script(
        &xl,
        &format!(
            "trap 'echo INT >> {o}/signals; exit 0' INT\ntrap 'echo TERM >> {o}/signals; exit 0' TERM\n\
             echo $PPID > {o}/run-pid\ntouch {o}/started\nsleep 30 &\nwait\n",
            o = out.display()
        ),
    );
    xl
}

#[test]
fn run_forwards_sigint_to_xl_once() {
    if !can_run_privately("run_forwards_sigint_to_xl_once") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let lib = fake_lib_dir(out);
    xl_waiting_for_a_signal(out);
    script(&out.join("helper"), "exit 0\n");
    let mut child = private_run(out, "0755", "")
        .args(["--quiet", "--policy", "fixed"])
        .arg("--csv")
        .arg(out.join("run.csv"))
        .arg("--lib-dir")
        .arg(&lib)
        .arg("--helper")
        .arg(out.join("helper"))
        .arg("--")
        .arg(out.join("xl"))
        .args(["remus", "-i", "100", "guest", "host"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = signal_run_once_xl_started(&mut child, out, libc::SIGINT);
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(out.join("signals")).unwrap(),
        "INT\n",
        "xl got SIGINT exactly once"
    );
}

/// `run`'s usual arguments around a stand-in xl and helper in `out`.
fn standard_args(command: &mut Command, out: &Path, lib: &Path, helper: &Path) {
    command
        .args(["--quiet", "--policy", "threshold", "--interval", "350ms"])
        .arg("--csv")
        .arg(out.join("run.csv"))
        .arg("--lib-dir")
        .arg(lib)
        .arg("--helper")
        .arg(helper)
        .arg("--")
        .arg(out.join("xl"))
        .args(["remus", "guest", "host"]);
}

/// Runs `run` privately after `setup` and expects it to refuse before
/// starting xl; returns its stderr.
fn expect_refusal(out: &Path, run_mode: &str, setup: &str, lib: &Path, helper: &Path) -> String {
    xl_running_helper(out, 0);
    let mut command = private_run(out, run_mode, setup);
    standard_args(&mut command, out, lib, helper);
    let o = command.output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "run did not refuse: {err}");
    assert!(!out.join("started").exists(), "xl was started: {err}");
    err
}

#[test]
fn base_created_first_by_nobody_is_refused() {
    if !can_run_privately("base_created_first_by_nobody_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let (lib, helper) = (fake_lib_dir(out), helper_recording_env(out));
    // /run 1777 so that nobody can create the base first.
    let setup = format!("{NOBODY} sh -c 'umask 000; mkdir -m 0777 /run/remus-ckpt'");
    let err = expect_refusal(out, "1777", &setup, &lib, &helper);
    assert!(
        err.contains("/run/remus-ckpt") && err.contains(&format!("uid {NOBODY_UID}")),
        "{err}"
    );
    assert!(err.contains("rm -rf /run/remus-ckpt"), "{err}");
    assert_eq!(after_run(out), ["777 nobody d /run/remus-ckpt"], "{err}");
}

#[test]
fn base_linked_to_a_directory_of_nobody_is_refused() {
    if !can_run_privately("base_linked_to_a_directory_of_nobody_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let (lib, helper) = (fake_lib_dir(out), helper_recording_env(out));
    let setup =
        format!("{NOBODY} sh -c 'mkdir -m 0700 /run/mine && ln -s /run/mine /run/remus-ckpt'");
    let err = expect_refusal(out, "1777", &setup, &lib, &helper);
    assert!(
        err.contains("/run/remus-ckpt") && err.contains("symbolic link"),
        "{err}"
    );
    assert!(err.contains("rm -rf /run/remus-ckpt"), "{err}");
    // Nothing of ours went into nobody's directory.
    assert_eq!(
        after_run(out),
        ["700 nobody d /run/mine", "777 nobody l /run/remus-ckpt"],
        "{err}"
    );
}

#[test]
fn world_writable_base_is_refused_unless_root_owned_and_sticky() {
    if !can_run_privately("world_writable_base_is_refused_unless_root_owned_and_sticky") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let (lib, helper) = (fake_lib_dir(out), helper_recording_env(out));
    let err = expect_refusal(out, "0755", "mkdir -m 0777 /run/remus-ckpt", &lib, &helper);
    assert!(
        err.contains("/run/remus-ckpt") && err.contains("0777") && err.contains("chmod 0700"),
        "{err}"
    );
    assert_eq!(after_run(out), ["777 root d /run/remus-ckpt"], "{err}");

    // Root-owned and sticky: others cannot rename or remove what we put
    // there, so it is used (and left as found).
    let mut command = private_run(out, "0755", "mkdir -m 1777 /run/remus-ckpt");
    standard_args(&mut command, out, &lib, &helper);
    let o = command.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.join("started").exists());
    assert_eq!(after_run(out), ["1777 root d /run/remus-ckpt"]);
}

#[test]
fn umask_000_still_gives_private_directories_gone_after_a_normal_exit() {
    if !can_run_privately("umask_000_still_gives_private_directories_gone_after_a_normal_exit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let (lib, helper) = (fake_lib_dir(out), helper_recording_env(out));
    xl_running_helper(out, 0);
    let mut command = private_run(out, "0755", "umask 000");
    standard_args(&mut command, out, &lib, &helper);
    let o = command.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // While xl ran: the base, the run's directory and the wrapper 0700,
    // the FIFOs 0600, all root's.
    let during = std::fs::read_to_string(out.join("during-run")).unwrap();
    let during: Vec<&str> = during.lines().collect();
    assert_eq!(during.len(), 5, "{during:?}");
    assert_eq!(during[0], "700 root d /run/remus-ckpt");
    let run_dir = during[1].strip_prefix("700 root d ").expect(during[1]);
    assert!(run_dir.starts_with("/run/remus-ckpt/run."), "{run_dir}");
    assert_eq!(during[2], format!("600 root p {run_dir}/control.fifo"));
    assert_eq!(during[3], format!("700 root f {run_dir}/save-helper"));
    assert_eq!(during[4], format!("600 root p {run_dir}/stats.fifo"));
    // The helper ran through the wrapper, with the fallback interval.
    let env = std::fs::read_to_string(out.join("helper-env")).unwrap();
    assert!(
        env.lines().any(|l| l == "REMUS_CKPT_FALLBACK_MS=350"),
        "{env}"
    );
    // Afterwards only the base is left.
    assert_eq!(after_run(out), ["700 root d /run/remus-ckpt"]);
}

#[test]
fn run_dir_is_gone_after_xl_fails() {
    if !can_run_privately("run_dir_is_gone_after_xl_fails") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let (lib, helper) = (fake_lib_dir(out), helper_recording_env(out));
    xl_running_helper(out, 5);
    let mut command = private_run(out, "0755", "");
    standard_args(&mut command, out, &lib, &helper);
    let o = command.output().unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let during = std::fs::read_to_string(out.join("during-run")).unwrap();
    assert!(during.contains("/save-helper"), "{during}");
    assert_eq!(after_run(out), ["700 root d /run/remus-ckpt"]);
}

#[test]
fn run_dir_is_gone_after_sigterm() {
    if !can_run_privately("run_dir_is_gone_after_sigterm") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let (lib, helper) = (fake_lib_dir(out), helper_recording_env(out));
    xl_waiting_for_a_signal(out);
    let mut command = private_run(out, "0755", "");
    standard_args(&mut command, out, &lib, &helper);
    let mut child = command.stderr(Stdio::null()).spawn().unwrap();
    let status = signal_run_once_xl_started(&mut child, out, libc::SIGTERM);
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(out.join("signals")).unwrap(),
        "TERM\n"
    );
    assert_eq!(after_run(out), ["700 root d /run/remus-ckpt"]);
}

#[test]
fn lib_dir_nobody_can_write_is_refused() {
    if !can_run_privately("lib_dir_nobody_can_write_is_refused") {
        return;
    }
    let dir = open_tempdir();
    let out = dir.path();
    let (lib, helper) = (fake_lib_dir(out), helper_recording_env(out));
    chmod(&lib, 0o777);
    // What nobody would do with it: a library root's helper then loads.
    as_nobody(&format!("echo evil > {}/libxenctrl.so.4.17", lib.display()));
    let err = expect_refusal(out, "0755", "", &lib, &helper);
    assert!(
        err.contains(&format!("{} has mode 0777", lib.display())) && err.contains("chmod go-w"),
        "{err}"
    );
    assert!(after_run(out).is_empty(), "{err}");
}

#[test]
fn helper_in_a_directory_of_nobody_is_refused() {
    if !can_run_privately("helper_in_a_directory_of_nobody_is_refused") {
        return;
    }
    let dir = open_tempdir();
    let out = dir.path();
    let lib = fake_lib_dir(out);
    let bin = out.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::chown(&bin, Some(NOBODY_UID), Some(NOBODY_UID)).unwrap();
    let helper = bin.join("helper");
    as_nobody(&format!(
        "printf \"#!/bin/sh\\nexit 0\\n\" > {h} && chmod 755 {h}",
        h = helper.display()
    ));
    let err = expect_refusal(out, "0755", "", &lib, &helper);
    assert!(
        err.contains(&format!("{} is owned by uid {NOBODY_UID}", bin.display()))
            && err.contains("save helper"),
        "{err}"
    );
    assert!(after_run(out).is_empty(), "{err}");
}

/// A stand-in for Xen 4.1's Python `remus`: it saves in its own process,
/// so it records its own environment and arguments and, as the patched
/// libxenguest inside it would, writes three records (the live round 64
/// MiB, then 16 MiB each, above Lmax) and reads the controller's interval.
fn py_remus_writing_records(out: &Path) -> PathBuf {
    let remus = out.join("remus");
    let mut body = format!(
        "env > {o}/remus-env\necho \"$@\" > {o}/remus-args\n\
         find /run -mindepth 1 -printf '%m %u %y %p\\n' | sort -k4 > {o}/during-run\n",
        o = out.display()
    );
    for seq in 0..3u64 {
        let (pages, live) = if seq == 0 { (16384, 1) } else { (4096, 0) };
        let t = 1_000_000_000 + seq * 200_000_000;
        body += &format!(
            "printf 'ckpt v=1 seq={seq} domid=3 stream=remus live={live} page_size=4096 dirty_pages={pages} \
             deferred_pages=0 pages_sent={pages} bytes_sent={bytes} t_gate={t} t_suspend={t} t_suspended={t1} \
             t_sent={t2} t_resumed={t2} t_done={t2} interval_ms=0 cmd_interval_ms=0 gate_wait_ns=0 dropped=0 \
             ctl_rejected=0 stats=ok\\n' > \"$REMUS_CKPT_STATS\"\n",
            bytes = pages * 4104,
            t1 = t + 1_000_000,
            t2 = t + 5_000_000
        );
    }
    body += &format!(
        "timeout 10 head -n 1 < \"$REMUS_CKPT_CONTROL\" > {o}/ctl\nexit 0\n",
        o = out.display()
    );
    script(&remus, &body);
    remus
}

#[test]
fn run_gives_the_python_remus_the_library_and_the_channels() {
    if !can_run_privately("run_gives_the_python_remus_the_library_and_the_channels") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let lib = fake_lib_dir_with(out, "libxenguest.so.4.0");
    let remus = py_remus_writing_records(out);
    let csv = out.join("run.csv");
    let o = private_run(out, "0755", "")
        .env("LD_LIBRARY_PATH", "/opt/inherited")
        .args([
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
        .arg("--")
        .arg(&remus)
        .args(["--no-net", "guest", "backup-host"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    assert_eq!(
        std::fs::read_to_string(out.join("remus-args"))
            .unwrap()
            .trim(),
        "-i 1 --no-net guest backup-host",
        "-i 1 right after remus for an adaptive policy"
    );
    let env = std::fs::read_to_string(out.join("remus-env")).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    assert_eq!(
        var("LD_LIBRARY_PATH"),
        Some(format!(
            "{}:/opt/inherited",
            lib.canonicalize().unwrap().display()
        )),
        "the patched library first, the inherited path after it"
    );
    let stats = var("REMUS_CKPT_STATS").expect("REMUS_CKPT_STATS");
    assert!(stats.starts_with("/run/remus-ckpt/run."), "{stats}");
    assert!(stats.ends_with("/stats.fifo"), "{stats}");
    let control = var("REMUS_CKPT_CONTROL").expect("REMUS_CKPT_CONTROL");
    assert_eq!(Path::new(&control).parent(), Path::new(&stats).parent());
    assert_eq!(var("REMUS_CKPT_FALLBACK_MS").as_deref(), Some("200"));
    assert_eq!(var("LIBXL_SAVE_HELPER"), None, "no helper to wrap");
    // The run directory holds the two FIFOs and no wrapper.
    let during = std::fs::read_to_string(out.join("during-run")).unwrap();
    assert!(!during.contains("save-helper"), "{during}");
    assert_eq!(
        during.lines().filter(|l| l.contains(" p /run/")).count(),
        2,
        "{during}"
    );

    let rows = read_csv(&csv).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    // 16 MiB > Lmax 8 MiB: 200 ms halves to 100 ms, commanded to remus.
    assert_eq!(rows[1].next_interval_ms, 100);
    let ctl = std::fs::read_to_string(out.join("ctl")).unwrap();
    assert!(
        ctl.starts_with("interval_ms="),
        "remus read an interval: {ctl:?}"
    );
    assert_eq!(after_run(out), ["700 root d /run/remus-ckpt"]);
}

#[test]
fn python_remus_refusals_name_the_fix() {
    if !can_run_privately("python_remus_refusals_name_the_fix") {
        return;
    }
    let dir = open_tempdir();
    let out = dir.path();
    let lib = fake_lib_dir_with(out, "libxenguest.so.4.0");
    let remus = py_remus_writing_records(out);
    let refused = |extra: &[&str], remus_args: &[&str]| -> String {
        let o = private_run(out, "0755", "")
            .args(["--quiet", "--csv"])
            .arg(out.join("run.csv"))
            .args(extra)
            .arg("--")
            .arg(&remus)
            .args(remus_args)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "run did not refuse: {err}");
        assert!(!out.join("remus-env").exists(), "remus was started: {err}");
        assert!(after_run(out).is_empty(), "{err}");
        err
    };
    let lib_arg = lib.to_str().unwrap();
    // No default library for Xen 4.1.
    let err = refused(&[], &["guest", "host"]);
    assert!(
        err.contains("--lib-dir") && err.contains("patches/xen-4.1"),
        "{err}"
    );
    // A library directory for another Xen.
    std::fs::create_dir(out.join("x")).unwrap();
    let other = fake_lib_dir(&out.join("x"));
    let err = refused(&["--lib-dir", other.to_str().unwrap()], &["g"]);
    assert!(err.contains("no libxenguest.so.4.0"), "{err}");
    // No save helper in 4.1.
    let err = refused(&["--lib-dir", lib_arg, "--helper", "/bin/true"], &["g"]);
    assert!(err.contains("--helper does not apply"), "{err}");
    // --timer suspends outside the save loop: the gate cannot pace it.
    let err = refused(&["--lib-dir", lib_arg], &["--timer", "guest"]);
    assert!(err.contains("drop --timer"), "{err}");
    // The rule for what root loads is the same as for xl remus.
    chmod(&lib, 0o777);
    as_nobody(&format!("echo evil > {}/libxenctrl.so.4.0", lib.display()));
    let err = refused(&["--lib-dir", lib_arg], &["guest"]);
    assert!(
        err.contains(&format!("{} has mode 0777", lib.display())) && err.contains("chmod go-w"),
        "{err}"
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

    // The rule `run` applies to what root loads, reported by doctor.
    let lib = fake_lib_dir(dir.path());
    chmod(&lib, 0o777);
    let out = Command::new(BIN)
        .args(["doctor", "--lib-dir"])
        .arg(&lib)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL  refusing the library directory"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} has mode 0777", lib.display())) && text.contains("chmod go-w"),
        "{text}"
    );
    chmod(&lib, 0o755);
    let out = Command::new(BIN)
        .args(["doctor", "--lib-dir"])
        .arg(&lib)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok    library directory"), "{text}");
}
