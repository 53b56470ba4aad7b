//! `edgehost serve`: the host daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use edgehost_fleet::config::{FromFile, HostLimits, Labels, LlmSettings};
use edgehost_fleet::{Host, HostConfig};

/// Run this machine's host: join the fleet, run agents, route calls.
///
/// Settings come from --config (TOML); each flag (or its EDGEHOST_*
/// environment variable) overrides the file.
#[derive(Args)]
pub struct ServeCommand {
    /// The host configuration file.
    #[arg(long, env = "EDGEHOST_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// The host's name (must match its certificate).
    #[arg(long, env = "EDGEHOST_NAME")]
    name: Option<String>,
    /// UDP address for QUIC.
    #[arg(long, env = "EDGEHOST_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The address peers and clients reach this host at, when not the
    /// listening one (NAT, port forward, relay).
    #[arg(long, env = "EDGEHOST_ADVERTISE", value_name = "ADDR")]
    advertise: Option<SocketAddr>,
    /// Data directory (components, compiled artifacts).
    #[arg(long, env = "EDGEHOST_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Fleet CA certificate.
    #[arg(long, env = "EDGEHOST_CA", value_name = "PATH")]
    ca: Option<PathBuf>,
    /// Compiled-artifact cache (default: DATA_DIR/cache); hosts on one
    /// machine may share one.
    #[arg(long, env = "EDGEHOST_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// This host's certificate.
    #[arg(long, env = "EDGEHOST_CERT", value_name = "PATH")]
    cert: Option<PathBuf>,
    /// This host's private key.
    #[arg(long, env = "EDGEHOST_KEY", value_name = "PATH")]
    key: Option<PathBuf>,
    /// A host to join (`host:port`); repeatable, adds to the file's peers.
    #[arg(long = "peer", value_name = "ADDR")]
    peers: Vec<String>,
    /// Site name.
    #[arg(long, env = "EDGEHOST_SITE")]
    site: Option<String>,
    /// Latitude of the site, degrees.
    #[arg(long, env = "EDGEHOST_LAT", allow_negative_numbers = true)]
    lat: Option<f64>,
    /// Longitude of the site, degrees.
    #[arg(long, env = "EDGEHOST_LON", allow_negative_numbers = true)]
    lon: Option<f64>,
    /// Uplink bandwidth, Mbit/s.
    #[arg(long, env = "EDGEHOST_BANDWIDTH_MBPS")]
    bandwidth_mbps: Option<f64>,
    /// Speed of one core, gigacycles per second, instead of the host's own
    /// start-up measurement.
    #[arg(long, env = "EDGEHOST_CORE_GCPS")]
    core_gcps: Option<f64>,
    /// The most agents this host keeps awake at once; idle ones past it
    /// hibernate.
    #[arg(long, env = "EDGEHOST_MAX_AGENTS")]
    max_agents: Option<u32>,
    /// TCP address of the Prometheus metrics endpoint.
    #[arg(long, env = "EDGEHOST_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Heartbeat period, milliseconds.
    #[arg(long, env = "EDGEHOST_HEARTBEAT_MS")]
    heartbeat_ms: Option<u64>,
    /// Base URL of an OpenAI-compatible endpoint for agents' LLM calls.
    #[arg(
        long,
        env = "EDGEHOST_LLM_ENDPOINT",
        value_name = "URL",
        requires = "llm_model"
    )]
    llm_endpoint: Option<String>,
    /// The model to ask at that endpoint.
    #[arg(long, env = "EDGEHOST_LLM_MODEL")]
    llm_model: Option<String>,
}

impl ServeCommand {
    fn into_config(self) -> Result<HostConfig> {
        let mut config = match &self.config {
            Some(path) => HostConfig::from_file(path)?,
            None => {
                let (Some(data_dir), Some(ca), Some(cert), Some(key)) = (
                    self.data_dir.clone(),
                    self.ca.clone(),
                    self.cert.clone(),
                    self.key.clone(),
                ) else {
                    bail!("give --config, or all of --data-dir, --ca, --cert and --key");
                };
                HostConfig {
                    name: None,
                    listen: ([0, 0, 0, 0], 7400).into(),
                    advertise: None,
                    data_dir,
                    cache_dir: None,
                    ca,
                    cert,
                    key,
                    peers: Vec::new(),
                    labels: Labels::default(),
                    limits: HostLimits::default(),
                    metrics_listen: None,
                    heartbeat_ms: 1000,
                    probe_ms: 60_000,
                    llm: None,
                    alm: Default::default(),
                }
            }
        };
        if let Some(v) = self.name {
            config.name = Some(v);
        }
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.advertise {
            config.advertise = Some(v);
        }
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = self.cache_dir {
            config.cache_dir = Some(v);
        }
        if let Some(v) = self.ca {
            config.ca = v;
        }
        if let Some(v) = self.cert {
            config.cert = v;
        }
        if let Some(v) = self.key {
            config.key = v;
        }
        config.peers.extend(self.peers);
        if let Some(v) = self.site {
            config.labels.site = v;
        }
        if let Some(v) = self.lat {
            config.labels.lat = v;
        }
        if let Some(v) = self.lon {
            config.labels.lon = v;
        }
        if let Some(v) = self.bandwidth_mbps {
            config.labels.bandwidth_mbps = v;
        }
        if let Some(v) = self.core_gcps {
            config.labels.core_gcps = Some(v);
        }
        if let Some(v) = self.max_agents {
            config.limits.max_agents = v;
        }
        if let Some(v) = self.metrics_listen {
            config.metrics_listen = Some(v);
        }
        if let Some(v) = self.heartbeat_ms {
            config.heartbeat_ms = v;
        }
        if let (Some(endpoint), Some(model)) = (self.llm_endpoint, self.llm_model) {
            config.llm = Some(LlmSettings {
                endpoint,
                model,
                api_key_env: Some("EDGEHOST_LLM_API_KEY".into()),
                timeout_ms: 20_000,
            });
        }
        Ok(config)
    }

    /// Runs the host until SIGTERM or Ctrl-C.
    pub fn execute(self) -> Result<()> {
        let config = self.into_config()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(async move {
            let host = Host::start(config).await?;
            // A line for scripts and humans: who we are and where.
            outln!("edgehost serving {} on {}", host.name(), host.local_addr());
            host.run(shutdown_signal()).await?;
            Ok(())
        })
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
