//! Seeded instances in the paper's experimental setting: edge servers in
//! Beijing, Shanghai, Guiyang and Singapore running content-based image
//! retrieval (CBIR) tasks made of dependent agents.
//!
//! The same configuration and seed always give the same instance. Servers
//! beyond the first four come from a fixed list of further cities, then
//! from a deterministic spiral of synthetic sites; their positions never
//! depend on the seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cost::CostParams;
use crate::model::{Agent, Dependency, Instance, Resources, Server, Site, Task};
use crate::topology::{GeoParams, Topology};
use crate::{Error, Result};

/// Reference latitude of the projection used for all sites, degrees.
const REFERENCE_LAT: f64 = 25.0;

/// Named sites in order: the paper's four, then further cities of the region.
const CITIES: &[(&str, f64, f64)] = &[
    ("beijing", 39.90, 116.40),
    ("shanghai", 31.23, 121.47),
    ("guiyang", 26.65, 106.63),
    ("singapore", 1.35, 103.82),
    ("hong-kong", 22.32, 114.17),
    ("chengdu", 30.67, 104.06),
    ("wuhan", 30.59, 114.31),
    ("xian", 34.34, 108.94),
    ("hangzhou", 30.27, 120.16),
    ("tokyo", 35.68, 139.69),
    ("seoul", 37.57, 126.98),
    ("bangkok", 13.76, 100.50),
    ("kuala-lumpur", 3.139, 101.69),
    ("jakarta", -6.21, 106.85),
    ("manila", 14.60, 120.98),
    ("taipei", 25.03, 121.57),
    ("hanoi", 21.03, 105.85),
    ("shenyang", 41.81, 123.43),
];

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioConfig {
    /// Number of edge servers.
    pub servers: usize,
    /// Number of CBIR tasks (ignored when `agents` is set).
    pub tasks: usize,
    /// Generate tasks until exactly this many agents exist (the last task
    /// is cut short), instead of a fixed number of tasks.
    pub agents: Option<usize>,
    /// Most concurrent agents per server (the paper uses 10).
    pub max_agents_per_server: usize,
    /// Multiplies every server's memory, disk, bandwidth and cores; 1 is
    /// the paper's setting.
    pub capacity_scale: f64,
    /// Fraction of the agents whose state already lives on their user's
    /// server (a session in progress), in `[0, 1]`; the others start cold.
    /// Placing a warm agent elsewhere is a migration (eq. 3), so at 0 no
    /// plan migrates anything.
    #[serde(default = "default_warm")]
    pub warm_fraction: f64,
}

fn default_warm() -> f64 {
    ScenarioConfig::default().warm_fraction
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        Self {
            servers: 4,
            tasks: 2,
            agents: None,
            max_agents_per_server: 10,
            capacity_scale: 1.0,
            warm_fraction: 0.5,
        }
    }
}

/// The generator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scenario {
    /// What it generates.
    pub config: ScenarioConfig,
}

/// A CBIR role: name, whether it is always present, and ranges for memory
/// GB, storage GB, bandwidth Mbit/s, compute Gcyc, state MB, LLM seconds.
struct Role {
    name: &'static str,
    presence: f64,
    memory_gb: (f64, f64),
    storage_gb: (f64, f64),
    bandwidth_mbps: (f64, f64),
    compute_gcyc: (f64, f64),
    state_mb: (f64, f64),
    llm_s: (f64, f64),
}

