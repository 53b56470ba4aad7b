//! What an agent says about itself: its kind, version, resource demands and
//! dependencies. It crosses the wire in placement requests and reports, so
//! it lives with the protocol; the runtime fills it from the agent's
//! `describe`.

use serde::{Deserialize, Serialize};

/// The resources an agent declares (the cost model's M_a, C_a, S_a, V_a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDemand {
    /// Memory, MiB. Enforced as a hard cap.
    pub memory_mib: u32,
    /// CPU, thousandths of a core.
    pub cpu_millicores: u32,
    /// Storage, MiB.
    pub storage_mib: u32,
    /// Bandwidth, Mbit/s.
    pub bandwidth_mbps: u32,
}

/// What an agent says about itself (`describe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// The agent's kind.
    pub kind: String,
    /// The version of its code.
    pub version: String,
    /// Its resource demands.
    pub demand: ResourceDemand,
    /// Names of the agents it calls.
    pub dependencies: Vec<String>,
}
