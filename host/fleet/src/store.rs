//! Components on a host's disk, content-addressed by digest.
//!
//! A component is written to a temporary file as it arrives, hashed on the
//! way, and renamed to `<digest>.wasm` only once its bytes hash to the digest
//! it was announced under, so the store never holds a file whose name lies.

use std::path::{Path, PathBuf};

use edgehost_runtime::Digest;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::{Error, Result};

/// The prefix of an upload's temporary file.
const INCOMING: &str = ".incoming-";

/// The directory of stored components.
#[derive(Debug, Clone)]
pub struct ComponentStore {
    dir: PathBuf,
}

impl ComponentStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        // Uploads a crash cut short: never renamed into place, never used.
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(INCOMING) {
                let path = entry.path();
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::info!(path = %path.display(), "removed a partial upload"),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "cannot remove a partial upload: {e}")
                    }
                }
            }
        }
        Ok(ComponentStore {
            dir: dir.to_owned(),
        })
    }

    /// The path of the component with `digest`.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.wasm", digest.hex()))
    }

    /// Whether the component is stored.
    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Reads a stored component.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.path(digest);
        std::fs::read(&path).map_err(|e| Error::io(&path, e))
    }

    /// Starts receiving a component announced as `digest`, `size` bytes.
    pub async fn begin(&self, digest: Digest, size: u64) -> Result<Incoming> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(
            "{INCOMING}{}-{}-{n}",
            digest.hex(),
            std::process::id()
        ));
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(Incoming {
            digest,
            size,
            received: 0,
            hasher: Sha256::new(),
            file: Some(file),
            tmp,
            target: self.path(&digest),
        })
    }
}

/// A component being received. Dropped before [`Incoming::finish`], it
/// removes its temporary file.
pub struct Incoming {
    digest: Digest,
    size: u64,
    received: u64,
    hasher: Sha256,
    file: Option<tokio::fs::File>,
    tmp: PathBuf,
    target: PathBuf,
}

impl Incoming {
    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.size - self.received
    }

    /// Appends a chunk; more bytes than announced is an error.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let len = chunk.len() as u64;
        if len > self.remaining() {
            return Err(Error::Protocol(format!(
                "upload of {} sent more than the {} bytes it announced",
                self.digest, self.size
            )));
        }
        self.hasher.update(chunk);
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::Protocol("upload already finished".into()))?;
        file.write_all(chunk)
            .await
            .map_err(|e| Error::io(&self.tmp, e))?;
        self.received += len;
        Ok(())
    }

    /// Checks the hash and moves the component into place.
    pub async fn finish(mut self) -> Result<u64> {
        if self.received != self.size {
            return Err(Error::Protocol(format!(
                "upload of {} ended after {} of {} bytes",
                self.digest, self.received, self.size
            )));
        }
        let actual: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        if &actual != self.digest.as_bytes() {
            return Err(Error::Protocol(format!(
                "upload does not hash to {} (got sha256:{})",
                self.digest,
                hex_of(&actual)
            )));
        }
        if let Some(mut file) = self.file.take() {
            file.flush().await.map_err(|e| Error::io(&self.tmp, e))?;
            file.sync_all().await.map_err(|e| Error::io(&self.tmp, e))?;
        }
        tokio::fs::rename(&self.tmp, &self.target)
            .await
            .map_err(|e| Error::io(&self.target, e))?;
        // The rename is durable only once the directory is.
        let dir = self.target.parent().map(Path::to_owned).unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(&dir, e))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(self.received)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if self.file.is_some() || !self.target.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_bytes_that_hash_to_the_digest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ComponentStore::open(dir.path()).unwrap();
        let data = b"component bytes".to_vec();
        let digest = Digest::of(&data);

        let mut wrong = store.begin(digest, data.len() as u64).await.unwrap();
        wrong.write(b"component bytez").await.unwrap();
        assert!(wrong.finish().await.is_err());
        assert!(!store.has(&digest));

        let mut short = store.begin(digest, data.len() as u64).await.unwrap();
        short.write(b"comp").await.unwrap();
        assert!(short.finish().await.is_err());

        let mut long = store.begin(digest, 4).await.unwrap();
        assert!(long.write(&data).await.is_err());
        drop(long);

        let mut good = store.begin(digest, data.len() as u64).await.unwrap();
        good.write(&data[..5]).await.unwrap();
        good.write(&data[5..]).await.unwrap();
        assert_eq!(good.finish().await.unwrap(), data.len() as u64);
        assert_eq!(store.read(&digest).unwrap(), data);
        // No temporary files are left behind.
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}
