//! The simulated fleet: hosts with a store and a sandbox each, a network,
//! clients and an operator, all driven by one event queue.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use edgehost_proto::{AgentName, HostName};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::host::{apply, brief, brief_input, brief_write};
use super::{Failure, Options, Summary};
use crate::io::{CallId, Input, Message, OpId, Record, RequestId, Write};
use crate::{Core, Time, Timing};

/// Handoff steps are shorter than a real host's, so that a schedule sees
/// many of them time out.
const TIMING: Timing = Timing {
    step: Duration::from_millis(400),
    prepare_step: Duration::from_millis(800),
    transfer_step: Duration::from_millis(800),
    prepare_expiry: Duration::from_secs(5),
    settle_after: Duration::from_millis(300),
    settle_every: Duration::from_millis(200),
    vote: Duration::from_millis(100),
};

/// Faults happen until then.
const FAULTS_UNTIL: Duration = Duration::from_secs(8);
/// Everything must have settled by then.
const SETTLED_BY: Duration = Duration::from_secs(30);
/// Every host is asked about every agent then, and must answer.
const PROBE_AT: Duration = Duration::from_secs(25);

/// What a host stores of one agent.
#[derive(Clone, Debug, Default)]
pub(super) struct Entry {
    pub record: Option<Record>,
    pub state: Option<Vec<u8>>,
    /// The registry's acceptor state for the name, on a member.
    pub acceptor: Option<crate::Acceptor>,
}

/// One simulated host.
pub(super) struct Node {
    pub name: HostName,
    /// `None` while down.
    pub core: Option<Core>,
    /// Raised by every start, to drop completions meant for an earlier life.
    pub life: u32,
    /// The durable store.
    pub store: BTreeMap<AgentName, Entry>,
    /// Persists asked and not yet durable, in order.
    pub(super) inflight: VecDeque<(OpId, Vec<Write>)>,
    pub(super) persist_free_at: Time,
    /// The instances: each agent's state is the set of writes it has seen.
    pub sandbox: BTreeMap<AgentName, BTreeSet<u64>>,
    /// Client calls in flight here: the write each carries (0 for a probe).
    pub(super) calls: BTreeMap<CallId, u64>,
    /// Operator requests in flight here.
    pub(super) requests: BTreeMap<RequestId, Request>,
    /// When a tick is scheduled.
    pub(super) wake: Option<Time>,
}

#[derive(Clone, Debug)]
pub(super) enum Request {
    Create(AgentName),
    Migrate(AgentName),
    Release(AgentName),
}

#[derive(Debug)]
pub(super) enum Event {
    Deliver {
        from: usize,
        to: usize,
        message: Message,
    },
    Complete {
        host: usize,
        life: u32,
        input: Input,
    },
    PersistDone {
        host: usize,
        life: u32,
        op: OpId,
    },
    Tick {
        host: usize,
        life: u32,
    },
    Write {
        agent: usize,
    },
    Retry {
        write: u64,
        host: usize,
    },
    Crash,
    Restart(usize),
    Partition,
    Heal,
    Migrate,
    Release,
    /// The operator creates an agent (again, after a failure).
    Create {
        host: usize,
        agent: AgentName,
    },
    /// The operator creates an agent that exists, on a host chosen at
    /// random (a retried deploy, a second operator): without a registry, a
    /// host that does not know the name takes it.
    CreateAgain,
    Probe,
}

/// What a schedule's faults look like, drawn from its seed.
#[derive(Debug)]
pub(super) struct Faults {
    pub(super) loss: f64,
    pub(super) duplicate: f64,
    pub(super) max_delay_ms: u64,
    /// The chance that a message is held up for a long while (a stalled
    /// path, a retransmission after a loss): reordering on a grand scale.
    pub(super) straggle: f64,
    pub(super) crash_every_ms: u64,
    pub(super) partition_every_ms: u64,
    pub(super) migrate_every_ms: u64,
    pub(super) persist_failure: f64,
    pub(super) release: bool,
}

