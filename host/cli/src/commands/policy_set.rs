//! `edgehost policy set`: swap the placement policy of a running fleet,
//! on every reachable host or on none.
//!
//! The plugins must first pass the conformance check of `edgehost policy
//! check`. Then they are uploaded where missing (a host that cannot take
//! them stops the command before anything changed), and each host swaps.
//! A host that cannot run them keeps its policy and says why; every host
//! that had swapped is then sent back the plugins it replaced, and the
//! command fails.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use edgehost_fleet::protocol::{HostName, PolicyPlugins, Request, Response};
use edgehost_runtime::policy::check::{self, CheckOptions};
use edgehost_runtime::{ComponentInfo, Digest, PolicyRuntime, PolicyRuntimeBuilder};

use super::client::ClientArgs;
use super::default_cache_dir;
use crate::exit::{Code, outcome};

/// Make policy plugins the placement policy of every reachable host, from
/// each host's next decision on, or of none: the plugins must pass `policy
/// check`, and if one host cannot run them the others are rolled back.
#[derive(Args)]
pub struct SetArgs {
    /// The plugin whose heuristic to use.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["cost_model", "builtin"])]
    heuristic: Option<PathBuf>,
    /// The plugin whose cost model to use.
    #[arg(long, value_name = "FILE")]
    cost_model: Option<PathBuf>,
    /// Go back to the built-in heuristic and cost model.
    #[arg(long, conflicts_with_all = ["heuristic", "cost_model"])]
    builtin: bool,
    /// The conformance check's budget for scoring a 1,000 agents x 100
    /// servers matrix, milliseconds (as in `policy check`).
    #[arg(long, value_name = "MS", default_value_t = 50.0)]
    max_score_ms: f64,
    /// Where the conformance check caches compiled plugins.
    #[arg(long, env = "EDGEHOST_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

/// A plugin read from disk that passed the conformance check.
struct Checked {
    digest: Digest,
    bytes: Vec<u8>,
}

fn read_policy(path: &Path, runtime: &PolicyRuntime, options: &CheckOptions) -> Result<Checked> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let info = ComponentInfo::read(&bytes).with_context(|| path.display().to_string())?;
    info.expect_policy()
        .with_context(|| path.display().to_string())?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_owned());
    let report = check::run(runtime, &bytes, &name, options);
    if !report.passed() {
        let failed: Vec<String> = report
            .items
            .iter()
            .filter(|i| !i.passed)
            .map(|i| format!("{} ({})", i.name, i.detail))
            .collect();
        return Err(outcome(
            Code::Refused,
            format!(
                "{} fails the conformance check of `edgehost policy check`: {}; no host changed",
                path.display(),
                failed.join("; ")
            ),
        ));
    }
    outln!(
        "{}: passed the conformance check ({})",
        path.display(),
        info.digest
    );
    Ok(Checked {
        digest: info.digest,
        bytes,
    })
}

/// What one host answered to a swap.
struct Swapped {
    policy: String,
    generation: u64,
    previous: PolicyPlugins,
}

