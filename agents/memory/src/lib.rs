//! An agent with a conversation memory that survives migration.
//!
//! It keeps notes and the recent dialogue; its exported state is exactly that
//! memory, so a fresh instance on another host that imports it carries on the
//! same conversation. Requests are text:
//!
//! - `remember TEXT` — keep a note; answers `noted #N`.
//! - `notes` — every note, one per line.
//! - `forget` — drop all notes and the dialogue.
//! - `stats` — `notes=N turns=M bytes=B`.
//! - anything else — a chat turn: the host's LLM answers with the notes and
//!   recent dialogue as context. Without an LLM the agent answers from its
//!   notes alone and says so.
//!
//! Configuration: `persona=TEXT` (the system prompt), `max-turns=N` (dialogue
//! kept, default 32).
#![cfg(target_family = "wasm")]

use edgehost_agent::{
    Agent, AgentError, Config, Descriptor, HostError, Level, Message, Request, ResourceDemand,
    state,
};
use serde::{Deserialize, Serialize};

/// The state blob starts with this tag and a format version
/// ([`edgehost_agent::state`]).
const STATE_MAGIC: &[u8; 8] = b"EHMEMv1\0";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Memory {
    notes: Vec<String>,
    turns: Vec<(String, String)>,
}

struct MemoryAgent {
    persona: String,
    max_turns: usize,
    memory: Memory,
}

impl Agent for MemoryAgent {
    fn describe() -> Descriptor {
        Descriptor {
            kind: "memory".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            demand: ResourceDemand {
                memory_mib: 64,
                cpu_millicores: 250,
                storage_mib: 16,
                bandwidth_mbps: 1,
            },
            dependencies: Vec::new(),
        }
    }

    fn init(config: Config) -> Result<Self, AgentError> {
        Ok(MemoryAgent {
            persona: config
                .get("persona")
                .unwrap_or("You are a helpful assistant with a good memory.")
                .to_owned(),
            max_turns: config.parse_or("max-turns", 32)?,
            memory: Memory::default(),
        })
    }

    fn handle(&mut self, request: Request) -> Result<Vec<u8>, AgentError> {
        let text = String::from_utf8(request.body)
            .map_err(|_| AgentError::InvalidInput("requests are UTF-8 text".to_owned()))?;
        let text = text.trim();
        let (command, rest) = text.split_once(' ').unwrap_or((text, ""));
        let reply = match command {
            "remember" if !rest.is_empty() => {
                self.memory.notes.push(rest.to_owned());
                format!("noted #{}", self.memory.notes.len())
            }
            "notes" => self.memory.notes.join("\n"),
            "forget" => {
                self.memory = Memory::default();
                "forgotten".to_owned()
            }
            "stats" => format!(
                "notes={} turns={} bytes={}",
                self.memory.notes.len(),
                self.memory.turns.len(),
                self.memory.notes.iter().map(String::len).sum::<usize>()
            ),
            _ if text.is_empty() => {
                return Err(AgentError::InvalidInput("empty request".to_owned()));
            }
            _ => self.chat(text)?,
        };
        Ok(reply.into_bytes())
    }

    fn export_state(&self) -> Result<Vec<u8>, AgentError> {
        Ok(state::encode(STATE_MAGIC, &self.memory)?)
    }

    fn import_state(&mut self, blob: &[u8]) -> Result<(), AgentError> {
        let memory: Memory = state::decode(STATE_MAGIC, blob)?;
        // Decoded in full before anything changes: a bad blob leaves the
        // current memory untouched.
        self.memory = memory;
        Ok(())
    }
}

impl MemoryAgent {
    fn chat(&mut self, text: &str) -> Result<String, AgentError> {
        let mut messages = vec![Message {
            role: "system".to_owned(),
            content: format!(
                "{}\nWhat you have been asked to remember:\n{}",
                self.persona,
                self.memory.notes.join("\n")
            ),
        }];
        for (role, content) in &self.memory.turns {
            messages.push(Message {
                role: role.clone(),
                content: content.clone(),
            });
        }
        messages.push(Message {
            role: "user".to_owned(),
            content: text.to_owned(),
        });
        let answer = match edgehost_agent::complete(messages, Some(256)) {
            Ok(answer) => answer,
            Err(HostError::NoLlmConfigured) => {
                edgehost_agent::log(Level::Debug, "no LLM configured; answering from notes");
                format!(
                    "(no LLM configured) I remember {} note(s){}",
                    self.memory.notes.len(),
                    match self.memory.notes.last() {
                        Some(last) => format!("; the latest: {last}"),
                        None => String::new(),
                    }
                )
            }
            Err(e) => return Err(AgentError::Unavailable(format!("LLM: {e:?}"))),
        };
        self.memory.turns.push(("user".to_owned(), text.to_owned()));
        self.memory
            .turns
            .push(("assistant".to_owned(), answer.clone()));
        let excess = self.memory.turns.len().saturating_sub(self.max_turns);
        self.memory.turns.drain(..excess);
        Ok(answer)
    }
}

edgehost_agent::export_agent!(MemoryAgent);
