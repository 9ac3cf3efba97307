//! A hospital's registration desk registers a patient. The ledger assigns the Patient-ID:
//! deterministic (every node picks the same one), not sequential (so it does not reveal how
//! many patients a hospital has), five digits while the five-digit space is less than half
//! full, then six, and so on. It is drawn from a hash chain over every registration applied
//! before it (`patient_id_seed`), extended with the index digest before it and its own
//! transaction hash. A client holds its own transaction (the wallet's key proof serves it), and
//! may learn the registrations before it, but not the index digest, which no route serves and
//! which covers the position of every transaction of the ledger (`tx_index`), so knowing
//! accounts does not tell their Patient-IDs, not even the first patient's. Both are binary
//! and derived from transactions alone: no change of wording (a refusal's reason, stored in
//! receipts, which the state digest covers) changes the IDs a version assigns.

use medledger_core::{
    Hash,
    block::Created,
    ids::{AccountId, PatientId},
    tx::{RegisterPatient, Role},
};

use crate::handler::{HandlerResult, refuse_on, require_new_account, require_role};
use crate::{
    LedgerError,
    state::{Account, PatientEntry, StateTxn},
};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    hospital: &AccountId,
    signer: &Account,
    t: &RegisterPatient,
) -> HandlerResult {
    refuse_on!(require_role(signer, Role::Hospital, "register a patient"));
    let id = AccountId::from_initial_key(&t.key);
    refuse_on!(require_new_account(state, &id)?);
    let patient_id = assign_patient_id(state)?;
    state.put_account(
        &id,
        &Account {
            role: Role::Patient,
            key: Some(t.key),
            encryption_key: t.encryption_key,
            nonce: 0,
            authority: Some(*hospital),
            hospital: Some(*hospital),
            suspended: false,
            patient_id: Some(patient_id),
            created_at: state.height,
        },
    )?;
    state.put_patient(
        patient_id,
        &PatientEntry {
            account: id,
            hospital: *hospital,
            details: t.details,
            attendant: t.attendant,
            registered_at: state.height,
        },
    )?;
    Ok(Ok(Some(Created::Patient { account: id, patient_id })))
}

/// Picks a free Patient-ID from the seed chain, the index digest and the transaction hash (see the
/// module docs), probing linearly within the current digit range, and stores the new seed.
fn assign_patient_id(state: &mut StateTxn<'_, '_>) -> Result<PatientId, LedgerError> {
    let count = state.patient_count()?;
    let mut low: u64 = 10_000;
    // Widen while the range would be more than half full.
    while count >= (low * 9) / 2 {
        low *= 10;
    }
    let span = low * 9;
    let seed = Hash::of_parts(&[
        b"medledger/patient-id",
        &state.patient_id_seed()?,
        &state.digest.index,
        &state.tx_hash.0,
    ]);
    state.put_patient_id_seed(&seed.0)?;
    let seed: [u8; 8] = seed.0[..8].try_into().expect("a hash is longer than 8 bytes");
    let mut offset = u64::from_le_bytes(seed) % span;
    loop {
        let candidate = PatientId(low + offset);
        if !state.patient_id_taken(candidate)? {
            return Ok(candidate);
        }
        offset = (offset + 1) % span;
    }
}
