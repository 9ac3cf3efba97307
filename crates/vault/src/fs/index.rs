//! The filesystem vault's index, `index.redb` in the vault directory: what each blob is (size,
//! who was charged, when it was last stored) and how many bytes each account is charged.
//!
//! Tables:
//! - `blobs`: SHA-256 (32 bytes) -> (length, uploader account id (20 bytes), stored at in Unix
//!   milliseconds);
//! - `usage`: account id -> bytes charged. Always the sum of `blobs` lengths per uploader: it is
//!   updated in the same transaction as `blobs`, and rebuilt from `blobs` on every open.
//!
//! The blob files are the truth about which blobs exist; the index is reconciled with the
//! directory when the vault opens (see `FsVault::open_with`).

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use medledger_core::{Hash, ids::AccountId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::{BlobError, BlobInfo, SYSTEM_UPLOADER};

/// Blob hash -> (length, uploader, stored at in Unix ms).
const BLOBS: TableDefinition<'static, [u8; 32], (u64, [u8; 20], u64)> =
    TableDefinition::new("blobs");
/// Account -> bytes charged.
const USAGE: TableDefinition<'static, [u8; 20], u64> = TableDefinition::new("usage");

/// One `blobs` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Length in bytes.
    pub len: u64,
    /// Who was charged.
    pub uploader: AccountId,
    /// When it was last stored, Unix milliseconds.
    pub stored_at_ms: u64,
}

impl Entry {
    fn from_row((len, uploader, stored_at_ms): (u64, [u8; 20], u64)) -> Self {
        Self { len, uploader: AccountId(uploader), stored_at_ms }
    }

    fn row(&self) -> (u64, [u8; 20], u64) {
        (self.len, self.uploader.0, self.stored_at_ms)
    }

    pub fn info(&self) -> BlobInfo {
        BlobInfo {
            len: self.len,
            uploader: self.uploader,
            stored_at: UNIX_EPOCH + Duration::from_millis(self.stored_at_ms),
        }
    }
}

/// `time` in Unix milliseconds (0 before 1970, saturating far in the future).
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The index database.
#[derive(Debug)]
pub(crate) struct Index {
    db: Database,
    path: PathBuf,
}

/// A write transaction on the index with its two tables open. Dropped without
/// [`IndexTxn::commit`], it changes nothing.
pub(crate) struct IndexTxn<'i> {
    index: &'i Index,
    txn: WriteTransaction,
}

type BlobsTable<'t> = redb::Table<'t, [u8; 32], (u64, [u8; 20], u64)>;
type UsageTable<'t> = redb::Table<'t, [u8; 20], u64>;

/// The blobs listed in the index at `path`, read without creating, locking for writing or
/// repairing anything; why not, in words, when it cannot be read.
pub(crate) fn read_offline(path: &Path) -> Result<std::collections::HashSet<Hash>, String> {
    if !path.exists() {
        return Err(format!("the index {} is missing", path.display()));
    }
    let db = redb::ReadOnlyDatabase::open(path).map_err(|e| match e {
        redb::DatabaseError::RepairAborted => format!(
            "the index {} cannot be opened without repair: it was truncated or damaged (or the node did not stop cleanly: then start and stop it once)",
            path.display()
        ),
        e => format!("the index {} cannot be opened: {e}", path.display()),
    })?;
    let read = |e: redb::Error| format!("the index {} cannot be read: {e}", path.display());
    let txn = db.begin_read().map_err(|e| read(e.into()))?;
    let blobs = txn.open_table(BLOBS).map_err(|e| read(e.into()))?;
    let mut out = std::collections::HashSet::new();
    for row in blobs.iter().map_err(|e| read(e.into()))? {
        let (hash, _) = row.map_err(|e| read(e.into()))?;
        out.insert(Hash(hash.value()));
    }
    Ok(out)
}

impl Index {
    /// Opens (creating if needed) the index at `path`.
    pub fn open(path: &Path, vault_dir: &Path) -> Result<Self, BlobError> {
        // A small cache: the index is looked up once per blob read or write, and redb's
        // default (1 GiB) would let it grow with the number of blobs.
        let db = Database::builder().set_cache_size(64 * 1024 * 1024).create(path).map_err(
            |e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    BlobError::InUse { path: vault_dir.to_owned() }
                }
                e => BlobError::Index { path: path.to_owned(), source: e.into() },
            },
        )?;
        let index = Self { db, path: path.to_owned() };
        // Create the tables so that readers never meet a missing table.
        index.write()?.commit()?;
        Ok(index)
    }

    pub fn error(&self, e: impl Into<redb::Error>) -> BlobError {
        BlobError::Index { path: self.path.clone(), source: e.into() }
    }

    /// The entry of the blob named `hash`.
    pub fn get(&self, hash: &Hash) -> Result<Option<Entry>, BlobError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        let blobs = read.open_table(BLOBS).map_err(|e| self.error(e))?;
        let row = blobs.get(hash.0).map_err(|e| self.error(e))?;
        Ok(row.map(|row| Entry::from_row(row.value())))
    }

    /// Bytes charged to `uploader`.
    pub fn usage(&self, uploader: AccountId) -> Result<u64, BlobError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        let usage = read.open_table(USAGE).map_err(|e| self.error(e))?;
        let row = usage.get(uploader.0).map_err(|e| self.error(e))?;
        Ok(row.map_or(0, |row| row.value()))
    }

    /// Bytes charged to all uploaders together: the bytes of every blob in the vault.
    pub fn total_usage(&self) -> Result<u64, BlobError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        let usage = read.open_table(USAGE).map_err(|e| self.error(e))?;
        let mut total = 0u64;
        for row in usage.iter().map_err(|e| self.error(e))? {
            let (_, bytes) = row.map_err(|e| self.error(e))?;
            total = total.saturating_add(bytes.value());
        }
        Ok(total)
    }

    /// Every blob whose entry satisfies `keep`, from one consistent snapshot.
    pub fn select(&self, mut keep: impl FnMut(&Entry) -> bool) -> Result<Vec<Hash>, BlobError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        let blobs = read.open_table(BLOBS).map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        for row in blobs.iter().map_err(|e| self.error(e))? {
            let (hash, entry) = row.map_err(|e| self.error(e))?;
            if keep(&Entry::from_row(entry.value())) {
                out.push(Hash(hash.value()));
            }
        }
        Ok(out)
    }

    /// Starts a write transaction (waiting for any other to finish).
    pub fn write(&self) -> Result<IndexTxn<'_>, BlobError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let this = IndexTxn { index: self, txn };
        // Open both tables once, so that they exist for readers after the first commit.
        this.blobs()?;
        this.usage_table()?;
        Ok(this)
    }
}

