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
    /// Migrations of agents away from this host that committed.
    pub migrations: AtomicU64,
    /// Migrations away from this host that failed (the agent stayed).
    pub migration_failures: AtomicU64,
    /// Sum of committed migrations' downtimes, microseconds.
    pub migration_downtime_micros: AtomicU64,
    /// State bytes of committed migrations.
    pub migration_state_bytes: AtomicU64,
    /// Agents' states written to disk: after calls, and by snapshots.
    pub state_writes: AtomicU64,
    /// Bytes of those states (whole states, of which only the changed
    /// blocks may be appended).
    pub state_write_bytes: AtomicU64,
    /// Agents woken from hibernation.
    pub wakes: AtomicU64,
    /// Sum of their wake-up times, microseconds.
    pub wake_micros: AtomicU64,
}

/// Gauges a host reads at the time of a scrape.
pub struct Gauges {
    /// Agents running on this host.
    pub agents: usize,
    /// Of those, the ones hibernating.
    pub hibernating: usize,
    /// Peers heard from recently.
    pub peers_reachable: usize,
    /// Peers known.
    pub peers_known: usize,
    /// Policy swaps since the host started.
    pub policy_generation: u64,
}

impl Metrics {
    /// Renders the Prometheus text format, with the gauges given.
    pub fn render(&self, gauges: &Gauges) -> String {
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
            gauges.agents.to_string(),
        );
        line(
            "edgehost_agents_hibernating",
            "gauge",
            "Agents of this host hibernating: state on disk, no instance.",
            gauges.hibernating.to_string(),
        );
        line(
            "edgehost_peers_reachable",
            "gauge",
            "Peers heard from recently.",
            gauges.peers_reachable.to_string(),
        );
        line(
            "edgehost_peers_known",
            "gauge",
            "Peers known.",
            gauges.peers_known.to_string(),
        );
        line(
            "edgehost_policy_generation",
            "gauge",
            "Placement policy swaps since the host started.",
            gauges.policy_generation.to_string(),
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
        line(
            "edgehost_migrations_total",
            "counter",
            "Migrations away from this host that committed.",
            c(&self.migrations).to_string(),
        );
        line(
            "edgehost_migration_failures_total",
            "counter",
            "Migrations away from this host that failed; the agent kept serving here.",
            c(&self.migration_failures).to_string(),
        );
        line(
            "edgehost_migration_downtime_seconds_sum",
            "counter",
            "Total downtime of committed migrations away from this host.",
            format!("{:.6}", c(&self.migration_downtime_micros) as f64 / 1e6),
        );
        line(
            "edgehost_migration_state_bytes_total",
            "counter",
            "State bytes shipped by committed migrations away from this host.",
            c(&self.migration_state_bytes).to_string(),
        );
        line(
            "edgehost_state_writes_total",
            "counter",
            "Agent states written to disk, after calls and by snapshots.",
            c(&self.state_writes).to_string(),
        );
        line(
            "edgehost_state_write_bytes_total",
            "counter",
            "Bytes of the agent states written to disk.",
            c(&self.state_write_bytes).to_string(),
        );
        line(
            "edgehost_agent_wakes_total",
            "counter",
            "Agents woken from hibernation by a call.",
            c(&self.wakes).to_string(),
        );
        line(
            "edgehost_agent_wake_seconds_sum",
            "counter",
            "Total time spent waking agents from hibernation.",
            format!("{:.6}", c(&self.wake_micros) as f64 / 1e6),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of the series `text` (the Prometheus text format) holds.
    fn series(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .collect()
    }

    #[test]
    fn the_grafana_dashboard_queries_only_metrics_a_host_exports() {
        let exported = Metrics::default().render(&Gauges {
            agents: 1,
            hibernating: 1,
            peers_reachable: 1,
            peers_known: 2,
            policy_generation: 3,
        });
        let exported = series(&exported);
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/grafana/edgehost-fleet.json"))
                .expect("the dashboard is JSON");
        let mut exprs = Vec::new();
        let mut stack = vec![&dashboard];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(e)) = map.get("expr") {
                        exprs.push(e.clone());
                    }
                    stack.extend(map.values());
                }
                serde_json::Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        assert!(exprs.len() >= 10, "{exprs:?}");
        let mut queried = std::collections::BTreeSet::new();
        for expr in &exprs {
            let mut rest = expr.as_str();
            while let Some(at) = rest.find("edgehost_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                assert!(exported.contains(&name.as_str()), "{name} in {expr:?}");
                queried.insert(name);
            }
        }
        // Every exported series has a panel.
        for name in exported {
            assert!(queried.contains(name), "no panel shows {name}");
        }
    }
}
