//! Queries over committed record state: a token, the tokens an account owns (`balance_of`) or
//! a patient has, a token's version history, who holds a wrapped key, operators, and whether
//! the ledger still references a vault blob.

use std::collections::HashSet;

use medledger_core::{Hash, ids::AccountId};
use redb::{ReadableDatabase, ReadableTable};

use crate::{
    Ledger, LedgerError,
    state::{keys, *},
};

impl Ledger {
    /// A record token (ERC-721 `ownerOf` is its `owner`).
    pub fn record(&self, pmr: &str) -> Result<Option<RecordEntry>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(RECORDS)?;
        let v = table.get(pmr)?;
        v.map(|v| decode_entry("record", v.value())).transpose()
    }

    /// The tokens `owner` holds, by PMR-ID (ERC-721 `balanceOf` is their number).
    pub fn records_owned_by(
        &self,
        owner: &AccountId,
    ) -> Result<Vec<(String, RecordEntry)>, LedgerError> {
        self.records_in(RECORDS_BY_OWNER, owner)
    }

    /// Every record of `patient`, whoever holds the token.
    pub fn records_of_patient(
        &self,
        patient: &AccountId,
    ) -> Result<Vec<(String, RecordEntry)>, LedgerError> {
        self.records_in(RECORDS_BY_PATIENT, patient)
    }

    fn records_in(
        &self,
        index: redb::TableDefinition<&[u8], ()>,
        account: &AccountId,
    ) -> Result<Vec<(String, RecordEntry)>, LedgerError> {
        let read = self.db.begin_read()?;
        let index = read.open_table(index)?;
        let records = read.open_table(RECORDS)?;
        let lo = account.0.to_vec();
        let mut hi = account.0.to_vec();
        hi.push(0xff);
        let mut out = Vec::new();
        for row in index.range(lo.as_slice()..hi.as_slice())? {
            let (k, _) = row?;
            let pmr = std::str::from_utf8(&k.value()[20..])
                .map_err(|_| LedgerError::Corrupt("a PMR-ID in an index is not text".into()))?
                .to_owned();
            let v = records
                .get(pmr.as_str())?
                .ok_or_else(|| LedgerError::Corrupt(format!("indexed record {pmr} missing")))?;
            out.push((pmr, decode_entry("record", v.value())?));
        }
        Ok(out)
    }

    /// The versions of a record, oldest first: follows `supersedes` back and `superseded_by`
    /// forward from `pmr`.
    pub fn record_history(&self, pmr: &str) -> Result<Vec<(String, RecordEntry)>, LedgerError> {
        let Some(start) = self.record(pmr)? else { return Ok(Vec::new()) };
        let mut back = Vec::new();
        let mut prev = start.supersedes.clone();
        while let Some(id) = prev {
            let r = self
                .record(&id)?
                .ok_or_else(|| LedgerError::Corrupt(format!("superseded record {id} missing")))?;
            prev = r.supersedes.clone();
            back.push((id, r));
        }
        back.reverse();
        let mut next = start.superseded_by.clone();
        back.push((pmr.to_owned(), start));
        while let Some(id) = next {
            let r = self
                .record(&id)?
                .ok_or_else(|| LedgerError::Corrupt(format!("amending record {id} missing")))?;
            next = r.superseded_by.clone();
            back.push((id, r));
        }
        Ok(back)
    }

    /// The blob holding `pmr`'s data key wrapped to `recipient`, if there is one.
    pub fn record_key(
        &self,
        pmr: &str,
        recipient: &AccountId,
    ) -> Result<Option<Hash>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(RECORD_KEYS)?;
        Ok(table.get(keys::str_account(pmr, recipient).as_slice())?.map(|v| Hash(*v.value())))
    }

    /// Who holds a wrapped key of `pmr`.
    pub fn record_key_holders(&self, pmr: &str) -> Result<Vec<(AccountId, Hash)>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(RECORD_KEYS)?;
        let (lo, hi) = keys::str_range(pmr);
        let mut out = Vec::new();
        for row in table.range(lo.as_slice()..hi.as_slice())? {
            let (k, v) = row?;
            let k = k.value();
            let mut account = [0u8; 20];
            account.copy_from_slice(&k[k.len() - 20..]);
            out.push((AccountId(account), Hash(*v.value())));
        }
        Ok(out)
    }

    /// The key shares of `pmr` held by `holder` (a custodian's own, or those released to a
    /// reader), by share index.
    pub fn record_shares(
        &self,
        pmr: &str,
        holder: &AccountId,
    ) -> Result<Vec<(u8, Hash)>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(RECORD_SHARES)?;
        let lo = keys::str_account(pmr, holder);
        let hi = [lo.as_slice(), &[0xff, 0xff]].concat();
        let mut out = Vec::new();
        for row in table.range(lo.as_slice()..hi.as_slice())? {
            let (k, v) = row?;
            let k = k.value();
            if k.len() == lo.len() + 1 {
                out.push((k[k.len() - 1], Hash(*v.value())));
            }
        }
        Ok(out)
    }

    /// Whether `operator` may transfer all of `owner`'s tokens (ERC-721 `isApprovedForAll`).
    pub fn is_operator(
        &self,
        owner: &AccountId,
        operator: &AccountId,
    ) -> Result<bool, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(OPERATORS)?;
        Ok(table.get(&keys::account_pair(owner, operator))?.is_some())
    }

    /// The record a vault blob belongs to, if the ledger still references it. A blob no record
    /// references (never minted, or erased) may be deleted by its vault.
    pub fn blob_owner(&self, blob: &Hash) -> Result<Option<String>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(BLOB_REFS)?;
        Ok(table.get(&blob.0)?.map(|v| v.value().to_owned()))
    }
}

