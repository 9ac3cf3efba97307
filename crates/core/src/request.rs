//! Signed read requests. Every read of private state is signed by the requester over the
//! method, the path with its query, the hash of the body, a timestamp and a random nonce; the
//! node verifies the signature against the account's active key, refuses timestamps outside a
//! bounded window, and refuses a nonce it has seen within that window (a replay).

use serde::{Deserialize, Serialize};

use crate::{
    Hash,
    encoding::{self, DecodeError},
    ids::AccountId,
    keys::{BadSignature, PublicKey, Signature, SigningKey, namespace},
};

/// The HTTP header that carries a request's signature.
pub const HEADER: &str = "x-medledger-auth";
/// How far a request's timestamp may be from the node's clock, either way.
pub const MAX_SKEW_MS: u64 = 30_000;

/// A request's signature and what the node needs to check it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestAuth {
    /// Who asks.
    pub account: AccountId,
    /// The key that signed (must be the account's active key).
    pub key: PublicKey,
    /// When the request was made, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Random, so that two identical requests differ and a replay is recognisable.
    pub nonce: [u8; 16],
    /// Ed25519 in the request namespace over [`signed_bytes`].
    pub signature: Signature,
}

/// What a request signature covers.
pub fn signed_bytes(
    method: &str,
    path_and_query: &str,
    body: &[u8],
    account: &AccountId,
    timestamp_ms: u64,
    nonce: &[u8; 16],
) -> Vec<u8> {
    encoding::encode(&(method, path_and_query, Hash::of(body), account, timestamp_ms, nonce))
}

impl RequestAuth {
    /// Signs a request.
    pub fn sign(
        key: &SigningKey,
        account: AccountId,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp_ms: u64,
        nonce: [u8; 16],
    ) -> Self {
        let msg = signed_bytes(method, path_and_query, body, &account, timestamp_ms, &nonce);
        RequestAuth {
            account,
            key: key.public_key(),
            timestamp_ms,
            nonce,
            signature: key.sign(namespace::REQUEST, &msg),
        }
    }

    /// Checks the signature over this method, path and body (not the key's ownership, the
    /// time window or replays: those need the node's state).
    pub fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<(), BadSignature> {
        let msg = signed_bytes(
            method,
            path_and_query,
            body,
            &self.account,
            self.timestamp_ms,
            &self.nonce,
        );
        self.key.verify(namespace::REQUEST, &msg, &self.signature)
    }

    /// The header value: hex of the canonical encoding.
    pub fn to_header(&self) -> String {
        hex::encode(encoding::encode(self))
    }

    /// Parses a header value.
    pub fn from_header(value: &str) -> Result<Self, DecodeError> {
        if value.len() > 1024 {
            return Err(DecodeError::TooLarge {
                what: "request signature",
                len: value.len(),
                limit: 1024,
            });
        }
        let bytes = hex::decode(value).map_err(|e| DecodeError::Malformed {
            what: "request signature",
            reason: e.to_string(),
        })?;
        encoding::decode("request signature", &bytes, 512)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_method_path_body_time_and_nonce() {
        let key = SigningKey::from_seed([3; 32]);
        let account = AccountId([7; 20]);
        let auth = RequestAuth::sign(&key, account, "GET", "/v1/x?a=1", b"", 1_000, [1; 16]);
        let parsed = RequestAuth::from_header(&auth.to_header()).unwrap();
        assert_eq!(parsed, auth);
        assert!(parsed.verify("GET", "/v1/x?a=1", b"").is_ok());
        assert!(parsed.verify("POST", "/v1/x?a=1", b"").is_err());
        assert!(parsed.verify("GET", "/v1/x?a=2", b"").is_err());
        assert!(parsed.verify("GET", "/v1/x?a=1", b"body").is_err());
        let mut later = parsed.clone();
        later.timestamp_ms += 1;
        assert!(later.verify("GET", "/v1/x?a=1", b"").is_err());
        let mut other_nonce = parsed.clone();
        other_nonce.nonce[0] ^= 1;
        assert!(other_nonce.verify("GET", "/v1/x?a=1", b"").is_err());
        assert!(RequestAuth::from_header("zz").is_err());
        assert!(RequestAuth::from_header(&"ab".repeat(600)).is_err());
    }
}
