//! The `Access` transaction: a reader declares a read of a patient's record, category or case;
//! the ledger decides it with [`authorize`] at that block and records the decision, allowed or
//! denied, in the patient's audit trail. It depends on consent (the decision) and on records
//! and cases (what the access names), so that consent stays a policy module that calls into
//! neither.

use medledger_core::{
    block::{Created, Refusal},
    ids::AccountId,
    tx::{Role, consent::AccessTx},
};

use crate::{
    audit::{AuditKind, record_event},
    cases,
    consent::{Decision, Denial, authorize},
    handler::{HandlerResult, refuse_on},
    records,
    state::StateTxn,
};

/// Applies an `Access` transaction: decides it with [`authorize`] at the block being applied,
/// and records the decision in the patient's audit trail whether it allows or denies.
pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    tx: &AccessTx,
) -> HandlerResult {
    // One access names one thing: a record (with its category), a category, or a case. A
    // record belongs to no case, so naming both could only serve to borrow the case's grant.
    if tx.resource.case.is_some()
        && (tx.resource.record.is_some() || tx.resource.category.is_some())
    {
        return Ok(Err(Refusal::Invalid {
            reason: "an access names a record or a category, or a case, not both".into(),
        }));
    }
    // A named record must be named as it is, with its patient and category (grants by
    // category or of another patient would otherwise be fooled). One named otherwise is a
    // probe: it is denied, and the denial goes to the trail of the record's real patient, who
    // sees it (L5); admission charged it to the reader's allowance of denials.
    if let Some(pmr) = &tx.resource.record {
        let r = refuse_on!(records::existing(state, pmr)?);
        if !records::named_as_it_is(&r, &tx.resource) {
            let decision = Decision::Deny(Denial::NotAsNamed);
            let kind = AuditKind::Access {
                resource: tx.resource.clone(),
                purpose: tx.purpose,
                decision: decision.clone(),
            };
            let event = record_event(state, signer, &r.patient, &[*signer], kind)?;
            return Ok(Ok(Some(Created::Access { decision, event })));
        }
        refuse_on!(records::require_not_erased(pmr, &r));
    }
    let patient = state.account(&tx.resource.patient)?;
    if !patient.is_some_and(|p| p.role == Role::Patient) {
        return Ok(Err(Refusal::NotFound { what: format!("patient {}", tx.resource.patient) }));
    }
    // A named case must be the patient's: one named with another patient is refused as a
    // missing case would be, telling nothing of whether it exists or whose it is (as the
    // audited read route answers it).
    if let Some(id) = &tx.resource.case {
        let c = refuse_on!(cases::existing(state, id)?);
        if c.patient != tx.resource.patient {
            return Ok(Err(Refusal::NotFound { what: format!("case {id}") }));
        }
    }
    let decision = authorize(
        &*state,
        signer,
        tx.action,
        &tx.resource,
        tx.purpose,
        state.height,
        state.time_ms,
    )?;
    let kind = AuditKind::Access {
        resource: tx.resource.clone(),
        purpose: tx.purpose,
        decision: decision.clone(),
    };
    let event = record_event(state, signer, &tx.resource.patient, &[*signer], kind)?;
    Ok(Ok(Some(Created::Access { decision, event })))
}