impl IndexTxn<'_> {
    fn blobs(&self) -> Result<BlobsTable<'_>, BlobError> {
        self.txn.open_table(BLOBS).map_err(|e| self.index.error(e))
    }

    fn usage_table(&self) -> Result<UsageTable<'_>, BlobError> {
        self.txn.open_table(USAGE).map_err(|e| self.index.error(e))
    }

    /// The entry of the blob named `hash`.
    pub fn get(&self, hash: &Hash) -> Result<Option<Entry>, BlobError> {
        let blobs = self.blobs()?;
        let row = blobs.get(hash.0).map_err(|e| self.index.error(e))?;
        Ok(row.map(|row| Entry::from_row(row.value())))
    }

    /// Bytes charged to `uploader`.
    pub fn usage(&self, uploader: AccountId) -> Result<u64, BlobError> {
        let usage = self.usage_table()?;
        let row = usage.get(uploader.0).map_err(|e| self.index.error(e))?;
        Ok(row.map_or(0, |row| row.value()))
    }

    /// Records a blob that was not in the index, charging its uploader.
    pub fn insert_new(&mut self, hash: &Hash, entry: Entry) -> Result<(), BlobError> {
        self.blobs()?.insert(hash.0, entry.row()).map_err(|e| self.index.error(e))?;
        let used = self.usage(entry.uploader)?;
        self.set_usage(entry.uploader, used.saturating_add(entry.len))
    }

    /// Updates the entry of a blob already in the index, charging nobody.
    pub fn update(&mut self, hash: &Hash, entry: Entry) -> Result<(), BlobError> {
        self.blobs()?.insert(hash.0, entry.row()).map_err(|e| self.index.error(e))?;
        Ok(())
    }

    /// Removes a blob's entry and refunds its uploader; returns the entry it had.
    pub fn remove(&mut self, hash: &Hash) -> Result<Option<Entry>, BlobError> {
        let removed = {
            let mut blobs = self.blobs()?;
            let row = blobs.remove(hash.0).map_err(|e| self.index.error(e))?;
            row.map(|row| Entry::from_row(row.value()))
        };
        let Some(entry) = removed else { return Ok(None) };
        let used = self.usage(entry.uploader)?;
        self.set_usage(entry.uploader, used.saturating_sub(entry.len))?;
        Ok(Some(entry))
    }

    fn set_usage(&mut self, uploader: AccountId, bytes: u64) -> Result<(), BlobError> {
        let mut usage = self.usage_table()?;
        if bytes == 0 {
            usage.remove(uploader.0).map_err(|e| self.index.error(e))?;
        } else {
            usage.insert(uploader.0, bytes).map_err(|e| self.index.error(e))?;
        }
        Ok(())
    }

    /// Makes the index agree with the blob files found on disk (`files`: hash -> length):
    /// entries without a file are dropped, files without an entry are added (charged to
    /// [`SYSTEM_UPLOADER`], stored at `now_ms`), and `usage` is rebuilt from `blobs`.
    /// Returns (added, dropped).
    pub fn reconcile(
        &mut self,
        files: &HashMap<Hash, u64>,
        now_ms: u64,
    ) -> Result<(u64, u64), BlobError> {
        let e = |err: redb::StorageError| self.index.error(err);
        let mut blobs = self.blobs()?;
        let mut dropped = 0;
        blobs
            .retain(|hash, _| {
                let keep = files.contains_key(&Hash(hash));
                dropped += u64::from(!keep);
                keep
            })
            .map_err(e)?;
        let mut added = 0;
        for (hash, &len) in files {
            if blobs.get(hash.0).map_err(e)?.is_none() {
                let entry = Entry { len, uploader: SYSTEM_UPLOADER, stored_at_ms: now_ms };
                blobs.insert(hash.0, entry.row()).map_err(e)?;
                added += 1;
            }
        }
        let mut totals: BTreeMap<[u8; 20], u64> = BTreeMap::new();
        for row in blobs.iter().map_err(e)? {
            let (_, entry) = row.map_err(e)?;
            let (len, uploader, _) = entry.value();
            let total = totals.entry(uploader).or_default();
            *total = total.saturating_add(len);
        }
        let mut usage = self.usage_table()?;
        usage.retain(|_, _| false).map_err(e)?;
        for (uploader, bytes) in totals {
            usage.insert(uploader, bytes).map_err(e)?;
        }
        Ok((added, dropped))
    }

    /// Commits (durably: redb fsyncs on commit).
    pub fn commit(self) -> Result<(), BlobError> {
        self.txn.commit().map_err(|e| self.index.error(e))
    }
}
