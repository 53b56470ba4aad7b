//! The paper's experiment with real agents on the emulated WAN: CBIR tasks
//! placed by AntLLM and by the baselines, run while the user travels from
//! Beijing to Singapore, with every task's delay and resource cost
//! measured.
//!
//! Each point of a sweep (a number of servers, a number of tasks) runs
//! every algorithm in turn on the same fleet, from the same seeds: for each
//! task, a feature extractor and an index are pushed with `edgehost push
//! --auto --algorithm A --user beijing`, the index is filled with a few
//! images, and the user's queries run in three phases:
//!
//! - `beijing`: the user at Beijing, where the agents were placed for;
//! - `moved`: the user at Singapore, the agents not yet told;
//! - `followed`: after the user attached at Singapore and ALM decided.
//!
//! Every task goes through a Python planner (one per algorithm, pushed to
//! Beijing and told of the move like the others) and `edgehost task run`,
//! as a user's would. The agents are released before the next algorithm
//! runs. The delay and cost figures of the sweeps are the queries from
//! Beijing, the phase every point has; the move is reported on its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::fleet::WanFleet;
use crate::topology::Topology;

/// The algorithms compared, in report order.
pub const ALGORITHMS: [&str; 5] = ["antllm", "local-search", "greedy", "polling", "random"];

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Server counts of the servers sweep (at `tasks_at` tasks).
    pub servers: Vec<usize>,
    /// Task counts of the tasks sweep (at the largest server count).
    pub tasks: Vec<usize>,
    /// Tasks per point of the servers sweep.
    pub tasks_at: usize,
    /// Images indexed per task.
    pub images: usize,
    /// Queries per task in each phase.
    pub queries: usize,
    /// The algorithms.
    pub algorithms: Vec<String>,
    /// Seeds the relay's losses and the images.
    pub seed: u64,
    /// Prints a line per task as it ends: where its parts ran, its
    /// measured and predicted T_r, its cost.
    pub show_tasks: bool,
}

impl Plan {
    /// The full experiment: 2 to 4 servers, 1 to 5 tasks.
    pub fn full() -> Plan {
        Plan {
            servers: vec![2, 3, 4],
            tasks: vec![1, 2, 3, 4, 5],
            tasks_at: 3,
            images: 3,
            queries: 2,
            algorithms: ALGORITHMS.iter().map(|a| (*a).to_owned()).collect(),
            seed: 1,
            show_tasks: false,
        }
    }

    /// The demo: the four sites with three tasks, every algorithm, each
    /// task shown as it ends.
    pub fn demo() -> Plan {
        Plan {
            servers: vec![4],
            tasks: vec![],
            tasks_at: 3,
            images: 2,
            queries: 2,
            show_tasks: true,
            ..Plan::full()
        }
    }

    /// A shorter one: 2 and 4 servers, 1 and 3 tasks, one query per phase.
    pub fn quick() -> Plan {
        Plan {
            servers: vec![2, 4],
            tasks: vec![1, 3],
            tasks_at: 3,
            images: 2,
            queries: 1,
            ..Plan::full()
        }
    }
}

/// Where things are.
pub struct Setup {
    /// The `edgehost` binary.
    pub edgehost: PathBuf,
    /// The feature extractor, index and planner components.
    pub features: PathBuf,
    /// The index.
    pub index: PathBuf,
    /// The Python planner.
    pub planner: PathBuf,
    /// Where results go.
    pub out: PathBuf,
    /// Each host in a network namespace of its own, its uplink a `tbf`
    /// queue (needs root); otherwise the relay alone, on loopback.
    pub isolated: bool,
}

/// One task the user ran.
#[derive(Clone, Debug)]
pub struct Row {
    /// `servers` or `tasks`.
    pub sweep: &'static str,
    /// Servers in the fleet.
    pub servers: usize,
    /// Tasks at the point.
    pub tasks: usize,
    /// The placement algorithm.
    pub algorithm: String,
    /// Which task of the point.
    pub task: usize,
    /// `index`, `beijing`, `moved` or `followed`.
    pub phase: &'static str,
    /// Where the task entered the fleet.
    pub entered_at: String,
    /// Where each sub-task ran, in order.
    pub hosts: String,
    /// Measured transmission, processing and total, milliseconds.
    pub measured: [f64; 3],
    /// Predicted, when the model had every part.
    pub predicted: [Option<f64>; 3],
    /// The task's resource cost (eq. 10).
    pub cost: f64,
}

