//! The filesystem backend, [`FsVault`].
//!
//! Layout of the vault directory:
//! - `<64 hex digits>`: one file per blob, named by the SHA-256 of its bytes (the digest inside
//!   its CID), written once and never modified in place;
//! - `.tmp-<16 hex digits>`: an upload in progress;
//! - `index.redb`: the index (see `index.rs`).
//!
//! Crash safety. An upload writes a temporary file, fsyncs it, renames it to its blob name and
//! fsyncs the directory, all inside an index write transaction that is committed last. A crash
//! can therefore leave (a) a temporary file, removed when the vault next opens, or (b) a blob
//! file without an index entry, which the next open adopts (charged to
//! [`SYSTEM_UPLOADER`](crate::SYSTEM_UPLOADER), so garbage collection removes it if no record
//! refers to it). Deletion removes the file first and the entry last; a crash in between
//! leaves an entry without a file, which the next open drops. Quota usage is rebuilt from the
//! blob entries on every open, so it cannot drift.
//!
//! Opening lists the whole directory, which is fine for the hundreds of thousands of blobs a
//! hospital vault holds; a sharded layout would be the next step beyond that.

mod check;
mod index;
mod read;
mod upload;

use std::{
    collections::{HashMap, hash_map},
    fmt, fs, io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use medledger_core::{Cid, Hash, ids::AccountId};

pub use self::{
    check::{VaultCheck, check_offline},
    read::IN_MEMORY_READ_BYTES,
};
use self::{
    index::{Entry, Index, unix_ms},
    upload::{FsUpload, TempFile},
};
use crate::{
    BlobError, BlobInfo, BlobStore, BlobUpload, GcReport, SYSTEM_UPLOADER, StoredBlob, VaultConfig,
    VerifiedBlob,
};

/// Prefix of the names of temporary upload files.
const TEMP_PREFIX: &str = ".tmp-";
/// Name of the index file.
const INDEX_FILE: &str = "index.redb";

/// The filesystem backend: one file per blob under a directory, plus a redb index. Cheap to
/// clone (clones share the open vault); uploads may run concurrently.
#[derive(Clone)]
pub struct FsVault {
    inner: Arc<Inner>,
}

/// The shared state of an open vault.
struct Inner {
    /// The vault directory.
    dir: PathBuf,
    /// Limits and clock.
    config: VaultConfig,
    /// Which blobs exist, who pays for them, and when they were stored.
    index: Index,
    /// Bytes being written by unfinished uploads, per uploader, so that concurrent uploads by
    /// one account cannot together overshoot its quota before any of them finishes.
    in_flight: Mutex<HashMap<AccountId, u64>>,
    /// What opening the vault repaired.
    reconciliation: Reconciliation,
}

/// What [`FsVault::open_with`] found and repaired: traces of a crash or of files changed
/// behind the vault's back. Worth a log line when not all zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// Temporary files of unfinished uploads (a killed process) that were deleted.
    pub temp_files_removed: u64,
    /// Blob files without an index entry that were added to the index, charged to
    /// [`SYSTEM_UPLOADER`](crate::SYSTEM_UPLOADER).
    pub adopted: u64,
    /// Index entries whose file was gone, dropped (and their uploaders refunded).
    pub dropped: u64,
}

impl FsVault {
    /// Bytes of all the blobs in the vault (the sum of every uploader's usage), for metrics.
    pub fn total_bytes(&self) -> Result<u64, BlobError> {
        self.inner.index.total_usage()
    }

    /// Opens (creating if needed) a vault in `dir` with the default [`VaultConfig`].
    pub fn open(dir: &Path) -> Result<Self, BlobError> {
        Self::open_with(dir, VaultConfig::default())
    }

