//! Encrypting medical records of any size (a PDF, a DICOM study of several GiB) for the vault,
//! with memory that stays flat whatever the size.
//!
//! Each record has its own random 256-bit [`DataKey`]. From it HKDF-SHA256 derives the content
//! key, the metadata key and a key commitment, each under its own label, so the data key itself
//! never keys a cipher. The content is encrypted with the STREAM construction (Hoang,
//! Reyhanitabar, Rogaway, Vizár 2015, as `aead_stream::StreamBE32`) over AES-256-GCM: the
//! plaintext is cut into [`SEGMENT_SIZE`] segments, and segment *i* is sealed under the nonce
//! `prefix (7 bytes) || i (u32 big-endian) || last-segment flag (1 byte)`, with the record header
//! as associated data. So each segment is authenticated, in its place, as final or not, and under
//! this header; the decryptor detects any changed byte, reordered, duplicated or missing segments,
//! a missing final segment (truncation), bytes after the final segment, a wrong key and a changed
//! header.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! header   magic "mlrc" (4) | version 1 (1) | segment size (4) | nonce prefix (7)
//!          | key commitment (32)                                      = HEADER_LEN (48) bytes
//! segments ciphertext of each plaintext segment || 16-byte GCM tag; every segment but the
//!          last holds exactly `segment size` plaintext bytes, the last holds 0..=segment size
//!          (0 only when the whole record is empty)
//! ```
//!
//! The key commitment is HKDF-Expand(data key, label || the first 16 header bytes). It lets a
//! reader tell "wrong key" from "altered" before decrypting anything, and makes the whole
//! ciphertext commit to one key: AES-GCM alone does not, so without it whoever wraps the data key
//! could hand two readers two different keys that open the same ciphertext (one CID) to two
//! different documents.
//!
//! The vault addresses a record by the SHA-256 of this ciphertext (its CID is CIDv1, raw codec,
//! sha2-256); [`encrypt`] and [`Encryptor`] hash the ciphertext as they produce it, so uploading
//! takes one pass.
//!
//! One data key is meant for one record. The random nonce prefix keeps re-encryption under the
//! same key safe all the same (nonces collide only after about 2^28 encryptions under one key).
//!
//! The data key reaches readers wrapped to their X25519 keys with HPKE ([`wrap_key`]), bound to a
//! caller-chosen context (the record's PMR-ID and CID) so that a wrapped key cannot be moved to
//! another record. A record's descriptive metadata is sealed separately under the metadata key
//! ([`seal_metadata`]).

use std::{
    fmt,
    io::{self, Read, Write},
    sync::mpsc,
};

use aead_stream::{NewStream, StreamBE32, StreamPrimitive};
use aes_gcm::{Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use medledger_core::{
    Hash, encoding,
    keys::{DecryptionKey, EncryptionKey},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{
    error::{ClientError, RecordError, SealError},
    rand::random_fill,
    seal::{HpkeRecipientKey, WrappedKey, hpke_unwrap, hpke_wrap},
    sealed_blob,
};

/// Magic bytes at the start of every encrypted record.
pub const RECORD_MAGIC: [u8; 4] = *b"mlrc";
/// The record format version this code writes and reads.
pub const RECORD_VERSION: u8 = 1;
/// Plaintext bytes per segment written by this code (64 KiB).
pub const SEGMENT_SIZE: usize = 64 * 1024;
/// Smallest segment size a reader accepts in a header.
pub const MIN_SEGMENT_SIZE: u32 = 1024;
/// Largest segment size a reader accepts in a header: bounds the reader's memory.
pub const MAX_SEGMENT_SIZE: u32 = 16 * 1024 * 1024;
/// Length of the GCM tag that ends every segment.
pub const TAG_LEN: usize = 16;
/// Length of the random nonce prefix (the 12-byte GCM nonce less STREAM's 5 bytes).
pub const NONCE_PREFIX_LEN: usize = 7;
/// Length of the key commitment in the header.
pub const KEY_COMMITMENT_LEN: usize = 32;
/// Length of the record header.
pub const HEADER_LEN: usize = 4 + 1 + 4 + NONCE_PREFIX_LEN + KEY_COMMITMENT_LEN;
/// Largest plaintext one record can hold: STREAM's 32-bit counter numbers at most 2^32
/// segments.
pub const MAX_PLAINTEXT_LEN: u64 = (1 << 32) * SEGMENT_SIZE as u64;

/// Magic bytes at the start of sealed record metadata.
pub const METADATA_MAGIC: [u8; 4] = sealed_blob::RECORD_METADATA.magic;
/// The sealed metadata version this code writes and reads.
pub const METADATA_VERSION: u8 = sealed_blob::VERSION;
/// Largest encoded metadata that can be sealed.
pub const MAX_METADATA_BYTES: usize = sealed_blob::RECORD_METADATA.max_plaintext_bytes;

/// Bytes of the header that the key commitment covers (all but the commitment itself).
const HEADER_PREFIX_LEN: usize = HEADER_LEN - KEY_COMMITMENT_LEN;

const LABEL_CONTENT_KEY: &[u8] = b"medledger/v1/record/content-key";
const LABEL_KEY_COMMITMENT: &[u8] = b"medledger/v1/record/key-commitment";
const HPKE_INFO_RECORD_KEY: &[u8] = b"medledger/v1/record-key/wrap";
const WRAPPED_DATA_KEY_LEN: usize = 32 + 16;

type Stream = StreamBE32<Aes256Gcm>;

/// A record's random 256-bit data key. Zeroised on drop; its `Debug` prints `[REDACTED]`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

impl DataKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, ClientError> {
        let mut key = Self([0; 32]);
        random_fill(&mut key.0)?;
        Ok(key)
    }

    /// The key with these bytes (from a keystore, or recombined from shares).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key's bytes: for wrapping and splitting; never print or log them.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// HKDF-SHA256 (no salt; the data key is already uniform) expanded under `info_parts`.
    pub(crate) fn derive(&self, info_parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32: expansion cannot fail.
        let expanded =
            Hkdf::<Sha256>::new(None, &self.0).expand_multi_info(info_parts, out.as_mut_slice());
        debug_assert!(expanded.is_ok());
        out
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

/// Why a record's ciphertext does not decrypt (in [`crate::error::RecordError::Decrypt`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordFault {
    /// The bytes do not start with [`RECORD_MAGIC`].
    #[error("not a medledger encrypted record (bad magic)")]
    NotARecord,
    /// A header from another version of the format.
    #[error(
        "record format version {version} is not supported (this software reads version {RECORD_VERSION})"
    )]
    UnsupportedVersion {
        /// The version in the header.
        version: u8,
    },
    /// The header's segment size is out of bounds.
    #[error(
        "segment size {size} in the header is not supported (expected {MIN_SEGMENT_SIZE} to \
         {MAX_SEGMENT_SIZE})"
    )]
    BadSegmentSize {
        /// The size in the header.
        size: u32,
    },
    /// The header's key commitment does not match the key.
    #[error(
        "the key is not this record's data key (or the record header's key commitment was \
         altered)"
    )]
    WrongKey,
    /// A segment does not authenticate in its position.
    #[error(
        "segment {segment} does not authenticate: the ciphertext was altered, its segments \
         reordered or duplicated, or it was cut short within that segment"
    )]
    Altered {
        /// Index of the first segment that failed (0 is the first after the header).
        segment: u64,
    },
    /// The ciphertext ends before its final segment.
    #[error("the ciphertext is truncated: {detail}")]
    Truncated {
        /// What is missing.
        detail: String,
    },
    /// Bytes follow the final segment.
    #[error("bytes follow the final segment (segment {segment}): the ciphertext was extended")]
    TrailingData {
        /// Index of the final segment.
        segment: u64,
    },
}

