//! A deliberately hostile agent, used only by the host's tests to show that
//! one bad agent cannot hurt the host or its neighbours. Requests:
//!
//! - `loop` — spin forever (stopped by the call deadline).
//! - `bomb` — allocate until memory runs out (stopped at the memory cap).
//! - `recurse` — recurse without end (stopped by the stack limit).
//! - `huge N` — answer with N MiB of bytes (refused by the response limit).
//! - `call AGENT TEXT` — call another agent through the host.
//! - `echo TEXT` — answer TEXT.
#![cfg(target_family = "wasm")]

use std::hint::black_box;

use edgehost_agent::{Agent, AgentError, Config, Descriptor, Request, ResourceDemand};

struct Hostile {
    calls: u64,
}

/// Recursion the compiler cannot turn into a loop: the result of the
/// recursive call is combined non-trivially after it returns.
fn recurse(n: u64, limit: u64) -> u64 {
    if n >= limit {
        return n;
    }
    let r = recurse(black_box(n + 1), limit);
    r.wrapping_mul(31).wrapping_add(n) ^ (r >> 7)
}

impl Agent for Hostile {
    fn describe() -> Descriptor {
        Descriptor {
            kind: "hostile".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            demand: ResourceDemand {
                memory_mib: 48,
                cpu_millicores: 100,
                storage_mib: 1,
                bandwidth_mbps: 1,
            },
            dependencies: vec!["memory".to_owned()],
        }
    }

    fn init(_config: Config) -> Result<Self, AgentError> {
        Ok(Hostile { calls: 0 })
    }

    fn handle(&mut self, request: Request) -> Result<Vec<u8>, AgentError> {
        self.calls += 1;
        let text = String::from_utf8_lossy(&request.body).into_owned();
        let (command, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        match command {
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = black_box(x.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![0xA5; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "recurse" => Ok(recurse(0, black_box(u64::MAX)).to_le_bytes().to_vec()),
            "huge" => {
                let mib: usize = rest
                    .trim()
                    .parse()
                    .map_err(|_| AgentError::InvalidInput("huge takes a size in MiB".to_owned()))?;
                Ok(vec![b'x'; mib << 20])
            }
            "call" => {
                let (agent, body) = rest.split_once(' ').unwrap_or((rest, ""));
                edgehost_agent::call(agent, body.as_bytes().to_vec())
                    .map_err(|e| AgentError::Unavailable(e.to_string()))
            }
            "echo" => Ok(rest.as_bytes().to_vec()),
            _ => Err(AgentError::InvalidInput(format!(
                "unknown command {command:?}"
            ))),
        }
    }

    fn export_state(&self) -> Result<Vec<u8>, AgentError> {
        Ok(self.calls.to_le_bytes().to_vec())
    }

    fn import_state(&mut self, state: &[u8]) -> Result<(), AgentError> {
        let bytes: [u8; 8] = state.try_into().map_err(|_| {
            AgentError::InvalidState(format!("expected 8 bytes, got {}", state.len()))
        })?;
        self.calls = u64::from_le_bytes(bytes);
        Ok(())
    }
}

edgehost_agent::export_agent!(Hostile);
