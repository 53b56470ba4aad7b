//! Hop counts H(e, e') and communication times T_comm(e, e') between servers.
//!
//! A topology is built either from server sites (Euclidean distance turned
//! into a round-trip time and a hop count, as the paper does) or from a
//! measured round-trip-time and bandwidth matrix, which is what a running
//! fleet has.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A point on the plane in kilometres; topologies built from sites use the
/// Euclidean distance between these.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// East-west coordinate, km.
    pub x_km: f64,
    /// North-south coordinate, km.
    pub y_km: f64,
}

impl Site {
    /// Projects a latitude/longitude (degrees) onto the plane with an
    /// equirectangular projection around `reference_lat` degrees, which is
    /// accurate enough for distances across one region.
    pub fn from_degrees(lat: f64, lon: f64, reference_lat: f64) -> Self {
        const EARTH_RADIUS_KM: f64 = 6371.0;
        Self {
            x_km: EARTH_RADIUS_KM * lon.to_radians() * reference_lat.to_radians().cos(),
            y_km: EARTH_RADIUS_KM * lat.to_radians(),
        }
    }

    /// Euclidean distance, km.
    pub fn distance_km(self, other: Self) -> f64 {
        (self.x_km - other.x_km).hypot(self.y_km - other.y_km)
    }
}

/// How distances between sites become delays and hops.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeoParams {
    /// Signal speed in fibre, km/s (about two thirds of light speed).
    pub fibre_km_per_s: f64,
    /// Real routes are longer than the straight line; this factor says how much.
    pub route_factor: f64,
    /// Kilometres per router hop, used to turn a distance into H(e, e').
    pub km_per_hop: f64,
    /// Processing delay added per hop, seconds.
    pub per_hop_s: f64,
}

impl Default for GeoParams {
    fn default() -> Self {
        Self {
            fibre_km_per_s: 200_000.0,
            route_factor: 1.5,
            km_per_hop: 800.0,
            per_hop_s: 0.001,
        }
    }
}

/// Server-to-server links: hop counts, round-trip times and bandwidths, all
/// dense `n x n` matrices stored row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    n: usize,
    hops: Vec<u32>,
    rtt_s: Vec<f64>,
    bandwidth_mbps: Vec<f64>,
}

