//! [`DiskSource`] for DRBD 9: a long-running `drbdsetup events2 --statistics --poll`.
//!
//! DRBD 9 publishes `sent:` only through netlink; `drbdsetup` is the stable
//! interface to it. Spawning one per checkpoint would cost milliseconds
//! inside a 25–200 ms epoch, so one child runs for the whole session and is
//! asked for fresh statistics (`n` on its stdin) at each sample. Its stdout
//! is read on a thread so a silent child can never block a checkpoint
//! record for longer than the poll timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::counter::{Counter, CounterStep, CounterWidth};
use super::events2::{Events2State, PeerDeviceKey};
use super::proc_drbd::is_connected_state;
use super::{DiskSample, DiskSource};

/// How to run `drbdsetup`; injectable so tests can put a fake first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Events2Config {
    /// Program to run: `drbdsetup` (looked up on PATH) or a path.
    pub program: PathBuf,
    /// How long a sample waits for refreshed statistics after `n`.
    pub poll_timeout: Duration,
    /// How long opening waits for the initial dump (`exists -`).
    pub start_timeout: Duration,
}

impl Default for Events2Config {
    fn default() -> Self {
        Events2Config {
            program: PathBuf::from("drbdsetup"),
            poll_timeout: Duration::from_millis(200),
            start_timeout: Duration::from_secs(2),
        }
    }
}

/// Keeps the last few KiB of the child's stderr for error messages.
const STDERR_KEEP_BYTES: usize = 4096;

/// A running `drbdsetup` whose stdout lines arrive on a channel.
struct DrbdsetupChild {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    what: String,
}

impl DrbdsetupChild {
    fn spawn(program: &PathBuf, args: &[&str]) -> Result<DrbdsetupChild> {
        let what = format!("`{} {}`", program.display(), args.join(" "));
        let mut child = match Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
                "{} not found: DRBD 9 counters are read with drbdsetup; install drbd-utils",
                program.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("starting {what}")),
        };
        let stdout = child.stdout.take().context("child stdout was not piped")?;
        let stderr_pipe = child.stderr.take().context("child stderr was not piped")?;
        let (tx, lines) = crossbeam_channel::unbounded();
        thread::Builder::new()
            .name("drbd-events2".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .context("starting the events2 reader thread")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let keep = Arc::clone(&stderr);
        thread::Builder::new()
            .name("drbd-events2-err".into())
            .spawn(move || {
                let mut pipe = stderr_pipe;
                let mut buf = [0u8; 1024];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut kept) = keep.lock() {
                        kept.push_str(&String::from_utf8_lossy(&buf[..n]));
                        if kept.len() > STDERR_KEEP_BYTES {
                            let cut = kept.len() - STDERR_KEEP_BYTES;
                            let cut = (cut..kept.len())
                                .find(|i| kept.is_char_boundary(*i))
                                .unwrap_or(kept.len());
                            kept.drain(..cut);
                        }
                    }
                }
            })
            .context("starting the events2 stderr thread")?;
        let stdin = child.stdin.take();
        Ok(DrbdsetupChild {
            child,
            stdin,
            lines,
            stderr,
            what,
        })
    }

    /// Applies lines to `state` until the initial dump is complete (the
    /// `exists -` line), or says why it stopped first: `timeout` passed
    /// without it, or the child is gone.
    fn read_initial_dump(
        &self,
        state: &mut Events2State,
        timeout: Duration,
    ) -> std::result::Result<(), RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        while !state.initial_dump_done {
            let line = self.lines.recv_deadline(deadline)?;
            state.apply_line(&line);
        }
        Ok(())
    }

    /// Why the child is gone: exit status and what it said on stderr.
    fn death_note(&mut self) -> String {
        // Give the stderr thread a moment to collect the last words.
        let deadline = Instant::now() + Duration::from_millis(200);
        let ended = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break format!("exited ({status})"),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                Ok(None) => break "closed its output (still running)".to_owned(),
                Err(e) => break format!("ended (status unknown: {e})"),
            }
        };
        thread::sleep(Duration::from_millis(20));
        let said = self
            .stderr
            .lock()
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        if said.is_empty() {
            format!("{} {ended}", self.what)
        } else {
            format!("{} {ended}: {said}", self.what)
        }
    }
}

