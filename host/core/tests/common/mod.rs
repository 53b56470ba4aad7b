//! A fleet of cores driven step by step by a test: hosts whose storage and
//! sandbox answer at once, and messages that go only when the test delivers
//! them (or drops them, or delivers them twice, or late).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use edgehost_core::{
    Acceptor, Action, Answer, CallId, Core, Input, Life, Message, Record, RequestId, Timing, Write,
};
use edgehost_proto::{AgentName, HostName};

pub fn host(name: &str) -> HostName {
    HostName::new(name).expect("a valid host name")
}

pub fn agent() -> AgentName {
    AgentName::new("memo").expect("a valid agent name")
}

/// One host: its core, its store, its instances, and what it answered.
pub struct Host {
    pub core: Core,
    pub store: Store,
    pub sandbox: BTreeMap<AgentName, BTreeSet<u64>>,
    pub replies: BTreeMap<CallId, Answer>,
    pub done: BTreeMap<RequestId, Result<(), String>>,
    /// Persists held back by the test, in order.
    pub held_writes: VecDeque<(edgehost_core::OpId, Vec<Write>)>,
    pub hold_writes: bool,
}

/// What a host keeps on disk.
#[derive(Default)]
pub struct Store {
    pub agents: BTreeMap<AgentName, (Option<Record>, Option<Vec<u8>>)>,
    pub acceptors: BTreeMap<AgentName, Acceptor>,
}

impl Store {
    pub fn get(&self, name: &AgentName) -> Option<&(Option<Record>, Option<Vec<u8>>)> {
        self.agents.get(name)
    }
}

/// Two or three hosts and the messages between them.
pub struct Fleet {
    pub hosts: BTreeMap<HostName, Host>,
    /// Messages sent and not yet delivered: (from, to, message).
    pub wire: VecDeque<(HostName, HostName, Message)>,
    pub now: Duration,
    next: u64,
    /// The registry's members; empty for none.
    pub registry: Vec<HostName>,
}

impl Fleet {
    pub fn new(names: &[&str]) -> Self {
        Fleet::with_registry(names, &[])
    }