    /// Opens (creating if needed) a vault in `dir`. Takes the index's lock first (a second
    /// process gets [`BlobError::InUse`]), then removes temporary files left by unfinished
    /// uploads and reconciles the index with the blob files present (see [`Reconciliation`]).
    pub fn open_with(dir: &Path, config: VaultConfig) -> Result<Self, BlobError> {
        let io_at = |path: &Path| {
            let path = path.to_owned();
            move |source| BlobError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let index = Index::open(&dir.join(INDEX_FILE), dir)?;

        let mut reconciliation = Reconciliation::default();
        let mut files = HashMap::new();
        for dirent in fs::read_dir(dir).map_err(io_at(dir))? {
            let dirent = dirent.map_err(io_at(dir))?;
            let path = dirent.path();
            let name = dirent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                match fs::remove_file(&path) {
                    Ok(()) => reconciliation.temp_files_removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => return Err(BlobError::Io { path, source }),
                }
            } else if let Some(hash) = blob_name(name) {
                let meta = dirent.metadata().map_err(io_at(&path))?;
                if meta.is_file() {
                    files.insert(hash, meta.len());
                }
            }
        }
        let mut txn = index.write()?;
        let (adopted, dropped) = txn.reconcile(&files, unix_ms(config.clock.now()))?;
        txn.commit()?;
        reconciliation.adopted = adopted;
        reconciliation.dropped = dropped;

        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                config,
                index,
                in_flight: Mutex::default(),
                reconciliation,
            }),
        })
    }

    /// What opening the vault repaired.
    pub fn reconciliation(&self) -> Reconciliation {
        self.inner.reconciliation
    }

    /// The vault directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The vault's limits.
    pub fn config(&self) -> &VaultConfig {
        &self.inner.config
    }

    /// The path of the file holding the blob named `hash` (for tests and operators; it may not
    /// exist).
    pub fn blob_path(&self, hash: &Hash) -> PathBuf {
        self.inner.blob_path(hash)
    }
}

impl fmt::Debug for FsVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsVault")
            .field("dir", &self.inner.dir)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The hash a blob file is named after, if `name` is one (64 lowercase hex digits).
fn blob_name(name: &str) -> Option<Hash> {
    let lower_hex =
        name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if lower_hex { Hash::from_hex(name).ok() } else { None }
}

impl Inner {
    fn blob_path(&self, hash: &Hash) -> PathBuf {
        self.dir.join(hash.to_hex())
    }

    fn io_error(&self, path: &Path) -> impl FnOnce(io::Error) -> BlobError {
        let path = path.to_owned();
        move |source| BlobError::Io { path, source }
    }

    /// Makes renames and removals in the vault directory durable.
    fn sync_dir(&self) -> Result<(), BlobError> {
        fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(self.io_error(&self.dir))
    }

