//! Access requests: a doctor, hospital or organisation asks (a member of an organisation asks
//! on its organisation's behalf: the request is the organisation's); the patient (or a delegate)
//! approves, choosing scope and period, which creates a grant, or declines.

use medledger_core::tx::DelegatePowers;
use medledger_core::{
    block::{Created, Refusal},
    ids::AccountId,
    tx::{
        Role,
        consent::{ConsentId, Purpose, Scope, Validity},
    },
};

use super::{check_scope, require_patient_or_delegate};
use crate::{
    handler::{HandlerResult, refuse_on, require_active},
    state::{Account, RequestEntry, RequestStatus, StateTxn},
};

pub(crate) fn request(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    patient: &AccountId,
    scope: &Scope,
    purpose: Purpose,
) -> HandlerResult {
    if matches!(signer_account.role, Role::Patient | Role::Regulator | Role::Device) {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!("a {:?} cannot request access to records", signer_account.role),
        }));
    }
    // A member asks on behalf of its organisation: the request, and the grant approving it,
    // are the organisation's.
    let requester = if signer_account.role == Role::Member {
        match super::acting_organisation(state, signer, signer_account)? {
            Some((organisation, o)) => {
                refuse_on!(super::check_organisation_purpose(o.role, purpose));
                refuse_on!(super::check_organisation_scope(o.role, scope));
                organisation
            }
            None => {
                return Ok(Err(Refusal::Unauthorised {
                    reason: format!("{signer} acts for no active organisation"),
                }));
            }
        }
    } else {
        refuse_on!(super::check_organisation_purpose(signer_account.role, purpose));
        refuse_on!(super::check_organisation_scope(signer_account.role, scope));
        *signer
    };
    let p = refuse_on!(require_active(state, patient, "patient")?);
    if p.role != Role::Patient {
        return Ok(Err(Refusal::Invalid { reason: format!("{patient} is not a patient") }));
    }
    refuse_on!(check_scope(scope));
    let id = state.tx_hash;
    let concerned = if requester == *signer { vec![*signer] } else { vec![*signer, requester] };
    crate::audit::record_event(
        state,
        signer,
        patient,
        &concerned,
        crate::audit::AuditKind::Requested { request: id, purpose },
    )?;
    state.put_request(
        &id,
        &RequestEntry {
            patient: *patient,
            requester,
            scope: scope.clone(),
            purpose,
            requested_at: state.height,
            status: RequestStatus::Pending,
        },
    )?;
    Ok(Ok(Some(Created::Consent { id })))
}

fn pending(
    state: &StateTxn<'_, '_>,
    id: &ConsentId,
) -> Result<Result<RequestEntry, Refusal>, crate::LedgerError> {
    let Some(r) = state.request(id)? else {
        return Ok(Err(Refusal::NotFound { what: format!("request {id}") }));
    };
    if r.status != RequestStatus::Pending {
        return Ok(Err(Refusal::Invalid { reason: format!("request {id} was already answered") }));
    }
    Ok(Ok(r))
}

pub(crate) fn approve(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    id: &ConsentId,
    scope: &Scope,
    validity: &Validity,
) -> HandlerResult {
    let mut r = refuse_on!(pending(state, id)?);
    let created = super::grant::grant(
        state,
        signer,
        &r.patient,
        &r.requester,
        scope,
        r.purpose,
        validity,
        Some(*id),
    )?;
    let Ok(Some(Created::Consent { id: grant })) = created else {
        return Ok(created);
    };
    r.status = RequestStatus::Approved(grant);
    state.put_request(id, &r)?;
    Ok(Ok(Some(Created::Consent { id: grant })))
}

pub(crate) fn decline(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    id: &ConsentId,
) -> HandlerResult {
    let mut r = refuse_on!(pending(state, id)?);
    refuse_on!(require_patient_or_delegate(state, signer, &r.patient, DelegatePowers::CONSENT)?);
    r.status = RequestStatus::Declined;
    crate::audit::record_event(
        state,
        signer,
        &r.patient,
        &[r.requester],
        crate::audit::AuditKind::Declined { request: *id },
    )?;
    state.put_request(id, &r)?;
    Ok(Ok(None))
}