/// What [`encrypt`] or [`Encryptor::finish`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptSummary {
    /// Bytes of plaintext read.
    pub plaintext_len: u64,
    /// Bytes of ciphertext written (always [`ciphertext_len`] of `plaintext_len`).
    pub ciphertext_len: u64,
    /// SHA-256 of the ciphertext: the digest in the record's CID (CIDv1, raw, sha2-256).
    pub ciphertext_sha256: Hash,
}

/// The ciphertext length of a `plaintext_len`-byte record, or `None` above
/// [`MAX_PLAINTEXT_LEN`]. Lets an uploader send `Content-Length` before encrypting.
pub const fn ciphertext_len(plaintext_len: u64) -> Option<u64> {
    if plaintext_len > MAX_PLAINTEXT_LEN {
        return None;
    }
    let seg = SEGMENT_SIZE as u64;
    let segments = if plaintext_len == 0 { 1 } else { plaintext_len.div_ceil(seg) };
    Some(HEADER_LEN as u64 + plaintext_len + segments * TAG_LEN as u64)
}

/// The plaintext length of a well-formed `ciphertext_len`-byte record written with
/// [`SEGMENT_SIZE`], or `None` if no plaintext encrypts to that length.
pub const fn plaintext_len(ciphertext_len: u64) -> Option<u64> {
    let Some(body) = ciphertext_len.checked_sub(HEADER_LEN as u64) else {
        return None;
    };
    let seg_ct = (SEGMENT_SIZE + TAG_LEN) as u64;
    let (full, rest) = (body / seg_ct, body % seg_ct);
    let plaintext = if rest == 0 {
        // Only full segments: the last of them is the final segment (none at all is impossible).
        if full == 0 {
            return None;
        }
        full * SEGMENT_SIZE as u64
    } else if rest >= TAG_LEN as u64 && (rest > TAG_LEN as u64 || full == 0) {
        // A short final segment; an empty one only for an empty record.
        full * SEGMENT_SIZE as u64 + rest - TAG_LEN as u64
    } else {
        return None;
    };
    if plaintext > MAX_PLAINTEXT_LEN { None } else { Some(plaintext) }
}

/// The content cipher and key commitment for one record header.
fn stream_for(
    key: &DataKey,
    header_prefix: &[u8; HEADER_PREFIX_LEN],
) -> Result<(Stream, Zeroizing<[u8; 32]>), ClientError> {
    let content_key = key.derive(&[LABEL_CONTENT_KEY]);
    let commitment = key.derive(&[LABEL_KEY_COMMITMENT, header_prefix]);
    let aead = Aes256Gcm::new_from_slice(content_key.as_slice()).map_err(|e| {
        ClientError::Record(RecordError::Encrypt { reason: format!("content key: {e}") })
    })?;
    let mut prefix = [0u8; NONCE_PREFIX_LEN];
    prefix.copy_from_slice(&header_prefix[9..HEADER_PREFIX_LEN]);
    Ok((Stream::from_aead(aead, &prefix.into()), commitment))
}

/// Seals the segments of one record: the header and the STREAM position. Shared by
/// [`Encryptor`] and [`encrypt`], so both write the same format.
struct Sealer {
    /// The STREAM primitive over the content key.
    stream: Stream,
    /// The header: written first, and the associated data of every segment.
    header: [u8; HEADER_LEN],
    /// Plaintext bytes in every segment but the last.
    segment_size: usize,
    /// Index of the next segment.
    position: u32,
}

impl Sealer {
    fn new(
        key: &DataKey,
        segment_size: usize,
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
    ) -> Result<Self, ClientError> {
        let size = u32::try_from(segment_size)
            .ok()
            .filter(|s| (MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(s))
            .ok_or_else(|| ClientError::InvalidInput {
                what: "segment size",
                reason: format!("{segment_size} is not in {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}"),
            })?;
        let mut prefix = [0u8; HEADER_PREFIX_LEN];
        prefix[..4].copy_from_slice(&RECORD_MAGIC);
        prefix[4] = RECORD_VERSION;
        prefix[5..9].copy_from_slice(&size.to_be_bytes());
        prefix[9..].copy_from_slice(&nonce_prefix);
        let (stream, commitment) = stream_for(key, &prefix)?;
        let mut header = [0u8; HEADER_LEN];
        header[..HEADER_PREFIX_LEN].copy_from_slice(&prefix);
        header[HEADER_PREFIX_LEN..].copy_from_slice(commitment.as_slice());
        Ok(Self { stream, header, segment_size, position: 0 })
    }

    /// Encrypts `segment` in place (appending its tag) as the next segment, final if `last`.
    fn seal(&mut self, segment: &mut Vec<u8>, last: bool) -> Result<(), ClientError> {
        if !last && self.position == u32::MAX {
            return Err(ClientError::Record(RecordError::Encrypt {
                reason: format!("the record is larger than the limit of {MAX_PLAINTEXT_LEN} bytes"),
            }));
        }
        self.stream.encrypt_in_place(self.position, last, &self.header, segment).map_err(|_| {
            ClientError::Record(RecordError::Encrypt {
                reason: format!("AES-GCM refused segment {}", self.position),
            })
        })?;
        if !last {
            self.position += 1;
        }
        Ok(())
    }
}

/// A fresh random nonce prefix.
fn random_nonce_prefix() -> Result<[u8; NONCE_PREFIX_LEN], ClientError> {
    let mut prefix = [0u8; NONCE_PREFIX_LEN];
    random_fill(&mut prefix)?;
    Ok(prefix)
}

/// Push-style record encryption: feed plaintext in pieces of any size with [`update`], then call
/// [`finish`]; ciphertext is appended to the caller's buffer as it becomes available, and hashed.
/// Holds at most one segment. Each call does a few microseconds of work per 64 KiB, so it can be
/// called from async code. For the highest throughput (it hashes on a second core) use
/// [`encrypt`] on a blocking thread instead, with a writer that forwards to the request body.
///
/// [`update`]: Encryptor::update
/// [`finish`]: Encryptor::finish
pub struct Encryptor {
    sealer: Sealer,
    header_written: bool,
    /// Plaintext of the segment being filled (and, in place, its ciphertext): a full segment is
    /// sealed only once more plaintext arrives, since only then is it known not to be the last.
    segment: Zeroizing<Vec<u8>>,
    /// SHA-256 over all ciphertext produced so far.
    hasher: Sha256,
    plaintext_len: u64,
    ciphertext_len: u64,
}

impl fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encryptor")
            .field("position", &self.sealer.position)
            .field("plaintext_len", &self.plaintext_len)
            .field("ciphertext_len", &self.ciphertext_len)
            .finish_non_exhaustive()
    }
}