impl SetArgs {
    /// Checks the plugins, uploads them where missing and swaps every
    /// reachable host, or rolls back the ones that swapped.
    pub fn execute(self) -> Result<()> {
        let options = CheckOptions {
            max_score_ms: self.max_score_ms,
            ..CheckOptions::default()
        };
        let (heuristic, cost_model) = if self.builtin {
            (None, None)
        } else {
            // One runtime checks both files.
            let runtime =
                PolicyRuntimeBuilder::new(self.cache_dir.clone().unwrap_or_else(default_cache_dir))
                    .build()
                    .context("starting the policy runtime")?;
            let heuristic = self
                .heuristic
                .as_deref()
                .map(|p| read_policy(p, &runtime, &options))
                .transpose()?;
            let cost_model = match (&self.cost_model, &self.heuristic, &heuristic) {
                // The same file twice is checked once.
                (Some(c), Some(h), Some(checked)) if c == h => Some(Checked {
                    digest: checked.digest,
                    bytes: checked.bytes.clone(),
                }),
                (Some(c), ..) => Some(read_policy(c, &runtime, &options)?),
                (None, ..) => None,
            };
            (heuristic, cost_model)
        };
        let plugins = PolicyPlugins {
            heuristic: heuristic.as_ref().map(|c| c.digest),
            cost_model: cost_model.as_ref().map(|c| c.digest),
        };

        let session = self.client.connect()?;
        let hosts = session.reachable_hosts()?;

        // Upload first: a host that cannot take the plugins stops the
        // command before any host changed its policy.
        let uploads = session.on_hosts(&hosts, async |connection| {
            for c in heuristic.iter().chain(cost_model.iter()) {
                let has = Request::Has { digest: c.digest };
                if let Response::Has(false) = edgehost_fleet::client::call(connection, &has).await?
                {
                    edgehost_fleet::client::upload(connection, c.digest, &c.bytes, |_| {}).await?;
                }
            }
            Ok(())
        });
        let failed: Vec<_> = uploads.iter().filter(|(_, r)| r.is_err()).collect();
        if !failed.is_empty() {
            for (host, answer) in &uploads {
                if let Err(e) = answer {
                    outln!("{host}: upload failed: {e:#}");
                }
            }
            session.close();
            anyhow::bail!(
                "{} of {} host(s) could not take the plugins; no host changed its policy",
                failed.len(),
                hosts.len()
            );
        }

        let swaps = session.on_hosts(&hosts, async |connection| set(connection, plugins).await);
        let refused = swaps.iter().filter(|(_, r)| r.is_err()).count();
        if refused == 0 {
            session.close();
            for (host, answer) in swaps {
                if let Ok(s) = answer {
                    outln!("{host}: {} (generation {})", s.policy, s.generation);
                }
            }
            return Ok(());
        }

        // Roll back every host that swapped to the plugins it replaced.
        let to_roll_back: Vec<(HostName, std::net::SocketAddr, PolicyPlugins)> = swaps
            .iter()
            .filter_map(|(host, answer)| {
                let swapped = answer.as_ref().ok()?;
                let addr = hosts.iter().find(|(h, _)| h == host)?.1;
                Some((host.clone(), addr, swapped.previous))
            })
            .collect();
        let mut rollbacks = Vec::new();
        for (host, addr, previous) in &to_roll_back {
            let answer = session
                .on_hosts(&[(host.clone(), *addr)], async |connection| {
                    set(connection, *previous).await
                })
                .pop()
                .map(|(_, a)| a)
                .unwrap_or_else(|| Err(anyhow::anyhow!("no answer")));
            rollbacks.push((host.clone(), answer));
        }
        session.close();
        for (host, answer) in &swaps {
            if let Err(e) = answer {
                outln!("{host}: refused: {e:#}");
            }
        }
        let mut stuck = 0;
        for (host, answer) in &rollbacks {
            match answer {
                Ok(s) => outln!(
                    "{host}: rolled back to {} (generation {})",
                    s.policy,
                    s.generation
                ),
                Err(e) => {
                    stuck += 1;
                    outln!("{host}: rollback failed, it runs the new policy: {e:#}");
                }
            }
        }
        let mut message = format!("{refused} of {} host(s) refused the policy; ", hosts.len());
        if stuck == 0 {
            message.push_str("every host keeps its previous one");
        } else {
            message.push_str(&format!(
                "{stuck} host(s) could not be rolled back and run the new one"
            ));
        }
        Err(outcome(Code::Refused, message))
    }
}

/// Sends `SetPolicy` for `plugins` on `connection`.
async fn set(connection: &quinn::Connection, plugins: PolicyPlugins) -> Result<Swapped> {
    let request = Request::SetPolicy {
        heuristic: plugins.heuristic,
        cost_model: plugins.cost_model,
    };
    match edgehost_fleet::client::call(connection, &request).await? {
        Response::PolicySet {
            policy,
            generation,
            previous,
        } => Ok(Swapped {
            policy,
            generation,
            previous,
        }),
        other => Err(edgehost_fleet::client::unexpected(&other).into()),
    }
}
