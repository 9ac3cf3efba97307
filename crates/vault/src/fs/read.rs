//! Verified reads from the filesystem vault: the whole blob is hashed before its first byte is
//! handed out.
//!
//! The trade-off, by size:
//! - up to [`IN_MEMORY_READ_BYTES`]: the file is read once into memory, hashed, and served from
//!   that buffer. One pass over the disk; memory up to 4 MiB per concurrent read; the bytes
//!   served are exactly the bytes checked.
//! - larger: the file is hashed in a first pass with a fixed buffer, then read again from the
//!   start to be served (same open file, so a rename over it does not matter). Memory stays
//!   flat, at the cost of reading the file twice (the second pass usually comes from the page
//!   cache) and hashing it twice: the second pass is hashed too, and if the bytes changed
//!   between the passes the stream ends with an error instead of its last chunk, so a reader
//!   never receives a complete but wrong blob.

use std::{
    fs,
    io::{self, BufReader, Read, Seek, SeekFrom},
    path::Path,
};

use medledger_core::{Cid, Hash};
use sha2::{Digest, Sha256};

use crate::{BlobError, ReadChunk, VerifiedBlob};

/// Blobs up to this size are read into memory once and served from there; larger ones are
/// read twice (hash, then serve).
pub const IN_MEMORY_READ_BYTES: u64 = 4 * 1024 * 1024;

/// Buffer of the hashing pass and of the serving reader.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Opens the blob file at `path`, which must hold the bytes named `hash`, and checks it.
pub(super) fn open_verified(path: &Path, hash: &Hash) -> Result<Option<VerifiedBlob>, BlobError> {
    let io_error = |source| BlobError::Io { path: path.to_owned(), source };
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error(source)),
    };
    let size = file.metadata().map_err(io_error)?.len();
    let cid = Cid::from_hash(*hash);

    if size <= IN_MEMORY_READ_BYTES {
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.read_to_end(&mut bytes).map_err(io_error)?;
        let actual = Hash::of(&bytes);
        if actual != *hash {
            return Err(BlobError::Corrupt { hash: *hash, actual });
        }
        return Ok(Some(VerifiedBlob::in_memory(cid, bytes)));
    }

    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(io_error(source)),
        };
        hasher.update(&buf[..n]);
        len = len.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
    let actual = Hash(hasher.finalize().into());
    if actual != *hash {
        return Err(BlobError::Corrupt { hash: *hash, actual });
    }
    file.seek(SeekFrom::Start(0)).map_err(io_error)?;
    let reader = Rechecked {
        file: BufReader::with_capacity(READ_BUFFER_BYTES, file),
        hasher: Sha256::new(),
        hash: *hash,
        remaining: len,
    };
    Ok(Some(VerifiedBlob::chunks(cid, len, Box::new(reader))))
}

/// The second pass over a large blob: serves exactly the checked length and hashes what it
/// serves, withholding the last chunk (returning an error instead) if the bytes changed.
struct Rechecked {
    /// The blob file, positioned at the next byte to serve.
    file: BufReader<fs::File>,
    /// SHA-256 of the bytes served so far.
    hasher: Sha256,
    /// What they must hash to.
    hash: Hash,
    /// Bytes still to serve.
    remaining: u64,
}

impl Rechecked {
    /// Accounts for `n` bytes just read into `bytes` (the first `n`): hashes them, and at the
    /// end of the checked length checks the whole; an error instead if the file ended early or
    /// the bytes changed since they were checked.
    fn served(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if bytes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "stored file {} shrank while it was being served",
                    Cid::from_hash(self.hash)
                ),
            ));
        }
        self.hasher.update(bytes);
        let n = bytes.len();
        self.remaining -= u64::try_from(n).unwrap_or(u64::MAX).min(self.remaining);
        if self.remaining == 0 {
            let actual = Hash(std::mem::take(&mut self.hasher).finalize().into());
            if actual != self.hash {
                return Err(BlobError::Corrupt { hash: self.hash, actual }.into_io());
            }
        }
        Ok(n)
    }
}

impl Read for Rechecked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(buf.len());
        let n = self.file.read(&mut buf[..max])?;
        self.served(&buf[..n])
    }
}

impl ReadChunk for Rechecked {
    fn read_chunk(&mut self, max: usize, out: &mut Vec<u8>) -> io::Result<usize> {
        let want = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(max);
        if want == 0 {
            return Ok(0);
        }
        let start = out.len();
        // `take` + `read_to_end` on the file itself fills the spare capacity as it is (the
        // file's `read_buf`), with no zeroing.
        let limit = u64::try_from(want).unwrap_or(u64::MAX);
        (&mut self.file).take(limit).read_to_end(out)?;
        let n = out.len() - start;
        self.served(&out[start..start + n])
    }
}
