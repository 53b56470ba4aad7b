//! What every command that talks to the fleet shares: which certificate and
//! which hosts, and a connection to the first host that answers.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use edgehost_fleet::config::FromFile;
use edgehost_fleet::protocol::{HostName, PeerView, Request, Response};
use edgehost_fleet::{Client, ClientConfig, Credentials};

/// How to reach the fleet.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// Client configuration (ca, cert, key, hosts), as TOML.
    #[arg(
        long,
        env = "EDGEHOST_CLIENT_CONFIG",
        value_name = "PATH",
        global = true
    )]
    client_config: Option<PathBuf>,
    /// A host to talk to (`host:port`), instead of the configuration's list.
    #[arg(long = "via", value_name = "ADDR", global = true)]
    via: Option<String>,
}

/// A client connected to one host of the fleet.
pub struct Session {
    /// The client endpoint.
    pub client: Client,
    /// The connection to the host that answered.
    pub connection: quinn::Connection,
    /// That host's name.
    pub host: String,
    /// The async runtime the session lives in.
    pub runtime: tokio::runtime::Runtime,
}

impl ClientArgs {
    /// Whether a client configuration was given (flag or environment).
    pub fn is_configured(&self) -> bool {
        self.client_config.is_some()
    }

    /// Connects to the first host that answers.
    pub fn connect(&self) -> Result<Session> {
        let Some(path) = &self.client_config else {
            bail!(
                "no client configuration: give --client-config PATH or set EDGEHOST_CLIENT_CONFIG"
            );
        };
        let config = ClientConfig::from_file(path)?;
        let creds = Credentials::load(&config.ca, &config.cert, &config.key)?;
        let hosts = match &self.via {
            Some(addr) => vec![addr.clone()],
            None => config.hosts.clone(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let (client, connection, host) = runtime.block_on(async {
            let client = Client::new(&creds)?;
            let mut last_error = None;
            for host in &hosts {
                match resolve(host).await {
                    Ok(addr) => match client.connect(addr).await {
                        Ok((connection, identity)) => {
                            return Ok((client, connection, identity.name));
                        }
                        Err(e) => last_error = Some(anyhow!(e)),
                    },
                    Err(e) => last_error = Some(e),
                }
            }
            Err(last_error.unwrap_or_else(|| anyhow!("no hosts configured")))
        })?;
        Ok(Session {
            client,
            connection,
            host: host.to_string(),
            runtime,
        })
    }
}

/// Resolves `host:port` to a socket address.
pub async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .ok_or_else(|| anyhow!("{addr} resolves to no address"))
}

impl Session {
    /// Sends one request to the connected host.
    pub fn call(&self, request: &Request) -> Result<Response> {
        Ok(self
            .runtime
            .block_on(edgehost_fleet::client::call(&self.connection, request))?)
    }

    /// The fleet as the connected host sees it (its own view first).
    pub fn fleet(&self) -> Result<Vec<PeerView>> {
        match self.call(&Request::Fleet)? {
            Response::Fleet(views) => Ok(views),
            other => Err(edgehost_fleet::client::unexpected(&other).into()),
        }
    }

    /// Runs `step` on a connection of its own to every host the connected
    /// host can reach, one host after another: each host's name with what
    /// `step` answered there.
    pub fn on_every_reachable_host<T>(
        &self,
        step: impl AsyncFn(&quinn::Connection) -> Result<T>,
    ) -> Result<Vec<(HostName, Result<T>)>> {
        let hosts = self.reachable_hosts()?;
        Ok(self.on_hosts(&hosts, step))
    }

    /// The hosts the connected host can reach, itself first.
    pub fn reachable_hosts(&self) -> Result<Vec<(HostName, SocketAddr)>> {
        Ok(self
            .fleet()?
            .into_iter()
            .filter(|v| v.reachable)
            .map(|v| (v.report.name, v.report.addr))
            .collect())
    }

    /// Runs `step` on a connection of its own to each of `hosts`, one
    /// after another: each host's name with what `step` answered there.
    pub fn on_hosts<T>(
        &self,
        hosts: &[(HostName, SocketAddr)],
        step: impl AsyncFn(&quinn::Connection) -> Result<T>,
    ) -> Vec<(HostName, Result<T>)> {
        self.runtime.block_on(async {
            let mut answers = Vec::new();
            for (name, addr) in hosts {
                let answer = async {
                    let (connection, _) = self.client.connect(*addr).await?;
                    step(&connection).await
                }
                .await;
                answers.push((name.clone(), answer));
            }
            answers
        })
    }

    /// Closes the connection cleanly.
    pub fn close(self) {
        self.runtime.block_on(self.client.close());
    }
}

/// Prints one line per host (`NAME: what it said` or `NAME: failed: why`);
/// when any host failed, the error says how many, with `consequence`.
pub fn print_per_host(answers: Vec<(HostName, Result<String>)>, consequence: &str) -> Result<()> {
    let hosts = answers.len();
    let mut failures = 0;
    for (host, answer) in answers {
        match answer {
            Ok(line) => outln!("{host}: {line}"),
            Err(e) => {
                failures += 1;
                outln!("{host}: failed: {e:#}");
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {hosts} host(s) {consequence}");
    }
    Ok(())
}
