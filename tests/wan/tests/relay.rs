//! The relay's delays, rates and losses are what they claim, measured with
//! plain UDP through it, within 20%.

// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use edgehost_wan::{Topology, Wan};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// A socket standing for a site's host, attached to its front.
async fn host(wan: &Wan, site: usize) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    wan.attach(site, socket.local_addr().unwrap());
    socket
}

/// Answers every datagram, to whoever sent it.
fn echo(socket: UdpSocket) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
}

async fn ping(from: &UdpSocket, to: SocketAddr) -> Duration {
    let start = Instant::now();
    from.send_to(b"ping", to).await.unwrap();
    let mut buf = [0u8; 16];
    tokio::time::timeout(Duration::from_secs(2), from.recv_from(&mut buf))
        .await
        .expect("the echo answers")
        .unwrap();
    start.elapsed()
}

fn within(measured: f64, claimed: f64, share: f64) -> bool {
    (measured - claimed).abs() <= share * claimed
}

#[tokio::test]
async fn round_trips_between_sites_are_the_matrix() {
    let topology = Topology::paper(4).unwrap();
    let wan = Wan::start(topology.clone(), 1).await.unwrap();
    let mut hosts = Vec::new();
    for site in 0..4 {
        hosts.push(host(&wan, site).await);
    }
    let beijing = hosts.remove(0);
    for h in hosts {
        echo(h);
    }
    for to in 1..4 {
        let mut samples = Vec::new();
        for _ in 0..5 {
            samples.push(ping(&beijing, wan.front(to)).await.as_secs_f64() * 1e3);
        }
        samples.sort_by(f64::total_cmp);
        let median = samples[2];
        let claimed = topology.rtt(0, to).as_secs_f64() * 1e3;
        assert!(
            within(median, claimed, 0.2),
            "beijing-{}: {median:.1} ms measured, {claimed} ms claimed",
            topology.sites[to].name
        );
    }
    // A client (no site) reaches a front at once.
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert!(ping(&client, wan.front(3)).await < Duration::from_millis(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uplink_carries_its_rate() {
    let wan = Wan::start(Topology::paper(2).unwrap(), 1).await.unwrap();
    let beijing = host(&wan, 0).await;
    let shanghai = host(&wan, 1).await;
    // 150 datagrams of 1,200 bytes: 1.44 Mbit, 72 ms at 20 Mbit/s, inside
    // the uplink's queue bound.
    let count = 150;
    let size = 1200;
    let receiver = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut first = None;
        let mut last = Instant::now();
        for _ in 0..count {
            let (n, _) = tokio::time::timeout(Duration::from_secs(2), shanghai.recv_from(&mut buf))
                .await
                .expect("every datagram arrives")
                .unwrap();
            assert_eq!(n, size);
            last = Instant::now();
            first.get_or_insert(last);
        }
        last - first.unwrap()
    });
    let front = wan.front(1);
    for i in 0..count {
        beijing.send_to(&vec![7u8; size], front).await.unwrap();
        // In bursts of ten, as a paced sender sends: all at once would
        // overflow the kernel's receive buffer before the relay reads.
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let span = receiver.await.unwrap().as_secs_f64();
    // The first datagram's own time on the wire is not in the span.
    let mbps = ((count - 1) * size * 8) as f64 / span / 1e6;
    assert!(
        within(mbps, 20.0, 0.2),
        "{mbps:.1} Mbit/s through a 20 Mbit/s uplink"
    );
    assert_eq!(wan.counters().delivered, count as u64);
}

#[tokio::test]
async fn losses_are_the_share_claimed_and_replay_from_the_seed() {
    let mut lost = Vec::new();
    for _ in 0..2 {
        let topology = Topology::paper(2)
            .unwrap()
            .without_rates()
            .with_loss(0.2)
            .unwrap();
        let wan = Wan::start(topology, 42).await.unwrap();
        let beijing = host(&wan, 0).await;
        let _shanghai = host(&wan, 1).await;
        for _ in 0..1000 {
            beijing.send_to(b"x", wan.front(1)).await.unwrap();
        }
        // Every datagram is decided when it is received by the front.
        let deadline = Instant::now() + Duration::from_secs(5);
        while wan.counters().delivered + wan.counters().lost < 1000 {
            assert!(Instant::now() < deadline, "{:?}", wan.counters());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lost.push(wan.counters().lost);
    }
    assert!(
        within(lost[0] as f64, 200.0, 0.2),
        "{} of 1000 lost at 20%",
        lost[0]
    );
    assert_eq!(lost[0], lost[1], "the same seed loses the same datagrams");
}
