//! What ALP and ALM share: the pheromone trails with evaporation and
//! reinforcement (eq. 13, eqs. 16-17) and MAX-MIN bounds, the roulette an
//! ant draws its choice with (eq. 12, eq. 14), and the check of a colony's
//! parameters.

use rand::Rng;

use crate::model::Plan;
use crate::{Error, Result};

/// Pheromone levels, one row per decision (an agent) and one entry per
/// choice in that row. ALP's rows are every server; ALM's are each
/// triggered agent's "stay" plus its candidate targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Pheromone {
    /// Start of each row in `tau`, plus the end of the last one.
    offsets: Vec<usize>,
    tau: Vec<f64>,
}

impl Pheromone {
    /// An `agents` x `servers` matrix with every entry at `initial`.
    pub fn new(agents: usize, servers: usize, initial: f64) -> Self {
        Self::ragged(std::iter::repeat_n(servers, agents), initial)
    }

    /// Rows of the given lengths, every entry at `initial`.
    pub fn ragged(lengths: impl IntoIterator<Item = usize>, initial: f64) -> Self {
        let mut offsets = vec![0];
        for len in lengths {
            offsets.push(offsets[offsets.len() - 1] + len);
        }
        let total = offsets[offsets.len() - 1];
        Self {
            offsets,
            tau: vec![initial; total],
        }
    }

    /// The level of choice `choice` in row `row`.
    pub fn get(&self, row: usize, choice: usize) -> f64 {
        self.tau[self.offsets[row] + choice]
    }

    /// The levels of one row.
    pub fn row(&self, row: usize) -> &[f64] {
        &self.tau[self.offsets[row]..self.offsets[row + 1]]
    }

    /// All levels, row after row.
    pub fn levels(&self) -> &[f64] {
        &self.tau
    }

    /// Sets every entry to `value` (the MAX-MIN start: all trails at the top).
    pub fn fill(&mut self, value: f64) {
        self.tau.fill(value);
    }

    /// The first half of eq. 13 (eq. 16 for ALM): tau <- (1 - rho) * tau.
    pub fn evaporate(&mut self, rho: f64) {
        let keep = 1.0 - rho;
        for t in &mut self.tau {
            *t *= keep;
        }
    }

    /// The second half of eq. 13 (eq. 17): adds `amount` to the choice
    /// `choices[row]` of every row.
    pub fn reinforce_choices(&mut self, choices: &[usize], amount: f64) {
        for (row, &c) in choices.iter().enumerate() {
            self.tau[self.offsets[row] + c] += amount;
        }
    }

    /// [`Pheromone::reinforce_choices`] for an agents x servers matrix: adds
    /// `amount` on every (a, e) the plan uses.
    pub fn reinforce(&mut self, plan: &Plan, amount: f64) {
        self.reinforce_choices(&plan.assignment, amount);
    }

    /// Clamps every level into `[min, max]`, so no trail dies out (the colony
    /// keeps exploring) and none takes over completely.
    pub fn clamp(&mut self, min: f64, max: f64) {
        for t in &mut self.tau {
            *t = t.clamp(min, max);
        }
    }
}

/// Draws an index with probability proportional to its weight, given the
/// running sums of the weights (`cumulative[i]` is the sum of weights
/// `0..=i`). `None` when the weights sum to zero or to something not finite.
pub fn roulette(cumulative: &[f64], rng: &mut impl Rng) -> Option<usize> {
    let total = *cumulative.last()?;
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let target = rng.random::<f64>() * total;
    let mut i = cumulative
        .partition_point(|&c| c <= target)
        .min(cumulative.len() - 1);
    // Rounding can push the target past the last entry, and a zero weight
    // repeats its predecessor's sum: step back to a positive weight.
    while i > 0 && cumulative[i] == cumulative[i - 1] {
        i -= 1;
    }
    Some(i)
}

/// The parameters every colony has, checked the same way for ALP and ALM.
#[derive(Clone, Copy, Debug)]
pub struct ColonyParams {
    /// Ants per iteration, at least one.
    pub ants: usize,
    /// Iterations, at least one.
    pub iterations: usize,
    /// Pheromone weight, finite and not negative.
    pub alpha: f64,
    /// Heuristic weight, finite and not negative.
    pub beta: f64,
    /// Evaporation, in `(0, 1]`.
    pub rho: f64,
    /// Deposit constant, finite and positive.
    pub q: f64,
}

impl ColonyParams {
    /// Refuses parameters that make a colony meaningless, naming the first
    /// one that does.
    pub fn validate(&self) -> Result<()> {
        let problem = if self.ants == 0 {
            "ants must be at least 1"
        } else if self.iterations == 0 {
            "iterations must be at least 1"
        } else if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            "alpha must be finite and not negative"
        } else if !(self.beta.is_finite() && self.beta >= 0.0) {
            "beta must be finite and not negative"
        } else if !(self.rho > 0.0 && self.rho <= 1.0) {
            "rho must be in (0, 1]"
        } else if !(self.q.is_finite() && self.q > 0.0) {
            "q must be finite and positive"
        } else {
            return Ok(());
        };
        Err(Error::InvalidParameters(format!("{problem}: {self:?}")))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

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

    #[test]
    fn ragged_rows_are_kept_apart() {
        let mut p = Pheromone::ragged([1, 3, 2], 1.0);
        p.reinforce_choices(&[0, 2, 1], 2.0);
        assert_eq!(p.row(0), &[3.0]);
        assert_eq!(p.row(1), &[1.0, 1.0, 3.0]);
        assert_eq!(p.row(2), &[1.0, 3.0]);
    }

    #[test]
    fn roulette_never_picks_a_zero_weight() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // Weights 0, 2, 0, 1, 0.
        let cumulative = [0.0, 2.0, 2.0, 3.0, 3.0];
        let mut seen = [0usize; 5];
        for _ in 0..3000 {
            seen[roulette(&cumulative, &mut rng).expect("a pick")] += 1;
        }
        assert_eq!((seen[0], seen[2], seen[4]), (0, 0, 0));
        // Two to one, within sampling noise.
        assert!((1700..2300).contains(&seen[1]), "{seen:?}");
        assert_eq!(roulette(&[0.0, 0.0], &mut rng), None);
        assert_eq!(roulette(&[], &mut rng), None);
        assert_eq!(roulette(&[f64::INFINITY], &mut rng), None);
    }

    #[test]
    fn parameters_are_named_when_refused() {
        let ok = ColonyParams {
            ants: 1,
            iterations: 1,
            alpha: 1.0,
            beta: 2.0,
            rho: 0.1,
            q: 1.0,
        };
        assert!(ok.validate().is_ok());
        let bad = [
            ColonyParams { ants: 0, ..ok },
            ColonyParams {
                alpha: f64::NAN,
                ..ok
            },
            ColonyParams { beta: -1.0, ..ok },
            ColonyParams { rho: 0.0, ..ok },
            ColonyParams { q: 0.0, ..ok },
        ];
        for (p, word) in bad.iter().zip(["ants", "alpha", "beta", "rho", "q"]) {
            let e = p.validate().expect_err("refused").to_string();
            assert!(e.contains(word), "{e}");
        }
    }
}
