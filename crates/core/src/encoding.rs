//! The one canonical binary encoding (postcard) of everything that is signed, hashed or stored,
//! and its bounded decoder: input longer than the limit is refused before any parsing, and
//! trailing bytes are refused after it, so every value has exactly one accepted encoding.

use serde::{Serialize, de::DeserializeOwned};

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The input exceeds the size limit for this kind of value.
    #[error("encoded {what} is {len} bytes, more than the limit of {limit}")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// Length of the input.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a valid encoding.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// A valid value was followed by extra bytes.
    #[error("malformed {what}: {extra} trailing bytes")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
}

/// Encodes `value` canonically.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising our own types into a Vec cannot fail: they contain no maps with non-string
    // keys, no unsized sequences and no custom serialisers that error.
    postcard::to_stdvec(value).expect("canonical encoding of a medledger type cannot fail")
}

/// Decodes a `T` from exactly `bytes`, refusing inputs over `limit` bytes.
pub fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge { what, len: bytes.len(), limit });
    }
    let (value, rest) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|e| DecodeError::Malformed { what, reason: e.to_string() })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { what, extra: rest.len() });
    }
    Ok(value)
}
