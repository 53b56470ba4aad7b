//! Reading what a component is without compiling it: which world it targets,
//! what it imports and exports, its size and digest. This is what
//! `edgehost inspect` prints, and the first check every load makes.

use serde::Serialize;
use wasmparser::{Parser, Payload, Validator, WasmFeatures};

use crate::{Digest, Error, Result};

/// The interface every agent exports (see `wit/agent/agent.wit`).
pub const AGENT_EXPORT: &str = "edgehost:agent/guest";
/// The interface a policy exports for its heuristic (see `wit/policy/policy.wit`).
pub const POLICY_HEURISTIC_EXPORT: &str = "edgehost:policy/heuristic";
/// The interface a policy exports for its cost model.
pub const POLICY_COST_EXPORT: &str = "edgehost:policy/cost-model";
/// The contract version this host implements.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// What kind of edgehost component a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Targets the `agent` world.
    Agent,
    /// Targets the `policy` world.
    Policy,
    /// A valid component of some other world.
    Neither,
}

/// Everything `edgehost inspect` reports about a component.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentInfo {
    /// Agent, policy, or neither.
    pub kind: Kind,
    /// The world it targets, e.g. `edgehost:agent/agent`; `None` for `Neither`.
    pub world: Option<String>,
    /// The contract version of that world, e.g. `0.1.0`.
    pub version: Option<String>,
    /// Top-level export names.
    pub exports: Vec<String>,
    /// Top-level import names.
    pub imports: Vec<String>,
    /// Size of the file in bytes.
    pub size: u64,
    /// SHA-256 of the file.
    pub digest: Digest,
    /// The CPU architecture the component declares it needs (its
    /// [`REQUIRES_ARCH_SECTION`] custom section), if any: an agent that
    /// uses a host capability only one architecture has. Without it, a
    /// component runs anywhere.
    pub requires_arch: Option<String>,
}

/// The custom section in which a component declares the one CPU
/// architecture it runs on (`aarch64`, `x86_64`: Rust's names), as UTF-8.
/// Anywhere in the component, or in one of its modules.
pub const REQUIRES_ARCH_SECTION: &str = "edgehost:requires-arch";

