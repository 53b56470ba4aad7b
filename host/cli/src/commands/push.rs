//! `edgehost push`: check a component, let AntLLM choose a host, upload it
//! (unless the host has it), deploy it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use edgehost_fleet::protocol::{AgentName, HostName, Placement, Request, Response};
use edgehost_runtime::{ComponentInfo, Digest};
use serde::Serialize;

use super::client::ClientArgs;
use crate::exit::{Code, outcome};

/// Deploy an agent component to the fleet.
#[derive(Args)]
pub struct PushCommand {
    /// The agent component (.wasm).
    file: PathBuf,
    /// The agent's name in the fleet (default: the file's name).
    #[arg(long)]
    name: Option<AgentName>,
    /// Deploy to this host instead of letting AntLLM choose.
    #[arg(long, value_name = "HOST", conflicts_with = "auto")]
    to: Option<HostName>,
    /// Let AntLLM choose the host (the default).
    #[arg(long)]
    auto: bool,
    /// Let a baseline choose instead of AntLLM, to compare them on a live
    /// fleet: `local-search`, `greedy`, `polling`, `random` or `optimal`.
    #[arg(long, value_name = "NAME", conflicts_with = "to")]
    algorithm: Option<String>,
    /// Where the agent's user is: a host's name, or a site's (the host at
    /// that site). AntLLM chooses among the hosts near it, and ALM follows
    /// the user from there.
    #[arg(long, value_name = "HOST|SITE")]
    user: Option<String>,
    /// A configuration entry for the agent's init, as KEY=VALUE; repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = super::run::parse_key_value)]
    config: Vec<(String, String)>,
    /// How calls are made durable: `durable` answers a call that changed
    /// the state once the change is on disk; `snapshot` answers at once and
    /// writes the state once per heartbeat, so a host killed between two
    /// snapshots loses the calls answered since.
    #[arg(long, value_enum, default_value = "durable")]
    durability: Durability,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
    /// Where this machine caches compiled artifacts (for the local check).
    #[arg(long, env = "EDGEHOST_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Durability {
    Durable,
    Snapshot,
}

#[derive(Serialize)]
struct PushReport {
    agent: String,
    host: String,
    digest: Digest,
    uploaded_bytes: u64,
    component_bytes: u64,
    load_ms: f64,
    cache_hit: bool,
    user: Option<String>,
    placement: Option<Placement>,
    elapsed_ms: f64,
}

fn default_name(file: &std::path::Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    stem.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_owned()
}

impl PushCommand {
    /// The agent's configuration, with the host's durability key when the
    /// agent asks for snapshots.
    fn deploy_config(&self) -> Vec<(String, String)> {
        let mut config = self.config.clone();
        if self.durability == Durability::Snapshot {
            config.push((
                edgehost_fleet::durable::DURABILITY_KEY.to_owned(),
                "snapshot".to_owned(),
            ));
        }
        config
    }

