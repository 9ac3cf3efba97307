//! The registry's stored entries (accounts, hospitals, doctors, patients) and their accessors.

use medledger_core::{
    ids::{AccountId, PatientId},
    keys::{EncryptionKey, PublicKey},
    tx::{Role, SealedRef},
};
use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

/// The one row of `patient_id_seed`.
const PATIENT_ID_SEED_KEY: &str = "seed";

use super::{StateTxn, get_entry};
use crate::LedgerError;

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

/// A registration number as the uniqueness check compares it: letters and digits only,
/// upper case, so that "GMC-7", "gmc 7" and "GMC7" are one number.
pub fn registration_key(number: &str) -> String {
    number.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_uppercase).collect()
}

impl StateTxn<'_, '_> {
    /// Reads an account.
    pub fn account(&self, id: &AccountId) -> Result<Option<Account>, LedgerError> {
        get_entry(&self.tables.accounts, &id.0, "account")
    }

    /// Writes an account.
    pub fn put_account(&mut self, id: &AccountId, account: &Account) -> Result<(), LedgerError> {
        self.write().accounts().put_entry(&id.0, account)?;
        Ok(())
    }

    /// Reads a hospital entry.
    pub fn hospital(&self, id: &AccountId) -> Result<Option<HospitalEntry>, LedgerError> {
        get_entry(&self.tables.hospitals, &id.0, "hospital")
    }

    /// Writes a hospital entry.
    pub fn put_hospital(&mut self, id: &AccountId, e: &HospitalEntry) -> Result<(), LedgerError> {
        let old = match self.write().hospitals().put_entry(&id.0, e)? {
            Some(bytes) => {
                let h: HospitalEntry = super::decode_entry("hospital", &bytes)?;
                super::blobs::of_hospital(id, &h).to_vec()
            }
            None => vec![],
        };
        self.index_registration(&old, &super::blobs::of_hospital(id, e))
    }

    /// Reads a doctor entry.
    pub fn doctor(&self, id: &AccountId) -> Result<Option<DoctorEntry>, LedgerError> {
        get_entry(&self.tables.doctors, &id.0, "doctor")
    }

    /// Writes a doctor entry.
    pub fn put_doctor(&mut self, id: &AccountId, e: &DoctorEntry) -> Result<(), LedgerError> {
        self.write().doctors().put_entry(&id.0, e)?;
        Ok(())
    }

    /// The account a registration number was last onboarded as.
    pub fn doctor_by_registration(&self, number: &str) -> Result<Option<AccountId>, LedgerError> {
        let key = registration_key(number);
        Ok(self.tables.doctors_by_registration.get(key.as_str())?.map(|v| AccountId(*v.value())))
    }

    /// Files a registration number under the doctor's account (an index).
    pub fn put_doctor_registration(
        &mut self,
        number: &str,
        id: &AccountId,
    ) -> Result<(), LedgerError> {
        let key = registration_key(number);
        self.write().doctors_by_registration().put(key.as_str(), &id.0)?;
        Ok(())
    }

    /// Reads a patient's registration.
    pub fn patient(&self, id: PatientId) -> Result<Option<PatientEntry>, LedgerError> {
        get_entry(&self.tables.patients, id.0, "patient")
    }

    /// Is this Patient-ID taken?
    pub fn patient_id_taken(&self, id: PatientId) -> Result<bool, LedgerError> {
        Ok(self.tables.patients.get(id.0)?.is_some())
    }

    /// The Patient-ID seed: the hash chain over the registrations applied so far (zero before
    /// the first).
    pub fn patient_id_seed(&self) -> Result<[u8; 32], LedgerError> {
        Ok(self.tables.patient_id_seed.get(PATIENT_ID_SEED_KEY)?.map_or([0; 32], |v| *v.value()))
    }

    /// Stores the Patient-ID seed.
    pub fn put_patient_id_seed(&mut self, seed: &[u8; 32]) -> Result<(), LedgerError> {
        self.write().patient_id_seed().put(PATIENT_ID_SEED_KEY, seed)?;
        Ok(())
    }

    /// Number of registered patients.
    pub fn patient_count(&self) -> Result<u64, LedgerError> {
        Ok(self.tables.patients.len()?)
    }

    /// Writes a patient entry.
    pub fn put_patient(&mut self, id: PatientId, e: &PatientEntry) -> Result<(), LedgerError> {
        let old = match self.write().patients().put_entry(id.0, e)? {
            Some(bytes) => {
                let p: PatientEntry = super::decode_entry("patient", &bytes)?;
                super::blobs::of_patient(id, &p).to_vec()
            }
            None => vec![],
        };
        self.index_registration(&old, &super::blobs::of_patient(id, e))
    }
}
