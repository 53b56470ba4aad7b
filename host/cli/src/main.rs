//! `edgehost`: run, inspect and place agents on edge servers.
//!
//! Every subcommand lives in `commands/<verb>.rs` as a `<Verb>Command` with an
//! `execute` method. Errors are printed on one line as `error: ...` and map
//! to exit code 1; a wrong flag or argument exits with 2.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

mod commands;

/// Places and moves LLM-based AI agents across a fleet of edge servers.
///
/// Agents are WebAssembly components (the `edgehost:agent/agent@0.1.0`
/// world); only their state blob moves between hosts.
#[derive(Parser)]
#[command(name = "edgehost", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || matches!(
                    e.kind(),
                    ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                )
            {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line, not clap's whole usage block.
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or("error: invalid arguments");
            eprintln!("{first} (see --help)");
            return ExitCode::from(2);
        }
    };

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGEHOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    match cli.command.execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("{e:#}");
            // Errors from wasmtime or a guest may span lines; keep it to one.
            let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
            let _ = std::io::stdout().flush();
            eprintln!("error: {one_line}");
            ExitCode::FAILURE
        }
    }
}
