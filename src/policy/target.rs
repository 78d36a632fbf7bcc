//! `target`: aim every checkpoint at a size inside the band.
//!
//! The checkpoint size grows with the time the guest ran since the last
//! one, so from the latest size and period we estimate a dirty rate in
//! bytes per ms and choose `interval = target / rate`. A rising rate is
//! believed at once (a burst must not overshoot Lmax twice); a falling one
//! is averaged, and each step is limited to a factor of `max_step`, so that
//! a single quiet checkpoint does not swing the interval to tmax.

use super::{Clamp, Decision, Observation, Policy};

#[derive(Debug, Clone)]
pub struct Target {
    target_bytes: u64,
    max_step: f64,
    alpha: f64,
    clamp: Clamp,
    interval_ms: u32,
    /// Estimated dirty rate, bytes per ms of period.
    rate_bytes_per_ms: Option<f64>,
}

impl Target {
    pub fn new(
        target_bytes: u64,
        max_step: f64,
        alpha: f64,
        clamp: Clamp,
        initial_ms: u32,
    ) -> Self {
        Target {
            target_bytes,
            max_step,
            alpha,
            clamp,
            interval_ms: initial_ms,
            rate_bytes_per_ms: None,
        }
    }
}

impl Target {
    /// Interval for the next checkpoint after seeing `obs`, ms.
    fn next_interval_ms(&mut self, obs: &Observation) -> u32 {
        if obs.live || obs.period_ms <= 0.0 {
            return self.interval_ms;
        }
        let sample = obs.size_bytes as f64 / obs.period_ms;
        let rate = match self.rate_bytes_per_ms {
            Some(old) if sample < old => old + self.alpha * (sample - old),
            _ => sample,
        };
        self.rate_bytes_per_ms = Some(rate);
        let current = f64::from(self.interval_ms);
        let wanted = if rate > 0.0 {
            self.target_bytes as f64 / rate
        } else {
            f64::INFINITY
        };
        let limited = wanted.clamp(current / self.max_step, current * self.max_step);
        self.interval_ms = self.clamp.apply(limited);
        self.interval_ms
    }
}

impl Policy for Target {
    fn name(&self) -> String {
        "target".to_string()
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

    fn policy() -> Target {
        Target::new(
            10 << 20,
            2.0,
            0.3,
            Clamp {
                tmin_ms: 10,
                tmax_ms: 2000,
            },
            200,
        )
    }

    /// A steady guest dirtying `rate` bytes per ms: the size is rate x period.
    fn converge(rate: f64) -> (u32, u64) {
        let mut p = policy();
        let mut interval = p.initial().interval_ms;
        let mut size = 0;
        for _ in 0..40 {
            size = crate::units::round_to_u64_saturating((rate * f64::from(interval)).floor());
            interval = p.next_interval_ms(&Observation {
                size_bytes: size,
                period_ms: f64::from(interval),
                live: false,
                ..Observation::default()
            });
        }
        (interval, size)
    }

    #[test]
    fn converges_on_a_steady_workload() {
        // 100 KiB per ms: 10 MiB takes ~102 ms.
        let (interval, size) = converge(100.0 * 1024.0);
        assert!((100..=104).contains(&interval), "interval {interval}");
        let err = (size as f64 - (10u64 << 20) as f64).abs() / (10u64 << 20) as f64;
        assert!(err < 0.02, "size {size} is {err} off target");
    }

    #[test]
    fn clamps_when_the_target_is_unreachable() {
        assert_eq!(converge(1.0).0, 2000);
        assert_eq!(converge(1e9).0, 10);
    }

    #[test]
    fn steps_are_rate_limited() {
        let mut p = policy();
        let next = p.next_interval_ms(&Observation {
            size_bytes: 1,
            period_ms: 200.0,
            live: false,
            ..Observation::default()
        });
        assert_eq!(next, 400);
        let next = p.next_interval_ms(&Observation {
            size_bytes: u64::MAX / 4,
            period_ms: 400.0,
            live: false,
            ..Observation::default()
        });
        assert_eq!(next, 200);
    }
}
