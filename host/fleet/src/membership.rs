//! Who is in the fleet and who answers.
//!
//! Every host sends its report to every host it knows once per heartbeat
//! period and gets back the reports its peer knows; a host heard from within
//! [`Membership::suspect_after`] is reachable, one that has not is marked
//! unreachable (and the agents it ran are shown as such) until it speaks
//! again. Hosts learn of each other through these answers, so each host
//! needs only one seed peer in its configuration.
//!
//! Why not a SWIM library: membership here rides on the same authenticated
//! QUIC connections as everything else (a gossip library brings its own
//! transport, or must be taught ours, and its own identity), and the fleets
//! this serves are edge sites counted in tens, where all-to-all heartbeats
//! cost a few hundred bytes per host per second. The failure detector is
//! the simplest one that is correct for that size: a timeout on direct
//! contact. Indirect reports only introduce hosts; they never keep a silent
//! host alive, and a host known only from them is not reachable until it has
//! answered itself, with a certificate that names it: a relayed view is a
//! hint of where to look, never a statement about the host it describes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use crate::protocol::{HostName, HostReport, PeerView};

struct Peer {
    report: HostReport,
    last_seen: Instant,
    /// Whether the host itself sent this report (not a relay).
    direct: bool,
}

/// The peers a host knows of.
pub struct Membership {
    me: HostName,
    peers: HashMap<HostName, Peer>,
    suspect_after: Duration,
}

impl Membership {
    /// An empty view for the host named `me`.
    pub fn new(me: HostName, suspect_after: Duration) -> Self {
        Membership {
            me,
            peers: HashMap::new(),
            suspect_after,
        }
    }

    /// How long a host may stay silent before it is unreachable.
    pub fn suspect_after(&self) -> Duration {
        self.suspect_after
    }

    /// Records a report received directly from its host.
    pub fn heard_from(&mut self, report: HostReport, now: Instant) {
        if report.name == self.me {
            return;
        }
        self.peers.insert(
            report.name.clone(),
            Peer {
                report,
                last_seen: now,
                direct: true,
            },
        );
    }

    /// Whether `report` comes from a host that restarted since its last
    /// report (its uptime went backwards).
    pub fn restarted(&self, report: &HostReport) -> bool {
        self.peers
            .get(&report.name)
            .is_some_and(|p| report.uptime_s + 0.5 < p.report.uptime_s)
    }

    /// Records a report relayed by another host: introduces hosts we did not
    /// know, never refreshes one we do.
    pub fn learned(&mut self, view: PeerView, now: Instant) {
        if view.report.name == self.me || self.peers.contains_key(&view.report.name) {
            return;
        }
        // A NaN never gets here (decode refuses it), but a relay's number
        // is not worth a panic either way.
        let age = Duration::try_from_secs_f64(view.last_seen_s.clamp(0.0, 3600.0))
            .unwrap_or(Duration::ZERO);
        let last_seen = now.checked_sub(age).unwrap_or(now);
        self.peers.insert(
            view.report.name.clone(),
            Peer {
                report: view.report,
                last_seen,
                direct: false,
            },
        );
    }

    /// Every known peer, with its reachability as of `now`.
    pub fn views(&self, now: Instant) -> Vec<PeerView> {
        let mut views: Vec<PeerView> = self
            .peers
            .values()
            .map(|p| {
                let silent = now.saturating_duration_since(p.last_seen);
                PeerView {
                    report: p.report.clone(),
                    reachable: p.direct && silent <= self.suspect_after,
                    last_seen_s: silent.as_secs_f64(),
                }
            })
            .collect();
        views.sort_by(|a, b| a.report.name.cmp(&b.report.name));
        views
    }

    /// Address and name of every known peer, to heartbeat: the
    /// certificate at the address must name the host.
    pub fn addresses(&self) -> Vec<(SocketAddr, HostName)> {
        self.peers
            .values()
            .map(|p| (p.report.addr, p.report.name.clone()))
            .collect()
    }

    /// The reachable peer that runs `agent`, if any.
    pub fn owner_of(&self, agent: &str, now: Instant) -> Option<HostReport> {
        self.peers
            .values()
            .filter(|p| {
                p.direct && now.saturating_duration_since(p.last_seen) <= self.suspect_after
            })
            .find(|p| p.report.agents.iter().any(|a| a.name == agent))
            .map(|p| p.report.clone())
    }
}
