//! What a host has measured about itself and its links, as it travels in
//! its reports: the figures that replace the cost model's constants.
//!
//! Every figure is an [`Estimate`]: an exponentially weighted straight-line
//! fit of a duration (milliseconds) against a size (bytes, or tokens), with
//! its sample count and spread. A figure a host has not measured yet is
//! `None`, and whoever prices with it falls back to the documented default
//! and says so.

use serde::{Deserialize, Serialize};

use crate::{Digest, HostName};

/// The most links one report may describe: one per peer, so a report stays
/// small even in a large fleet.
pub const MAX_LINKS: usize = 1024;

/// The most components one report describes figures for.
pub const MAX_COMPONENT_MODELS: usize = 256;

/// A fitted line `ms = mean_ms + ms_per_unit * (size - mean_size)`, kept
/// as exponentially weighted moments of the samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Weighted mean size of the samples (bytes, or tokens).
    pub mean_size: f64,
    /// Weighted mean duration, milliseconds.
    pub mean_ms: f64,
    /// Milliseconds per unit of size: the slope of the fit.
    pub ms_per_unit: f64,
    /// Standard deviation of the samples around the fit, milliseconds.
    pub spread_ms: f64,
    /// How many samples it has seen.
    pub samples: u64,
}

impl Estimate {
    /// The fitted duration for `size`, milliseconds; never negative.
    pub fn predict_ms(&self, size: f64) -> f64 {
        (self.mean_ms + self.ms_per_unit * (size - self.mean_size)).max(0.0)
    }

    /// The fitted fixed part: the duration at size zero, milliseconds.
    pub fn base_ms(&self) -> f64 {
        self.predict_ms(0.0)
    }
}

/// What a host measured about one of its links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkModel {
    /// The host at the other end.
    pub peer: HostName,
    /// Smoothed round-trip time of the connection, milliseconds (the
    /// transport's own estimate, kept current by every exchange on it).
    pub rtt_ms: f64,
    /// Time to send a message and have it acknowledged, against its size
    /// in bytes: a migration's pre-copies and state transfers.
    pub send: Option<Estimate>,
}

/// What a host measured about the agents of one component: a Python
/// agent exports, imports and starts at other rates than a Rust one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentModel {
    /// The component.
    pub digest: Digest,
    /// `export-state` as a migration makes it once the agent is held,
    /// against the state's bytes (the exports after calls, slower with
    /// colder pages, feed only the host's figure).
    pub export: Option<Estimate>,
    /// `import-state`, against the state's bytes.
    pub import: Option<Estimate>,
    /// Instantiating and initialising, against nothing (size 0).
    pub start: Option<Estimate>,
}

/// What a host measured about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostModel {
    /// `export-state`, against the state's bytes.
    pub export: Option<Estimate>,
    /// `import-state`, against the state's bytes.
    pub import: Option<Estimate>,
    /// Instantiating and initialising an agent, against its component's
    /// bytes.
    pub start: Option<Estimate>,
    /// Compiling a component, against its bytes.
    pub compile: Option<Estimate>,
    /// Loading a cached compiled artifact, against the component's bytes.
    pub cache_load: Option<Estimate>,
    /// One LLM completion, against the reply's length in tokens.
    pub llm: Option<Estimate>,
    /// Its links to the peers it talks to.
    pub links: Vec<LinkModel>,
    /// The same figures per component, for the components it ran; the
    /// host-wide figures above cover a component not listed.
    pub components: Vec<ComponentModel>,
}

impl HostModel {
    /// The link to `peer`, if this host has measured one.
    pub fn link(&self, peer: &str) -> Option<&LinkModel> {
        self.links.iter().find(|l| l.peer.as_str() == peer)
    }

    /// The figures for `digest`, if this host measured that component.
    pub fn component(&self, digest: &Digest) -> Option<&ComponentModel> {
        self.components.iter().find(|c| &c.digest == digest)
    }

    /// Export of `digest`'s agents: its own figure, else the host's.
    pub fn export_of(&self, digest: &Digest) -> Option<Estimate> {
        self.component(digest)
            .and_then(|c| c.export)
            .or(self.export)
    }

    /// Import of `digest`'s agents: its own figure, else the host's.
    pub fn import_of(&self, digest: &Digest) -> Option<Estimate> {
        self.component(digest)
            .and_then(|c| c.import)
            .or(self.import)
    }

    /// Start of `digest`'s agents: its own figure, else the host's fit at
    /// `component_bytes`.
    pub fn start_ms_of(&self, digest: &Digest, component_bytes: f64) -> Option<f64> {
        self.component(digest)
            .and_then(|c| c.start)
            .map(|e| e.mean_ms)
            .or_else(|| self.start.map(|e| e.predict_ms(component_bytes)))
    }
}