impl Encryptor {
    /// Starts a record under `key`, with a fresh random nonce prefix.
    pub fn new(key: &DataKey) -> Result<Self, ClientError> {
        Self::with_sealer(Sealer::new(key, SEGMENT_SIZE, random_nonce_prefix()?)?)
    }

    fn with_sealer(sealer: Sealer) -> Result<Self, ClientError> {
        Ok(Self {
            segment: Zeroizing::new(Vec::with_capacity(sealer.segment_size + TAG_LEN)),
            sealer,
            header_written: false,
            hasher: Sha256::new(),
            plaintext_len: 0,
            ciphertext_len: 0,
        })
    }

    fn emit_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_written {
            self.header_written = true;
            self.hasher.update(self.sealer.header);
            self.ciphertext_len += HEADER_LEN as u64;
            out.extend_from_slice(&self.sealer.header);
        }
    }

    /// Seals the buffered segment (as the final one if `last`) and appends it to `out`.
    fn seal_segment(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), ClientError> {
        self.sealer.seal(&mut self.segment, last)?;
        self.hasher.update(&*self.segment);
        self.ciphertext_len += self.segment.len() as u64;
        out.extend_from_slice(&self.segment);
        self.segment.clear();
        Ok(())
    }

    /// Encrypts `plaintext` (any length, possibly empty), appending whatever ciphertext is ready
    /// to `out` (the header first, then whole segments).
    pub fn update(&mut self, mut plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), ClientError> {
        self.emit_header(out);
        let size = self.sealer.segment_size;
        while !plaintext.is_empty() {
            if self.segment.len() == size {
                // More plaintext follows, so the full segment is not the last.
                self.seal_segment(false, out)?;
            }
            let take = (size - self.segment.len()).min(plaintext.len());
            self.segment.extend_from_slice(&plaintext[..take]);
            self.plaintext_len += take as u64;
            plaintext = &plaintext[take..];
        }
        Ok(())
    }

    /// Seals the final segment into `out` and returns the lengths and the ciphertext's SHA-256.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<EncryptSummary, ClientError> {
        self.emit_header(out);
        self.seal_segment(true, out)?;
        Ok(EncryptSummary {
            plaintext_len: self.plaintext_len,
            ciphertext_len: self.ciphertext_len,
            ciphertext_sha256: Hash(self.hasher.finalize().into()),
        })
    }
}
/// Push-style record decryption: feed ciphertext in pieces of any size with [`update`], then
/// call [`finish`]; plaintext is appended to the caller's buffer a segment at a time. Holds at
/// most one segment.
///
/// Each segment is authenticated before its plaintext is released, but only [`finish`] knows
/// that the record was not cut short: until it returns `Ok`, treat the plaintext as unverified
/// (write it to a temporary file and move it into place afterwards). After an error every call
/// returns the same error.
///
/// [`update`]: Decryptor::update
/// [`finish`]: Decryptor::finish
pub struct Decryptor {
    /// The data key, kept until the header arrives.
    key: DataKey,
    /// The header bytes received so far.
    header: Vec<u8>,
    /// Set once the header is complete and checked.
    stream: Option<Stream>,
    segment_size: usize,
    /// Ciphertext of the segment being received, plus one byte of look-ahead: a full segment is
    /// opened as not-the-last only once a byte after it has arrived.
    segment: Zeroizing<Vec<u8>>,
    position: u32,
    plaintext_len: u64,
    failed: Option<RecordFault>,
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("position", &self.position)
            .field("plaintext_len", &self.plaintext_len)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    /// Starts decrypting a record under `key`.
    pub fn new(key: &DataKey) -> Self {
        Self {
            key: DataKey::from_bytes(*key.expose_secret()),
            header: Vec::with_capacity(HEADER_LEN),
            stream: None,
            segment_size: 0,
            segment: Zeroizing::new(Vec::new()),
            position: 0,
            plaintext_len: 0,
            failed: None,
        }
    }

    fn fail(&mut self, fault: RecordFault) -> ClientError {
        self.failed = Some(fault.clone());
        ClientError::Record(RecordError::Decrypt { fault })
    }

    fn check_failed(&self) -> Result<(), ClientError> {
        match &self.failed {
            Some(fault) => Err(ClientError::Record(RecordError::Decrypt { fault: fault.clone() })),
            None => Ok(()),
        }
    }

