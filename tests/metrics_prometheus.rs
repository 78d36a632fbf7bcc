//! `--metrics` against the real tools that read it.
//!
//! - `a_real_prometheus_scrapes_the_counters_and_fires_the_lmax_alert`:
//!   a real Prometheus (Debian's `prometheus` package), on loopback with
//!   its own temporary config and data, scrapes `simulate --metrics` in
//!   real time every second and evaluates docs/remus-ckpt-alerts.yml.
//!   Through its query API: the checkpoint, dropped and above-Lmax
//!   counters and the size histogram's count equal what the CSV of the
//!   same run says, and RemusCheckpointsAboveLmax fired for the domain
//!   (every checkpoint of the run is above Lmax) while RemusControlOff did
//!   not (control worked).
//! - `the_endpoint_serves_both_formats_and_promtool_accepts_them`: the
//!   endpoint itself: OpenMetrics for a scraper that asks for it, the
//!   0.0.4 text format otherwise (which passes `promtool check metrics`);
//!   404 elsewhere; and the alert rules pass `promtool check rules`.
//! - `a_public_address_needs_metrics_public`: the loopback rule.
//! - `watch_serves_what_a_real_c_save_side_reports`: `watch --metrics`
//!   fed by the C library (domid 42): counters, streak and the `ctl=` /
//!   `stats=` states of its real records.
//!
//! Without the prometheus binaries a test prints `SKIPPED: <why>`, and
//! fails under REMUS_CKPT_XEN_REQUIRE=1 (CI sets it; scripts/test installs
//! the package). Every wait is bounded and generous (polling, never a
//! timing assertion); every process started here is killed on the way out.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use remus_ckpt::row::read_csv;
use remus_ckpt::row::Row;

const BIN: &str = env!("CARGO_BIN_EXE_remus-ckpt");
/// Lmax of the runs here: every checkpoint of the steady workload at a
/// fixed 200 ms (about 8 MiB) is above it.
const LMAX: u64 = 4 << 20;
/// Generous bound on every wait.
const BOUND: Duration = Duration::from_secs(60);

/// The binary `name` on PATH or in /usr/bin; `None` after saying SKIPPED
/// (or panics when CI requires it).
fn tool(test: &str, name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        let why = format!("no {name} binary (apt-get install prometheus)");
        if std::env::var("REMUS_CKPT_XEN_REQUIRE").as_deref() == Ok("1") {
            panic!("{test}: REMUS_CKPT_XEN_REQUIRE=1 but {why}");
        }
        eprintln!("SKIPPED: {test}: {why}");
    }
    found
}

/// Kills and reaps a child on every way out of the test.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A simulate run with --metrics on a free loopback port; its address,
/// read from its stderr, and the rest of its stderr in a thread.
struct Simulation {
    child: Reaped,
    addr: SocketAddr,
    stderr: std::thread::JoinHandle<String>,
    csv: PathBuf,
}

fn simulate(dir: &Path, duration: &str, linger: &str) -> Simulation {
    let csv = dir.join("run.csv");
    let mut child = Reaped(
        Command::new(BIN)
            .args(["simulate", "--quiet", "--csv"])
            .arg(&csv)
            .args([
                "--workload",
                "steady",
                "--policy",
                "fixed",
                "--interval",
                "200ms",
            ])
            .args(["--lmin", "1MiB", "--lmax", "4MiB", "--duration", duration])
            .args(["--metrics", "127.0.0.1:0", "--metrics-linger", linger])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start remus-ckpt simulate"),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("remus-ckpt: metrics at http://") {
                let _ = tx.send(rest.trim_end_matches("/metrics").to_string());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let addr = rx
        .recv_timeout(BOUND)
        .expect("simulate never said where its metrics are")
        .parse()
        .expect("a socket address");
    Simulation {
        child,
        addr,
        stderr,
        csv,
    }
}

impl Simulation {
    /// Waits for the run to end (bounded); its stderr.
    fn wait(mut self, bound: Duration) -> String {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < bound,
                "simulate still running after {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let stderr = self.stderr.join().unwrap();
        assert!(status.success(), "simulate failed: {stderr}");
        stderr
    }
}

/// One HTTP/1.0 GET on loopback: (status, headers, body).
fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, BOUND).expect("connect");
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, head.to_string(), body.to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `query` through Prometheus' instant query API: each result's labels
/// and value.
fn query(prom: SocketAddr, query: &str) -> Vec<(serde_json::Value, f64)> {
    let mut encoded = String::new();
    for b in query.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => encoded.push(b as char),
            _ => encoded.push_str(&format!("%{b:02X}")),
        }
    }
    let (status, _, body) = get(prom, &format!("/api/v1/query?query={encoded}"), None);
    assert_eq!(status, 200, "query {query}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON from Prometheus");
    json["data"]["result"]
        .as_array()
        .expect("a vector result")
        .iter()
        .map(|r| {
            let value = r["value"][1].as_str().unwrap().parse().unwrap();
            (r["metric"].clone(), value)
        })
        .collect()
}

