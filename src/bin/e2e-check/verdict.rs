//! The verdict's bookkeeping: named checks, run once each, and an audit
//! that fails the run when a check errored, panicked, never ran or
//! reported twice.
//!
//! A stage declares the names it must report ([`Stage::expected`]) apart
//! from the code that builds its checks, so a check that a refactor drops,
//! or that a stage builder skips on missing data, is caught by name.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{anyhow, Result};

/// What one check concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
}

/// The body of a check: `Err` is a check that could not be made (no data,
/// unreadable file), which fails the run like a failed check.
pub type CheckFn<'a> = Box<dyn Fn() -> Result<Outcome> + 'a>;

/// One named check.
pub struct Check<'a> {
    pub name: String,
    pub run: CheckFn<'a>,
}

impl<'a> Check<'a> {
    pub fn new(name: impl Into<String>, run: impl Fn() -> Result<Outcome> + 'a) -> Self {
        Check {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// How a reported line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Error,
    Panic,
    NeverRan,
    Duplicate,
    Unexpected,
}

/// One line of the verdict.
#[derive(Debug, Clone)]
pub struct Line {
    pub stage: String,
    pub name: String,
    pub status: Status,
    pub message: String,
}

impl Line {
    pub fn passed(&self) -> bool {
        self.status == Status::Pass
    }

    /// `ok: a: records.seq: …` or `FAIL: a: records.seq: error: …`.
    pub fn render(&self) -> String {
        let word = match self.status {
            Status::Pass => "",
            Status::Fail => "",
            Status::Error => "error: ",
            Status::Panic => "panicked: ",
            Status::NeverRan => "never ran",
            Status::Duplicate => "reported more than once: ",
            Status::Unexpected => "not in the stage's list of checks: ",
        };
        let head = if self.passed() { "ok" } else { "FAIL" };
        format!(
            "{head}: {}: {}: {word}{}",
            self.stage, self.name, self.message
        )
        .trim_end_matches(": ")
        .to_string()
    }
}

/// A deliberately broken check, for the tests of this verdict
/// (`E2E_CHECK_BREAK=<stage>:<check>[:error|panic|skip]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub stage: String,
    pub name: String,
    pub how: BreakHow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakHow {
    Error,
    Panic,
    Skip,
}

impl Break {
    /// Parses the environment variable's value; `None` when unset.
    pub fn from_env_value(value: Option<String>) -> Result<Option<Break>> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let mut parts = value.splitn(3, ':');
        let (Some(stage), Some(name)) = (parts.next(), parts.next()) else {
            return Err(anyhow!(
                "E2E_CHECK_BREAK={value}: expected <stage>:<check>[:error|panic|skip]"
            ));
        };
        let how = match parts.next().unwrap_or("error") {
            "error" => BreakHow::Error,
            "panic" => BreakHow::Panic,
            "skip" => BreakHow::Skip,
            other => {
                return Err(anyhow!(
                    "E2E_CHECK_BREAK={value}: '{other}' is not error, panic or skip"
                ))
            }
        };
        Ok(Some(Break {
            stage: stage.to_string(),
            name: name.to_string(),
            how,
        }))
    }
}

/// Runs `checks` of `stage` and audits them against `expected`: every
/// expected name must report exactly once, and nothing else may report.
pub fn run_stage(
    stage: &str,
    expected: &[String],
    checks: Vec<Check<'_>>,
    broken: Option<&Break>,
) -> Vec<Line> {
    let mut lines = Vec::new();
    for check in checks {
        let how = broken
            .filter(|b| b.stage == stage && b.name == check.name)
            .map(|b| b.how);
        if how == Some(BreakHow::Skip) {
            continue;
        }
        let result = catch_unwind(AssertUnwindSafe(|| match how {
            Some(BreakHow::Error) => Err(anyhow!("injected by E2E_CHECK_BREAK")),
            Some(BreakHow::Panic) => panic!("injected by E2E_CHECK_BREAK"),
            _ => (check.run)(),
        }));
        let (status, message) = match result {
            Ok(Ok(Outcome::Pass(m))) => (Status::Pass, m),
            Ok(Ok(Outcome::Fail(m))) => (Status::Fail, m),
            Ok(Err(e)) => (Status::Error, format!("{e:#}")),
            Err(payload) => (Status::Panic, panic_message(&payload)),
        };
        lines.push(Line {
            stage: stage.to_string(),
            name: check.name,
            status,
            message,
        });
    }
    audit(stage, expected, &mut lines);
    lines
}

fn audit(stage: &str, expected: &[String], lines: &mut Vec<Line>) {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for line in lines.iter() {
        *count.entry(line.name.as_str()).or_default() += 1;
    }
    let mut extra = Vec::new();
    for name in expected {
        match count.get(name.as_str()).copied().unwrap_or(0) {
            0 => extra.push((name.clone(), Status::NeverRan, String::new())),
            1 => {}
            n => extra.push((name.clone(), Status::Duplicate, format!("{n} times"))),
        }
    }
    for name in count.keys() {
        if !expected.iter().any(|e| e == name) {
            extra.push((name.to_string(), Status::Unexpected, "reported".to_string()));
        }
    }
    for (name, status, message) in extra {
        lines.push(Line {
            stage: stage.to_string(),
            name,
            status,
            message,
        });
    }
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Pass when `ok`, else fail; both with their message.
pub fn outcome(ok: bool, pass: impl Into<String>, fail: impl Into<String>) -> Outcome {
    if ok {
        Outcome::Pass(pass.into())
    } else {
        Outcome::Fail(fail.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn audit_catches_missing_duplicate_and_unexpected_checks() {
        let checks = vec![
            Check::new("one", || Ok(Outcome::Pass("fine".into()))),
            Check::new("one", || Ok(Outcome::Pass("again".into()))),
            Check::new("stray", || Ok(Outcome::Pass("x".into()))),
        ];
        let lines = run_stage("s", &names(&["one", "two"]), checks, None);
        let status = |n: &str, s: Status| lines.iter().any(|l| l.name == n && l.status == s);
        assert!(status("two", Status::NeverRan));
        assert!(status("one", Status::Duplicate));
        assert!(status("stray", Status::Unexpected));
    }

    #[test]
    fn errors_panics_and_skips_fail() {
        for (how, want) in [
            ("error", Some(Status::Error)),
            ("panic", Some(Status::Panic)),
            ("skip", Some(Status::NeverRan)),
        ] {
            let b = Break::from_env_value(Some(format!("s:one:{how}")))
                .unwrap()
                .unwrap();
            let checks = vec![Check::new("one", || Ok(Outcome::Pass("fine".into())))];
            let lines = run_stage("s", &names(&["one"]), checks, Some(&b));
            assert_eq!(lines.len(), 1, "{how}: {lines:?}");
            assert_eq!(Some(lines[0].status), want, "{how}");
            assert!(!lines[0].passed());
        }
        assert!(Break::from_env_value(Some("nocolon".into())).is_err());
        assert!(Break::from_env_value(Some("a:b:explode".into())).is_err());
        assert_eq!(Break::from_env_value(None).unwrap(), None);
    }
}
