//! `edgehost inspect`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use edgehost_runtime::{ComponentInfo, Kind};

/// Show what a component is.
#[derive(Args)]
pub struct InspectCommand {
    /// The component file (.wasm).
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
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
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&info)?);
            return Ok(());
        }
        let kind = match info.kind {
            Kind::Agent => "agent",
            Kind::Policy => "policy",
            Kind::Neither => "neither",
        };
        outln!("kind:    {kind}");
        outln!("world:   {}", info.world.as_deref().unwrap_or("-"));
        outln!("version: {}", info.version.as_deref().unwrap_or("-"));
        outln!("size:    {} bytes", info.size);
        outln!("digest:  {}", info.digest);
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