/// The whole simulated fleet.
pub struct World {
    pub(super) seed: u64,
    pub(super) options: Options,
    pub(super) rng: ChaCha8Rng,
    pub(super) now: Time,
    pub(super) seq: u64,
    pub(super) queue: BTreeMap<(Time, u64), Event>,
    pub(super) nodes: Vec<Node>,
    pub(super) agents: Vec<AgentName>,
    /// Each write's agent, and whether it was acknowledged.
    pub(super) writes: BTreeMap<u64, (usize, u32)>,
    /// Acknowledged writes by agent.
    pub(super) acked: BTreeMap<AgentName, BTreeSet<u64>>,
    pub(super) released: BTreeSet<AgentName>,
    /// Agents whose creation was answered `Ok`.
    pub(super) created: BTreeSet<AgentName>,
    /// Agents being released: acknowledged writes stop counting once the
    /// release may have happened.
    pub(super) releasing: BTreeSet<AgentName>,
    /// Which side of a partition each host is on.
    pub(super) side: Vec<u8>,
    pub(super) faults: Faults,
    /// The registry's members: the first three hosts (all of them when
    /// fewer); none when the options turn it off.
    pub(super) registry: Vec<HostName>,
    pub(super) next_write: u64,
    pub(super) probes: BTreeSet<(usize, u64)>,
    pub(super) summary: Summary,
    pub(super) trace: VecDeque<String>,
}