/// Runs `edgehost` with `args` against the fleet and reads its JSON.
fn edgehost(setup: &Setup, fleet: &WanFleet, args: &[&str]) -> Result<Value> {
    let out = Command::new(&setup.edgehost)
        .env("EDGEHOST_CLIENT_CONFIG", fleet.client_config())
        .args(args)
        .output()
        .with_context(|| format!("running {}", setup.edgehost.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "edgehost {}: {}",
            args.first().unwrap_or(&""),
            err.lines().last().unwrap_or("failed")
        );
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow!("edgehost {}: not JSON: {e}", args.join(" ")))
}

fn sum_part(subtasks: &[Value], part: &str, key: &str) -> Option<f64> {
    subtasks.iter().map(|s| s[part][key].as_f64()).sum()
}

fn row_of(report: &Value, base: &Row) -> Row {
    let subtasks = report["subtasks"].as_array().cloned().unwrap_or_default();
    let hosts = subtasks
        .iter()
        .map(|s| s["host"].as_str().unwrap_or("?").to_owned())
        .collect::<Vec<_>>()
        .join("+");
    Row {
        entered_at: report["entered_at"].as_str().unwrap_or("?").to_owned(),
        hosts,
        measured: [
            sum_part(&subtasks, "transmit", "measured_ms").unwrap_or(0.0),
            sum_part(&subtasks, "processing", "measured_ms").unwrap_or(0.0),
            report["t_r"]["measured_ms"].as_f64().unwrap_or(0.0),
        ],
        predicted: [
            sum_part(&subtasks, "transmit", "predicted_ms"),
            sum_part(&subtasks, "processing", "predicted_ms"),
            report["t_r"]["predicted_ms"].as_f64(),
        ],
        cost: report["cost"]["total"].as_f64().unwrap_or(0.0),
        ..base.clone()
    }
}

/// Progress, on one line per step.
fn say(started: Instant, what: &str) {
    eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
}

/// One task as it ended, when the plan shows tasks.
fn show(plan: &Plan, started: Instant, row: &Row) {
    if !plan.show_tasks {
        return;
    }
    let what = match row.phase {
        "index" => "index a photo",
        "beijing" => "query, user at beijing",
        "moved" => "query, user at singapore, agents not told",
        _ => "query, user at singapore, after ALM",
    };
    let predicted = row.predicted[2].map_or("-".to_owned(), |p| format!("{p:.1}"));
    say(
        started,
        &format!(
            "  task {} ({what}): ran on {}; T_r {:.1} ms (predicted {predicted}), cost {:.4}",
            row.task + 1,
            row.hosts,
            row.measured[2],
            row.cost
        ),
    );
}

/// Runs one point: every algorithm on a fleet of `servers` with `tasks`
/// tasks.
#[allow(clippy::too_many_arguments)]
fn point(
    setup: &Setup,
    fleet: &WanFleet,
    plan: &Plan,
    sweep: &'static str,
    servers: usize,
    tasks: usize,
    images: &Path,
    started: Instant,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let far = if servers >= 4 { "singapore" } else { "" };
    for algorithm in &plan.algorithms {
        say(
            started,
            &format!("{sweep} sweep: {servers} servers, {tasks} tasks, {algorithm}"),
        );
        // Each algorithm's tasks have a planner of their own, at Beijing
        // with the user, so that it can follow the user as well.
        let planner = format!("p-{algorithm}");
        edgehost(
            setup,
            fleet,
            &[
                "push",
                setup.planner.to_str().unwrap_or_default(),
                "--name",
                &planner,
                "--to",
                "beijing",
                "--json",
            ],
        )?;
        let mut names = Vec::new();
        for t in 0..tasks {
            let f = format!("f-{algorithm}-{t}");
            let i = format!("i-{algorithm}-{t}");
            for (file, name) in [(&setup.features, &f), (&setup.index, &i)] {
                push_placed(
                    setup,
                    fleet,
                    started,
                    &[
                        "push",
                        file.to_str().unwrap_or_default(),
                        "--name",
                        name,
                        "--auto",
                        "--algorithm",
                        algorithm,
                        "--user",
                        "beijing",
                        "--json",
                    ],
                )?;
            }
            names.push((f, i));
        }
        let base = |task, phase| Row {
            sweep,
            servers,
            tasks,
            algorithm: algorithm.clone(),
            task,
            phase,
            entered_at: String::new(),
            hosts: String::new(),
            measured: [0.0; 3],
            predicted: [None; 3],
            cost: 0.0,
        };
        let run = |t: usize, prompt: &str, image: &Path, entry: &[&str]| -> Result<Value> {
            let (f, i) = &names[t];
            let mut args = vec![
                "task",
                "run",
                "--prompt",
                prompt,
                "--file",
                image.to_str().unwrap_or_default(),
                "--features",
                f,
                "--index",
                i,
                "--planner",
                &planner,
                "--json",
            ];
            args.extend_from_slice(entry);
            edgehost(setup, fleet, &args)
        };
        for t in 0..tasks {
            for k in 0..plan.images {
                let image = images.join(format!("scene-{}.png", 1 + t * plan.images + k));
                let report = run(
                    t,
                    "add this photo to the index",
                    &image,
                    &["--user", "beijing"],
                )?;
                let row = row_of(&report, &base(t, "index"));
                show(plan, started, &row);
                rows.push(row);
            }
        }
        let query = |t: usize, q: usize| {
            images.join(format!(
                "scene-{}-v1.png",
                1 + t * plan.images + q % plan.images
            ))
        };
        for t in 0..tasks {
            for q in 0..plan.queries {
                let report = run(
                    t,
                    "find images similar to this",
                    &query(t, q),
                    &["--user", "beijing"],
                )?;
                let row = row_of(&report, &base(t, "beijing"));
                show(plan, started, &row);
                rows.push(row);
            }
        }
        if !far.is_empty() {
            let via = fleet_address(setup, fleet, far)?;
            for t in 0..tasks {
                for q in 0..plan.queries {
                    let report = run(
                        t,
                        "find images similar to this",
                        &query(t, q),
                        &["--via", &via],
                    )?;
                    let row = row_of(&report, &base(t, "moved"));
                    show(plan, started, &row);
                    rows.push(row);
                }
            }
            let mut attach = vec!["client", "attach", far, "--agent", planner.as_str()];
            for (f, i) in &names {
                attach.extend(["--agent", f.as_str(), "--agent", i.as_str()]);
            }
            attach.push("--json");
            edgehost(setup, fleet, &attach)?;
            for t in 0..tasks {
                for q in 0..plan.queries {
                    let report = run(
                        t,
                        "find images similar to this",
                        &query(t, q),
                        &["--user", far],
                    )?;
                    let row = row_of(&report, &base(t, "followed"));
                    show(plan, started, &row);
                    rows.push(row);
                }
            }
        }
        for name in names.iter().flat_map(|(f, i)| [f, i]).chain([&planner]) {
            release(setup, fleet, name)?;
        }
    }
    Ok(())
}

