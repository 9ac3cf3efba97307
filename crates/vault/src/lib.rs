//! medledger vault: the content-addressed store for encrypted record blobs. A blob is named by
//! its [`Cid`] (CIDv1, raw, sha2-256), i.e. by the SHA-256 of its bytes, so anyone holding the
//! name can check the bytes, and IPFS tools can too.
//!
//! The [`BlobStore`] trait is the backend abstraction; [`FsVault`] is the filesystem backend.
//! Every backend must pass the conformance suite in `tests/vault/suite.rs`. What a backend
//! promises:
//!
//! - **Streaming in, flat memory.** [`BlobStore::begin_upload`] returns a [`BlobUpload`], a
//!   writer that hashes as it goes; [`BlobUpload::finish`] checks the hash against the CID the
//!   uploader announced, makes the blob durable and records it. Until `finish` succeeds nothing
//!   is visible under the blob's name; a dropped (truncated) upload leaves nothing behind.
//! - **Limits while writing.** A blob larger than [`VaultConfig::max_blob_bytes`], or one that
//!   would take its uploader past [`VaultConfig::quota_bytes`], is refused as soon as the
//!   limit is crossed, and nothing is stored.
//! - **Who pays.** The first account to store a blob is charged its size; storing the same
//!   bytes again (by anyone) is not charged, and refreshes the blob's "stored at" time so that
//!   garbage collection gives it a fresh grace period. Deleting a blob refunds whoever was
//!   charged. [`SYSTEM_UPLOADER`] (the node itself, and blobs found on disk without an index
//!   entry) is never limited by the quota.
//! - **Verified reads.** [`BlobStore::open_verified`] hashes the stored bytes before handing out
//!   a single byte, and reports [`BlobError::Corrupt`] instead of serving damaged data.
//! - **Erasure and garbage collection.** [`BlobStore::delete`] removes a blob for good (the
//!   crypto-shredding of personal data deletes its ciphertext here);
//!   [`BlobStore::collect_garbage`] removes blobs that no record references once they are older
//!   than a grace period.
//!
//! [`BlobStore::put`] and [`BlobStore::get`] are the small-blob conveniences (at most
//! [`MAX_BLOB_BYTES`], charged to nobody) that the node's sealed-details endpoints use; they
//! report the older [`VaultError`].
#![warn(missing_docs)]

mod error;
mod fs;

use std::{
    fmt,
    io::{self, Read, Write},
    sync::Arc,
    time::{Duration, SystemTime},
};

pub use error::{BlobError, VaultError};
pub use fs::{FsVault, IN_MEMORY_READ_BYTES, Reconciliation, VaultCheck, check_offline};
use medledger_core::{Cid, Hash, ids::AccountId};

/// Largest blob accepted by [`BlobStore::put`] and returned by [`BlobStore::get`], which hold
/// the whole blob in memory. Larger blobs go through [`BlobStore::begin_upload`] and
/// [`BlobStore::open_verified`].
pub const MAX_BLOB_BYTES: usize = 1024 * 1024;

/// The account charged for blobs the node stores itself ([`BlobStore::put`]) and for blob
/// files found on disk without an index entry. It is never limited by the quota.
pub const SYSTEM_UPLOADER: AccountId = AccountId([0; 20]);

/// Limits and clock of a vault.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// Largest blob accepted, in bytes (default 16 GiB): a DICOM study fits, a runaway upload
    /// does not fill the disk.
    pub max_blob_bytes: u64,
    /// Bytes each account may have stored at once (default 50 GiB), so that one doctor's
    /// uploads cannot exhaust a hospital's vault, unless `quotas` sets the account's own.
    /// Blobs stored by [`SYSTEM_UPLOADER`] are exempt.
    pub quota_bytes: u64,
    /// Each account's own quota, when the vault's owner sets them per account (the node sets
    /// them by role); `None`: `quota_bytes` for everyone.
    pub quotas: Option<Quotas>,
    /// Where "stored at" times come from; tests substitute a fake clock to age blobs.
    pub clock: Clock,
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            max_blob_bytes: 16 << 30,
            quota_bytes: 50 << 30,
            quotas: None,
            clock: Clock::system(),
        }
    }
}

impl VaultConfig {
    /// The quota of `uploader`, in bytes.
    pub fn quota_of(&self, uploader: &AccountId) -> u64 {
        self.quotas.as_ref().map_or(self.quota_bytes, |q| (q.0)(uploader))
    }
}

/// A quota per account, in bytes, decided by the vault's owner (the node asks the ledger for
/// the account's role).
#[derive(Clone)]
pub struct Quotas(Arc<dyn Fn(&AccountId) -> u64 + Send + Sync>);

impl Quotas {
    /// Quotas given by `quota_of`.
    pub fn new(quota_of: impl Fn(&AccountId) -> u64 + Send + Sync + 'static) -> Self {
        Quotas(Arc::new(quota_of))
    }
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Quotas(per account)")
    }
}

