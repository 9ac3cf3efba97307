//! The owner, patient or a delegate gives another account a record's data key, wrapped to
//! that account (done in the patient's wallet when granting access to the record). Access
//! itself still needs a grant in force: a key without a grant opens nothing the node serves.
//!
//! The recipient may also be the patient's emergency pseudo-account
//! (`AccountId::emergency_of`), once the patient has an emergency profile: the patient's wallet
//! wraps the keys of records minted before the profile (or before it was replaced with a new
//! emergency key) to the emergency key, so that an open break-glass opens every record when
//! the patient allowed it. A mint already wraps new records to it.

use medledger_core::{block::Refusal, ids::AccountId, tx::records::KeyRef};

use crate::{
    handler::{HandlerResult, refuse_on},
    state::StateTxn,
};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    pmr: &str,
    key: &KeyRef,
) -> HandlerResult {
    let r = refuse_on!(super::existing(state, pmr)?);
    refuse_on!(super::require_patient_or_delegate_in_office(state, signer, pmr, &r)?);
    refuse_on!(super::require_not_erased(pmr, &r));
    let to_emergency_key = key.recipient == AccountId::emergency_of(&r.patient);
    if to_emergency_key {
        if state.emergency_profile(&r.patient)?.is_none() {
            return Ok(Err(Refusal::Invalid {
                reason: format!(
                    "patient {} has no emergency profile: there is no emergency key to wrap to",
                    r.patient
                ),
            }));
        }
    } else {
        refuse_on!(crate::handler::require_active(state, &key.recipient, "recipient")?);
    }
    if key.blob == r.content || key.blob == r.metadata {
        return Ok(Err(Refusal::Invalid { reason: "a wrapped key must be its own blob".into() }));
    }
    state.put_record_key(pmr, &key.recipient, &key.blob)?;
    crate::audit::record_event(
        state,
        signer,
        &r.patient,
        // Nobody signs as the emergency pseudo-account: no trail to index it under.
        if to_emergency_key { &[] } else { std::slice::from_ref(&key.recipient) },
        crate::audit::AuditKind::RecordKeyShared { record: pmr.to_owned(), grantee: key.recipient },
    )?;
    Ok(Ok(None))
}