/// `edgehost push ARGS` with placement: the hosts' reports lag a release
/// by up to a heartbeat, so a push that finds no feasible plan right after the
/// previous algorithm's agents left is tried again for a few seconds, and
/// said so.
fn push_placed(setup: &Setup, fleet: &WanFleet, started: Instant, args: &[&str]) -> Result<Value> {
    let mut tries = 0;
    loop {
        match edgehost(setup, fleet, args) {
            Err(e) if tries < 40 && format!("{e:#}").contains("no feasible plan") => {
                if tries == 0 {
                    say(started, &format!("  no room yet ({e:#}); trying again"));
                }
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

/// Releases `name`. An agent ALM just moved is not where the fleet's
/// reports say until the next heartbeat: try again for a few seconds.
fn release(setup: &Setup, fleet: &WanFleet, name: &str) -> Result<()> {
    let mut last = String::new();
    for _ in 0..20 {
        let out = Command::new(&setup.edgehost)
            .env("EDGEHOST_CLIENT_CONFIG", fleet.client_config())
            .args(["release", name])
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    bail!("releasing {name}: {last}")
}

/// Images in the index the migration check moves.
const MIGRATED_IMAGES: u64 = 400;

/// Moves a filled index from Beijing to Singapore and back, and compares
/// each move with its physical bound: the state over the sender's uplink
/// rate, plus one round trip.
fn migration_check(
    setup: &Setup,
    fleet: &WanFleet,
    plan: &Plan,
    started: Instant,
) -> Result<String> {
    say(
        started,
        &format!("migration check: an index of {MIGRATED_IMAGES} images, Beijing <-> Singapore"),
    );
    edgehost(
        setup,
        fleet,
        &[
            "push",
            setup.index.to_str().unwrap_or_default(),
            "--name",
            "big-index",
            "--to",
            "beijing",
            "--json",
        ],
    )?;
    for k in 0..MIGRATED_IMAGES {
        let scene = edgehost_cbir::synth::scene(plan.seed.wrapping_mul(7919) + k, 48, 48);
        let request = serde_json::json!({
            "op": "add",
            "id": format!("photo-{k}"),
            "descriptor": edgehost_cbir::describe(&scene),
        });
        edgehost(
            setup,
            fleet,
            &[
                "invoke",
                "big-index",
                "--input",
                &request.to_string(),
                "--json",
            ],
        )?;
    }
    let topology = fleet.topology();
    let mut out = String::from(
        "\n### Migrating the index across the WAN\n\n| move | state (bytes) | how | state move (ms) | bound (ms) | move / bound | whole handoff (ms) | downtime (ms) |\n|---|---:|---|---:|---:|---:|---:|---:|\n",
    );
    for (from, to) in [("beijing", "singapore"), ("singapore", "beijing")] {
        let report = edgehost(
            setup,
            fleet,
            &["migrate", "big-index", "--to", to, "--json"],
        )?;
        let moved = report["move_ms"].as_f64().unwrap_or(0.0);
        let state = report["state_bytes"].as_f64().unwrap_or(0.0);
        let (a, b) = (
            topology.index(from).unwrap_or(0),
            topology.index(to).unwrap_or(0),
        );
        let mbps = topology.sites[a].uplink_mbps.unwrap_or(f64::INFINITY);
        let bound = state * 8.0 / (mbps * 1e3) + topology.rtt(a, b).as_secs_f64() * 1e3;
        let how = if report["stop_and_copy"].as_bool().unwrap_or(false) {
            "stop-and-copy"
        } else {
            "pre-copy"
        };
        let _ = writeln!(
            out,
            "| {from} -> {to} | {state} | {how} | {moved:.1} | {bound:.1} | {:.2} | {:.1} | {:.1} |",
            moved / bound,
            report["handoff_ms"].as_f64().unwrap_or(0.0),
            report["downtime_ms"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(out)
}

/// The address `host` advertises.
fn fleet_address(setup: &Setup, fleet: &WanFleet, host: &str) -> Result<String> {
    let ps = edgehost(setup, fleet, &["ps", "--json"])?;
    ps["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["name"] == host))
        .and_then(|h| h["addr"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no host {host} in ps"))
}

/// Runs the experiment; writes `tasks.csv`, `summary.csv`, the charts and
/// `summary.md` into `setup.out`, and returns the summary.
pub fn run(setup: &Setup, plan: &Plan) -> Result<String> {
    let started = Instant::now();
    std::fs::create_dir_all(&setup.out)?;
    let images = setup.out.join("images");
    let count = (plan
        .tasks
        .iter()
        .chain([&plan.tasks_at])
        .max()
        .copied()
        .unwrap_or(1)
        * plan.images) as u64;
    std::fs::create_dir_all(&images)?;
    for seed in 1..=count {
        for v in 0..=1 {
            let scene =
                edgehost_cbir::synth::variant(plan.seed.wrapping_mul(1000) + seed, v, 128, 128);
            let image = edgehost_cbir::image::encode_png(&scene);
            let name = if v == 0 {
                format!("scene-{seed}.png")
            } else {
                format!("scene-{seed}-v1.png")
            };
            std::fs::write(images.join(name), image)?;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    let mut migrations = String::new();
    let largest = plan.servers.iter().copied().max().unwrap_or(4);
    let mut fleets: Vec<usize> = plan.servers.clone();
    fleets.sort_unstable();
    for servers in fleets {
        say(
            started,
            &format!("starting a fleet of {servers} on the emulated WAN"),
        );
        let topology = Topology::paper(servers).map_err(anyhow::Error::msg)?;
        // A fleet of an earlier run in the same directory is gone: each run
        // starts its fleets afresh.
        let dir = setup.out.join(format!("fleet-{servers}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing the earlier fleet {}", dir.display()))?;
        }
        let fleet = if setup.isolated {
            runtime.block_on(WanFleet::start_isolated(
                &setup.edgehost,
                topology,
                plan.seed,
                Some(dir),
                500,
            ))?
        } else {
            runtime.block_on(WanFleet::start(
                &setup.edgehost,
                topology,
                plan.seed,
                Some(dir),
                &["--heartbeat-ms".to_owned(), "500".to_owned()],
            ))?
        };
        let mut done = BTreeMap::new();
        if plan.servers.contains(&servers) {
            let mut point_rows = Vec::new();
            point(
                setup,
                &fleet,
                plan,
                "servers",
                servers,
                plan.tasks_at,
                &images,
                started,
                &mut point_rows,
            )?;
            done.insert(plan.tasks_at, point_rows.clone());
            rows.extend(point_rows);
        }
        if servers == largest {
            for &tasks in &plan.tasks {
                if let Some(same) = done.get(&tasks) {
                    // The servers sweep ran this very point already.
                    rows.extend(same.iter().map(|r| Row {
                        sweep: "tasks",
                        ..r.clone()
                    }));
                    continue;
                }
                point(
                    setup, &fleet, plan, "tasks", servers, tasks, &images, started, &mut rows,
                )?;
            }
        }
        if servers == largest && servers == 4 {
            migrations = migration_check(setup, &fleet, plan, started)?;
        }
        drop(fleet);
    }
    crate::results::write(&setup.out, &rows)?;
    let mut summary = crate::results::summarise(&rows);
    summary.push_str(&migrations);
    std::fs::write(setup.out.join("summary.md"), &summary)?;
    say(started, "done");
    Ok(summary)
}
