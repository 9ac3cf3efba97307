//! Deny rules: added and removed by the patient or a delegate; they override any grant.

use medledger_core::tx::DelegatePowers;
use medledger_core::{
    block::{Created, Refusal},
    ids::AccountId,
    tx::consent::{ConsentId, DenyRule},
};

use super::require_patient_or_delegate;
use crate::{
    handler::{HandlerResult, refuse_on},
    state::{DenyEntry, StateTxn},
};

pub(crate) fn add(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    patient: &AccountId,
    rule: &DenyRule,
) -> HandlerResult {
    refuse_on!(require_patient_or_delegate(state, signer, patient, DelegatePowers::CONSENT)?);
    if rule.grantee.is_none()
        && rule.grantee_role.is_none()
        && rule.category.is_none()
        && rule.purpose.is_none()
    {
        return Ok(Err(Refusal::Invalid {
            reason:
                "a deny rule names at least a grantee, a kind of grantee, a category or a purpose"
                    .into(),
        }));
    }
    let id = state.tx_hash;
    crate::audit::record_event(
        state,
        signer,
        patient,
        &[],
        crate::audit::AuditKind::DenyAdded { rule: id },
    )?;
    state.put_deny_rule(
        &id,
        &DenyEntry { patient: *patient, rule: rule.clone(), added_at: state.height },
    )?;
    Ok(Ok(Some(Created::Consent { id })))
}

pub(crate) fn remove(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    id: &ConsentId,
) -> HandlerResult {
    let Some(d) = state.deny_rule(id)? else {
        return Ok(Err(Refusal::NotFound { what: format!("deny rule {id}") }));
    };
    refuse_on!(require_patient_or_delegate(state, signer, &d.patient, DelegatePowers::CONSENT)?);
    state.remove_deny_rule(id, &d)?;
    crate::audit::record_event(
        state,
        signer,
        &d.patient,
        &[],
        crate::audit::AuditKind::DenyRemoved { rule: *id },
    )?;
    Ok(Ok(None))
}
