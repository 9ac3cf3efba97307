//! Who each vault blob belongs to. A blob belongs to one owner: a record, case or emergency
//! profile (`blob_refs`), a device session (`device_blobs`) or a registration
//! (`registration_blobs`). [`crate::apply`] refuses a transaction naming a blob that belongs
//! to something else, so that erasing or replacing one owner's blob never takes another's.

use medledger_core::{
    Hash,
    ids::{AccountId, PatientId},
};
use redb::ReadableTable;

use super::{DeviceEntry, HospitalEntry, OrganisationEntry, PatientEntry, StateTxn};
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
    /// An organisation's sealed contact.
    pub(crate) fn organisation_contact(id: &AccountId) -> String {
        format!("contact of organisation {id}")
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

/// The registration blob of an organisation entry, with its owner.
pub(crate) fn of_organisation(id: &AccountId, o: &OrganisationEntry) -> [(Hash, String); 1] {
    [(o.contact.blob, owner::organisation_contact(id))]
}

/// The registration blob of a device entry, with its owner.
pub(crate) fn of_device(id: &AccountId, d: &DeviceEntry) -> [(Hash, String); 1] {
    [(d.details.blob, owner::device_details(id))]
}

/// What `blob` belongs to, if anything, from the three tables that say: a PMR-ID, case id or
/// emergency tag (`blob_refs`), a device session (`device_blobs`), or a registration
/// (`registration_blobs`). Three point reads; for applying and for admission alike.
pub(crate) fn holder_in(
    blob_refs: &impl ReadableTable<&'static [u8; 32], &'static str>,
    device_blobs: &impl ReadableTable<&'static [u8; 32], &'static [u8; 32]>,
    registration_blobs: &impl ReadableTable<&'static [u8; 32], &'static str>,
    blob: &Hash,
) -> Result<Option<String>, LedgerError> {
    if let Some(owner) = blob_refs.get(&blob.0)? {
        return Ok(Some(owner.value().to_owned()));
    }
    if let Some(session) = device_blobs.get(&blob.0)? {
        return Ok(Some(owner::device_session(&Hash(*session.value()))));
    }
    Ok(registration_blobs.get(&blob.0)?.map(|v| v.value().to_owned()))
}

impl StateTxn<'_, '_> {
    /// What `blob` belongs to, if anything ([`holder_in`]).
    pub fn blob_holder(&self, blob: &Hash) -> Result<Option<String>, LedgerError> {
        let t = &self.tables;
        holder_in(&t.blob_refs, &t.device_blobs, &t.registration_blobs, blob)
    }

    /// Keeps `registration_blobs` in step with a registration whose blobs were `old` and are
    /// now `new` (each with its owner): a blob no longer named is dropped if this registration
    /// held it (in a ledger from before one owner per blob, another may), a new one added.
    pub(crate) fn index_registration(
        &mut self,
        old: &[(Hash, String)],
        new: &[(Hash, String)],
    ) -> Result<(), LedgerError> {
        for (blob, owner) in old {
            let held =
                self.tables.registration_blobs.get(&blob.0)?.is_some_and(|v| v.value() == owner);
            if held && !new.iter().any(|(b, _)| b == blob) {
                self.write().registration_blobs().remove(&blob.0)?;
            }
        }
        for (blob, owner) in new {
            if !old.iter().any(|(b, o)| b == blob && o == owner) {
                self.write().registration_blobs().put(&blob.0, owner.as_str())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use medledger_core::{
        block::Genesis,
        keys::{DecryptionKey, SigningKey},
    };

    use super::*;
    use crate::{Ledger, state::Tables};

    /// A removal takes only the remover's own reference: in a ledger from before one owner per
    /// blob, a blob may be named by two, and replacing or erasing one must not leave the
    /// other's bytes unreferenced (the vault would collect them) or erased.
    #[test]
    fn a_removal_takes_only_the_removers_own_reference() {
        let genesis = Genesis {
            chain_id: "blobs-test".into(),
            time_ms: 1,
            regulator_key: SigningKey::generate().public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: SigningKey::generate().public_key(),
        };
        let ledger = Ledger::in_memory(genesis).unwrap();
        let txn = ledger.db.begin_write().unwrap();
        let mut tables = Tables::open(&txn).unwrap();
        let digest = ledger.writer.lock().unwrap().digest;
        let mut state =
            StateTxn { tables: &mut tables, digest, height: 1, time_ms: 1, tx_hash: Hash::of(b"") };
        let (x, y) = (Hash::of(b"x"), Hash::of(b"y"));

        state.add_blob_ref(&x, "record A").unwrap();
        assert!(!state.remove_blob_ref(&x, "record B").unwrap());
        assert_eq!(state.blob_holder(&x).unwrap().as_deref(), Some("record A"));
        assert!(state.remove_blob_ref(&x, "record A").unwrap());
        assert_eq!(state.blob_holder(&x).unwrap(), None);

        let (p, q) =
            ("registration of patient 1".to_owned(), "registration of patient 2".to_owned());
        state.index_registration(&[], &[(y, q.clone())]).unwrap();
        // Patient 1's registration named y too (before the rule); it moves away from y.
        state.index_registration(&[(y, p)], &[(x, "new".into())]).unwrap();
        assert_eq!(state.blob_holder(&y).unwrap(), Some(q.clone()));
        state.index_registration(&[(y, q)], &[]).unwrap();
        assert_eq!(state.blob_holder(&y).unwrap(), None);
    }
}
