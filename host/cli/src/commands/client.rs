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

    /// The host a user given as `HOST` or `SITE` is attached to: the host
    /// of that name, else the host at that site (`site` in its labels);
    /// of several at one site, the first reachable one by name.
    pub fn user_host(&self, user: &str) -> Result<HostName> {
        user_host(&self.fleet()?, user)
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

/// [`Session::user_host`] over the fleet `views`.
pub fn user_host(views: &[PeerView], user: &str) -> Result<HostName> {
    if let Some(v) = views.iter().find(|v| v.report.name.as_str() == user) {
        return Ok(v.report.name.clone());
    }
    let mut at_site: Vec<&PeerView> = views.iter().filter(|v| v.report.site == user).collect();
    at_site.sort_by(|a, b| {
        b.reachable
            .cmp(&a.reachable)
            .then_with(|| a.report.name.cmp(&b.report.name))
    });
    match at_site.first() {
        Some(v) => Ok(v.report.name.clone()),
        None => {
            let mut sites: Vec<&str> = views.iter().map(|v| v.report.site.as_str()).collect();
            sites.sort_unstable();
            sites.dedup();
            Err(crate::exit::outcome(
                crate::exit::Code::NotFound,
                format!(
                    "no host or site named {user:?} in the fleet (sites: {})",
                    sites.join(", ")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgehost_fleet::protocol::{HostModel, HostReport, Location, PolicyPlugins, ServerStatus};

    fn view(name: &str, site: &str, reachable: bool) -> PeerView {
        PeerView {
            report: HostReport {
                name: HostName::new(name).expect("a host name"),
                addr: "127.0.0.1:4433".parse().expect("an address"),
                site: site.into(),
                location: Location { lat: 0.0, lon: 0.0 },
                bandwidth_mbps: 20.0,
                max_agents: 10,
                status: ServerStatus {
                    arch: "x86_64".into(),
                    os: "linux".into(),
                    cpu_features: Vec::new(),
                    core_gcps: 2.0,
                    cpu_cores: 2,
                    cpu_usage_percent: 0.0,
                    process_cpu_percent: 0.0,
                    process_cpu_recent_percent: 0.0,
                    load_1m: 0.0,
                    memory_total_bytes: 1 << 31,
                    memory_free_bytes: 1 << 30,
                    disk_total_bytes: 1 << 34,
                    disk_free_bytes: 1 << 33,
                    net_rx_bytes_per_sec: 0.0,
                    net_tx_bytes_per_sec: 0.0,
                    sample_ms: 1000,
                },
                agents: Vec::new(),
                compiling: Vec::new(),
                uptime_s: 1.0,
                policy: "builtin".into(),
                policy_generation: 0,
                policy_plugins: PolicyPlugins::default(),
                model: Box::new(HostModel::default()),
            },
            reachable,
            last_seen_s: 0.0,
        }
    }

    #[test]
    fn a_user_is_placed_by_host_name_or_by_site() {
        let views = [
            view("edge-3", "singapore", true),
            view("edge-2", "singapore", false),
            view("edge-1", "beijing", true),
            view("beijing", "shanghai", true),
        ];
        // A host's name comes first, even where it is also a site's.
        assert_eq!(user_host(&views, "beijing").unwrap().as_str(), "beijing");
        assert_eq!(user_host(&views, "edge-2").unwrap().as_str(), "edge-2");
        // Of a site's hosts, the first reachable one by name.
        assert_eq!(user_host(&views, "singapore").unwrap().as_str(), "edge-3");
        assert_eq!(user_host(&views, "shanghai").unwrap().as_str(), "beijing");
        let error = user_host(&views, "atlantis").unwrap_err().to_string();
        assert_eq!(
            error,
            "no host or site named \"atlantis\" in the fleet (sites: beijing, shanghai, singapore)"
        );
    }
}
