//! `edgehost dashboard`: a live web page of the fleet.
//!
//! A poller asks the fleet over the authenticated protocol, with the read-only
//! requests a viewer certificate may send (`Fleet`, `Events`, `Migrations`),
//! and keeps one JSON snapshot. An HTTP server (axum) serves the page, the
//! snapshot (`/api/fleet`) and a server-sent event stream of snapshots
//! (`/api/stream`) that the page follows, so it updates without a reload.
//! The page and its script are in the binary: nothing is fetched from
//! elsewhere, so it works offline.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::Router;
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use clap::Args;
use edgehost_fleet::protocol::{Event, MigrationReport, PeerView, Request, Response};
use serde::Serialize;
use tokio::sync::watch;

use super::client::ClientArgs;

/// The page: HTML, CSS and script in one file, shipped in the binary.
const PAGE: &str = include_str!("dashboard.html");

/// Decisions shown, newest first.
const MAX_EVENTS: usize = 50;
/// Migrations shown, newest first.
const MAX_MIGRATIONS: usize = 50;

/// Serve a live web dashboard of the fleet: hosts on a map with their
/// resources and policy, agents, migrations as they happen, ALM's decisions
/// and the calibrated model. Read-only: a viewer certificate is enough.
#[derive(Args)]
pub struct DashboardCommand {
    /// Where to serve the page. The page has no login of its own: anyone who
    /// can reach this address sees what the client certificate may see, so
    /// it stays on loopback unless you put it behind your own gateway.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7480")]
    listen: SocketAddr,
    /// How often to ask the fleet, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    interval_ms: u64,
    #[command(flatten)]
    client: ClientArgs,
}

/// One migration as the page shows it.
#[derive(Clone, Serialize)]
struct SeenMigration {
    /// When it committed, milliseconds since the Unix epoch.
    committed_ms: u64,
    #[serde(flatten)]
    report: MigrationReport,
}

/// What the page reads.
#[derive(Serialize)]
struct Snapshot<'a> {
    /// When it was taken, milliseconds since the Unix epoch.
    at_ms: u64,
    /// The host the dashboard asks for the fleet.
    via: &'a str,
    /// What went wrong on the last poll, if anything.
    error: Option<String>,
    hosts: &'a [PeerView],
    /// Newest first.
    migrations: Vec<&'a SeenMigration>,
    /// ALM's decisions of every reachable host, newest first.
    events: Vec<&'a Event>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the poller has gathered.
#[derive(Default)]
struct Gathered {
    hosts: Vec<PeerView>,
    /// By (agent, epoch at the target): one entry per committed move.
    migrations: BTreeMap<(String, u64), SeenMigration>,
    /// By (time, host, agent).
    events: BTreeMap<(u64, String, String), Event>,
}

impl Gathered {
    fn render(&self, via: &str, error: Option<String>) -> String {
        let mut migrations: Vec<&SeenMigration> = self.migrations.values().collect();
        migrations.sort_by_key(|m| std::cmp::Reverse(m.committed_ms));
        migrations.truncate(MAX_MIGRATIONS);
        let snapshot = Snapshot {
            at_ms: now_ms(),
            via,
            error,
            hosts: &self.hosts,
            migrations,
            events: self.events.values().rev().take(MAX_EVENTS).collect(),
        };
        serde_json::to_string(&snapshot).unwrap_or_else(|e| {
            format!("{{\"error\":{:?}}}", format!("rendering the snapshot: {e}"))
        })
    }
}

impl DashboardCommand {
    /// Connects, then polls and serves until interrupted.
    pub fn execute(self) -> Result<()> {
        let session = self.client.connect()?;
        let listener = session
            .runtime
            .block_on(tokio::net::TcpListener::bind(self.listen))
            .with_context(|| format!("listening on {}", self.listen))?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            eprintln!(
                "warning: the dashboard has no login of its own and {addr} is not a loopback address"
            );
        }
        outln!("dashboard on http://{addr}/ (fleet via {})", session.host);

        let (tx, rx) = watch::channel(Arc::new(String::from("{}")));
        let interval = Duration::from_millis(self.interval_ms);
        let via = session.host.clone();
        let client = &session.client;
        let connection = session.connection.clone();
        session.runtime.block_on(async move {
            let poller = poll(client, connection, via, interval, tx);
            let app = Router::new()
                .route("/", get(page))
                .route("/api/fleet", get(fleet_json))
                .route("/api/stream", get(stream))
                .with_state(rx);
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            });
            tokio::select! {
                r = server => r.context("serving the dashboard"),
                () = poller => Ok(()),
            }
        })
    }
}

