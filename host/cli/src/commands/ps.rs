//! `edgehost ps`: hosts and agents of the fleet.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::client::ClientArgs;

/// List the fleet's hosts and agents.
#[derive(Args)]
pub struct PsCommand {
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct HostRow {
    name: String,
    addr: String,
    site: String,
    reachable: bool,
    last_seen_s: f64,
    arch: String,
    cpu_cores: u32,
    cpu_usage_percent: f32,
    memory_free_bytes: u64,
    disk_free_bytes: u64,
    agents: usize,
    max_agents: u32,
    compiling: Vec<String>,
    policy: String,
    policy_generation: u64,
}

#[derive(Serialize)]
struct AgentRow {
    name: String,
    host: String,
    reachable: bool,
    digest: String,
    kind: String,
    state_bytes: u64,
    uptime_s: f64,
    calls: u64,
    status: String,
    /// Its last wake from hibernation on its host, milliseconds.
    wake_ms: Option<f64>,
}

#[derive(Serialize)]
struct Ps {
    via: String,
    hosts: Vec<HostRow>,
    agents: Vec<AgentRow>,
}

impl PsCommand {
    /// Asks one host for its view of the fleet and prints it.
    pub fn execute(self) -> Result<()> {
        let session = self.client.connect()?;
        let views = session.fleet()?;
        let via = session.host.clone();
        session.close();
        let mut hosts = Vec::new();
        let mut agents = Vec::new();
        for v in &views {
            let r = &v.report;
            hosts.push(HostRow {
                name: r.name.to_string(),
                addr: r.addr.to_string(),
                site: r.site.clone(),
                reachable: v.reachable,
                last_seen_s: v.last_seen_s,
                arch: r.status.arch.clone(),
                cpu_cores: r.status.cpu_cores,
                cpu_usage_percent: r.status.cpu_usage_percent,
                memory_free_bytes: r.status.memory_free_bytes,
                disk_free_bytes: r.status.disk_free_bytes,
                agents: r.agents.len(),
                max_agents: r.max_agents,
                compiling: r.compiling.iter().map(ToString::to_string).collect(),
                policy: r.policy.clone(),
                policy_generation: r.policy_generation,
            });
            for a in &r.agents {
                agents.push(AgentRow {
                    name: a.name.to_string(),
                    host: r.name.to_string(),
                    reachable: v.reachable,
                    digest: a.digest.to_string(),
                    kind: a.descriptor.kind.clone(),
                    state_bytes: a.state_bytes,
                    uptime_s: a.uptime_s,
                    calls: a.calls,
                    status: a.status.clone(),
                    wake_ms: a.wake_ms,
                });
            }
        }
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        let ps = Ps { via, hosts, agents };
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&ps)?);
            return Ok(());
        }
        outln!(
            "{:<14} {:<22} {:<11} {:<12} {:<8} {:>5} {:>6} {:>10} {:>10} {:>7} {:>4}  POLICY",
            "HOST",
            "ADDRESS",
            "SITE",
            "STATUS",
            "ARCH",
            "CORES",
            "CPU%",
            "MEM FREE",
            "DISK FREE",
            "AGENTS",
            "GEN"
        );
        for h in &ps.hosts {
            let status = if !h.reachable {
                "unreachable".to_owned()
            } else if !h.compiling.is_empty() {
                "compiling".to_owned()
            } else {
                "up".to_owned()
            };
            outln!(
                "{:<14} {:<22} {:<11} {:<12} {:<8} {:>5} {:>6.1} {:>10} {:>10} {:>4}/{:<2} {:>4}  {}",
                h.name,
                h.addr,
                h.site,
                status,
                h.arch,
                h.cpu_cores,
                h.cpu_usage_percent,
                human(h.memory_free_bytes),
                human(h.disk_free_bytes),
                h.agents,
                h.max_agents,
                h.policy_generation,
                h.policy
            );
        }
        outln!();
        outln!(
            "{:<18} {:<14} {:<10} {:<20} {:>10} {:>9} {:>7}  STATUS",
            "AGENT",
            "HOST",
            "KIND",
            "DIGEST",
            "STATE",
            "UPTIME",
            "CALLS"
        );
        for a in &ps.agents {
            let host = if a.reachable {
                a.host.clone()
            } else {
                format!("{}?", a.host)
            };
            let status = match a.wake_ms {
                Some(ms) => format!("{} (last woke in {ms:.1} ms)", a.status),
                None => a.status.clone(),
            };
            outln!(
                "{:<18} {:<14} {:<10} {:<20} {:>10} {:>8.0}s {:>7}  {}",
                a.name,
                host,
                a.kind,
                &a.digest[..a.digest.len().min(20)],
                human(a.state_bytes),
                a.uptime_s,
                a.calls,
                status
            );
        }
        Ok(())
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
