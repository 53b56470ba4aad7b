//! What an edge server has to offer right now: CPU cores and load, memory,
//! disk and network throughput, and its CPU architecture.
//!
//! The placement engine reads these to know what remains on each server
//! (the cost model's M_e, C_e, S_e, V_e and eta_e). Network throughput is the
//! difference of two readings of the interfaces' byte counters over a known
//! interval, as the paper measures it.
//!
//! Main types: [`ServerStatus`] (one reading, serialisable for the wire and
//! `edgehost status --json`) and [`Sampler`] (keeps the previous counters so a
//! daemon can refresh the status periodically without sleeping).
//!
//! It only reads; it does not decide, store or send anything.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sysinfo::{Disks, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// Time constant of the smoothing of [`ServerStatus::process_cpu_percent`]:
/// a burst (a compile, a migration) lasting a second moves it by a few
/// percent, a load that lasts a minute shows in full.
pub const CPU_SMOOTHING: Duration = Duration::from_secs(30);

/// Time constant of [`ServerStatus::process_cpu_recent_percent`]: long
/// enough to hide one busy heartbeat, short enough that a load which has
/// ended stops counting within seconds, where the
/// [`CPU_SMOOTHING`] figure still carries it for a minute.
pub const CPU_RECENT: Duration = Duration::from_secs(5);

/// One reading of a server's resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// CPU architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// Operating system (`linux`, `macos`).
    pub os: String,
    /// The CPU features Cranelift uses when it compiles for this machine
    /// (`sse4.2`, `avx2`, `bmi2`, ... on x86_64; `lse`, `fp16`, ... on
    /// aarch64), as detected at run time.
    #[serde(default)]
    pub cpu_features: Vec<String>,
    /// Measured speed of one core, gigacycles per second: a fixed workload
    /// timed when the host starts, against the reference machine, rounded
    /// to an octave class so that hosts on alike machines price alike
    /// ([`measure_core_gcps`]). 0 when not measured.
    #[serde(default)]
    pub core_gcps: f64,
    /// Logical CPU cores.
    pub cpu_cores: u32,
    /// CPU busy over the sampling interval, 0-100 across all cores.
    pub cpu_usage_percent: f32,
    /// CPU this host's own process used, smoothed over about
    /// [`CPU_SMOOTHING`]; 100 is one core busy.
    #[serde(default)]
    pub process_cpu_percent: f32,
    /// The same, smoothed over about [`CPU_RECENT`]: what the process uses
    /// now. A load counts as the host's once both figures show it.
    #[serde(default)]
    pub process_cpu_recent_percent: f32,
    /// One-minute load average (0 where the OS has none).
    pub load_1m: f64,
    /// Total memory, bytes.
    pub memory_total_bytes: u64,
    /// Memory available to new work, bytes.
    pub memory_free_bytes: u64,
    /// Size of the disk holding the host's data directory, bytes.
    pub disk_total_bytes: u64,
    /// Free space on that disk, bytes.
    pub disk_free_bytes: u64,
    /// Bytes received per second over the interval, all non-loopback interfaces.
    pub net_rx_bytes_per_sec: f64,
    /// Bytes sent per second over the interval, all non-loopback interfaces.
    pub net_tx_bytes_per_sec: f64,
    /// The interval the rates were measured over, milliseconds.
    pub sample_ms: u64,
}

/// Telemetry could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading telemetry: {0}")]
pub struct Error(String);

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ServerStatus {
    /// Takes two readings `interval` apart and returns the status. Blocks
    /// for `interval` (at least 200 ms, the shortest span over which CPU
    /// usage means something).
    pub fn sample(data_dir: &Path, interval: Duration) -> Result<Self> {
        let mut sampler = Sampler::new(data_dir, None)?;
        std::thread::sleep(interval.max(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL));
        sampler.read()
    }
}

/// Keeps the counters of the previous reading, so each [`Sampler::read`]
/// measures rates since the last one.
pub struct Sampler {
    system: System,
    networks: Networks,
    disks: Disks,
    data_dir: std::path::PathBuf,
    last: Instant,
    /// This process, and its CPU time at the previous reading, ms.
    pid: Option<Pid>,
    cpu_ms: Option<u64>,
    /// The smoothed process CPU, percent of one core: over
    /// [`CPU_SMOOTHING`] and over [`CPU_RECENT`].
    process_cpu: Option<(f64, f64)>,
    /// [`ServerStatus::core_gcps`] and [`ServerStatus::cpu_features`]:
    /// they do not change while the host runs.
    core_gcps: f64,
    cpu_features: Vec<String>,
}