/// Reads a [`REQUIRES_ARCH_SECTION`]'s contents: a short name of letters,
/// digits and `_`.
fn arch_name(data: &[u8]) -> Result<String> {
    let name = std::str::from_utf8(data).ok().map(str::trim).filter(|n| {
        !n.is_empty() && n.len() <= 32 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    name.map(str::to_owned).ok_or_else(|| {
        Error::Malformed(format!(
            "its {REQUIRES_ARCH_SECTION} section is not an architecture name (such as aarch64 or x86_64)"
        ))
    })
}

impl ComponentInfo {
    /// Validates `bytes` as a WebAssembly component and reads its top-level
    /// imports and exports. Garbage, a core module and a component that fails
    /// validation all give [`Error::Malformed`].
    pub fn read(bytes: &[u8]) -> Result<Self> {
        check_header(bytes)?;
        Validator::new_with_features(WasmFeatures::default())
            .validate_all(bytes)
            .map_err(|e| Error::Malformed(format!("invalid component: {e}")))?;
        Self::scan(bytes)
    }

    /// Like [`ComponentInfo::read`] but without validating the code: only the
    /// structure is parsed. For the runtime's load path, where a cache miss
    /// is validated by the compiler and a cache hit is a digest this host
    /// already compiled (and so validated).
    pub(crate) fn scan(bytes: &[u8]) -> Result<Self> {
        check_header(bytes)?;
        let mut imports = Vec::new();
        let mut exports = Vec::new();
        let mut requires_arch: Option<String> = None;
        // Nested modules and components are parsed inline; only depth 1 is
        // the component's own interface.
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(bytes) {
            let payload =
                payload.map_err(|e| Error::Malformed(format!("invalid component: {e}")))?;
            match payload {
                Payload::Version { .. } => depth += 1,
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(reader) if depth == 1 => {
                    for import in reader {
                        let import =
                            import.map_err(|e| Error::Malformed(format!("invalid import: {e}")))?;
                        imports.push(import.name.name.to_owned());
                    }
                }
                Payload::ComponentExportSection(reader) if depth == 1 => {
                    for export in reader {
                        let export =
                            export.map_err(|e| Error::Malformed(format!("invalid export: {e}")))?;
                        exports.push(export.name.name.to_owned());
                    }
                }
                Payload::CustomSection(reader) if reader.name() == REQUIRES_ARCH_SECTION => {
                    let arch = arch_name(reader.data())?;
                    if requires_arch.as_ref().is_some_and(|a| *a != arch) {
                        return Err(Error::Malformed(format!(
                            "it declares two architectures in {REQUIRES_ARCH_SECTION} sections"
                        )));
                    }
                    requires_arch = Some(arch);
                }
                _ => {}
            }
        }

        let (kind, world, version) = classify(&exports);
        Ok(ComponentInfo {
            kind,
            world,
            version,
            exports,
            imports,
            size: bytes.len() as u64,
            digest: Digest::of(bytes),
            requires_arch,
        })
    }

    /// Fails if the component declares it needs an architecture other than
    /// this host's.
    pub fn expect_arch(&self) -> Result<()> {
        match &self.requires_arch {
            Some(required) if required != std::env::consts::ARCH => Err(Error::Architecture {
                required: required.clone(),
                host: std::env::consts::ARCH.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Fails unless this component targets the `agent` world at the version
    /// this host implements.
    pub fn expect_agent(&self) -> Result<()> {
        match (self.kind, self.version.as_deref()) {
            (Kind::Agent, Some(CONTRACT_VERSION)) => Ok(()),
            (Kind::Agent, v) => Err(Error::WrongWorld(format!(
                "it targets edgehost:agent/agent@{}, this host serves @{CONTRACT_VERSION}",
                v.unwrap_or("?")
            ))),
            (Kind::Policy, _) => Err(Error::WrongWorld(
                "it is a policy plugin (world edgehost:policy/policy)".to_owned(),
            )),
            (Kind::Neither, _) => Err(Error::WrongWorld(format!(
                "it does not export {AGENT_EXPORT}@{CONTRACT_VERSION} (exports: {})",
                if self.exports.is_empty() {
                    "none".to_owned()
                } else {
                    self.exports.join(", ")
                }
            ))),
        }
    }
}

/// Fails unless `bytes` starts like a WebAssembly component, naming what it
/// is instead.
fn check_header(bytes: &[u8]) -> Result<()> {
    if Parser::is_component(bytes) {
        return Ok(());
    }
    let what = if Parser::is_core_wasm(bytes) {
        "a core WebAssembly module, not a component (build for wasm32-wasip2, or wrap it with `wasm-tools component new`)"
    } else if bytes.starts_with(b"\0asm") {
        "a WebAssembly binary of an unknown version"
    } else {
        "not a WebAssembly file"
    };
    Err(Error::Malformed(what.to_owned()))
}

/// Splits `pkg/interface@version` into its name and version.
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (name, None),
    }
}

fn classify(exports: &[String]) -> (Kind, Option<String>, Option<String>) {
    for export in exports {
        let (name, version) = split_version(export);
        let version = version.map(str::to_owned);
        if name == AGENT_EXPORT {
            return (Kind::Agent, Some("edgehost:agent/agent".into()), version);
        }
        if name == POLICY_HEURISTIC_EXPORT || name == POLICY_COST_EXPORT {
            return (Kind::Policy, Some("edgehost:policy/policy".into()), version);
        }
    }
    (Kind::Neither, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_core_modules_are_refused() {
        let err = ComponentInfo::read(b"hello").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("malformed component: not a WebAssembly file")
        );
        // The smallest valid core module: magic + version 1.
        let core = b"\0asm\x01\0\0\0";
        let err = ComponentInfo::read(core).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("core WebAssembly module")));
        // A component header followed by junk fails validation.
        let broken = b"\0asm\x0d\0\x01\0\xff\xff\xff";
        let err = ComponentInfo::read(broken).err().map(|e| e.to_string());
        assert!(
            err.is_some_and(|e| e.contains("invalid component")),
            "{broken:?}"
        );
    }

    #[test]
    fn classifies_by_export_name() {
        let (k, w, v) = classify(&["edgehost:agent/guest@0.1.0".to_owned()]);
        assert_eq!(k, Kind::Agent);
        assert_eq!(w.as_deref(), Some("edgehost:agent/agent"));
        assert_eq!(v.as_deref(), Some("0.1.0"));
        let (k, _, _) = classify(&["edgehost:policy/cost-model@0.1.0".to_owned()]);
        assert_eq!(k, Kind::Policy);
        let (k, w, _) = classify(&["wasi:cli/run@0.2.0".to_owned()]);
        assert_eq!((k, w), (Kind::Neither, None));
    }
}
