//! The CBIR index: image descriptors by id, searched by distance. Its
//! memory, the index itself, is its exported state, so migrating it moves
//! the index, and a query after the move gives the same ranked results.
//!
//! Requests and replies are JSON objects:
//!
//! - `{"op": "add", "id": ID, "descriptor": D}` → `{"added": {"id", "replaced", "images"}}`
//! - `{"op": "query", "k": K, "descriptor": D}` → `{"hits": [{"id", "distance"}...]}`,
//!   nearest first
//! - `{"op": "remove", "id": ID}` → `{"removed": true|false}`
//! - `{"op": "stats"}` → `{"images": N}`
//!
//! where `D` is what the `cbir-features` agent answers for an image.
//! Configuration: `capacity=N`, the most images held (default 100000).
#![cfg(target_family = "wasm")]

use edgehost_agent::{Agent, AgentError, Config, Descriptor, Request, ResourceDemand, state};
use edgehost_cbir::index::{self, IndexError};

const STATE_MAGIC: &[u8; 8] = b"EHCBIv1\0";

struct IndexAgent {
    capacity: usize,
    index: edgehost_cbir::Index,
}

impl Agent for IndexAgent {
    fn describe() -> Descriptor {
        Descriptor {
            kind: "cbir-index".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            demand: ResourceDemand {
                // 100,000 descriptors of 64 bins take about 30 MiB.
                memory_mib: 96,
                cpu_millicores: 250,
                storage_mib: 32,
                bandwidth_mbps: 1,
            },
            dependencies: Vec::new(),
        }
    }

    fn init(config: Config) -> Result<Self, AgentError> {
        Ok(IndexAgent {
            capacity: config.parse_or("capacity", 100_000)?,
            index: edgehost_cbir::Index::default(),
        })
    }

    fn handle(&mut self, request: Request) -> Result<Vec<u8>, AgentError> {
        let request: index::Request = serde_json::from_slice(&request.body)
            .map_err(|e| AgentError::InvalidInput(format!("not an index request: {e}")))?;
        let reply = self
            .index
            .apply(request, self.capacity)
            .map_err(|e| match e {
                IndexError::Invalid(why) => AgentError::InvalidInput(why),
                full @ IndexError::Full(_) => AgentError::Unavailable(full.to_string()),
            })?;
        serde_json::to_vec(&reply).map_err(|e| AgentError::Internal(e.to_string()))
    }

    fn export_state(&self) -> Result<Vec<u8>, AgentError> {
        Ok(state::encode(STATE_MAGIC, &self.index)?)
    }

    fn import_state(&mut self, blob: &[u8]) -> Result<(), AgentError> {
        let imported: edgehost_cbir::Index = state::decode(STATE_MAGIC, blob)?;
        // Checked in full before anything changes: a bad blob leaves the
        // index as it was.
        imported
            .check(self.capacity)
            .map_err(|e| AgentError::InvalidState(e.to_string()))?;
        self.index = imported;
        Ok(())
    }
}

edgehost_agent::export_agent!(IndexAgent);
