//! Write edgehost agents in Rust.
//!
//! An agent is a type that implements [`Agent`]; [`export_agent!`] turns it
//! into a WebAssembly component of the `edgehost:agent/agent@0.1.0` world
//! (build with `cargo build --release --target wasm32-wasip2`). The SDK keeps
//! the one live value of your type, calls your methods for the host's
//! `init`, `handle`, `export-state` and `import-state`, and wraps the host's
//! imports in plain functions: [`log`], [`complete`], [`call`], [`now_ns`].
//!
//! ```text
//! use edgehost_agent::{Agent, AgentError, Config, Descriptor, Request, ResourceDemand};
//!
//! struct Counter { n: u64 }
//!
//! impl Agent for Counter {
//!     fn describe() -> Descriptor { /* kind, version, demand, dependencies */ }
//!     fn init(_config: Config) -> Result<Self, AgentError> { Ok(Counter { n: 0 }) }
//!     fn handle(&mut self, _request: Request) -> Result<Vec<u8>, AgentError> {
//!         self.n += 1;
//!         Ok(self.n.to_string().into_bytes())
//!     }
//!     fn export_state(&self) -> Result<Vec<u8>, AgentError> { Ok(self.n.to_le_bytes().to_vec()) }
//!     fn import_state(&mut self, state: &[u8]) -> Result<(), AgentError> { /* parse, then replace */ }
//! }
//!
//! edgehost_agent::export_agent!(Counter);
//! ```
//!
//! The one rule the host relies on: `import_state` must either accept the
//! whole blob or return [`AgentError::InvalidState`] and change nothing.
//!
//! [`state`] encodes a state blob with a tag naming the agent and its
//! format version in front, and decodes one whole or not at all; use it or
//! any format of your own, but put a version tag in it so a future version
//! of your agent can read old blobs.

pub mod state;

// The generated bindings name this crate by its path, as agent crates do.
#[cfg(feature = "guest")]
extern crate self as edgehost_agent;

#[cfg(feature = "guest")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/agent",
        world: "agent",
        pub_export_macro: true,
        export_macro_name: "__export_agent_world",
        default_bindings_module: "::edgehost_agent::bindings",
        runtime_path: "::edgehost_agent::__wit_bindgen::rt",
    });
}

#[cfg(feature = "guest")]
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

#[cfg(feature = "guest")]
use std::cell::RefCell;
#[cfg(feature = "guest")]
use std::thread::LocalKey;

#[cfg(feature = "guest")]
pub use bindings::edgehost::agent::types::{
    AgentError, CompletionRequest, Descriptor, HostError, Level, Message, Request, ResourceDemand,
};

#[cfg(feature = "guest")]
/// An agent's configuration: the `K=V` pairs given at deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config(Vec<(String, String)>);

#[cfg(feature = "guest")]
impl Config {
    /// The value of `key`, if it was given (the last one wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` parsed as `T`, `default` when absent, and an
    /// `invalid-input` error naming the key when it does not parse.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, AgentError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| AgentError::InvalidInput(format!("config {key}={v:?} is not valid"))),
        }
    }

    /// All pairs, in the order given.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

#[cfg(feature = "guest")]
impl From<Vec<(String, String)>> for Config {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Config(pairs)
    }
}

#[cfg(feature = "guest")]
/// What an edgehost agent implements.
pub trait Agent: Sized + 'static {
    /// The agent's kind, version, resource demands and dependencies. Must not
    /// depend on configuration or state: the host calls it before `init`.
    fn describe() -> Descriptor;

    /// Builds the agent from its configuration.
    fn init(config: Config) -> Result<Self, AgentError>;

    /// Answers one request.
    fn handle(&mut self, request: Request) -> Result<Vec<u8>, AgentError>;

    /// The agent's whole memory as one blob.
    fn export_state(&self) -> Result<Vec<u8>, AgentError>;

    /// Replaces the agent's memory with `state`, or returns
    /// [`AgentError::InvalidState`] and changes nothing.
    fn import_state(&mut self, state: &[u8]) -> Result<(), AgentError>;
}

#[cfg(feature = "guest")]
/// Writes a line to the host's log.
pub fn log(level: Level, message: &str) {
    bindings::edgehost::agent::host::log(level, message);
}

#[cfg(feature = "guest")]
/// Asks the host's LLM for a completion of `messages`.
pub fn complete(messages: Vec<Message>, max_tokens: Option<u32>) -> Result<String, HostError> {
    bindings::edgehost::agent::host::complete(&CompletionRequest {
        messages,
        max_tokens,
        temperature: None,
    })
}