    /// Bytes `uploader` has in unfinished uploads.
    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, u64>> {
        // The map holds plain counters that are never left half-updated, so a panic elsewhere
        // while the lock was held does not make it wrong.
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns `bytes` reserved by an unfinished upload of `uploader`.
    fn release(&self, uploader: AccountId, bytes: u64) {
        if bytes == 0 {
            return;
        }
        if let hash_map::Entry::Occupied(mut e) = self.in_flight().entry(uploader) {
            *e.get_mut() = e.get().saturating_sub(bytes);
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// Publishes a verified, fsynced temporary file as the blob `cid` of `len` bytes.
    fn commit_upload(
        &self,
        temp: TempFile,
        cid: Cid,
        len: u64,
        uploader: AccountId,
    ) -> Result<StoredBlob, BlobError> {
        let hash = cid.hash();
        let path = self.blob_path(&hash);
        let now_ms = unix_ms(self.config.clock.now());
        // The index write transaction is exclusive: no delete or garbage collection runs
        // between the lookup below and the commit.
        let mut txn = self.index.write()?;
        match txn.get(&hash)? {
            Some(entry) => {
                // Already stored: nobody is charged again. The fresh, verified copy replaces
                // the file, which repairs it if it was damaged or lost, and the grace period
                // of garbage collection restarts.
                temp.persist(&path).map_err(self.io_error(&path))?;
                self.sync_dir()?;
                txn.update(&hash, Entry { stored_at_ms: now_ms, ..entry })?;
                txn.commit()?;
                Ok(StoredBlob { cid, len, already_present: true })
            }
            None => {
                if uploader != SYSTEM_UPLOADER {
                    let used = txn.usage(uploader)?;
                    let quota = self.config.quota_of(&uploader);
                    if used.saturating_add(len) > quota {
                        return Err(BlobError::QuotaExceeded {
                            uploader,
                            used,
                            needed: len,
                            quota,
                        });
                    }
                }
                temp.persist(&path).map_err(self.io_error(&path))?;
                let entry = Entry { len, uploader, stored_at_ms: now_ms };
                let published = self.sync_dir().and_then(|()| {
                    txn.insert_new(&hash, entry)?;
                    txn.commit()
                });
                if published.is_err() {
                    // Not recorded: take the file back down rather than leave it unindexed
                    // until the next open (best effort; the next open adopts it otherwise).
                    let _ = fs::remove_file(&path);
                }
                published.map(|()| StoredBlob { cid, len, already_present: false })
            }
        }
    }

    /// Removes the blob named `hash` within `txn`: index entry (refunding its uploader) and
    /// file. Returns the entry it had and whether a file was removed. The caller fsyncs the
    /// directory and commits.
    fn remove_blob(
        &self,
        txn: &mut index::IndexTxn<'_>,
        hash: &Hash,
    ) -> Result<(Option<Entry>, bool), BlobError> {
        // The file first: if it cannot be removed, the entry stays and still describes it.
        let path = self.blob_path(hash);
        let removed_file = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(source) => return Err(BlobError::Io { path, source }),
        };
        Ok((txn.remove(hash)?, removed_file))
    }
}

impl BlobStore for FsVault {
    fn begin_upload(
        &self,
        uploader: AccountId,
        expected: Option<Cid>,
    ) -> Result<Box<dyn BlobUpload>, BlobError> {
        Ok(Box::new(FsUpload::begin(self.inner.clone(), uploader, expected)?))
    }

    fn open_verified(&self, hash: &Hash) -> Result<Option<VerifiedBlob>, BlobError> {
        read::open_verified(&self.inner.blob_path(hash), hash)
    }

    fn info(&self, hash: &Hash) -> Result<Option<BlobInfo>, BlobError> {
        Ok(self.inner.index.get(hash)?.map(|entry| entry.info()))
    }

    fn usage(&self, uploader: AccountId) -> Result<u64, BlobError> {
        self.inner.index.usage(uploader)
    }

    fn delete(&self, hash: &Hash) -> Result<bool, BlobError> {
        let inner = &self.inner;
        let mut txn = inner.index.write()?;
        let (entry, removed_file) = inner.remove_blob(&mut txn, hash)?;
        if removed_file {
            inner.sync_dir()?;
        }
        txn.commit()?;
        Ok(entry.is_some() || removed_file)
    }

    fn collect_garbage(
        &self,
        is_referenced: &dyn Fn(&Hash) -> bool,
        grace: Duration,
        now: SystemTime,
    ) -> Result<GcReport, BlobError> {
        let inner = &self.inner;
        let now_ms = unix_ms(now);
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let old_enough = |entry: &Entry| now_ms.saturating_sub(entry.stored_at_ms) >= grace_ms;
        // Ask about references outside any write transaction: `is_referenced` may be slow.
        let candidates: Vec<Hash> =
            inner.index.select(old_enough)?.into_iter().filter(|h| !is_referenced(h)).collect();
        if candidates.is_empty() {
            return Ok(GcReport::default());
        }
        let mut report = GcReport::default();
        let mut txn = inner.index.write()?;
        let mut sweep = || -> Result<(), BlobError> {
            for hash in &candidates {
                // Re-check inside the exclusive transaction: an upload of the same bytes since
                // the snapshot above restarted the blob's grace period.
                match txn.get(hash)? {
                    Some(entry) if old_enough(&entry) => {
                        inner.remove_blob(&mut txn, hash)?;
                        report.deleted += 1;
                        report.bytes_freed = report.bytes_freed.saturating_add(entry.len);
                    }
                    _ => {}
                }
            }
            Ok(())
        };
        // Whatever was removed before a failure is recorded, so that the index keeps matching
        // the files.
        let swept = sweep();
        inner.sync_dir()?;
        txn.commit()?;
        swept?;
        Ok(report)
    }
}
