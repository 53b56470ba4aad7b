//! What the fleet's integration tests share: hosts started in-process on
//! loopback, certificates, and a client's view of them.

// Test helpers unwrap freely: a failure is the test failing. Each test
// binary uses some of them.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use edgehost_fleet::client::{call, connect, upload};
use edgehost_fleet::config::{HostLimits, Labels};
use edgehost_fleet::identity::{Role, init_fleet, issue};
use edgehost_fleet::protocol::{Request, Response};
use edgehost_fleet::tls::endpoint;
use edgehost_fleet::{Credentials, Host, HostConfig};
use edgehost_runtime::Digest;
use tokio::sync::oneshot;

pub mod relay;

pub struct TestHost {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestHost {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

/// A host configuration for `name` in the fleet whose CA is under `fleet`:
/// its certificate issued, loopback on an ephemeral port, 100 ms heartbeats.
pub fn host_config(fleet: &Path, name: &str) -> HostConfig {
    let dir = fleet.join(name);
    let (cert, key) = issue(&fleet.join("ca"), &dir, name, Role::Host).unwrap();
    HostConfig {
        name: Some(name.into()),
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        data_dir: dir.join("data"),
        cache_dir: None,
        ca: fleet.join("ca").join("ca.pem"),
        cert,
        key,
        peers: vec![],
        labels: Labels {
            // Pricing in tests does not depend on this machine's speed.
            core_gcps: Some(2.0),
            ..Labels::default()
        },
        limits: HostLimits::default(),
        metrics_listen: None,
        heartbeat_ms: 100,
        probe_ms: 60_000,
        llm: None,
        alm: Default::default(),
    }
}

/// Starts a host in this process; it serves until `stop`.
pub async fn spawn(config: HostConfig) -> TestHost {
    let host = Host::start(config).await.unwrap();
    let addr = host.local_addr();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        host.run(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    TestHost {
        addr,
        stop: Some(tx),
        task,
    }
}

pub async fn start_host(fleet: &Path, name: &str) -> TestHost {
    spawn(host_config(fleet, name)).await
}

pub async fn start_host_with_peers(fleet: &Path, name: &str, peers: Vec<String>) -> TestHost {
    spawn(HostConfig {
        peers,
        ..host_config(fleet, name)
    })
    .await
}

pub fn new_fleet(dir: &Path) {
    init_fleet(&dir.join("ca"), "test").unwrap();
}

pub fn client_endpoint(fleet: &Path, name: &str) -> quinn::Endpoint {
    let out = fleet.join("clients");
    let (cert, key) = issue(&fleet.join("ca"), &out, name, Role::Operator).unwrap();
    let creds = Credentials::load(&fleet.join("ca").join("ca.pem"), &cert, &key).unwrap();
    endpoint(&creds, "127.0.0.1:0".parse().unwrap(), false).unwrap()
}

/// Invokes `name` with `body` as a client would; returns the response
/// body and the host that answered.
pub async fn invoke(conn: &quinn::Connection, name: &str, body: &[u8]) -> (Vec<u8>, String) {
    let request = Request::Invoke {
        name: name.parse().unwrap(),
        body: body.to_vec(),
        caller: None,
        hops: 0,
    };
    match call(conn, &request).await.unwrap() {
        Response::Invoked { body, host, .. } => (body, host.into_string()),
        other => panic!("{other:?}"),
    }
}

/// The whole HTTP answer of the metrics endpoint at `addr`.
/// Deploys `name` from the stored component `digest`, with no
/// configuration.
pub async fn deploy(
    conn: &quinn::Connection,
    name: &str,
    digest: Digest,
) -> Result<Response, edgehost_fleet::Error> {
    call(
        conn,
        &Request::Deploy {
            name: name.parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await
}

/// A loopback TCP address free at the time of asking, for a metrics
/// endpoint.
pub fn free_tcp_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub async fn scrape_metrics(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

pub async fn wait_until_peers(conn: &quinn::Connection, n: usize) {
    for _ in 0..100 {
        if let Response::Fleet(views) = call(conn, &Request::Fleet).await.unwrap()
            && views.iter().filter(|v| v.reachable).count() == n
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the hosts never saw each other");
}

/// Two hosts that know each other, a client connected to both, and the
/// memory agent's component uploaded to the first.
pub struct Pair {
    /// Holds the hosts' files: keep it alive as long as the hosts.
    pub dir: tempfile::TempDir,
    pub a: TestHost,
    pub b: TestHost,
    pub to_a: quinn::Connection,
    pub to_b: quinn::Connection,
    pub bytes: Vec<u8>,
    pub digest: Digest,
}

pub async fn two_hosts() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let a = start_host_with_peers(dir.path(), "alpha", vec![]).await;
    let b = start_host_with_peers(dir.path(), "beta", vec![a.addr.to_string()]).await;
    let client = client_endpoint(dir.path(), "ops");
    let (to_a, _) = connect(&client, a.addr).await.unwrap();
    let (to_b, _) = connect(&client, b.addr).await.unwrap();
    wait_until_peers(&to_a, 2).await;
    let bytes = std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    upload(&to_a, digest, &bytes, |_| {}).await.unwrap();
    Pair {
        dir,
        a,
        b,
        to_a,
        to_b,
        bytes,
        digest,
    }
}

/// An endpoint holding a fresh certificate for `name` with `role`: a
/// second host key for a running host's name, a host that runs nowhere
/// (`mallory`), or a viewer.
pub fn endpoint_as(fleet: &Path, name: &str, role: Role) -> quinn::Endpoint {
    endpoint(
        &credentials_as(fleet, name, role),
        "127.0.0.1:0".parse().unwrap(),
        false,
    )
    .unwrap()
}

/// A fresh certificate for `name` with `role`, loaded.
pub fn credentials_as(fleet: &Path, name: &str, role: Role) -> Credentials {
    let out = fleet.join("identities").join(format!("{role}"));
    let (cert, key) = issue(&fleet.join("ca"), &out, name, role).unwrap();
    Credentials::load(&fleet.join("ca").join("ca.pem"), &cert, &key).unwrap()
}

/// One host, `alpha`, with an operator connected to it and the memory
/// agent's component uploaded: the host, the connection, the component's
/// bytes and digest. Keep `dir` alive as long as the host.
pub async fn one_host_with_the_memory_agent(
    dir: &Path,
) -> (TestHost, quinn::Connection, Vec<u8>, Digest) {
    new_fleet(dir);
    let host = start_host(dir, "alpha").await;
    let (operator, _) = connect(&client_endpoint(dir, "ops"), host.addr)
        .await
        .unwrap();
    let bytes = std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    upload(&operator, digest, &bytes, |_| {}).await.unwrap();
    (host, operator, bytes, digest)
}

/// A one-answer-fits-all OpenAI-compatible stub: every chat completion is
/// `content`. Serves until the test process ends.
pub fn stub_llm(content: &'static str) -> String {
    stub_llm_after(content, std::time::Duration::ZERO)
}

/// [`stub_llm`], answering each request only after `delay`.
pub fn stub_llm_after(content: &'static str, delay: std::time::Duration) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            std::thread::sleep(delay);
            let answer = serde_json::json!({
                "choices": [{ "message": { "role": "assistant", "content": content } }]
            })
            .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    format!("http://{addr}")
}
