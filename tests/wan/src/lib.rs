//! A WAN on one machine, for edgehost's tests and experiments: not part of
//! the product.
//!
//! The kernel here has no `netem`, so delay, loss and rate come from a
//! user-space UDP relay ([`relay`]): each site has a front that its host
//! advertises, and every datagram between two hosts crosses the emulated
//! link between their sites ([`topology`]: the paper's four cities by
//! default). [`fleet`] starts `edgehost up` behind it, without root, or,
//! with root, each host in a network namespace of its own whose uplink is a
//! `tbf` queue ([`netns`]); [`cleanup`] undoes either on a signal. And
//! [`experiment`] runs the paper's experiment on such fleets with real
//! agents, writing CSV and tables ([`results`]) and charts ([`charts`]).

pub mod charts;
pub mod cleanup;
pub mod experiment;
pub mod fleet;
pub mod netns;
pub mod relay;
pub mod results;
pub mod topology;

pub use fleet::WanFleet;
pub use relay::{Counters, Wan};
pub use topology::{Site, Topology};

/// Runs `program` with `args` to its end; its error output, if it fails,
/// is the error.
pub(crate) fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let program = program.as_ref();
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.to_string_lossy()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{} {}: {}",
            program.to_string_lossy(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
