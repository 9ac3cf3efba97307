//! A patient names or removes a delegate (a parent, a guardian) who may act on consent for
//! them. Only the patient themself may change their delegates.

use medledger_core::{
    block::Refusal,
    ids::AccountId,
    tx::{DelegatePowers, Role},
};

use crate::{
    handler::{HandlerResult, refuse_on, require_active},
    state::{Account, StateTxn},
};

pub(crate) fn set(
    state: &mut StateTxn<'_, '_>,
    patient: &AccountId,
    patient_account: &Account,
    delegate: &AccountId,
    on: bool,
) -> HandlerResult {
    if patient_account.role != Role::Patient {
        return Ok(Err(Refusal::Unauthorised {
            reason: "only a patient names their delegates".into(),
        }));
    }
    if delegate == patient {
        return Ok(Err(Refusal::Invalid {
            reason: "a patient cannot be their own delegate".into(),
        }));
    }
    let present = state.is_delegate(patient, delegate)?;
    if on {
        refuse_on!(require_active(state, delegate, "delegate")?);
        if present {
            return Ok(Err(Refusal::AlreadyExists { what: format!("delegate {delegate}") }));
        }
    } else if !present {
        return Ok(Err(Refusal::NotFound { what: format!("delegate {delegate}") }));
    }
    state.set_delegate(patient, delegate, on)?;
    let kind = if on {
        crate::audit::AuditKind::DelegateNamed { delegate: *delegate }
    } else {
        crate::audit::AuditKind::DelegateRemoved { delegate: *delegate }
    };
    crate::audit::record_event(state, patient, patient, &[*delegate], kind)?;
    Ok(Ok(None))
}

/// Names `delegate` with only `powers`, or changes the powers of a delegate already named.
pub(crate) fn scope(
    state: &mut StateTxn<'_, '_>,
    patient: &AccountId,
    patient_account: &Account,
    delegate: &AccountId,
    powers: DelegatePowers,
) -> HandlerResult {
    if !powers.is_valid() {
        return Ok(Err(Refusal::Invalid {
            reason: format!(
                "delegate powers {:#04x} are not a non-empty set of consent, records, emergency",
                powers.0
            ),
        }));
    }
    if patient_account.role != Role::Patient {
        return Ok(Err(Refusal::Unauthorised {
            reason: "only a patient names their delegates".into(),
        }));
    }
    if delegate == patient {
        return Ok(Err(Refusal::Invalid {
            reason: "a patient cannot be their own delegate".into(),
        }));
    }
    match state.delegate_powers(patient, delegate)? {
        Some(now) if now == powers => {
            return Ok(Err(Refusal::AlreadyExists {
                what: format!("delegate {delegate} with powers {}", powers.names().join(",")),
            }));
        }
        Some(_) => {}
        None => {
            refuse_on!(require_active(state, delegate, "delegate")?);
            state.set_delegate(patient, delegate, true)?;
        }
    }
    state.set_delegate_powers(patient, delegate, powers)?;
    let kind = crate::audit::AuditKind::DelegateScoped { delegate: *delegate, powers };
    crate::audit::record_event(state, patient, patient, &[*delegate], kind)?;
    Ok(Ok(None))
}