impl Topology {
    /// Builds a topology from server sites and server bandwidths: the RTT is
    /// twice the routed distance over fibre speed plus a delay per hop, the
    /// hop count is one plus one per `km_per_hop`, and a link's bandwidth is
    /// the smaller of its two ends' `eta_mbps`.
    pub fn from_sites(sites: &[Site], eta_mbps: &[f64], geo: GeoParams) -> Result<Self> {
        let n = sites.len();
        if eta_mbps.len() != n {
            return Err(Error::InvalidInstance(
                "one bandwidth per site is needed".into(),
            ));
        }
        let mut hops = vec![0; n * n];
        let mut rtt_s = vec![0.0; n * n];
        let mut bandwidth_mbps = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let k = i * n + j;
                bandwidth_mbps[k] = eta_mbps[i].min(eta_mbps[j]);
                if i == j {
                    continue;
                }
                let d = sites[i].distance_km(sites[j]);
                // The cast is safe: distances are finite and far below u32::MAX hops.
                let h = 1 + (d / geo.km_per_hop).floor() as u32;
                hops[k] = h;
                rtt_s[k] =
                    2.0 * d * geo.route_factor / geo.fibre_km_per_s + geo.per_hop_s * f64::from(h);
            }
        }
        let topology = Self {
            n,
            hops,
            rtt_s,
            bandwidth_mbps,
        };
        topology.validate()?;
        Ok(topology)
    }

    /// Builds a topology from measurements: `rtt_s[i][j]` round-trip times in
    /// seconds, `bandwidth_mbps[i][j]` achievable bandwidths, and hop counts
    /// (from traceroute, say). Diagonals are ignored: co-located agents talk
    /// through memory.
    pub fn from_measurements(
        rtt_s: &[Vec<f64>],
        bandwidth_mbps: &[Vec<f64>],
        hops: &[Vec<u32>],
    ) -> Result<Self> {
        let n = rtt_s.len();
        fn square<T>(m: &[Vec<T>], n: usize) -> bool {
            m.len() == n && m.iter().all(|row| row.len() == n)
        }
        if !square(bandwidth_mbps, n) || !square(hops, n) || !square(rtt_s, n) {
            return Err(Error::InvalidInstance(
                "measurement matrices must all be n x n".into(),
            ));
        }
        let topology = Self {
            n,
            hops: hops.iter().flatten().copied().collect(),
            rtt_s: rtt_s.iter().flatten().copied().collect(),
            bandwidth_mbps: bandwidth_mbps.iter().flatten().copied().collect(),
        };
        topology.validate()?;
        Ok(topology)
    }

    fn validate(&self) -> Result<()> {
        for i in 0..self.n {
            for j in 0..self.n {
                if i == j {
                    continue;
                }
                let k = i * self.n + j;
                if !self.rtt_s[k].is_finite()
                    || self.rtt_s[k] < 0.0
                    || !self.bandwidth_mbps[k].is_finite()
                    || self.bandwidth_mbps[k] <= 0.0
                {
                    return Err(Error::InvalidInstance(format!(
                        "link {i} -> {j} has an invalid RTT or bandwidth"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the topology has no servers.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Hop count H(e, e'); zero on the diagonal.
    pub fn hops(&self, from: usize, to: usize) -> u32 {
        if from == to {
            0
        } else {
            self.hops[from * self.n + to]
        }
    }

    /// Round-trip time between two servers, seconds; zero on the diagonal.
    pub fn rtt_s(&self, from: usize, to: usize) -> f64 {
        if from == to {
            0.0
        } else {
            self.rtt_s[from * self.n + to]
        }
    }

    /// Achievable bandwidth between two distinct servers, Mbit/s.
    pub fn bandwidth_mbps(&self, from: usize, to: usize) -> f64 {
        self.bandwidth_mbps[from * self.n + to]
    }

    /// T_comm(e, e'): time to exchange `volume_mb` between two servers,
    /// seconds — one round trip plus the volume over the link bandwidth.
    /// Zero when both ends are the same server.
    pub fn comm_time_s(&self, from: usize, to: usize, volume_mb: f64) -> f64 {
        if from == to {
            return 0.0;
        }
        let k = from * self.n + to;
        self.rtt_s[k] + volume_mb * 8.0 / self.bandwidth_mbps[k]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_give_symmetric_links_and_zero_diagonal() {
        let sites = [
            Site {
                x_km: 0.0,
                y_km: 0.0,
            },
            Site {
                x_km: 1000.0,
                y_km: 0.0,
            },
        ];
        let t = Topology::from_sites(&sites, &[20.0, 30.0], GeoParams::default())
            .expect("valid topology");
        assert_eq!(t.hops(0, 0), 0);
        // 1000 km at 800 km per hop: one base hop plus one.
        assert_eq!(t.hops(0, 1), 2);
        // RTT: 2 * 1000 km * 1.5 / 200000 km/s = 0.015 s, plus 2 hops * 1 ms.
        assert!((t.rtt_s(0, 1) - 0.017).abs() < 1e-12);
        // 10 MB over min(20, 30) Mbit/s = 4 s, plus the round trip.
        assert!((t.comm_time_s(1, 0, 10.0) - 4.017).abs() < 1e-12);
        assert_eq!(t.comm_time_s(1, 1, 10.0), 0.0);
    }

    #[test]
    fn measurements_must_be_square() {
        let err = Topology::from_measurements(&[vec![0.0, 0.1]], &[vec![1.0]], &[vec![0]]);
        assert!(err.is_err());
        let ok = Topology::from_measurements(
            &[vec![0.0, 0.1], vec![0.1, 0.0]],
            &[vec![0.0, 10.0], vec![10.0, 0.0]],
            &[vec![0, 3], vec![3, 0]],
        )
        .expect("square matrices");
        assert_eq!(ok.hops(0, 1), 3);
        assert!((ok.comm_time_s(0, 1, 1.25) - 1.1).abs() < 1e-12);
    }
}
