//! The invariants, checked after every step and at the end of a schedule.

use crate::Life;

use super::Failure;
use super::world::World;

impl World {
    /// After every step: at most one owner per agent, the owner's instance
    /// holds every acknowledged write, and a released agent has no owner.
    pub(super) fn check_step(&self) -> Result<(), Box<Failure>> {
        for agent in &self.agents {
            let owners: Vec<usize> = (0..self.nodes.len())
                .filter(|h| {
                    self.nodes[*h]
                        .core
                        .as_ref()
                        .and_then(|c| c.agents().get(agent))
                        .is_some_and(|a| a.owns())
                })
                .collect();
            if owners.len() > 1 {
                let lives: Vec<String> = owners.iter().map(|h| self.life_of(*h, agent)).collect();
                return Err(self.fail(format!(
                    "{agent} has {} owners: {}",
                    owners.len(),
                    lives.join("; ")
                )));
            }
            if self.released.contains(agent) {
                // A create that reached the registry after the release
                // makes a new agent of the same name: not an owner of the
                // released one.
                let old = owners.iter().find(|h| {
                    !self.nodes[**h]
                        .core
                        .as_ref()
                        .and_then(|c| c.agents().get(agent))
                        .is_some_and(|a| {
                            matches!(
                                a.life,
                                Life::Starting {
                                    creating: Some(_),
                                    ..
                                } | Life::Recording { .. }
                            )
                        })
                });
                if let Some(owner) = old {
                    return Err(self.fail(format!(
                        "{agent} was released but h{owner} owns it: {}",
                        self.life_of(*owner, agent)
                    )));
                }
                continue;
            }
            if let Some(&owner) = owners.first() {
                self.check_writes(owner, agent)?;
            }
        }
        Ok(())
    }

    fn check_writes(
        &self,
        owner: usize,
        agent: &edgehost_proto::AgentName,
    ) -> Result<(), Box<Failure>> {
        if !self.counts(agent) {
            return Ok(());
        }
        let Some(state) = self.nodes[owner].sandbox.get(agent) else {
            return Ok(());
        };
        if let Some(acked) = self.acked.get(agent)
            && let Some(missing) = acked.difference(state).next()
        {
            return Err(self.fail(format!(
                "h{owner} serves {agent} without acknowledged write {missing} ({})",
                self.life_of(owner, agent)
            )));
        }
        Ok(())
    }

    fn life_of(&self, host: usize, agent: &edgehost_proto::AgentName) -> String {
        match self.nodes[host]
            .core
            .as_ref()
            .and_then(|c| c.agents().get(agent))
        {
            Some(a) => format!("h{host} {:?}", a.life),
            None => format!("h{host} none"),
        }
    }

    /// Once the network healed and every host is back: every handoff
    /// ended, every agent not released has exactly one owner, serving,
    /// with every acknowledged write, every host answered its probes, and
    /// every operator request on a host that stayed up was answered.
    pub(super) fn check_end(&self) -> Result<(), Box<Failure>> {
        for (h, node) in self.nodes.iter().enumerate() {
            let Some(core) = &node.core else {
                return Err(self.fail(format!("h{h} is still down")));
            };
            for (agent, a) in core.agents() {
                if matches!(a.life, Life::Leaving { .. } | Life::Arriving(_)) {
                    return Err(self.fail(format!(
                        "a handoff of {agent} never ended: {}",
                        self.life_of(h, agent)
                    )));
                }
            }
        }
        for agent in &self.agents {
            let serving: Vec<usize> = (0..self.nodes.len())
                .filter(|h| {
                    self.nodes[*h]
                        .core
                        .as_ref()
                        .and_then(|c| c.agents().get(agent))
                        .is_some_and(|a| matches!(a.life, Life::Serving { .. }))
                })
                .collect();
            if self.released.contains(agent) || !self.created.contains(agent) {
                continue;
            }
            if self.counts(agent) && serving.len() != 1 {
                return Err(self.fail(format!(
                    "{agent} is served by {} hosts at the end",
                    serving.len()
                )));
            }
            if let Some(&owner) = serving.first() {
                self.check_writes(owner, agent)?;
            }
        }
        if self.unanswered_probes() > 0 {
            return Err(self.fail(format!(
                "{} probe calls were never answered: a host wedged",
                self.unanswered_probes()
            )));
        }
        let requests = self.unanswered_requests();
        if !requests.is_empty() {
            return Err(self.fail(format!(
                "operator requests never answered: {}",
                requests.join(", ")
            )));
        }
        Ok(())
    }
}
