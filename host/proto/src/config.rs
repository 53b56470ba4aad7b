//! The configuration files of a host (`host.toml`) and of a client
//! (`client.toml`): their types, and their parsing and checking from text.
//!
//! A configuration file is input the daemon trusts with its listening
//! address, its keys' paths and its limits, and an operator writes it by
//! hand: it is parsed here, pure and from a string, so the fuzz targets
//! reach exactly what `edgehost serve` and the client commands run. Reading
//! the file stays with the fleet (`edgehost_fleet::config`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Everything `edgehost serve` needs. Read from TOML; the command line and
/// environment override single settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The host's name. Must match its certificate; taken from the
    /// certificate when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// UDP address to listen on for QUIC.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The address other hosts and clients reach this host at, when it is
    /// not `listen`: behind NAT, a port forward or a relay. Reports carry
    /// it, so peers dial it.
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// Where components, compiled artifacts and state live.
    pub data_dir: PathBuf,
    /// Where compiled artifacts live, when not in `data_dir/cache`. Hosts
    /// of one machine and kind may share one: artifacts are keyed by digest
    /// and engine, and written atomically, so each component is compiled
    /// once for all of them.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// The fleet CA certificate.
    pub ca: PathBuf,
    /// This host's certificate.
    pub cert: PathBuf,
    /// This host's private key.
    pub key: PathBuf,
    /// Addresses (`host:port`) of hosts to join; one is enough.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Where this host is, for the placement engine.
    #[serde(default)]
    pub labels: Labels,
    /// Limits on what this host accepts.
    #[serde(default)]
    pub limits: HostLimits,
    /// TCP address of the Prometheus metrics endpoint; none (the default)
    /// disables it. It has no authentication: give a loopback address, or
    /// one on a management network.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// How often hosts exchange reports, milliseconds.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// How long a link to a peer may go without a measurement of its pace
    /// before this host probes it (a 64 KiB send on the connection it has),
    /// milliseconds; 0 turns probes off. Migrations measure the links they
    /// use, so a busy link is never probed.
    #[serde(default = "default_probe_ms")]
    pub probe_ms: u64,
    /// The OpenAI-compatible endpoint behind agents' `complete` calls and the
    /// refinement of placements; none means agents get `no-llm-configured`.
    #[serde(default)]
    pub llm: Option<LlmSettings>,
    /// When agents follow their users (ALM).
    #[serde(default)]
    pub alm: AlmSettings,
}

/// Automatic migration by ALM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlmSettings {
    /// H_th: an agent more hops than this from its user's host is checked.
    #[serde(default = "default_hop_threshold")]
    pub hop_threshold: u32,
    /// A host whose free fraction of memory, storage or bandwidth falls
    /// below this has its agents checked.
    #[serde(default = "default_safety_fraction")]
    pub safety_fraction: f64,
    /// Requests expected before the next decision: how often a latency
    /// saving is earned, against the one-off cost of a move.
    #[serde(default = "default_horizon")]
    pub horizon_requests: f64,
    /// Period of the automatic check, milliseconds; 0 turns it off (user
    /// moves still trigger a check).
    #[serde(default = "default_alm_check_ms")]
    pub check_ms: u64,
    /// An agent that arrived by a migration stays at least this long,
    /// milliseconds, whatever triggers: a user on the border between two
    /// sites does not make it move back and forth.
    #[serde(default = "default_min_dwell_ms")]
    pub min_dwell_ms: u64,
}

impl Default for AlmSettings {
    fn default() -> Self {
        AlmSettings {
            hop_threshold: default_hop_threshold(),
            safety_fraction: default_safety_fraction(),
            horizon_requests: default_horizon(),
            check_ms: default_alm_check_ms(),
            min_dwell_ms: default_min_dwell_ms(),
        }
    }
}

fn default_hop_threshold() -> u32 {
    1
}
fn default_safety_fraction() -> f64 {
    0.1
}
fn default_horizon() -> f64 {
    20.0
}
fn default_alm_check_ms() -> u64 {
    10_000
}
fn default_min_dwell_ms() -> u64 {
    30_000
}

/// Where the host's LLM is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    /// Base URL (`http://127.0.0.1:8000`); `/v1/chat/completions` is appended.
    pub endpoint: String,
    /// Model name sent with each request.
    pub model: String,
    /// Environment variable holding the API key, if the endpoint needs one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Timeout of one request, milliseconds.
    #[serde(default = "default_llm_timeout_ms")]
    pub timeout_ms: u64,
}

/// Where a host is and what its uplink carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    /// A site name (`beijing`).
    #[serde(default = "default_site")]
    pub site: String,
    /// Latitude, degrees.
    #[serde(default)]
    pub lat: f64,
    /// Longitude, degrees.
    #[serde(default)]
    pub lon: f64,
    /// Uplink bandwidth, Mbit/s (the cost model's eta_e).
    #[serde(default = "default_bandwidth")]
    pub bandwidth_mbps: f64,
    /// The speed of one core, gigacycles per second, when the operator
    /// knows it better than the host's own start-up measurement (hosts that
    /// share one machine, a box whose load would skew the measurement).
    #[serde(default)]
    pub core_gcps: Option<f64>,
}

