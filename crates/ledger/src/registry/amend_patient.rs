//! The hospital that registered a patient corrects the patient's sealed details (name, date of
//! birth, phone, attendant): new sealed references replace the registered ones, and the
//! patient's trail records the correction (which notifies the patient's event stream). Only
//! that hospital may, while it may act at all (a suspended hospital is refused with the
//! envelope); another hospital, a doctor, the patient or anyone else is refused.

use medledger_core::{
    block::Refusal,
    ids::AccountId,
    tx::{AmendPatient, Role},
};

use crate::handler::{HandlerResult, refuse_on, require_role};
use crate::state::{Account, StateTxn};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    hospital: &AccountId,
    signer: &Account,
    t: &AmendPatient,
) -> HandlerResult {
    refuse_on!(require_role(signer, Role::Hospital, "amend a patient's registration"));
    let Some(mut entry) = state.patient(t.patient)? else {
        return Ok(Err(Refusal::NotFound { what: format!("patient {}", t.patient) }));
    };
    if entry.hospital != *hospital {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "only the hospital that registered patient {} ({}) may amend their details",
                t.patient, entry.hospital
            ),
        }));
    }
    if entry.details == t.details && entry.attendant == t.attendant {
        return Ok(Err(Refusal::Invalid {
            reason: "the amendment changes nothing: both sealed references are the registered ones"
                .into(),
        }));
    }
    entry.details = t.details;
    entry.attendant = t.attendant;
    state.put_patient(t.patient, &entry)?;
    let kind =
        crate::audit::AuditKind::PatientAmended { details: t.details, attendant: t.attendant };
    crate::audit::record_event(state, hospital, &entry.account, &[], kind)?;
    Ok(Ok(None))
}
