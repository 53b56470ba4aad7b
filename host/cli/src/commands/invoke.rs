//! `edgehost invoke`: call an agent wherever it runs.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use edgehost_fleet::protocol::{AgentName, Request, Response};

use super::client::ClientArgs;

/// Call an agent by name; the fleet routes to the host that runs it.
#[derive(Args)]
pub struct InvokeCommand {
    /// The agent.
    name: AgentName,
    #[command(flatten)]
    client: ClientArgs,
    /// The request body, as text.
    #[arg(long, conflicts_with = "input_file")]
    input: Option<String>,
    /// Read the request body from a file.
    #[arg(long, value_name = "PATH")]
    input_file: Option<PathBuf>,
    /// Print JSON (response as text, the host that answered, the time taken).
    #[arg(long)]
    json: bool,
}

impl InvokeCommand {
    /// Sends the request and prints the response.
    pub fn execute(self) -> Result<()> {
        let body = match (&self.input, &self.input_file) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(path)) => {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
            }
            (None, None) => Vec::new(),
        };
        let session = self.client.connect()?;
        let start = Instant::now();
        let answer = session.call(&Request::Invoke {
            name: self.name.clone(),
            body,
            caller: None,
            hops: 0,
        });
        let elapsed = start.elapsed();
        session.close();
        let (body, host) = match answer? {
            Response::Invoked { body, host, .. } => (body, host),
            other => return Err(edgehost_fleet::client::unexpected(&other).into()),
        };
        if self.json {
            let v = serde_json::json!({
                "agent": self.name,
                "host": host,
                "response": String::from_utf8_lossy(&body),
                "ms": elapsed.as_secs_f64() * 1e3,
            });
            outln!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&body)?;
        if !body.ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Stop an agent and remove it from its host.
#[derive(Args)]
pub struct ReleaseCommand {
    /// The agent.
    name: AgentName,
    #[command(flatten)]
    client: ClientArgs,
}

impl ReleaseCommand {
    /// Finds the agent's host and asks it to release the agent: the host
    /// the fleet's reports name first, then every other reachable host, so
    /// that an agent that has just moved is found before the reports catch
    /// up.
    pub fn execute(self) -> Result<()> {
        let session = self.client.connect()?;
        let views = session.fleet()?;
        let mut candidates: Vec<std::net::SocketAddr> = views
            .iter()
            .filter(|v| v.report.agents.iter().any(|a| a.name == self.name))
            .map(|v| v.report.addr)
            .collect();
        let others: Vec<std::net::SocketAddr> = views
            .iter()
            .filter(|v| v.reachable && !candidates.contains(&v.report.addr))
            .map(|v| v.report.addr)
            .collect();
        candidates.extend(others);
        let result = session.runtime.block_on(async {
            for addr in candidates {
                let Ok((connection, host)) = session.client.connect(addr).await else {
                    continue;
                };
                let answer = edgehost_fleet::client::call(
                    &connection,
                    &Request::Release {
                        name: self.name.clone(),
                    },
                )
                .await;
                connection.close(0u32.into(), b"done");
                match answer {
                    Ok(_) => return Ok(Some(host.name)),
                    Err(e) if e.kind() == edgehost_fleet::ErrorKind::NotFound => continue,
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
            }
            Ok(None)
        });
        session.close();
        let Some(host) = result? else {
            return Err(crate::exit::outcome(
                crate::exit::Code::NotFound,
                format!("no host runs an agent named {:?}", self.name),
            ));
        };
        outln!("released {} from {host}", self.name);
        Ok(())
    }
}
