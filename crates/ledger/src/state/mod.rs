//! The ledger's storage: redb tables, the stored entry types, and the write handle through
//! which `apply` changes state. Every write to a state table goes through [`StateTxn`], whose
//! typed write handle (`Digested`) keeps two running digests (the state digest of the
//! entries and the index digest of the indexes derived from them) so that a node can detect a
//! tampered state file at start without replaying the chain.
//!
//! The tables are declared once, in `tables.rs` ([`TABLES`]); the entry types and accessors
//! live in one file per feature (`registry`, `consent`, `records`, `emergency`, `cases`,
//! `devices`, `nodes`, `organisations`, `audit`); composite keys in `keys.rs`.

mod audit;
pub(crate) mod blobs;
mod cases;
mod consent;
mod devices;
mod emergency;
pub(crate) mod keys;
mod nodes;
mod organisations;
mod records;
mod registry;
mod tables;

use std::borrow::Borrow;

use medledger_core::{
    Hash,
    encoding::{self, DecodeError},
};
use redb::ReadableTable;
use serde::{Serialize, de::DeserializeOwned};

pub use cases::{CaseLog, CaseLogEntry, CaseSeal};
pub use consent::{DenyEntry, GrantEntry, RequestEntry, RequestStatus};
pub use devices::{AlertEntry, BatchEntry, DeviceEntry, SessionEntry, ThresholdsEntry};
pub use emergency::BreakGlassEntry;
pub(crate) use emergency::{NET_EMERGENCY_WINDOW_MS, window_ms};
pub use nodes::{GENESIS_NODE_ID, NodeEntry, NodeStatus, genesis_node};
pub(crate) use nodes::{all_nodes, node_by_id, node_by_key};
pub use organisations::{MemberEntry, OrganisationEntry, ResearchReadEntry};
pub use records::{RecordEntry, SharingEntry};
pub use registry::{Account, DoctorEntry, HospitalEntry, PatientEntry, registration_key};
pub(crate) use tables::*;
pub use tables::{Cover, Rows, StateTable, TABLES};

use crate::LedgerError;

/// Largest stored entry we will decode.
const MAX_ENTRY_BYTES: usize = 64 * 1024;

pub(crate) fn decode_entry<T: serde::Serialize + DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, LedgerError> {
    encoding::decode(what, bytes, MAX_ENTRY_BYTES)
        .map_err(|e: DecodeError| LedgerError::Corrupt(format!("stored {what}: {e}")))
}

/// The entry stored under `key` in `table`, decoded.
fn get_entry<'k, K: redb::Key + 'static, T: serde::Serialize + DeserializeOwned>(
    table: &impl ReadableTable<K, &'static [u8]>,
    key: impl Borrow<K::SelfType<'k>>,
    what: &'static str,
) -> Result<Option<T>, LedgerError> {
    table.get(key)?.map(|v| decode_entry(what, v.value())).transpose()
}

/// Hash of one table row, XORed into its digest.
pub(crate) fn entry_digest(table: &str, key: &[u8], value: &[u8]) -> [u8; 32] {
    let klen = (key.len() as u64).to_le_bytes();
    Hash::of_parts(&[table.as_bytes(), &[0], &klen, key, value]).0
}

pub(crate) fn xor_into(acc: &mut [u8; 32], d: &[u8; 32]) {
    for (a, b) in acc.iter_mut().zip(d) {
        *a ^= b;
    }
}

/// The running digests of the state: each the XOR of the `entry_digest` of every row of the
/// tables it [covers](Cover). XOR makes them order-free and updatable in place: a write XORs
/// the old row out and the new row in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digests {
    /// Over the [`Cover::State`] tables: the value stored as `state_digest` since the start.
    pub state: [u8; 32],
    /// Over the [`Cover::Index`] tables.
    pub index: [u8; 32],
}

