//! Identifiers: accounts (pseudonymous, derived from the first key) and Patient-IDs (numeric,
//! assigned by the ledger).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Hash, keys::PublicKey};

/// A pseudonymous account: the first 20 bytes of SHA-256 over a namespace and the account's
/// first public key. Stable across key rotation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub [u8; 20]);

impl AccountId {
    /// The pseudo-account under which record keys wrapped to a patient's emergency key are
    /// filed (no one signs as it).
    pub fn emergency_of(patient: &AccountId) -> Self {
        let h = Hash::of_parts(&[b"medledger/v1/emergency", &patient.0]);
        let mut id = [0u8; 20];
        id.copy_from_slice(&h.0[..20]);
        Self(id)
    }

    /// The account id of an account whose first key is `key`.
    pub fn from_initial_key(key: &PublicKey) -> Self {
        let h = Hash::of_parts(&[b"medledger/v1/account", &key.0]);
        let mut id = [0u8; 20];
        id.copy_from_slice(&h.0[..20]);
        Self(id)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", hex::encode(self.0))
    }
}

/// An account id could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("an account id is 40 hex characters, got {0:?}")]
pub struct BadAccountId(String);

impl FromStr for AccountId {
    type Err = BadAccountId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = [0u8; 20];
        hex::decode_to_slice(s, &mut id).map_err(|_| BadAccountId(s.to_owned()))?;
        Ok(Self(id))
    }
}

impl Serialize for AccountId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(&self.to_string()) } else { self.0.serialize(s) }
    }
}
impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 20]>::deserialize(d).map(Self)
        }
    }
}

/// A patient's numeric id (like 85437), assigned by the ledger at registration. Part of every
/// PMR-ID, so it is short and typeable.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PatientId(pub u64);

impl fmt::Display for PatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl fmt::Debug for PatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PatientId({})", self.0)
    }
}
