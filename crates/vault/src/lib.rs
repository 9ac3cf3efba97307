//! medledger vault: a content-addressed store for encrypted blobs. Blobs are named by the
//! SHA-256 of their bytes (the hash inside a CIDv1 raw/sha2-256 address); a write goes to a
//! temporary file that is fsynced and renamed, so a crash never leaves a partial blob visible;
//! every read re-hashes the bytes and reports corruption instead of serving it.
//!
//! For now the vault holds small sealed blobs (registration details). Streaming, quotas and
//! garbage collection come with encrypted records.
#![warn(missing_docs)]

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use medledger_core::Hash;

/// Largest blob accepted by [`BlobStore::put`].
pub const MAX_BLOB_BYTES: usize = 1024 * 1024;

/// Why a vault operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The blob exceeds the size limit.
    #[error("blob of {len} bytes exceeds the limit of {MAX_BLOB_BYTES}")]
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
    /// The filesystem failed.
    #[error("vault I/O at {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        source: std::io::Error,
    },
}

/// A content-addressed blob store. Any backend must pass the conformance tests in
/// `tests/vault/main.rs`.
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` and returns their hash. Storing the same bytes twice is harmless.
    fn put(&self, bytes: &[u8]) -> Result<Hash, VaultError>;
    /// The bytes named `hash`, if present and intact.
    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>, VaultError>;
}

/// The filesystem backend: one file per blob, named by its hex hash, under a directory.
#[derive(Debug, Clone)]
pub struct FsVault {
    dir: PathBuf,
}

impl FsVault {
    /// Opens (creating if needed) a vault in `dir`.
    pub fn open(dir: &Path) -> Result<Self, VaultError> {
        fs::create_dir_all(dir).map_err(|source| VaultError::Io { path: dir.into(), source })?;
        Ok(Self { dir: dir.to_owned() })
    }

    fn path_of(&self, hash: &Hash) -> PathBuf {
        self.dir.join(hash.to_hex())
    }
}

impl BlobStore for FsVault {
    fn put(&self, bytes: &[u8]) -> Result<Hash, VaultError> {
        if bytes.len() > MAX_BLOB_BYTES {
            return Err(VaultError::TooLarge { len: bytes.len() });
        }
        let hash = Hash::of(bytes);
        let path = self.path_of(&hash);
        if path.exists() {
            return Ok(hash);
        }
        let io = |source| VaultError::Io { path: path.clone(), source };
        let mut tmp = tempfile_in(&self.dir).map_err(io)?;
        tmp.1.write_all(bytes).map_err(io)?;
        tmp.1.sync_all().map_err(io)?;
        fs::rename(&tmp.0, &path).map_err(io)?;
        // Make the rename itself durable.
        fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(hash)
    }

    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>, VaultError> {
        let path = self.path_of(hash);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(VaultError::Io { path, source }),
        };
        let actual = Hash::of(&bytes);
        if actual != *hash {
            return Err(VaultError::Corrupt { hash: *hash, actual });
        }
        Ok(Some(bytes))
    }
}

/// A new temporary file in `dir` with a unique name (its path and handle).
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let mut suffix = [0u8; 8];
    unique_suffix(&mut suffix);
    let path = dir.join(format!(".tmp-{}", hex::encode(suffix)));
    let file = fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
    Ok((path, file))
}

fn unique_suffix(buf: &mut [u8]) {
    // Uniqueness, not secrecy: process id, time and a counter.
    let seed = Hash::of_parts(&[
        &std::process::id().to_le_bytes(),
        &std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes(),
        &COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes(),
    ]);
    buf.copy_from_slice(&seed.0[..buf.len()]);
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
