//! `edgehost task`: run a user's task across the fleet's agents. The
//! planner agent turns a prompt and a file into sub-tasks; this command
//! carries them out on their agents, dependencies first (the paper's
//! recursive execute), and reports each part's measured latency next to
//! what the fleet's calibrated model predicts, and the task's resource cost.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use edgehost_fleet::protocol::{AgentName, HostName, PeerView, Request, Response};
use edgehost_placement::cost;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::client::{ClientArgs, Session};

/// Run tasks across the fleet's agents, and make test images.
#[derive(Args)]
pub struct TaskCommand {
    #[command(subcommand)]
    action: TaskAction,
}

#[derive(Subcommand)]
enum TaskAction {
    /// Plan a task with the planner agent and run its sub-tasks where
    /// their agents live; print each part's measured latency and the
    /// model's prediction.
    Run(RunTask),
    /// The recent tasks the planner planned, with their figures.
    List(ListTasks),
    /// Write seeded synthetic photographs (PNG) to search with: scenes
    /// and variants of them that retrieval should find again.
    Images(Images),
}

#[derive(Args)]
struct RunTask {
    #[command(flatten)]
    client: ClientArgs,
    /// What the user asks (`find images like this one`, `index this
    /// photo`, `how many images are indexed?`).
    #[arg(long)]
    prompt: String,
    /// The file the task works on (an image: PNG or binary PPM).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Where the user is, a host's name or a site's: the task enters the
    /// fleet at that host, and the agents it uses learn where their user
    /// is.
    #[arg(long, value_name = "HOST|SITE")]
    user: Option<String>,
    /// The planner agent's name.
    #[arg(long, default_value = "planner")]
    planner: AgentName,
    /// The feature extractor this task uses, instead of the planner's.
    #[arg(long, value_name = "NAME")]
    features: Option<AgentName>,
    /// The index this task uses, instead of the planner's.
    #[arg(long, value_name = "NAME")]
    index: Option<AgentName>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ListTasks {
    #[command(flatten)]
    client: ClientArgs,
    /// The planner agent's name.
    #[arg(long, default_value = "planner")]
    planner: AgentName,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct Images {
    /// Where to write them (created if missing).
    dir: PathBuf,
    /// How many scenes.
    #[arg(long, default_value_t = 20)]
    count: u64,
    /// Variants written per scene, beside it (`scene-N-vK.png`).
    #[arg(long, default_value_t = 1)]
    variants: u64,
    /// The seed of the first scene.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Width and height in pixels.
    #[arg(long, default_value_t = 128)]
    size: u32,
}

impl TaskCommand {
    /// Runs the chosen action.
    pub fn execute(self) -> Result<()> {
        match self.action {
            TaskAction::Run(c) => c.execute(),
            TaskAction::List(c) => c.execute(),
            TaskAction::Images(c) => c.execute(),
        }
    }
}

/// What a sub-task does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Action {
    /// The planner's own part: turning the task into sub-tasks.
    Plan,
    Describe,
    Add,
    Query,
    Stats,
}

impl Action {
    fn needs_file(self) -> bool {
        !matches!(self, Action::Stats | Action::Plan)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Demand {
    memory_mib: u32,
    cpu_millicores: u32,
    storage_mib: u32,
    bandwidth_mbps: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Subtask {
    id: String,
    agent: AgentName,
    action: Action,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    k: Option<usize>,
    demand: Demand,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Plan {
    task: u64,
    planner: String,
    note: String,
    subtasks: Vec<Subtask>,
}

/// Most sub-tasks a plan may have.
const MAX_SUBTASKS: usize = 8;

/// Checks a plan from the planner before anything runs: the planner is an
/// agent, and its answer is input like any other.
fn check(plan: &Plan, has_file: bool) -> Result<()> {
    if plan.subtasks.is_empty() || plan.subtasks.len() > MAX_SUBTASKS {
        bail!(
            "the planner's plan has {} sub-tasks; 1 to {MAX_SUBTASKS} are run",
            plan.subtasks.len()
        );
    }
    let mut seen: HashMap<&str, Action> = HashMap::new();
    for s in &plan.subtasks {
        if s.id.is_empty() || s.id.len() > 32 || seen.contains_key(s.id.as_str()) {
            bail!(
                "the planner's plan has a bad or repeated sub-task id {:?}",
                s.id
            );
        }
        if let Some(missing) = s.needs.iter().find(|n| !seen.contains_key(n.as_str())) {
            bail!(
                "sub-task {:?} needs {missing:?}, which does not come before it",
                s.id
            );
        }
        if s.action == Action::Plan {
            bail!("sub-task {:?}: `plan` is the planner's own part", s.id);
        }
        if s.action.needs_file() && !has_file {
            bail!("sub-task {:?} needs a file: give --file PATH", s.id);
        }
        if matches!(s.action, Action::Add | Action::Query)
            && !s.needs.iter().any(|n| seen[n.as_str()] == Action::Describe)
        {
            bail!("sub-task {:?} needs a describe before it", s.id);
        }
        if let Some(k) = s.k
            && !(1..=100).contains(&k)
        {
            bail!("sub-task {:?} asks for k={k}; 1 to 100", s.id);
        }
        seen.insert(&s.id, s.action);
    }
    Ok(())
}

/// One part of a sub-task's latency: measured, and as the model predicts.
#[derive(Debug, Serialize)]
struct Part {
    measured_ms: f64,
    predicted_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Ran {
    id: String,
    agent: AgentName,
    action: Action,
    host: HostName,
    request_bytes: usize,
    reply_bytes: usize,
    /// T_tra: the request and reply crossing the fleet.
    transmit: Part,
    /// T_pro: the agent's processing on its host.
    processing: Part,
    /// T_r: the sub-task as the user waits for it.
    total: Part,
    reply: Value,
}

impl RunTask {
    fn execute(self) -> Result<()> {
        let file = match &self.file {
            Some(path) => {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "file".to_owned());
                Some((name, bytes))
            }
            None => None,
        };
        let mut session = self.client.connect()?;
        let views = session.fleet()?;
        let user = match &self.user {
            Some(user) => Some(super::client::user_host(&views, user)?),
            None => None,
        };
        if let Some(user) = &user
            && session.host != user.as_str()
        {
            // The task enters the fleet at the user's host.
            let view = views
                .iter()
                .find(|v| &v.report.name == user)
                .ok_or_else(|| anyhow!("no host named {user:?} in the fleet"))?;
            let addr = view.report.addr;
            let (connection, identity) = session.runtime.block_on(session.client.connect(addr))?;
            session
                .connection
                .close(0u32.into(), b"moving to the user's host");
            session.connection = connection;
            session.host = identity.name.to_string();
        }
        let started = Instant::now();
        let mut agents = serde_json::Map::new();
        if let Some(f) = &self.features {
            agents.insert("features".into(), json!(f));
        }
        if let Some(i) = &self.index {
            agents.insert("index".into(), json!(i));
        }
        let task = json!({
            "prompt": self.prompt,
            "agents": agents,
            "file": file.as_ref().map(|(name, bytes)| json!({"name": name, "bytes": bytes.len()})),
        });
        let task = task.to_string().into_bytes();
        let task_bytes = task.len();
        let (plan_reply, plan_host, plan_us) = invoke(&session, &self.planner, task)?;
        let plan_ms = started.elapsed().as_secs_f64() * 1e3;
        let plan: Plan = serde_json::from_slice(&plan_reply)
            .map_err(|e| anyhow!("the planner's answer is not a plan: {e}"))?;
        check(&plan, file.is_some())?;
        let mut ran = vec![part(
            &views,
            &session,
            Called {
                id: "plan".into(),
                agent: self.planner.clone(),
                action: Action::Plan,
                host: plan_host,
                request_bytes: task_bytes,
                reply: &plan_reply,
                total_ms: plan_ms,
                processing_us: plan_us,
            },
            serde_json::to_value(&plan)?,
        )];
        if let Some(user) = &user {
            for s in &plan.subtasks {
                session.call(&Request::Attach {
                    agent: s.agent.clone(),
                    host: user.clone(),
                })?;
            }
        }

        let mut outputs: HashMap<String, Value> = HashMap::new();
        for s in &plan.subtasks {
            let descriptor = || {
                s.needs
                    .iter()
                    .find_map(|n| outputs.get(n).filter(|v| v.get("histogram").is_some()))
                    .cloned()
                    .ok_or_else(|| anyhow!("sub-task {:?}: no descriptor to work on", s.id))
            };
            let body = match s.action {
                Action::Describe => file.as_ref().map(|f| f.1.clone()).unwrap_or_default(),
                Action::Add => json!({
                    "op": "add",
                    "id": file.as_ref().map(|f| f.0.as_str()).unwrap_or("file"),
                    "descriptor": descriptor()?,
                })
                .to_string()
                .into_bytes(),
                Action::Query => json!({
                    "op": "query",
                    "k": s.k.unwrap_or(5),
                    "descriptor": descriptor()?,
                })
                .to_string()
                .into_bytes(),
                Action::Stats => br#"{"op":"stats"}"#.to_vec(),
                Action::Plan => bail!("sub-task {:?}: `plan` is the planner's own part", s.id),
            };
            let request_bytes = body.len();
            let start = Instant::now();
            let (reply, host, processing_us) = invoke(&session, &s.agent, body)
                .with_context(|| format!("sub-task {:?} on {}", s.id, s.agent))?;
            let total_ms = start.elapsed().as_secs_f64() * 1e3;
            let value: Value = serde_json::from_slice(&reply).map_err(|e| {
                anyhow!(
                    "sub-task {:?}: {} answered what is not JSON: {e}",
                    s.id,
                    s.agent
                )
            })?;
            outputs.insert(s.id.clone(), value.clone());
            ran.push(part(
                &views,
                &session,
                Called {
                    id: s.id.clone(),
                    agent: s.agent.clone(),
                    action: s.action,
                    host,
                    request_bytes,
                    reply: &reply,
                    total_ms,
                    processing_us,
                },
                value,
            ));
        }
        let total_ms = started.elapsed().as_secs_f64() * 1e3;
        // T_r: the parts the user waits for, planning included.
        let t_r = Part {
            measured_ms: ran.iter().map(|r| r.total.measured_ms).sum(),
            predicted_ms: ran.iter().map(|r| r.total.predicted_ms).sum(),
        };
        let cost = resource_cost(&ran, &views, file.as_ref().map_or(0, |f| f.1.len()));
        let report = json!({
            "task": plan.task,
            "entered_at": session.host,
            "planner": plan.planner,
            "note": plan.note,
            "plan_ms": plan_ms,
            "subtasks": ran,
            "t_r": t_r,
            "total_ms": total_ms,
            "cost": cost,
        });
        // The planner keeps the figures with the task, for `task list`.
        let record = json!({"record": {
            "task": plan.task,
            "entered_at": session.host,
            "t_r_ms": t_r.measured_ms,
            "total_ms": total_ms,
            "cost": cost["total"],
            "hosts": ran.iter().map(|r| r.host.to_string()).collect::<Vec<_>>(),
        }});
        let recorded = invoke(&session, &self.planner, record.to_string().into_bytes());
        session.close();
        if let Err(e) = recorded {
            eprintln!("warning: the planner did not keep the task's figures: {e:#}");
        }
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        outln!(
            "planned by {} in {plan_ms:.1} ms: {}",
            plan.planner,
            plan.note
        );
        outln!(
            "{:<10} {:<10} {:<12} {:>18} {:>18} {:>18}",
            "sub-task",
            "agent",
            "host",
            "T_tra ms (model)",
            "T_pro ms (model)",
            "T_r ms (model)"
        );
        let show = |p: &Part| match p.predicted_ms {
            Some(m) => format!("{:.2} ({m:.2})", p.measured_ms),
            None => format!("{:.2} (-)", p.measured_ms),
        };
        for r in &ran {
            outln!(
                "{:<10} {:<10} {:<12} {:>18} {:>18} {:>18}",
                r.id,
                r.agent.as_str(),
                r.host.as_str(),
                show(&r.transmit),
                show(&r.processing),
                show(&r.total)
            );
        }
        if let Some(last) = ran.last() {
            outln!("answer: {}", last.reply);
        }
        outln!("T_r {}", show(&t_r));
        outln!(
            "task: {total_ms:.1} ms with this command's own work; resource cost {:.4} (CPU {:.4} s, storage {:.6} GB, communication {:.4} MB); T_mig = T_ini = 0, no agent moved or started",
            cost["total"].as_f64().unwrap_or(0.0),
            cost["cpu_s"].as_f64().unwrap_or(0.0),
            cost["storage_gb"].as_f64().unwrap_or(0.0),
            cost["communication_mb"].as_f64().unwrap_or(0.0),
        );
        Ok(())
    }
}

/// Calls an agent through the connected host: its reply, the host that
/// ran it and the microseconds it took there.
fn invoke(session: &Session, agent: &AgentName, body: Vec<u8>) -> Result<(Vec<u8>, HostName, u64)> {
    match session.call(&Request::Invoke {
        name: agent.clone(),
        body,
        caller: None,
        hops: 0,
    })? {
        Response::Invoked {
            body,
            host,
            processing_us,
        } => Ok((body, host, processing_us)),
        other => Err(edgehost_fleet::client::unexpected(&other).into()),
    }
}

/// One call of a task, as measured.
struct Called<'a> {
    id: String,
    agent: AgentName,
    action: Action,
    host: HostName,
    request_bytes: usize,
    reply: &'a [u8],
    total_ms: f64,
    processing_us: u64,
}

/// A call's parts, measured and predicted.
fn part(views: &[PeerView], session: &Session, called: Called<'_>, reply: Value) -> Ran {
    let processing_ms = called.processing_us as f64 / 1e3;
    let predicted = predict(
        views,
        session,
        &called.host,
        &called.agent,
        called.request_bytes,
        called.reply.len(),
    );
    Ran {
        id: called.id,
        agent: called.agent,
        action: called.action,
        host: called.host,
        request_bytes: called.request_bytes,
        reply_bytes: called.reply.len(),
        transmit: Part {
            measured_ms: (called.total_ms - processing_ms).max(0.0),
            predicted_ms: predicted.0,
        },
        processing: Part {
            measured_ms: processing_ms,
            predicted_ms: predicted.1,
        },
        total: Part {
            measured_ms: called.total_ms,
            predicted_ms: predicted.0.zip(predicted.1).map(|(a, b)| a + b),
        },
        reply,
    }
}

/// The calibrated model's T_tra and T_pro for a call of `agent` on `host`,
/// entering at the session's host: the client's round trip to it; then,
/// when the agent runs elsewhere, the link's measured round trip and the
/// request and reply at the link's measured rate (the host's declared
/// bandwidth until a transfer measured it), as eq. 1 prices a file; and
/// the agent's measured processing time. `None` for a part the fleet has
/// not measured yet.
fn predict(
    views: &[PeerView],
    session: &Session,
    host: &HostName,
    agent: &AgentName,
    request_bytes: usize,
    reply_bytes: usize,
) -> (Option<f64>, Option<f64>) {
    let access_ms = session.connection.rtt().as_secs_f64() * 1e3;
    let entry = views
        .iter()
        .find(|v| v.report.name.as_str() == session.host);
    let transmit = if host.as_str() == session.host {
        Some(access_ms)
    } else {
        entry.and_then(|v| {
            let link = v.report.model.link(host.as_str())?;
            let mbps = link
                .send
                .filter(|e| e.ms_per_unit > 0.0)
                .map(|e| 8.0 / e.ms_per_unit / 1e3)
                .unwrap_or(v.report.bandwidth_mbps)
                .max(1e-3);
            let bits = ((request_bytes + reply_bytes) * 8) as f64;
            Some(access_ms + link.rtt_ms + bits / (mbps * 1e3))
        })
    };
    let processing = views
        .iter()
        .find(|v| &v.report.name == host)
        .and_then(|v| v.report.agents.iter().find(|a| &a.name == agent))
        .and_then(|a| a.processing)
        .map(|e| e.predict_ms(request_bytes as f64));
    (transmit, processing)
}

/// The task's resource cost (eqs. 7-10): CPU seconds outside transfers,
/// storage of the file and of the memories of the agents it used, and the
/// volume of its communication.
fn resource_cost(ran: &[Ran], views: &[PeerView], file_bytes: usize) -> Value {
    let total_s: f64 = ran.iter().map(|r| r.total.measured_ms).sum::<f64>() / 1e3;
    let transfer_s: f64 = ran.iter().map(|r| r.transmit.measured_ms).sum::<f64>() / 1e3;
    let cpu_s = cost::cpu_cost_s(total_s, transfer_s, 0.0);
    let mut used: Vec<&AgentName> = ran.iter().map(|r| &r.agent).collect();
    used.sort();
    used.dedup();
    let memories: u64 = used
        .iter()
        .filter_map(|name| {
            views
                .iter()
                .flat_map(|v| &v.report.agents)
                .find(|a| &a.name == *name)
                .map(|a| a.state_bytes)
        })
        .sum();
    let storage_gb = cost::storage_cost_gb(file_bytes as f64 / 1e9, memories as f64 / 1e9);
    let communication_mb = cost::communication_cost_mb(
        ran.iter()
            .map(|r| (r.request_bytes + r.reply_bytes) as f64 / 1e6),
    );
    json!({
        "cpu_s": cpu_s,
        "storage_gb": storage_gb,
        "communication_mb": communication_mb,
        "total": cost::total_cost(cpu_s, storage_gb, communication_mb),
    })
}

impl ListTasks {
    fn execute(self) -> Result<()> {
        let session = self.client.connect()?;
        let answer = invoke(&session, &self.planner, b"history".to_vec());
        session.close();
        let (reply, _, _) = answer?;
        let tasks: Value = serde_json::from_slice(&reply)
            .map_err(|e| anyhow!("the planner's history is not JSON: {e}"))?;
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&tasks)?);
            return Ok(());
        }
        let list = tasks.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            outln!("no tasks yet");
        }
        for t in list {
            let figures = &t["figures"];
            outln!(
                "#{:<4} {:<6} {:>2} sub-tasks  {:>9}  cost {:<8}  {}",
                t["task"],
                t["planner"].as_str().unwrap_or("?"),
                t["subtasks"],
                figures["total_ms"]
                    .as_f64()
                    .map_or("-".to_owned(), |ms| format!("{ms:.1} ms")),
                figures["cost"]
                    .as_f64()
                    .map_or("-".to_owned(), |c| format!("{c:.4}")),
                t["prompt"].as_str().unwrap_or("")
            );
        }
        Ok(())
    }
}

impl Images {
    fn execute(self) -> Result<()> {
        if !(8..=2048).contains(&self.size) {
            bail!("--size {}: must be 8 to 2048 pixels", self.size);
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut written = 0;
        for seed in self.seed..self.seed.saturating_add(self.count) {
            for v in 0..=self.variants {
                let image = edgehost_cbir::synth::variant(seed, v, self.size, self.size);
                let name = if v == 0 {
                    format!("scene-{seed}.png")
                } else {
                    format!("scene-{seed}-v{v}.png")
                };
                let path = self.dir.join(name);
                std::fs::write(&path, edgehost_cbir::image::encode_png(&image))
                    .with_context(|| format!("writing {}", path.display()))?;
                written += 1;
            }
        }
        outln!("wrote {written} images to {}", self.dir.display());
        Ok(())
    }
}
