//! The constraints of eq. 11 (memory, storage and bandwidth left on every
//! server) plus the per-server agent limit, checked on whole plans and
//! tracked incrementally while a plan is built.

use serde::{Deserialize, Serialize};

use crate::model::{Instance, Plan, Resources};
use crate::{Error, Result};

/// Which limit a plan breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limit {
    /// Memory (first line of eq. 11).
    Memory,
    /// Storage (second line of eq. 11).
    Storage,
    /// Bandwidth (third line of eq. 11).
    Bandwidth,
    /// Most concurrent agents on the server.
    Agents,
    /// Free compute. Eq. 11 does not constrain it; only the migration
    /// trigger watches it.
    Compute,
    /// The server's CPU architecture is not the one an agent requires.
    Architecture,
}

/// A broken limit on one server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// The server.
    pub server: usize,
    /// The limit.
    pub limit: Limit,
    /// What the plan puts there.
    pub demand: f64,
    /// What the server has left.
    pub available: f64,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.limit == Limit::Architecture {
            // `demand` holds the agent's index for this limit.
            return write!(
                f,
                "agent {} cannot run on server {}: not the architecture it requires",
                self.demand, self.server
            );
        }
        write!(
            f,
            "server {} over its {:?} limit: {:.3} asked, {:.3} left",
            self.server, self.limit, self.demand, self.available
        )
    }
}

/// Checks a plan against eq. 11 and the agent limit. Returns the first
/// violation found, server by server.
pub fn check(instance: &Instance, plan: &Plan) -> Result<()> {
    plan.check_shape(instance)?;
    if let Some((a, &e)) = plan
        .assignment
        .iter()
        .enumerate()
        .find(|&(a, &e)| !instance.runs_on(a, e))
    {
        return Err(Error::Infeasible(Violation {
            server: e,
            limit: Limit::Architecture,
            demand: a as f64,
            available: 0.0,
        }));
    }
    let n = instance.servers.len();
    let mut demand = vec![Resources::default(); n];
    let mut count = vec![0usize; n];
    for (a, &e) in plan.assignment.iter().enumerate() {
        demand[e] = demand[e].plus(instance.agents[a].demand);
        count[e] += 1;
    }
    for (e, server) in instance.servers.iter().enumerate() {
        let room = server.remaining();
        let d = demand[e];
        let checks = [
            (Limit::Memory, d.memory_gb, room.memory_gb),
            (Limit::Storage, d.storage_gb, room.storage_gb),
            (Limit::Bandwidth, d.bandwidth_mbps, room.bandwidth_mbps),
        ];
        for (limit, demand, available) in checks {
            if demand > available + crate::model::EPSILON {
                return Err(Error::Infeasible(Violation {
                    server: e,
                    limit,
                    demand,
                    available,
                }));
            }
        }
        if count[e] > server.slots_remaining() {
            return Err(Error::Infeasible(Violation {
                server: e,
                limit: Limit::Agents,
                demand: count[e] as f64,
                available: server.slots_remaining() as f64,
            }));
        }
    }
    Ok(())
}

/// What is left on every server while a plan is being built.
#[derive(Clone, Debug, PartialEq)]
pub struct Capacity {
    room: Vec<Resources>,
    slots: Vec<usize>,
}

impl Capacity {
    /// The room the instance's servers have before any new agent is placed.
    pub fn new(instance: &Instance) -> Self {
        Self {
            room: instance.servers.iter().map(|s| s.remaining()).collect(),
            slots: instance
                .servers
                .iter()
                .map(|s| s.slots_remaining())
                .collect(),
        }
    }

    /// Whether `demand` fits on server `e` now.
    pub fn fits(&self, e: usize, demand: Resources) -> bool {
        self.slots[e] > 0 && demand.fits_in(self.room[e])
    }

    /// Takes `demand` and one slot from server `e`. The caller checked
    /// [`Capacity::fits`].
    pub fn take(&mut self, e: usize, demand: Resources) {
        self.room[e] = self.room[e].minus(demand);
        self.slots[e] = self.slots[e].saturating_sub(1);
    }

    /// Gives back what [`Capacity::take`] took.
    pub fn give_back(&mut self, e: usize, demand: Resources) {
        self.room[e] = self.room[e].plus(demand);
        self.slots[e] += 1;
    }

    /// Resources left on server `e`.
    pub fn room(&self, e: usize) -> Resources {
        self.room[e]
    }

    /// Agent slots left on server `e`.
    pub fn slots(&self, e: usize) -> usize {
        self.slots[e]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::tiny_instance;

    #[test]
    fn an_agent_runs_only_on_its_architecture_or_an_unknown_one() {
        let mut inst = tiny_instance();
        inst.servers[0].arch = "x86_64".into();
        inst.servers[1].arch = "aarch64".into();
        inst.agents[1].requires_arch = Some("aarch64".into());
        assert!(inst.runs_on(0, 0) && inst.runs_on(0, 1));
        assert!(!inst.runs_on(1, 0) && inst.runs_on(1, 1));
        let on_x86 = Plan::new(vec![0, 0]);
        match check(&inst, &on_x86) {
            Err(Error::Infeasible(v)) => {
                assert_eq!((v.limit, v.server), (Limit::Architecture, 0));
                assert!(
                    v.to_string().contains("agent 1 cannot run on server 0"),
                    "{v}"
                );
            }
            other => panic!("{other:?}"),
        }
        // ALM offers it no server of another architecture.
        let context = crate::gain::MigrationContext::new(vec![0]);
        assert!(crate::migration::candidates(&inst, &context, 1, 1).is_empty());
        assert_eq!(crate::migration::candidates(&inst, &context, 0, 1), vec![0]);
        // A server whose architecture is not known takes it.
        inst.servers[0].arch.clear();
        assert!(inst.runs_on(1, 0));
    }

    #[test]
    fn check_finds_each_limit() {
        let inst = tiny_instance();
        assert!(check(&inst, &Plan::new(vec![0, 1])).is_ok());
        // Server 1 has 1 GB of memory; both agents together need 1.2 GB.
        match check(&inst, &Plan::new(vec![1, 1])) {
            Err(Error::Infeasible(v)) => {
                assert_eq!(v.server, 1);
                assert_eq!(v.limit, Limit::Memory);
            }
            other => panic!("expected a memory violation, got {other:?}"),
        }
        let mut one_slot = inst.clone();
        one_slot.servers[0].max_agents = 1;
        match check(&one_slot, &Plan::new(vec![0, 0])) {
            Err(Error::Infeasible(v)) => assert_eq!(v.limit, Limit::Agents),
            other => panic!("expected an agent-limit violation, got {other:?}"),
        }
        assert!(check(&inst, &Plan::new(vec![0])).is_err());
    }

    #[test]
    fn capacity_tracks_take_and_give_back() {
        let inst = tiny_instance();
        let mut cap = Capacity::new(&inst);
        let d = inst.agents[0].demand;
        assert!(cap.fits(1, d));
        cap.take(1, d);
        assert!(!cap.fits(1, inst.agents[1].demand));
        cap.give_back(1, d);
        assert_eq!(cap, Capacity::new(&inst));
    }
}
