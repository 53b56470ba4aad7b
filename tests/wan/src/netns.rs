//! The WAN with root: each site's host in a network namespace of its own,
//! joined to this machine's namespace by a veth pair, its uplink limited by
//! `tbf` on its end of the pair. Delay and loss still come from the relay,
//! which runs here in the root namespace: this kernel has no `netem`.
//!
//! Site `i` gets the subnet `10.A.B.0/30`: `.1` is the root namespace's end,
//! where the site's relay front listens, `.2` the host's end, whose default
//! route is `.1`. A host reaches another site's front through its own veth:
//! every front's address is local to the root namespace. Nothing is
//! forwarded, so the machine's routing settings stay as they were.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Result, bail};

use crate::cleanup;
use crate::relay::MAX_QUEUE_DELAY;
use crate::run;
use crate::topology::Topology;

/// Namespaces made by this process so far: each set gets its own names
/// and subnets, so tests in one process can run side by side.
static SETS: AtomicU32 = AtomicU32::new(0);

/// Whether this process may make namespaces.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// The namespaces of a topology's sites. Dropping it deletes them, and with
/// them their veth pairs and queues.
pub struct Namespaces {
    names: Vec<String>,
    /// The root namespace's end of each veth pair.
    links: Vec<String>,
    subnet: (u8, u8),
}

impl Namespaces {
    /// Makes one namespace per site of `topology`, with its veth pair and,
    /// where the site's uplink has a rate, a `tbf` queue of that rate whose
    /// queue holds at most [`MAX_QUEUE_DELAY`] of traffic. Needs root.
    pub fn create(topology: &Topology) -> Result<Namespaces> {
        if !is_root() {
            bail!("network namespaces need root; without it, use the relay alone");
        }
        let set = SETS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // 10.A.B.0/30: A from the process, B from the set and the site.
        let a = 100 + u8::try_from(pid % 100).unwrap_or(0);
        let first = u8::try_from((set % 16) * 16).unwrap_or(0);
        if topology.sites.len() > 16 {
            bail!("at most 16 sites in namespaces");
        }
        let mut made = Namespaces {
            names: Vec::new(),
            links: Vec::new(),
            subnet: (a, first),
        };
        for (i, site) in topology.sites.iter().enumerate() {
            let ns = format!("ehwan-{pid}-{set}-{i}");
            // Interface names are at most 15 bytes.
            let outer = format!("ew{}x{}h{i}", pid % 100_000, set % 100);
            let inner = format!("ew{}x{}n{i}", pid % 100_000, set % 100);
            run("ip", &["netns", "add", &ns])?;
            cleanup::register_namespace(&ns);
            made.names.push(ns.clone());
            let gateway = made.gateway(i).to_string();
            let host = made.host_ip(i).to_string();
            run(
                "ip",
                &[
                    "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &ns,
                ],
            )?;
            made.links.push(outer.clone());
            run(
                "ip",
                &["addr", "add", &format!("{gateway}/30"), "dev", &outer],
            )?;
            run("ip", &["link", "set", &outer, "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{host}/30"),
                    "dev",
                    &inner,
                ],
            )?;
            run("ip", &["-n", &ns, "link", "set", &inner, "up"])?;
            run(
                "ip",
                &["-n", &ns, "route", "add", "default", "via", &gateway],
            )?;
            if let Some(mbps) = site.uplink_mbps {
                // The burst is a few full packets; the queue's bound is the
                // relay's, so both modes drop alike under overload.
                let rate = format!("{}kbit", (mbps * 1000.0).round() as u64);
                let latency = format!("{}ms", MAX_QUEUE_DELAY.as_millis());
                run(
                    "tc",
                    &[
                        "-n", &ns, "qdisc", "add", "dev", &inner, "root", "tbf", "rate", &rate,
                        "burst", "16kb", "latency", &latency,
                    ],
                )?;
            }
        }
        Ok(made)
    }

    /// The root namespace's end of site `i`'s link: where its front listens.
    pub fn gateway(&self, i: usize) -> Ipv4Addr {
        self.address(i, 1)
    }

    /// The host's end of site `i`'s link.
    pub fn host_ip(&self, i: usize) -> Ipv4Addr {
        self.address(i, 2)
    }

    fn address(&self, i: usize, last: u8) -> Ipv4Addr {
        let i = u8::try_from(i).unwrap_or(0);
        Ipv4Addr::new(10, self.subnet.0, self.subnet.1 + i, last)
    }

    /// Site `i`'s namespace.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// A command that runs `program` inside site `i`'s namespace.
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i]]).arg(program);
        c
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both, at once; a deleted
        // namespace takes its end with it only once the kernel frees it.
        for link in self.links.drain(..) {
            let _ = run("ip", &["link", "delete", &link]);
        }
        for ns in self.names.drain(..) {
            let _ = run("ip", &["netns", "delete", &ns]);
            cleanup::unregister_namespace(&ns);
        }
    }
}

/// The namespaces this machine has now, by name.
pub fn list() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
