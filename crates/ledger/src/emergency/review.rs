//! The doctor's hospital files its review of a break-glass (once); until then the break-glass
//! is listed among the hospital's open reviews.

use medledger_core::{Hash, block::Refusal, ids::AccountId};

use crate::{
    registry::{HandlerResult, refuse_on},
    state::StateTxn,
};

pub(crate) fn file(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    id: &Hash,
    finding: &str,
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
    refuse_on!(super::check_text("finding", finding));
    b.review = Some((finding.trim().to_owned(), state.height));
    state.put_break_glass(id, &b)?;
    crate::consent::audit(
        state,
        signer,
        &b.patient,
        &[b.doctor],
        crate::audit::AuditKind::BreakGlassReviewed { id: *id, finding: finding.trim().to_owned() },
    )?;
    Ok(Ok(None))
}
