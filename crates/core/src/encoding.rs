//! The one canonical binary encoding (postcard) of everything that is signed, hashed or stored,
//! and its bounded decoder: input longer than the limit is refused before any parsing, and
//! trailing bytes are refused after it, and a decoded value must re-encode to exactly the bytes
//! it came from, so every value has exactly one accepted encoding. (postcard alone accepts
//! overlong varints such as `0x87 0x00` for 7; [`decode`] refuses them.)

use postcard::ser_flavors::Flavor;
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
    /// The bytes decode, but are not the value's one canonical encoding (for example an
    /// overlong varint): accepting them would give one value two encodings.
    #[error("malformed {what}: not the canonical encoding")]
    NotCanonical {
        /// What was being decoded.
        what: &'static str,
    },
}

/// Encodes `value` canonically.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising our own types into a Vec cannot fail: they contain no maps with non-string
    // keys, no unsized sequences and no custom serialisers that error.
    postcard::to_stdvec(value).expect("canonical encoding of a medledger type cannot fail")
}

/// Decodes a `T` from exactly `bytes`, refusing inputs over `limit` bytes, trailing bytes, and
/// any encoding other than the canonical one ([`encode`] of the decoded value must give `bytes`
/// back; checked while re-encoding, without allocating).
pub fn decode<T: Serialize + DeserializeOwned>(
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
    if !encodes_to(&value, bytes) {
        return Err(DecodeError::NotCanonical { what });
    }
    Ok(value)
}

/// Whether `value`'s canonical encoding is exactly `bytes`.
fn encodes_to<T: Serialize + ?Sized>(value: &T, bytes: &[u8]) -> bool {
    postcard::serialize_with_flavor(value, Compare { expected: bytes, at: 0 }).unwrap_or(false)
}

/// A postcard output that compares the encoding with `expected` as it is produced, instead of
/// storing it: the first differing byte stops serialisation.
struct Compare<'a> {
    expected: &'a [u8],
    at: usize,
}

impl Flavor for Compare<'_> {
    /// Whether the whole of `expected` was produced.
    type Output = bool;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.at + data.len();
        match self.expected.get(self.at..end) {
            Some(expected) if expected == data => {
                self.at = end;
                Ok(())
            }
            _ => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<bool> {
        Ok(self.at == self.expected.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlong_varint_is_refused() {
        assert_eq!(decode::<u64>("n", &[0x07], 16), Ok(7));
        assert_eq!(
            decode::<u64>("n", &[0x87, 0x00], 16),
            Err(DecodeError::NotCanonical { what: "n" })
        );
        assert_eq!(
            decode::<String>("s", &[0x82, 0x00, b'h', b'i'], 16),
            Err(DecodeError::NotCanonical { what: "s" })
        );
    }
}
