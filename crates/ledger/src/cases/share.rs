//! The patient, a delegate or the opener wraps a case's data key to another account (a doctor
//! the patient authorised for the case). The key alone authorises nothing: appending still
//! needs a grant in force.

use medledger_core::{ids::AccountId, tx::records::KeyRef};

use crate::{
    registry::{HandlerResult, refuse_on},
    state::StateTxn,
};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    case: &str,
    key: &KeyRef,
) -> HandlerResult {
    let log = refuse_on!(super::existing(state, case)?);
    refuse_on!(super::require_opener_or_patient(state, signer, case, &log, "share its key")?);
    refuse_on!(crate::consent::require_active(state, &key.recipient, "recipient")?);
    refuse_on!(super::require_unreferenced(state, &key.blob, "wrapped key")?);
    state.put_case_key(case, &key.recipient, &key.blob)?;
    crate::consent::audit(
        state,
        signer,
        &log.patient,
        &[key.recipient],
        crate::audit::AuditKind::CaseKeyShared { case: case.to_owned(), grantee: key.recipient },
    )?;
    Ok(Ok(None))
}
