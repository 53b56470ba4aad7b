//! A deliberately misbehaving policy plugin, used only by the host's tests
//! to show that a broken policy cannot hurt a decision. What it does is
//! chosen by the name of the instance's first task, in every call:
//!
//! - `trap` — panic (a trap);
//! - `loop` — spin forever (stopped by the call deadline);
//! - `oom` — allocate until memory runs out (stopped at the memory cap);
//! - `recurse` — recurse without end (stopped by the stack limit);
//! - `short` — answer one value too few (one task entry too few);
//! - `nan`, `inf`, `negative` — answer NaN, infinity or -1 in the first value;
//! - `refuse` — answer a `policy-error`;
//! - `honest` — answer what the reference policy answers;
//! - anything else — answer NaN, so `edgehost policy check` must fail.
#![cfg(target_family = "wasm")]

use std::hint::black_box;

use edgehost_policy::{
    Instance, MigrationContext, Plan, PlanReport, Policy, PolicyError, reference,
};

struct Hostile;

/// Recursion the compiler cannot turn into a loop, with a limit no stack
/// reaches.
fn recurse(n: u64) -> u64 {
    if black_box(n) == u64::MAX {
        return n;
    }
    let r = recurse(black_box(n + 1));
    r.wrapping_mul(31).wrapping_add(n) ^ (r >> 7)
}

/// Misbehaves as the first task's name says, or returns `None` to answer
/// honestly, or `Some(value)` to poison the first value with.
fn misbehave(instance: &Instance) -> Result<Option<f64>, PolicyError> {
    let name = instance
        .tasks
        .first()
        .map(|t| t.name.as_str())
        .unwrap_or("");
    match name {
        "trap" => panic!("hostile policy: asked to trap"),
        "loop" => {
            let mut x = 0u64;
            loop {
                x = black_box(x.wrapping_add(1));
            }
        }
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                black_box(&hoard);
            }
        }
        "recurse" => {
            black_box(recurse(0));
            Ok(None)
        }
        "refuse" => Err(PolicyError::Unsupported("hostile policy refuses".into())),
        "honest" | "short" => Ok(None),
        "inf" => Ok(Some(f64::INFINITY)),
        "negative" => Ok(Some(-1.0)),
        _ => Ok(Some(f64::NAN)),
    }
}

fn spoil(instance: &Instance, mut values: Vec<f64>) -> Result<Vec<f64>, PolicyError> {
    match misbehave(instance)? {
        Some(bad) => {
            if let Some(first) = values.first_mut() {
                *first = bad;
            }
        }
        None => {
            if instance.tasks.first().is_some_and(|t| t.name == "short") {
                values.pop();
            }
        }
    }
    Ok(values)
}

impl Policy for Hostile {
    fn score(instance: &Instance) -> Result<Vec<f64>, PolicyError> {
        spoil(instance, reference::score(instance)?)
    }

    fn objectives(instance: &Instance, plans: &[Plan]) -> Result<Vec<f64>, PolicyError> {
        spoil(instance, reference::objectives(instance, plans)?)
    }

    fn plan_cost(instance: &Instance, plan: &Plan) -> Result<PlanReport, PolicyError> {
        let mut report = reference::plan_cost(instance, plan)?;
        match misbehave(instance)? {
            Some(bad) => report.latency.total = bad,
            None => {
                if instance.tasks.first().is_some_and(|t| t.name == "short") {
                    report.tasks.pop();
                }
            }
        }
        Ok(report)
    }

    fn migration_fitness(
        instance: &Instance,
        before: &Plan,
        context: &MigrationContext,
        after: &[Plan],
    ) -> Result<Vec<f64>, PolicyError> {
        let values = reference::migration_fitness(instance, before, context, after)?;
        // Negative fitness is allowed; turn "negative" into NaN here so every
        // behaviour is a fault in every call.
        match misbehave(instance)? {
            Some(bad) if bad < 0.0 => {
                let mut values = values;
                if let Some(first) = values.first_mut() {
                    *first = f64::NAN;
                }
                Ok(values)
            }
            _ => spoil(instance, values),
        }
    }
}

edgehost_policy::export_policy!(Hostile);