    /// Parses and checks the complete header, and sets up the content cipher.
    fn open_header(&mut self) -> Result<(), ClientError> {
        let h = &self.header;
        if h[..4] != RECORD_MAGIC {
            return Err(self.fail(RecordFault::NotARecord));
        }
        if h[4] != RECORD_VERSION {
            let version = h[4];
            return Err(self.fail(RecordFault::UnsupportedVersion { version }));
        }
        let size = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&size) {
            return Err(self.fail(RecordFault::BadSegmentSize { size }));
        }
        let mut prefix = [0u8; HEADER_PREFIX_LEN];
        prefix.copy_from_slice(&h[..HEADER_PREFIX_LEN]);
        let (stream, commitment) = stream_for(&self.key, &prefix)?;
        if !bool::from(commitment.as_slice().ct_eq(&self.header[HEADER_PREFIX_LEN..])) {
            return Err(self.fail(RecordFault::WrongKey));
        }
        self.stream = Some(stream);
        self.segment_size = size as usize;
        self.segment = Zeroizing::new(Vec::with_capacity(size as usize + TAG_LEN + 1));
        Ok(())
    }

    /// Opens the buffered segment in place as final or not. On failure the buffer still holds
    /// the ciphertext: RustCrypto's AES-GCM checks the tag before it decrypts.
    fn open_segment(&mut self, last: bool) -> bool {
        match &self.stream {
            Some(stream) => stream
                .decrypt_in_place(self.position, last, &self.header, &mut *self.segment)
                .is_ok(),
            None => false,
        }
    }

    /// Decrypts `ciphertext` (any length, possibly empty), appending the plaintext of every
    /// segment that is complete and authenticated to `out`.
    pub fn update(&mut self, mut ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), ClientError> {
        self.check_failed()?;
        if self.stream.is_none() {
            let take = (HEADER_LEN - self.header.len()).min(ciphertext.len());
            self.header.extend_from_slice(&ciphertext[..take]);
            ciphertext = &ciphertext[take..];
            if self.header.len() < HEADER_LEN {
                return Ok(());
            }
            self.open_header()?;
        }
        let full = self.segment_size + TAG_LEN;
        while !ciphertext.is_empty() {
            let take = (full + 1 - self.segment.len()).min(ciphertext.len());
            self.segment.extend_from_slice(&ciphertext[..take]);
            ciphertext = &ciphertext[take..];
            if self.segment.len() <= full {
                continue;
            }
            // A full segment and one byte more: the segment is not the last.
            let lookahead = self.segment[full];
            self.segment.truncate(full);
            let segment = u64::from(self.position);
            if self.position == u32::MAX || !self.open_segment(false) {
                // Was it the final segment, with bytes after it?
                let fault = if self.open_segment(true) {
                    RecordFault::TrailingData { segment }
                } else {
                    RecordFault::Altered { segment }
                };
                return Err(self.fail(fault));
            }
            out.extend_from_slice(&self.segment);
            self.plaintext_len += self.segment.len() as u64;
            self.position += 1;
            self.segment.clear();
            self.segment.push(lookahead);
        }
        Ok(())
    }

    /// Opens the final segment into `out` and returns the record's plaintext length. Only now
    /// is the whole record authenticated.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<u64, ClientError> {
        self.check_failed()?;
        if self.stream.is_none() {
            let fault = RecordFault::Truncated {
                detail: format!("{} of the {HEADER_LEN} header bytes", self.header.len()),
            };
            return Err(self.fail(fault));
        }
        let segment = u64::from(self.position);
        if self.segment.len() < TAG_LEN {
            let fault = RecordFault::Truncated {
                detail: format!("it ends before the end of segment {segment}"),
            };
            return Err(self.fail(fault));
        }
        if !self.open_segment(true) {
            // A full segment that opens as not-the-last: the final segment is missing.
            let fault = if self.segment.len() == self.segment_size + TAG_LEN
                && self.position < u32::MAX
                && self.open_segment(false)
            {
                RecordFault::Truncated {
                    detail: format!("it ends after segment {segment}, which is not the final one"),
                }
            } else {
                RecordFault::Altered { segment }
            };
            return Err(self.fail(fault));
        }
        out.extend_from_slice(&self.segment);
        self.plaintext_len += self.segment.len() as u64;
        Ok(self.plaintext_len)
    }
}

fn read_some(
    reader: &mut impl Read,
    buf: &mut [u8],
    what: &'static str,
) -> Result<usize, ClientError> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ClientError::Record(RecordError::Io { action: what, source }));
            }
        }
    }
}

/// Segment buffers [`encrypt`] cycles between its two threads: the one being filled, the one read
/// ahead, and the rest queued for hashing. Bounds its memory at this many segments.
const PIPELINE_BUFFERS: usize = 6;

/// Encrypts everything `reader` yields under `key` into `writer`, and returns the lengths and the
/// ciphertext's SHA-256 (the digest of the record's CID). `progress` is called after each
/// segment with the plaintext bytes read so far.
///
/// Memory stays flat (a few segments). Segments are read straight into the buffer they are
/// encrypted in and written from it; a second thread hashes the ciphertext while the next segment
/// is encrypted, so the two costs overlap on a machine with two cores.
pub fn encrypt(
    key: &DataKey,
    reader: impl Read,
    writer: impl Write,
    progress: &mut dyn FnMut(u64),
) -> Result<EncryptSummary, ClientError> {
    let sealer = Sealer::new(key, SEGMENT_SIZE, random_nonce_prefix()?)?;
    encrypt_with(sealer, reader, writer, progress)
}

