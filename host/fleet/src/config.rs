//! A host's and a client's configuration files (`host.toml`,
//! `client.toml`). The types and their parsing are the protocol crate's
//! ([`edgehost_proto::config`]), pure and fuzzed there; this module reads
//! the files.

use std::path::Path;

pub use edgehost_proto::config::{
    AlmSettings, ClientConfig, HostConfig, HostLimits, Labels, LlmSettings,
};

use crate::{Error, Result};

/// A configuration read from a TOML file, whose relative paths are taken
/// relative to the file's directory.
pub trait FromFile: Sized {
    /// Reads and parses the file at `path`.
    fn from_file(path: &Path) -> Result<Self>;
}

fn read(path: &Path) -> Result<(String, &Path)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok((text, path.parent().unwrap_or(Path::new("."))))
}

/// A configuration error, naming the file.
fn in_file(path: &Path, e: edgehost_proto::Error) -> Error {
    match e {
        edgehost_proto::Error::Config(message) => {
            Error::Config(format!("{}: {message}", path.display()))
        }
        e => Error::Proto(e),
    }
}

impl FromFile for HostConfig {
    fn from_file(path: &Path) -> Result<Self> {
        let (text, base) = read(path)?;
        HostConfig::parse(&text, base).map_err(|e| in_file(path, e))
    }
}

impl FromFile for ClientConfig {
    fn from_file(path: &Path) -> Result<Self> {
        let (text, base) = read(path)?;
        ClientConfig::parse(&text, base).map_err(|e| in_file(path, e))
    }
}

/// Checks a host's configuration: [`HostConfig::validate`], its failure a
/// configuration error.
pub fn validate(config: &HostConfig) -> Result<()> {
    config.validate().map_err(|e| match e {
        edgehost_proto::Error::Config(message) => Error::Config(message),
        e => Error::Proto(e),
    })
}
