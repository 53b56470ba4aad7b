//! `edgehost inspect`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use edgehost_runtime::{ComponentInfo, Descriptor, Kind};
use serde::Serialize;

/// Show what a component is: its world and contract version, and for an
/// agent what it declares about itself (its kind, version, demand and
/// dependencies, from its `describe`).
#[derive(Args)]
pub struct InspectCommand {
    /// The component file (.wasm).
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Where compiled artifacts are cached (an agent is instantiated to ask
    /// for its declaration).
    #[arg(long, env = "EDGEHOST_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

/// What `inspect --json` prints: the component, and an agent's own
/// declaration.
#[derive(Serialize)]
struct Inspected<'a> {
    #[serde(flatten)]
    info: &'a ComponentInfo,
    /// The agent's `describe`: `null` for a policy.
    declaration: Option<Descriptor>,
    /// Why the declaration could not be read, when it could not.
    declaration_error: Option<String>,
}

impl InspectCommand {
    /// Reads the file and prints its description. A file that is not an
    /// edgehost agent or policy is an error (exit code 1).
    pub fn execute(self) -> Result<()> {
        let bytes = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        let info = ComponentInfo::read(&bytes).with_context(|| self.file.display().to_string())?;
        if info.kind == Kind::Neither {
            bail!(
                "{}: a component of another world, neither an edgehost agent nor a policy (exports: {})",
                self.file.display(),
                if info.exports.is_empty() {
                    "none".to_owned()
                } else {
                    info.exports.join(", ")
                }
            );
        }
        // An agent is asked what it is; one that cannot say (it fails to
        // compile, or its `describe` traps) is still inspected.
        let (declaration, declaration_error) = if info.kind == Kind::Agent {
            match super::start_locally(self.cache_dir.clone(), &self.file, &bytes, "inspect") {
                Ok(agent) => (Some(agent.descriptor().clone()), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            }
        } else {
            (None, None)
        };
        if self.json {
            let out = Inspected {
                info: &info,
                declaration,
                declaration_error,
            };
            outln!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        let kind = match info.kind {
            Kind::Agent => "agent",
            Kind::Policy => "policy plugin",
            Kind::Neither => "neither",
        };
        outln!(
            "component:         {kind} (world {}, contract version {})",
            info.world.as_deref().unwrap_or("-"),
            info.version.as_deref().unwrap_or("-")
        );
        outln!("size:              {} bytes", info.size);
        outln!("digest:            {}", info.digest);
        outln!(
            "runs on:           {}",
            info.requires_arch
                .as_deref()
                .map_or("any architecture".to_owned(), |a| format!("{a} only"))
        );
        if let Some(d) = &declaration {
            outln!("agent kind:        {}", d.kind);
            outln!("agent version:     {}", d.version);
            outln!(
                "demand:            {} MiB memory, {} millicores CPU, {} MiB storage, {} Mbit/s",
                d.demand.memory_mib,
                d.demand.cpu_millicores,
                d.demand.storage_mib,
                d.demand.bandwidth_mbps
            );
            outln!(
                "dependencies:      {}",
                if d.dependencies.is_empty() {
                    "none".to_owned()
                } else {
                    d.dependencies.join(", ")
                }
            );
        }
        if let Some(e) = &declaration_error {
            outln!("declaration:       unavailable: {e}");
        }
        outln!("exports:");
        for e in &info.exports {
            outln!("  {e}");
        }
        outln!("imports:");
        for i in &info.imports {
            outln!("  {i}");
        }
        Ok(())
    }
}
