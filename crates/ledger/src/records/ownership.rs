//! ERC-721 ownership: approve one account for a token, approve an operator for all of one's
//! tokens, and transfer (only ever between the patient and a delegate they named).

use medledger_core::{block::Refusal, ids::AccountId};

use crate::{
    handler::{HandlerResult, refuse_on},
    state::StateTxn,
};

pub(crate) fn approve(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    pmr: &str,
    approved: Option<&AccountId>,
) -> HandlerResult {
    let mut r = refuse_on!(super::existing(state, pmr)?);
    if *signer != r.owner && !state.is_operator(&r.owner, signer)? {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!("only the owner of record {pmr} or their operator may approve"),
        }));
    }
    if approved == Some(&r.owner) {
        return Ok(Err(Refusal::Invalid { reason: "the owner needs no approval".into() }));
    }
    if let Some(a) = approved
        && state.account(a)?.is_none()
    {
        return Ok(Err(Refusal::NotFound { what: format!("account {a}") }));
    }
    r.approved = approved.copied();
    state.put_record(pmr, &r)?;
    let others: Vec<AccountId> = approved.into_iter().copied().collect();
    crate::audit::record_event(
        state,
        signer,
        &r.patient,
        &others,
        crate::audit::AuditKind::RecordApproval { record: pmr.to_owned(), approved: r.approved },
    )?;
    Ok(Ok(None))
}

pub(crate) fn set_approval_for_all(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    operator: &AccountId,
    approved: bool,
) -> HandlerResult {
    if operator == signer {
        return Ok(Err(Refusal::Invalid { reason: "an owner is not its own operator".into() }));
    }
    if state.account(operator)?.is_none() {
        return Ok(Err(Refusal::NotFound { what: format!("account {operator}") }));
    }
    state.set_operator(signer, operator, approved)?;
    Ok(Ok(None))
}

pub(crate) fn transfer(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    pmr: &str,
    to: &AccountId,
) -> HandlerResult {
    let mut r = refuse_on!(super::existing(state, pmr)?);
    let from = r.owner;
    // The patient may always take a record back, whoever holds it (a delegate they have
    // since removed, say).
    if *signer != r.patient
        && *signer != from
        && r.approved != Some(*signer)
        && !state.is_operator(&from, signer)?
    {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "only the patient or owner of record {pmr}, the account it approved, or an operator may transfer it"
            ),
        }));
    }
    // A delegate acts on records only with the records power, whatever else makes them a
    // party (owner, approved, operator); giving a record back to its patient is always allowed.
    let records = medledger_core::tx::DelegatePowers::RECORDS;
    if *signer != r.patient
        && *to != r.patient
        && state.is_delegate(&r.patient, signer)?
        && !state.delegate_may(&r.patient, signer, records)?
    {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "{signer} is a delegate of the patient of record {pmr} without the records power"
            ),
        }));
    }
    if *to == from {
        return Ok(Err(Refusal::Invalid { reason: format!("{to} already owns record {pmr}") }));
    }
    if *to != r.patient && !state.delegate_may(&r.patient, to, records)? {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "a record moves only between its patient and a delegate the patient named with the records power; {to} is neither"
            ),
        }));
    }
    refuse_on!(crate::handler::require_active(state, to, "new owner")?);
    r.owner = *to;
    r.approved = None;
    state.put_record(pmr, &r)?;
    crate::audit::record_event(
        state,
        signer,
        &r.patient.clone(),
        &[from, *to],
        crate::audit::AuditKind::RecordTransferred { record: pmr.to_owned(), from, to: *to },
    )?;
    Ok(Ok(None))
}
