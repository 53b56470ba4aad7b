//! `edgehost`: run, inspect and place agents on edge servers.
//!
//! Every subcommand lives in `commands/<verb>.rs` as a `<Verb>Command` with an
//! `execute` method. Errors are printed on one line as `error: ...`; their
//! exit codes are in [`exit`] (2 for an error and for a wrong flag or
//! argument, 1 for not found, 3 for refused, 4 for unreachable).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// `println!` for command output. A reader that goes away (`edgehost ps |
/// head`) ends the command quietly, as it would a C tool, instead of the
/// panic `println!` gives on a broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            crate::stdout_failed(e);
        }
    }};
}

mod commands;
mod exit;

/// Writing to stdout failed: exit at once, quietly when the reader left.
fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        // 128 + SIGPIPE: what a shell reports for a tool stopped by a closed pipe.
        std::process::exit(141);
    }
    eprintln!("error: writing to stdout: {e}");
    std::process::exit(exit::Code::Error as i32);
}

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
            ExitCode::from(exit::code_of(&e) as u8)
        }
    }
}