const ROLES: &[Role] = &[
    Role {
        name: "planner",
        presence: 1.0,
        memory_gb: (0.10, 0.20),
        storage_gb: (0.5, 1.0),
        bandwidth_mbps: (0.5, 1.0),
        compute_gcyc: (1.0, 3.0),
        state_mb: (5.0, 15.0),
        llm_s: (1.5, 3.0),
    },
    Role {
        name: "ingest",
        presence: 1.0,
        memory_gb: (0.10, 0.20),
        storage_gb: (1.0, 3.0),
        bandwidth_mbps: (2.0, 4.0),
        compute_gcyc: (3.0, 8.0),
        state_mb: (2.0, 8.0),
        llm_s: (0.0, 0.0),
    },
    Role {
        name: "features",
        presence: 1.0,
        memory_gb: (0.20, 0.40),
        storage_gb: (1.0, 3.0),
        bandwidth_mbps: (1.0, 2.0),
        compute_gcyc: (10.0, 25.0),
        state_mb: (10.0, 40.0),
        llm_s: (0.0, 0.0),
    },
    Role {
        name: "index",
        presence: 0.7,
        memory_gb: (0.15, 0.30),
        storage_gb: (2.0, 8.0),
        bandwidth_mbps: (0.5, 1.5),
        compute_gcyc: (3.0, 8.0),
        state_mb: (20.0, 60.0),
        llm_s: (0.0, 0.0),
    },
    Role {
        name: "retriever",
        presence: 1.0,
        memory_gb: (0.10, 0.20),
        storage_gb: (0.5, 1.5),
        bandwidth_mbps: (1.0, 2.0),
        compute_gcyc: (4.0, 10.0),
        state_mb: (5.0, 15.0),
        llm_s: (0.0, 0.0),
    },
    Role {
        name: "reranker",
        presence: 0.6,
        memory_gb: (0.08, 0.16),
        storage_gb: (0.2, 1.0),
        bandwidth_mbps: (0.5, 1.0),
        compute_gcyc: (1.0, 3.0),
        state_mb: (5.0, 15.0),
        llm_s: (1.0, 2.5),
    },
    Role {
        name: "reporter",
        presence: 0.7,
        memory_gb: (0.06, 0.12),
        storage_gb: (0.2, 0.5),
        bandwidth_mbps: (0.3, 0.8),
        compute_gcyc: (0.5, 2.0),
        state_mb: (3.0, 10.0),
        llm_s: (1.5, 3.0),
    },
];

const PROMPTS: &[&str] = &[
    "Find product photos similar to these shelf images and list the matching SKUs.",
    "Retrieve earlier frames that show the same vehicle as this camera batch.",
    "Which catalogue pictures look most like the attached sketches? Rank the top ten.",
    "Match these drone images of the field against last season's survey.",
    "Find near-duplicate images in this upload and summarise what they show.",
];

fn draw(rng: &mut ChaCha8Rng, (lo, hi): (f64, f64)) -> f64 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// Site of server `k`: a named city, or a point on a golden-angle spiral
/// around the region's centre once the named cities run out.
fn site(k: usize) -> (String, Site) {
    if let Some(&(name, lat, lon)) = CITIES.get(k) {
        return (
            name.to_string(),
            Site::from_degrees(lat, lon, REFERENCE_LAT),
        );
    }
    let centre = Site::from_degrees(25.0, 112.0, REFERENCE_LAT);
    let i = (k - CITIES.len()) as f64;
    let angle = i * 2.399_963_229_728_653;
    let radius = 300.0 + 250.0 * i.sqrt();
    (
        format!("site-{k}"),
        Site {
            x_km: centre.x_km + radius * angle.cos(),
            y_km: centre.y_km + radius * angle.sin(),
        },
    )
}

impl Scenario {
    /// A generator for `config`.
    pub fn new(config: ScenarioConfig) -> Self {
        Self { config }
    }

