//! The ledger's storage: redb tables, the stored entry types, and the write handle through
//! which `apply` changes state. Every write to a state table goes through [`StateTxn`], which
//! keeps a running digest of the state so that a node can detect a tampered state file at
//! start without replaying the chain.

use medledger_core::{
    Hash,
    encoding::{self, DecodeError},
    ids::{AccountId, PatientId},
    keys::{EncryptionKey, PublicKey},
    tx::{Role, SealedRef},
};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::LedgerError;

/// Ledger metadata: genesis, tip, state digest, the caller's applied marker.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Committed block headers by height.
pub(crate) const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// Committed transactions (canonical encoding) by log index.
pub(crate) const TXS: TableDefinition<u64, &[u8]> = TableDefinition::new("txs");
/// Transaction hash -> (height, index in block, log index).
pub(crate) const TX_INDEX: TableDefinition<&[u8; 32], (u64, u32, u64)> =
    TableDefinition::new("tx_index");
/// Log index -> encoded outcome.
pub(crate) const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");

/// Accounts by id.
pub(crate) const ACCOUNTS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("accounts");
/// Hospital directory entries by account.
pub(crate) const HOSPITALS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("hospitals");
/// Doctor directory entries by account.
pub(crate) const DOCTORS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("doctors");
/// Patients by Patient-ID.
pub(crate) const PATIENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("patients");

pub(crate) const META_GENESIS: &str = "genesis";
pub(crate) const META_TIP: &str = "tip";
pub(crate) const META_STATE_DIGEST: &str = "state_digest";
pub(crate) const META_APPLIED_MARKER: &str = "applied_marker";

/// Largest stored entry we will decode.
const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// An identity on the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// What kind of identity.
    pub role: Role,
    /// The active signing key; `None` after a revocation without replacement.
    pub key: Option<PublicKey>,
    /// The encryption key.
    pub encryption_key: EncryptionKey,
    /// The last committed nonce (0 before the first transaction).
    pub nonce: u64,
    /// Who may revoke this account's key besides itself: the onboarding hospital for doctors
    /// and patients, the regulator for hospitals.
    pub authority: Option<AccountId>,
    /// The hospital a doctor or patient belongs to (for suspension checks).
    pub hospital: Option<AccountId>,
    /// Suspended by the regulator (hospitals only).
    pub suspended: bool,
    /// The Patient-ID, for patients.
    pub patient_id: Option<PatientId>,
    /// Height at which the account was created (0 for genesis).
    pub created_at: u64,
}

/// A hospital's public directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HospitalEntry {
    /// Government registration id.
    pub registration_id: String,
    /// Name.
    pub name: String,
    /// City.
    pub city: String,
    /// Specialisation.
    pub specialisation: String,
    /// Sealed contact details.
    pub contact: SealedRef,
    /// Height of admission.
    pub admitted_at: u64,
}

/// A doctor's public directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorEntry {
    /// The onboarding hospital.
    pub hospital: AccountId,
    /// Medical council registration number.
    pub registration_number: String,
    /// Name.
    pub name: String,
    /// Specialisation.
    pub specialisation: String,
    /// Height of onboarding.
    pub onboarded_at: u64,
}

/// A patient's registration: pseudonymous ids and sealed references only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientEntry {
    /// The patient's account.
    pub account: AccountId,
    /// The hospital whose desk registered them.
    pub hospital: AccountId,
    /// Sealed patient details.
    pub details: SealedRef,
    /// Sealed attendant details.
    pub attendant: SealedRef,
    /// Height of registration.
    pub registered_at: u64,
}

pub(crate) fn decode_entry<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, LedgerError> {
    encoding::decode(what, bytes, MAX_ENTRY_BYTES)
        .map_err(|e: DecodeError| LedgerError::Corrupt(format!("stored {what}: {e}")))
}

/// Hash of one state-table entry, XORed into the state digest.
pub(crate) fn entry_digest(table: &str, key: &[u8], value: &[u8]) -> [u8; 32] {
    let klen = (key.len() as u64).to_le_bytes();
    Hash::of_parts(&[table.as_bytes(), &[0], &klen, key, value]).0
}

pub(crate) fn xor_into(acc: &mut [u8; 32], d: &[u8; 32]) {
    for (a, b) in acc.iter_mut().zip(d) {
        *a ^= b;
    }
}

/// The open state tables of one block's write transaction. Opened once per block: opening a
/// redb table per access would rewrite the table directory each time.
#[allow(missing_debug_implementations)] // reason: redb tables have no Debug
pub struct Tables<'txn> {
    pub(crate) accounts: redb::Table<'txn, &'static [u8; 20], &'static [u8]>,
    pub(crate) hospitals: redb::Table<'txn, &'static [u8; 20], &'static [u8]>,
    pub(crate) doctors: redb::Table<'txn, &'static [u8; 20], &'static [u8]>,
    pub(crate) patients: redb::Table<'txn, u64, &'static [u8]>,
    pub(crate) tx_index: redb::Table<'txn, &'static [u8; 32], (u64, u32, u64)>,
}

