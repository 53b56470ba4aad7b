//! `edgehost up`: a whole fleet on this machine, for demos and tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use edgehost_fleet::identity::{Role, init_fleet, issue};

/// Start N hosts on loopback with a throwaway fleet CA.
///
/// Writes the CA, certificates, one configuration per host and a client
/// configuration into DIR (a temporary directory by default, removed on
/// exit), starts `edgehost serve` for each host, waits until all answer,
/// then runs until Ctrl-C or SIGTERM and stops them.
#[derive(Args)]
pub struct UpCommand {
    /// How many hosts.
    #[arg(value_parser = clap::value_parser!(u16).range(1..=32))]
    count: u16,
    /// Where to put the fleet's files (kept on exit when given).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Heartbeat period of the hosts, milliseconds.
    #[arg(long, default_value_t = 500)]
    heartbeat_ms: u64,
    /// The most agents each host keeps awake at once; each holds up to
    /// 1,000, the idle ones hibernating.
    #[arg(long, default_value_t = 10)]
    max_agents: u32,
    /// ALM's horizon: requests over which a latency saving is counted
    /// against the one-off cost of a move.
    #[arg(long, default_value_t = 20.0)]
    alm_horizon: f64,
    /// How many of the hosts (the last ones) run the aarch64 build of
    /// edgehost, under qemu-user's `qemu-aarch64` on an x86_64 machine: a
    /// mixed ARM/x86 fleet on one machine.
    #[arg(long, default_value_t = 0, value_name = "N")]
    arm: u16,
    /// The aarch64 edgehost binary for the `--arm` hosts (default: the
    /// cross-built one in this binary's target directory,
    /// `aarch64-unknown-linux-gnu/{release,debug}/edgehost`).
    #[arg(long, value_name = "FILE", env = "EDGEHOST_ARM_BINARY")]
    arm_binary: Option<PathBuf>,
    /// The address the host NAME tells its peers to reach it at, instead
    /// of the one it listens on: a NAT's, or a relay's that emulates a
    /// wide-area link (repeatable).
    #[arg(long, value_name = "NAME=ADDR")]
    advertise: Vec<String>,
}

/// `NAME=ADDR` pairs, each NAME one of the fleet's hosts.
fn advertised(pairs: &[String], names: &[String]) -> Result<Vec<Option<std::net::SocketAddr>>> {
    let mut out = vec![None; names.len()];
    for pair in pairs {
        let Some((name, addr)) = pair.split_once('=') else {
            bail!("--advertise {pair:?}: expected NAME=ADDR");
        };
        let Some(i) = names.iter().position(|n| n == name) else {
            bail!(
                "--advertise {pair:?}: no host named {name:?} in this fleet ({})",
                names.join(", ")
            );
        };
        let addr = addr
            .parse()
            .with_context(|| format!("--advertise {pair:?}: {addr:?} is not an address"))?;
        out[i] = Some(addr);
    }
    Ok(out)
}

/// How an ARM host is started: the program and the arguments before `serve`.
fn arm_launcher(binary: Option<&Path>, exe: &Path) -> Result<(PathBuf, Vec<String>)> {
    if std::env::consts::ARCH == "aarch64" {
        // On an ARM machine the ARM hosts are this very binary.
        return Ok((binary.unwrap_or(exe).to_owned(), Vec::new()));
    }
    let binary = match binary {
        Some(b) => b.to_owned(),
        None => {
            let target_dir = exe
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."));
            ["release", "debug"]
                .iter()
                .map(|profile| {
                    target_dir
                        .join("aarch64-unknown-linux-gnu")
                        .join(profile)
                        .join("edgehost")
                })
                .find(|p| p.is_file())
                .with_context(|| {
                    format!(
                        "--arm needs an aarch64 build of edgehost: cross-build it with `cargo build --release --target aarch64-unknown-linux-gnu -p edgehost` (see the README) or pass --arm-binary FILE; none under {}",
                        target_dir.join("aarch64-unknown-linux-gnu").display()
                    )
                })?
        }
    };
    if !binary.is_file() {
        bail!("--arm-binary {}: no such file", binary.display());
    }
    let qemu = find_on_path("qemu-aarch64").context(
        "--arm needs qemu-aarch64 to run ARM hosts on this machine: apt install qemu-user",
    )?;
    // Debian's cross libc (libc6-arm64-cross) is where the ARM binary's
    // dynamic loader and libraries are.
    let mut args = Vec::new();
    let sysroot = Path::new("/usr/aarch64-linux-gnu");
    if sysroot.is_dir() {
        args.push("-L".to_owned());
        args.push(sysroot.display().to_string());
    }
    args.push(binary.display().to_string());
    Ok((qemu, args))
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The paper's four sites first, then further ones spread deterministically.
fn site(i: usize) -> (String, f64, f64, f64) {
    const SITES: [(&str, f64, f64, f64); 4] = [
        ("beijing", 39.90, 116.40, 20.0),
        ("shanghai", 31.23, 121.47, 20.0),
        ("guiyang", 26.65, 106.63, 20.0),
        ("singapore", 1.35, 103.82, 30.0),
    ];
    match SITES.get(i) {
        Some((name, lat, lon, bw)) => ((*name).to_owned(), *lat, *lon, *bw),
        None => (
            format!("edge-{i}"),
            20.0 + (i as f64 * 7.3) % 25.0,
            100.0 + (i as f64 * 11.9) % 25.0,
            20.0,
        ),
    }
}

fn free_udp_port() -> Result<u16> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(socket.local_addr()?.port())
}

