//! Automatic migration: ALM over the live fleet, when a user moves, when a
//! host runs short, and periodically. Every decision is kept as an
//! [`Event`] for `edgehost events`.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::host::Shared;
use crate::place::{Planned, Priced, Resident, plan_migrations};
use crate::protocol::{AgentName, Event, HostName, Request, Response};
use crate::sync::lock;
use crate::{Error, Result};

/// Events kept per host: the log `edgehost events` reads is a window of the
/// newest decisions, so a peer that triggers decisions without end costs a
/// fixed amount of memory.
pub const MAX_EVENTS: usize = 256;

impl Shared {
    /// `Attach`: the user of `agent` is now at the host named `host`.
    pub(crate) async fn attach(
        self: &Arc<Self>,
        agent: AgentName,
        host: HostName,
    ) -> Result<Response> {
        let local = lock(&self.agents).contains_key(&agent);
        if !local {
            return self
                .forward_to_owner(
                    &agent,
                    Request::Attach {
                        agent: agent.clone(),
                        host,
                    },
                )
                .await;
        }
        let known = host == self.name
            || lock(&self.membership)
                .views(Instant::now())
                .iter()
                .any(|v| v.report.name == host);
        if !known {
            return Err(Error::NotFound(format!(
                "no host named {host:?} in the fleet"
            )));
        }
        lock(&self.attachments).insert(agent.clone(), host);
        let events = self.follow("user-moved", Some(&agent)).await?;
        Ok(Response::Decided(events))
    }

    /// Sends `request` to the host that runs `agent`.
    async fn forward_to_owner(self: &Arc<Self>, agent: &str, request: Request) -> Result<Response> {
        let mut owner = lock(&self.membership).owner_of(agent, Instant::now());
        if owner.is_none() {
            self.refresh_peers().await;
            owner = lock(&self.membership).owner_of(agent, Instant::now());
        }
        let owner = owner.ok_or_else(|| {
            Error::NotFound(format!("no reachable host runs an agent named {agent:?}"))
        })?;
        Ok(self
            .call_peer(owner.addr, Some(&owner.name), &request)
            .await?
            .0)
    }

