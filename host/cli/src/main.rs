//! `edgehost`: run, inspect and place agents on edge servers.
//!
//! Every subcommand lives in `commands/<verb>.rs` as a `<Verb>Command` with an
//! `execute` method. Errors are printed on one line as `error: ...`; their
//! exit codes are in [`exit`] (2 for an error and for a wrong flag or
//! argument, 1 for not found, 3 for refused, 4 for unreachable).

use std::io::{IsTerminal, Write};
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
            // One line, not clap's whole usage block, with clap's "did you
            // mean" tip when it has one.
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or("error: invalid arguments");
            match rendered
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("tip:"))
            {
                Some(tip) => eprintln!("{first}; {tip} (see --help)"),
                None => eprintln!("{first} (see --help)"),
            }
            return ExitCode::from(2);
        }
    };

    tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("EDGEHOST_LOG").ok().as_deref()))
        // Colour only on a terminal: a log file gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
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

/// edgehost's own crates, which a bare level in `EDGEHOST_LOG` applies to.
const OWN_CRATES: [&str; 8] = [
    "edgehost",
    "edgehost_advisor",
    "edgehost_fleet",
    "edgehost_placement",
    "edgehost_proto",
    "edgehost_runtime",
    "edgehost_sim",
    "edgehost_telemetry",
];

/// The log filter for `EDGEHOST_LOG`: `warn` when unset or unreadable. A
/// bare level (`debug`) applies to edgehost's own crates, with everything
/// else (wasmtime, Cranelift, quinn) kept at `warn`; full directives
/// (`debug,wasmtime=info`) are taken as written.
fn log_filter(setting: Option<&str>) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    let Some(setting) = setting.map(str::trim).filter(|s| !s.is_empty()) else {
        return EnvFilter::new("warn");
    };
    let bare_level = ["trace", "debug", "info", "warn", "error", "off"]
        .contains(&setting.to_ascii_lowercase().as_str());
    let directives = if bare_level {
        let own: Vec<String> = OWN_CRATES
            .iter()
            .map(|c| format!("{c}={setting}"))
            .collect();
        format!("warn,{}", own.join(","))
    } else {
        setting.to_owned()
    };
    EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("warn"))
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn a_bare_level_is_for_edgehost_alone() {
        let f = log_filter(Some("debug")).to_string();
        assert!(f.contains("edgehost_fleet=debug"), "{f}");
        assert!(f.contains("warn"), "{f}");
        assert!(!f.contains("wasmtime"), "{f}");
        // Full directives are kept as written (the filter lists them in its
        // own order).
        let f = log_filter(Some("debug,wasmtime=info")).to_string();
        let mut parts: Vec<&str> = f.split(',').collect();
        parts.sort_unstable();
        assert_eq!(parts, ["debug", "wasmtime=info"], "{f}");
        assert_eq!(log_filter(None).to_string(), "warn");
        assert_eq!(log_filter(Some("not a filter ===")).to_string(), "warn");
    }
}
