//! Who each vault blob belongs to. A blob belongs to one owner: a record, case or emergency
//! profile (`blob_refs`), a device session (`device_blobs`) or a registration
//! (`registration_blobs`). [`crate::apply`] refuses a transaction naming a blob that belongs
//! to something else, so that erasing or replacing one owner's blob never takes another's.

use medledger_core::{
    Hash,
    ids::{AccountId, PatientId},
};
use redb::ReadableTable;

use super::{DeviceEntry, HospitalEntry, PatientEntry, StateTxn};
use crate::LedgerError;

/// The owner names of registration blobs (also what `verify`'s stored facts call them).
pub(crate) mod owner {
    use super::{AccountId, Hash, PatientId};

    /// A patient's sealed details.
    pub(crate) fn patient_details(id: PatientId) -> String {
        format!("registration of patient {id}")
    }
    /// A patient's sealed attendant details.
    pub(crate) fn attendant(id: PatientId) -> String {
        format!("attendant of patient {id}")
    }
    /// A hospital's sealed contact.
    pub(crate) fn hospital_contact(id: &AccountId) -> String {
        format!("contact of hospital {id}")
    }
    /// A device's sealed details.
    pub(crate) fn device_details(id: &AccountId) -> String {
        format!("details of device {id}")
    }
    /// Sealed thresholds (by the id of the transaction that set them).
    pub(crate) fn thresholds(id: &Hash) -> String {
        format!("thresholds {id}")
    }
    /// A device session's blob.
    pub(crate) fn device_session(session: &Hash) -> String {
        format!("device session {session}")
    }
}

/// The registration blobs of a patient entry, with their owners.
pub(crate) fn of_patient(id: PatientId, p: &PatientEntry) -> [(Hash, String); 2] {
    [(p.details.blob, owner::patient_details(id)), (p.attendant.blob, owner::attendant(id))]
}

/// The registration blob of a hospital entry, with its owner.
pub(crate) fn of_hospital(id: &AccountId, h: &HospitalEntry) -> [(Hash, String); 1] {
    [(h.contact.blob, owner::hospital_contact(id))]
}

/// The registration blob of a device entry, with its owner.
pub(crate) fn of_device(id: &AccountId, d: &DeviceEntry) -> [(Hash, String); 1] {
    [(d.details.blob, owner::device_details(id))]
}

impl StateTxn<'_, '_> {
    /// What `blob` belongs to, if anything: a PMR-ID, case id or emergency tag, a device
    /// session, or a registration. Three point reads.
    pub fn blob_holder(&self, blob: &Hash) -> Result<Option<String>, LedgerError> {
        if let Some(owner) = self.blob_ref(blob)? {
            return Ok(Some(owner));
        }
        if let Some(session) = self.tables.device_blobs.get(&blob.0)? {
            return Ok(Some(owner::device_session(&Hash(*session.value()))));
        }
        Ok(self.tables.registration_blobs.get(&blob.0)?.map(|v| v.value().to_owned()))
    }

    /// Keeps `registration_blobs` in step with a registration whose blobs were `old` and are
    /// now `new`: a blob no longer named is dropped, a new one added.
    pub(crate) fn index_registration(
        &mut self,
        old: &[Hash],
        new: &[(Hash, String)],
    ) -> Result<(), LedgerError> {
        for blob in old {
            if !new.iter().any(|(b, _)| b == blob) {
                self.write().registration_blobs().remove(&blob.0)?;
            }
        }
        for (blob, owner) in new {
            if !old.contains(blob) {
                self.write().registration_blobs().put(&blob.0, owner.as_str())?;
            }
        }
        Ok(())
    }
}
