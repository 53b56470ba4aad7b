//! The registry: names and commit points agreed by a majority, driven step
//! by step through partitions and a lost source.

mod common;

use std::collections::BTreeSet;

use common::{Fleet, is};
use edgehost_core::{Answer, Life, Message, Ownership, Vote};

/// Hosts `a` and `d` on one side, `b` and `c` on the other.
fn split(from: &str, to: &str, _: &Message) -> bool {
    let side = |h: &str| matches!(h, "a" | "d");
    side(from) != side(to)
}

fn whole(_: &str, _: &str, _: &Message) -> bool {
    false
}

#[test]
fn h2_a_name_is_created_once_across_a_partition() {
    // Without a registry, two hosts that cannot see each other both take
    // the name: two owners at epoch 1, for good.
    let mut alone = Fleet::new(&["a", "b"]);
    alone.create("a");
    alone.create("b");
    assert!(alone.owns("a") && alone.owns("b"));

    // With one, the side without a majority cannot create it; the other
    // side can, once; after the partition heals the name is taken.
    let mut f = Fleet::with_registry(&["a", "b", "c", "d"], &["a", "b", "c"]);
    let cut_off = f.request_create("d");
    let majority = f.request_create("b");
    f.run_until(split, |f| {
        f.hosts["d"].done.contains_key(&cut_off) && f.hosts["b"].done.contains_key(&majority)
    });
    let refused = f.hosts["d"].done[&cut_off]
        .clone()
        .expect_err("d is cut off");
    assert!(refused.contains("no majority of the registry"), "{refused}");
    assert_eq!(f.hosts["b"].done[&majority], Ok(()));
    assert!(!f.owns("d") && f.owns("b"));

    let again = f.request_create("a");
    f.run_until(whole, |f| f.hosts["a"].done.contains_key(&again));
    let refused = f.hosts["a"].done[&again]
        .clone()
        .expect_err("the name is taken");
    assert!(refused.contains("exists and runs on b"), "{refused}");
    let owners: Vec<&str> = ["a", "b", "c", "d"]
        .into_iter()
        .filter(|h| f.owns(h))
        .collect();
    assert_eq!(owners, ["b"]);
}

#[test]
fn h3_a_prepared_target_learns_the_commit_from_the_registry_when_the_source_is_gone() {
    let mut f = Fleet::with_registry(&["a", "b", "c"], &["a", "b", "c"]);
    f.create("a");
    for w in 1..=3 {
        f.write("a", w);
    }
    let request = f.migrate("a", "b");
    // Everything goes through but the source's Commit, and then the source
    // is gone for good.
    f.run_until(
        |_, _, m| is(m, ["Commit"]),
        |f| f.hosts["a"].done.contains_key(&request),
    );
    assert_eq!(f.hosts["a"].done[&request], Ok(()));
    let gone = |from: &str, to: &str, _: &Message| from == "a" || to == "a";
    f.run_until(gone, |f| f.serves("b"));
    assert_eq!(
        f.hosts["b"].sandbox[&common::agent()],
        BTreeSet::from([1, 2, 3])
    );
    assert!(!f.owns("a") && !f.owns("c"));
}

#[test]
fn a_source_restarted_while_the_registry_decides_asks_again_and_nobody_serves_meanwhile() {
    let mut f = Fleet::with_registry(&["a", "b", "c"], &["a", "b", "c"]);
    f.create("a");
    f.write("a", 1);
    let request = f.migrate("a", "b");
    // The registry never hears the source's Accept of the move: it stays
    // undecided, with the intent on the source's disk.
    let no_move = |_: &str, _: &str, m: &Message| {
        matches!(
            m,
            Message::Vote(Vote::Accept {
                value: Some(Ownership::Owned { epoch: 2, .. }),
                ballot,
                ..
            }) if ballot.by.as_str() == "a"
        )
    };
    f.run_until(no_move, |f| f.life("a").contains("Deciding"));
    assert!(!f.hosts["a"].done.contains_key(&request));
    let deciding = f.life("a");
    assert!(deciding.contains("Deciding"), "{deciding}");
    assert!(!f.owns("a") && !f.owns("b"), "{deciding} / {}", f.life("b"));
    let call = f.write("a", 2);
    assert!(
        !f.hosts["a"].replies.contains_key(&call),
        "a call ran while deciding"
    );

    // The source restarts: it neither serves nor forgets, it asks again.
    f.wire.clear();
    f.restart("a", 99);
    assert!(!f.owns("a"), "{}", f.life("a"));
    f.run_until(whole, |f| f.serves("b"));
    assert!(matches!(
        f.hosts["a"].core.agents()[&common::agent()].life,
        Life::Moved { .. }
    ));
    assert_eq!(f.hosts["b"].sandbox[&common::agent()], BTreeSet::from([1]));
}

#[test]
fn a_host_cut_off_from_the_majority_keeps_serving_and_moves_nothing() {
    let mut f = Fleet::with_registry(&["a", "b", "c", "d"], &["a", "b", "c"]);
    f.create("a");
    f.write("a", 1);
    let request = f.migrate("a", "d");
    f.run_until(split, |f| f.hosts["a"].done.contains_key(&request));
    let refused = f.hosts["a"].done[&request]
        .clone()
        .expect_err("a is cut off");
    assert!(refused.contains("still serves here"), "{refused}");
    assert!(refused.contains("no majority of the registry"), "{refused}");
    assert!(f.serves("a") && !f.owns("d"));
    let call = f.write("a", 2);
    f.settle_cut(split);
    assert_eq!(f.hosts["a"].replies[&call], Answer::Done(Vec::new()));
    assert_eq!(f.stored_writes("a"), BTreeSet::from([1, 2]));
}
