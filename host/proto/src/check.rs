//! What a decoded message must satisfy before anything acts on it.
//!
//! postcard gives back any value its types can hold; this module narrows
//! that to what the fleet means. Names and addresses are checked by their
//! types as they decode ([`crate::AgentName`], [`crate::HostName`],
//! `SocketAddr`); what is left is every number from a peer's report, which
//! must be finite and in its range (one peer's NaN or zero must not make
//! every placement in the fleet fail), and the size of configurations.
//! [`crate::decode`] runs these checks, so a message that fails them is
//! refused like one that does not decode.

use crate::{
    AgentReport, Error, HostReport, MAX_PROBE_BYTES, MAX_REVOCATION_LIST_BYTES, PeerView, Request,
    Response, Result, ServerStatus,
};

/// A message with rules beyond its types.
pub trait Checked {
    /// Checks the rules; the error says which field broke which.
    fn check(&self) -> Result<()>;
}

/// A finite number within `[min, max]`.
fn number(what: &str, value: f64, min: f64, max: f64) -> Result<()> {
    if value.is_finite() && value >= min && value <= max {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} is {value}, outside [{min}, {max}]"
        )))
    }
}

/// A report's list of `what` holds at most `max` entries.
fn at_most(what: &str, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(Error::Invalid(format!(
            "a report describes {len} {what}, over the limit of {max}"
        )));
    }
    Ok(())
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
        return Err(Error::Invalid(format!(
            "{} configuration entries, more than {MAX_PAIRS}",
            pairs.len()
        )));
    }
    for (k, v) in pairs {
        if k.is_empty() || k.len() > MAX_KEY || v.len() > MAX_VALUE {
            return Err(Error::Invalid(format!(
                "configuration entry {:?} is empty or too long",
                k.chars().take(40).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// Fastest and slowest core speeds a report may claim, gigacycles per second.
const MAX_CORE_GCPS: f64 = 1000.0;
const MIN_CORE_GCPS: f64 = 0.01;
/// Most CPU feature names in a report, and the longest name.
const MAX_CPU_FEATURES: usize = 64;
const MAX_CPU_FEATURE_LEN: usize = 32;

impl Checked for ServerStatus {
    fn check(&self) -> Result<()> {
        number(
            "cpu_usage_percent",
            f64::from(self.cpu_usage_percent),
            0.0,
            100.0 * f64::from(self.cpu_cores.max(1)),
        )?;
        for (what, figure) in [
            ("process_cpu_percent", self.process_cpu_percent),
            (
                "process_cpu_recent_percent",
                self.process_cpu_recent_percent,
            ),
        ] {
            number(
                what,
                f64::from(figure),
                0.0,
                100.0 * f64::from(self.cpu_cores.max(1)),
            )?;
        }
        non_negative("load_1m", self.load_1m)?;
        non_negative("net_rx_bytes_per_sec", self.net_rx_bytes_per_sec)?;
        non_negative("net_tx_bytes_per_sec", self.net_tx_bytes_per_sec)?;
        if self.cpu_cores == 0 {
            return Err(Error::Invalid("cpu_cores is 0".into()));
        }
        number("core_gcps", self.core_gcps, 0.0, MAX_CORE_GCPS)?;
        // 0 says "not measured"; anything else is a speed a server can have,
        // never one that prices its compute as infinite.
        if self.core_gcps != 0.0 && self.core_gcps < MIN_CORE_GCPS {
            return Err(Error::Invalid(format!(
                "core_gcps {} is below {MIN_CORE_GCPS} (0 for not measured)",
                self.core_gcps
            )));
        }
        if self.cpu_features.len() > MAX_CPU_FEATURES
            || self
                .cpu_features
                .iter()
                .any(|f| f.is_empty() || f.len() > MAX_CPU_FEATURE_LEN)
        {
            return Err(Error::Invalid(format!(
                "cpu_features: at most {MAX_CPU_FEATURES} names of 1 to {MAX_CPU_FEATURE_LEN} bytes"
            )));
        }
        Ok(())
    }
}

impl Checked for AgentReport {
    fn check(&self) -> Result<()> {
        non_negative("uptime_s", self.uptime_s)?;
        if let Some(ms) = self.wake_ms {
            number("wake_ms", ms, 0.0, MAX_FIGURE_MS)?;
        }
        self.processing.as_ref().map_or(Ok(()), Checked::check)
    }
}

/// The longest duration a figure may claim, milliseconds (a day), and the
/// largest size (a petabyte): beyond these a figure is garbage, and sums of
/// several could overflow to infinity in the cost model.
pub const MAX_FIGURE_MS: f64 = 86_400_000.0;
/// See [`MAX_FIGURE_MS`].
pub const MAX_FIGURE_SIZE: f64 = 1e15;

impl Checked for crate::Estimate {
    fn check(&self) -> Result<()> {
        number(
            "an estimate's mean size",
            self.mean_size,
            0.0,
            MAX_FIGURE_SIZE,
        )?;
        number(
            "an estimate's mean duration",
            self.mean_ms,
            0.0,
            MAX_FIGURE_MS,
        )?;
        number("an estimate's spread", self.spread_ms, 0.0, MAX_FIGURE_MS)?;
        // A slope so small it is zero, or so steep a byte takes a day, is
        // not a measurement.
        if self.ms_per_unit != 0.0 && !(1e-15..=MAX_FIGURE_MS).contains(&self.ms_per_unit) {
            return Err(Error::Invalid(format!(
                "an estimate's slope is {}, outside [1e-15, {MAX_FIGURE_MS}]",
                self.ms_per_unit
            )));
        }
        Ok(())
    }
}

impl Checked for crate::HostModel {
    fn check(&self) -> Result<()> {
        let figures = [
            &self.export,
            &self.import,
            &self.start,
            &self.compile,
            &self.cache_load,
            &self.llm,
        ];
        for figure in figures.into_iter().flatten() {
            figure.check()?;
        }
        at_most("links", self.links.len(), crate::MAX_LINKS)?;
        for link in &self.links {
            non_negative("a link's round-trip time", link.rtt_ms)?;
            link.send.as_ref().map_or(Ok(()), Checked::check)?;
        }
        at_most(
            "components",
            self.components.len(),
            crate::MAX_COMPONENT_MODELS,
        )?;
        for c in &self.components {
            for figure in [&c.export, &c.import, &c.start].into_iter().flatten() {
                figure.check()?;
            }
        }
        Ok(())
    }
}

impl Checked for HostReport {
    fn check(&self) -> Result<()> {
        number("latitude", self.location.lat, -90.0, 90.0)?;
        number("longitude", self.location.lon, -180.0, 180.0)?;
        // Zero bandwidth makes every transfer infinite: refused like NaN.
        number("bandwidth_mbps", self.bandwidth_mbps, 1e-3, 1e9)?;
        non_negative("uptime_s", self.uptime_s)?;
        self.status.check()?;
        self.model.check()?;
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
            Request::Deploy { config: c, .. } | Request::Prepare { config: c, .. } => config(c),
            Request::Heartbeat(report) => report.check(),
            Request::Place {
                algorithm: Some(algorithm),
                ..
            } if algorithm.is_empty()
                || algorithm.len() > 32
                || !algorithm
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                Err(Error::Invalid(
                    "algorithm must be a name such as antllm or greedy".into(),
                ))
            }
            Request::Place {
                requires_arch: Some(arch),
                ..
            } if arch.is_empty()
                || arch.len() > 32
                || !arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                Err(Error::Invalid(
                    "requires_arch must be an architecture name such as aarch64".into(),
                ))
            }
            Request::Revocations { list } if list.len() > MAX_REVOCATION_LIST_BYTES => {
                Err(Error::Invalid(format!(
                    "a revocation list of {} bytes is over the {MAX_REVOCATION_LIST_BYTES}-byte limit",
                    list.len()
                )))
            }
            Request::Probe { padding } if padding.len() > MAX_PROBE_BYTES => {
                Err(Error::Invalid(format!(
                    "a probe of {} bytes is over the {MAX_PROBE_BYTES}-byte limit",
                    padding.len()
                )))
            }
            _ => Ok(()),
        }
    }
}

impl Checked for Response {
    fn check(&self) -> Result<()> {
        match self {
            Response::Status(report) => report.check(),
            Response::Fleet(views) => views.iter().try_for_each(Checked::check),
            Response::Prepared {
                model,
                initiation_ms,
                compile_ms,
                ..
            } => {
                number("initiation_ms", *initiation_ms, 0.0, MAX_FIGURE_MS)?;
                number("compile_ms", *compile_ms, 0.0, MAX_FIGURE_MS)?;
                model.check()
            }
            // The source times the transfer net of this.
            Response::Transferred { load_ms } => number("load_ms", *load_ms, 0.0, MAX_FIGURE_MS),
            // The rest is read by people (through the CLI), not acted on;
            // its names and addresses are checked by their types.
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_become_paths_do_not_decode() {
        use crate::{AgentName, decode, encode};
        #[derive(serde::Serialize)]
        enum Raw {
            #[allow(dead_code)]
            Status,
            #[allow(dead_code)]
            Fleet,
            #[allow(dead_code)]
            Has,
            #[allow(dead_code)]
            Upload,
            #[allow(dead_code)]
            Deploy,
            #[allow(dead_code)]
            Invoke,
            Release {
                name: String,
            },
        }
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
            let frame = encode(&Raw::Release { name: bad.into() }).unwrap();
            let err = decode::<Request>(&frame).unwrap_err();
            assert!(matches!(err, Error::Malformed(_)), "{bad:?}: {err}");
        }
        let frame = encode(&Raw::Release {
            name: "memory-1".into(),
        })
        .unwrap();
        assert!(
            matches!(decode::<Request>(&frame), Ok(Request::Release { name }) if name == AgentName::new("memory-1").unwrap())
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
