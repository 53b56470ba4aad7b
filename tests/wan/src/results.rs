//! The experiment's results: the summary's tables (delay and cost per
//! sweep point and algorithm, the user's move, the model's accuracy) and
//! `tasks.csv`, from the rows of the tasks that ran.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use crate::experiment::Row;

/// The mean of the user's query delay and cost per sweep point and
/// algorithm (indexing tasks left out), and what the move did.
pub fn summarise(rows: &[Row]) -> String {
    let mut out = String::new();
    for sweep in ["servers", "tasks"] {
        if !rows.iter().any(|r| r.sweep == sweep) {
            // The demo runs no tasks sweep.
            continue;
        }
        let _ = writeln!(out, "\n### Against the number of {sweep}\n");
        let _ = writeln!(out, "| {sweep} | algorithm | mean delay (ms) | mean cost |");
        let _ = writeln!(out, "|---:|---|---:|---:|");
        let mut points: BTreeMap<(usize, String), Vec<&Row>> = BTreeMap::new();
        for r in rows
            .iter()
            .filter(|r| r.sweep == sweep && r.phase == "beijing")
        {
            let x = if sweep == "servers" {
                r.servers
            } else {
                r.tasks
            };
            points.entry((x, r.algorithm.clone())).or_default().push(r);
        }
        for ((x, algorithm), rs) in &points {
            let n = rs.len() as f64;
            let delay = rs.iter().map(|r| r.measured[2]).sum::<f64>() / n;
            let cost = rs.iter().map(|r| r.cost).sum::<f64>() / n;
            let _ = writeln!(out, "| {x} | {algorithm} | {delay:.1} | {cost:.4} |");
        }
    }
    let _ = writeln!(
        out,
        "\n### The user's move to Singapore (median delay, ms)\n"
    );
    let _ = writeln!(
        out,
        "| algorithm | at Beijing | moved, agents not told | after ALM |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let mut algorithms: Vec<&String> = rows.iter().map(|r| &r.algorithm).collect();
    algorithms.sort();
    algorithms.dedup();
    for a in algorithms {
        let median = |phase: &str| {
            let mut v: Vec<f64> = rows
                .iter()
                .filter(|r| &r.algorithm == a && r.phase == phase)
                .map(|r| r.measured[2])
                .collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let _ = writeln!(
            out,
            "| {a} | {} | {} | {} |",
            show(median("beijing")),
            show(median("moved")),
            show(median("followed"))
        );
    }
    let mut ratios: Vec<f64> = rows
        .iter()
        .filter(|r| r.phase != "index")
        .filter_map(|r| r.predicted[2].map(|p| p / r.measured[2]))
        .collect();
    ratios.sort_by(f64::total_cmp);
    if let Some(m) = ratios.get(ratios.len() / 2) {
        let _ = writeln!(
            out,
            "\nPredicted T_r against measured, median ratio over {} tasks: {m:.2}",
            ratios.len()
        );
    }
    out
}

/// Writes `tasks.csv`, one row per task, and the charts into `out`.
pub fn write(out: &Path, rows: &[Row]) -> Result<()> {
    let mut csv = String::from(
        "sweep,servers,tasks,algorithm,task,phase,entered_at,hosts,tra_ms,pro_ms,r_ms,pred_tra_ms,pred_pro_ms,pred_r_ms,cost\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{},{},{},{:.6}",
            r.sweep,
            r.servers,
            r.tasks,
            r.algorithm,
            r.task,
            r.phase,
            r.entered_at,
            r.hosts,
            r.measured[0],
            r.measured[1],
            r.measured[2],
            opt(r.predicted[0]),
            opt(r.predicted[1]),
            opt(r.predicted[2]),
            r.cost
        );
    }
    std::fs::write(out.join("tasks.csv"), csv)?;
    crate::charts::write(out, rows)
}