impl Sampler {
    /// Takes the first reading; rates are measured from now. The speed of
    /// a core is `core_gcps` when given (an operator's figure), else
    /// measured here ([`measure_core_gcps`]).
    pub fn new(data_dir: &Path, core_gcps: Option<f64>) -> Result<Self> {
        let mut system = System::new().map_err(|e| Error(e.to_string()))?;
        system.refresh_cpu_usage();
        let networks = Networks::new_with_refreshed_list().map_err(|e| Error(e.to_string()))?;
        let disks = Disks::new_with_refreshed_list().map_err(|e| Error(e.to_string()))?;
        Ok(Sampler {
            system,
            networks,
            disks,
            data_dir: data_dir.to_owned(),
            last: Instant::now(),
            pid: sysinfo::get_current_pid().ok(),
            cpu_ms: None,
            process_cpu: None,
            core_gcps: core_gcps.unwrap_or_else(measure_core_gcps),
            cpu_features: cpu_features(),
        })
    }

    /// Reads the current status, with rates over the time since the
    /// previous reading.
    pub fn read(&mut self) -> Result<ServerStatus> {
        let elapsed = self.last.elapsed();
        self.last = Instant::now();
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.networks.refresh(true);
        self.disks.refresh(true);

        let seconds = elapsed.as_secs_f64().max(1e-3);
        let (mut rx, mut tx) = (0u64, 0u64);
        for (name, data) in self.networks.iter() {
            if name == "lo" || name.to_string_lossy().starts_with("lo0") {
                continue;
            }
            rx = rx.saturating_add(data.received());
            tx = tx.saturating_add(data.transmitted());
        }

        let (disk_total, disk_free) = disk_of(&self.disks, &self.data_dir);
        let (process_cpu, process_cpu_recent) = self.process_cpu(elapsed);
        Ok(ServerStatus {
            arch: std::env::consts::ARCH.to_owned(),
            os: std::env::consts::OS.to_owned(),
            cpu_features: self.cpu_features.clone(),
            core_gcps: self.core_gcps,
            cpu_cores: u32::try_from(self.system.cpus().len()).unwrap_or(u32::MAX),
            cpu_usage_percent: self.system.global_cpu_usage(),
            process_cpu_percent: process_cpu as f32,
            process_cpu_recent_percent: process_cpu_recent as f32,
            load_1m: System::load_average().map(|l| l.one).unwrap_or(0.0),
            memory_total_bytes: self.system.total_memory(),
            memory_free_bytes: self.system.available_memory(),
            disk_total_bytes: disk_total,
            disk_free_bytes: disk_free,
            net_rx_bytes_per_sec: rx as f64 / seconds,
            net_tx_bytes_per_sec: tx as f64 / seconds,
            sample_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// This process's CPU use since the previous reading, folded into the
    /// smoothed figures (over [`CPU_SMOOTHING`], over [`CPU_RECENT`]);
    /// percent of one core.
    fn process_cpu(&mut self, elapsed: Duration) -> (f64, f64) {
        let last = self.process_cpu.unwrap_or((0.0, 0.0));
        let Some(pid) = self.pid else {
            return last;
        };
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_cpu(),
        );
        let Some(now) = self.system.process(pid).map(|p| p.accumulated_cpu_time()) else {
            return last;
        };
        let before = self.cpu_ms.replace(now);
        let Some(before) = before else {
            return last;
        };
        let span_ms = elapsed.as_secs_f64() * 1e3;
        if span_ms <= 0.0 {
            return last;
        }
        let sample = now.saturating_sub(before) as f64 / span_ms * 100.0;
        // From zero: the start-up's compiles are a burst like any other.
        let fold = |old: f64, over: Duration| {
            let weight = 1.0 - (-elapsed.as_secs_f64() / over.as_secs_f64()).exp();
            old + weight * (sample - old)
        };
        let smoothed = (fold(last.0, CPU_SMOOTHING), fold(last.1, CPU_RECENT));
        self.process_cpu = Some(smoothed);
        smoothed
    }
}

/// The CPU features that matter to Cranelift's code for this machine.
pub fn cpu_features() -> Vec<String> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! detect {
            ($($f:tt),*) => {
                $(if std::arch::is_x86_feature_detected!($f) {
                    out.push($f.to_owned());
                })*
            };
        }
        detect!(
            "sse3",
            "ssse3",
            "sse4.1",
            "sse4.2",
            "popcnt",
            "avx",
            "avx2",
            "bmi1",
            "bmi2",
            "lzcnt",
            "fma",
            "avx512f",
            "avx512vl",
            "avx512dq",
            "avx512bitalg",
            "avx512vbmi"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! detect {
            ($($f:tt),*) => {
                $(if std::arch::is_aarch64_feature_detected!($f) {
                    out.push($f.to_owned());
                })*
            };
        }
        detect!("lse", "fp16", "paca", "bti");
    }
    out
}

/// Rounds a measured speed ratio to its octave class (..., 0.25, 0.5, 1,
/// 2, 4, ...): alike machines report the same figure despite the noise of
/// a measurement (a neighbour's load on a shared cache slows the workload
/// by tens of percent; a class reaches 29% below and 41% above), and a machine
/// several times slower is clearly apart.
pub fn speed_class(ratio: f64) -> f64 {
    if !(ratio.is_finite() && ratio > 0.0) {
        return 0.0;
    }
    2f64.powf(ratio.log2().round())
}

/// The model's nominal core, gigacycles per second: what a core of the
/// reference machine counts as.
pub const NOMINAL_CORE_GCPS: f64 = 2.0;

/// Keys in the measured sort.
const SORT_KEYS: usize = 1 << 16;

/// What the measured sort takes on one core of the reference machine
/// (docs/BENCHMARKS.md: x86_64, Debian 12), milliseconds.
const REFERENCE_SORT_MS: f64 = 0.76;

/// The speed of one core of this machine, gigacycles per second: the
/// nominal core's [`NOMINAL_CORE_GCPS`] times the speed class of this
/// machine against the reference one on a fixed workload, a sort of 64K
/// pseudo-random keys (memory, branches and arithmetic, like an agent's
/// own code and the compiler's), fastest of fifteen runs. Under qemu-user
/// an aarch64 build measures about a fifth of this machine's speed.
pub fn measure_core_gcps() -> f64 {
    // Once per process: hosts that share a process (tests, benches) share
    // one machine, and so one figure.
    static MEASURED: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *MEASURED.get_or_init(measure_once)
}

fn measure_once() -> f64 {
    let mut best = f64::INFINITY;
    // The fastest of many short runs: one of them finds the core idle even
    // while other processes start beside this one.
    for _ in 0..15 {
        let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15_u64);
        let mut keys: Vec<u64> = (0..SORT_KEYS)
            .map(|_| {
                x = x
                    .wrapping_mul(0x5851_f42d_4c95_7f2d)
                    .wrapping_add(0x1405_7b7e_f767_814f);
                x >> 11
            })
            .collect();
        let start = Instant::now();
        keys.sort_unstable();
        std::hint::black_box(&keys);
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
        std::thread::yield_now();
    }
    NOMINAL_CORE_GCPS * speed_class(REFERENCE_SORT_MS / best)
}

