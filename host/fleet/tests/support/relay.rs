//! A user-space UDP relay that delays every datagram, both ways: a host
//! that advertises a relay's address is reached over a slower link. The
//! kernel here has no `netem`, so delay is added by this relay.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A relay in front of one host.
pub struct Relay {
    /// Where to send datagrams meant for the host behind it.
    pub addr: SocketAddr,
    delay_us: Arc<AtomicU64>,
    target: Arc<OnceLock<SocketAddr>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    /// Names the host behind the relay (once).
    pub fn forward_to(&self, host: SocketAddr) {
        let _ = self.target.set(host);
    }

    /// Sets the delay each datagram gets, each way.
    pub fn set_delay(&self, one_way: Duration) {
        self.delay_us
            .store(one_way.as_micros() as u64, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// Datagrams waiting for their time, in order: the delay is the same for
/// all, so first in is first due.
type Queue = mpsc::UnboundedSender<(Instant, Vec<u8>)>;

/// Sends what `queue` receives through `socket` to `to`, each datagram at
/// its due time.
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

/// Starts a relay on loopback that delays each datagram by `one_way`,
/// each way; it forwards once [`Relay::forward_to`] names the host behind
/// it (until then datagrams are dropped, as on a link that is down).
pub async fn relay(one_way: Duration) -> Relay {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let delay_us = Arc::new(AtomicU64::new(one_way.as_micros() as u64));
    let target = Arc::new(OnceLock::<SocketAddr>::new());
    let host_of = target.clone();
    let delay = delay_us.clone();
    let tasks = Arc::new(Mutex::new(Vec::new()));
    let spawned = tasks.clone();
    let main = tokio::spawn(async move {
        // One upstream socket per client, so the host sees each client as
        // its own peer and its answers find their way back.
        let mut upstreams: HashMap<SocketAddr, Queue> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, client)) = front.recv_from(&mut buf).await else {
                return;
            };
            let due = Instant::now() + Duration::from_micros(delay.load(Ordering::Relaxed));
            let Some(&host) = host_of.get() else {
                continue;
            };
            if let Entry::Vacant(vacant) = upstreams.entry(client) {
                let up = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                let (to_host, send_task) = sender(up.clone(), host);
                let (to_client, back_task) = sender(front.clone(), client);
                let delay = delay.clone();
                let read_task = tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok((n, _)) = up.recv_from(&mut buf).await {
                        let due =
                            Instant::now() + Duration::from_micros(delay.load(Ordering::Relaxed));
                        if to_client.send((due, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                });
                spawned
                    .lock()
                    .unwrap()
                    .extend([send_task, back_task, read_task]);
                vacant.insert(to_host);
            }
            let _ = upstreams[&client].send((due, buf[..n].to_vec()));
        }
    });
    tasks.lock().unwrap().push(main);
    Relay {
        addr,
        delay_us,
        target,
        tasks,
    }
}