impl Drop for DrbdsetupChild {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // The child may already be gone; both results are irrelevant then.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `drbdsetup events2 --now` dump (all resources), for resolving
/// minors and for naming what exists in error messages.
fn dump_now(config: &Events2Config) -> Result<Events2State> {
    let mut child = DrbdsetupChild::spawn(&config.program, &["events2", "--now"])?;
    let mut state = Events2State::default();
    match child.read_initial_dump(&mut state, config.start_timeout) {
        Err(RecvTimeoutError::Disconnected) if state.resources.is_empty() => {
            bail!("{}", child.death_note())
        }
        // What arrived is the best answer there is: it only names things.
        Ok(()) | Err(_) => Ok(state),
    }
}

/// " (DRBD 9 resources: a, b)" or "" when they cannot be listed.
fn known_resources(config: &Events2Config) -> String {
    match dump_now(config) {
        Ok(state) if state.resources.is_empty() => " (no DRBD 9 resources found)".to_owned(),
        Ok(state) => format!(
            " (DRBD 9 resources: {})",
            state.resources.into_iter().collect::<Vec<_>>().join(", ")
        ),
        Err(_) => String::new(),
    }
}

/// Polls that get no answer at all before the source gives up: a
/// `drbdsetup` that stopped reading would otherwise fill its stdin pipe
/// and block the checkpoint path on the next write.
const MAX_SILENT_POLLS: u32 = 10;

/// Samples `sent:` of every peer device of one DRBD 9 resource (or of one
/// volume of it, when opened by minor).
pub struct Events2Source {
    name: String,
    resource: String,
    /// Only this volume (opened by minor), else all volumes.
    volume: Option<String>,
    config: Events2Config,
    child: DrbdsetupChild,
    state: Events2State,
    /// Per peer device, kept after a device is destroyed so the sum never drops.
    counters: BTreeMap<PeerDeviceKey, Counter>,
    silent_polls: u32,
}

impl Events2Source {
    /// Starts `drbdsetup events2 --statistics --poll RESOURCE`, reads the
    /// initial dump and checks the resource exists and has a connected peer.
    pub fn open(resource: &str, config: &Events2Config) -> Result<Self> {
        Self::open_volume(&format!("drbd:{resource}"), resource, None, config)
    }

    /// Opens the resource volume whose device is `/dev/drbd{minor}`,
    /// found with `drbdsetup events2 --now`.
    pub fn open_minor(minor: u32, config: &Events2Config) -> Result<Self> {
        let state =
            dump_now(config).with_context(|| format!("drbd:{minor}: listing DRBD 9 devices"))?;
        let Some((resource, volume)) = state.device_by_minor(minor) else {
            let devices: Vec<String> = state
                .devices
                .iter()
                .filter_map(|((r, v), info)| Some(format!("{r}/{v} = minor {}", info.minor?)))
                .collect();
            bail!(
                "drbd:{minor}: no DRBD 9 device has minor {minor} (devices: {})",
                if devices.is_empty() {
                    "none".to_owned()
                } else {
                    devices.join(", ")
                }
            );
        };
        Self::open_volume(&format!("drbd:{minor}"), resource, Some(volume), config)
    }

    fn open_volume(
        label: &str,
        resource: &str,
        volume: Option<&str>,
        config: &Events2Config,
    ) -> Result<Self> {
        let mut child = DrbdsetupChild::spawn(
            &config.program,
            &["events2", "--statistics", "--poll", resource],
        )?;
        let mut state = Events2State::default();
        match child.read_initial_dump(&mut state, config.start_timeout) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => bail!(
                "{label}: {} printed no initial state within {:?}",
                child.what,
                config.start_timeout
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let note = child.death_note();
                bail!("{label}: {note}{}", known_resources(config));
            }
        }
        if !state.resources.contains(resource) {
            bail!(
                "unknown DRBD resource '{resource}'{}",
                known_resources(config)
            );
        }
        let connections: Vec<(String, String)> = state
            .connections_of(resource)
            .map(|(peer, info)| {
                (
                    info.conn_name
                        .clone()
                        .unwrap_or_else(|| format!("node {peer}")),
                    info.connection.clone().unwrap_or_default(),
                )
            })
            .collect();
        if connections.is_empty() {
            bail!("{label}: resource {resource} has no peer connection; nothing is replicated (check `drbdadm status {resource}`)");
        }
        if !connections.iter().any(|(_, cs)| is_connected_state(cs)) {
            let states: Vec<String> = connections
                .iter()
                .map(|(peer, cs)| format!("{peer}: {}", if cs.is_empty() { "unknown" } else { cs }))
                .collect();
            bail!(
                "{label}: resource {resource} is not connected ({}); connect it with `drbdadm connect {resource}`",
                states.join(", ")
            );
        }
        let peers: BTreeSet<&str> = connections.iter().map(|(p, _)| p.as_str()).collect();
        let what = match volume {
            Some(v) => format!("resource {resource} volume {v}"),
            None => {
                let volumes: BTreeSet<&str> = state
                    .peer_devices_of(resource)
                    .map(|(k, _)| k.volume.as_str())
                    .collect();
                format!(
                    "volumes {}",
                    volumes.into_iter().collect::<Vec<_>>().join(",")
                )
            }
        };
        let name = format!(
            "{label} (drbdsetup events2, DRBD 9, {what}, peers {})",
            peers.into_iter().collect::<Vec<_>>().join(","),
        );
        Ok(Events2Source {
            name,
            resource: resource.to_owned(),
            volume: volume.map(str::to_owned),
            config: config.clone(),
            child,
            state,
            counters: BTreeMap::new(),
            silent_polls: 0,
        })
    }

