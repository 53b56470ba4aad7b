//! What a decoded message must satisfy before anything acts on it.
//!
//! postcard gives back any value its types can hold; this module narrows
//! that to what the fleet means. Every agent and host name is a valid
//! identity name (so no name can become a path, a second name or an empty
//! key), every address parses, and every number from a peer's report is
//! finite and in its range: one peer's NaN or zero must not make every
//! placement in the fleet fail. [`super::decode`] runs these checks, so a
//! message that fails them is refused like one that does not decode.

use std::net::SocketAddr;

use edgehost_telemetry::ServerStatus;

use super::{AgentReport, HostReport, PeerView, Request, Response};
use crate::identity::check_name;
use crate::{Error, Result};

/// A message with rules beyond its types.
pub trait Checked {
    /// Checks the rules; the error says which field broke which.
    fn check(&self) -> Result<()>;
}

fn name(what: &str, value: &str) -> Result<()> {
    check_name(value).map_err(|_| {
        let shown: String = value.chars().take(80).collect();
        Error::Protocol(format!(
            "{what} {shown:?} is not a valid name (1-63 of a-z, 0-9 and '-', not starting or ending with '-')"
        ))
    })
}

fn addr(what: &str, value: &str) -> Result<()> {
    value.parse::<SocketAddr>().map(|_| ()).map_err(|_| {
        let shown: String = value.chars().take(80).collect();
        Error::Protocol(format!("{what} {shown:?} is not a socket address"))
    })
}

/// A finite number within `[min, max]`.
fn number(what: &str, value: f64, min: f64, max: f64) -> Result<()> {
    if value.is_finite() && value >= min && value <= max {
        Ok(())
    } else {
        Err(Error::Protocol(format!(
            "{what} is {value}, outside [{min}, {max}]"
        )))
    }
}

fn non_negative(what: &str, value: f64) -> Result<()> {
    number(what, value, 0.0, f64::MAX)
}

/// Config pairs an agent is started with: bounded, so a request cannot
/// smuggle a megabyte into every record.
fn config(pairs: &[(String, String)]) -> Result<()> {
    const MAX_PAIRS: usize = 256;
    const MAX_KEY: usize = 256;
    const MAX_VALUE: usize = 64 << 10;
    if pairs.len() > MAX_PAIRS {
        return Err(Error::Protocol(format!(
            "{} configuration entries, more than {MAX_PAIRS}",
            pairs.len()
        )));
    }
    for (k, v) in pairs {
        if k.is_empty() || k.len() > MAX_KEY || v.len() > MAX_VALUE {
            return Err(Error::Protocol(format!(
                "configuration entry {:?} is empty or too long",
                k.chars().take(40).collect::<String>()
            )));
        }
    }
    Ok(())
}

impl Checked for ServerStatus {
    fn check(&self) -> Result<()> {
        number(
            "cpu_usage_percent",
            f64::from(self.cpu_usage_percent),
            0.0,
            100.0 * f64::from(self.cpu_cores.max(1)),
        )?;
        non_negative("load_1m", self.load_1m)?;
        non_negative("net_rx_bytes_per_sec", self.net_rx_bytes_per_sec)?;
        non_negative("net_tx_bytes_per_sec", self.net_tx_bytes_per_sec)?;
        if self.cpu_cores == 0 {
            return Err(Error::Protocol("cpu_cores is 0".into()));
        }
        Ok(())
    }
}

impl Checked for AgentReport {
    fn check(&self) -> Result<()> {
        name("agent", &self.name)?;
        non_negative("uptime_s", self.uptime_s)
    }
}

impl Checked for HostReport {
    fn check(&self) -> Result<()> {
        name("host", &self.name)?;
        addr("address", &self.addr)?;
        number("latitude", self.location.lat, -90.0, 90.0)?;
        number("longitude", self.location.lon, -180.0, 180.0)?;
        // Zero bandwidth makes every transfer infinite: refused like NaN.
        number("bandwidth_mbps", self.bandwidth_mbps, 1e-3, 1e9)?;
        non_negative("uptime_s", self.uptime_s)?;
        self.status.check()?;
        for agent in &self.agents {
            agent.check()?;
        }
        Ok(())
    }
}

impl Checked for PeerView {
    fn check(&self) -> Result<()> {
        non_negative("last_seen_s", self.last_seen_s)?;
        self.report.check()
    }
}

impl Checked for Request {
    fn check(&self) -> Result<()> {
        match self {
            Request::Status
            | Request::Fleet
            | Request::Events
            | Request::Has { .. }
            | Request::Upload { .. }
            | Request::Place { .. }
            | Request::SetPolicy { .. } => Ok(()),
            Request::Deploy {
                name: n, config: c, ..
            } => {
                name("agent", n)?;
                config(c)
            }
            Request::Invoke {
                name: n, caller, ..
            } => {
                name("agent", n)?;
                match caller {
                    Some(c) => name("calling agent", c),
                    None => Ok(()),
                }
            }
            Request::Release { name: n }
            | Request::Precopy { name: n, .. }
            | Request::Transfer { name: n, .. }
            | Request::Commit { name: n, .. }
            | Request::Abort { name: n, .. }
            | Request::Outcome { name: n, .. } => name("agent", n),
            Request::Heartbeat(report) => report.check(),
            Request::Migrate { name: n, to } => {
                name("agent", n)?;
                name("host", to)
            }
            Request::Prepare {
                name: n,
                config: c,
                source,
                ..
            } => {
                name("agent", n)?;
                config(c)?;
                addr("source", source)
            }
            Request::Attach { agent, host } => {
                name("agent", agent)?;
                name("host", host)
            }
            Request::Revocations { list } => {
                if list.len() > crate::revocation::MAX_LIST_BYTES {
                    Err(Error::Protocol(format!(
                        "a revocation list of {} bytes is over the {}-byte limit",
                        list.len(),
                        crate::revocation::MAX_LIST_BYTES
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }
}

impl Checked for Response {
    fn check(&self) -> Result<()> {
        match self {
            Response::Status(report) => report.check(),
            Response::Fleet(views) => views.iter().try_for_each(Checked::check),
            Response::Invoked { host, .. } => name("host", host),
            // The rest is read by people (through the CLI), not acted on.
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_become_paths_are_refused() {
        let long = "a".repeat(10_000);
        for bad in [
            "",
            "..",
            "../../x",
            "/etc/passwd",
            "a/b",
            "a\0b",
            "A",
            long.as_str(),
        ] {
            let request = Request::Release { name: bad.into() };
            assert!(request.check().is_err(), "{bad:?}");
            let request = Request::Commit {
                name: bad.into(),
                epoch: 2,
            };
            assert!(request.check().is_err(), "{bad:?}");
        }
        assert!(
            Request::Release {
                name: "memory-1".into()
            }
            .check()
            .is_ok()
        );
    }

    #[test]
    fn numbers_from_peers_are_finite_and_in_range() {
        assert!(number("x", f64::NAN, 0.0, 1.0).is_err());
        assert!(number("x", f64::INFINITY, 0.0, f64::MAX).is_err());
        assert!(number("x", -1.0, 0.0, 1.0).is_err());
        assert!(number("x", 0.5, 0.0, 1.0).is_ok());
    }
}
