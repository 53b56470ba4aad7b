//! `edgehost fleet`: the fleet CA and the certificates it issues.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use edgehost_fleet::HostConfig;
use edgehost_fleet::config::FromFile;
use edgehost_fleet::identity::{
    Role, Validity, init_fleet, issue_for, read_identity, reissue_into,
};
use edgehost_fleet::protocol::{Request, Response};
use edgehost_fleet::revocation::{RevocationList, revoke};

use super::client::{ClientArgs, print_per_host};

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
    /// Its serial is recorded in DIR/issued.txt, so `fleet revoke` can find it.
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
    /// Revoke every certificate issued to NAME: add them to the fleet's
    /// revocation list (DIR/crl.pem, signed by the CA) and send the list to
    /// every reachable host, which refuses them from then on and passes the
    /// list to its peers.
    Revoke {
        /// The host's or client's name.
        name: String,
        /// The directory holding the fleet CA.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Renew a host's certificate and key in place: write a fresh pair
    /// over the files its configuration names. The running host notices
    /// the change at its next heartbeat and uses the new certificate for
    /// new connections, without a restart; its agents keep running.
    Rotate {
        /// The host's configuration (host.toml): which files to replace.
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
        /// The directory holding the fleet CA.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// Days the new certificate is valid (default: 90).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: Option<u32>,
    },
}

/// Days a host certificate is valid by default ([`Validity::default_for`]).
const HOST_DAYS: u32 = 90;

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
            FleetAction::Revoke {
                name,
                ca_dir,
                client,
            } => {
                let list = revoke(&ca_dir, &name).context("revoking")?;
                outln!(
                    "revocation list #{} ({} certificate(s)) written to {}",
                    list.number(),
                    list.len(),
                    ca_dir
                        .join(edgehost_fleet::revocation::CA_LIST_FILE)
                        .display()
                );
                if client.is_configured() {
                    distribute(&client, &list)?;
                } else {
                    outln!(
                        "not sent to any host: give --client-config PATH (or set EDGEHOST_CLIENT_CONFIG) to send it"
                    );
                }
            }
            FleetAction::Rotate {
                config,
                ca_dir,
                days,
            } => {
                let host = HostConfig::from_file(&config)?;
                let identity = read_identity(&host.cert)?;
                if identity.role != Role::Host {
                    bail!(
                        "{} holds a {} certificate, not a host's",
                        host.cert.display(),
                        identity.role
                    );
                }
                if let Some(configured) = &host.name
                    && configured != &identity.name
                {
                    bail!(
                        "{} names host {configured:?} but its certificate was issued to {:?}",
                        config.display(),
                        identity.name
                    );
                }
                let validity = Validity::days(days.unwrap_or(HOST_DAYS));
                let issued = reissue_into(
                    &ca_dir,
                    &identity.name,
                    Role::Host,
                    validity,
                    &host.cert,
                    &host.key,
                )
                .context("issuing the new certificate")?;
                let days_valid = days.unwrap_or(HOST_DAYS);
                outln!(
                    "host {}: new certificate (serial {}) valid for {days_valid} days written to {} and {}; the running host takes it up at its next heartbeat",
                    identity.name,
                    issued
                        .serial
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>(),
                    host.cert.display(),
                    host.key.display()
                );
            }
        }
        Ok(())
    }
}

/// Sends `list` to every host the connected host can reach, itself first.
fn distribute(client: &ClientArgs, list: &RevocationList) -> Result<()> {
    let session = client.connect()?;
    let answers = session.on_every_reachable_host(async |connection| {
        let request = Request::Revocations {
            list: list.der().to_vec(),
        };
        match edgehost_fleet::client::call(connection, &request).await? {
            Response::Revocations { number } if number >= list.number() => {
                Ok(format!("holds revocation list #{number}"))
            }
            Response::Revocations { number } => Err(anyhow!(
                "still holds revocation list #{number}, older than #{}",
                list.number()
            )),
            other => Err(edgehost_fleet::client::unexpected(&other).into()),
        }
    });
    session.close();
    print_per_host(
        answers?,
        "did not take the list; their peers pass it on when they reach them",
    )
}
