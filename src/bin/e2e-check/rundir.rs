//! What one run left on disk, read once: the serial log, the scenario's
//! settings and, per stage, what dom0 wrote under `out/<stage>/`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use remus_ckpt::row::read_csv;
use remus_ckpt::row::Row;

/// What xl -vvv prints once per guest suspend, i.e. once per checkpoint
/// (libxl_dom_suspend.c: `LOGD(DEBUG, domid, "guest has suspended")`).
pub const XL_CHECKPOINT_LINE: &str = "guest has suspended";

/// A `KEY=VALUE` file (status.env, scenario.env, helper.txt); the last
/// value of a key wins, surrounding double quotes are dropped.
#[derive(Debug, Clone, Default)]
pub struct Env {
    values: BTreeMap<String, String>,
    all: Vec<(String, String)>,
}

impl Env {
    pub fn parse(text: &str) -> Env {
        let mut env = Env::default();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                env.values.insert(k.trim().to_string(), v.to_string());
                env.all.push((k.trim().to_string(), v.to_string()));
            }
        }
        env
    }

    pub fn read(path: &Path) -> Result<Env> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("cannot read {} (did the stage run?)", path.display()))?;
        Ok(Env::parse(&text))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Every value of a key that may repeat (helper_maps, helper_fd, stage_fail).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.all
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn need(&self, key: &str, what: &Path) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| anyhow!("{} has no {key}=", what.display()))
    }

    pub fn need_f64(&self, key: &str, what: &Path) -> Result<f64> {
        let v = self.need(key, what)?;
        v.parse()
            .with_context(|| format!("{}: {key}={v} is not a number", what.display()))
    }
}

/// Reads a text file that may hold bytes that are not UTF-8 (consoles).
pub fn read_lossy(path: &Path) -> Result<String> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).replace('\r', ""))
}

/// One Remus run's directory: `out/a`, or `out/d/budget` in stage D.
#[derive(Debug, Clone)]
pub struct RunFiles {
    pub dir: PathBuf,
    /// The CSV name (`a.csv`), for runs with records.
    pub csv_name: Option<String>,
}

impl RunFiles {
    pub fn new(dir: PathBuf, csv_name: Option<&str>) -> RunFiles {
        RunFiles {
            dir,
            csv_name: csv_name.map(str::to_string),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn status(&self) -> Result<Env> {
        Env::read(&self.path("status.env"))
    }

    pub fn helper(&self) -> Result<Env> {
        let p = self.path("helper.txt");
        let env = Env::read(&p)?;
        if env.get("helper") == Some("none") {
            bail!("{}: no save helper was found under xl", p.display());
        }
        Ok(env)
    }

    pub fn rows(&self) -> Result<Vec<Row>> {
        let name = self
            .csv_name
            .as_deref()
            .ok_or_else(|| anyhow!("{}: this run has no records", self.dir.display()))?;
        read_csv(self.path(name))
    }

    /// Lines of xl's -vvv log that mark a checkpoint.
    pub fn xl_checkpoints(&self) -> Result<usize> {
        let log = read_lossy(&self.path("remus.log"))?;
        Ok(log
            .lines()
            .filter(|l| l.contains(XL_CHECKPOINT_LINE))
            .count())
    }

    /// The guest console logs xenconsoled wrote (guest-*.log).
    pub fn guest_logs(&self) -> Result<Vec<(String, String)>> {
        let mut logs = Vec::new();
        let entries = fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list {}", self.dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("guest-") && name.ends_with(".log") {
                logs.push((name, read_lossy(&entry.path())?));
            }
        }
        logs.sort();
        if logs.is_empty() {
            bail!("{}: no guest console log", self.dir.display());
        }
        Ok(logs)
    }
}

/// Words that mean the guest kernel crashed.
pub const GUEST_CRASH_WORDS: [&str; 4] =
    ["Kernel panic", "BUG:", "Oops", "general protection fault"];

/// The first console line that shows a guest kernel crash, if any.
pub fn guest_crash(logs: &[(String, String)]) -> Option<String> {
    logs.iter().find_map(|(name, text)| {
        text.lines()
            .find(|l| GUEST_CRASH_WORDS.iter().any(|w| l.contains(w)))
            .map(|l| format!("{name}: {}", l.trim()))
    })
}

/// The whole run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
    pub out: PathBuf,
}

impl RunDir {
    pub fn new(root: &Path) -> RunDir {
        RunDir {
            root: root.to_path_buf(),
            out: root.join("out"),
        }
    }

    pub fn serial(&self) -> Result<String> {
        read_lossy(&self.root.join("serial.log"))
    }

    pub fn scenario(&self) -> Result<Env> {
        Env::read(&self.out.join("scenario.env"))
    }

    /// `package=version` lines dom0 listed.
    pub fn xen_packages(&self) -> Result<Vec<(String, String)>> {
        let p = self.out.join("xen-packages.txt");
        let text = read_lossy(&p)?;
        let pkgs: Vec<_> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        if pkgs.is_empty() {
            bail!("{}: dom0 listed no Xen packages", p.display());
        }
        Ok(pkgs)
    }

    /// Earlier attempts of a stage (`out/<stage>-attemptN`), in order.
    pub fn earlier_attempts(&self, stage: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = (1..=20)
            .map(|n| self.out.join(format!("{stage}-attempt{n}")))
            .filter(|p| p.is_dir())
            .collect();
        v.sort();
        v
    }
}