    /// Runs ALM for this host's agents (or just `only`), carries out the
    /// moves that pay, and records a decision for every agent considered.
    pub(crate) async fn follow(
        self: &Arc<Self>,
        trigger: &str,
        only: Option<&str>,
    ) -> Result<Vec<crate::protocol::Event>> {
        let hosts = self.reachable_reports();
        let attachments = lock(&self.attachments).clone();
        // An agent that arrived by a migration less than the minimum dwell
        // time ago is not considered (hysteresis).
        let dwell = std::time::Duration::from_millis(self.config.alm.min_dwell_ms);
        let mut settling = Vec::new();
        let residents: Vec<Resident> = {
            let agents = lock(&self.agents);
            agents
                .iter()
                .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
                .filter(|(name, slot)| {
                    let here = slot.started.elapsed();
                    let moved_in = slot.epoch > 1 && here < dwell;
                    if moved_in {
                        settling.push(((*name).clone(), here));
                    }
                    !moved_in
                })
                .map(|(name, slot)| Resident {
                    name: name.clone(),
                    descriptor: slot.descriptor.clone(),
                    state_bytes: slot.state_bytes.load(std::sync::atomic::Ordering::Relaxed),
                    user: attachments
                        .get(name)
                        .and_then(|h| hosts.iter().position(|r| &r.name == h))
                        .unwrap_or(0),
                    processing_s: self.calibration.processing(name).map(|e| e.mean_ms / 1e3),
                    llm_s: self.calibration.llm_per_call(name).map(|e| e.mean_ms / 1e3),
                    requires_arch: slot.requires_arch.clone(),
                })
                .collect()
        };
        let mut events = Vec::new();
        if only.is_some() {
            // Asked about this agent: say why nothing is decided.
            for (name, here) in &settling {
                events.push(event(
                    &self.name,
                    name,
                    trigger,
                    "stay".into(),
                    0.0,
                    vec![format!(
                        "moved here {:.0} s ago; an agent stays at least {:.0} s after a move",
                        here.as_secs_f64(),
                        dwell.as_secs_f64()
                    )],
                ));
            }
        }
        if residents.is_empty() {
            self.log_events(&events);
            return Ok(events);
        }
        let (_, policy) = self.policy.snapshot();
        let settings = self.config.alm.clone();
        let plan_hosts = hosts.clone();
        let plan_residents = residents.clone();
        let refiner = self.refiner.clone();
        let Planned {
            plan,
            priced,
            refinement,
        } = tokio::task::spawn_blocking(move || {
            let refiner = refiner
                .as_deref()
                .map(|r| r as &dyn edgehost_placement::Refiner);
            plan_migrations(&plan_hosts, &plan_residents, &settings, &policy, refiner)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let horizon = self.config.alm.horizon_requests;
        let priced_reason = |p: &Priced| {
            format!(
                "to {}: saves {:.3} s over {horizon} requests, the move takes {:.3} s",
                hosts[p.to].name, p.saving_s, p.move_s
            )
        };

        for (i, resident) in residents.iter().enumerate() {
            let triggered: Vec<String> = plan
                .triggers
                .iter()
                .filter(|t| t.agent == i)
                .map(|t| t.reason.to_string())
                .collect();
            let user_host = &hosts[resident.user].name;
            let moving = plan
                .moves
                .iter()
                .any(|m| m.agent == i && m.net_gain_s > 0.0);
            if only.is_none() && triggered.is_empty() && !moving {
                // A periodic check of an agent nothing is wrong with is not news.
                continue;
            }
            let llm = (!triggered.is_empty())
                .then(|| refinement.as_ref().map(|n| format!("LLM: {n}")))
                .flatten();
            let event = match plan.moves.iter().find(|m| m.agent == i) {
                Some(m) if m.net_gain_s > 0.0 => {
                    let target = hosts[m.to].name.clone();
                    let mut reasons = triggered.clone();
                    reasons.push(format!("user at {user_host}"));
                    reasons.extend(priced[i].as_ref().map(priced_reason));
                    reasons.push(format!(
                        "net gain {:.3} s over {horizon} requests",
                        m.net_gain_s
                    ));
                    reasons.extend(llm);
                    match self.migrate(resident.name.clone(), target.clone()).await {
                        Ok(Response::Migrated(report)) => {
                            reasons.push(format!("downtime {:.3} ms", report.downtime_ms));
                            event(
                                &self.name,
                                &resident.name,
                                trigger,
                                format!("moved to {target}"),
                                m.net_gain_s,
                                reasons,
                            )
                        }
                        Ok(other) => event(
                            &self.name,
                            &resident.name,
                            trigger,
                            "failed".into(),
                            0.0,
                            vec![format!("{other:?}")],
                        ),
                        Err(e) => {
                            reasons.push(e.to_string());
                            event(
                                &self.name,
                                &resident.name,
                                trigger,
                                "failed".into(),
                                0.0,
                                reasons,
                            )
                        }
                    }
                }
                _ => {
                    let mut reasons = triggered.clone();
                    if triggered.is_empty() {
                        reasons.push(format!(
                            "user at {user_host}, within {} hop(s), and no resource pressure",
                            self.config.alm.hop_threshold
                        ));
                    } else {
                        reasons.push(format!(
                            "user at {user_host}; no target with a positive net gain"
                        ));
                    }
                    reasons.extend(priced[i].as_ref().map(priced_reason));
                    reasons.extend(plan.dropped.iter().cloned());
                    reasons.extend(llm);
                    event(
                        &self.name,
                        &resident.name,
                        trigger,
                        "stay".into(),
                        0.0,
                        reasons,
                    )
                }
            };
            tracing::info!(agent = %event.agent, decision = %event.decision, reasons = ?event.reasons, "ALM decision");
            events.push(event);
        }
        self.log_events(&events);
        Ok(events)
    }

    /// Keeps `events` for `edgehost events`, the newest [`MAX_EVENTS`].
    fn log_events(&self, events: &[Event]) {
        let mut log = lock(&self.events);
        for e in events {
            if log.len() == MAX_EVENTS {
                log.pop_front();
            }
            log.push_back(e.clone());
        }
    }
}

fn event(
    host: &HostName,
    agent: &AgentName,
    trigger: &str,
    decision: String,
    net_gain_s: f64,
    reasons: Vec<String>,
) -> Event {
    Event {
        at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
        host: host.clone(),
        agent: agent.clone(),
        trigger: trigger.to_owned(),
        decision,
        net_gain_s,
        reasons,
    }
}
