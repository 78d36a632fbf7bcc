//! `threshold`: the Lmin/Lmax rule users ask for.
//!
//! Multiplicative decrease reacts within one checkpoint to a burst (a size
//! above Lmax costs pause time now); growth waits for `below_count`
//! checkpoints under Lmin so that one quiet epoch does not undo it.

use super::{Clamp, Decision, Observation, Policy};

#[derive(Debug, Clone)]
pub struct Threshold {
    pub lmin_bytes: u64,
    pub lmax_bytes: u64,
    pub decrease: f64,
    pub increase: f64,
    pub increase_step_ms: f64,
    pub below_count: u32,
    pub clamp: Clamp,
    /// Current interval.
    pub interval_ms: u32,
    /// Consecutive checkpoints seen below Lmin.
    pub below_run: u32,
}

impl Threshold {
    /// Interval for the next checkpoint after seeing `obs`, ms.
    fn next_interval_ms(&mut self, obs: &Observation) -> u32 {
        if obs.live {
            return self.interval_ms;
        }
        let current = f64::from(self.interval_ms);
        if obs.size_bytes > self.lmax_bytes {
            self.below_run = 0;
            self.interval_ms = self.clamp.apply(current * self.decrease);
        } else if obs.size_bytes < self.lmin_bytes {
            self.below_run += 1;
            if self.below_run >= self.below_count {
                self.below_run = 0;
                let grown = current * self.increase + self.increase_step_ms;
                // Rounding must not eat a small step: grow by at least 1 ms.
                self.interval_ms = self.clamp.apply(grown.max(current + 1.0));
            }
        } else {
            self.below_run = 0;
        }
        self.interval_ms
    }
}

impl Policy for Threshold {
    fn name(&self) -> String {
        "threshold".to_string()
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
    use proptest::prelude::*;

    fn policy(interval_ms: u32) -> Threshold {
        Threshold {
            lmin_bytes: 4 << 20,
            lmax_bytes: 16 << 20,
            decrease: 0.5,
            increase: 1.25,
            increase_step_ms: 0.0,
            below_count: 2,
            clamp: Clamp {
                tmin_ms: 10,
                tmax_ms: 2000,
            },
            interval_ms,
            below_run: 0,
        }
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
    fn live_round_is_ignored() {
        let mut p = policy(200);
        let live = Observation {
            size_bytes: 1 << 30,
            period_ms: 0.0,
            live: true,
            ..Observation::default()
        };
        assert_eq!(p.next_interval_ms(&live), 200);
    }

    #[test]
    fn grows_only_after_below_count() {
        let mut p = policy(200);
        assert_eq!(p.next_interval_ms(&obs(1 << 20)), 200);
        assert_eq!(p.next_interval_ms(&obs(1 << 20)), 250);
    }

    proptest! {
        #[test]
        fn shrinks_above_lmax(start in 10u32..=2000, size in (16u64 << 20) + 1..u64::MAX / 2) {
            let mut p = policy(start);
            let next = p.next_interval_ms(&obs(size));
            prop_assert!(next < start || start == 10);
            prop_assert!(next >= 10);
        }

        #[test]
        fn grows_below_lmin(start in 10u32..=2000, size in 0u64..(4 << 20)) {
            let mut p = policy(start);
            p.next_interval_ms(&obs(size));
            let next = p.next_interval_ms(&obs(size));
            prop_assert!(next > start || start == 2000);
            prop_assert!(next <= 2000);
        }

        #[test]
        fn holds_inside_band(start in 10u32..=2000, size in (4u64 << 20)..=(16 << 20)) {
            let mut p = policy(start);
            prop_assert_eq!(p.next_interval_ms(&obs(size)), start);
            prop_assert_eq!(p.next_interval_ms(&obs(size)), start);
        }

        #[test]
        fn clamps_hold(start in 10u32..=2000, sizes in proptest::collection::vec(any::<u64>(), 1..200)) {
            let mut p = policy(start);
            for s in sizes {
                let next = p.next_interval_ms(&obs(s));
                prop_assert!((10..=2000).contains(&next));
            }
        }
    }
}
