//! The fault simulator over many seeded schedules, and replays.

use edgehost_core::sim::{self, Options};

/// Schedules `cargo test` runs; `fleet-sim --schedules N` runs more.
const SCHEDULES: u64 = 1_000;

#[test]
fn a_thousand_seeded_schedules_keep_every_invariant() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..SCHEDULES)
                        .step_by(threads as usize)
                        .filter_map(|seed| sim::run(seed, Options::default()).err())
                        .map(|f| f.to_string())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a simulator thread"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_seed_replays_exactly() {
    let options = Options {
        trace: 10_000,
        verbose: false,
    };
    let once = sim::run(12, options).expect("seed 12 holds");
    let twice = sim::run(12, options).expect("seed 12 holds");
    assert_eq!(once, twice);
    assert!(once.steps > 1_000 && once.acknowledged > 10, "{once:?}");
}

#[test]
fn the_schedules_exercise_what_they_claim() {
    // A simulator whose faults never fire proves nothing: over a few dozen
    // schedules there must be commits, aborts, crashes and partitions.
    let mut totals = sim::Summary::default();
    for seed in 0..40 {
        let s = sim::run(seed, Options::default()).expect("the seed holds");
        totals.committed += s.committed;
        totals.aborted += s.aborted;
        totals.crashes += s.crashes;
        totals.partitions += s.partitions;
        totals.acknowledged += s.acknowledged;
    }
    assert!(totals.committed > 100, "{totals:?}");
    assert!(totals.aborted > 50, "{totals:?}");
    assert!(totals.crashes > 50, "{totals:?}");
    assert!(totals.partitions > 50, "{totals:?}");
    assert!(totals.acknowledged > 10_000, "{totals:?}");
}

#[test]
fn seeds_that_found_bugs_hold_now() {
    // 847: a late Prepare replaced a copy whose commit was on its way.
    // 7985: a copy whose write failed answered a repeated Transfer as if
    // durable. Both lost the agent.
    for seed in [847, 7985] {
        if let Err(failure) = sim::run(seed, Options::default()) {
            panic!("{failure}");
        }
    }
}
