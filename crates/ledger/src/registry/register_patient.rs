//! A hospital's registration desk registers a patient. The ledger assigns the Patient-ID:
//! deterministic (derived from the transaction hash, so every node picks the same one), not
//! sequential (so it does not reveal how many patients a hospital has), five digits while
//! the five-digit space is less than half full, then six, and so on.

use medledger_core::{
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

/// Picks a free Patient-ID from the transaction hash, probing linearly within the current
/// digit range.
fn assign_patient_id(state: &StateTxn<'_, '_>) -> Result<PatientId, LedgerError> {
    let count = state.patient_count()?;
    let mut low: u64 = 10_000;
    // Widen while the range would be more than half full.
    while count >= (low * 9) / 2 {
        low *= 10;
    }
    let span = low * 9;
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&state.tx_hash.0[..8]);
    let mut offset = u64::from_le_bytes(seed) % span;
    loop {
        let candidate = PatientId(low + offset);
        if !state.patient_id_taken(candidate)? {
            return Ok(candidate);
        }
        offset = (offset + 1) % span;
    }
}
