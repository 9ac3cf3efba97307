//! Record tokens and their split keys (stored entries), and the accessors of tokens, wrapped
//! keys, key shares, operators and the blob references the vault must keep.

use medledger_core::{
    Hash,
    ids::AccountId,
    tx::{consent::RecordCategory, records::VisitDate},
};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{StateTxn, decode_entry, get_entry, keys};
use crate::LedgerError;

/// A record token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordEntry {
    /// Whose record.
    pub patient: AccountId,
    /// Who holds the token (the patient, or a guardian it was transferred to).
    pub owner: AccountId,
    /// The doctor who wrote it.
    pub author: AccountId,
    /// The author's hospital, whose vault holds the content.
    pub hospital: AccountId,
    /// What kind of record.
    pub category: RecordCategory,
    /// The visit.
    pub visit_date: VisitDate,
    /// SHA-256 of the ciphertext (the hash in its CIDv1).
    pub content: Hash,
    /// Ciphertext length.
    pub size: u64,
    /// SHA-256 of the sealed metadata blob.
    pub metadata: Hash,
    /// 1 for an original, one more for each amendment.
    pub version: u32,
    /// The record this one amends.
    pub supersedes: Option<String>,
    /// The amendment that replaced this one.
    pub superseded_by: Option<String>,
    /// Who may transfer it besides the owner and operators (ERC-721 approval).
    pub approved: Option<AccountId>,
    /// Height of the mint.
    pub minted_at: u64,
    /// Block time of the mint.
    pub minted_time_ms: u64,
    /// The mint transaction.
    pub mint_tx: Hash,
    /// Height of erasure: content and keys destroyed, token kept.
    pub erased_at: Option<u64>,
    /// When the key is split: shares needed, and the custodians in share order.
    pub sharing: Option<SharingEntry>,
}

/// How a record's key is split among custodians.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingEntry {
    /// Shares needed.
    pub threshold: u8,
    /// The custodian holding share `i + 1`.
    pub custodians: Vec<AccountId>,
}

impl StateTxn<'_, '_> {
    /// Reads a record token.
    pub fn record(&self, pmr: &str) -> Result<Option<RecordEntry>, LedgerError> {
        get_entry(&self.tables.records, pmr, "record")
    }

    /// Every record of `patient` (by PMR-ID, whoever holds the token), through the patient
    /// index.
    pub fn records_of_patient(
        &self,
        patient: &AccountId,
    ) -> Result<Vec<(String, RecordEntry)>, LedgerError> {
        let lo = patient.0.to_vec();
        let mut hi = patient.0.to_vec();
        hi.push(0xff);
        let mut out = Vec::new();
        for row in self.tables.records_by_patient.range(lo.as_slice()..hi.as_slice())? {
            let (k, _) = row?;
            let pmr = std::str::from_utf8(&k.value()[20..])
                .map_err(|_| LedgerError::Corrupt("a PMR-ID in an index is not text".into()))?
                .to_owned();
            let r = self
                .record(&pmr)?
                .ok_or_else(|| LedgerError::Corrupt(format!("indexed record {pmr} missing")))?;
            out.push((pmr, r));
        }
        Ok(out)
    }

    /// Writes a record token, moving it in the owner index when its owner changed.
    pub fn put_record(&mut self, pmr: &str, r: &RecordEntry) -> Result<(), LedgerError> {
        match self.write().records().put_entry(pmr, r)? {
            Some(old) => {
                let old: RecordEntry = decode_entry("record", &old)?;
                if old.owner != r.owner {
                    let gone = keys::account_str(&old.owner, pmr);
                    self.write().records_by_owner().remove(gone.as_slice())?;
                    let key = keys::account_str(&r.owner, pmr);
                    self.write().records_by_owner().put(key.as_slice(), ())?;
                }
            }
            None => {
                let key = keys::account_str(&r.owner, pmr);
                self.write().records_by_owner().put(key.as_slice(), ())?;
                let key = keys::account_str(&r.patient, pmr);
                self.write().records_by_patient().put(key.as_slice(), ())?;
            }
        }
        Ok(())
    }

