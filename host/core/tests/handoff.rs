//! Handoffs driven step by step, each test aimed at one hazard: hosts whose
//! storage and sandbox answer at once, and messages that go only when the
//! test delivers them (or drops them, or delivers them twice, or late).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use edgehost_core::{
    Action, Answer, CallId, Core, Handoff, Input, Life, Message, Record, RequestId, Timing,
    Verdict, Write,
};
use edgehost_proto::{AgentName, HostName};

fn host(name: &str) -> HostName {
    HostName::new(name).expect("a valid host name")
}

fn agent() -> AgentName {
    AgentName::new("memo").expect("a valid agent name")
}

/// One host: its core, its store, its instances, and what it answered.
struct Host {
    core: Core,
    store: BTreeMap<AgentName, (Option<Record>, Option<Vec<u8>>)>,
    sandbox: BTreeMap<AgentName, BTreeSet<u64>>,
    replies: BTreeMap<CallId, Answer>,
    done: BTreeMap<RequestId, Result<(), String>>,
    /// Persists held back by the test, in order.
    held_writes: VecDeque<(edgehost_core::OpId, Vec<Write>)>,
    hold_writes: bool,
}

/// Two or three hosts and the messages between them.
struct Fleet {
    hosts: BTreeMap<HostName, Host>,
    /// Messages sent and not yet delivered: (from, to, message).
    wire: VecDeque<(HostName, HostName, Message)>,
    now: Duration,
    next: u64,
}

impl Fleet {
    fn new(names: &[&str]) -> Self {
        let hosts = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let core = Core::new(host(n), Timing::default(), i as u64 + 1);
                let h = Host {
                    core,
                    store: BTreeMap::new(),
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
        }
    }

    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn host(&mut self, name: &str) -> &mut Host {
        self.hosts.get_mut(name).expect("a host of the fleet")
    }

