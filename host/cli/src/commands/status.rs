//! `edgehost status`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use edgehost_telemetry::ServerStatus;

/// Show this machine's resources.
#[derive(Args)]
pub struct StatusCommand {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// How long to measure CPU usage and network throughput, milliseconds
    /// (at least 200).
    #[arg(long, default_value_t = 500)]
    sample_ms: u64,
    /// The directory whose disk is reported (the host's data directory).
    #[arg(long, default_value = ".")]
    data_dir: PathBuf,
}

impl StatusCommand {
    /// Samples and prints the status.
    pub fn execute(self) -> Result<()> {
        let s = ServerStatus::sample(&self.data_dir, Duration::from_millis(self.sample_ms))?;
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&s)?);
            return Ok(());
        }
        const MIB: f64 = 1024.0 * 1024.0;
        const GIB: f64 = 1024.0 * MIB;
        outln!("arch:     {} ({})", s.arch, s.os);
        outln!(
            "cpu:      {} cores at {:.2} Gcycles/s each (measured), {:.1}% busy, load {:.2}",
            s.cpu_cores,
            s.core_gcps,
            s.cpu_usage_percent,
            s.load_1m
        );
        outln!("features: {}", s.cpu_features.join(" "));
        outln!(
            "memory:   {:.2} GiB free of {:.2} GiB",
            s.memory_free_bytes as f64 / GIB,
            s.memory_total_bytes as f64 / GIB
        );
        outln!(
            "disk:     {:.1} GiB free of {:.1} GiB",
            s.disk_free_bytes as f64 / GIB,
            s.disk_total_bytes as f64 / GIB
        );
        outln!(
            "network:  {:.3} MiB/s in, {:.3} MiB/s out (over {} ms)",
            s.net_rx_bytes_per_sec / MIB,
            s.net_tx_bytes_per_sec / MIB,
            s.sample_ms
        );
        Ok(())
    }
}
