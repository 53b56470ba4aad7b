//! The EAD objective taken apart into the pieces that search and bounds
//! work with.
//!
//! [`crate::cost::ead_objective`] of a plan is the sum of
//! * a term per agent and server: the state shipped there plus the weighted
//!   compute load ([`Separable::fixed`]);
//! * a term per server that depends only on how many new agents it gets:
//!   each of them starts among the hosted ones plus the new ones (eq. 4),
//!   `g_e(n) = n · T_init(hosted + n)`, convex in `n`
//!   ([`Separable::start_up`]);
//! * a term per dependency, theta times the communication time from the
//!   dependent agent's server to its dependency's ([`Separable::link`]).
//!
//! The exact solver, local search and the lower bound all price plans
//! through this split, so they agree with the objective to rounding. Links
//! keep their direction: the topology need not be symmetric.

use crate::cost::{init_time_s, ship_time_s};
use crate::model::Instance;

/// One dependency seen from one of its two agents.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// The agent at the other end.
    pub other: usize,
    /// Volume exchanged, MB.
    pub volume_mb: f64,
    /// Whether this agent is the dependent one (data flows from its server
    /// to the other's, as [`crate::cost::ead_objective`] prices it).
    pub outgoing: bool,
}

/// The objective of one instance, split per agent, server and link.
#[derive(Clone, Debug)]
pub struct Separable<'a> {
    instance: &'a Instance,
    n_e: usize,
    fixed: Vec<f64>,
    links: Vec<Vec<Link>>,
}

impl<'a> Separable<'a> {
    /// Splits the objective of `instance` (which must be valid).
    pub fn new(instance: &'a Instance) -> Self {
        let n_e = instance.servers.len();
        let w = instance.params.compute_weight;
        let mut fixed = Vec::with_capacity(instance.agents.len() * n_e);
        for (a, agent) in instance.agents.iter().enumerate() {
            for (e, server) in instance.servers.iter().enumerate() {
                fixed.push(
                    ship_time_s(instance, a, e)
                        + w * agent.compute_gcyc / server.compute_remaining_gcps(),
                );
            }
        }
        let mut links = vec![Vec::new(); instance.agents.len()];
        for (a, agent) in instance.agents.iter().enumerate() {
            for d in &agent.depends_on {
                links[a].push(Link {
                    other: d.agent,
                    volume_mb: d.volume_mb,
                    outgoing: true,
                });
                links[d.agent].push(Link {
                    other: a,
                    volume_mb: d.volume_mb,
                    outgoing: false,
                });
            }
        }
        Self {
            instance,
            n_e,
            fixed,
            links,
        }
    }

    /// The instance.
    pub fn instance(&self) -> &'a Instance {
        self.instance
    }

    /// Number of servers.
    pub fn servers(&self) -> usize {
        self.n_e
    }

    /// Shipping plus weighted compute of agent `a` on server `e`, seconds.
    pub fn fixed(&self, a: usize, e: usize) -> f64 {
        self.fixed[a * self.n_e + e]
    }

    /// Start-up term of server `e` with `n` new agents, seconds:
    /// `n · T_init(hosted + n)`, zero for `n = 0`.
    pub fn start_up(&self, e: usize, n: usize) -> f64 {
        if n == 0 {
            return 0.0;
        }
        let hosted = self.instance.servers[e].hosted;
        n as f64 * init_time_s(hosted + n, &self.instance.params)
    }

    /// What one more agent adds to server `e`'s start-up term when it has
    /// `n` new agents already.
    pub fn start_up_step(&self, e: usize, n: usize) -> f64 {
        self.start_up(e, n + 1) - self.start_up(e, n)
    }

    /// The dependencies of agent `a`, both directions.
    pub fn links(&self, a: usize) -> &[Link] {
        &self.links[a]
    }

    /// Theta-weighted cost of `link` when its agent is on `here` and the
    /// other end on `there`.
    pub fn link(&self, link: &Link, here: usize, there: usize) -> f64 {
        let (from, to) = if link.outgoing {
            (here, there)
        } else {
            (there, here)
        };
        self.instance.params.theta * self.instance.topology.comm_time_s(from, to, link.volume_mb)
    }

    /// Theta-weighted cost of every link of agent `a` on server `e`, given
    /// where the other ends are (`None`: not placed yet, not counted).
    pub fn links_cost(&self, a: usize, e: usize, at: impl Fn(usize) -> Option<usize>) -> f64 {
        self.links[a]
            .iter()
            .filter_map(|l| at(l.other).map(|there| self.link(l, e, there)))
            .sum()
    }

    /// The objective of a complete assignment, summed from the pieces.
    pub fn total(&self, assignment: &[usize]) -> f64 {
        let mut count = vec![0usize; self.n_e];
        let mut sum = 0.0;
        for (a, &e) in assignment.iter().enumerate() {
            count[e] += 1;
            sum += self.fixed(a, e);
            sum += self.links[a]
                .iter()
                .filter(|l| l.outgoing)
                .map(|l| self.link(l, e, assignment[l.other]))
                .sum::<f64>();
        }
        sum + count
            .iter()
            .enumerate()
            .map(|(e, &n)| self.start_up(e, n))
            .sum::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::ead_objective;
    use crate::model::Plan;
    use crate::scenario::{Scenario, ScenarioConfig, tiny_instance};

    #[test]
    fn the_pieces_add_up_to_the_objective() {
        let mut instances = vec![tiny_instance()];
        for seed in 0..5 {
            let config = ScenarioConfig {
                servers: 5,
                tasks: 2,
                ..ScenarioConfig::default()
            };
            instances.push(Scenario::new(config).generate(seed).expect("scenario"));
        }
        for inst in &instances {
            let split = Separable::new(inst);
            let n_e = inst.servers.len();
            let assignment: Vec<usize> = (0..inst.agents.len()).map(|a| (a * 7) % n_e).collect();
            let want = ead_objective(inst, &Plan::new(assignment.clone())).total;
            let got = split.total(&assignment);
            assert!((want - got).abs() < 1e-9 * want.max(1.0), "{want} vs {got}");
        }
    }

    #[test]
    fn links_keep_their_direction() {
        let mut inst = tiny_instance();
        // The link from server 0 to 1 is slow, the way back fast.
        inst.topology = crate::topology::Topology::from_measurements(
            &[vec![0.0, 0.5], vec![0.001, 0.0]],
            &[vec![1.0, 1.0], vec![1000.0, 1.0]],
            &[vec![0, 1], vec![1, 0]],
        )
        .expect("topology");
        let split = Separable::new(&inst);
        let a = inst
            .agents
            .iter()
            .position(|x| !x.depends_on.is_empty())
            .expect("a dependent agent");
        let dep = inst.agents[a].depends_on[0].agent;
        let both = [(0, 1), (1, 0)];
        for (ea, eb) in both {
            let mut assignment = vec![0; inst.agents.len()];
            assignment[a] = ea;
            assignment[dep] = eb;
            let want = ead_objective(&inst, &Plan::new(assignment.clone())).total;
            assert!((split.total(&assignment) - want).abs() < 1e-9);
        }
        let out = split.links(a).iter().find(|l| l.outgoing).expect("out");
        assert!(split.link(out, 0, 1) > split.link(out, 1, 0));
    }
}