impl<'txn> Tables<'txn> {
    /// Opens every state table in `txn`.
    pub(crate) fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, LedgerError> {
        Ok(Tables {
            accounts: txn.open_table(ACCOUNTS)?,
            hospitals: txn.open_table(HOSPITALS)?,
            doctors: txn.open_table(DOCTORS)?,
            patients: txn.open_table(PATIENTS)?,
            tx_index: txn.open_table(TX_INDEX)?,
        })
    }
}

/// The state as seen by one transaction being applied: reads and writes go to the block's
/// open tables; writes keep the state digest current.
#[allow(missing_debug_implementations)] // reason: wraps redb tables, which have no Debug
pub struct StateTxn<'a, 'txn> {
    pub(crate) tables: &'a mut Tables<'txn>,
    pub(crate) digest: [u8; 32],
    /// Height of the block being applied.
    pub height: u64,
    /// Time of the block being applied.
    pub time_ms: u64,
    /// Hash of the transaction being applied (deterministic entropy, e.g. for Patient-IDs).
    pub tx_hash: Hash,
}

fn by_account(
    table: &mut redb::Table<'_, &'static [u8; 20], &'static [u8]>,
    name: &str,
    digest: &mut [u8; 32],
    id: &AccountId,
    value: &[u8],
) -> Result<(), LedgerError> {
    let old = table.insert(&id.0, value)?.map(|g| g.value().to_vec());
    note_write(digest, name, &id.0, old.as_deref(), value);
    Ok(())
}

fn note_write(digest: &mut [u8; 32], table: &str, key: &[u8], old: Option<&[u8]>, new: &[u8]) {
    if let Some(old) = old {
        xor_into(digest, &entry_digest(table, key, old));
    }
    xor_into(digest, &entry_digest(table, key, new));
}

impl StateTxn<'_, '_> {
    /// Reads an account.
    pub fn account(&self, id: &AccountId) -> Result<Option<Account>, LedgerError> {
        let v = self.tables.accounts.get(&id.0)?;
        v.map(|v| decode_entry("account", v.value())).transpose()
    }

    /// Writes an account.
    pub fn put_account(&mut self, id: &AccountId, account: &Account) -> Result<(), LedgerError> {
        let value = encoding::encode(account);
        by_account(&mut self.tables.accounts, ACCOUNTS.name(), &mut self.digest, id, &value)
    }

    /// Reads a hospital entry.
    pub fn hospital(&self, id: &AccountId) -> Result<Option<HospitalEntry>, LedgerError> {
        let v = self.tables.hospitals.get(&id.0)?;
        v.map(|v| decode_entry("hospital", v.value())).transpose()
    }

    /// Writes a hospital entry.
    pub fn put_hospital(&mut self, id: &AccountId, e: &HospitalEntry) -> Result<(), LedgerError> {
        let value = encoding::encode(e);
        by_account(&mut self.tables.hospitals, HOSPITALS.name(), &mut self.digest, id, &value)
    }

    /// Writes a doctor entry.
    pub fn put_doctor(&mut self, id: &AccountId, e: &DoctorEntry) -> Result<(), LedgerError> {
        let value = encoding::encode(e);
        by_account(&mut self.tables.doctors, DOCTORS.name(), &mut self.digest, id, &value)
    }

    /// Is this Patient-ID taken?
    pub fn patient_id_taken(&self, id: PatientId) -> Result<bool, LedgerError> {
        Ok(self.tables.patients.get(id.0)?.is_some())
    }

    /// Number of registered patients.
    pub fn patient_count(&self) -> Result<u64, LedgerError> {
        Ok(self.tables.patients.len()?)
    }

    /// Writes a patient entry.
    pub fn put_patient(&mut self, id: PatientId, e: &PatientEntry) -> Result<(), LedgerError> {
        let value = encoding::encode(e);
        let old = self.tables.patients.insert(id.0, value.as_slice())?.map(|g| g.value().to_vec());
        note_write(&mut self.digest, PATIENTS.name(), &id.0.to_be_bytes(), old.as_deref(), &value);
        Ok(())
    }

    /// Where a transaction with this hash was first logged, if it was.
    pub fn logged_at(&self, tx_hash: &Hash) -> Result<Option<u64>, LedgerError> {
        Ok(self.tables.tx_index.get(&tx_hash.0)?.map(|v| v.value().2))
    }
}
