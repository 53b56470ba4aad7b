//! Components on a host's disk, content-addressed by digest.
//!
//! A component is written to a temporary file as it arrives, hashed on the
//! way, and renamed to `<digest>.wasm` only once its bytes hash to the digest
//! it was announced under, so the store never holds a file whose name lies.
//!
//! The store has a disk quota. An upload reserves its announced size before
//! its first byte is written, so uploads in progress count too, and one
//! that does not fit is refused. What frees space is [`ComponentStore::collect`]:
//! it removes the components that the caller says no agent uses and that
//! arrived longer ago than a grace period, so a component uploaded for a
//! deploy that has not happened yet is not raced away.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use edgehost_runtime::Digest;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::sync::lock;
use crate::{Error, Result};

/// The prefix of an upload's temporary file.
const INCOMING: &str = ".incoming-";
/// The suffix of a stored component.
const COMPONENT: &str = ".wasm";

/// The directory of stored components.
#[derive(Debug, Clone)]
pub struct ComponentStore {
    dir: PathBuf,
    /// Bytes the store may hold, uploads in progress included.
    quota: u64,
    usage: Arc<Mutex<Usage>>,
}

/// What the store's quota is spent on.
#[derive(Debug, Default)]
struct Usage {
    /// Bytes of stored components.
    stored: u64,
    /// Bytes announced by uploads in progress.
    reserved: u64,
}

/// What one garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    /// The components removed.
    pub removed: Vec<Digest>,
    /// The bytes they took.
    pub freed: u64,
}

impl ComponentStore {
    /// Opens (creating) the store in `dir`, which may hold `quota` bytes.
    pub fn open(dir: &Path, quota: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        // Uploads a crash cut short: never renamed into place, never used.
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut stored = 0;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(INCOMING) {
                let path = entry.path();
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::info!(path = %path.display(), "removed a partial upload"),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "cannot remove a partial upload: {e}")
                    }
                }
            } else if digest_of(&entry.file_name()).is_some() {
                stored += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        Ok(ComponentStore {
            dir: dir.to_owned(),
            quota,
            usage: Arc::new(Mutex::new(Usage {
                stored,
                reserved: 0,
            })),
        })
    }

    /// The path of the component with `digest`.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}{COMPONENT}", digest.hex()))
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

    /// Bytes the store may hold.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Bytes in use: stored components and uploads in progress.
    pub fn used(&self) -> u64 {
        let usage = self.usage();
        usage.stored.saturating_add(usage.reserved)
    }

    /// Whether `size` more bytes fit under the quota now.
    pub fn fits(&self, size: u64) -> bool {
        self.used().saturating_add(size) <= self.quota
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        lock(&self.usage)
    }

    /// Starts receiving a component announced as `digest`, `size` bytes.
    /// Its size is reserved at once; a component that does not fit under
    /// the quota is refused with [`Error::Conflict`].
    pub async fn begin(&self, digest: Digest, size: u64) -> Result<Incoming> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let reservation = self.reserve(size)?;
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
            reservation: Some(reservation),
        })
    }

    fn reserve(&self, size: u64) -> Result<Reservation> {
        let mut usage = self.usage();
        let used = usage.stored.saturating_add(usage.reserved);
        if used.saturating_add(size) > self.quota {
            return Err(Error::Conflict(format!(
                "the component store is full: {size} more bytes do not fit beside the {used} in use \
                 (quota {} bytes); components agents use, or that arrived recently, are kept",
                self.quota
            )));
        }
        usage.reserved += size;
        Ok(Reservation {
            usage: self.usage.clone(),
            bytes: size,
        })
    }

    /// Removes every stored component that is not in `keep` and arrived
    /// more than `grace` ago (blocking). A component whose age cannot be
    /// read is kept.
    pub fn collect(&self, keep: &HashSet<Digest>, grace: Duration) -> Result<Collected> {
        let now = SystemTime::now();
        let mut collected = Collected::default();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for entry in entries.flatten() {
            let Some(digest) = digest_of(&entry.file_name()) else {
                continue;
            };
            if keep.contains(&digest) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let old = meta
                .modified()
                .ok()
                .and_then(|at| now.duration_since(at).ok())
                .is_some_and(|age| age >= grace);
            if !old {
                continue;
            }
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    collected.removed.push(digest);
                    collected.freed += meta.len();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        let mut usage = self.usage();
        usage.stored = usage.stored.saturating_sub(collected.freed);
        Ok(collected)
    }
}

/// The digest a stored component's file name carries, if it is one.
fn digest_of(file_name: &std::ffi::OsStr) -> Option<Digest> {
    let name = file_name.to_str()?;
    let hex = name.strip_suffix(COMPONENT)?;
    (hex.len() == 64).then(|| hex.parse().ok()).flatten()
}

