//! `edgehost run`.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

/// Run an agent locally, once.
///
/// Steps: instantiate, init (with --config), import-state (with --state-in),
/// handle one request (--input, --input-file, or the body piped on stdin),
/// export-state (with --state-out). The response is printed on stdout.
#[derive(Args)]
pub struct RunCommand {
    /// The agent component (.wasm).
    file: PathBuf,
    /// The agent's name (what it is called in logs).
    #[arg(long, default_value = "agent")]
    name: String,
    /// A configuration entry for init, as KEY=VALUE; repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// The request body, as text (without it or --input-file, the body is
    /// read from stdin when stdin is not a terminal).
    #[arg(long, conflicts_with = "input_file")]
    input: Option<String>,
    /// Read the request body from a file.
    #[arg(long, value_name = "PATH")]
    input_file: Option<PathBuf>,
    /// Import this state blob before handling the request.
    #[arg(long, value_name = "PATH")]
    state_in: Option<PathBuf>,
    /// Export the agent's state to this file after handling the request.
    #[arg(long, value_name = "PATH")]
    state_out: Option<PathBuf>,
    /// Deadline for each call into the agent, milliseconds.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Where compiled artifacts are cached.
    #[arg(long, env = "EDGEHOST_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

impl RunCommand {
    /// Runs the agent and prints its response.
    pub fn execute(self) -> Result<()> {
        // Read every input first: a missing file fails before any work.
        let component_bytes = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        let input = match (&self.input, &self.input_file) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(path)) => read(path)?,
            (None, None) => {
                let mut stdin = std::io::stdin().lock();
                if stdin.is_terminal() {
                    bail!(
                        "no request to handle: give --input TEXT or --input-file PATH, or pipe the body on stdin"
                    );
                }
                let mut body = Vec::new();
                stdin.read_to_end(&mut body).context("reading stdin")?;
                body
            }
        };
        let state_in = self.state_in.as_deref().map(read).transpose()?;

        let mut agent = super::start_locally(
            self.cache_dir.clone(),
            &self.file,
            &component_bytes,
            &self.name,
        )?;
        agent.set_timeout(Duration::from_millis(self.timeout_ms));
        agent.init(&self.config).context("init")?;
        if let Some(state) = &state_in {
            agent.import_state(state).context("import-state")?;
        }
        let response = agent.handle(&input).context("handle")?;
        let mut out = std::io::stdout().lock();
        out.write_all(&response)?;
        if !response.ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
        out.flush()?;
        drop(out);
        if let Some(path) = &self.state_out {
            let state = agent.export_state().context("export-state")?;
            write_atomically(path, &state)?;
        }
        Ok(())
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes `bytes` to a temporary file next to `path`, then renames it into
/// place, so an interrupted run never leaves a truncated state file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(file_name) = path.file_name() else {
        bail!("{}: not a file path", path.display());
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}
