//! What the fleet's benches share: a host of a bench's fleet, in its
//! process, on loopback.

use std::net::SocketAddr;
use std::path::Path;

use edgehost_fleet::config::{HostLimits, Labels};
use edgehost_fleet::identity::{Role, issue};
use edgehost_fleet::{Host, HostConfig};

/// The configuration of host `name` of the fleet whose CA is under
/// `fleet`: its certificate issued, an ephemeral loopback port, 200 ms
/// heartbeats and no link probes.
pub fn host_config(fleet: &Path, name: &str) -> HostConfig {
    let dir = fleet.join(name);
    let (cert, key) = issue(&fleet.join("ca"), &dir, name, Role::Host).expect("issue");
    HostConfig {
        name: None,
        listen: "127.0.0.1:0".parse().expect("addr"),
        advertise: None,
        data_dir: dir.join("data"),
        cache_dir: None,
        ca: fleet.join("ca").join("ca.pem"),
        cert,
        key,
        peers: vec![],
        labels: Labels::default(),
        limits: HostLimits::default(),
        metrics_listen: None,
        heartbeat_ms: 200,
        probe_ms: 0,
        llm: None,
        alm: Default::default(),
    }
}

/// Starts a host with `config`; it serves until the process ends.
pub async fn start(config: HostConfig) -> SocketAddr {
    let host = Host::start(config).await.expect("host starts");
    let addr = host.local_addr();
    tokio::spawn(host.run(std::future::pending()));
    addr
}
