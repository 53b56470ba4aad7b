//! `edgehost policy set`: swap the placement policy of a running fleet.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use edgehost_fleet::protocol::{Request, Response};
use edgehost_runtime::{ComponentInfo, Digest};

use super::client::{ClientArgs, print_per_host};

/// Make policy plugins the placement policy of every reachable host, from
/// each host's next decision on.
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
    #[command(flatten)]
    client: ClientArgs,
}

fn read_policy(path: &Path) -> Result<(Digest, Vec<u8>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let info = ComponentInfo::read(&bytes).with_context(|| path.display().to_string())?;
    info.expect_policy()
        .with_context(|| path.display().to_string())?;
    Ok((info.digest, bytes))
}

impl SetArgs {
    /// Uploads the plugins where missing and swaps every reachable host.
    pub fn execute(self) -> Result<()> {
        let heuristic = self.heuristic.as_deref().map(read_policy).transpose()?;
        let cost_model = self.cost_model.as_deref().map(read_policy).transpose()?;
        let session = self.client.connect()?;
        let answers = session.on_every_reachable_host(async |connection| {
            for (digest, bytes) in heuristic.iter().chain(cost_model.iter()) {
                let has = Request::Has { digest: *digest };
                if let Response::Has(false) = edgehost_fleet::client::call(connection, &has).await?
                {
                    edgehost_fleet::client::upload(connection, *digest, bytes, |_| {}).await?;
                }
            }
            let request = Request::SetPolicy {
                heuristic: heuristic.as_ref().map(|(d, _)| *d),
                cost_model: cost_model.as_ref().map(|(d, _)| *d),
            };
            match edgehost_fleet::client::call(connection, &request).await? {
                Response::PolicySet { policy, generation } => {
                    Ok(format!("{policy} (generation {generation})"))
                }
                other => Err(edgehost_fleet::client::unexpected(&other).into()),
            }
        });
        session.close();
        print_per_host(answers?, "kept their previous policy")
    }
}
