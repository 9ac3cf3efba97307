//! Case logs and their entries (stored entries), and the accessors of cases, entries and
//! wrapped case keys, with the patient index.

use medledger_core::{Hash, ids::AccountId};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{StateTxn, get_entry, keys};
use crate::LedgerError;

/// A case-wise treatment log: who opened it for whom, and where its hash chain stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseLog {
    /// Whose case.
    pub patient: AccountId,
    /// The doctor who opened it.
    pub opener: AccountId,
    /// The opener's hospital, whose vault holds the case's blobs.
    pub hospital: AccountId,
    /// SHA-256 of the sealed description.
    pub description: Hash,
    /// The sealed case this one follows up.
    pub follow_up_of: Option<String>,
    /// Height of the open.
    pub opened_at: u64,
    /// Block time of the open.
    pub opened_time_ms: u64,
    /// The open transaction.
    pub open_tx: Hash,
    /// The head before any entry (see `medledger_core::tx::cases::opened_head`).
    pub first_head: Hash,
    /// The current head: the first head, or the head after the last entry.
    pub head: Hash,
    /// Number of entries.
    pub entries: u64,
    /// Distinct doctors who wrote entries, in order of their first entry.
    pub authors: Vec<AccountId>,
    /// The seal, once sealed.
    pub sealed: Option<CaseSeal>,
}

/// How a case was sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSeal {
    /// Height of the seal.
    pub height: u64,
    /// Block time of the seal.
    pub time_ms: u64,
    /// Who sealed it (the opener, the patient or a delegate).
    pub by: AccountId,
    /// The seal transaction.
    pub tx: Hash,
}

/// One entry of a case log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseLogEntry {
    /// The doctor who wrote and signed it.
    pub author: AccountId,
    /// Height of the block that applied it.
    pub height: u64,
    /// Block time: the entry's timestamp.
    pub time_ms: u64,
    /// SHA-256 of the sealed entry in the vault.
    pub entry: Hash,
    /// The head before it.
    pub prev: Hash,
    /// The head after it.
    pub head: Hash,
    /// The append transaction.
    pub tx: Hash,
}

impl StateTxn<'_, '_> {
    /// Reads a case log.
    pub fn case(&self, id: &str) -> Result<Option<CaseLog>, LedgerError> {
        get_entry(&self.tables.cases, id, "case")
    }

    /// Writes a case log, indexing a new one by its patient.
    pub fn put_case(&mut self, id: &str, c: &CaseLog) -> Result<(), LedgerError> {
        if self.write().cases().put_entry(id, c)?.is_none() {
            let key = keys::account_str(&c.patient, id);
            self.write().cases_by_patient().put(key.as_slice(), ())?;
        }
        Ok(())
    }

    /// How many cases `patient` has.
    pub fn case_count(&self, patient: &AccountId) -> Result<u64, LedgerError> {
        let lo = patient.0.to_vec();
        let hi = [&patient.0[..], &[0xff]].concat();
        let mut n = 0;
        for row in self.tables.cases_by_patient.range(lo.as_slice()..hi.as_slice())? {
            row?;
            n += 1;
        }
        Ok(n)
    }

    /// Writes entry `seq` of a case (entries are never rewritten).
    pub fn put_case_entry(
        &mut self,
        id: &str,
        seq: u64,
        e: &CaseLogEntry,
    ) -> Result<(), LedgerError> {
        let key = keys::str_seq(id, seq);
        self.write().case_entries().put_entry(key.as_slice(), e)?;
        Ok(())
    }

    /// Records that `recipient` can unwrap case `id`'s key from blob `blob`, wrapped by the
    /// transaction being applied, and that the blob is referenced (a replaced key's blob is no
    /// longer).
    pub fn put_case_key(
        &mut self,
        id: &str,
        recipient: &AccountId,
        blob: &Hash,
    ) -> Result<(), LedgerError> {
        let key = keys::str_account(id, recipient);
        let tx = self.tx_hash;
        self.write().case_key_txs().put(key.as_slice(), &tx.0)?;
        if let Some(old) = self.write().case_keys().put(key.as_slice(), &blob.0)? {
            self.remove_blob_ref(&Hash(old), id)?;
        }
        self.add_blob_ref(blob, id)
    }
}
