//! The doctor's hospital files its review of a break-glass (once; the finding sealed to the
//! patient, the hospital and the regulator); until then the break-glass
//! is listed among the hospital's open reviews.

use medledger_core::{
    Hash, block::Refusal, ids::AccountId, tx::emergency::MIN_SEALED_FINDING_BYTES,
};

use crate::{
    handler::{HandlerResult, refuse_on},
    state::StateTxn,
};

pub(crate) fn file(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    id: &Hash,
    finding: &[u8],
) -> HandlerResult {
    let Some(mut b) = state.break_glass(id)? else {
        return Ok(Err(Refusal::NotFound { what: format!("break-glass {id}") }));
    };
    if *signer != b.hospital {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!("only hospital {} reviews this break-glass", b.hospital),
        }));
    }
    if b.review.is_some() {
        return Ok(Err(Refusal::AlreadyExists { what: format!("the review of break-glass {id}") }));
    }
    refuse_on!(super::check_sealed("finding", finding, MIN_SEALED_FINDING_BYTES));
    b.review = Some((finding.to_vec(), state.height));
    state.put_break_glass(id, &b)?;
    crate::audit::record_event(
        state,
        signer,
        &b.patient,
        &[b.doctor],
        crate::audit::AuditKind::BreakGlassReviewed { id: *id, finding: finding.to_vec() },
    )?;
    Ok(Ok(None))
}