/// Total and free bytes of the disk whose mount point is the longest prefix
/// of `path` (the disk the data directory lives on).
fn disk_of(disks: &Disks, path: &Path) -> (u64, u64) {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    disks
        .iter()
        .filter(|d| path.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| (d.total_space(), d.available_space()))
        .unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_classes_are_octaves() {
        assert_eq!(speed_class(1.0), 1.0);
        assert_eq!(speed_class(1.3), 1.0);
        assert_eq!(speed_class(0.75), 1.0);
        assert_eq!(speed_class(1.5), 2.0);
        assert_eq!(speed_class(0.22), 0.25);
        assert_eq!(speed_class(0.0), 0.0);
        assert_eq!(speed_class(f64::NAN), 0.0);
    }

    #[test]
    fn the_core_speed_is_measured_and_features_are_named() {
        let gcps = measure_core_gcps();
        // Any machine that runs the tests is between a slow board under
        // emulation and the fastest core there is, in whole classes.
        assert!((0.05..20.0).contains(&gcps), "{gcps}");
        let class = gcps / NOMINAL_CORE_GCPS;
        assert!(
            (class.log2() * 2.0 - (class.log2() * 2.0).round()).abs() < 0.02,
            "{gcps}"
        );
        let features = cpu_features();
        if cfg!(target_arch = "x86_64") {
            // x86_64 itself guarantees SSE2; every machine since 2008 has SSE3.
            assert!(features.iter().any(|f| f == "sse3"), "{features:?}");
        }
        assert!(features.iter().all(|f| !f.is_empty() && f.len() < 16));
    }

    #[test]
    fn a_reading_is_plausible() {
        let status = ServerStatus::sample(Path::new("."), Duration::from_millis(200))
            .expect("telemetry reads on this machine");
        assert!(status.cpu_cores >= 1);
        assert!(status.memory_total_bytes > 0);
        assert!(status.memory_free_bytes <= status.memory_total_bytes);
        assert!(status.disk_total_bytes > 0, "{status:?}");
        assert!(status.disk_free_bytes <= status.disk_total_bytes);
        assert!(status.net_rx_bytes_per_sec >= 0.0 && status.net_tx_bytes_per_sec >= 0.0);
        assert!((0.0..=100.0).contains(&status.cpu_usage_percent));
        assert!(status.sample_ms >= 200);
        assert_eq!(status.arch, std::env::consts::ARCH);
    }
}
