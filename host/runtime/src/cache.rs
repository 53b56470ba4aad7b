//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes tens of milliseconds for a small
//! Rust agent and many seconds for an 18 MB Python one, so each host compiles
//! a component once and keeps the machine code. An artifact is keyed by the
//! component's content digest, the target triple and the engine's
//! compatibility hash (which changes with the wasmtime version and every
//! setting that affects code generation), so a stale or foreign artifact is
//! simply never looked up.
//!
//! Loading machine code is the one place where edgehost trusts bytes it did not
//! just produce. The rule that keeps it sound: the only artifacts ever
//! deserialised are files this cache wrote itself, under names it computed,
//! in a directory only the host's user can write. Nothing received from the
//! network or given on a command line is ever deserialised as an artifact.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::{Digest, Error, Result};

/// Whether a load found its artifact in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The artifact was on disk and was loaded from there.
    Hit,
    /// The component was compiled now (and the artifact written for next time).
    Miss,
}

/// A directory of compiled artifacts for one engine configuration.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    /// `<triple>-<engine compatibility hash>`, part of every file name.
    engine_key: String,
}

impl ArtifactCache {
    /// Opens (creating if needed) the cache in `dir` for `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        restrict_to_owner(dir)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hex::encode(&hasher.0.finalize()[..8]);
        let engine_key = format!(
            "{}-{}-{engine_hash}",
            std::env::consts::ARCH,
            std::env::consts::OS
        );
        Ok(ArtifactCache {
            dir: dir.to_owned(),
            engine_key,
        })
    }

    /// Where the artifact for `digest` lives.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", digest.hex(), self.engine_key))
    }

    /// Returns the compiled component for `bytes` (whose digest is `digest`),
    /// from the cache when it is there, else compiling it and storing the
    /// artifact. A cached artifact that fails to load (truncated by a crash,
    /// say) is discarded and rebuilt.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome)> {
        let path = self.path(digest);
        if path.is_file() {
            // SAFETY: `path` is inside this cache's directory under a name
            // derived from the component digest and this engine's
            // compatibility hash, and only `store` below writes such files, from
            // `Component::serialize` of a component this process compiled. No
            // other code path deserialises artifacts.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "discarding unusable cached artifact: {e:#}");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let component =
            Component::new(engine, bytes).map_err(|e| Error::Compile(format!("{e:#}")))?;
        // A component that compiled is usable even if the cache is not
        // writable (read-only disk, full disk): warn and carry on.
        match component.serialize() {
            Ok(artifact) => {
                if let Err(e) = self.store(&path, &artifact) {
                    tracing::warn!("could not cache compiled artifact: {e}");
                }
            }
            Err(e) => tracing::warn!("could not serialise compiled artifact: {e:#}"),
        }
        Ok((component, CacheOutcome::Miss))
    }

    /// Writes an artifact atomically: a temporary file in the same
    /// directory, fsync, rename, so a crash never leaves a half-written
    /// artifact under the final name.
    fn store(&self, path: &Path, artifact: &[u8]) -> Result<()> {
        let mut tmp = tempfile_in(&self.dir)?;
        tmp.1
            .write_all(artifact)
            .map_err(|e| Error::io(&tmp.0, e))?;
        tmp.1.sync_all().map_err(|e| Error::io(&tmp.0, e))?;
        fs::rename(&tmp.0, path).map_err(|e| Error::io(path, e))?;
        Ok(())
    }
}

fn tempfile_in(dir: &Path) -> Result<(PathBuf, fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    Ok((path, file))
}

#[cfg(unix)]
fn restrict_to_owner(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(dir, e))
}

#[cfg(not(unix))]
fn restrict_to_owner(_dir: &Path) -> Result<()> {
    Ok(())
}

/// Feeds `Hash` output into SHA-256, so the key does not depend on std's
/// unspecified hasher.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let bytes = self.0.clone().finalize();
        u64::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ])
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