/// Reads up to `limit` bytes into the empty `buf`; fewer only at the end of the input.
fn read_segment(
    reader: &mut impl Read,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<(), ClientError> {
    buf.clear();
    reader.take(limit as u64).read_to_end(buf).map(drop).map_err(|source| {
        ClientError::Record(RecordError::Io { action: "read the plaintext", source })
    })
}

type PipelineBuffer = Zeroizing<Vec<u8>>;

fn encrypt_with(
    sealer: Sealer,
    reader: impl Read,
    writer: impl Write,
    progress: &mut dyn FnMut(u64),
) -> Result<EncryptSummary, ClientError> {
    std::thread::scope(|scope| {
        // Sealed segments go to the hasher in order; it hands the buffers back for reuse.
        let (to_hash, hash_rx) = mpsc::channel::<PipelineBuffer>();
        let (free_tx, free) = mpsc::channel::<PipelineBuffer>();
        let hasher = scope.spawn(move || {
            let mut hasher = Sha256::new();
            for buf in hash_rx {
                hasher.update(&*buf);
                // Once the encrypting side is done it no longer takes buffers back.
                let _ = free_tx.send(buf);
            }
            Hash(hasher.finalize().into())
        });
        // Returning drops `to_hash`, which lets the hasher finish.
        let lengths = seal_all(sealer, reader, writer, progress, to_hash, free);
        let digest = hasher.join().map_err(|_| hashing_stopped());
        let (plaintext_len, ciphertext_len) = lengths?;
        Ok(EncryptSummary { plaintext_len, ciphertext_len, ciphertext_sha256: digest? })
    })
}

fn hashing_stopped() -> ClientError {
    ClientError::Record(RecordError::Encrypt { reason: "the hashing thread stopped".into() })
}

/// The encrypting half of [`encrypt`]: reads, seals and writes every segment, and queues each
/// for hashing. Returns the plaintext and ciphertext lengths.
fn seal_all(
    mut sealer: Sealer,
    mut reader: impl Read,
    mut writer: impl Write,
    progress: &mut dyn FnMut(u64),
    to_hash: mpsc::Sender<PipelineBuffer>,
    free: mpsc::Receiver<PipelineBuffer>,
) -> Result<(u64, u64), ClientError> {
    let size = sealer.segment_size;
    let mut allocated = 0;
    let mut next_buffer = || -> Result<PipelineBuffer, ClientError> {
        if let Ok(buf) = free.try_recv() {
            return Ok(buf);
        }
        if allocated < PIPELINE_BUFFERS {
            allocated += 1;
            return Ok(Zeroizing::new(Vec::with_capacity(size + TAG_LEN)));
        }
        free.recv().map_err(|_| hashing_stopped())
    };
    let mut emit = |buf: PipelineBuffer| -> Result<u64, ClientError> {
        writer.write_all(&buf).map_err(|source| {
            ClientError::Record(RecordError::Io { action: "write the ciphertext", source })
        })?;
        let len = buf.len() as u64;
        to_hash.send(buf).map_err(|_| hashing_stopped())?;
        Ok(len)
    };

    let mut header = next_buffer()?;
    header.extend_from_slice(&sealer.header);
    let mut ciphertext_len = emit(header)?;
    let mut current = next_buffer()?;
    read_segment(&mut reader, &mut current, size)?;
    let mut plaintext_len = current.len() as u64;
    progress(plaintext_len);
    loop {
        // A full segment is the last only if nothing follows it.
        let next = if current.len() == size {
            let mut next = next_buffer()?;
            read_segment(&mut reader, &mut next, size)?;
            Some(next).filter(|n| !n.is_empty())
        } else {
            None
        };
        sealer.seal(&mut current, next.is_none())?;
        ciphertext_len += emit(current)?;
        let Some(next) = next else { break };
        plaintext_len += next.len() as u64;
        progress(plaintext_len);
        current = next;
    }
    writer.flush().map_err(|source| {
        ClientError::Record(RecordError::Io { action: "write the ciphertext", source })
    })?;
    Ok((plaintext_len, ciphertext_len))
}

/// Decrypts the record `reader` yields under `key` into `writer`, one segment in memory at a
/// time, and returns the plaintext length. `progress` is called after each chunk with the
/// ciphertext bytes read so far.
///
/// On error, plaintext may already have been written: it is unauthenticated and must be
/// discarded (decrypt into a temporary file and rename it on success).
pub fn decrypt(
    key: &DataKey,
    mut reader: impl Read,
    mut writer: impl Write,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, ClientError> {
    let write_err =
        |source| ClientError::Record(RecordError::Io { action: "write the plaintext", source });
    let mut decryptor = Decryptor::new(key);
    let mut buf = vec![0u8; SEGMENT_SIZE + TAG_LEN];
    let mut out = Zeroizing::new(Vec::with_capacity(2 * SEGMENT_SIZE));
    let mut read = 0u64;
    loop {
        let n = read_some(&mut reader, &mut buf, "read the ciphertext")?;
        if n == 0 {
            break;
        }
        decryptor.update(&buf[..n], &mut out)?;
        writer.write_all(&out).map_err(write_err)?;
        out.clear();
        read += n as u64;
        progress(read);
    }
    let len = decryptor.finish(&mut out)?;
    writer.write_all(&out).map_err(write_err)?;
    writer.flush().map_err(write_err)?;
    Ok(len)
}

/// Wraps a record's data key to `recipient` with HPKE (mode Base, DHKEM(X25519, HKDF-SHA256),
/// HKDF-SHA256, ChaCha20-Poly1305). `context` is the HPKE associated data: pass what identifies
/// the record (its PMR-ID and CID, canonically encoded), and the same to [`unwrap_key`]; a wrapped
/// key then opens for this record only.
pub fn wrap_key(
    key: &DataKey,
    recipient: &EncryptionKey,
    context: &[u8],
) -> Result<WrappedKey, ClientError> {
    hpke_wrap(recipient, HPKE_INFO_RECORD_KEY, context, key.expose_secret())
        .map_err(|reason| ClientError::Seal(SealError::KeyWrap { reason }))
}

/// Opens a key made by [`wrap_key`] with the recipient's decryption key and the same `context`.
/// Fails with [`crate::error::SealError::KeyUnwrap`] if it was wrapped to another key or context, or altered.
pub fn unwrap_key(
    wrapped: &WrappedKey,
    key: &DecryptionKey,
    context: &[u8],
) -> Result<DataKey, ClientError> {
    let refused = || ClientError::Seal(SealError::KeyUnwrap { recipient: key.public_key() });
    if wrapped.wrapped.len() != WRAPPED_DATA_KEY_LEN {
        return Err(refused());
    }
    let sk = HpkeRecipientKey::new(key)?;
    let bytes = hpke_unwrap(&sk, wrapped, HPKE_INFO_RECORD_KEY, context).ok_or_else(refused)?;
    let mut out = [0u8; 32];
    out.copy_from_slice(bytes.get(..32).ok_or_else(refused)?);
    let key = DataKey::from_bytes(out);
    out.zeroize();
    Ok(key)
}

/// What a record is, for the people allowed to read it; sealed with [`seal_metadata`] so that
/// neither the ledger nor the vault learns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordMetadata {
    /// A title for lists ("MRI left knee").
    pub title: String,
    /// The content's media type ("application/dicom", "application/pdf").
    pub content_type: String,
    /// When the record was made: an ISO 8601 calendar date, `YYYY-MM-DD`.
    pub date: String,
    /// Free text.
    pub notes: String,
    /// The original file name, to offer on download.
    pub file_name: Option<String>,
}

impl RecordMetadata {
    /// Refuses a date that is not a valid `YYYY-MM-DD`.
    fn check(&self) -> Result<(), ClientError> {
        if !is_iso_date(&self.date) {
            return Err(ClientError::Record(RecordError::Metadata {
                reason: format!("date {:?} is not an ISO 8601 date (YYYY-MM-DD)", self.date),
            }));
        }
        Ok(())
    }
}

/// Whether `s` is a valid proleptic Gregorian `YYYY-MM-DD`.
fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter()
            .try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
    };
    let (Some(year), Some(month), Some(day)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// Seals `metadata` under a key derived from the record's data key (distinct from the content
/// key), bound to `context` (pass the same as to [`wrap_key`]): a
/// [`sealed_blob::RECORD_METADATA`] blob of the canonical (postcard) encoding of the metadata.
pub fn seal_metadata(
    key: &DataKey,
    metadata: &RecordMetadata,
    context: &[u8],
) -> Result<Vec<u8>, ClientError> {
    metadata.check()?;
    let plaintext = Zeroizing::new(encoding::encode(metadata));
    sealed_blob::seal(key, &sealed_blob::RECORD_METADATA, &plaintext, context)
}

/// Opens metadata sealed by [`seal_metadata`] with the record's data key and the same `context`.
pub fn open_metadata(
    key: &DataKey,
    sealed: &[u8],
    context: &[u8],
) -> Result<RecordMetadata, ClientError> {
    let kind = &sealed_blob::RECORD_METADATA;
    let plaintext = sealed_blob::open(key, kind, sealed, context)?;
    let metadata: RecordMetadata = kind.decode(&plaintext)?;
    metadata.check()?;
    Ok(metadata)
}

/// What the ledger can carry for a record's metadata: SHA-256 of the *sealed* metadata.
///
/// It pins the metadata the record was registered with (a reader who is later handed sealed
/// metadata checks it against the ledger, so nobody can retitle or redate a record unnoticed),
/// and it reveals nothing: the sealed bytes are ciphertext under a random nonce. A hash of the
/// plaintext would not do: titles and dates are few enough to guess and check. With the key
/// commitment inside the sealed metadata, one commitment opens to one metadata only.
pub fn metadata_commitment(sealed_metadata: &[u8]) -> Hash {
    Hash::of(sealed_metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small segment size so that tests cross many segment boundaries cheaply.
    const SMALL: usize = 1024;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
    }

    fn seal_with(
        key: &DataKey,
        plaintext: &[u8],
        segment_size: usize,
    ) -> (Vec<u8>, EncryptSummary) {
        let sealer = Sealer::new(key, segment_size, random_nonce_prefix().unwrap()).unwrap();
        let mut enc = Encryptor::with_sealer(sealer).unwrap();
        let mut out = Vec::new();
        // Feed in awkward pieces to exercise the buffering.
        for chunk in plaintext.chunks(777) {
            enc.update(chunk, &mut out).unwrap();
        }
        let summary = enc.finish(&mut out).unwrap();
        (out, summary)
    }

    fn open_with(key: &DataKey, ciphertext: &[u8], piece: usize) -> Result<Vec<u8>, ClientError> {
        let mut dec = Decryptor::new(key);
        let mut out = Vec::new();
        for chunk in ciphertext.chunks(piece.max(1)) {
            dec.update(chunk, &mut out)?;
        }
        let len = dec.finish(&mut out)?;
        assert_eq!(len, out.len() as u64);
        Ok(out)
    }

    fn fault(result: Result<Vec<u8>, ClientError>) -> RecordFault {
        match result {
            Err(ClientError::Record(RecordError::Decrypt { fault })) => fault,
            Err(other) => panic!("expected a record fault, got {other}"),
            Ok(_) => panic!("expected a record fault, but it decrypted"),
        }
    }

    /// The byte range of segment `i` in a ciphertext with `segment_size` segments.
    fn segment_range(i: usize, segment_size: usize, total: usize) -> std::ops::Range<usize> {
        let start = HEADER_LEN + i * (segment_size + TAG_LEN);
        start..(start + segment_size + TAG_LEN).min(total)
    }

    #[test]
    fn round_trips_at_every_boundary() {
        let key = DataKey::generate().unwrap();
        for len in [0, 1, SMALL - 1, SMALL, SMALL + 1, 2 * SMALL, 3 * SMALL + 5] {
            let plaintext = pattern(len);
            let (ct, summary) = seal_with(&key, &plaintext, SMALL);
            assert_eq!(summary.plaintext_len, len as u64);
            assert_eq!(summary.ciphertext_len, ct.len() as u64);
            assert_eq!(summary.ciphertext_sha256, Hash::of(&ct), "hash of what was written");
            let segments = len.div_ceil(SMALL).max(1);
            assert_eq!(ct.len(), HEADER_LEN + len + segments * TAG_LEN);
            for piece in [1, 7, SMALL + TAG_LEN, SMALL + TAG_LEN + 1, ct.len()] {
                assert_eq!(
                    open_with(&key, &ct, piece).unwrap(),
                    plaintext,
                    "len {len} piece {piece}"
                );
            }
        }
    }

    #[test]
    fn read_write_api_round_trips_with_default_segments_and_reports_progress() {
        let key = DataKey::generate().unwrap();
        let plaintext = pattern(3 * SEGMENT_SIZE + 12345);
        let mut ct = Vec::new();
        let mut seen = Vec::new();
        let summary = encrypt(&key, plaintext.as_slice(), &mut ct, &mut |n| seen.push(n)).unwrap();
        assert_eq!(summary.plaintext_len, plaintext.len() as u64);
        assert_eq!(Some(summary.ciphertext_len), ciphertext_len(plaintext.len() as u64));
        assert_eq!(summary.ciphertext_len, ct.len() as u64);
        assert_eq!(summary.ciphertext_sha256, Hash::of(&ct));
        assert_eq!(seen.last(), Some(&(plaintext.len() as u64)));
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        assert!(!ct.windows(32).any(|w| plaintext.windows(32).next() == Some(w)));

        let mut back = Vec::new();
        let mut seen = Vec::new();
        let len = decrypt(&key, ct.as_slice(), &mut back, &mut |n| seen.push(n)).unwrap();
        assert_eq!(len, plaintext.len() as u64);
        assert_eq!(back, plaintext);
        assert_eq!(seen.last(), Some(&(ct.len() as u64)));
    }

    /// A reader that yields at most 100 bytes per call.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(100);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn encrypt_and_encryptor_write_the_same_bytes() {
        let key = DataKey::generate().unwrap();
        for len in [0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL, 3 * SMALL + 7, 20 * SMALL] {
            let plaintext = pattern(len);
            let prefix = random_nonce_prefix().unwrap();
            let mut a = Vec::new();
            let mut calls = 0;
            let sealer = Sealer::new(&key, SMALL, prefix).unwrap();
            let sa =
                encrypt_with(sealer, Trickle(&plaintext), &mut a, &mut |_| calls += 1).unwrap();
            assert_eq!(calls, len.div_ceil(SMALL).max(1), "progress once per segment");

            let mut enc =
                Encryptor::with_sealer(Sealer::new(&key, SMALL, prefix).unwrap()).unwrap();
            let mut b = Vec::new();
            enc.update(&plaintext, &mut b).unwrap();
            let sb = enc.finish(&mut b).unwrap();
            assert_eq!(a, b, "len {len}");
            assert_eq!(sa, sb);
            assert_eq!(sa.ciphertext_sha256, Hash::of(&a));
            assert_eq!(open_with(&key, &a, 333).unwrap(), plaintext);
        }
    }

    #[test]
    fn same_plaintext_encrypts_differently() {
        let key = DataKey::generate().unwrap();
        let (a, _) = seal_with(&key, b"same", SMALL);
        let (b, _) = seal_with(&key, b"same", SMALL);
        assert_ne!(a, b, "fresh nonce prefix per record");
    }

    #[test]
    fn lengths_are_pure_functions_and_inverse() {
        assert_eq!(ciphertext_len(0), Some((HEADER_LEN + TAG_LEN) as u64));
        assert_eq!(
            ciphertext_len(SEGMENT_SIZE as u64),
            Some((HEADER_LEN + SEGMENT_SIZE + TAG_LEN) as u64)
        );
        assert_eq!(
            ciphertext_len(SEGMENT_SIZE as u64 + 1),
            Some((HEADER_LEN + SEGMENT_SIZE + 1 + 2 * TAG_LEN) as u64)
        );
        assert_eq!(ciphertext_len(MAX_PLAINTEXT_LEN + 1), None);
        assert!(ciphertext_len(MAX_PLAINTEXT_LEN).is_some());
        let seg = SEGMENT_SIZE as u64;
        for p in [0, 1, seg - 1, seg, seg + 1, 5 * seg, 5 * seg + 17, MAX_PLAINTEXT_LEN] {
            assert_eq!(plaintext_len(ciphertext_len(p).unwrap()), Some(p), "p = {p}");
        }
        // Lengths no record has: shorter than a header and an empty segment, a dangling partial
        // tag, an empty final segment after full ones.
        for c in [0, HEADER_LEN as u64, (HEADER_LEN + TAG_LEN - 1) as u64] {
            assert_eq!(plaintext_len(c), None, "c = {c}");
        }
        let one_full = ciphertext_len(seg).unwrap();
        assert_eq!(plaintext_len(one_full + TAG_LEN as u64), None);
        assert_eq!(plaintext_len(one_full + 3), None);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let key = DataKey::generate().unwrap();
        let plaintext = pattern(2 * SMALL + 100);
        let (ct, _) = seal_with(&key, &plaintext, SMALL);
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x20;
            let f = fault(open_with(&key, &bad, 4096));
            if i >= HEADER_LEN {
                let segment = ((i - HEADER_LEN) / (SMALL + TAG_LEN)) as u64;
                assert_eq!(f, RecordFault::Altered { segment }, "flip at {i}");
            }
        }
    }

    #[test]
    fn header_changes_are_detected() {
        let key = DataKey::generate().unwrap();
        let (ct, _) = seal_with(&key, &pattern(3000), SMALL);
        let with = |i: usize, v: u8| {
            let mut bad = ct.clone();
            bad[i] = v;
            fault(open_with(&key, &bad, 100))
        };
        assert_eq!(with(0, b'X'), RecordFault::NotARecord);
        assert_eq!(with(4, 2), RecordFault::UnsupportedVersion { version: 2 });
        assert_eq!(with(5, 0xff), RecordFault::BadSegmentSize { size: 0xff00_0400 });
        // The segment size is bound into the key commitment: another in-range size is refused
        // before any segment is read.
        assert_eq!(with(7, 0x08), RecordFault::WrongKey);
        // So is the nonce prefix.
        assert_eq!(with(12, ct[12] ^ 1), RecordFault::WrongKey);

        // A header from another record under the same key (the commitment matches, the nonce
        // prefix differs): its segments were sealed under another header, so they do not
        // authenticate under this one.
        let (other, _) = seal_with(&key, &pattern(3000), SMALL);
        let mut spliced = other[..HEADER_LEN].to_vec();
        spliced.extend_from_slice(&ct[HEADER_LEN..]);
        assert_eq!(fault(open_with(&key, &spliced, 100)), RecordFault::Altered { segment: 0 });

        // Every segment authenticates its header as associated data. A header rewritten by a
        // key holder, with another segment size and a matching commitment, over a one-segment
        // record (which chunks the same under either size) is still refused.
        let (ct, _) = seal_with(&key, &pattern(500), SMALL);
        let mut prefix = [0u8; HEADER_PREFIX_LEN];
        prefix.copy_from_slice(&ct[..HEADER_PREFIX_LEN]);
        prefix[5..9].copy_from_slice(&2048u32.to_be_bytes());
        let (_, commitment) = stream_for(&key, &prefix).unwrap();
        let mut rewritten = prefix.to_vec();
        rewritten.extend_from_slice(commitment.as_slice());
        rewritten.extend_from_slice(&ct[HEADER_LEN..]);
        assert_eq!(fault(open_with(&key, &rewritten, 100)), RecordFault::Altered { segment: 0 });
    }

    #[test]
    fn wrong_key_is_detected_at_the_header() {
        let (key, other) = (DataKey::generate().unwrap(), DataKey::generate().unwrap());
        let (ct, _) = seal_with(&key, &pattern(5000), SMALL);
        // Give only the header: the key is refused before any segment is read.
        let mut dec = Decryptor::new(&other);
        let err = dec.update(&ct[..HEADER_LEN], &mut Vec::new()).unwrap_err();
        assert!(matches!(
            err,
            ClientError::Record(RecordError::Decrypt { fault: RecordFault::WrongKey })
        ));
        assert_eq!(fault(open_with(&other, &ct, 1 << 20)), RecordFault::WrongKey);
        // And the error sticks.
        assert!(dec.update(&ct[HEADER_LEN..], &mut Vec::new()).is_err());
        assert!(dec.finish(&mut Vec::new()).is_err());
    }

    #[test]
    fn truncation_is_detected() {
        let key = DataKey::generate().unwrap();
        let (ct, _) = seal_with(&key, &pattern(3 * SMALL), SMALL);
        // Drop the final segment (the plaintext is a multiple of the segment size, so every
        // segment is full and the cut is exactly at a segment boundary).
        let cut = segment_range(2, SMALL, ct.len()).start;
        assert!(matches!(fault(open_with(&key, &ct[..cut], 100)), RecordFault::Truncated { .. }));
        assert!(matches!(fault(open_with(&key, &ct[..cut], cut)), RecordFault::Truncated { .. }));
        // Only the header, or part of it.
        assert!(matches!(
            fault(open_with(&key, &ct[..HEADER_LEN], 10)),
            RecordFault::Truncated { .. }
        ));
        assert!(matches!(fault(open_with(&key, &ct[..10], 10)), RecordFault::Truncated { .. }));
        assert!(matches!(fault(open_with(&key, &[], 10)), RecordFault::Truncated { .. }));
        // Cut inside a segment.
        assert_eq!(
            fault(open_with(&key, &ct[..cut - 5], 100)),
            RecordFault::Altered { segment: 1 }
        );
        // A short final segment, removed whole.
        let (ct, _) = seal_with(&key, &pattern(2 * SMALL + 10), SMALL);
        let cut = segment_range(2, SMALL, ct.len()).start;
        assert!(matches!(fault(open_with(&key, &ct[..cut], 100)), RecordFault::Truncated { .. }));
    }

    #[test]
    fn trailing_bytes_are_detected() {
        let key = DataKey::generate().unwrap();
        // A full final segment followed by more bytes.
        let (ct, _) = seal_with(&key, &pattern(2 * SMALL), SMALL);
        for extra in [&[0u8][..], &[1, 2, 3], &vec![7; SMALL + TAG_LEN]] {
            let mut longer = ct.clone();
            longer.extend_from_slice(extra);
            assert_eq!(
                fault(open_with(&key, &longer, 100)),
                RecordFault::TrailingData { segment: 1 }
            );
        }
        // A whole second copy of the final segment.
        let mut longer = ct.clone();
        longer.extend_from_slice(&ct[segment_range(1, SMALL, ct.len())]);
        assert_eq!(fault(open_with(&key, &longer, 100)), RecordFault::TrailingData { segment: 1 });
        // A short final segment followed by bytes: where it ends is unknown, but it fails.
        let (ct, _) = seal_with(&key, &pattern(SMALL + 10), SMALL);
        let mut longer = ct.clone();
        longer.push(0);
        assert_eq!(fault(open_with(&key, &longer, 100)), RecordFault::Altered { segment: 1 });
    }

    #[test]
    fn reordered_and_duplicated_segments_are_detected() {
        let key = DataKey::generate().unwrap();
        let (ct, _) = seal_with(&key, &pattern(4 * SMALL + 9), SMALL);
        let total = ct.len();
        let seg = |i| ct[segment_range(i, SMALL, total)].to_vec();
        let assemble = |order: &[usize]| {
            let mut out = ct[..HEADER_LEN].to_vec();
            for &i in order {
                out.extend_from_slice(&seg(i));
            }
            out
        };
        assert_eq!(
            open_with(&key, &assemble(&[0, 1, 2, 3, 4]), 500).unwrap(),
            pattern(4 * SMALL + 9)
        );
        assert_eq!(
            fault(open_with(&key, &assemble(&[1, 0, 2, 3, 4]), 500)),
            RecordFault::Altered { segment: 0 }
        );
        assert_eq!(
            fault(open_with(&key, &assemble(&[0, 2, 1, 3, 4]), 500)),
            RecordFault::Altered { segment: 1 }
        );
        assert_eq!(
            fault(open_with(&key, &assemble(&[0, 1, 1, 2, 3, 4]), 500)),
            RecordFault::Altered { segment: 2 }
        );
        // Dropping a middle segment.
        assert_eq!(
            fault(open_with(&key, &assemble(&[0, 1, 3, 4]), 500)),
            RecordFault::Altered { segment: 2 }
        );
        // The final segment moved forward, the rest dropped: not final at position 1.
        assert_eq!(
            fault(open_with(&key, &assemble(&[0, 4]), 500)),
            RecordFault::Altered { segment: 1 }
        );
        // Segments of another record under the same key do not fit either.
        let (other, _) = seal_with(&key, &pattern(4 * SMALL + 9), SMALL);
        let mut mixed = ct[..segment_range(1, SMALL, total).start].to_vec();
        mixed.extend_from_slice(&other[segment_range(1, SMALL, other.len()).start..]);
        assert_eq!(fault(open_with(&key, &mixed, 500)), RecordFault::Altered { segment: 1 });
    }

    #[test]
    fn io_errors_carry_what_failed() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let key = DataKey::generate().unwrap();
        let err = encrypt(&key, Broken, Vec::new(), &mut |_| {}).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Record(RecordError::Io { action: "read the plaintext", .. })
            ),
            "{err}"
        );
        let err = encrypt(&key, &b"x"[..], Broken, &mut |_| {}).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Record(RecordError::Io { action: "write the ciphertext", .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn wrapped_key_opens_only_for_its_recipient_and_record() {
        let key = DataKey::generate().unwrap();
        let (patient, doctor) = (DecryptionKey::generate(), DecryptionKey::generate());
        let ctx = encoding::encode(&("PMR-85437-0001", Hash::of(b"ciphertext")));
        let wrapped = wrap_key(&key, &patient.public_key(), &ctx).unwrap();
        assert_eq!(wrapped.wrapped.len(), WRAPPED_DATA_KEY_LEN);
        assert_eq!(
            unwrap_key(&wrapped, &patient, &ctx).unwrap().expose_secret(),
            key.expose_secret()
        );

        let refused = |r: Result<DataKey, ClientError>| {
            matches!(r, Err(ClientError::Seal(SealError::KeyUnwrap { .. })))
        };
        assert!(refused(unwrap_key(&wrapped, &doctor, &ctx)), "another recipient");
        let other_ctx = encoding::encode(&("PMR-85437-0002", Hash::of(b"ciphertext")));
        assert!(refused(unwrap_key(&wrapped, &patient, &other_ctx)), "moved to another record");
        for i in 0..32 {
            let mut bad = wrapped.clone();
            bad.encapped[i] ^= 1;
            assert!(refused(unwrap_key(&bad, &patient, &ctx)));
        }
        for i in 0..wrapped.wrapped.len() {
            let mut bad = wrapped.clone();
            bad.wrapped[i] ^= 1;
            assert!(refused(unwrap_key(&bad, &patient, &ctx)));
        }
        let mut short = wrapped.clone();
        short.wrapped.pop();
        assert!(refused(unwrap_key(&short, &patient, &ctx)));
        // A low-order recipient key is refused at wrapping.
        assert!(matches!(
            wrap_key(&key, &EncryptionKey([0; 32]), &ctx),
            Err(ClientError::Seal(SealError::KeyWrap { .. }))
        ));
    }

    fn metadata() -> RecordMetadata {
        RecordMetadata {
            title: "MRI left knee".into(),
            content_type: "application/dicom".into(),
            date: "2024-02-29".into(),
            notes: "Contrast; compare with 2022 study.".into(),
            file_name: Some("knee.dcm".into()),
        }
    }

    #[test]
    fn metadata_round_trips_and_is_bound_to_key_and_context() {
        let key = DataKey::generate().unwrap();
        let ctx = b"PMR-85437-0001";
        let sealed = seal_metadata(&key, &metadata(), ctx).unwrap();
        assert!(sealed.starts_with(&METADATA_MAGIC));
        assert!(!sealed.windows(4).any(|w| w == b"knee"), "no plaintext");
        assert_eq!(open_metadata(&key, &sealed, ctx).unwrap(), metadata());
        assert_ne!(seal_metadata(&key, &metadata(), ctx).unwrap(), sealed, "fresh nonce");
        assert_eq!(metadata_commitment(&sealed), Hash::of(&sealed));

        let refused =
            |r: Result<RecordMetadata, ClientError>| matches!(r, Err(ClientError::SealedBlob(_)));
        assert!(refused(open_metadata(&DataKey::generate().unwrap(), &sealed, ctx)), "wrong key");
        assert!(refused(open_metadata(&key, &sealed, b"PMR-85437-0002")), "wrong context");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(refused(open_metadata(&key, &bad, ctx)), "flip at {i}");
        }
        assert!(refused(open_metadata(&key, &sealed[..sealed.len() - 1], ctx)));
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(refused(open_metadata(&key, &longer, ctx)));
    }

    #[test]
    fn metadata_key_is_not_the_content_key() {
        let key = DataKey::generate().unwrap();
        let content = key.derive(&[LABEL_CONTENT_KEY]);
        let meta = key.derive(&[sealed_blob::RECORD_METADATA.key_label]);
        assert_ne!(*content, *meta);
        assert_ne!(*content, *key.expose_secret());
        assert_ne!(*meta, *key.expose_secret());
    }

    #[test]
    fn metadata_dates_are_checked() {
        let key = DataKey::generate().unwrap();
        for good in ["2024-02-29", "2000-02-29", "1999-12-31", "2023-04-30"] {
            assert!(is_iso_date(good), "{good}");
        }
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "2024-4-01",
            "24-04-01",
            "2024/04/01",
            "2024-04-01T10:00",
            "",
            "２０２４-04-01",
        ] {
            assert!(!is_iso_date(bad), "{bad}");
            let m = RecordMetadata { date: bad.into(), ..metadata() };
            assert!(matches!(
                seal_metadata(&key, &m, b""),
                Err(ClientError::Record(RecordError::Metadata { .. }))
            ));
        }
        let big = RecordMetadata { notes: "x".repeat(MAX_METADATA_BYTES), ..metadata() };
        assert!(matches!(seal_metadata(&key, &big, b""), Err(ClientError::SealedBlob(_))));
    }

    #[test]
    fn data_key_debug_is_redacted() {
        let key = DataKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{key:?}"), "DataKey([REDACTED])");
        assert!(!format!("{:?}", Encryptor::new(&key).unwrap()).contains("ab, ab"));
    }
}