    /// Checks, places, uploads and deploys.
    pub fn execute(self) -> Result<()> {
        let start = Instant::now();
        let bytes = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        let name = match self.name.clone() {
            Some(name) => name,
            None => AgentName::new(default_name(&self.file))
                .map_err(|e| anyhow!("{e} (from the file name; give --name)"))?,
        };

        // Check locally that this is an agent. Placement by AntLLM also
        // needs what it declares, which means compiling it here once (the
        // artifact is cached); a push to a named host only needs the check,
        // and the host compiles.
        let describe = || -> Result<_> {
            let agent = super::start_locally(self.cache_dir.clone(), &self.file, &bytes, &name)?;
            Ok(agent.descriptor().clone())
        };
        let info = ComponentInfo::read(&bytes)
            .and_then(|info| info.expect_agent().map(|()| info))
            .with_context(|| self.file.display().to_string())?;
        let digest = info.digest;

        let session = self.client.connect()?;
        let user = match &self.user {
            Some(user) => Some(session.user_host(user)?),
            None => None,
        };
        let (target_name, target_addr, placement) = match &self.to {
            Some(host) => {
                let views = session.fleet()?;
                let view = views
                    .iter()
                    .find(|v| &v.report.name == host)
                    .ok_or_else(|| {
                        outcome(
                            Code::NotFound,
                            format!("no host named {host:?} in the fleet"),
                        )
                    })?;
                if !view.reachable {
                    return Err(outcome(
                        Code::Unreachable,
                        format!("host {host:?} is unreachable"),
                    ));
                }
                if let Some(arch) = &info.requires_arch
                    && view.report.status.arch != *arch
                {
                    return Err(outcome(
                        Code::Refused,
                        format!(
                            "the agent requires {arch}; host {host:?} is {}",
                            view.report.status.arch
                        ),
                    ));
                }
                (host.clone(), view.report.addr, None)
            }
            None => match session.call(&Request::Place {
                descriptor: describe()?,
                component_bytes: bytes.len() as u64,
                user: user.clone(),
                requires_arch: info.requires_arch.clone(),
                algorithm: self.algorithm.clone(),
            })? {
                Response::Placement(p) => (p.host.clone(), p.addr, Some(p)),
                other => return Err(edgehost_fleet::client::unexpected(&other).into()),
            },
        };

        let progress = if std::io::stderr().is_terminal() && !self.json {
            indicatif::ProgressBar::new(bytes.len() as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        let outcome = session.runtime.block_on(async {
            let connection = if target_name == session.host {
                session.connection.clone()
            } else {
                let addr = target_addr;
                session.client.connect(addr).await?.0
            };
            let uploaded =
                match edgehost_fleet::client::call(&connection, &Request::Has { digest }).await? {
                    Response::Has(true) => 0,
                    Response::Has(false) => {
                        edgehost_fleet::client::upload(&connection, digest, &bytes, |sent| {
                            progress.set_position(sent)
                        })
                        .await?
                    }
                    other => return Err(edgehost_fleet::client::unexpected(&other).into()),
                };
            progress.finish_and_clear();
            let deployed = edgehost_fleet::client::call(
                &connection,
                &Request::Deploy {
                    name: name.clone(),
                    digest,
                    config: self.deploy_config(),
                },
            )
            .await?;
            // ALM follows the user from where they are now.
            if let Some(user) = &user {
                edgehost_fleet::client::call(
                    &connection,
                    &Request::Attach {
                        agent: name.clone(),
                        host: user.clone(),
                    },
                )
                .await?;
            }
            Ok::<_, anyhow::Error>((uploaded, deployed))
        });
        session.close();
        let (uploaded, deployed) = outcome?;
        let Response::Deployed {
            load_ms, cache_hit, ..
        } = deployed
        else {
            return Err(edgehost_fleet::client::unexpected(&deployed).into());
        };
        let report = PushReport {
            agent: name.to_string(),
            host: target_name.to_string(),
            digest,
            uploaded_bytes: uploaded,
            component_bytes: bytes.len() as u64,
            load_ms,
            cache_hit,
            user: user.as_ref().map(ToString::to_string),
            placement,
            elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
        };
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        outln!(
            "pushed {} to {} ({})",
            report.agent,
            report.host,
            report.digest
        );
        match &report.placement {
            Some(p) => {
                outln!(
                    "  why: {} over {} host(s) with the {} policy chose {}: predicted latency {:.3} s (transmit {:.3}, migration {:.3}, initiation {:.3}, processing {:.3}), cost {:.3} (cpu {:.3}, storage {:.3}, comm {:.3}), objective {:.4}, {:.2}% above the lower bound {:.4}",
                    p.algorithm,
                    p.candidates.len(),
                    p.policy,
                    p.host,
                    p.latency_s.total_s(),
                    p.latency_s.transmit_s,
                    p.latency_s.migration_s,
                    p.latency_s.initiation_s,
                    p.latency_s.processing_s,
                    p.cost.total(),
                    p.cost.cpu,
                    p.cost.storage,
                    p.cost.communication,
                    p.objective,
                    p.gap * 100.0,
                    p.lower_bound
                );
                for f in &p.fallbacks {
                    outln!("  note: {f}");
                }
            }
            None => outln!("  why: chosen by the operator (--to)"),
        }
        if report.uploaded_bytes == 0 {
            outln!("  upload: none, the host already had the component");
        } else {
            outln!("  upload: {} bytes", report.uploaded_bytes);
        }
        outln!(
            "  {} in {:.1} ms on the host",
            if report.cache_hit {
                "loaded from the artifact cache"
            } else {
                "compiled"
            },
            report.load_ms
        );
        Ok(())
    }
}
