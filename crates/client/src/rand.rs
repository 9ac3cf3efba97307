//! The operating system's random source, the one way the client gets randomness (nonces,
//! data keys, salts).

use crate::ClientError;

/// Fills `buf` from the operating system's random source.
pub(crate) fn random_fill(buf: &mut [u8]) -> Result<(), ClientError> {
    getrandom::fill(buf).map_err(|e| ClientError::Random { reason: e.to_string() })
}
