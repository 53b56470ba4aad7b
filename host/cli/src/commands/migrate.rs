//! `edgehost migrate`: move an agent to another host by shipping its state.

use anyhow::Result;
use clap::Args;
use edgehost_fleet::protocol::{AgentName, HostName, Request, Response};

use super::client::ClientArgs;

/// Move an agent to another host. Only its state blob travels; the target
/// compiles (or loads from its cache) the component before the agent pauses.
#[derive(Args)]
pub struct MigrateCommand {
    /// The agent.
    name: AgentName,
    /// The target host.
    #[arg(long, value_name = "HOST")]
    to: HostName,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

impl MigrateCommand {
    /// Asks the agent's owner to hand it off and prints what it measured.
    pub fn execute(self) -> Result<()> {
        let session = self.client.connect()?;
        // Any host will do: one that does not run the agent hands the
        // request to the one that does.
        let request = Request::Migrate {
            name: self.name.clone(),
            to: self.to.clone(),
        };
        let result = session.call(&request);
        session.close();
        let report = match result? {
            Response::Migrated(report) => report,
            other => return Err(edgehost_fleet::client::unexpected(&other).into()),
        };
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        outln!(
            "migrated {} from {} to {} (epoch {})",
            report.agent,
            report.from,
            report.to,
            report.epoch
        );
        outln!(
            "  {:<12} {:>12} {:>12}",
            "T_mig part",
            "measured",
            "predicted"
        );
        for ((part, measured), (_, predicted)) in report
            .measured_ms
            .parts()
            .into_iter()
            .zip(report.predicted_ms.parts())
        {
            let default = if report.predicted_defaults.iter().any(|d| d == part) {
                " (default: not measured yet)"
            } else {
                ""
            };
            outln!("  {part:<12} {measured:>9.3} ms {predicted:>9.3} ms{default}");
        }
        outln!(
            "  {:<12} {:>9.3} ms {:>9.3} ms",
            "total",
            report.measured_ms.total_ms(),
            report.predicted_ms.total_ms()
        );
        outln!(
            "  downtime {:.3} ms ({} call(s) held); state {} bytes, {} bytes on the wire ({} while held), component {}",
            report.downtime_ms,
            report.held_calls,
            report.state_bytes,
            report.wire_bytes,
            report.delta_bytes,
            if report.component_bytes_sent == 0 {
                "already on the target".to_owned()
            } else {
                format!("uploaded ({} bytes)", report.component_bytes_sent)
            }
        );
        outln!(
            "  the state moved {} in {:.1} ms; the whole handoff took {:.1} ms",
            if report.stop_and_copy {
                "once, with the agent held (it crosses within a round trip)"
            } else {
                "as a pre-copy, then a delta while held"
            },
            report.move_ms,
            report.handoff_ms
        );
        outln!(
            "  before the agent was held, the target {} in {:.1} ms",
            if report.target_cache_hit {
                "loaded the compiled component from its cache"
            } else {
                "compiled the component"
            },
            report.target_compile_ms
        );
        Ok(())
    }
}