impl Default for Labels {
    fn default() -> Self {
        Labels {
            site: default_site(),
            lat: 0.0,
            lon: 0.0,
            bandwidth_mbps: default_bandwidth(),
            core_gcps: None,
        }
    }
}

/// What one host accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostLimits {
    /// The most agents this host keeps awake at once (live instances).
    /// When that many are awake, a deploy or a wake first puts the one
    /// called least recently to sleep (see `hibernate_after_ms`); with
    /// hibernation off, it is also the most agents the host holds.
    #[serde(default = "default_max_agents")]
    pub max_agents: u32,
    /// The most agents this host holds, awake or hibernating, prepared
    /// migrations included.
    #[serde(default = "default_max_hosted")]
    pub max_hosted: u32,
    /// Deadline of one call into an agent, milliseconds.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// The most memory one agent may declare, MiB.
    #[serde(default = "default_agent_memory_mib")]
    pub max_agent_memory_mib: u32,
    /// Requests one QUIC connection may have in progress at once, each on
    /// a stream of its own (QUIC's concurrent bidirectional streams). A
    /// peer's further streams wait in its own QUIC stack until one closes,
    /// so a connection never costs the host more than this many tasks.
    #[serde(default = "default_streams_per_connection")]
    pub streams_per_connection: u32,
    /// How long one frame from a peer may take to arrive, header included,
    /// milliseconds: a peer that starts a request or an upload chunk and
    /// then trickles or stops is cut off instead of holding a stream, a
    /// buffer or an upload slot for ever.
    #[serde(default = "default_frame_deadline_ms")]
    pub frame_deadline_ms: u64,
    /// Calls that may wait for one agent while a handoff holds it; more are
    /// refused at once instead of queueing without end.
    #[serde(default = "default_held_calls_per_agent")]
    pub held_calls_per_agent: u64,
    /// How long a prepared migration waits for its state before it is
    /// dropped, milliseconds; longer than a pre-copy may take, so a slow
    /// but live migration is never dropped under its source.
    #[serde(default = "default_prepare_expiry_ms")]
    pub prepare_expiry_ms: u64,
    /// Disk the component store may use, MiB. An upload that would pass it
    /// first collects components no agent uses, and is refused if the
    /// store is still full.
    #[serde(default = "default_component_store_mib")]
    pub component_store_mib: u64,
    /// How long a stored component is safe from garbage collection after
    /// it arrived, milliseconds: the time between an upload and the deploy
    /// or migration it was made for.
    #[serde(default = "default_component_grace_ms")]
    pub component_grace_ms: u64,
    /// Linear memory a policy plugin instance may use here, MiB. A plugin
    /// that needs more cannot become this host's policy: `policy set`
    /// refuses it here, and a fleet-wide swap is rolled back.
    #[serde(default = "default_policy_memory_mib")]
    pub policy_memory_mib: u32,
    /// How long an agent may go without a call before it hibernates,
    /// milliseconds: its state is made durable and its instance dropped,
    /// and the next call wakes it from the compiled component and that
    /// state. 0 keeps every agent awake.
    #[serde(default = "default_hibernate_after_ms")]
    pub hibernate_after_ms: u64,
}

impl HostLimits {
    /// The most agents the host holds: `max_hosted`, or with hibernation
    /// off (every agent awake) the lesser of it and `max_agents`.
    pub fn hosted_limit(&self) -> u32 {
        if self.hibernate_after_ms == 0 {
            self.max_hosted.min(self.max_agents)
        } else {
            self.max_hosted
        }
    }
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            max_agents: default_max_agents(),
            max_hosted: default_max_hosted(),
            call_timeout_ms: default_call_timeout_ms(),
            max_agent_memory_mib: default_agent_memory_mib(),
            streams_per_connection: default_streams_per_connection(),
            frame_deadline_ms: default_frame_deadline_ms(),
            held_calls_per_agent: default_held_calls_per_agent(),
            prepare_expiry_ms: default_prepare_expiry_ms(),
            component_store_mib: default_component_store_mib(),
            component_grace_ms: default_component_grace_ms(),
            policy_memory_mib: default_policy_memory_mib(),
            hibernate_after_ms: default_hibernate_after_ms(),
        }
    }
}