    /// The instance for `seed`.
    pub fn generate(&self, seed: u64) -> Result<Instance> {
        let c = self.config;
        if c.servers == 0 || !(c.capacity_scale.is_finite() && c.capacity_scale > 0.0) {
            return Err(Error::InvalidParameters(
                "a scenario needs at least one server and a positive capacity scale".into(),
            ));
        }
        if !(0.0..=1.0).contains(&c.warm_fraction) {
            return Err(Error::InvalidParameters(format!(
                "the warm fraction must be in [0, 1]: {}",
                c.warm_fraction
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let scale = c.capacity_scale;
        let mut servers = Vec::with_capacity(c.servers);
        for k in 0..c.servers {
            let (name, site) = site(k);
            // Singapore's profile (70 GB, 30 Mbit/s) for the fourth server
            // and every fourth one after it; the others are the paper's
            // 40 GB, 20 Mbit/s machines.
            let (disk_gb, peak_mbps) = if k % 4 == 3 {
                (70.0, 30.0)
            } else {
                (40.0, 20.0)
            };
            // Cores scale with the capacity; the cast is exact for any sane scale.
            let cores = ((2.0 * scale).round() as u32).max(1);
            let capacity = Resources::new(2.0 * scale, disk_gb * scale, peak_mbps * scale);
            let used = Resources::new(
                draw(&mut rng, (0.2, 0.4)),
                draw(&mut rng, (4.0, 10.0)),
                draw(&mut rng, (0.0, 2.0)),
            );
            servers.push(Server {
                name,
                arch: String::new(),
                site,
                capacity,
                used,
                cores,
                compute_gcps: 2.5 * f64::from(cores),
                cpu_busy: draw(&mut rng, (0.05, 0.30)),
                eta_mbps: peak_mbps * scale * draw(&mut rng, (0.85, 1.0)),
                max_agents: c.max_agents_per_server,
                hosted: 0,
            });
        }
        let sites: Vec<Site> = servers.iter().map(|s| s.site).collect();
        let etas: Vec<f64> = servers.iter().map(|s| s.eta_mbps).collect();
        let topology = Topology::from_sites(&sites, &etas, GeoParams::default())?;

        let mut agents: Vec<Agent> = Vec::new();
        let mut tasks: Vec<Task> = Vec::new();
        let want_agents = c.agents;
        let mut t = 0;
        loop {
            match want_agents {
                Some(n) if agents.len() >= n => break,
                None if t >= c.tasks => break,
                _ => {}
            }
            let user_server = rng.random_range(0..c.servers);
            let file_mb = draw(&mut rng, (20.0, 120.0));
            let prompt = PROMPTS[rng.random_range(0..PROMPTS.len())].to_string();
            let mut members: Vec<(&'static str, usize)> = Vec::new();
            for role in ROLES {
                let present = role.presence >= 1.0 || rng.random::<f64>() < role.presence;
                if !present {
                    continue;
                }
                if want_agents.is_some_and(|n| agents.len() >= n) {
                    break;
                }
                let index = agents.len();
                let mut depends_on = Vec::new();
                let mut dep = |name: &str, volume_mb: f64| {
                    if let Some(&(_, i)) = members.iter().find(|(n, _)| *n == name) {
                        depends_on.push(Dependency {
                            agent: i,
                            volume_mb,
                        });
                    }
                };
                match role.name {
                    "ingest" => dep("planner", 0.05),
                    "features" => dep("ingest", file_mb * draw(&mut rng, (0.1, 0.3))),
                    "index" => dep("features", draw(&mut rng, (1.0, 3.0))),
                    "retriever" => {
                        dep("features", draw(&mut rng, (0.5, 2.0)));
                        dep("index", draw(&mut rng, (1.0, 4.0)));
                    }
                    "reranker" => dep("retriever", draw(&mut rng, (0.5, 2.0))),
                    "reporter" => {
                        let upstream = if members.iter().any(|(n, _)| *n == "reranker") {
                            "reranker"
                        } else {
                            "retriever"
                        };
                        dep(upstream, draw(&mut rng, (0.1, 0.5)));
                        dep("planner", 0.05);
                    }
                    _ => {}
                }
                // Some agents already keep their memory on the user's server
                // (a session in progress); the rest start cold. The draw is
                // made at every fraction, so the rest of the scenario does
                // not change with it.
                let origin =
                    (rng.random::<f64>() < self.config.warm_fraction).then_some(user_server);
                agents.push(Agent {
                    name: format!("t{t}.{}", role.name),
                    task: t,
                    demand: Resources::new(
                        draw(&mut rng, role.memory_gb),
                        draw(&mut rng, role.storage_gb),
                        draw(&mut rng, role.bandwidth_mbps),
                    ),
                    compute_gcyc: draw(&mut rng, role.compute_gcyc),
                    state_mb: draw(&mut rng, role.state_mb),
                    llm_s: draw(&mut rng, role.llm_s),
                    depends_on,
                    origin,
                    requires_arch: None,
                });
                members.push((role.name, index));
            }
            tasks.push(Task {
                name: format!("t{t}"),
                prompt,
                file_mb,
                agents: members.iter().map(|&(_, i)| i).collect(),
                user_server,
            });
            t += 1;
        }
        let instance = Instance {
            agents,
            servers,
            tasks,
            topology,
            params: CostParams::default(),
        };
        instance.validate()?;
        Ok(instance)
    }
}

/// A two-server, two-agent instance small enough to price by hand; the
/// tests of this crate and its documentation use it.
///
/// * server 0 `alpha` at (0, 0): 2 GB, 40 GB, 20 Mbit/s, eta 20 Mbit/s,
///   2 cores at 4 Gcyc/s in all, idle, nothing hosted;
/// * server 1 `beta` at (1000 km, 0): 1 GB, 40 GB, 30 Mbit/s, eta 30 Mbit/s,
///   1 core at 2 Gcyc/s, half busy, one agent hosted;
/// * agent 0 `planner`: 0.6 GB, 1 GB, 2 Mbit/s, 4 Gcyc, 10 MB of state on
///   server 0, 2 s of LLM time;
/// * agent 1 `worker`: 0.6 GB, 5 GB, 3 Mbit/s, 6 Gcyc, 30 MB of state on
///   server 0, exchanges 5 MB with the planner;
/// * one task: a 19-byte prompt, a 50 MB file, user on server 0.
pub fn tiny_instance() -> Instance {
    let alpha = Site {
        x_km: 0.0,
        y_km: 0.0,
    };
    let beta = Site {
        x_km: 1000.0,
        y_km: 0.0,
    };
    let server = |name: &str, site, memory_gb, bw, compute_gcps, cores, cpu_busy, hosted| Server {
        name: name.to_string(),
        arch: String::new(),
        site,
        capacity: Resources::new(memory_gb, 40.0, bw),
        used: Resources::default(),
        cores,
        compute_gcps,
        cpu_busy,
        eta_mbps: bw,
        max_agents: 10,
        hosted,
    };
    let servers = vec![
        server("alpha", alpha, 2.0, 20.0, 4.0, 2, 0.0, 0),
        server("beta", beta, 1.0, 30.0, 2.0, 1, 0.5, 1),
    ];
    let agent = |name: &str, demand, compute_gcyc, state_mb, llm_s, depends_on| Agent {
        name: name.to_string(),
        task: 0,
        demand,
        compute_gcyc,
        state_mb,
        llm_s,
        depends_on,
        origin: Some(0),
        requires_arch: None,
    };
    let agents = vec![
        agent(
            "planner",
            Resources::new(0.6, 1.0, 2.0),
            4.0,
            10.0,
            2.0,
            vec![],
        ),
        agent(
            "worker",
            Resources::new(0.6, 5.0, 3.0),
            6.0,
            30.0,
            0.0,
            vec![Dependency {
                agent: 0,
                volume_mb: 5.0,
            }],
        ),
    ];
    let tasks = vec![Task {
        name: "search".into(),
        prompt: "find similar images".into(),
        file_mb: 50.0,
        agents: vec![0, 1],
        user_server: 0,
    }];
    // Two sites and two bandwidths always make a valid topology.
    let topology = match Topology::from_sites(&[alpha, beta], &[20.0, 30.0], GeoParams::default()) {
        Ok(t) => t,
        Err(e) => unreachable!("fixed topology is valid: {e}"),
    };
    Instance {
        agents,
        servers,
        tasks,
        topology,
        params: CostParams::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_setting_matches_the_paper() {
        let inst = Scenario::default().generate(1).expect("scenario");
        let names: Vec<&str> = inst.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["beijing", "shanghai", "guiyang", "singapore"]);
        for s in &inst.servers {
            assert_eq!(s.cores, 2);
            assert_eq!(s.capacity.memory_gb, 2.0);
            assert_eq!(s.max_agents, 10);
        }
        assert_eq!(inst.servers[0].capacity.storage_gb, 40.0);
        assert_eq!(inst.servers[0].capacity.bandwidth_mbps, 20.0);
        assert_eq!(inst.servers[3].capacity.storage_gb, 70.0);
        assert_eq!(inst.servers[3].capacity.bandwidth_mbps, 30.0);
        assert_eq!(inst.tasks.len(), 2);
        assert!(
            (8..=14).contains(&inst.agents.len()),
            "{}",
            inst.agents.len()
        );
        // Beijing-Singapore is thousands of km: more hops than Beijing-Shanghai.
        assert!(inst.topology.hops(0, 3) > inst.topology.hops(0, 1));
    }

    #[test]
    fn same_seed_same_instance_and_extra_sites_are_fixed() {
        let cfg = ScenarioConfig {
            servers: 30,
            tasks: 3,
            ..ScenarioConfig::default()
        };
        let a = Scenario::new(cfg).generate(7).expect("scenario");
        assert_eq!(a, Scenario::new(cfg).generate(7).expect("scenario"));
        let b = Scenario::new(cfg).generate(8).expect("scenario");
        assert_ne!(a, b);
        let sites_a: Vec<_> = a.servers.iter().map(|s| (&s.name, s.site)).collect();
        let sites_b: Vec<_> = b.servers.iter().map(|s| (&s.name, s.site)).collect();
        assert_eq!(sites_a, sites_b);
        assert_eq!(a.servers[29].name, "site-29");
    }

    #[test]
    fn exact_agent_count() {
        let inst = Scenario::new(ScenarioConfig {
            agents: Some(200),
            ..ScenarioConfig::default()
        })
        .generate(1)
        .expect("scenario");
        assert_eq!(inst.agents.len(), 200);
    }
}
