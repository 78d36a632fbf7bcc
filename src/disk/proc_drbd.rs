//! Parser for `/proc/drbd` (DRBD 8.3, 8.4 and remus-drbd).
//!
//! Pure: text in, structure out, never a panic, whatever the text — the
//! file is read while DRBD changes state under us, and a torn or unexpected
//! read must cost one sample, not the run. Fields we do not need are skipped;
//! lines we do not recognise (resync progress bars, `finish:`, `act_log:`,
//! `GIT-hash:`, DRBD 9 `Transports`) are ignored.

/// The `version:` line, e.g. `version: 8.4.11-1 (api:1/proto:86-101)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrbdVersion {
    /// 8 or 9.
    pub major: u32,
    /// 3 or 4 for DRBD 8.
    pub minor: u32,
    /// Patch level (0 when absent).
    pub patch: u32,
    /// The version as printed, e.g. `8.4.11-1`.
    pub text: String,
}

/// Which kernel module wrote the file, which decides how to read counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcFlavor {
    /// DRBD 8.3.
    Drbd83,
    /// DRBD 8.4.
    Drbd84,
    /// DRBD 8.3.11 + protocol D (the Remus patch): `def:` and `chkpt:` present.
    RemusDrbd,
    /// DRBD 9: `/proc/drbd` has no per-device data; use `drbdsetup events2`.
    Drbd9,
    /// No or unrecognised version line.
    Unknown,
}

impl ProcFlavor {
    /// Short label for source names and messages.
    pub fn label(self) -> &'static str {
        match self {
            ProcFlavor::Drbd83 => "8.3",
            ProcFlavor::Drbd84 => "8.4",
            ProcFlavor::RemusDrbd => "remus-drbd",
            ProcFlavor::Drbd9 => "9",
            ProcFlavor::Unknown => "unknown version",
        }
    }
}

/// One `N: cs:…` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcMinor {
    /// The device minor (`/dev/drbdN`).
    pub minor: u32,
    /// Connection state, e.g. `Connected`, `WFConnection`, `Unconfigured`.
    pub cs: String,
    /// Roles `local/peer`, e.g. `Primary/Secondary` (`st:` before 8.3).
    pub ro: Option<String>,
    /// Disk states `local/peer`, e.g. `UpToDate/UpToDate`, `Diskless/UpToDate`.
    pub ds: Option<String>,
    /// `ns:`: KiB sent to the peer, cumulative, 32-bit in 8.x (wraps).
    pub ns_kib: Option<u64>,
    /// remus-drbd `def:`: writes deferred to the next checkpoint.
    pub deferred: Option<u64>,
    /// remus-drbd `chkpt:`: checkpoints acknowledged by the peer.
    pub checkpoints: Option<u64>,
}

/// Connection states in which a DRBD 8.x/9 device has no peer to send to.
const DISCONNECTED_STATES: &[&str] = &[
    "StandAlone",
    "Disconnecting",
    "Unconnected",
    "Timeout",
    "BrokenPipe",
    "NetworkFailure",
    "ProtocolError",
    "TearDown",
    "WFConnection",
    "WFReportParams",
    "Connecting",
    "Unconfigured",
];

/// True when `state` (a `cs:` or DRBD 9 `connection:` value) means a peer
/// is attached. Resync and verify states count as connected: data flows.
pub fn is_connected_state(state: &str) -> bool {
    !state.is_empty() && !DISCONNECTED_STATES.contains(&state)
}

impl ProcMinor {
    /// False for `N: cs:Unconfigured` placeholders.
    pub fn is_configured(&self) -> bool {
        self.cs != "Unconfigured"
    }