    /// The peer devices this source counts, with their last `sent:`.
    fn selected(&self) -> Vec<(PeerDeviceKey, Option<u64>)> {
        self.state
            .peer_devices_of(&self.resource)
            .filter(|(k, _)| self.volume.as_ref().map_or(true, |v| *v == k.volume))
            .map(|(k, info)| (k.clone(), info.sent_kib))
            .collect()
    }

    fn dead(&mut self) -> anyhow::Error {
        anyhow!("{}", self.child.death_note())
    }

    /// Asks for fresh statistics and applies what arrives within the poll
    /// timeout; stale values stand in for peer devices that stay silent.
    fn poll(&mut self) -> Result<()> {
        // Apply queued events (state changes) first, so they are not
        // mistaken for the answer to this poll.
        loop {
            match self.child.lines.try_recv() {
                Ok(line) => {
                    self.state.apply_line(&line);
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Err(self.dead()),
            }
        }
        let asked = match self.child.stdin.as_mut() {
            Some(stdin) => stdin.write_all(b"n\n").and_then(|()| stdin.flush()),
            None => Err(io::Error::new(io::ErrorKind::BrokenPipe, "stdin closed")),
        };
        if let Err(e) = asked {
            let note = self.dead();
            return Err(note.context(format!("asking drbdsetup for statistics: {e}")));
        }
        let mut waiting: BTreeSet<PeerDeviceKey> =
            self.selected().into_iter().map(|(k, _)| k).collect();
        let expecting_answer = !waiting.is_empty();
        let mut answered = false;
        let deadline = Instant::now() + self.config.poll_timeout;
        while !waiting.is_empty() {
            match self.child.lines.recv_deadline(deadline) {
                Ok(line) => {
                    answered = true;
                    if let Some(key) = self.state.apply_line(&line) {
                        waiting.remove(&key);
                    }
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return Err(self.dead()),
            }
        }
        if expecting_answer && !answered {
            self.silent_polls += 1;
            if self.silent_polls >= MAX_SILENT_POLLS {
                bail!(
                    "{} answered none of the last {MAX_SILENT_POLLS} statistics requests",
                    self.child.what
                );
            }
        } else {
            self.silent_polls = 0;
        }
        Ok(())
    }
}

impl DiskSource for Events2Source {
    fn name(&self) -> &str {
        &self.name
    }

    fn sample(&mut self) -> Result<DiskSample> {
        self.poll()?;
        for (key, sent_kib) in self.selected() {
            let Some(sent_kib) = sent_kib else {
                continue;
            };
            let counter = self
                .counters
                .entry(key.clone())
                .or_insert_with(|| Counter::new(CounterWidth::U64));
            if let CounterStep::Restarted { previous, now } = counter.update(sent_kib) {
                eprintln!(
                    "remus-ckpt: warning: {}: peer {} volume {} sent: went back from {previous} \
                     to {now} KiB (peer device recreated?); counting it as restarted",
                    self.name, key.peer_node_id, key.volume
                );
            }
        }
        let sent_kib = self
            .counters
            .values()
            .fold(0u64, |sum, c| sum.saturating_add(c.total()));
        Ok(DiskSample {
            sent_kib,
            deferred: None,
            checkpoints: None,
        })
    }
}