    /// A fleet whose names and commit points `members` agree on.
    pub fn with_registry(names: &[&str], members: &[&str]) -> Self {
        let registry: Vec<HostName> = members.iter().map(|m| host(m)).collect();
        let hosts = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let core = Core::new(host(n), Timing::default(), i as u64 + 1)
                    .with_registry(registry.clone(), []);
                let h = Host {
                    core,
                    store: Store::default(),
                    sandbox: BTreeMap::new(),
                    replies: BTreeMap::new(),
                    done: BTreeMap::new(),
                    held_writes: VecDeque::new(),
                    hold_writes: false,
                };
                (host(n), h)
            })
            .collect();
        Fleet {
            hosts,
            wire: VecDeque::new(),
            now: Duration::ZERO,
            next: 0,
            registry,
        }
    }

    pub fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    pub fn host(&mut self, name: &str) -> &mut Host {
        self.hosts.get_mut(name).expect("a host of the fleet")
    }

    /// Feeds `input` to `at` and carries out its actions, and the inputs
    /// they cause, until quiet.
    pub fn input(&mut self, at: &str, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let now = self.now;
            self.host(at).core.handle(now, input);
            while let Some(action) = self.host(at).core.poll() {
                self.act(at, action, &mut inputs);
            }
        }
    }

    /// Carries out one action at once; what completes is queued.
    pub fn act(&mut self, at: &str, action: Action, inputs: &mut VecDeque<Input>) {
        match action {
            Action::Send { to, message } => self.wire.push_back((host(at), to, message)),
            Action::Persist { op, writes } => {
                let h = self.host(at);
                if h.hold_writes {
                    h.held_writes.push_back((op, writes));
                } else {
                    apply(&mut h.store, &writes);
                    inputs.push_back(Input::Persisted { op, result: Ok(()) });
                }
            }
            Action::Load { op, agent, .. } => {
                self.host(at).sandbox.insert(agent, BTreeSet::new());
                inputs.push_back(Input::Loaded { op, result: Ok(()) });
            }
            Action::Reload { op, agent } => {
                let h = self.host(at);
                let state = h
                    .store
                    .get(&agent)
                    .and_then(|(_, s)| s.as_deref().map(decode))
                    .unwrap_or_default();
                h.sandbox.insert(agent, state);
                inputs.push_back(Input::Loaded { op, result: Ok(()) });
            }
            Action::Import { op, agent, state } => {
                self.host(at).sandbox.insert(agent, decode(&state));
                inputs.push_back(Input::Loaded { op, result: Ok(()) });
            }
            Action::Run { op, agent, body } => {
                let h = self.host(at);
                let state = h.sandbox.get_mut(&agent).expect("an instance");
                let write = u64::from_le_bytes(body.try_into().expect("eight bytes"));
                let changed = state.insert(write).then(|| encode(state));
                inputs.push_back(Input::Ran {
                    op,
                    result: Ok((Vec::new(), changed)),
                });
            }
            Action::Export { op, agent } => {
                let state = encode(&self.host(at).sandbox[&agent]);
                inputs.push_back(Input::Exported {
                    op,
                    result: Ok(state),
                });
            }
            Action::Drop { agent } => {
                self.host(at).sandbox.remove(&agent);
            }
            Action::Reply { call, answer } => {
                self.host(at).replies.insert(call, answer);
            }
            Action::Done { request, result } => {
                self.host(at).done.insert(request, result);
            }
        }
    }

    /// Lets the held writes of `at` reach the disk, in order.
    pub fn release_writes(&mut self, at: &str) {
        let h = self.host(at);
        h.hold_writes = false;
        let held: Vec<_> = h.held_writes.drain(..).collect();
        for (op, writes) in held {
            apply(&mut self.host(at).store, &writes);
            self.input(at, Input::Persisted { op, result: Ok(()) });
        }
    }

    /// Delivers every message on the wire, and those they cause, except
    /// those `drop` picks.
    pub fn settle(&mut self, drop: impl Fn(&Message) -> bool) {
        for _ in 0..1000 {
            let Some((from, to, message)) = self.wire.pop_front() else {
                return;
            };
            if drop(&message) {
                continue;
            }
            self.input(to.as_str(), Input::Received { from, message });
        }
        panic!("the messages never settled");
    }

    /// Delivers every message on the wire, and those they cause, except
    /// those `cut` picks (by sender, receiver and message): a partition, a
    /// lost message.
    pub fn settle_cut(&mut self, cut: impl Fn(&str, &str, &Message) -> bool) {
        for _ in 0..10_000 {
            let Some((from, to, message)) = self.wire.pop_front() else {
                return;
            };
            if cut(from.as_str(), to.as_str(), &message) {
                continue;
            }
            self.input(to.as_str(), Input::Received { from, message });
        }
        panic!("the messages never settled");
    }

    /// Lets time pass on every host, a second at a time, delivering what
    /// `cut` lets through, until `done` holds (at most a minute).
    pub fn run_until(
        &mut self,
        cut: impl Fn(&str, &str, &Message) -> bool,
        done: impl Fn(&Fleet) -> bool,
    ) {
        for _ in 0..60 {
            self.settle_cut(&cut);
            if done(self) {
                return;
            }
            self.now += Duration::from_secs(1);
            let names: Vec<HostName> = self.hosts.keys().cloned().collect();
            for name in names {
                self.input(name.as_str(), Input::Tick);
            }
        }
        self.settle_cut(&cut);
        assert!(done(self), "not done within a minute of simulated time");
    }

    /// Asks `at` to create the agent; the request's number.
    pub fn request_create(&mut self, at: &str) -> RequestId {
        let request = RequestId(self.id());
        self.input(
            at,
            Input::Create {
                request,
                agent: agent(),
                spec: b"spec".to_vec(),
            },
        );
        request
    }

    /// Whether `at` owns the agent.
    pub fn owns(&self, at: &str) -> bool {
        self.hosts[at]
            .core
            .agents()
            .get(&agent())
            .is_some_and(|a| a.owns())
    }

    /// Takes the next message of the kind `pick` matches off the wire,
    /// delivering everything before it.
    pub fn take(&mut self, pick: impl Fn(&Message) -> bool) -> (HostName, HostName, Message) {
        for _ in 0..1000 {
            let (from, to, message) = self.wire.pop_front().expect("the message was sent");
            if pick(&message) {
                return (from, to, message);
            }
            self.input(to.as_str(), Input::Received { from, message });
        }
        panic!("the message never came");
    }

    pub fn deliver(&mut self, (from, to, message): (HostName, HostName, Message)) {
        self.input(to.as_str(), Input::Received { from, message });
    }

    pub fn create(&mut self, at: &str) {
        let request = self.request_create(at);
        if !self.registry.is_empty() {
            // The claim's rounds.
            self.settle(|_| false);
        }
        assert_eq!(self.host(at).done[&request], Ok(()));
    }

    pub fn write(&mut self, at: &str, write: u64) -> CallId {
        let call = CallId(self.id());
        self.input(
            at,
            Input::Call {
                call,
                agent: agent(),
                body: write.to_le_bytes().to_vec(),
            },
        );
        call
    }

    pub fn migrate(&mut self, from: &str, to: &str) -> RequestId {
        let request = RequestId(self.id());
        self.input(
            from,
            Input::Migrate {
                request,
                agent: agent(),
                to: host(to),
            },
        );
        request
    }

    pub fn tick(&mut self, at: &str, after: Duration) {
        self.now += after;
        self.input(at, Input::Tick);
    }

    pub fn life(&self, at: &str) -> String {
        match self.hosts[at].core.agents().get(&agent()) {
            Some(a) => format!("{:?}", a.life),
            None => "none".into(),
        }
    }

    pub fn serves(&self, at: &str) -> bool {
        self.hosts[at]
            .core
            .agents()
            .get(&agent())
            .is_some_and(|a| matches!(a.life, Life::Serving { .. }))
    }

    pub fn stored_writes(&self, at: &str) -> BTreeSet<u64> {
        self.hosts[at]
            .store
            .get(&agent())
            .and_then(|(_, s)| s.as_deref().map(decode))
            .unwrap_or_default()
    }

    /// The host restarts: memory lost, store kept.
    pub fn restart(&mut self, at: &str, seed: u64) {
        let now = self.now;
        let h = self.host(at);
        h.sandbox.clear();
        h.held_writes.clear();
        h.hold_writes = false;
        let records: Vec<_> = h
            .store
            .agents
            .iter()
            .filter_map(|(a, (r, _))| r.clone().map(|r| (a.clone(), r)))
            .collect();
        let acceptors: Vec<_> = h
            .store
            .acceptors
            .iter()
            .map(|(a, s)| (a.clone(), s.clone()))
            .collect();
        let registry = self.registry.clone();
        let h = self.host(at);
        h.core = Core::recover(host(at), Timing::default(), seed, now, records)
            .with_registry(registry, acceptors);
        // The reloads the restart asks for.
        self.input(at, Input::Tick);
    }
}

pub fn apply(store: &mut Store, writes: &[Write]) {
    for write in writes {
        match write {
            Write::Acceptor(a, s) => {
                store.acceptors.insert(a.clone(), s.clone());
            }
            Write::Record(a, r) => {
                let e = store.agents.entry(a.clone()).or_default();
                if matches!(r, Record::Moved { .. }) {
                    e.1 = None;
                }
                e.0 = Some(r.clone());
            }
            Write::State(a, s) => store.agents.entry(a.clone()).or_default().1 = Some(s.clone()),
            Write::Forget(a) => {
                store.agents.remove(a);
            }
        }
    }
}

pub fn encode(state: &BTreeSet<u64>) -> Vec<u8> {
    state.iter().flat_map(|w| w.to_le_bytes()).collect()
}

pub fn decode(bytes: &[u8]) -> BTreeSet<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("eight bytes")))
        .collect()
}

pub fn is<const N: usize>(message: &Message, kinds: [&str; N]) -> bool {
    let debug = format!("{message:?}");
    kinds.iter().any(|k| {
        debug.starts_with(k)
            && debug[k.len()..]
                .chars()
                .next()
                .is_some_and(|c| c == '(' || c == ' ')
    })
}
