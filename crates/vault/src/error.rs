//! Vault errors, worded for the person who runs the node: [`BlobError`] for the blob store, and
//! [`VaultError`], the smaller error of the one-call `put`/`get` that the node's sealed-details
//! endpoints still use.

use std::{io, path::PathBuf};

use medledger_core::{Cid, Hash, ids::AccountId};

/// Why a blob store operation failed. [`BlobError::is_refusal`] separates "this upload is
/// refused" (the client's problem) from "the vault is broken" (the operator's).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The blob is larger than the vault accepts. Nothing was stored.
    #[error(
        "the file is too large for this vault: {len} bytes received so far, the limit is {limit} bytes; nothing was stored"
    )]
    TooLarge {
        /// Bytes received when the limit was crossed (the file may be larger still).
        len: u64,
        /// The vault's limit.
        limit: u64,
    },
    /// The upload would take its uploader past its storage quota. Nothing was stored.
    #[error(
        "account {uploader} has used its storage quota: {used} bytes stored or being uploaded, plus {needed} bytes of this upload so far, exceeds the quota of {quota} bytes; nothing was stored"
    )]
    QuotaExceeded {
        /// The account charged.
        uploader: AccountId,
        /// Bytes it already has stored or in other unfinished uploads.
        used: u64,
        /// Bytes of this upload when the quota was crossed.
        needed: u64,
        /// Its quota.
        quota: u64,
    },
    /// The uploaded bytes are not those the uploader announced (a truncated or altered upload).
    /// Nothing was stored.
    #[error(
        "the uploaded file does not match its content identifier: expected {expected}, received bytes with identifier {actual}; nothing was stored"
    )]
    CidMismatch {
        /// The CID announced.
        expected: Cid,
        /// The CID of the bytes received.
        actual: Cid,
    },
    /// The stored bytes no longer hash to their name: damage on disk. Nothing was served.
    #[error(
        "stored file {} is damaged: its bytes no longer match their identifier (they hash to {actual}); it was not served; restore it from a backup or have it uploaded again",
        Cid::from_hash(*hash)
    )]
    Corrupt {
        /// Its name.
        hash: Hash,
        /// What its bytes hash to now.
        actual: Hash,
    },
    /// The upload already failed; what it had written was discarded.
    #[error("this upload already failed and its partial data was discarded; start a new upload")]
    UploadDiscarded,
    /// Another process holds the vault open.
    #[error(
        "the vault at {path} is in use by another process (is a second node running on the same data directory?)"
    )]
    InUse {
        /// The vault directory.
        path: PathBuf,
    },
    /// The filesystem failed.
    #[error("vault file operation failed at {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        source: io::Error,
    },
    /// The vault's index database failed.
    #[error("vault index {path} failed: {source}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// What.
        source: redb::Error,
    },
}

impl BlobError {
    /// Whether the request was refused (client error) rather than the vault failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. }
                | Self::QuotaExceeded { .. }
                | Self::CidMismatch { .. }
                | Self::UploadDiscarded
        )
    }

    /// Whether the file system ran out of space (`ENOSPC`, or a quota: `EDQUOT`) for a blob
    /// file or the index. The upload is discarded whole, as for any other failure.
    pub fn is_out_of_space(&self) -> bool {
        let full = |e: &io::Error| {
            matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        };
        match self {
            Self::Io { source, .. } => full(source),
            Self::Index { source: redb::Error::Io(e), .. } => full(e),
            _ => false,
        }
    }

    /// The vault error inside an [`io::Error`] returned by a [`crate::BlobUpload`]'s `write` or
    /// a [`crate::VerifiedBlob`]'s `read`, if it carries one.
    pub fn from_io(error: &io::Error) -> Option<&BlobError> {
        error.get_ref().and_then(|inner| inner.downcast_ref::<BlobError>())
    }

    /// This error as an [`io::Error`] (for `Write` and `Read` implementations), keeping it
    /// recoverable with [`BlobError::from_io`].
    pub(crate) fn into_io(self) -> io::Error {
        let kind = match &self {
            Self::Corrupt { .. } => io::ErrorKind::InvalidData,
            Self::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }
}

/// Why a one-call [`crate::BlobStore::put`] or [`crate::BlobStore::get`] failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The blob exceeds the size limit of `put` and `get`.
    #[error("blob of {len} bytes exceeds the limit of {} bytes", crate::MAX_BLOB_BYTES)]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The stored bytes no longer hash to their name: corruption on disk.
    #[error("blob {hash} is corrupt: its bytes hash to {actual}")]
    Corrupt {
        /// Its name.
        hash: Hash,
        /// What its bytes hash to now.
        actual: Hash,
    },
    /// The filesystem (or the vault's index) failed.
    #[error("vault I/O at {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        source: io::Error,
    },
}

impl VaultError {
    /// The error for a failed read of the verified blob named `hash`.
    pub(crate) fn from_read(error: io::Error, hash: &Hash) -> Self {
        let path = PathBuf::from(hash.to_hex());
        if !error.get_ref().is_some_and(|inner| inner.is::<BlobError>()) {
            return VaultError::Io { path, source: error };
        }
        match error.into_inner().map(|inner| inner.downcast::<BlobError>()) {
            Some(Ok(blob)) => (*blob).into(),
            // Checked just above: the inner error is a BlobError.
            _ => VaultError::Io { path, source: io::Error::other("reading the blob failed") },
        }
    }
}

impl From<BlobError> for VaultError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::TooLarge { len, .. } => {
                VaultError::TooLarge { len: usize::try_from(len).unwrap_or(usize::MAX) }
            }
            BlobError::Corrupt { hash, actual } => VaultError::Corrupt { hash, actual },
            BlobError::Io { path, source } => VaultError::Io { path, source },
            BlobError::Index { ref path, .. } | BlobError::InUse { ref path } => {
                VaultError::Io { path: path.clone(), source: io::Error::other(e) }
            }
            // `put` charges nobody and announces no CID, so these do not arise from it.
            BlobError::QuotaExceeded { .. }
            | BlobError::CidMismatch { .. }
            | BlobError::UploadDiscarded => {
                VaultError::Io { path: PathBuf::from("vault"), source: io::Error::other(e) }
            }
        }
    }
}
