//! Human quantities on the command line: `16MiB`, `4M`, `10ms`, `1.5s`.
//!
//! Sizes accept B, KiB/MiB/GiB (binary) and K/KB/M/MB/G/GB (decimal);
//! a bare number is bytes. Durations accept ns, us, ms, s, m; a bare
//! number is milliseconds, the unit Remus users think in.

use std::fmt;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// `x` rounded to the nearest whole number, as a u64: NaN and negatives
/// give 0, values past u64::MAX give u64::MAX. Every f64 -> u64 conversion
/// of a rate, a duration or a size goes through here, so the saturation is
/// stated once instead of hidden in an `as`.
pub fn round_to_u64_saturating(x: f64) -> u64 {
    // Reason: Rust's float-to-int `as` saturates (NaN -> 0), which is the
    // conversion wanted here; nothing can wrap or change sign silently.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = x.round() as u64;
    n
}

/// As [`round_to_u64_saturating`], for a u32 (milliseconds).
pub fn round_to_u32_saturating(x: f64) -> u32 {
    // Reason: as above; float-to-int `as` saturates at 0 and u32::MAX.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = x.round() as u32;
    n
}

/// `ms` as whole milliseconds in a u32, saturating at u32::MAX (49 days).
pub fn duration_to_ms_saturating(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn split_number(text: &str) -> Result<(f64, &str)> {
    let s = text.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    if end == 0 {
        bail!("'{text}' does not start with a number");
    }
    let value: f64 = s[..end]
        .parse()
        .with_context(|| format!("'{text}' is not a number with a unit"))?;
    Ok((value, s[end..].trim()))
}

/// Parses a byte size such as `16MiB` or `4000000`.
pub fn parse_bytes(text: &str) -> Result<u64> {
    let (value, unit) = split_number(text)?;
    let factor: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => bail!("unknown size unit '{unit}' in '{text}' (use B, KiB, MiB, GiB, KB, MB, GB)"),
    };
    let bytes = value * factor;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        bail!("size '{text}' is too large");
    }
    Ok(round_to_u64_saturating(bytes))
}

/// Parses a duration such as `10ms`, `1.5s` or `200` (milliseconds).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let (value, unit) = split_number(text)?;
    let secs = match unit {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "" | "ms" => value / 1e3,
        "s" => value,
        "m" | "min" => value * 60.0,
        _ => bail!("unknown time unit '{unit}' in '{text}' (use ns, us, ms, s, min)"),
    };
    Duration::try_from_secs_f64(secs).with_context(|| format!("duration '{text}' is out of range"))
}

/// A byte count for clap: parsed with [`parse_bytes`], shown as MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl std::str::FromStr for Bytes {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_bytes(s).map(Bytes)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", format_bytes(self.0))
    }
}

/// A duration for clap: parsed with [`parse_duration`], shown in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(pub Duration);

impl Millis {
    pub fn as_ms_f64(&self) -> f64 {
        self.0.as_secs_f64() * 1e3
    }
}

impl std::str::FromStr for Millis {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_duration(s).map(Millis)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.as_ms_f64())
    }
}

/// Formats bytes with a binary unit, e.g. `16.0MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_bytes("4M").unwrap(), 4_000_000);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert_eq!(parse_bytes("1.5 KiB").unwrap(), 1536);
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10ms").unwrap(), Duration::from_millis(10));
        assert_eq!(parse_duration("200").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert!(parse_duration("-1ms").is_err());
        assert!(parse_duration("5 fortnights").is_err());
    }

    #[test]
    fn format() {
        assert_eq!(format_bytes(16 << 20), "16.0MiB");
        assert_eq!(format_bytes(100), "100B");
    }
}