impl World {
    /// A fleet for schedule `seed`.
    pub fn new(seed: u64, options: Options) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let hosts = rng.random_range(2..=5);
        let agents = rng.random_range(1..=3);
        let faults = Faults {
            loss: [0.0, 0.01, 0.05, 0.2][rng.random_range(0..4)],
            duplicate: [0.0, 0.02, 0.1][rng.random_range(0..3)],
            max_delay_ms: [2, 20, 80][rng.random_range(0..3)],
            straggle: [0.0, 0.01, 0.05][rng.random_range(0..3)],
            crash_every_ms: [400, 1500, 5000, 100_000][rng.random_range(0..4)],
            partition_every_ms: [300, 1500, 100_000][rng.random_range(0..3)],
            migrate_every_ms: [30, 150, 600][rng.random_range(0..3)],
            persist_failure: [0.0, 0.0, 0.01][rng.random_range(0..3)],
            release: rng.random_bool(0.25),
        };
        let registry: Vec<HostName> = if options.registry {
            (0..hosts.min(3))
                .map(|i| HostName::new(format!("h{i}")).expect("a valid name"))
                .collect()
        } else {
            Vec::new()
        };
        let nodes = (0..hosts)
            .map(|i| {
                let name = HostName::new(format!("h{i}")).expect("a valid name");
                let core = Core::new(name.clone(), TIMING, rng.random())
                    .with_registry(registry.clone(), []);
                Node {
                    core: Some(core),
                    name,
                    life: 0,
                    store: BTreeMap::new(),
                    inflight: VecDeque::new(),
                    persist_free_at: Time::ZERO,
                    sandbox: BTreeMap::new(),
                    calls: BTreeMap::new(),
                    requests: BTreeMap::new(),
                    wake: None,
                }
            })
            .collect();
        let agents = (0..agents)
            .map(|i| AgentName::new(format!("a{i}")).expect("a valid name"))
            .collect();
        World {
            seed,
            options,
            rng,
            now: Time::ZERO,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            agents,
            writes: BTreeMap::new(),
            acked: BTreeMap::new(),
            released: BTreeSet::new(),
            created: BTreeSet::new(),
            releasing: BTreeSet::new(),
            side: vec![0; hosts],
            faults,
            registry,
            next_write: 1,
            probes: BTreeSet::new(),
            summary: Summary::default(),
            trace: VecDeque::new(),
        }
    }

    pub(super) fn at(&mut self, after: Duration, event: Event) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), event);
    }

    /// A random duration of `low` to `high` milliseconds (`high` at least
    /// `low`).
    pub(super) fn ms(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_micros(self.rng.random_range(low * 1000..=high.max(low) * 1000))
    }

    pub(super) fn note(&mut self, line: String) {
        if self.options.verbose {
            println!("{:>10.3} {line}", self.now.as_secs_f64() * 1e3);
        }
        if self.options.trace > 0 {
            if self.trace.len() >= self.options.trace {
                self.trace.pop_front();
            }
            self.trace
                .push_back(format!("{:.3} ms: {line}", self.now.as_secs_f64() * 1e3));
        }
    }

    pub(super) fn fail(&self, what: String) -> Box<Failure> {
        Box::new(Failure {
            seed: self.seed,
            step: self.summary.steps,
            at: self.now,
            what,
            trace: self.trace.iter().cloned().collect(),
        })
    }

    /// Runs the schedule to its end, checking the invariants after every
    /// step.
    pub fn run(mut self) -> Result<Summary, Box<Failure>> {
        self.note(format!(
            "{} hosts, {} agents, {:?}",
            self.nodes.len(),
            self.agents.len(),
            self.faults
        ));
        for agent in 0..self.agents.len() {
            let host = self.rng.random_range(0..self.nodes.len());
            let name = self.agents[agent].clone();
            self.create(host, name);
            let first = self.ms(50, 100);
            self.at(first, Event::Write { agent });
        }
        let (crash, partition, migrate) = (
            self.faults.crash_every_ms,
            self.faults.partition_every_ms,
            self.faults.migrate_every_ms,
        );
        let d = self.ms(100, crash);
        self.at(d, Event::Crash);
        let d = self.ms(100, partition);
        self.at(d, Event::Partition);
        let d = self.ms(10, migrate);
        self.at(d, Event::Migrate);
        if self.faults.release {
            let d = self.ms(500, 6000);
            self.at(d, Event::Release);
        }
        if self.options.create_again {
            let d = self.ms(200, 4000);
            self.at(d, Event::CreateAgain);
        }
        self.at(PROBE_AT, Event::Probe);
        while let Some(((at, _), event)) = self.queue.pop_first() {
            if at > SETTLED_BY {
                break;
            }
            self.now = at;
            self.summary.steps += 1;
            self.step(event)?;
            self.check_step()?;
        }
        self.now = SETTLED_BY;
        self.check_end()?;
        Ok(self.summary)
    }

    pub(super) fn faulty(&self) -> bool {
        self.now < FAULTS_UNTIL
    }

    fn step(&mut self, event: Event) -> Result<(), Box<Failure>> {
        match event {
            Event::Deliver { from, to, message } => {
                let cut = self.side[from] != self.side[to];
                if cut || self.nodes[to].core.is_none() {
                    self.note(format!("lost h{from} -> h{to}: {}", brief(&message)));
                    return Ok(());
                }
                self.note(format!("h{from} -> h{to}: {}", brief(&message)));
                let from = self.nodes[from].name.clone();
                self.input(to, Input::Received { from, message });
            }
            Event::Complete { host, life, input } => {
                if self.nodes[host].life == life && self.nodes[host].core.is_some() {
                    self.note(format!("h{host} completes {}", brief_input(&input)));
                    self.input(host, input);
                }
            }
            Event::PersistDone { host, life, op } => {
                if self.nodes[host].life != life || self.nodes[host].core.is_none() {
                    return Ok(());
                }
                let Some((first, writes)) = self.nodes[host].inflight.pop_front() else {
                    return Err(self.fail("a persist completed that was never asked".into()));
                };
                if first != op {
                    return Err(self.fail("persists completed out of order".into()));
                }
                let result = if self.rng.random_bool(self.faults.persist_failure) {
                    Err("the disk said no".to_string())
                } else {
                    apply(&mut self.nodes[host].store, &writes);
                    Ok(())
                };
                let what: Vec<String> = writes.iter().map(brief_write).collect();
                self.note(format!("h{host} persisted {op:?} {what:?} {result:?}"));
                self.input(host, Input::Persisted { op, result });
            }
            Event::Tick { host, life } => {
                if self.nodes[host].life == life && self.nodes[host].core.is_some() {
                    self.nodes[host].wake = None;
                    self.input(host, Input::Tick);
                }
            }
            Event::Write { agent } => {
                if !self.faulty() {
                    return Ok(());
                }
                let write = self.next_write;
                self.next_write += 1;
                self.writes.insert(write, (agent, 0));
                let host = self.rng.random_range(0..self.nodes.len());
                self.send_write(write, host);
                let next = self.ms(5, 60);
                self.at(next, Event::Write { agent });
            }
            Event::Retry { write, host } => self.send_write(write, host),
            Event::Crash => {
                if !self.faulty() {
                    return Ok(());
                }
                let host = self.rng.random_range(0..self.nodes.len());
                if self.nodes[host].core.is_some() {
                    self.crash(host);
                    let back = self.ms(5, 1500);
                    self.at(back, Event::Restart(host));
                }
                let next = self.ms(10, self.faults.crash_every_ms);
                self.at(next, Event::Crash);
            }
            Event::Restart(host) => self.restart(host),
            Event::Partition => {
                if !self.faulty() {
                    return Ok(());
                }
                self.summary.partitions += 1;
                for side in &mut self.side {
                    *side = self.rng.random_range(0..2);
                }
                self.note(format!("partition {:?}", self.side));
                let heal = self.ms(20, 2500);
                self.at(heal, Event::Heal);
                let next = self.ms(100, self.faults.partition_every_ms);
                self.at(next, Event::Partition);
            }
            Event::Heal => {
                self.side.iter_mut().for_each(|s| *s = 0);
                self.note("healed".into());
            }
            Event::Migrate => {
                if !self.faulty() {
                    return Ok(());
                }
                let agent = self.agents[self.rng.random_range(0..self.agents.len())].clone();
                let to = self.rng.random_range(0..self.nodes.len());
                let to_name = self.nodes[to].name.clone();
                let at = self.owner_or_any(&agent);
                self.operator(at, Request::Migrate(agent.clone()), |request| {
                    Input::Migrate {
                        request,
                        agent,
                        to: to_name,
                    }
                });
                let next = self.ms(5, self.faults.migrate_every_ms);
                self.at(next, Event::Migrate);
            }
            Event::Release => {
                let agent = self.agents[self.rng.random_range(0..self.agents.len())].clone();
                let at = self.owner_or_any(&agent);
                self.releasing.insert(agent.clone());
                self.operator(at, Request::Release(agent.clone()), |request| {
                    Input::Release { request, agent }
                });
            }
            Event::Create { host, agent } => {
                if self.faulty() && !self.created.contains(&agent) {
                    if self.nodes[host].core.is_some() {
                        self.create(host, agent);
                    } else {
                        let later = self.ms(50, 500);
                        self.at(later, Event::Create { host, agent });
                    }
                }
            }
            Event::CreateAgain => {
                if !self.faulty() {
                    return Ok(());
                }
                let agent = self.agents[self.rng.random_range(0..self.agents.len())].clone();
                if !self.releasing.contains(&agent) && !self.released.contains(&agent) {
                    let at = self.rng.random_range(0..self.nodes.len());
                    self.create(at, agent);
                }
                let next = self.ms(200, 4000);
                self.at(next, Event::CreateAgain);
            }
            Event::Probe => {
                for host in 0..self.nodes.len() {
                    for agent in 0..self.agents.len() {
                        let call = self.next_write;
                        self.next_write += 1;
                        self.probes.insert((host, call));
                        self.nodes[host].calls.insert(CallId(call), 0);
                        let agent = self.agents[agent].clone();
                        self.input(
                            host,
                            Input::Call {
                                call: CallId(call),
                                agent,
                                body: Vec::new(),
                            },
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The host that owns `agent` most of the time; now and then any host.
    fn owner_or_any(&mut self, agent: &AgentName) -> usize {
        let owner = (0..self.nodes.len()).find(|h| {
            self.nodes[*h]
                .core
                .as_ref()
                .and_then(|c| c.agents().get(agent))
                .is_some_and(|a| a.owns())
        });
        match owner {
            Some(owner) if self.rng.random_bool(0.8) => owner,
            _ => self.rng.random_range(0..self.nodes.len()),
        }
    }

    fn operator(&mut self, host: usize, what: Request, input: impl FnOnce(RequestId) -> Input) {
        if self.nodes[host].core.is_none() {
            return;
        }
        let request = RequestId(self.next_write);
        self.next_write += 1;
        self.nodes[host].requests.insert(request, what);
        self.input(host, input(request));
    }

    fn create(&mut self, host: usize, agent: AgentName) {
        self.operator(host, Request::Create(agent.clone()), |request| {
            Input::Create {
                request,
                agent,
                spec: b"spec".to_vec(),
            }
        });
    }

    fn send_write(&mut self, write: u64, host: usize) {
        let Some((agent, tries)) = self.writes.get_mut(&write) else {
            return;
        };
        *tries += 1;
        if *tries > 40 {
            return;
        }
        let agent = self.agents[*agent].clone();
        if self.nodes[host].core.is_none() {
            let later = self.ms(20, 100);
            let other = self.rng.random_range(0..self.nodes.len());
            return self.at(later, Event::Retry { write, host: other });
        }
        let call = CallId(self.next_write);
        self.next_write += 1;
        self.nodes[host].calls.insert(call, write);
        self.input(
            host,
            Input::Call {
                call,
                agent,
                body: write.to_le_bytes().to_vec(),
            },
        );
    }

    fn crash(&mut self, host: usize) {
        self.summary.crashes += 1;
        let node = &mut self.nodes[host];
        node.core = None;
        node.sandbox.clear();
        // A prefix of the writes in flight reached the disk.
        let kept = self.rng.random_range(0..=node.inflight.len());
        let inflight: Vec<_> = node.inflight.drain(..).collect();
        for (_, writes) in inflight.iter().take(kept) {
            apply(&mut node.store, writes);
        }
        node.requests.clear();
        node.wake = None;
        let calls: Vec<u64> = std::mem::take(&mut node.calls).into_values().collect();
        self.note(format!(
            "crash h{host}, {kept} of {} writes kept",
            inflight.len()
        ));
        // The clients notice the lost connection and try elsewhere.
        let calls: Vec<u64> = calls
            .into_iter()
            .filter(|w| self.writes.contains_key(w))
            .collect();
        for write in calls {
            let later = self.ms(20, 200);
            let other = self.rng.random_range(0..self.nodes.len());
            self.at(later, Event::Retry { write, host: other });
        }
    }

    fn restart(&mut self, host: usize) {
        let seed = self.rng.random();
        let node = &mut self.nodes[host];
        if node.core.is_some() {
            return;
        }
        node.life += 1;
        node.persist_free_at = self.now;
        let records: Vec<(AgentName, Record)> = node
            .store
            .iter()
            .filter_map(|(a, e)| e.record.clone().map(|r| (a.clone(), r)))
            .collect();
        let acceptors: Vec<(AgentName, crate::Acceptor)> = node
            .store
            .iter()
            .filter_map(|(a, e)| e.acceptor.clone().map(|r| (a.clone(), r)))
            .collect();
        node.core = Some(
            Core::recover(node.name.clone(), TIMING, seed, self.now, records)
                .with_registry(self.registry.clone(), acceptors),
        );
        self.note(format!("restart h{host}"));
        self.drain(host);
    }
}
