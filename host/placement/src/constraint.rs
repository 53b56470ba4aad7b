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
