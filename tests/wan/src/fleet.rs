//! A fleet on an emulated WAN: each host advertises its site's front of the
//! relay, so every byte between two hosts crosses the emulated link between
//! their sites.
//!
//! - [`WanFleet::start`], without root: `edgehost up` on loopback, the relay
//!   emulating delay, loss and the uplinks' rates.
//! - [`WanFleet::start_isolated`], with root: each host in a network
//!   namespace of its own ([`crate::netns`]), its uplink a `tbf` queue, the
//!   relay adding delay and loss.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cleanup;
use crate::netns::Namespaces;
use crate::relay::Wan;
use crate::run;
use crate::topology::Topology;

/// A fleet behind a relay; dropping it stops the fleet (SIGTERM to `edgehost
/// up`, which stops its hosts, or to each host), then the relay, then the
/// namespaces.
pub struct WanFleet {
    /// The fleet's files: `client.toml`, each host's directory and log.
    pub dir: PathBuf,
    /// The relay.
    pub wan: Wan,
    topology: Topology,
    up: Option<Child>,
    hosts: Vec<Child>,
    namespaces: Option<Namespaces>,
    _temp: Option<tempfile::TempDir>,
}

/// The fleet's directory: `dir`, or a temporary one removed on drop.
fn fleet_dir(dir: Option<PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            Ok((d, None))
        }
        None => {
            let t = tempfile::tempdir().context("creating a temporary directory")?;
            Ok((t.path().to_owned(), Some(t)))
        }
    }
}

/// Where the paper's sites are (latitude, longitude), for the hosts'
/// labels; another site is placed at 0, 0.
fn location(site: &str) -> (f64, f64) {
    match site {
        "beijing" => (39.90, 116.40),
        "shanghai" => (31.23, 121.47),
        "guiyang" => (26.65, 106.63),
        "singapore" => (1.35, 103.82),
        _ => (0.0, 0.0),
    }
}

/// The port each host listens on inside its namespace.
const HOST_PORT: u16 = 7400;