/// A source of wall-clock time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// The operating system's clock.
    pub fn system() -> Self {
        Self(Arc::new(SystemTime::now))
    }

    /// A clock that asks `now` for the time.
    pub fn new(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock(now = {:?})", self.now())
    }
}

/// A content-addressed blob store: the backend abstraction behind the vault. Object-safe, so
/// the node can hold an `Arc<dyn BlobStore>`. Every backend must pass the conformance suite in
/// `tests/vault/suite.rs`.
pub trait BlobStore: Send + Sync {
    /// Starts storing a blob for `uploader`. Write its bytes to the returned [`BlobUpload`]
    /// and call [`BlobUpload::finish`]. If `expected` is given, `finish` refuses bytes that do
    /// not hash to it.
    ///
    /// Announce `expected` whenever the client knows it: it also lets the vault recognise bytes
    /// it already has, which are then not counted against the quota while they are written.
    /// Without it, the bytes count as new until `finish` finds them already stored (and charges
    /// nothing), so a re-upload by an account close to its quota can be refused.
    fn begin_upload(
        &self,
        uploader: AccountId,
        expected: Option<Cid>,
    ) -> Result<Box<dyn BlobUpload>, BlobError>;

    /// The blob named `hash`, checked: its bytes are hashed before any is returned, and a
    /// mismatch is reported as [`BlobError::Corrupt`]. `None` if it is not stored.
    fn open_verified(&self, hash: &Hash) -> Result<Option<VerifiedBlob>, BlobError>;

    /// What the index knows about the blob named `hash`.
    fn info(&self, hash: &Hash) -> Result<Option<BlobInfo>, BlobError>;

    /// Whether the blob named `hash` is stored.
    fn contains(&self, hash: &Hash) -> Result<bool, BlobError> {
        Ok(self.info(hash)?.is_some())
    }

    /// The length in bytes of the blob named `hash`, if stored.
    fn len(&self, hash: &Hash) -> Result<Option<u64>, BlobError> {
        Ok(self.info(hash)?.map(|info| info.len))
    }

    /// Bytes currently charged to `uploader`.
    fn usage(&self, uploader: AccountId) -> Result<u64, BlobError>;

    /// Removes the blob named `hash` for good and refunds whoever was charged for it. Returns
    /// whether there was anything to remove; deleting a missing blob is not an error.
    fn delete(&self, hash: &Hash) -> Result<bool, BlobError>;

    /// Removes every blob that `is_referenced` says no record needs and that was last stored
    /// at least `grace` before `now`. The grace period covers the time between an upload and
    /// the transaction that references it; `is_referenced` should answer `true` when unsure.
    fn collect_garbage(
        &self,
        is_referenced: &dyn Fn(&Hash) -> bool,
        grace: Duration,
        now: SystemTime,
    ) -> Result<GcReport, BlobError>;

    /// Stores a small blob (at most [`MAX_BLOB_BYTES`]) in one call, charged to
    /// [`SYSTEM_UPLOADER`], and returns its hash. Storing the same bytes twice is harmless.
    fn put(&self, bytes: &[u8]) -> Result<Hash, VaultError> {
        self.put_as(SYSTEM_UPLOADER, bytes)
    }

    /// [`BlobStore::put`], charged to `uploader` (and so limited by its quota).
    fn put_as(&self, uploader: AccountId, bytes: &[u8]) -> Result<Hash, VaultError> {
        if bytes.len() > MAX_BLOB_BYTES {
            return Err(VaultError::TooLarge { len: bytes.len() });
        }
        let mut upload = self.begin_upload(uploader, None)?;
        upload.write_chunk(bytes)?;
        Ok(upload.finish()?.cid.hash())
    }

    /// The bytes of a small blob (at most [`MAX_BLOB_BYTES`]), if present, checked like
    /// [`BlobStore::open_verified`]. A larger blob is refused with [`VaultError::TooLarge`]
    /// rather than read into memory.
    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>, VaultError> {
        let Some(blob) = self.open_verified(hash)? else { return Ok(None) };
        let len = usize::try_from(blob.len()).unwrap_or(usize::MAX);
        if len > MAX_BLOB_BYTES {
            return Err(VaultError::TooLarge { len });
        }
        // Checked in memory: those very bytes, not a copy.
        let mut blob = match blob.into_bytes() {
            Ok(bytes) => return Ok(Some(bytes)),
            Err(blob) => blob,
        };
        let mut bytes = Vec::with_capacity(len);
        blob.read_to_end(&mut bytes).map_err(|e| VaultError::from_read(e, hash))?;
        Ok(Some(bytes))
    }
}

