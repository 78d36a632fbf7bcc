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
