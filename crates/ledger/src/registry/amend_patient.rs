//! The hospital that registered a patient corrects the patient's sealed details (name, date of
//! birth, phone, attendant): new sealed references replace the registered ones, and the
//! patient's trail records the correction (which notifies the patient's event stream). Only
//! that hospital may, while it may act at all (a suspended hospital is refused with the
//! envelope); another hospital, a doctor, the patient or anyone else is refused (another
//! hospital as for a Patient-ID that does not exist).

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
    // Another hospital is answered as for a Patient-ID that does not exist: whether one does,
    // and which hospital registered it, is not for it to learn (M4).
    let entry = state.patient(t.patient)?.filter(|e| e.hospital == *hospital);
    let Some(mut entry) = entry else {
        return Ok(Err(Refusal::NotFound { what: format!("patient {}", t.patient) }));
    };
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
