//! The long fuzz mode: every target of tests/fuzz/targets.rs on fresh
//! seeds for as long as asked, printing each new kind of failure (target,
//! seed, input as hex) as it is found and a tally at the end.
//!
//! ```text
//! cargo run --profile fuzz --example fuzz -- --seconds 600 [--target NAME]... [--start-seed N]
//! cargo run --profile fuzz --example fuzz -- --replay TARGET HEX
//! cargo run --profile fuzz --example fuzz -- --seed TARGET SEED
//! ```
//!
//! `--seconds` defaults to REMUS_CKPT_FUZZ_SECONDS, else 60. The `fuzz`
//! profile is release with overflow checks, so overflows are found. Exit
//! status 1 when anything failed.

#[path = "../tests/fuzz/targets.rs"]
mod targets;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use targets::{Target, TARGETS};

fn usage() -> ExitCode {
    eprintln!(
        "usage: fuzz [--seconds N] [--target NAME]... [--start-seed N]\n       \
         fuzz --replay TARGET HEX\n       fuzz --seed TARGET SEED\n\
         targets: {}",
        TARGETS
            .iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    ExitCode::from(2)
}

fn find(name: &str) -> Option<&'static Target> {
    let t = targets::target(name);
    if t.is_none() {
        eprintln!("fuzz: no target '{name}'");
    }
    t
}

/// Runs one input and says what happened.
fn replay(target: &'static Target, input: &[u8]) -> ExitCode {
    println!(
        "target {} input (hex) {}",
        target.name,
        targets::to_hex(input)
    );
    match targets::run_one(target, input) {
        Ok(()) => {
            println!("passes");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAILS: {e}");
            ExitCode::from(1)
        }
    }
}

/// Failures that differ only in numbers and paths are one kind: the
/// start of the first line, digits and path-like words left out.
fn kind_of(target: &str, error: &str) -> String {
    let first_line = error.lines().next().unwrap_or("");
    let shape: String = first_line
        .split(' ')
        .filter(|word| !word.contains('/') || word.starts_with("src/"))
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(48)
        .collect();
    format!("{target}: {shape}")
}

fn main() -> ExitCode {
    targets::quiet_panics();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut seconds: u64 = std::env::var("REMUS_CKPT_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut chosen: Vec<&'static Target> = Vec::new();
    let mut start_seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).map(String::as_str);
        match (args[i].as_str(), value) {
            ("--replay", Some(name)) => {
                let (Some(t), Some(input)) = (
                    find(name),
                    args.get(i + 2).and_then(|h| targets::from_hex(h)),
                ) else {
                    return usage();
                };
                return replay(t, &input);
            }
            ("--seed", Some(name)) => {
                let (Some(t), Some(seed)) =
                    (find(name), args.get(i + 2).and_then(|s| s.parse().ok()))
                else {
                    return usage();
                };
                return replay(t, &targets::input_for(t, seed));
            }
            ("--seconds", Some(v)) => match v.parse() {
                Ok(s) => seconds = s,
                Err(_) => return usage(),
            },
            ("--target", Some(name)) => match find(name) {
                Some(t) => chosen.push(t),
                None => return usage(),
            },
            ("--start-seed", Some(v)) => match v.parse() {
                Ok(s) => start_seed = s,
                Err(_) => return usage(),
            },
            _ => return usage(),
        }
        i += 2;
    }
    if chosen.is_empty() {
        chosen = TARGETS.iter().collect();
    }

    println!(
        "fuzz: {} target(s) for {seconds} s, seeds from {start_seed}",
        chosen.len()
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runs: BTreeMap<&str, (u64, u64)> = BTreeMap::new(); // (iterations, failures)
    let mut kinds: BTreeMap<String, (u64, u64)> = BTreeMap::new(); // kind -> (count, first seed)
    let mut seed = start_seed;
    while Instant::now() < deadline {
        for target in &chosen {
            // A batch per target between clock reads.
            for _ in 0..64 {
                seed = seed.wrapping_add(1);
                let entry = runs.entry(target.name).or_default();
                entry.0 += 1;
                if let Some(failure) = targets::run_seed(target, seed) {
                    entry.1 += 1;
                    let kind = kind_of(target.name, &failure.error);
                    let seen = kinds.entry(kind).or_insert((0, seed));
                    if seen.0 == 0 {
                        println!("NEW FAILURE {failure}");
                    }
                    seen.0 += 1;
                }
            }
        }
    }
    println!("\n{:<16} {:>12} {:>10}", "target", "iterations", "failures");
    for (name, (iterations, failures)) in &runs {
        println!("{name:<16} {iterations:>12} {failures:>10}");
    }
    println!("seeds {start_seed}..={seed}");
    if kinds.is_empty() {
        println!("no failures");
        return ExitCode::SUCCESS;
    }
    println!("\nfailure kinds (count, first seed):");
    for (kind, (count, first)) in &kinds {
        println!("  {count:>8}  seed {first:<20}  {kind}");
    }
    ExitCode::from(1)
}
