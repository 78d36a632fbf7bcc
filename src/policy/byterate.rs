//! `byterate`: the rule of US patent 9,652,338 B2, "Dynamic checkpointing
//! systems and methods" (Stratus Technologies; Bissett, Leveille, Chinta;
//! filed 2014, granted 2017), claim 3: the next checkpoint's delay is the
//! batch size to transfer divided by a target transfer rate.
//!
//! Here the batch is the checkpoint just taken: after a checkpoint of B
//! bytes (under `--size-metric`), the next interval is B / R for the
//! configured `--byte-rate` R, clamped to [tmin, tmax]. The patent's N is
//! the buffered network output of the batch; using the checkpoint's own
//! bytes is the reading that applies to a Remus stream, where the
//! checkpoint is what crosses the link. The rule paces the link to an
//! average of about R; it does not look at Lmax at all, which is what a
//! compare against the size-aware policies shows.

use super::{Clamp, Decision, Observation, Policy};

#[derive(Debug, Clone)]
pub struct ByteRate {
    bytes_per_s: f64,
    clamp: Clamp,
    interval_ms: u32,
}

impl ByteRate {
    /// `bytes_per_s` must be above 0 (checked by `PolicyArgs::validate`).
    pub fn new(bytes_per_s: u64, clamp: Clamp, initial_ms: u32) -> Self {
        ByteRate {
            bytes_per_s: bytes_per_s as f64,
            clamp,
            interval_ms: initial_ms,
        }
    }
}

impl ByteRate {
    /// Interval for the next checkpoint after seeing `obs`, ms.
    fn next_interval_ms(&mut self, obs: &Observation) -> u32 {
        if obs.live {
            return self.interval_ms;
        }
        self.interval_ms = self
            .clamp
            .apply(obs.size_bytes as f64 / self.bytes_per_s * 1e3);
        self.interval_ms
    }
}

impl Policy for ByteRate {
    fn name(&self) -> String {
        "byterate".to_string()
    }

    fn initial(&self) -> Decision {
        Decision::interval(self.interval_ms)
    }

    fn decide(&mut self, obs: &Observation) -> Decision {
        Decision::interval(self.next_interval_ms(obs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ByteRate {
        // 100 MB/s: 1 MB -> 10 ms.
        ByteRate::new(
            100_000_000,
            Clamp {
                tmin_ms: 5,
                tmax_ms: 2000,
            },
            200,
        )
    }

    fn obs(size_bytes: u64) -> Observation {
        Observation {
            size_bytes,
            period_ms: 100.0,
            live: false,
            ..Observation::default()
        }
    }

    #[test]
    fn delay_is_bytes_over_rate() {
        let mut p = policy();
        assert_eq!(p.next_interval_ms(&obs(1_000_000)), 10);
        assert_eq!(p.next_interval_ms(&obs(16_000_000)), 160);
        // 12.34 MB / 100 MB/s = 123.4 ms, rounded.
        assert_eq!(p.next_interval_ms(&obs(12_340_000)), 123);
    }

    #[test]
    fn clamped_to_tmin_and_tmax() {
        let mut p = policy();
        assert_eq!(p.next_interval_ms(&obs(0)), 5);
        assert_eq!(p.next_interval_ms(&obs(1_000_000_000)), 2000);
    }

    #[test]
    fn the_live_round_changes_nothing() {
        let mut p = policy();
        let live = Observation {
            size_bytes: 1 << 30,
            period_ms: 0.0,
            live: true,
            ..Observation::default()
        };
        assert_eq!(p.next_interval_ms(&live), 200);
    }
}