    /// True when the device has a peer (see [`is_connected_state`]).
    pub fn is_connected(&self) -> bool {
        is_connected_state(&self.cs)
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcDrbd {
    /// The `version:` line, when present and readable.
    pub version: Option<DrbdVersion>,
    /// Minor blocks in file order.
    pub minors: Vec<ProcMinor>,
}

impl ProcDrbd {
    /// Which module wrote this file.
    pub fn flavor(&self) -> ProcFlavor {
        match &self.version {
            Some(v) if v.major >= 9 => ProcFlavor::Drbd9,
            _ if self
                .minors
                .iter()
                .any(|m| m.deferred.is_some() || m.checkpoints.is_some()) =>
            {
                ProcFlavor::RemusDrbd
            }
            Some(v) if v.major == 8 && v.minor == 4 => ProcFlavor::Drbd84,
            Some(v) if v.major == 8 && v.minor <= 3 => ProcFlavor::Drbd83,
            Some(v) if v.major == 8 => ProcFlavor::Drbd84,
            _ => ProcFlavor::Unknown,
        }
    }

    /// The block for `minor`, if the file lists it.
    pub fn minor(&self, minor: u32) -> Option<&ProcMinor> {
        self.minors.iter().find(|m| m.minor == minor)
    }

    /// "0 (Connected), 1 (WFConnection)": for error messages.
    pub fn describe_minors(&self) -> String {
        let listed: Vec<String> = self
            .minors
            .iter()
            .filter(|m| m.is_configured())
            .map(|m| format!("{} ({})", m.minor, m.cs))
            .collect();
        if listed.is_empty() {
            "none configured".to_owned()
        } else {
            listed.join(", ")
        }
    }
}

fn parse_version(rest: &str) -> Option<DrbdVersion> {
    let text = rest.split_whitespace().next()?;
    let numeric: &str = text
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap_or_default();
    let mut parts = numeric.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next().flatten()?;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some(DrbdVersion {
        major,
        minor,
        patch,
        text: text.to_owned(),
    })
}

/// `" 0: cs:Connected ro:…"` → (0, "cs:Connected ro:…").
fn split_minor_header(line: &str) -> Option<(u32, &str)> {
    let trimmed = line.trim_start();
    let (head, rest) = trimmed.split_once(':')?;
    if head.is_empty() || !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A header is "N: key:value"; `N:` followed by a non-space is something else.
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
        return None;
    }
    Some((head.parse().ok()?, rest))
}

fn fields(line: &str) -> impl Iterator<Item = (&str, &str)> {
    line.split_whitespace()
        .filter_map(|tok| tok.split_once(':'))
}

fn number(value: &str) -> Option<u64> {
    value.parse().ok()
}

/// Parses the text of `/proc/drbd`. Never fails: whatever is unreadable is
/// left out (a minor without a counter line has `ns_kib: None`).
pub fn parse_proc_drbd(text: &str) -> ProcDrbd {
    let mut out = ProcDrbd::default();
    // Index into out.minors of the block the following lines belong to.
    let mut current: Option<usize> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("version:") {
            if out.version.is_none() {
                out.version = parse_version(rest);
            }
            current = None;
            continue;
        }
        if let Some((minor, rest)) = split_minor_header(line) {
            let mut block = ProcMinor {
                minor,
                ..ProcMinor::default()
            };
            for (key, value) in fields(rest) {
                match key {
                    "cs" => block.cs = value.to_owned(),
                    "ro" | "st" => block.ro = Some(value.to_owned()),
                    "ds" => block.ds = Some(value.to_owned()),
                    _ => {}
                }
            }
            out.minors.push(block);
            current = Some(out.minors.len() - 1);
            continue;
        }
        let Some(index) = current else { continue };
        let Some(block) = out.minors.get_mut(index) else {
            continue;
        };
        if block.ns_kib.is_some() || !fields(trimmed).any(|(k, _)| k == "ns") {
            continue; // resync progress, finish:, act_log:, … or a second counter line.
        }
        for (key, value) in fields(trimmed) {
            match key {
                "ns" => block.ns_kib = number(value),
                "def" => block.deferred = number(value),
                "chkpt" => block.checkpoints = number(value),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DRBD84: &str = "\
version: 8.4.11-1 (api:1/proto:86-101)
GIT-hash: 66145a308421e9c124ec391a7848ac20203bb03c build by mockbuild@, 2018-11-03 01:26:55
 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----
    ns:10167368 nr:1357185492 dw:2024894776 dr:67769600 al:326677858 bm:1111517 lo:2 pe:0 ua:0 ap:1 ep:1 wo:f oos:305611780
";

    #[test]
    fn reads_the_facts_example() {
        let p = parse_proc_drbd(DRBD84);
        assert_eq!(p.flavor(), ProcFlavor::Drbd84);
        assert_eq!(p.version.as_ref().unwrap().text, "8.4.11-1");
        let m = p.minor(0).unwrap();
        assert_eq!(m.cs, "Connected");
        assert_eq!(m.ro.as_deref(), Some("Primary/Secondary"));
        assert_eq!(m.ds.as_deref(), Some("UpToDate/UpToDate"));
        assert_eq!(m.ns_kib, Some(10_167_368));
        assert_eq!(m.deferred, None);
        assert!(m.is_connected());
    }

    #[test]
    fn remus_fields() {
        let text = "version: 8.3.11 (api:88/proto:86-96)\n 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate D r----\n    ns:12 nr:0 dw:12 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:b def:3 chkpt:41 oos:0\n";
        let p = parse_proc_drbd(text);
        assert_eq!(p.flavor(), ProcFlavor::RemusDrbd);
        let m = p.minor(0).unwrap();
        assert_eq!(
            (m.ns_kib, m.deferred, m.checkpoints),
            (Some(12), Some(3), Some(41))
        );
    }

    #[test]
    fn header_lookalikes_are_not_minors() {
        let p = parse_proc_drbd(
            "version: 8.4.1\n 0: cs:Connected\n\tfinish: 0:01:23 speed: 1 K/sec\n10:30 x\n",
        );
        assert_eq!(p.minors.len(), 1);
        assert_eq!(p.minors[0].ns_kib, None);
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse_proc_drbd(&text).flavor();
        }

        #[test]
        fn never_panics_on_drbd_shaped_noise(text in "([ 0-9]{0,3}:? ?(cs|ns|ro|ds|def|chkpt|version|oos):?[0-9A-Za-z./-]{0,12}[ \n\t]?){0,40}") {
            let p = parse_proc_drbd(&text);
            let _ = p.describe_minors();
        }
    }
}
