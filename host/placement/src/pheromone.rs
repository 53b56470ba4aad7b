//! The pheromone matrix tau[a][e] with evaporation and reinforcement (eq. 13)
//! and MAX-MIN bounds.

use crate::model::Plan;

/// A dense agents x servers matrix of pheromone levels, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Pheromone {
    servers: usize,
    tau: Vec<f64>,
}

impl Pheromone {
    /// Every entry at `initial`.
    pub fn new(agents: usize, servers: usize, initial: f64) -> Self {
        Self {
            servers,
            tau: vec![initial; agents * servers],
        }
    }

    /// tau[a][e].
    pub fn get(&self, a: usize, e: usize) -> f64 {
        self.tau[a * self.servers + e]
    }

    /// All levels, row-major.
    pub fn levels(&self) -> &[f64] {
        &self.tau
    }

    /// Sets every entry to `value` (the MAX-MIN start: all trails at the top).
    pub fn fill(&mut self, value: f64) {
        self.tau.fill(value);
    }

    /// The first half of eq. 13: tau <- (1 - rho) * tau.
    pub fn evaporate(&mut self, rho: f64) {
        let keep = 1.0 - rho;
        for t in &mut self.tau {
            *t *= keep;
        }
    }

    /// The second half of eq. 13: adds `amount` on every (a, e) the plan uses.
    pub fn reinforce(&mut self, plan: &Plan, amount: f64) {
        for (a, &e) in plan.assignment.iter().enumerate() {
            self.tau[a * self.servers + e] += amount;
        }
    }

    /// Clamps every level into `[min, max]`, so no trail dies out (the colony
    /// keeps exploring) and none takes over completely.
    pub fn clamp(&mut self, min: f64, max: f64) {
        for t in &mut self.tau {
            *t = t.clamp(min, max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaporation_then_reinforcement_follows_eq_13() {
        let mut p = Pheromone::new(2, 2, 1.0);
        p.evaporate(0.25);
        p.reinforce(&Plan::new(vec![1, 0]), 0.5);
        // (1 - 0.25) * 1.0 + 0.5 on the plan's cells, 0.75 elsewhere.
        assert_eq!(p.get(0, 1), 1.25);
        assert_eq!(p.get(1, 0), 1.25);
        assert_eq!(p.get(0, 0), 0.75);
        p.clamp(0.8, 1.0);
        assert_eq!(p.levels(), &[0.8, 1.0, 1.0, 0.8]);
    }
}
