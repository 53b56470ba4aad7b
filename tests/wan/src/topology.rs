//! The sites of an emulated WAN, the round-trip times between them, their
//! uplink rates and the loss on their links.

use std::time::Duration;

/// One site: a host's location.
#[derive(Clone, Debug, PartialEq)]
pub struct Site {
    /// Its name, which is also the name of the host there.
    pub name: String,
    /// What the site's uplink carries, Mbit/s; `None`: no limit.
    pub uplink_mbps: Option<f64>,
}

/// The sites and their links.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// The sites, in order.
    pub sites: Vec<Site>,
    /// Round-trip times, milliseconds: `rtt_ms[a][b]`, symmetric, zero on
    /// the diagonal.
    rtt_ms: Vec<Vec<f64>>,
    /// The share of datagrams lost on every link between two sites, each
    /// way.
    pub loss: f64,
}

/// The paper's four sites: Beijing, Shanghai and Guiyang with 20 Mbit/s
/// uplinks, Singapore with 30.
const PAPER_SITES: [(&str, f64); 4] = [
    ("beijing", 20.0),
    ("shanghai", 20.0),
    ("guiyang", 20.0),
    ("singapore", 30.0),
];

/// Round trips between the paper's sites, milliseconds.
const PAPER_RTT_MS: [[f64; 4]; 4] = [
    [0.0, 30.0, 40.0, 90.0],
    [30.0, 0.0, 35.0, 75.0],
    [40.0, 35.0, 0.0, 70.0],
    [90.0, 75.0, 70.0, 0.0],
];

impl Topology {
    /// The first `n` (1 to 4) of the paper's sites, no loss.
    pub fn paper(n: usize) -> Result<Topology, String> {
        if !(1..=PAPER_SITES.len()).contains(&n) {
            return Err(format!(
                "{n} sites: the paper's WAN has 1 to {}",
                PAPER_SITES.len()
            ));
        }
        Ok(Topology {
            sites: PAPER_SITES[..n]
                .iter()
                .map(|(name, mbps)| Site {
                    name: (*name).to_owned(),
                    uplink_mbps: Some(*mbps),
                })
                .collect(),
            rtt_ms: PAPER_RTT_MS[..n]
                .iter()
                .map(|row| row[..n].to_vec())
                .collect(),
            loss: 0.0,
        })
    }

    /// Sites with the given round trips (milliseconds, a square symmetric
    /// matrix with a zero diagonal) and no uplink limits.
    pub fn new(names: &[&str], rtt_ms: Vec<Vec<f64>>) -> Result<Topology, String> {
        let n = names.len();
        if rtt_ms.len() != n || rtt_ms.iter().any(|row| row.len() != n) {
            return Err(format!("the round-trip matrix must be {n}x{n}"));
        }
        for a in 0..n {
            for b in 0..n {
                let v = rtt_ms[a][b];
                if !v.is_finite() || v < 0.0 || v != rtt_ms[b][a] || (a == b && v != 0.0) {
                    return Err(format!(
                        "round trip {}-{}: {v} ms; the matrix must be symmetric, finite, non-negative, zero on the diagonal",
                        names[a], names[b]
                    ));
                }
            }
        }
        Ok(Topology {
            sites: names
                .iter()
                .map(|name| Site {
                    name: (*name).to_owned(),
                    uplink_mbps: None,
                })
                .collect(),
            rtt_ms,
            loss: 0.0,
        })
    }

    /// The same, with `loss` (0 to 0.5) on every link.
    pub fn with_loss(mut self, loss: f64) -> Result<Topology, String> {
        if !(0.0..=0.5).contains(&loss) {
            return Err(format!("loss {loss}: must be 0 to 0.5"));
        }
        self.loss = loss;
        Ok(self)
    }

    /// The same, without uplink limits.
    pub fn without_rates(mut self) -> Topology {
        for s in &mut self.sites {
            s.uplink_mbps = None;
        }
        self
    }

    /// The site named `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.sites.iter().position(|s| s.name == name)
    }

    /// The round trip between sites `a` and `b`.
    pub fn rtt(&self, a: usize, b: usize) -> Duration {
        Duration::from_secs_f64(self.rtt_ms[a][b] / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_topology_is_symmetric_and_bad_ones_are_refused() {
        let t = Topology::paper(4).expect("four sites");
        assert_eq!(t.rtt(0, 3), Duration::from_millis(90));
        assert_eq!(t.rtt(3, 0), t.rtt(0, 3));
        assert_eq!(t.sites[3].uplink_mbps, Some(30.0));
        assert!(Topology::paper(5).is_err());
        assert!(Topology::new(&["a", "b"], vec![vec![0.0, 1.0], vec![2.0, 0.0]]).is_err());
        assert!(Topology::new(&["a"], vec![vec![1.0]]).is_err());
        assert!(Topology::paper(2).expect("two").with_loss(0.9).is_err());
    }
}
