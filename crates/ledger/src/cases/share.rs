//! The patient, a delegate or the opener wraps a case's data key to another account. The
//! opener may wrap it only to an account the patient already lets read the case (a grant in
//! force covering it): a key share is the patient's consent, never the opener's alone. The
//! key alone authorises nothing: reading needs consent at the time of the read, appending a
//! grant in force.

use medledger_core::{
    block::Refusal,
    ids::AccountId,
    tx::{
        consent::{Action, Purpose, Resource},
        records::KeyRef,
    },
};

use crate::{
    handler::{HandlerResult, refuse_on},
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
    refuse_on!(crate::handler::require_active(state, &key.recipient, "recipient")?);
    if *signer != log.patient
        && !state.delegate_may(&log.patient, signer, medledger_core::tx::DelegatePowers::RECORDS)?
    {
        let resource = Resource {
            patient: log.patient,
            category: None,
            record: None,
            case: Some(case.to_owned()),
        };
        let decision = crate::consent::authorize(
            &*state,
            &key.recipient,
            Action::Read,
            &resource,
            Purpose::Treatment,
            state.height,
            state.time_ms,
        )?;
        if !decision.is_allowed() {
            return Ok(Err(Refusal::Unauthorised {
                reason: format!(
                    "the patient has not let {} read case {case} ({decision}): the patient or a delegate shares the key, or grants the case first",
                    key.recipient
                ),
            }));
        }
    }
    state.put_case_key(case, &key.recipient, &key.blob)?;
    crate::audit::record_event(
        state,
        signer,
        &log.patient,
        &[key.recipient],
        crate::audit::AuditKind::CaseKeyShared { case: case.to_owned(), grantee: key.recipient },
    )?;
    Ok(Ok(None))
}