    /// Feeds `input` to `at` and carries out its actions, and the inputs
    /// they cause, until quiet.
    fn input(&mut self, at: &str, input: Input) {
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
    fn act(&mut self, at: &str, action: Action, inputs: &mut VecDeque<Input>) {
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
    fn release_writes(&mut self, at: &str) {
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
    fn settle(&mut self, drop: impl Fn(&Message) -> bool) {
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

    /// Takes the next message of the kind `pick` matches off the wire,
    /// delivering everything before it.
    fn take(&mut self, pick: impl Fn(&Message) -> bool) -> (HostName, HostName, Message) {
        for _ in 0..1000 {
            let (from, to, message) = self.wire.pop_front().expect("the message was sent");
            if pick(&message) {
                return (from, to, message);
            }
            self.input(to.as_str(), Input::Received { from, message });
        }
        panic!("the message never came");
    }

    fn deliver(&mut self, (from, to, message): (HostName, HostName, Message)) {
        self.input(to.as_str(), Input::Received { from, message });
    }

    fn create(&mut self, at: &str) {
        let request = RequestId(self.id());
        self.input(
            at,
            Input::Create {
                request,
                agent: agent(),
                spec: b"spec".to_vec(),
            },
        );
        assert_eq!(self.host(at).done[&request], Ok(()));
    }

    fn write(&mut self, at: &str, write: u64) -> CallId {
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

    fn migrate(&mut self, from: &str, to: &str) -> RequestId {
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

    fn tick(&mut self, at: &str, after: Duration) {
        self.now += after;
        self.input(at, Input::Tick);
    }

    fn life(&self, at: &str) -> String {
        match self.hosts[at].core.agents().get(&agent()) {
            Some(a) => format!("{:?}", a.life),
            None => "none".into(),
        }
    }

    fn serves(&self, at: &str) -> bool {
        self.hosts[at]
            .core
            .agents()
            .get(&agent())
            .is_some_and(|a| matches!(a.life, Life::Serving { .. }))
    }

    fn stored_writes(&self, at: &str) -> BTreeSet<u64> {
        self.hosts[at]
            .store
            .get(&agent())
            .and_then(|(_, s)| s.as_deref().map(decode))
            .unwrap_or_default()
    }

    /// The host restarts: memory lost, store kept.
    fn restart(&mut self, at: &str, seed: u64) {
        let now = self.now;
        let h = self.host(at);
        h.sandbox.clear();
        h.held_writes.clear();
        h.hold_writes = false;
        let records: Vec<_> = h
            .store
            .iter()
            .filter_map(|(a, (r, _))| r.clone().map(|r| (a.clone(), r)))
            .collect();
        h.core = Core::recover(host(at), Timing::default(), seed, now, records);
        // The reloads the restart asks for.
        self.input(at, Input::Tick);
    }
}

fn apply(store: &mut BTreeMap<AgentName, (Option<Record>, Option<Vec<u8>>)>, writes: &[Write]) {
    for write in writes {
        match write {
            Write::Record(a, r) => {
                let e = store.entry(a.clone()).or_default();
                if matches!(r, Record::Moved { .. }) {
                    e.1 = None;
                }
                e.0 = Some(r.clone());
            }
            Write::State(a, s) => store.entry(a.clone()).or_default().1 = Some(s.clone()),
            Write::Forget(a) => {
                store.remove(a);
            }
        }
    }
}

fn encode(state: &BTreeSet<u64>) -> Vec<u8> {
    state.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn decode(bytes: &[u8]) -> BTreeSet<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("eight bytes")))
        .collect()
}

fn is<const N: usize>(message: &Message, kinds: [&str; N]) -> bool {
    let debug = format!("{message:?}");
    kinds.iter().any(|k| {
        debug.starts_with(k)
            && debug[k.len()..]
                .chars()
                .next()
                .is_some_and(|c| c == '(' || c == ' ')
    })
}

#[test]
fn a_handoff_moves_every_acknowledged_write_and_one_host_serves() {
    let mut f = Fleet::new(&["a", "b"]);
    f.create("a");
    let calls: Vec<CallId> = (1..=5).map(|w| f.write("a", w)).collect();
    for call in &calls {
        assert_eq!(f.hosts["a"].replies[call], Answer::Done(Vec::new()));
    }
    let request = f.migrate("a", "b");
    f.settle(|_| false);
    assert_eq!(f.hosts["a"].done[&request], Ok(()));
    assert!(f.serves("b"), "b: {}", f.life("b"));
    assert!(!f.serves("a"), "a: {}", f.life("a"));
    assert_eq!(f.stored_writes("b"), (1..=5).collect());
    // A call that reaches the old owner is sent on.
    let late = f.write("a", 6);
    assert_eq!(f.hosts["a"].replies[&late], Answer::Moved(host("b")));
}

#[test]
fn a_call_is_answered_only_once_its_state_is_durable_and_concurrent_calls_share_a_write() {
    let mut f = Fleet::new(&["a"]);
    f.create("a");
    f.host("a").hold_writes = true;
    let first = f.write("a", 1);
    let second = f.write("a", 2);
    let third = f.write("a", 3);
    assert!(f.hosts["a"].replies.is_empty(), "answered before durable");
    // One write in flight (the first call's), the next one takes the
    // newest state, which covers both later calls.
    assert_eq!(f.hosts["a"].held_writes.len(), 1);
    f.release_writes("a");
    for call in [first, second, third] {
        assert_eq!(f.hosts["a"].replies[&call], Answer::Done(Vec::new()));
    }
    assert_eq!(f.stored_writes("a"), BTreeSet::from([1, 2, 3]));
    let writes = f.hosts["a"].store.len();
    assert_eq!(writes, 1);
}

#[test]
fn outcome_says_committed_only_to_the_host_and_attempt_the_commit_point_names() {
    // H1: "committed" on the epoch alone would let any host serve.
    let mut f = Fleet::new(&["a", "b", "c"]);
    f.create("a");
    f.migrate("a", "b");
    f.settle(|_| false);
    let Some(Life::Moved { handoff, .. }) =
        f.hosts["a"].core.agents().get(&agent()).map(|a| &a.life)
    else {
        panic!("a handed the agent off: {}", f.life("a"));
    };
    let handoff = handoff.clone();
    let ask = |f: &mut Fleet, who: &str, h: Handoff| {
        f.input(
            "a",
            Input::Received {
                from: host(who),
                message: Message::Outcome(h),
            },
        );
        let (_, to, answer) = f.take(|m| is(m, ["OutcomeIs"]));
        assert_eq!(to, host(who));
        match answer {
            Message::OutcomeIs { verdict, .. } => verdict,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(ask(&mut f, "b", handoff.clone()), Verdict::Committed);
    assert_eq!(ask(&mut f, "c", handoff.clone()), Verdict::NotCommitted);
    let other_attempt = Handoff {
        attempt: edgehost_core::Attempt(handoff.attempt.0 ^ 1),
        ..handoff
    };
    assert_eq!(ask(&mut f, "b", other_attempt), Verdict::NotCommitted);
}

#[test]
fn a_lost_commit_is_learned_by_asking_the_source() {
    // H3: the source sends Commit once; the target must not wait forever.
    let mut f = Fleet::new(&["a", "b"]);
    f.create("a");
    f.write("a", 7);
    let request = f.migrate("a", "b");
    f.settle(|m| is(m, ["Commit"]));
    assert_eq!(f.hosts["a"].done[&request], Ok(()));
    assert!(!f.serves("b"), "b serves before it knows: {}", f.life("b"));
    f.tick("b", Duration::from_secs(3));
    f.settle(|_| false);
    assert!(f.serves("b"), "b: {}", f.life("b"));
    assert_eq!(f.stored_writes("b"), BTreeSet::from([7]));
}

#[test]
fn a_target_restarted_before_the_commit_asks_and_serves() {
    let mut f = Fleet::new(&["a", "b"]);
    f.create("a");
    f.write("a", 1);
    f.migrate("a", "b");
    f.settle(|m| is(m, ["Commit"]));
    f.restart("b", 99);
    assert!(!f.serves("b"));
    f.tick("b", Duration::from_millis(1));
    f.settle(|_| false);
    assert!(f.serves("b"), "b: {}", f.life("b"));
    assert_eq!(f.hosts["b"].sandbox[&agent()], BTreeSet::from([1]));
}

#[test]
fn a_late_prepare_never_replaces_a_copy_that_holds_the_final_state() {
    // The second-Prepare edge case: a Prepare delivered late, from an
    // earlier attempt, replaced the copy whose commit was on its way
    // (simulator seed 847), and the agent was lost.
    let mut f = Fleet::new(&["a", "b"]);
    f.create("a");
    f.migrate("a", "b");
    let stale = f.take(|m| is(m, ["Prepare"]));
    // That attempt times out at the source, before the target heard of it.
    f.tick("a", Duration::from_secs(121));
    f.settle(|_| false);
    assert!(f.serves("a"));
    let request = f.migrate("a", "b");
    let commit = f.take(|m| is(m, ["Commit"]));
    // The old Prepare arrives now, then the commit.
    f.deliver(stale);
    f.deliver(commit);
    f.settle(|_| false);
    assert_eq!(f.hosts["a"].done[&request], Ok(()));
    assert!(f.serves("b"), "the agent was lost: b {}", f.life("b"));
}

#[test]
fn a_prepare_from_another_source_is_refused_while_one_is_in_flight() {
    let mut f = Fleet::new(&["a", "b", "c"]);
    f.create("a");
    f.migrate("a", "b");
    f.take(|m| is(m, ["Prepared"])); // a's prepare is in flight at b
    let intruder = Handoff {
        agent: agent(),
        epoch: 2,
        attempt: edgehost_core::Attempt(1),
    };
    f.input(
        "b",
        Input::Received {
            from: host("c"),
            message: Message::Prepare {
                handoff: intruder,
                spec: Vec::new(),
            },
        },
    );
    let (_, to, refused) = f.take(|m| is(m, ["Refused"]));
    assert_eq!(to, host("c"));
    assert!(
        format!("{refused:?}").contains("another host"),
        "{refused:?}"
    );
}

#[test]
fn a_release_during_a_migration_is_refused_and_changes_nothing() {
    let mut f = Fleet::new(&["a", "b"]);
    f.create("a");
    f.write("a", 1);
    let migrate = f.migrate("a", "b");
    f.take(|m| is(m, ["Transfer"]));
    let release = RequestId(f.id());
    f.input(
        "a",
        Input::Release {
            request: release,
            agent: agent(),
        },
    );
    let answer = f.hosts["a"].done[&release].clone();
    assert!(
        answer.as_ref().is_err_and(|e| e.contains("being migrated")),
        "{answer:?}"
    );
    // The migration was not disturbed: with the transfer lost, it aborts
    // and the agent serves where it was, with its state.
    f.tick("a", Duration::from_secs(121));
    f.settle(|_| false);
    assert!(f.hosts["a"].done[&migrate].is_err());
    assert!(f.serves("a"), "a: {}", f.life("a"));
    assert_eq!(f.hosts["a"].sandbox[&agent()], BTreeSet::from([1]));
    assert!(!f.serves("b"));
}

#[test]
fn an_abort_while_the_target_writes_the_state_drops_the_copy() {
    // An Abort that arrived while Transfer had the copy checked out used to
    // do nothing.
    let mut f = Fleet::new(&["a", "b"]);
    f.create("a");
    f.migrate("a", "b");
    let transfer = f.take(|m| is(m, ["Transfer"]));
    f.host("b").hold_writes = true;
    f.deliver(transfer);
    assert_eq!(f.hosts["b"].held_writes.len(), 1, "b writes the copy");
    // The source gives up and says so while the write is in flight.
    f.tick("a", Duration::from_secs(121));
    let abort = f.take(|m| is(m, ["Abort"]));
    f.deliver(abort);
    f.release_writes("b");
    f.settle(|_| false);
    assert!(f.serves("a"));
    assert_eq!(f.life("b"), "none");
    assert!(
        !f.hosts["b"].store.contains_key(&agent()),
        "the copy stays on disk"
    );
}

#[test]
fn calls_held_during_the_handoff_are_sent_to_the_new_owner_after_the_commit() {
    let mut f = Fleet::new(&["a", "b"]);
    f.create("a");
    f.migrate("a", "b");
    let transfer = f.take(|m| is(m, ["Transfer"]));
    let held = f.write("a", 9);
    assert!(!f.hosts["a"].replies.contains_key(&held), "not held");
    f.deliver(transfer);
    f.settle(|_| false);
    assert_eq!(f.hosts["a"].replies[&held], Answer::Moved(host("b")));
    assert!(f.serves("b"));
}

#[test]
fn an_aborted_handoff_runs_the_held_calls_here_in_order() {
    let mut f = Fleet::new(&["a", "b"]);
    f.create("a");
    f.migrate("a", "b");
    f.take(|m| is(m, ["Transfer"])); // lost
    let held: Vec<CallId> = (1..=3).map(|w| f.write("a", w)).collect();
    f.tick("a", Duration::from_secs(121));
    f.settle(|_| false);
    for call in held {
        assert_eq!(f.hosts["a"].replies[&call], Answer::Done(Vec::new()));
    }
    assert_eq!(f.stored_writes("a"), BTreeSet::from([1, 2, 3]));
    assert!(f.serves("a"));
}
