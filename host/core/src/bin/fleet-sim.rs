//! Runs the fleet simulator over many seeded schedules.
//!
//! ```text
//! fleet-sim [--schedules N] [--seed FIRST] [--replay SEED] [--verbose] [--no-registry]
//! ```
//!
//! Schedules run on every core; the first failing seed is printed with the
//! events before it, and `--replay SEED --verbose` shows it step by step.
//! `--no-registry` lets every host decide names and commit points alone,
//! as before the registry, to show what the registry prevents.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use edgehost_core::sim::{self, Options, Summary};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fleet-sim: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<std::process::ExitCode, String> {
    let mut schedules = 1_000u64;
    let mut first = 0u64;
    let mut replay = None;
    let mut verbose = false;
    let mut registry = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> Result<u64, String> {
            let value = args.next().ok_or(format!("{what} needs a number"))?;
            value
                .parse()
                .map_err(|_| format!("{what} needs a number, not {value:?}"))
        };
        match arg.as_str() {
            "--schedules" => schedules = number("--schedules")?,
            "--seed" => first = number("--seed")?,
            "--replay" => replay = Some(number("--replay")?),
            "--verbose" => verbose = true,
            "--no-registry" => registry = false,
            "-h" | "--help" => {
                println!(
                    "fleet-sim [--schedules N] [--seed FIRST] [--replay SEED] [--verbose] \
                     [--no-registry]"
                );
                return Ok(std::process::ExitCode::SUCCESS);
            }
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    if let Some(seed) = replay {
        let options = Options {
            trace: 0,
            verbose,
            registry,
            ..Options::default()
        };
        return Ok(match sim::run(seed, options) {
            Ok(summary) => {
                println!("seed {seed}: all invariants hold; {summary:?}");
                std::process::ExitCode::SUCCESS
            }
            Err(failure) => {
                println!("{failure}");
                std::process::ExitCode::FAILURE
            }
        });
    }
    let started = Instant::now();
    let next = AtomicU64::new(first);
    let end = first + schedules;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let results: Vec<(Summary, Option<Box<sim::Failure>>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut total = Summary::default();
                    let mut failed: Option<Box<sim::Failure>> = None;
                    loop {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= end {
                            break;
                        }
                        let options = Options {
                            registry,
                            ..Options::default()
                        };
                        match sim::run(seed, options) {
                            Ok(s) => add(&mut total, &s),
                            Err(f) => {
                                if failed.as_ref().is_none_or(|g| f.seed < g.seed) {
                                    failed = Some(f);
                                }
                            }
                        }
                    }
                    (total, failed)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a simulator thread panicked"))
            .collect()
    });
    let mut total = Summary::default();
    let mut failure: Option<Box<sim::Failure>> = None;
    for (summary, failed) in results {
        add(&mut total, &summary);
        if let Some(f) = failed
            && failure.as_ref().is_none_or(|g| f.seed < g.seed)
        {
            failure = Some(f);
        }
    }
    let took = started.elapsed();
    println!(
        "{schedules} schedules (seeds {first}..{end}) in {:.1} s on {threads} threads: \
         {} steps, {} acknowledged writes, {} handoffs committed, {} aborted, \
         {} crashes, {} partitions, {} releases",
        took.as_secs_f64(),
        total.steps,
        total.acknowledged,
        total.committed,
        total.aborted,
        total.crashes,
        total.partitions,
        total.released,
    );
    Ok(match failure {
        None => {
            println!("every invariant held in every schedule");
            std::process::ExitCode::SUCCESS
        }
        Some(f) => {
            println!("{f}");
            let flag = if registry { "" } else { " --no-registry" };
            println!("replay: fleet-sim --replay {} --verbose{flag}", f.seed);
            std::process::ExitCode::FAILURE
        }
    })
}

fn add(total: &mut Summary, s: &Summary) {
    total.steps += s.steps;
    total.acknowledged += s.acknowledged;
    total.committed += s.committed;
    total.aborted += s.aborted;
    total.crashes += s.crashes;
    total.partitions += s.partitions;
    total.released += s.released;
}
