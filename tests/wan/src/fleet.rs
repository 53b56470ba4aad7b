//! A fleet on an emulated WAN: `edgehost up`, each host advertising its
//! site's front of the relay, so every byte between two hosts crosses the
//! emulated link between their sites. No root needed: everything runs on
//! loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::relay::Wan;
use crate::topology::Topology;

/// A fleet behind a relay; dropping it stops the fleet (SIGTERM to `edgehost
/// up`, which stops its hosts) and then the relay.
pub struct WanFleet {
    /// The fleet's files: `client.toml`, each host's directory and log.
    pub dir: PathBuf,
    /// The relay.
    pub wan: Wan,
    up: Option<Child>,
    _temp: Option<tempfile::TempDir>,
}

impl WanFleet {
    /// Starts a relay for `topology` and a fleet of one host per site
    /// behind it, with the `edgehost` binary `edgehost`; `up_args` go to
    /// `edgehost up` as they are. The fleet's files go to `dir`, or a
    /// temporary directory removed on drop. Returns once every host
    /// serves.
    pub async fn start(
        edgehost: &Path,
        topology: Topology,
        seed: u64,
        dir: Option<PathBuf>,
        up_args: &[String],
    ) -> Result<WanFleet> {
        let (dir, temp) = match dir {
            Some(d) => {
                std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
                (d, None)
            }
            None => {
                let t = tempfile::tempdir().context("creating a temporary directory")?;
                (t.path().to_owned(), Some(t))
            }
        };
        let sites: Vec<String> = topology.sites.iter().map(|s| s.name.clone()).collect();
        let wan = Wan::start(topology, seed)
            .await
            .context("starting the relay")?;
        let mut command = Command::new(edgehost);
        command
            .arg("up")
            .arg(sites.len().to_string())
            .arg("--dir")
            .arg(&dir);
        for (i, name) in sites.iter().enumerate() {
            command
                .arg("--advertise")
                .arg(format!("{name}={}", wan.front(i)));
        }
        let log = std::fs::File::create(dir.join("up.log"))?;
        let up = command
            .args(up_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} up", edgehost.display()))?;
        let mut fleet = WanFleet {
            dir,
            wan,
            up: Some(up),
            _temp: temp,
        };
        // Each host's front forwards as soon as its configuration names
        // its address, while the others still start.
        let mut attached = vec![false; sites.len()];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            for (i, name) in sites.iter().enumerate() {
                if !attached[i]
                    && let Some(addr) = listen_address(&fleet.dir.join(name).join("host.toml"))
                {
                    fleet.wan.attach(i, addr);
                    attached[i] = true;
                }
            }
            if attached.iter().all(|a| *a) && fleet.dir.join("ready").exists() {
                return Ok(fleet);
            }
            if let Some(up) = &mut fleet.up
                && let Some(status) = up.try_wait()?
            {
                let log = std::fs::read_to_string(fleet.dir.join("up.log")).unwrap_or_default();
                bail!(
                    "edgehost up exited ({status}): {}",
                    log.lines().last().unwrap_or("no output")
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the fleet did not come up within 180 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The operator's client configuration.
    pub fn client_config(&self) -> PathBuf {
        self.dir.join("client.toml")
    }

    /// Whether `edgehost up` still runs.
    pub fn running(&mut self) -> bool {
        self.up
            .as_mut()
            .is_some_and(|up| matches!(up.try_wait(), Ok(None)))
    }

    /// Stops the fleet: SIGTERM to `edgehost up`, which stops its hosts;
    /// SIGKILL after 15 s.
    pub fn stop(&mut self) {
        let Some(mut up) = self.up.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(up.id().to_string())
            .status();
        for _ in 0..300 {
            if let Ok(Some(_)) = up.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = up.kill();
        let _ = up.wait();
    }
}

impl Drop for WanFleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `listen` address in a host configuration, once it is written.
fn listen_address(config: &Path) -> Option<std::net::SocketAddr> {
    let text = std::fs::read_to_string(config).ok()?;
    let value: toml::Value = toml::from_str(&text).ok()?;
    value.get("listen")?.as_str()?.parse().ok()
}