fn default_listen() -> SocketAddr {
    ([0, 0, 0, 0], 7400).into()
}
fn default_llm_timeout_ms() -> u64 {
    20_000
}
fn default_heartbeat_ms() -> u64 {
    1000
}
fn default_hibernate_after_ms() -> u64 {
    600_000
}
fn default_probe_ms() -> u64 {
    60_000
}
fn default_site() -> String {
    "edge".to_owned()
}
fn default_bandwidth() -> f64 {
    20.0
}
fn default_policy_memory_mib() -> u32 {
    256
}
fn default_max_hosted() -> u32 {
    1000
}
fn default_max_agents() -> u32 {
    10
}
fn default_call_timeout_ms() -> u64 {
    10_000
}
fn default_agent_memory_mib() -> u32 {
    512
}
/// A CLI runs one request at a time and a peer host a few (heartbeat,
/// forwarded calls, a migration's steps); 128 leaves room for a busy
/// client's pipelining while keeping one connection's cost small.
fn default_streams_per_connection() -> u32 {
    128
}
/// 16 MiB in 30 s is 4.5 Mbit/s, below the thinnest uplink the fleet plans for.
fn default_frame_deadline_ms() -> u64 {
    30_000
}
fn default_held_calls_per_agent() -> u64 {
    1024
}
/// Longer than a pre-copy may take (120 s).
fn default_prepare_expiry_ms() -> u64 {
    180_000
}
fn default_component_store_mib() -> u64 {
    4096
}
fn default_component_grace_ms() -> u64 {
    600_000
}

impl HostConfig {
    /// Where this host keeps compiled artifacts.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cache"))
    }

    /// Parses the TOML `text`; relative paths in it are taken relative to
    /// `base` (the file's directory).
    pub fn parse(text: &str, base: &Path) -> Result<Self> {
        let mut config: HostConfig =
            toml::from_str(text).map_err(|e| Error::Config(one_line(&e.to_string())))?;
        if let Some(p) = config.cache_dir.as_mut().filter(|p| p.is_relative()) {
            *p = base.join(&*p);
        }
        for p in [
            &mut config.data_dir,
            &mut config.ca,
            &mut config.cert,
            &mut config.key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// Checks values a file could get wrong.
    pub fn validate(&self) -> Result<()> {
        if self.heartbeat_ms < 50 {
            return Err(Error::Config("heartbeat_ms must be at least 50".into()));
        }
        if self.limits.max_hosted == 0 {
            return Err(Error::Config("limits.max_hosted must be at least 1".into()));
        }
        if self.limits.max_agents == 0 {
            return Err(Error::Config("limits.max_agents must be at least 1".into()));
        }
        if self.limits.streams_per_connection == 0 {
            return Err(Error::Config(
                "limits.streams_per_connection must be at least 1".into(),
            ));
        }
        if self.limits.frame_deadline_ms < 100 {
            return Err(Error::Config(
                "limits.frame_deadline_ms must be at least 100".into(),
            ));
        }
        if self.limits.prepare_expiry_ms < 100 {
            return Err(Error::Config(
                "limits.prepare_expiry_ms must be at least 100".into(),
            ));
        }
        if self.limits.policy_memory_mib == 0 {
            return Err(Error::Config(
                "limits.policy_memory_mib must be at least 1".into(),
            ));
        }
        if self.limits.component_store_mib == 0 {
            return Err(Error::Config(
                "limits.component_store_mib must be at least 1".into(),
            ));
        }
        if self
            .labels
            .core_gcps
            .is_some_and(|g| !(0.01..=1000.0).contains(&g))
        {
            return Err(Error::Config(
                "labels.core_gcps must be from 0.01 to 1000 gigacycles per second".into(),
            ));
        }
        if !(self.labels.bandwidth_mbps > 0.0 && self.labels.bandwidth_mbps.is_finite()) {
            return Err(Error::Config(
                "labels.bandwidth_mbps must be a positive number".into(),
            ));
        }
        if !(-90.0..=90.0).contains(&self.labels.lat)
            || !(-180.0..=180.0).contains(&self.labels.lon)
        {
            return Err(Error::Config(
                "labels.lat/lon must be valid coordinates".into(),
            ));
        }
        Ok(())
    }
}

/// Client settings (`client.toml`): which fleet, which certificate, which hosts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The fleet CA certificate.
    pub ca: PathBuf,
    /// The client's certificate.
    pub cert: PathBuf,
    /// The client's private key.
    pub key: PathBuf,
    /// Hosts to contact (`host:port`); the first that answers is used.
    pub hosts: Vec<String>,
}

impl ClientConfig {
    /// Parses the TOML `text`; relative paths are taken relative to `base`
    /// (the file's directory). A client needs at least one host.
    pub fn parse(text: &str, base: &Path) -> Result<Self> {
        let mut config: ClientConfig =
            toml::from_str(text).map_err(|e| Error::Config(one_line(&e.to_string())))?;
        for p in [&mut config.ca, &mut config.cert, &mut config.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if config.hosts.is_empty() {
            return Err(Error::Config("hosts is empty".into()));
        }
        Ok(config)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_endpoint_is_off_unless_configured() {
        let config: HostConfig = toml::from_str(
            "data_dir = \"d\"\nca = \"ca.pem\"\ncert = \"h.pem\"\nkey = \"h.key\"\n",
        )
        .unwrap();
        assert_eq!(config.metrics_listen, None);
    }
}