struct Fleet {
    children: Vec<(String, Child)>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            // SIGTERM first, for a clean shutdown; SIGKILL if it lingers.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl UpCommand {
    /// Sets up and runs the fleet.
    pub fn execute(self) -> Result<()> {
        let (dir, _temp) = match &self.dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::tempdir().context("creating a temporary directory")?;
                (t.path().to_owned(), Some(t))
            }
        };
        let ca_dir = dir.join("ca");
        init_fleet(&ca_dir, "local").context("creating the fleet CA")?;
        let ports: Vec<u16> = (0..self.count)
            .map(|_| free_udp_port())
            .collect::<Result<_>>()?;
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let names: Vec<String> = (0..usize::from(self.count)).map(|i| site(i).0).collect();
        let advertised = advertised(&self.advertise, &names)?;
        // Where peers reach each host.
        let reach: Vec<String> = addrs
            .iter()
            .zip(&advertised)
            .map(|(addr, adv)| adv.map_or_else(|| addr.clone(), |a| a.to_string()))
            .collect();

        if self.arm > self.count {
            bail!(
                "--arm {} is more than the {} host(s) of the fleet",
                self.arm,
                self.count
            );
        }
        let exe = std::env::current_exe().context("locating the edgehost binary")?;
        let arm = if self.arm > 0 {
            Some(arm_launcher(self.arm_binary.as_deref(), &exe)?)
        } else {
            None
        };
        let first_arm = usize::from(self.count - self.arm);
        // The native hosts share this machine, so they share one
        // measurement of its speed (taken here, once) rather than each
        // timing itself while the others start. Emulated hosts measure
        // their own.
        let native_gcps = edgehost_telemetry::measure_core_gcps();
        let mut fleet = Fleet {
            children: Vec::new(),
        };
        for i in 0..usize::from(self.count) {
            let (name, lat, lon, bw) = site(i);
            let host_dir = dir.join(&name);
            std::fs::create_dir_all(&host_dir)?;
            issue(&ca_dir, &host_dir, &name, Role::Host)?;
            // Every host knows one seed; the rest is learned from heartbeats.
            let seed = if i == 0 { reach.get(1) } else { reach.first() };
            let peers = seed.map(|s| format!("\"{s}\"")).unwrap_or_default();
            let config = format!(
                "name = \"{name}\"\nlisten = \"{addr}\"\ndata_dir = \"data\"\nca = \"../ca/ca.pem\"\ncert = \"{name}.pem\"\nkey = \"{name}.key\"\npeers = [{peers}]\nheartbeat_ms = {hb}\n\n[labels]\nsite = \"{name}\"\nlat = {lat}\nlon = {lon}\nbandwidth_mbps = {bw}\n\n[limits]\nmax_agents = {max}\n\n[alm]\nhorizon_requests = {horizon}\n",
                addr = addrs[i],
                hb = self.heartbeat_ms,
                max = self.max_agents,
                horizon = self.alm_horizon,
            );
            let mut config = config;
            if let Some(adv) = advertised[i] {
                config = config.replace(
                    "\ndata_dir = ",
                    &format!("\nadvertise = \"{adv}\"\ndata_dir = "),
                );
            }
            if native_gcps > 0.0 && (arm.is_none() || i < first_arm) {
                config = config.replace(
                    "\n[limits]\n",
                    &format!("core_gcps = {native_gcps}\n\n[limits]\n"),
                );
            }
            let config_path = host_dir.join("host.toml");
            std::fs::write(&config_path, config)?;
            let log = std::fs::File::create(host_dir.join("host.log"))?;
            let mut command = match (&arm, i >= first_arm) {
                (Some((program, args)), true) => {
                    let mut c = Command::new(program);
                    c.args(args);
                    c
                }
                _ => Command::new(&exe),
            };
            let child = command
                .arg("serve")
                .arg("--config")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .env(
                    "EDGEHOST_LOG",
                    std::env::var("EDGEHOST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .spawn()
                .context("starting edgehost serve")?;
            std::fs::write(host_dir.join("pid"), child.id().to_string())?;
            fleet.children.push((name, child));
        }

        issue(&ca_dir, &dir, "operator", Role::Operator)?;
        issue(&ca_dir, &dir, "viewer", Role::Viewer)?;
        let hosts = addrs
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let client_config = dir.join("client.toml");
        std::fs::write(
            &client_config,
            format!(
                "ca = \"ca/ca.pem\"\ncert = \"operator.pem\"\nkey = \"operator.key\"\nhosts = [{hosts}]\n"
            ),
        )?;
        // A read-only configuration, for `ps`, `events` and the dashboard.
        std::fs::write(
            dir.join("viewer.toml"),
            format!(
                "ca = \"ca/ca.pem\"\ncert = \"viewer.pem\"\nkey = \"viewer.key\"\nhosts = [{hosts}]\n"
            ),
        )?;

        // An emulated host starts several times slower.
        let limit = Duration::from_secs(if self.arm > 0 { 180 } else { 60 });
        wait_until_up(&mut fleet, &dir, limit)?;
        outln!("fleet of {} host(s) up:", self.count);
        for (i, (name, child)) in fleet.children.iter().enumerate() {
            let arch = if arm.is_some() && i >= first_arm {
                "aarch64"
            } else {
                std::env::consts::ARCH
            };
            outln!(
                "  {name:<10} {} {arch:<7} (pid {}, log {})",
                addrs[i],
                child.id(),
                dir.join(name).join("host.log").display()
            );
        }
        outln!("client configuration: {}", client_config.display());
        outln!(
            "read-only configuration (dashboard): {}",
            dir.join("viewer.toml").display()
        );
        outln!("export EDGEHOST_CLIENT_CONFIG={}", client_config.display());
        // Marks the fleet as ready for scripts that wait on it.
        std::fs::write(dir.join("ready"), b"")?;

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            tokio::select! {
                () = super::serve::shutdown_signal() => {}
                () = watch_children(&mut fleet) => {}
            }
        });
        drop(fleet);
        Ok(())
    }
}

/// Waits until every host has printed its serving line, failing if one exits.
fn wait_until_up(fleet: &mut Fleet, dir: &Path, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let mut ready = 0;
        for (name, child) in &mut fleet.children {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.join(name.as_str()).join("host.log"))
                    .unwrap_or_default();
                let last = log.lines().last().unwrap_or("").to_owned();
                bail!("host {name} exited ({status}) while starting: {last}");
            }
            let log = std::fs::read_to_string(dir.join(name.as_str()).join("host.log"))
                .unwrap_or_default();
            if log.contains("edgehost serving") {
                ready += 1;
            }
        }
        if ready == fleet.children.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the hosts did not start within {} s; see the logs in {}",
                limit.as_secs(),
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reports hosts that exit on their own; the others keep running (a fleet
/// survives the loss of a host). Never completes.
async fn watch_children(fleet: &mut Fleet) {
    let mut reported = std::collections::HashSet::new();
    loop {
        for (name, child) in &mut fleet.children {
            if let Ok(Some(status)) = child.try_wait()
                && reported.insert(name.clone())
            {
                eprintln!("host {name} exited ({status})");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