/// Quota an upload in progress holds; given back when it is dropped.
#[derive(Debug)]
struct Reservation {
    usage: Arc<Mutex<Usage>>,
    bytes: u64,
}

impl Reservation {
    /// The upload arrived: its bytes count as stored (when `new`, else the
    /// file it replaced already counted them).
    fn settle(mut self, new: bool) {
        let mut usage = lock(&self.usage);
        usage.reserved = usage.reserved.saturating_sub(self.bytes);
        if new {
            usage.stored = usage.stored.saturating_add(self.bytes);
        }
        self.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut usage = lock(&self.usage);
        usage.reserved = usage.reserved.saturating_sub(self.bytes);
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
    /// Its share of the quota, until it is stored or dropped.
    reservation: Option<Reservation>,
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
        let new = !tokio::fs::try_exists(&self.target).await.unwrap_or(false);
        tokio::fs::rename(&self.tmp, &self.target)
            .await
            .map_err(|e| Error::io(&self.target, e))?;
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(new);
        }
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
        let store = ComponentStore::open(dir.path(), 1 << 20).unwrap();
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

    async fn store_bytes(store: &ComponentStore, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(data);
        let mut incoming = store.begin(digest, data.len() as u64).await?;
        incoming.write(data).await?;
        incoming.finish().await?;
        Ok(digest)
    }

    #[tokio::test]
    async fn uploads_in_progress_and_stored_components_share_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let store = ComponentStore::open(dir.path(), 1000).unwrap();
        let a = store_bytes(&store, &[1; 400]).await.unwrap();
        assert_eq!(store.used(), 400);
        // An upload in progress holds its announced size.
        let pending = store.begin(Digest::of(&[2; 500]), 500).await.unwrap();
        assert_eq!(store.used(), 900);
        let full = store.begin(Digest::of(&[3; 200]), 200).await;
        assert!(
            matches!(&full, Err(Error::Conflict(m)) if m.contains("store is full")),
            "{:?}",
            full.err()
        );
        // Nothing of the refused upload is left behind.
        assert_eq!(store.used(), 900);
        drop(pending);
        assert_eq!(store.used(), 400);
        store_bytes(&store, &[3; 200]).await.unwrap();
        assert_eq!(store.used(), 600);
        // A failed upload gives its reservation back.
        let mut bad = store.begin(Digest::of(&[4; 100]), 100).await.unwrap();
        bad.write(&[5; 100]).await.unwrap();
        assert!(bad.finish().await.is_err());
        assert_eq!(store.used(), 600);
        // Reopened, the store counts what is on disk.
        let again = ComponentStore::open(dir.path(), 1000).unwrap();
        assert_eq!(again.used(), 600);
        assert!(again.has(&a));
    }

    #[tokio::test]
    async fn collection_removes_only_old_components_nobody_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let store = ComponentStore::open(dir.path(), 1 << 20).unwrap();
        let used = store_bytes(&store, b"used by an agent").await.unwrap();
        let unused = store_bytes(&store, b"used by nobody").await.unwrap();
        std::fs::write(dir.path().join("not-a-component.txt"), b"left alone").unwrap();
        let keep: HashSet<Digest> = [used].into();

        // Within the grace period nothing goes.
        let none = store.collect(&keep, Duration::from_secs(3600)).unwrap();
        assert_eq!(none, Collected::default());
        assert!(store.has(&unused));

        let before = store.used();
        let collected = store.collect(&keep, Duration::ZERO).unwrap();
        assert_eq!(collected.removed, vec![unused]);
        assert_eq!(collected.freed, b"used by nobody".len() as u64);
        assert_eq!(store.used(), before - collected.freed);
        assert!(store.has(&used));
        assert!(!store.has(&unused));
        assert!(dir.path().join("not-a-component.txt").exists());
    }

    #[tokio::test]
    async fn a_collection_makes_room_for_an_upload_that_did_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let store = ComponentStore::open(dir.path(), 1000).unwrap();
        let kept = store_bytes(&store, &[1; 300]).await.unwrap();
        store_bytes(&store, &[2; 600]).await.unwrap();
        let next = [3; 300];
        assert!(!store.fits(next.len() as u64));
        assert!(store.begin(Digest::of(&next), 300).await.is_err());
        store.collect(&[kept].into(), Duration::ZERO).unwrap();
        assert!(store.fits(next.len() as u64));
        store_bytes(&store, &next).await.unwrap();
        assert_eq!(store.used(), 600);
    }
}
