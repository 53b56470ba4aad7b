//! `edgehost fleet`: the fleet CA and the certificates it issues.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use edgehost_fleet::identity::{Role, Validity, init_fleet, issue_for};

/// Create a fleet CA or issue certificates from it.
#[derive(Args)]
pub struct FleetCommand {
    #[command(subcommand)]
    action: FleetAction,
}

#[derive(Subcommand)]
enum FleetAction {
    /// Create a new fleet CA (ca.pem, ca.key) in DIR. Keep ca.key safe: it
    /// admits hosts and clients to the fleet.
    Init {
        /// Directory for the CA.
        dir: PathBuf,
        /// A name for the fleet, written into the CA certificate.
        #[arg(long, default_value = "edgehost")]
        name: String,
    },
    /// Issue a certificate for a host, an operator or a viewer, signed by the fleet CA.
    Issue {
        /// The host's or client's name (a-z, 0-9, '-').
        name: String,
        /// The directory holding the fleet CA.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// What the certificate is for.
        #[arg(long, value_enum, default_value_t = RoleArg::Host)]
        role: RoleArg,
        /// Where to write NAME.pem and NAME.key (default: the CA directory).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Days the certificate is valid (default: 90 for a host, 30 for
        /// an operator or a viewer). An expired certificate fails every
        /// handshake.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: Option<u32>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    /// An edge server running `edgehost serve`.
    Host,
    /// A tool that deploys, invokes, migrates and releases agents.
    #[value(alias = "client")]
    Operator,
    /// A read-only tool: ps, events, status, dashboards.
    Viewer,
}

impl FleetCommand {
    /// Runs the action.
    pub fn execute(self) -> Result<()> {
        match self.action {
            FleetAction::Init { dir, name } => {
                init_fleet(&dir, &name).context("creating the fleet CA")?;
                outln!("fleet CA created in {}", dir.display());
            }
            FleetAction::Issue {
                name,
                ca_dir,
                role,
                out,
                days,
            } => {
                let role = match role {
                    RoleArg::Host => Role::Host,
                    RoleArg::Operator => Role::Operator,
                    RoleArg::Viewer => Role::Viewer,
                };
                let out = out.unwrap_or_else(|| ca_dir.clone());
                let validity = days.map_or(Validity::default_for(role), Validity::days);
                let (cert, key) = issue_for(&ca_dir, &out, &name, role, validity)
                    .context("issuing the certificate")?;
                outln!(
                    "{role} certificate for {name}: {} and {}",
                    cert.display(),
                    key.display()
                );
            }
        }
        Ok(())
    }
}
