//! `fixed`: what stock Remus does, kept as the baseline to compare against.

use super::{Decision, Observation, Policy};

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

    fn initial(&self) -> Decision {
        Decision::interval(self.interval_ms)
    }

    fn decide(&mut self, _obs: &Observation) -> Decision {
        Decision::interval(self.interval_ms)
    }

    fn is_adaptive(&self) -> bool {
        false
    }
}