type State = axum::extract::State<watch::Receiver<Arc<String>>>;

/// The page, with the current snapshot in it: it draws the fleet as soon as
/// it loads, then follows the stream.
async fn page(axum::extract::State(rx): State) -> impl IntoResponse {
    // Inside a <script> element: no '<' may close it. JSON has '<' only in
    // strings, where \u003c means the same.
    let snapshot = rx.borrow().replace('<', "\\u003c");
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(PAGE.replacen("/*SNAPSHOT*/null", &snapshot, 1)),
    )
}

async fn fleet_json(axum::extract::State(rx): State) -> impl IntoResponse {
    let body = rx.borrow().as_str().to_owned();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
}

/// Every snapshot, as a server-sent event named `fleet`: the current one at
/// once, then each new one.
async fn stream(
    axum::extract::State(mut rx): State,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    rx.mark_changed();
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let data = rx.borrow_and_update().as_str().to_owned();
        Some((Ok(SseEvent::default().event("fleet").data(data)), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// Asks the fleet every `interval` and publishes a snapshot each time. Runs
/// until the process ends.
async fn poll(
    client: &edgehost_fleet::Client,
    mut connection: quinn::Connection,
    mut via: String,
    interval: Duration,
    tx: watch::Sender<Arc<String>>,
) {
    let mut gathered = Gathered::default();
    let mut peers: HashMap<SocketAddr, quinn::Connection> = HashMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let error = match gather(client, &connection, &mut peers, &mut gathered).await {
            Ok(()) => None,
            Err(e) => {
                // The host we ask went away: ask another reachable one.
                let fallback = gathered
                    .hosts
                    .iter()
                    .filter(|v| v.reachable && v.report.name.as_str() != via)
                    .map(|v| v.report.addr)
                    .collect::<Vec<_>>();
                for addr in fallback {
                    if let Ok((c, identity)) = client.connect(addr).await {
                        connection = c;
                        via = identity.name.to_string();
                        break;
                    }
                }
                Some(format!("{e:#}"))
            }
        };
        // Reports carry uptimes and last-seen ages, so every round is news.
        tx.send_replace(Arc::new(gathered.render(&via, error)));
    }
}

/// One round: the fleet from the host we ask, then each reachable host's
/// decisions and migrations on a connection kept open between rounds.
async fn gather(
    client: &edgehost_fleet::Client,
    connection: &quinn::Connection,
    peers: &mut HashMap<SocketAddr, quinn::Connection>,
    gathered: &mut Gathered,
) -> Result<()> {
    let hosts = match edgehost_fleet::client::call(connection, &Request::Fleet).await? {
        Response::Fleet(views) => views,
        other => return Err(edgehost_fleet::client::unexpected(&other).into()),
    };
    let now = now_ms();
    for view in hosts.iter().filter(|v| v.reachable) {
        let addr = view.report.addr;
        let peer = match peers.get(&addr) {
            Some(c) if c.close_reason().is_none() => c.clone(),
            _ => match client.connect(addr).await {
                Ok((c, _)) => {
                    peers.insert(addr, c.clone());
                    c
                }
                Err(_) => continue,
            },
        };
        if let Ok(Response::Events(events)) =
            edgehost_fleet::client::call(&peer, &Request::Events).await
        {
            for e in events {
                let key = (e.at_ms, e.host.to_string(), e.agent.to_string());
                gathered.events.insert(key, e);
            }
        }
        if let Ok(Response::Migrations(recent)) =
            edgehost_fleet::client::call(&peer, &Request::Migrations).await
        {
            for m in recent {
                let key = (m.report.agent.to_string(), m.report.epoch);
                gathered.migrations.entry(key).or_insert(SeenMigration {
                    // The source's clock; a clock ahead of ours does not
                    // show the page a migration in the future.
                    committed_ms: m.at_ms.min(now),
                    report: m.report,
                });
            }
        }
    }
    while gathered.events.len() > MAX_EVENTS {
        gathered.events.pop_first();
    }
    while gathered.migrations.len() > 4 * MAX_MIGRATIONS {
        let oldest = gathered
            .migrations
            .iter()
            .min_by_key(|(_, m)| m.committed_ms)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            gathered.migrations.remove(&k);
        }
    }
    gathered.hosts = hosts;
    Ok(())
}