#[cfg(feature = "guest")]
/// Calls the agent named `agent` (one of the dependencies declared in
/// `describe`) with `body`, wherever in the fleet it runs.
pub fn call(agent: &str, body: Vec<u8>) -> Result<Vec<u8>, HostError> {
    bindings::edgehost::agent::host::call(agent, &Request { body, caller: None })
}

#[cfg(feature = "guest")]
/// Nanoseconds on the host's monotonic clock.
pub fn now_ns() -> u64 {
    bindings::edgehost::agent::host::monotonic_now()
}

#[cfg(feature = "guest")]
/// Runs `f` on the live agent kept in `cell`. Used by [`export_agent!`].
#[doc(hidden)]
pub fn __with_agent<T, R>(
    cell: &'static LocalKey<RefCell<Option<T>>>,
    f: impl FnOnce(&mut T) -> Result<R, AgentError>,
) -> Result<R, AgentError> {
    cell.with(|slot| match slot.borrow_mut().as_mut() {
        Some(agent) => f(agent),
        None => Err(AgentError::InvalidInput(
            "the agent was called before init".to_owned(),
        )),
    })
}

#[cfg(feature = "guest")]
/// Exports `$ty` (a type implementing [`Agent`]) as this component's agent.
/// Call it once, at the top level of the agent crate.
#[macro_export]
macro_rules! export_agent {
    ($ty:ty) => {
        ::std::thread_local! {
            static __EDGEHOST_AGENT: ::std::cell::RefCell<::std::option::Option<$ty>> =
                const { ::std::cell::RefCell::new(::std::option::Option::None) };
        }

        #[doc(hidden)]
        pub struct __EdgehostAgentExport;

        impl $crate::bindings::exports::edgehost::agent::guest::Guest for __EdgehostAgentExport {
            fn describe() -> $crate::Descriptor {
                <$ty as $crate::Agent>::describe()
            }

            fn init(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>)
                -> ::std::result::Result<(), $crate::AgentError>
            {
                let agent = <$ty as $crate::Agent>::init($crate::Config::from(config))?;
                __EDGEHOST_AGENT.with(|slot| *slot.borrow_mut() = ::std::option::Option::Some(agent));
                ::std::result::Result::Ok(())
            }

            fn handle(request: $crate::Request)
                -> ::std::result::Result<::std::vec::Vec<u8>, $crate::AgentError>
            {
                $crate::__with_agent(&__EDGEHOST_AGENT, |a| <$ty as $crate::Agent>::handle(a, request))
            }

            fn export_state() -> ::std::result::Result<::std::vec::Vec<u8>, $crate::AgentError> {
                $crate::__with_agent(&__EDGEHOST_AGENT, |a| <$ty as $crate::Agent>::export_state(a))
            }

            fn import_state(state: ::std::vec::Vec<u8>) -> ::std::result::Result<(), $crate::AgentError> {
                $crate::__with_agent(&__EDGEHOST_AGENT, |a| <$ty as $crate::Agent>::import_state(a, &state))
            }
        }

        $crate::bindings::__export_agent_world!(__EdgehostAgentExport with_types_in $crate::bindings);
    };
}

/// A state blob that does not decode is the agent's `invalid-state`; one
/// that cannot be encoded is an internal error.
#[cfg(feature = "guest")]
impl From<state::StateError> for AgentError {
    fn from(e: state::StateError) -> Self {
        let mut message = e.to_string();
        if let Some(source) = std::error::Error::source(&e) {
            message = format!("{message}: {source}");
        }
        match e {
            state::StateError::Encode(_) => AgentError::Internal(message),
            _ => AgentError::InvalidState(message),
        }
    }
}

#[cfg(all(test, feature = "guest"))]
mod tests {
    use super::*;

    #[test]
    fn config_lookup_and_parsing() {
        let c = Config::from(vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "x".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ]);
        assert_eq!(c.get("a"), Some("2"));
        assert_eq!(c.get("z"), None);
        assert_eq!(c.parse_or("a", 0u32).ok(), Some(2));
        assert_eq!(c.parse_or("z", 7u32).ok(), Some(7));
        assert!(
            matches!(c.parse_or("b", 0u32), Err(AgentError::InvalidInput(m)) if m.contains("b="))
        );
    }
}