impl Digests {
    /// The digest that covers `cover`.
    pub(crate) fn slot(&mut self, cover: Cover) -> &mut [u8; 32] {
        match cover {
            Cover::State => &mut self.state,
            Cover::Index => &mut self.index,
        }
    }
}

/// A state table open for writing, with the digest that covers it: every write XORs the old
/// row (if any) out of the digest and the new one in. Obtained from [`StateTxn::write`].
pub(crate) struct Digested<'a, 'txn, K: Column + redb::Key, V: Column> {
    table: &'a mut redb::Table<'txn, K, V>,
    name: &'static str,
    digest: &'a mut [u8; 32],
}

impl<'a, 'txn, K: Column + redb::Key, V: Column> Digested<'a, 'txn, K, V> {
    pub(crate) fn new(
        table: &'a mut redb::Table<'txn, K, V>,
        name: &'static str,
        digest: &'a mut [u8; 32],
    ) -> Self {
        Digested { table, name, digest }
    }

    fn note(&mut self, key: &K::SelfType<'_>, value: &V::SelfType<'_>) {
        let d = entry_digest(self.name, &K::digest_bytes(key), &V::digest_bytes(value));
        xor_into(self.digest, &d);
    }

    /// Writes `value` under `key`; returns the value it replaced.
    pub(crate) fn put(
        mut self,
        key: K::SelfType<'_>,
        value: V::SelfType<'_>,
    ) -> Result<Option<V::Owned>, LedgerError> {
        let old = match self.table.insert(&key, &value)? {
            Some(old) => {
                let old = old.value();
                let d = entry_digest(self.name, &K::digest_bytes(&key), &V::digest_bytes(&old));
                xor_into(self.digest, &d);
                Some(V::owned(old))
            }
            None => None,
        };
        self.note(&key, &value);
        Ok(old)
    }

    /// Removes the row under `key`; returns its value.
    pub(crate) fn remove(self, key: K::SelfType<'_>) -> Result<Option<V::Owned>, LedgerError> {
        Ok(match self.table.remove(&key)? {
            Some(old) => {
                let old = old.value();
                let d = entry_digest(self.name, &K::digest_bytes(&key), &V::digest_bytes(&old));
                xor_into(self.digest, &d);
                Some(V::owned(old))
            }
            None => None,
        })
    }
}

impl<K: Column + redb::Key> Digested<'_, '_, K, &'static [u8]> {
    /// Writes `entry`, encoded, under `key`; returns the encoding it replaced.
    pub(crate) fn put_entry(
        self,
        key: K::SelfType<'_>,
        entry: &impl Serialize,
    ) -> Result<Option<Vec<u8>>, LedgerError> {
        self.put(key, encoding::encode(entry).as_slice())
    }
}

impl<K: Column + redb::Key> Digested<'_, '_, K, ()> {
    /// Adds (`on`) or removes the member `key`; whether that changed anything.
    pub(crate) fn set(self, key: K::SelfType<'_>, on: bool) -> Result<bool, LedgerError> {
        Ok(if on { self.put(key, ())?.is_none() } else { self.remove(key)?.is_some() })
    }
}

/// The state as seen by one transaction being applied: reads and writes go to the block's
/// open tables; writes keep the digests current.
#[allow(missing_debug_implementations)] // reason: wraps redb tables, which have no Debug
pub struct StateTxn<'a, 'txn> {
    pub(crate) tables: &'a mut Tables<'txn>,
    pub(crate) digest: Digests,
    /// Height of the block being applied.
    pub height: u64,
    /// Time of the block being applied.
    pub time_ms: u64,
    /// Hash of the transaction being applied (deterministic entropy, e.g. for Patient-IDs).
    pub tx_hash: Hash,
}

impl<'txn> StateTxn<'_, 'txn> {
    /// The tables for writing: `self.write().grants().put_entry(..)`.
    pub(crate) fn write(&mut self) -> Write<'_, 'txn> {
        Write { tables: self.tables, digests: &mut self.digest }
    }
}
