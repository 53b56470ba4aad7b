//! Prometheus metrics: counters kept with atomics, served as text on a plain
//! HTTP endpoint.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The host's counters.
#[derive(Default)]
pub struct Metrics {
    /// Invocations answered by local agents.
    pub invocations: AtomicU64,
    /// Invocations that failed.
    pub invocation_errors: AtomicU64,
    /// Sum of local invocation latencies, microseconds.
    pub invocation_micros: AtomicU64,
    /// Invocations forwarded to another host.
    pub forwarded: AtomicU64,
    /// Bytes of components received.
    pub upload_bytes: AtomicU64,
    /// Request and response body bytes of invocations.
    pub body_bytes: AtomicU64,
    /// Components compiled (cache misses).
    pub compiles: AtomicU64,
}

impl Metrics {
    /// Renders the Prometheus text format, with the gauges given.
    pub fn render(&self, agents: usize, peers_reachable: usize, peers_known: usize) -> String {
        let mut out = String::new();
        let c = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        line(
            "edgehost_agents",
            "gauge",
            "Agents running on this host.",
            agents.to_string(),
        );
        line(
            "edgehost_peers_reachable",
            "gauge",
            "Peers heard from recently.",
            peers_reachable.to_string(),
        );
        line(
            "edgehost_peers_known",
            "gauge",
            "Peers known.",
            peers_known.to_string(),
        );
        line(
            "edgehost_invocations_total",
            "counter",
            "Invocations answered by local agents.",
            c(&self.invocations).to_string(),
        );
        line(
            "edgehost_invocation_errors_total",
            "counter",
            "Invocations that failed.",
            c(&self.invocation_errors).to_string(),
        );
        line(
            "edgehost_invocation_seconds_sum",
            "counter",
            "Total time of local invocations.",
            format!("{:.6}", c(&self.invocation_micros) as f64 / 1e6),
        );
        line(
            "edgehost_forwarded_total",
            "counter",
            "Invocations forwarded to their owner.",
            c(&self.forwarded).to_string(),
        );
        line(
            "edgehost_upload_bytes_total",
            "counter",
            "Component bytes received.",
            c(&self.upload_bytes).to_string(),
        );
        line(
            "edgehost_body_bytes_total",
            "counter",
            "Invocation body bytes in and out.",
            c(&self.body_bytes).to_string(),
        );
        line(
            "edgehost_compiles_total",
            "counter",
            "Components compiled.",
            c(&self.compiles).to_string(),
        );
        out
    }
}

/// Serves `render()` to every HTTP request on `listener` until the task is
/// dropped. Requests are read only far enough to answer them.
pub async fn serve(listener: TcpListener, render: impl Fn() -> String + Send + Sync + 'static) {
    let render = std::sync::Arc::new(render);
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut buf))
                .await;
            let body = render();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