impl Ledger {
    /// The height at which `blob` was erased (it belonged to an erased record), if it was:
    /// such a blob is never stored, pulled or served again.
    pub fn erased_at(&self, blob: &Hash) -> Result<Option<u64>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(ERASED_BLOBS)?;
        Ok(table.get(&blob.0)?.map(|v| v.value()))
    }

    /// Every vault blob the registry references (sealed patient, attendant, hospital and
    /// organisation contact details, sealed device details and thresholds): the blobs `GET /v1/blobs`
    /// serves. A scan, meant for occasional use.
    pub fn registration_blobs(&self) -> Result<HashSet<Hash>, LedgerError> {
        let read = self.db.begin_read()?;
        let mut out = HashSet::new();
        registration_blobs_into(&read, &mut out)?;
        Ok(out)
    }

    /// Every vault blob committed state references, from one snapshot: the registrations'
    /// sealed details, every record, case and emergency blob (`blob_refs`) and every device
    /// session blob (`device_blobs`). The vault's garbage collector keeps these; the ledger's
    /// tests check that every blob an applied transaction names ([`medledger_core::tx::TxBody::blobs`])
    /// is among them. A scan, meant for an occasional collection run.
    pub fn blobs_in_use(&self) -> Result<HashSet<Hash>, LedgerError> {
        let read = self.db.begin_read()?;
        let mut out = HashSet::new();
        registration_blobs_into(&read, &mut out)?;
        for row in read.open_table(BLOB_REFS)?.iter()? {
            out.insert(Hash(*row?.0.value()));
        }
        for row in read.open_table(DEVICE_BLOBS)?.iter()? {
            out.insert(Hash(*row?.0.value()));
        }
        Ok(out)
    }
}

fn registration_blobs_into(
    read: &redb::ReadTransaction,
    out: &mut HashSet<Hash>,
) -> Result<(), LedgerError> {
    for row in read.open_table(PATIENTS)?.iter()? {
        let (_, v) = row?;
        let p: PatientEntry = decode_entry("patient", v.value())?;
        out.extend([p.details.blob, p.attendant.blob]);
    }
    for row in read.open_table(HOSPITALS)?.iter()? {
        let (_, v) = row?;
        let h: HospitalEntry = decode_entry("hospital", v.value())?;
        out.insert(h.contact.blob);
    }
    for row in read.open_table(ORGANISATIONS)?.iter()? {
        let (_, v) = row?;
        let o: OrganisationEntry = decode_entry("organisation", v.value())?;
        out.insert(o.contact.blob);
    }
    for row in read.open_table(DEVICES)?.iter()? {
        let (_, v) = row?;
        let d: DeviceEntry = decode_entry("device", v.value())?;
        out.insert(d.details.blob);
    }
    for row in read.open_table(DEVICE_THRESHOLDS)?.iter()? {
        let (_, v) = row?;
        let t: ThresholdsEntry = decode_entry("thresholds", v.value())?;
        out.insert(t.sealed.blob);
    }
    Ok(())
}