    /// Records that `recipient` can unwrap `pmr`'s data key from blob `blob`, and that the
    /// blob is referenced.
    pub fn put_record_key(
        &mut self,
        pmr: &str,
        recipient: &AccountId,
        blob: &Hash,
    ) -> Result<(), LedgerError> {
        let key = keys::str_account(pmr, recipient);
        if let Some(old) = self.write().record_keys().put(key.as_slice(), &blob.0)? {
            self.remove_blob_ref(&Hash(old), pmr)?;
        }
        self.add_blob_ref(blob, pmr)
    }

    /// Stores share `index` of `pmr`'s key, wrapped to `holder`, and marks its blob referenced.
    pub fn put_record_share(
        &mut self,
        pmr: &str,
        holder: &AccountId,
        index: u8,
        blob: &Hash,
    ) -> Result<(), LedgerError> {
        let key = [keys::str_account(pmr, holder).as_slice(), &[index]].concat();
        if let Some(old) = self.write().record_shares().put(key.as_slice(), &blob.0)? {
            self.remove_blob_ref(&Hash(old), pmr)?;
        }
        self.add_blob_ref(blob, pmr)
    }

    /// Removes every wrapped key and key share of `pmr` (erasure); returns the blobs of theirs
    /// that `pmr` held.
    pub fn remove_record_keys(&mut self, pmr: &str) -> Result<Vec<Hash>, LedgerError> {
        let (lo, hi) = keys::str_range(pmr);
        let range = lo.as_slice()..hi.as_slice();
        let in_range = |rows: redb::Range<'_, &'static [u8], &'static [u8; 32]>| {
            rows.map(|row| row.map(|(k, _)| k.value().to_vec())).collect::<Result<Vec<_>, _>>()
        };
        let mut gone = Vec::new();
        for k in in_range(self.tables.record_keys.range(range.clone())?)? {
            gone.extend(self.write().record_keys().remove(k.as_slice())?.map(Hash));
        }
        for k in in_range(self.tables.record_shares.range(range)?)? {
            gone.extend(self.write().record_shares().remove(k.as_slice())?.map(Hash));
        }
        let mut owned = Vec::with_capacity(gone.len());
        for blob in gone {
            if self.remove_blob_ref(&blob, pmr)? {
                owned.push(blob);
            }
        }
        Ok(owned)
    }

    /// Marks `blob` as referenced by `owner` (a PMR-ID, or a case id).
    pub fn add_blob_ref(&mut self, blob: &Hash, owner: &str) -> Result<(), LedgerError> {
        self.write().blob_refs().put(&blob.0, owner)?;
        Ok(())
    }

    /// What references `blob` (a PMR-ID or a case id), if anything does.
    pub fn blob_ref(&self, blob: &Hash) -> Result<Option<String>, LedgerError> {
        Ok(self.tables.blob_refs.get(&blob.0)?.map(|v| v.value().to_owned()))
    }

    /// Marks `blob` erased at this block: no transaction may name it again.
    pub fn mark_erased(&mut self, blob: &Hash) -> Result<(), LedgerError> {
        let height = self.height;
        self.write().erased_blobs().put(&blob.0, height)?;
        Ok(())
    }

    /// The height at which `blob` was erased, if it was.
    pub fn erased_at(&self, blob: &Hash) -> Result<Option<u64>, LedgerError> {
        Ok(self.tables.erased_blobs.get(&blob.0)?.map(|v| v.value()))
    }

    /// Drops `owner`'s reference to `blob`; whether there was one. A reference another owner
    /// holds stays (each blob belongs to one owner, but a ledger from before that rule may
    /// hold a blob named by two: a removal never takes another's).
    pub fn remove_blob_ref(&mut self, blob: &Hash, owner: &str) -> Result<bool, LedgerError> {
        if self.blob_ref(blob)?.as_deref() != Some(owner) {
            return Ok(false);
        }
        self.write().blob_refs().remove(&blob.0)?;
        Ok(true)
    }

    /// Whether `operator` may transfer all of `owner`'s tokens.
    pub fn is_operator(
        &self,
        owner: &AccountId,
        operator: &AccountId,
    ) -> Result<bool, LedgerError> {
        Ok(self.tables.operators.get(&keys::account_pair(owner, operator))?.is_some())
    }

    /// Sets or clears an operator.
    pub fn set_operator(
        &mut self,
        owner: &AccountId,
        operator: &AccountId,
        on: bool,
    ) -> Result<(), LedgerError> {
        self.write().operators().set(&keys::account_pair(owner, operator), on)?;
        Ok(())
    }
}
