//! `edgehost model`: what each host measured about itself and its links,
//! and the cost model's constants a decision would use.

use anyhow::Result;
use clap::Args;
use edgehost_fleet::place::{CostParams, fleet_params};
use edgehost_fleet::protocol::{Estimate, HostModel, HostReport};
use serde::Serialize;

use super::client::ClientArgs;

/// Show the cost model each host has calibrated from its measurements.
#[derive(Args)]
pub struct ModelCommand {
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON (a snapshot `edgehost sim --model` loads).
    #[arg(long)]
    json: bool,
}

/// One figure of a host: measured, or not yet.
#[derive(Serialize)]
struct Figure {
    name: &'static str,
    /// `measured`, or `default` while nothing was measured.
    source: &'static str,
    #[serde(flatten)]
    estimate: Option<Estimate>,
}

#[derive(Serialize)]
struct HostFigures {
    name: String,
    reachable: bool,
    figures: Vec<Figure>,
    model: HostModel,
    agents: Vec<AgentFigure>,
}

#[derive(Serialize)]
struct AgentFigure {
    name: String,
    processing: Option<Estimate>,
}

/// The snapshot: every host's figures and the constants a decision taken
/// through `via` would price with.
#[derive(Serialize)]
struct Snapshot {
    via: String,
    cost_params: CostParams,
    hosts: Vec<HostFigures>,
}

fn figures(model: &HostModel) -> Vec<Figure> {
    [
        ("export", model.export),
        ("import", model.import),
        ("start", model.start),
        ("compile", model.compile),
        ("cache_load", model.cache_load),
        ("llm", model.llm),
    ]
    .into_iter()
    .map(|(name, estimate)| Figure {
        name,
        source: if estimate.is_some() {
            "measured"
        } else {
            "default"
        },
        estimate,
    })
    .collect()
}

impl ModelCommand {
    /// Asks one host for the fleet's reports and prints their figures.
    pub fn execute(self) -> Result<()> {
        let session = self.client.connect()?;
        let views = session.fleet()?;
        let via = session.host.clone();
        session.close();
        let reachable: Vec<HostReport> = views
            .iter()
            .filter(|v| v.reachable)
            .map(|v| v.report.clone())
            .collect();
        let snapshot = Snapshot {
            via,
            cost_params: fleet_params(&reachable),
            hosts: views
                .iter()
                .map(|v| HostFigures {
                    name: v.report.name.to_string(),
                    reachable: v.reachable,
                    figures: figures(&v.report.model),
                    model: (*v.report.model).clone(),
                    agents: v
                        .report
                        .agents
                        .iter()
                        .map(|a| AgentFigure {
                            name: a.name.to_string(),
                            processing: a.processing,
                        })
                        .collect(),
                })
                .collect(),
        };
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&snapshot)?);
            return Ok(());
        }
        for host in &snapshot.hosts {
            let note = if host.reachable { "" } else { " (unreachable)" };
            outln!("{}{note}", host.name);
            for f in &host.figures {
                match &f.estimate {
                    Some(e) if f.name == "llm" => {
                        outln!("  {:<11} {}", f.name, describe(e, "token", 1.0))
                    }
                    Some(e) => outln!("  {:<11} {}", f.name, describe(e, "MiB", MIB)),
                    None => outln!("  {:<11} default (not measured yet)", f.name),
                }
            }
            for link in &host.model.links {
                let send = link.send.as_ref().map_or_else(
                    || "send not measured yet".to_owned(),
                    |e| format!("send {}", describe(e, "MiB", MIB)),
                );
                outln!("  to {:<8} rtt {:.3} ms; {send}", link.peer, link.rtt_ms);
            }
            for a in &host.agents {
                match &a.processing {
                    Some(e) => outln!("  agent {:<10} call {}", a.name, describe(e, "KiB", 1024.0)),
                    None => outln!("  agent {:<10} call not measured yet", a.name),
                }
            }
        }
        let p = &snapshot.cost_params;
        outln!(
            "decisions through {} price: export {:.3} ms + {:.1} MB/s, import {:.3} ms + {:.1} MB/s, start {:.3} ms (+{:.3} ms per agent)",
            snapshot.via,
            p.export_base_s * 1e3,
            p.export_mb_per_s,
            p.load_base_s * 1e3,
            p.load_mb_per_s,
            p.init_base_s * 1e3,
            p.init_per_agent_s * 1e3
        );
        Ok(())
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// `0.120 ms + 0.850 ms/MiB (mean 0.180 ms at 0.062 MiB, spread 0.020 ms,
/// 12 samples)`.
fn describe(e: &Estimate, unit: &str, unit_size: f64) -> String {
    format!(
        "{:.3} ms + {:.3} ms/{unit} (mean {:.3} ms at {:.3} {unit}, spread {:.3} ms, {} samples)",
        e.base_ms(),
        e.ms_per_unit * unit_size,
        e.mean_ms,
        e.mean_size / unit_size,
        e.spread_ms,
        e.samples
    )
}
