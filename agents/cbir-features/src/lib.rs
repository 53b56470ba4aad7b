//! The CBIR feature extractor: a request is an image (PNG or binary PPM),
//! the reply its descriptor as JSON: `{"width", "height", "histogram": [64
//! shares of the pixels per RGB bin], "dhash": "16 hex digits"}`.
//!
//! It keeps nothing between calls; its state blob is empty but tagged, so
//! a migration moves nothing but the tag.
#![cfg(target_family = "wasm")]

use edgehost_agent::{Agent, AgentError, Config, Descriptor, Request, ResourceDemand, state};

const STATE_MAGIC: &[u8; 8] = b"EHCBFv1\0";

struct Features;

impl Agent for Features {
    fn describe() -> Descriptor {
        Descriptor {
            kind: "cbir-features".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            demand: ResourceDemand {
                // A 4-megapixel image is 12 MiB of RGB, decoded beside its
                // compressed bytes.
                memory_mib: 48,
                cpu_millicores: 500,
                storage_mib: 1,
                bandwidth_mbps: 5,
            },
            dependencies: Vec::new(),
        }
    }

    fn init(_config: Config) -> Result<Self, AgentError> {
        Ok(Features)
    }

    fn handle(&mut self, request: Request) -> Result<Vec<u8>, AgentError> {
        let image = edgehost_cbir::image::decode(&request.body)
            .map_err(|e| AgentError::InvalidInput(e.to_string()))?;
        let descriptor = edgehost_cbir::describe(&image);
        serde_json::to_vec(&descriptor).map_err(|e| AgentError::Internal(e.to_string()))
    }

    fn export_state(&self) -> Result<Vec<u8>, AgentError> {
        Ok(state::encode(STATE_MAGIC, &())?)
    }

    fn import_state(&mut self, blob: &[u8]) -> Result<(), AgentError> {
        state::decode::<()>(STATE_MAGIC, blob)?;
        Ok(())
    }
}

edgehost_agent::export_agent!(Features);
