//! Cumulative kernel counters → deltas that survive wrap-around and restarts.
//!
//! DRBD 8.x prints `ns:` as a 32-bit KiB count, which wraps every 4 TiB
//! sent — days for a busy Remus pair, so a long run does see it. DRBD 9's
//! `sent:` is 64-bit but restarts at 0 whenever a peer device is recreated.
//! A [`Counter`] turns successive readings into a widened, monotonic total.

/// How many bits the kernel counter has before it wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterWidth {
    /// DRBD 8.x `/proc/drbd` `ns:%u`.
    U32,
    /// DRBD 9 `sent:` (and our own widened totals).
    U64,
}

/// What one reading meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterStep {
    /// First reading: the baseline, no delta yet.
    Baseline,
    /// The counter advanced normally by this much.
    Delta(u64),
    /// The counter wrapped once; this much was counted across the wrap.
    Wrapped(u64),
    /// The counter went backwards by more than a wrap explains: the device
    /// was recreated or the module reloaded. Counted as a restart from 0,
    /// so the delta is the new reading.
    Restarted {
        /// Reading before the restart.
        previous: u64,
        /// Reading after it (= the delta counted).
        now: u64,
    },
}

impl CounterStep {
    /// The amount this reading adds to the total.
    pub fn delta(self) -> u64 {
        match self {
            CounterStep::Baseline => 0,
            CounterStep::Delta(d) | CounterStep::Wrapped(d) => d,
            CounterStep::Restarted { now, .. } => now,
        }
    }
}

/// A cumulative counter of fixed width, widened to 64 bits.
#[derive(Debug, Clone)]
pub struct Counter {
    width: CounterWidth,
    last: Option<u64>,
    total: u64,
}

impl Counter {
    /// A counter that has seen no reading yet.
    pub fn new(width: CounterWidth) -> Self {
        Counter {
            width,
            last: None,
            total: 0,
        }
    }

    /// The widened cumulative value: the first reading plus every delta since.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Feeds the next raw reading.
    ///
    /// A decrease of a 32-bit counter counts as one wrap only when the
    /// implied delta is under half the range (2 TiB of KiB between two
    /// samples taken a checkpoint apart); anything else is a restart.
    pub fn update(&mut self, reading: u64) -> CounterStep {
        let Some(last) = self.last else {
            self.last = Some(reading);
            self.total = reading;
            return CounterStep::Baseline;
        };
        self.last = Some(reading);
        let step = if reading >= last {
            CounterStep::Delta(reading - last)
        } else {
            match self.width {
                CounterWidth::U32 if last <= u64::from(u32::MAX) => {
                    let wrapped = (u64::from(u32::MAX) - last) + reading + 1;
                    if wrapped <= u64::from(u32::MAX) / 2 {
                        CounterStep::Wrapped(wrapped)
                    } else {
                        CounterStep::Restarted {
                            previous: last,
                            now: reading,
                        }
                    }
                }
                _ => CounterStep::Restarted {
                    previous: last,
                    now: reading,
                },
            }
        };
        self.total = self.total.saturating_add(step.delta());
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn baseline_then_deltas() {
        let mut c = Counter::new(CounterWidth::U32);
        assert_eq!(c.update(1000), CounterStep::Baseline);
        assert_eq!(c.total(), 1000);
        assert_eq!(c.update(1500), CounterStep::Delta(500));
        assert_eq!(c.update(1500), CounterStep::Delta(0));
        assert_eq!(c.total(), 1500);
    }

    #[test]
    fn u32_wrap_is_counted() {
        let mut c = Counter::new(CounterWidth::U32);
        c.update(4_294_967_000);
        // 296 KiB up to 2^32, then 300 past it.
        assert_eq!(c.update(300), CounterStep::Wrapped(596));
        assert_eq!(c.total(), 4_294_967_596);
        assert_eq!(c.update(1300), CounterStep::Delta(1000));
        assert_eq!(c.total(), 4_294_968_596);
    }

    #[test]
    fn implausible_drop_is_a_restart() {
        let mut c = Counter::new(CounterWidth::U32);
        c.update(5_000_000);
        assert_eq!(
            c.update(100),
            CounterStep::Restarted {
                previous: 5_000_000,
                now: 100
            }
        );
        assert_eq!(c.total(), 5_000_100);
        let mut c = Counter::new(CounterWidth::U64);
        c.update(u64::MAX - 10);
        assert_eq!(
            c.update(5),
            CounterStep::Restarted {
                previous: u64::MAX - 10,
                now: 5
            }
        );
    }

    #[test]
    fn wider_than_u32_reading_is_a_restart_not_a_bogus_wrap() {
        let mut c = Counter::new(CounterWidth::U32);
        c.update(1 << 40);
        assert!(matches!(c.update(10), CounterStep::Restarted { .. }));
    }

    proptest! {
        #[test]
        fn total_never_decreases(readings in proptest::collection::vec(any::<u32>(), 1..50)) {
            let mut c = Counter::new(CounterWidth::U32);
            let mut prev = 0;
            for (i, r) in readings.iter().enumerate() {
                c.update(u64::from(*r));
                if i > 0 { prop_assert!(c.total() >= prev); }
                prev = c.total();
            }
        }

        #[test]
        fn small_steps_across_wraps_sum_exactly(start in any::<u32>(), steps in proptest::collection::vec(0u32..1_000_000, 1..50)) {
            let mut c = Counter::new(CounterWidth::U32);
            c.update(u64::from(start));
            let mut raw = start;
            let mut sum = 0u64;
            for s in steps {
                raw = raw.wrapping_add(s);
                sum += u64::from(s);
                c.update(u64::from(raw));
            }
            prop_assert_eq!(c.total(), u64::from(start) + sum);
        }
    }
}