/// A blob being uploaded. Bytes go to temporary storage as they arrive; only
/// [`BlobUpload::finish`] makes them visible under the blob's name. Dropping an unfinished
/// upload discards what was written.
///
/// The [`Write`] implementation reports vault errors as [`io::Error`]s whose inner error is
/// the [`BlobError`] (see [`BlobError::from_io`]); [`BlobUpload::write_chunk`] returns them
/// directly.
pub trait BlobUpload: Write + Send {
    /// Appends `bytes`. Fails with [`BlobError::TooLarge`] or [`BlobError::QuotaExceeded`] as
    /// soon as the upload crosses a limit; the upload is then discarded and every later call
    /// fails with [`BlobError::UploadDiscarded`].
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), BlobError>;

    /// Bytes written so far.
    fn written(&self) -> u64;

    /// Checks the bytes against the expected CID, makes them durable, publishes them under
    /// their name and charges the uploader (unless the blob was already stored).
    fn finish(self: Box<Self>) -> Result<StoredBlob, BlobError>;
}

/// The outcome of a finished upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBlob {
    /// The blob's content address.
    pub cid: Cid,
    /// Its length in bytes.
    pub len: u64,
    /// Whether the same bytes were already stored, in which case nobody was charged again.
    pub already_present: bool,
}

/// What the vault's index records about a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInfo {
    /// Length in bytes.
    pub len: u64,
    /// The account charged for it: the first to store it.
    pub uploader: AccountId,
    /// When it was last stored (first upload, or a later upload of the same bytes); garbage
    /// collection counts the grace period from here.
    pub stored_at: SystemTime,
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub deleted: u64,
    /// Their total size in bytes.
    pub bytes_freed: u64,
}

/// A stored blob whose bytes were checked against its name, ready to be streamed. Read it with
/// [`Read`]. A backend that has to re-read the bytes after checking them reports an error at the
/// end of the stream, rather than a clean end, if they changed in between.
pub struct VerifiedBlob {
    /// Its content address.
    cid: Cid,
    /// Its length, for a `Content-Length` header.
    len: u64,
    /// Where the checked bytes come from.
    source: Source,
}

/// Where a [`VerifiedBlob`]'s checked bytes come from.
enum Source {
    /// Held in memory: exactly the bytes that were checked.
    Memory(io::Cursor<Vec<u8>>),
    /// Read from the backend as they are served, into memory that is not zeroed first.
    Chunks(Box<dyn ReadChunk>),
}

/// A reader that appends what it reads to a buffer's spare capacity without zeroing it first
/// (a boxed `dyn Read` cannot: the default `read_buf` zeroes the buffer before each read).
pub(crate) trait ReadChunk: Read + Send {
    /// Appends at most `max` bytes to `out`; how many (0 at the end).
    fn read_chunk(&mut self, max: usize, out: &mut Vec<u8>) -> io::Result<usize>;
}

impl VerifiedBlob {
    /// A blob named `cid` of `len` bytes, read from `reader` a chunk at a time.
    pub(crate) fn chunks(cid: Cid, len: u64, reader: Box<dyn ReadChunk>) -> Self {
        Self { cid, len, source: Source::Chunks(reader) }
    }

    /// A blob named `cid` whose checked bytes are `bytes`, held in memory.
    pub(crate) fn in_memory(cid: Cid, bytes: Vec<u8>) -> Self {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        Self { cid, len, source: Source::Memory(io::Cursor::new(bytes)) }
    }

    /// Its content address.
    pub fn cid(&self) -> Cid {
        self.cid
    }

    /// Its length in bytes (the whole blob's, however much of it was read).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is the empty blob.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes not yet read, when the backend holds them in memory (so that a server can
    /// hand them on without copying them again); otherwise the blob itself, to be read.
    pub fn into_bytes(self) -> Result<Vec<u8>, Self> {
        match self.source {
            Source::Memory(cursor) => {
                let at = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
                let mut bytes = cursor.into_inner();
                bytes.drain(..at.min(bytes.len()));
                Ok(bytes)
            }
            Source::Chunks(_) => Err(self),
        }
    }

    /// The next at most `max` bytes, in a buffer of their own (empty at the end), read into
    /// memory that was not zeroed first.
    pub fn read_chunk(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut chunk = Vec::with_capacity(max);
        let limit = u64::try_from(max).unwrap_or(u64::MAX);
        match &mut self.source {
            Source::Chunks(reader) => {
                reader.read_chunk(max, &mut chunk)?;
            }
            Source::Memory(cursor) => {
                cursor.take(limit).read_to_end(&mut chunk)?;
            }
        }
        Ok(chunk)
    }
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.source {
            Source::Memory(cursor) => cursor.read(buf),
            Source::Chunks(reader) => reader.read(buf),
        }
    }
}

impl fmt::Debug for VerifiedBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedBlob").field("cid", &self.cid).field("len", &self.len).finish()
    }
}