impl WanFleet {
    /// Starts a relay for `topology` and a fleet of one host per site
    /// behind it, with the `edgehost` binary `edgehost`; `up_args` go to
    /// `edgehost up` as they are. The fleet's files go to `dir`, or a
    /// temporary directory removed on drop. Returns once every host
    /// serves.
    pub async fn start(
        edgehost: &Path,
        topology: Topology,
        seed: u64,
        dir: Option<PathBuf>,
        up_args: &[String],
    ) -> Result<WanFleet> {
        let (dir, temp) = fleet_dir(dir)?;
        let sites: Vec<String> = topology.sites.iter().map(|s| s.name.clone()).collect();
        let emulated = topology.clone();
        let wan = Wan::start(topology, seed)
            .await
            .context("starting the relay")?;
        let mut command = Command::new(edgehost);
        command
            .arg("up")
            .arg(sites.len().to_string())
            .arg("--dir")
            .arg(&dir);
        for (i, name) in sites.iter().enumerate() {
            command
                .arg("--advertise")
                .arg(format!("{name}={}", wan.front(i)));
        }
        let log = std::fs::File::create(dir.join("up.log"))?;
        let up = command
            .args(up_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} up", edgehost.display()))?;
        cleanup::register_pid(up.id());
        let mut fleet = WanFleet {
            dir,
            wan,
            topology: emulated,
            up: Some(up),
            hosts: Vec::new(),
            namespaces: None,
            _temp: temp,
        };
        // Each host's front forwards as soon as its configuration names
        // its address, while the others still start.
        let mut attached = vec![false; sites.len()];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            for (i, name) in sites.iter().enumerate() {
                if !attached[i]
                    && let Some(addr) = listen_address(&fleet.dir.join(name).join("host.toml"))
                {
                    fleet.wan.attach(i, addr);
                    attached[i] = true;
                }
            }
            if attached.iter().all(|a| *a) && fleet.dir.join("ready").exists() {
                return Ok(fleet);
            }
            if let Some(up) = &mut fleet.up
                && let Some(status) = up.try_wait()?
            {
                let log = std::fs::read_to_string(fleet.dir.join("up.log")).unwrap_or_default();
                bail!(
                    "edgehost up exited ({status}): {}",
                    log.lines().last().unwrap_or("no output")
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the fleet did not come up within 180 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts one host per site of `topology`, each in a network namespace
    /// of its own behind a veth pair whose `tbf` queue is its uplink, and
    /// the relay for delay and loss. Needs root. The fleet's files go to
    /// `dir`, or a temporary directory removed on drop. Returns once every
    /// host serves.
    pub async fn start_isolated(
        edgehost: &Path,
        topology: Topology,
        seed: u64,
        dir: Option<PathBuf>,
        heartbeat_ms: u64,
    ) -> Result<WanFleet> {
        let (dir, temp) = fleet_dir(dir)?;
        let namespaces = Namespaces::create(&topology)?;
        let n = topology.sites.len();
        let ips: Vec<IpAddr> = (0..n).map(|i| namespaces.gateway(i).into()).collect();
        // The rates are the queues' in the namespaces; the relay only delays
        // and drops.
        let wan = Wan::start_at(topology.clone().without_rates(), seed, &ips)
            .await
            .context("starting the relay")?;
        let mut fleet = WanFleet {
            dir: dir.clone(),
            wan,
            topology: topology.clone(),
            up: None,
            hosts: Vec::new(),
            namespaces: None,
            _temp: temp,
        };
        let ca = dir.join("ca");
        let ca_arg = ca.to_string_lossy().into_owned();
        run(edgehost, &["fleet", "init", &ca_arg, "--name", "wan"])?;
        let dir_arg = dir.to_string_lossy().into_owned();
        for (name, role) in [("operator", "operator"), ("viewer", "viewer")] {
            run(
                edgehost,
                &[
                    "fleet", "issue", name, "--role", role, "--ca-dir", &ca_arg, "--out", &dir_arg,
                ],
            )?;
        }
        let fronts: Vec<SocketAddr> = (0..n).map(|i| fleet.wan.front(i)).collect();
        for (i, site) in topology.sites.iter().enumerate() {
            let host_dir = dir.join(&site.name);
            std::fs::create_dir_all(&host_dir)?;
            let host_arg = host_dir.to_string_lossy().into_owned();
            run(
                edgehost,
                &[
                    "fleet", "issue", &site.name, "--ca-dir", &ca_arg, "--out", &host_arg,
                ],
            )?;
            // Every host knows one seed; the rest is learned from heartbeats.
            let seed_front = if i == 0 {
                fronts.get(1)
            } else {
                fronts.first()
            };
            let peers = seed_front.map(|s| format!("\"{s}\"")).unwrap_or_default();
            let (lat, lon) = location(&site.name);
            let bandwidth = site.uplink_mbps.unwrap_or(1000.0);
            let config = format!(
                "name = \"{name}\"\nlisten = \"{listen}\"\nadvertise = \"{front}\"\ndata_dir = \"data\"\nca = \"../ca/ca.pem\"\ncert = \"{name}.pem\"\nkey = \"{name}.key\"\npeers = [{peers}]\nheartbeat_ms = {heartbeat_ms}\n\n[labels]\nsite = \"{name}\"\nlat = {lat}\nlon = {lon}\nbandwidth_mbps = {bandwidth}\n",
                name = site.name,
                listen = SocketAddr::from((namespaces.host_ip(i), HOST_PORT)),
                front = fronts[i],
            );
            let config_path = host_dir.join("host.toml");
            std::fs::write(&config_path, config)?;
            let log = std::fs::File::create(host_dir.join("host.log"))?;
            let child = namespaces
                .command(i, edgehost)
                .arg("serve")
                .arg("--config")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .env(
                    "EDGEHOST_LOG",
                    std::env::var("EDGEHOST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .spawn()
                .context("starting edgehost serve in its namespace")?;
            cleanup::register_pid(child.id());
            std::fs::write(host_dir.join("pid"), child.id().to_string())?;
            fleet.hosts.push(child);
            fleet
                .wan
                .attach(i, SocketAddr::from((namespaces.host_ip(i), HOST_PORT)));
        }
        fleet.namespaces = Some(namespaces);
        let hosts = fronts
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        for (file, who) in [("client.toml", "operator"), ("viewer.toml", "viewer")] {
            std::fs::write(
                dir.join(file),
                format!(
                    "ca = \"ca/ca.pem\"\ncert = \"{who}.pem\"\nkey = \"{who}.key\"\nhosts = [{hosts}]\n"
                ),
            )?;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let mut serving = 0;
            for (site, host) in topology.sites.iter().zip(&mut fleet.hosts) {
                let log = std::fs::read_to_string(dir.join(&site.name).join("host.log"))
                    .unwrap_or_default();
                if let Some(status) = host.try_wait()? {
                    bail!(
                        "host {} exited ({status}) while starting: {}",
                        site.name,
                        log.lines().last().unwrap_or("no output")
                    );
                }
                if log.contains("edgehost serving") {
                    serving += 1;
                }
            }
            if serving == n {
                std::fs::write(dir.join("ready"), b"")?;
                return Ok(fleet);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the hosts did not start within 120 s; see the logs in {}",
                    dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The WAN it emulates: sites, round trips, uplink rates and loss.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The namespace of each site's host, when it has them.
    pub fn namespaces(&self) -> Option<&Namespaces> {
        self.namespaces.as_ref()
    }

    /// The operator's client configuration.
    pub fn client_config(&self) -> PathBuf {
        self.dir.join("client.toml")
    }

    /// Whether every host still runs (`edgehost up`, or each isolated host).
    pub fn running(&mut self) -> bool {
        if let Some(up) = &mut self.up {
            return matches!(up.try_wait(), Ok(None));
        }
        !self.hosts.is_empty()
            && self
                .hosts
                .iter_mut()
                .all(|h| matches!(h.try_wait(), Ok(None)))
    }

    /// Stops the fleet: SIGTERM to `edgehost up`, which stops its hosts, or
    /// to each isolated host; SIGKILL after 15 s.
    pub fn stop(&mut self) {
        let children: Vec<Child> = self
            .up
            .take()
            .into_iter()
            .chain(self.hosts.drain(..))
            .collect();
        for child in &children {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        for mut child in children {
            let mut stopped = false;
            for _ in 0..300 {
                if let Ok(Some(_)) = child.try_wait() {
                    stopped = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !stopped {
                let _ = child.kill();
                let _ = child.wait();
            }
            cleanup::unregister_pid(child.id());
        }
    }
}

impl Drop for WanFleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `listen` address in a host configuration, once it is written.
fn listen_address(config: &Path) -> Option<std::net::SocketAddr> {
    let text = std::fs::read_to_string(config).ok()?;
    let value: toml::Value = toml::from_str(&text).ok()?;
    value.get("listen")?.as_str()?.parse().ok()
}
