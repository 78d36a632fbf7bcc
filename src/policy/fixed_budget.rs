//! A fixed dirty-page budget beside another policy's intervals, for
//! experiments (`simulate --budget-pages N`): the gate ends its wait at N
//! dirty pages, and the inner policy's interval caps the wait.

use super::{Decision, Observation, Policy};

pub struct FixedBudget {
    inner: Box<dyn Policy>,
    budget_pages: u64,
}

impl FixedBudget {
    /// `budget_pages` must be above 0 (0 would mean no budget).
    pub fn new(inner: Box<dyn Policy>, budget_pages: u64) -> Self {
        FixedBudget {
            inner,
            budget_pages,
        }
    }

    fn with_budget(&self, d: Decision) -> Decision {
        Decision {
            budget_pages: self.budget_pages,
            ..d
        }
    }
}

impl Policy for FixedBudget {
    fn name(&self) -> String {
        format!(
            "{} with a budget of {} pages",
            self.inner.name(),
            self.budget_pages
        )
    }

    fn initial(&self) -> Decision {
        self.with_budget(self.inner.initial())
    }

    fn decide(&mut self, obs: &Observation) -> Decision {
        let d = self.inner.decide(obs);
        self.with_budget(d)
    }

    /// A budget only works through the control channel.
    fn is_adaptive(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Fixed;

    #[test]
    fn the_inner_interval_with_the_budget() {
        let mut p = FixedBudget::new(Box::new(Fixed::new(200)), 4000);
        let want = Decision {
            interval_ms: 200,
            budget_pages: 4000,
        };
        assert_eq!(p.initial(), want);
        assert_eq!(p.decide(&Observation::default()), want);
        assert!(p.is_adaptive());
    }
}
