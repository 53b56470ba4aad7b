//! The relay: one UDP front per site, which the host at that site
//! advertises. A datagram reaching site B's front from the host of site A
//! waits in A's uplink (its rate), may be lost, then crosses half the A-B
//! round trip before it is sent on to B's host; B's answers take the same
//! way back, through B's uplink. Datagrams from anything but a host (a
//! client on this machine) are the user at that site: they pass at once.
//!
//! Each source gets its own upstream socket, so the host behind a front
//! sees each peer as its own address, and its answers find their way back.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::topology::Topology;

/// The longest a datagram waits in an uplink's queue before it is dropped,
/// as `tbf`'s latency bound drops it.
pub const MAX_QUEUE_DELAY: Duration = Duration::from_millis(250);

/// What the relay carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams delivered between sites.
    pub delivered: u64,
    /// Bytes of those.
    pub bytes: u64,
    /// Datagrams dropped as link loss.
    pub lost: u64,
    /// Datagrams dropped because an uplink's queue was full.
    pub overflowed: u64,
    /// Datagrams from or to a client, passed at once.
    pub local: u64,
}

struct Shared {
    topology: Topology,
    /// The real address of each site's host, once known.
    hosts: Mutex<Vec<Option<SocketAddr>>>,
    /// When each site's uplink is free again.
    uplinks: Mutex<Vec<Instant>>,
    rng: Mutex<ChaCha8Rng>,
    delivered: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicU64,
    overflowed: AtomicU64,
    local: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn site_of(&self, addr: SocketAddr) -> Option<usize> {
        lock(&self.hosts).iter().position(|h| *h == Some(addr))
    }

    /// When a datagram of `len` bytes sent now from site `from` to site
    /// `to` arrives, or `None` if it is lost. `None` for a site means a
    /// client: no delay.
    fn schedule(&self, from: Option<usize>, to: Option<usize>, len: usize) -> Option<Instant> {
        let now = Instant::now();
        let (Some(a), Some(b)) = (from, to) else {
            self.local.fetch_add(1, Ordering::Relaxed);
            return Some(now);
        };
        if a == b {
            self.local.fetch_add(1, Ordering::Relaxed);
            return Some(now);
        }
        if self.topology.loss > 0.0 && lock(&self.rng).random::<f64>() < self.topology.loss {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let departs = match self.topology.sites[a].uplink_mbps {
            Some(mbps) => {
                let mut uplinks = lock(&self.uplinks);
                let start = uplinks[a].max(now);
                if start - now > MAX_QUEUE_DELAY {
                    self.overflowed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                let done = start + Duration::from_secs_f64(len as f64 * 8.0 / (mbps * 1e6));
                uplinks[a] = done;
                done
            }
            None => now,
        };
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        Some(departs + self.topology.rtt(a, b) / 2)
    }
}

/// A running relay. Dropping it stops it.
pub struct Wan {
    shared: Arc<Shared>,
    fronts: Vec<SocketAddr>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Datagrams waiting for their time. Every datagram on one queue crosses
/// the same link, so they fall due in the order they came.
type Queue = mpsc::UnboundedSender<(Instant, Vec<u8>)>;

fn sender(socket: Arc<UdpSocket>, to: SocketAddr) -> (Queue, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let task = tokio::spawn(async move {
        while let Some((due, datagram)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            let _ = socket.send_to(&datagram, to).await;
        }
    });
    (tx, task)
}

impl Wan {
    /// Starts a front on loopback for every site of `topology`; loss is
    /// drawn from `seed`. Fronts forward once [`Wan::attach`] names the
    /// host behind them (until then datagrams to them are dropped, as on a
    /// link that is down). Must run inside a tokio runtime.
    pub async fn start(topology: Topology, seed: u64) -> std::io::Result<Wan> {
        let loopback = vec![IpAddr::from([127, 0, 0, 1]); topology.sites.len()];
        Wan::start_at(topology, seed, &loopback).await
    }

    /// [`Wan::start`] with site `i`'s front on `ips[i]` (one address per
    /// site): where each site's link ends when hosts live in namespaces of
    /// their own.
    pub async fn start_at(topology: Topology, seed: u64, ips: &[IpAddr]) -> std::io::Result<Wan> {
        let n = topology.sites.len();
        if ips.len() != n {
            return Err(std::io::Error::other(format!(
                "{} front addresses for {n} sites",
                ips.len()
            )));
        }
        let shared = Arc::new(Shared {
            topology,
            hosts: Mutex::new(vec![None; n]),
            uplinks: Mutex::new(vec![Instant::now(); n]),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            delivered: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
            local: AtomicU64::new(0),
        });
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let mut fronts = Vec::new();
        for (site, ip) in ips.iter().enumerate() {
            let front = Arc::new(UdpSocket::bind((*ip, 0)).await?);
            fronts.push(front.local_addr()?);
            let task = tokio::spawn(serve_front(site, front, shared.clone(), tasks.clone()));
            lock(&tasks).push(task);
        }
        Ok(Wan {
            shared,
            fronts,
            tasks,
        })
    }

    /// The address site `site`'s host advertises.
    pub fn front(&self, site: usize) -> SocketAddr {
        self.fronts[site]
    }

    /// Names the host of site `site`: its real address, where its front
    /// forwards, and by which its datagrams are known.
    pub fn attach(&self, site: usize, host: SocketAddr) {
        lock(&self.shared.hosts)[site] = Some(host);
    }

    /// The topology it emulates.
    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    /// What it carried so far.
    pub fn counters(&self) -> Counters {
        let s = &self.shared;
        Counters {
            delivered: s.delivered.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
            overflowed: s.overflowed.load(Ordering::Relaxed),
            local: s.local.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

async fn serve_front(
    site: usize,
    front: Arc<UdpSocket>,
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    let mut upstreams: HashMap<SocketAddr, Queue> = HashMap::new();
    let front_ip = match front.local_addr() {
        Ok(a) => a.ip(),
        Err(_) => return,
    };
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, source)) = front.recv_from(&mut buf).await else {
            return;
        };
        let Some(host) = lock(&shared.hosts)[site] else {
            continue;
        };
        let from = shared.site_of(source);
        let queue = match upstreams.entry(source) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(vacant) => {
                // From the front's own address: the way to its host.
                let Ok(up) = UdpSocket::bind((front_ip, 0)).await else {
                    continue;
                };
                let up = Arc::new(up);
                let (to_host, send_task) = sender(up.clone(), host);
                let (to_source, back_task) = sender(front.clone(), source);
                let back = shared.clone();
                let read_task = tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok((n, _)) = up.recv_from(&mut buf).await {
                        if let Some(due) = back.schedule(Some(site), from, n)
                            && to_source.send((due, buf[..n].to_vec())).is_err()
                        {
                            return;
                        }
                    }
                });
                lock(&tasks).extend([send_task, back_task, read_task]);
                vacant.insert(to_host)
            }
        };
        if let Some(due) = shared.schedule(from, Some(site), n) {
            let _ = queue.send((due, buf[..n].to_vec()));
        }
    }
}
