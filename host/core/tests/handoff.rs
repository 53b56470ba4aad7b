//! Handoffs driven step by step, each test aimed at one hazard.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Fleet, agent, host, is};
use edgehost_core::{Answer, CallId, Handoff, Input, Life, Message, RequestId, Verdict};

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
    let writes = f.hosts["a"].store.agents.len();
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
        !f.hosts["b"].store.agents.contains_key(&agent()),
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

#[test]
fn calls_past_the_bound_are_answered_busy_and_never_run() {
    let mut f = Fleet::new(&["a"]);
    f.create("a");
    let now = f.now;
    let total = edgehost_core::MAX_WAITING_CALLS + 10;
    // Nothing the core asks is carried out: the first call runs and never
    // ends, so every later one waits.
    for n in 0..total {
        f.host("a").core.handle(
            now,
            Input::Call {
                call: CallId(1_000 + n as u64),
                agent: agent(),
                body: (n as u64).to_le_bytes().to_vec(),
            },
        );
    }
    let (mut runs, mut busy) = (0, Vec::new());
    while let Some(action) = f.host("a").core.poll() {
        match action {
            edgehost_core::Action::Run { .. } => runs += 1,
            edgehost_core::Action::Reply {
                call,
                answer: Answer::Busy(reason),
            } => busy.push((call, reason)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(runs, 1, "one call runs at a time");
    // One running, MAX_WAITING_CALLS queued behind it, the rest refused.
    let refused: Vec<CallId> = busy.iter().map(|(c, _)| *c).collect();
    let first_refused = 1_000 + 1 + edgehost_core::MAX_WAITING_CALLS as u64;
    assert_eq!(
        refused,
        (first_refused..1_000 + total as u64)
            .map(CallId)
            .collect::<Vec<_>>()
    );
    assert!(busy[0].1.contains("try again"), "{}", busy[0].1);
}
