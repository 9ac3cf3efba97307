//! Revocation of a grant by the patient or a delegate. The grant stops working from the next
//! block on; it stays on the ledger with the height of its revocation.

use medledger_core::tx::DelegatePowers;
use medledger_core::{block::Refusal, ids::AccountId, tx::consent::ConsentId};

use super::require_patient_or_delegate;
use crate::{
    handler::{HandlerResult, refuse_on},
    state::StateTxn,
};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    id: &ConsentId,
) -> HandlerResult {
    let Some(mut g) = state.grant(id)? else {
        return Ok(Err(Refusal::NotFound { what: format!("grant {id}") }));
    };
    refuse_on!(require_patient_or_delegate(state, signer, &g.patient, DelegatePowers::CONSENT)?);
    if g.revoked_at.is_some() {
        return Ok(Err(Refusal::Invalid { reason: format!("grant {id} is already revoked") }));
    }
    g.revoked_at = Some(state.height);
    crate::audit::record_event(
        state,
        signer,
        &g.patient,
        &[g.grantee],
        crate::audit::AuditKind::Revoked { grant: *id },
    )?;
    state.put_grant(id, &g)?;
    Ok(Ok(None))
}
