//! `fixed`: what stock Remus does, kept as the baseline to compare against.

use super::{Observation, Policy};

#[derive(Debug, Clone)]
pub struct Fixed {
    interval_ms: u32,
}

impl Fixed {
    pub fn new(interval_ms: u32) -> Self {
        Fixed { interval_ms }
    }
}

impl Policy for Fixed {
    fn name(&self) -> String {
        format!("fixed:{}ms", self.interval_ms)
    }

    fn initial_interval_ms(&self) -> u32 {
        self.interval_ms
    }

    fn next_interval_ms(&mut self, _obs: &Observation) -> u32 {
        self.interval_ms
    }

    fn is_adaptive(&self) -> bool {
        false
    }
}
