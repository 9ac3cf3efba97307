//! Streaming uploads into the filesystem vault: bytes go to a temporary file in the vault
//! directory through a fixed-size buffer while being hashed, so memory stays flat whatever the
//! blob's size; limits are enforced as the bytes arrive.

use std::{
    fs,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use medledger_core::{Cid, Hash, ids::AccountId};
use sha2::{Digest, Sha256};

use super::{Inner, TEMP_PREFIX};
use crate::{BlobError, BlobUpload, SYSTEM_UPLOADER, StoredBlob};

/// Write buffer of an upload: large enough that small network chunks become large writes.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// A temporary file that is deleted when dropped, unless [`TempFile::persist`]ed.
pub(crate) struct TempFile {
    /// Where it is.
    path: PathBuf,
    /// Buffered writes to it.
    writer: BufWriter<fs::File>,
    /// Whether it still has to be deleted on drop.
    armed: bool,
}

impl TempFile {
    /// A new temporary file with a unique name in `dir`.
    fn create(dir: &Path) -> io::Result<Self> {
        let path = dir.join(format!("{TEMP_PREFIX}{}", unique_suffix()));
        let file = fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        Ok(Self { path, writer: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file), armed: true })
    }

    /// Flushes the buffer and fsyncs the file.
    fn sync(&mut self) -> io::Result<()> {
        self.writer.flush()?;
        self.writer.get_ref().sync_all()
    }

    /// Renames the file to `to` (atomically replacing any file there).
    pub(crate) fn persist(mut self, to: &Path) -> io::Result<()> {
        fs::rename(&self.path, to)?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: a file that cannot be removed now is removed when the vault next
            // opens.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Sixteen hex digits that no other temporary file of this vault has: uniqueness, not secrecy
/// (the file is created with `create_new`, so a clash fails rather than shares).
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let seed = Hash::of_parts(&[
        &std::process::id().to_le_bytes(),
        &nanos.to_le_bytes(),
        &COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes(),
    ]);
    hex::encode(&seed.0[..8])
}

/// How the quota applies to an upload.
#[derive(Debug, Clone, Copy)]
enum Quota {
    /// Not limited: the system account, or bytes already stored (not charged again).
    Exempt,
    /// Limited; `stored` is what the uploader had stored when the upload began. `finish`
    /// checks again against the figure committed by then.
    Limited { stored: u64 },
}

/// An upload into an [`super::FsVault`].
pub(crate) struct FsUpload {
    /// The vault.
    vault: Arc<Inner>,
    /// Who is charged.
    uploader: AccountId,
    /// The CID the uploader announced, checked at `finish`.
    expected: Option<Cid>,
    /// The bytes so far; `None` once the upload failed.
    temp: Option<TempFile>,
    /// SHA-256 of the bytes so far.
    hasher: Sha256,
    /// Bytes so far.
    written: u64,
    /// Whether and how the quota limits this upload.
    quota: Quota,
    /// Bytes this upload has counted in the vault's in-flight total for `uploader`.
    reserved: u64,
}

impl FsUpload {
    pub(crate) fn begin(
        vault: Arc<Inner>,
        uploader: AccountId,
        expected: Option<Cid>,
    ) -> Result<Self, BlobError> {
        let already_stored = match expected {
            Some(cid) => vault.index.get(&cid.hash())?.is_some(),
            None => false,
        };
        let quota = if uploader == SYSTEM_UPLOADER || already_stored {
            Quota::Exempt
        } else {
            Quota::Limited { stored: vault.index.usage(uploader)? }
        };
        let temp = TempFile::create(&vault.dir).map_err(vault.io_error(&vault.dir))?;
        Ok(Self {
            vault,
            uploader,
            expected,
            temp: Some(temp),
            hasher: Sha256::new(),
            written: 0,
            quota,
            reserved: 0,
        })
    }

    /// Counts `more` bytes of this upload against the uploader's quota.
    fn reserve(&mut self, more: u64) -> Result<(), BlobError> {
        let Quota::Limited { stored } = self.quota else { return Ok(()) };
        let quota = self.vault.config.quota_of(&self.uploader);
        let mut in_flight = self.vault.in_flight();
        let uploading = in_flight.entry(self.uploader).or_default();
        let others = uploading.saturating_sub(self.reserved);
        let needed = self.written.saturating_add(more);
        let used = stored.saturating_add(others);
        if used.saturating_add(needed) > quota {
            return Err(BlobError::QuotaExceeded { uploader: self.uploader, used, needed, quota });
        }
        *uploading = uploading.saturating_add(more);
        self.reserved = self.reserved.saturating_add(more);
        Ok(())
    }

    /// Discards the upload after `error`: deletes the temporary file and releases the quota.
    fn fail(&mut self, error: BlobError) -> BlobError {
        self.temp = None;
        self.vault.release(self.uploader, std::mem::take(&mut self.reserved));
        error
    }
}

impl BlobUpload for FsUpload {
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        if self.temp.is_none() {
            return Err(BlobError::UploadDiscarded);
        }
        let more = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let len = self.written.saturating_add(more);
        let limit = self.vault.config.max_blob_bytes;
        if len > limit {
            return Err(self.fail(BlobError::TooLarge { len, limit }));
        }
        if let Err(e) = self.reserve(more) {
            return Err(self.fail(e));
        }
        let Some(temp) = self.temp.as_mut() else { return Err(BlobError::UploadDiscarded) };
        if let Err(source) = temp.writer.write_all(bytes) {
            let path = temp.path.clone();
            return Err(self.fail(BlobError::Io { path, source }));
        }
        self.hasher.update(bytes);
        self.written = len;
        Ok(())
    }

    fn written(&self) -> u64 {
        self.written
    }

    fn finish(mut self: Box<Self>) -> Result<StoredBlob, BlobError> {
        let Some(mut temp) = self.temp.take() else { return Err(BlobError::UploadDiscarded) };
        let actual = Cid::from_hash(Hash(std::mem::take(&mut self.hasher).finalize().into()));
        if let Some(expected) = self.expected
            && expected != actual
        {
            return Err(self.fail(BlobError::CidMismatch { expected, actual }));
        }
        if let Err(source) = temp.sync() {
            let path = temp.path.clone();
            return Err(self.fail(BlobError::Io { path, source }));
        }
        // The in-flight reservation is released when `self` drops, after the commit has
        // counted the bytes in the index, so that they are never counted nowhere.
        self.vault.commit_upload(temp, actual, self.written, self.uploader)
    }
}

impl Write for FsUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_chunk(buf).map_err(BlobError::into_io)?;
        Ok(buf.len())
    }

    /// Durability comes from [`BlobUpload::finish`]; there is nothing to flush before it.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for FsUpload {
    fn drop(&mut self) {
        // An unfinished upload: its temporary file (if any) is deleted as `temp` drops.
        self.vault.release(self.uploader, self.reserved);
    }
}
