//! `--disk drbd:RESOURCE_OR_MINOR`: which DRBD device carries the guest's disk.
//!
//! Users know their devices either as a minor (`/dev/drbd0`, the number in
//! `/proc/drbd`) or as a resource name from `drbd.conf`; both are accepted so
//! nobody has to translate by hand.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};

/// The resource name that selects the simulated disk (`simulate --disk drbd:sim`).
pub const SIMULATED_RESOURCE: &str = "sim";

/// One `--disk` argument.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DiskSpec {
    /// A DRBD minor: `drbd:0`, `drbd:/dev/drbd0`.
    Minor(u32),
    /// A DRBD resource name: `drbd:r0`, `drbd:/dev/drbd/by-res/r0`.
    Resource(String),
    /// blktap2's tap-remus driver (Xen 4.0-4.12): `tap-remus:HOST:PORT`
    /// (the domain's `tap:remus:HOST:PORT|...` disk), or its control FIFO
    /// by name or absolute path (see [`crate::disk::tap_remus`]).
    TapRemus(String),
}

impl DiskSpec {
    /// True for `drbd:sim`, the disk `remus-ckpt simulate` writes to.
    pub fn is_simulated(&self) -> bool {
        matches!(self, DiskSpec::Resource(name) if name == SIMULATED_RESOURCE)
    }
}

/// DRBD resource names end up in paths and command lines; refuse what
/// `drbdadm` would refuse anyway, so the error comes early and says why.
fn check_resource_name(name: &str, text: &str) -> Result<()> {
    if name.is_empty() {
        bail!("'{text}': empty DRBD resource name (expected drbd:RESOURCE or drbd:MINOR, e.g. drbd:r0 or drbd:0)");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '/' || *c == ':')
    {
        bail!("'{text}': DRBD resource name '{name}' contains {bad:?} (expected drbd:RESOURCE or drbd:MINOR)");
    }
    Ok(())
}

fn parse_minor(digits: &str, text: &str) -> Result<u32> {
    digits.parse::<u32>().map_err(|_| {
        anyhow::anyhow!(
            "'{text}': DRBD minor '{digits}' is out of range (expected 0..{})",
            u32::MAX
        )
    })
}

impl FromStr for DiskSpec {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        if let Some(arg) = trimmed.strip_prefix("tap-remus:") {
            if arg.is_empty() || arg.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!(
                    "'{text}': expected tap-remus:HOST:PORT (as in the domain's \
                     tap:remus:HOST:PORT disk) or tap-remus:/var/run/tap/remus_... \
                     (the driver's control FIFO)"
                );
            }
            return Ok(DiskSpec::TapRemus(arg.to_owned()));
        }
        let Some(rest) = trimmed.strip_prefix("drbd:") else {
            bail!(
                "'{text}' is not a disk spec: expected drbd:RESOURCE or drbd:MINOR \
                 (e.g. drbd:r0, drbd:0, drbd:/dev/drbd0), or tap-remus:HOST:PORT"
            );
        };
        if let Some(name) = rest.strip_prefix("/dev/drbd/by-res/") {
            // by-res/NAME or by-res/NAME/VOLUME (8.4+): the resource is what counts.
            let name = name.split('/').next().unwrap_or_default();
            check_resource_name(name, text)?;
            return Ok(DiskSpec::Resource(name.to_owned()));
        }
        if let Some(digits) = rest.strip_prefix("/dev/drbd") {
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(DiskSpec::Minor(parse_minor(digits, text)?));
            }
            bail!("'{text}': expected /dev/drbdN or /dev/drbd/by-res/RESOURCE after drbd:");
        }
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(DiskSpec::Minor(parse_minor(rest, text)?));
        }
        check_resource_name(rest, text)?;
        Ok(DiskSpec::Resource(rest.to_owned()))
    }
}

impl fmt::Display for DiskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskSpec::Minor(minor) => write!(f, "drbd:{minor}"),
            DiskSpec::Resource(name) => write!(f, "drbd:{name}"),
            DiskSpec::TapRemus(arg) => write!(f, "tap-remus:{arg}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minors_and_resources() {
        assert_eq!("drbd:0".parse::<DiskSpec>().unwrap(), DiskSpec::Minor(0));
        assert_eq!("drbd:17".parse::<DiskSpec>().unwrap(), DiskSpec::Minor(17));
        assert_eq!(
            "drbd:/dev/drbd3".parse::<DiskSpec>().unwrap(),
            DiskSpec::Minor(3)
        );
        assert_eq!(
            "drbd:r0".parse::<DiskSpec>().unwrap(),
            DiskSpec::Resource("r0".into())
        );
        assert_eq!(
            "drbd:/dev/drbd/by-res/web/0".parse::<DiskSpec>().unwrap(),
            DiskSpec::Resource("web".into())
        );
        assert!("drbd:sim".parse::<DiskSpec>().unwrap().is_simulated());
        assert!(!"drbd:r0".parse::<DiskSpec>().unwrap().is_simulated());
    }

    #[test]
    fn display_round_trips() {
        for text in ["drbd:0", "drbd:r0", "drbd:sim", "drbd:4294967295"] {
            let spec: DiskSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
            assert_eq!(spec.to_string().parse::<DiskSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn clear_errors() {
        assert_eq!(
            "tap-remus:10.0.0.2:9000".parse::<DiskSpec>().unwrap(),
            DiskSpec::TapRemus("10.0.0.2:9000".into())
        );
        assert!("tap-remus:".parse::<DiskSpec>().is_err());
        let err = "tap:remus:foo".parse::<DiskSpec>().unwrap_err().to_string();
        assert!(err.contains("drbd:RESOURCE or drbd:MINOR"), "{err}");
        let err = "drbd:".parse::<DiskSpec>().unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = "drbd:4294967296"
            .parse::<DiskSpec>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("out of range"), "{err}");
        let err = "drbd:r 0".parse::<DiskSpec>().unwrap_err().to_string();
        assert!(err.contains("contains"), "{err}");
        assert!("drbd:/dev/drbdx".parse::<DiskSpec>().is_err());
        assert!("drbd:/dev/drbd/by-res/".parse::<DiskSpec>().is_err());
    }
}