/// Polls `q` until it has exactly one result equal to `want` (bounded);
/// that result's labels, or a panic with the last answer.
fn await_value(prom: SocketAddr, q: &str, want: f64) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let got = query(prom, q);
        if let [(labels, value)] = &got[..] {
            if *value == want {
                return labels.clone();
            }
        }
        assert!(
            start.elapsed() < BOUND,
            "{q}: wanted {want} (from the CSV), Prometheus says {got:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn a_real_prometheus_scrapes_the_counters_and_fires_the_lmax_alert() {
    let test = "a_real_prometheus_scrapes_the_counters_and_fires_the_lmax_alert";
    let Some(prometheus) = tool(test, "prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Long enough for Prometheus to start and scrape a few times; the
    // linger leaves the final counts up for a last scrape or two.
    let sim = simulate(dir.path(), "20s", "6s");

    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: remus-ckpt\n    static_configs:\n      - targets: ['{addr}']\n",
            rules = repo_file("docs/remus-ckpt-alerts.yml").display(),
            addr = sim.addr,
        ),
    )
    .unwrap();
    let prom_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Reaped(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let start = Instant::now();
    while !matches!(
        TcpStream::connect(prom_addr).map(|_| get(prom_addr, "/-/ready", None).0),
        Ok(200)
    ) {
        assert!(
            start.elapsed() < BOUND,
            "Prometheus not ready: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let csv = sim.csv.clone();
    sim.wait(BOUND + Duration::from_secs(30));
    let rows: Vec<Row> = read_csv(&csv).expect("the run's CSV");
    let paced: Vec<&Row> = rows.iter().filter(|r| r.live == 0).collect();
    let checkpoints = paced.len() as f64;
    let over_lmax = paced.iter().filter(|r| r.size_bytes > LMAX).count() as f64;
    let gaps: u64 = rows.iter().map(|r| r.gap).sum();
    assert!(
        paced.len() >= 10 && paced.iter().all(|r| r.size_bytes > LMAX),
        "the run is set up so that every checkpoint is above Lmax: {} checkpoints, {over_lmax} above",
        paced.len()
    );

    // last_over_time: once the run is gone its series are stale, but the
    // last scraped value stays queryable.
    let last = |m: &str| format!("last_over_time({m}[10m])");
    let labels = await_value(
        prom_addr,
        &last("remus_ckpt_checkpoints_total"),
        checkpoints,
    );
    assert_eq!(labels["stream"], "remus", "{labels}");
    assert!(labels["domid"].as_str().is_some(), "{labels}");
    await_value(
        prom_addr,
        &last("remus_ckpt_checkpoint_size_bytes_count"),
        checkpoints,
    );
    await_value(
        prom_addr,
        &last("remus_ckpt_checkpoints_over_lmax_total"),
        over_lmax,
    );
    // The CSV's gap column is records missing, or 1 for a stall.
    await_value(
        prom_addr,
        &format!(
            "{} + {}",
            last("remus_ckpt_records_dropped_total"),
            last("remus_ckpt_stalls_total")
        ),
        gaps as f64,
    );
    await_value(prom_addr, &last("remus_ckpt_lmax_bytes"), LMAX as f64);

    let fired = await_value(
        prom_addr,
        &last(r#"ALERTS{alertname="RemusCheckpointsAboveLmax",alertstate="firing"}"#),
        1.0,
    );
    assert_eq!(fired["domid"], labels["domid"], "{fired}");
    assert!(
        query(prom_addr, &last(r#"ALERTS{alertname="RemusControlOff"}"#)).is_empty(),
        "control worked in this run, yet RemusControlOff was pending or firing"
    );
}

#[test]
fn the_endpoint_serves_both_formats_and_promtool_accepts_them() {
    let test = "the_endpoint_serves_both_formats_and_promtool_accepts_them";
    let dir = tempfile::tempdir().unwrap();
    let sim = simulate(dir.path(), "3s", "30s");
    // Wait for the first checkpoints to show.
    let start = Instant::now();
    let plain = loop {
        let (status, head, body) = get(sim.addr, "/metrics", None);
        assert_eq!(status, 200, "{head}\n{body}");
        if body.contains("remus_ckpt_checkpoints_total{") {
            assert!(head.contains("text/plain; version=0.0.4"), "{head}");
            break body;
        }
        assert!(
            start.elapsed() < BOUND,
            "no checkpoint in the metrics: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (status, head, openmetrics) = get(
        sim.addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    );
    assert_eq!(status, 200);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(openmetrics.contains("# UNIT remus_ckpt_pause_seconds seconds"));
    for name in [
        "remus_ckpt_pause_seconds_bucket{",
        "remus_ckpt_period_seconds_bucket{",
        "remus_ckpt_interval_seconds{",
        "remus_ckpt_commanded_interval_seconds{",
        "remus_ckpt_last_checkpoint_age_seconds{",
        "remus_ckpt_control_state{",
        "remus_ckpt_stats_state{",
    ] {
        assert!(plain.contains(name), "{name} missing:\n{plain}");
    }
    assert_eq!(get(sim.addr, "/", None).0, 404);

    if let Some(promtool) = tool(test, "promtool") {
        // promtool reads the 0.0.4 text format; the OpenMetrics output is
        // what the real Prometheus in the test above scrapes.
        let mut child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start promtool");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(plain.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics refused the 0.0.4 text output: {}{}\n{plain}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(&promtool)
            .args(["check", "rules"])
            .arg(repo_file("docs/remus-ckpt-alerts.yml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check rules: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The rest of the linger is not needed: Reaped kills the run.
}

#[test]
fn a_public_address_needs_metrics_public() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["simulate", "--quiet", "--duration", "1s"])
        .args(["--metrics", "0.0.0.0:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--metrics-public"), "{stderr}");
    assert!(
        !dir.path().join("remus-ckpt-simulate.csv").exists(),
        "refused before running"
    );
}

/// The value of the first series of `text` whose line starts with `prefix`.
fn series(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn watch_serves_what_a_real_c_save_side_reports() {
    // `watch --metrics` (observing only) with the C library as the save
    // side, domid 42: the counters and the channel states come from its
    // real records.
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats");
    let mut child = Reaped(
        Command::new(BIN)
            .args([
                "watch",
                "--quiet",
                "--metrics",
                "127.0.0.1:0",
                "--lmax",
                "1MiB",
            ])
            .args(["--lmin", "256KiB", "--stats"])
            .arg(&stats)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start remus-ckpt watch"),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "watch exited");
        if let Some(rest) = line.trim().strip_prefix("remus-ckpt: metrics at http://") {
            break rest.trim_end_matches("/metrics").parse().unwrap();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let _probe = common::writer_once_read(&stats, BOUND);
    let mut ckpt = remus_ckpt::ffi::Ckpt::open_with(
        42,
        remus_ckpt::ffi::CkptStream::Remus,
        4096,
        Some(stats.to_str().unwrap()),
        None,
    )
    .unwrap()
    .expect("configured");
    const RECORDS: u64 = 6;
    for i in 0..RECORDS {
        ckpt.gate(i == 0);
        ckpt.mark(remus_ckpt::ffi::Mark::Suspended);
        ckpt.dirty(1024, 0);
        ckpt.wrote(1024 * 4104, 1024);
        ckpt.mark(remus_ckpt::ffi::Mark::Sent);
        ckpt.mark(remus_ckpt::ffi::Mark::Resumed);
        ckpt.emit();
    }
    let labels = r#"{domid="42",name="",stream="remus""#;
    let start = Instant::now();
    let text = loop {
        let (_, _, text) = get(addr, "/metrics", None);
        if series(&text, &format!("remus_ckpt_checkpoints_total{labels}}}")) == Some(5.0) {
            break text;
        }
        assert!(
            start.elapsed() < BOUND,
            "5 checkpoints never showed:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // 4 MiB each, above the 1 MiB Lmax: all five, in a row.
    assert_eq!(
        series(&text, &format!("remus_ckpt_over_lmax_streak{labels}}}")),
        Some(5.0)
    );
    assert_eq!(
        series(
            &text,
            &format!("remus_ckpt_records_dropped_total{labels}}}")
        ),
        Some(0.0)
    );
    // No control channel configured: the gate says `unset`.
    assert_eq!(
        series(
            &text,
            &format!(r#"remus_ckpt_control_state{labels},state="unset"}}"#)
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        series(
            &text,
            &format!(r#"remus_ckpt_stats_state{labels},state="ok"}}"#)
        )
        .is_some(),
        "{text}"
    );
}
