//! A custodian hospital releases its escrow piece of a patient's emergency key to the doctor
//! of an open break-glass, re-wrapped to that doctor, once. Refused when the break-glass is
//! over, the signer holds no piece, or it released its piece for this break-glass already.

use medledger_core::{Hash, block::Refusal, ids::AccountId};

use crate::{handler::HandlerResult, state::StateTxn};

pub(crate) fn release(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    id: &Hash,
    piece: &Hash,
) -> HandlerResult {
    let Some(b) = state.break_glass(id)? else {
        return Ok(Err(Refusal::NotFound { what: format!("break-glass {id}") }));
    };
    if !b.open_at(state.height, state.time_ms) {
        return Ok(Err(Refusal::Invalid {
            reason: format!("break-glass {id} is over: its window closed or it was ended"),
        }));
    }
    let Some(profile) = state.emergency_profile(&b.patient)? else {
        return Ok(Err(Refusal::NotFound { what: format!("emergency profile of {}", b.patient) }));
    };
    if !profile.escrow.iter().any(|p| p.recipient == *signer) {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!("{signer} holds no escrow piece of this patient's emergency key"),
        }));
    }
    // Once per custodian and break-glass: a repeat would add an event to the trail and leave
    // the first piece's blob referenced by nothing the ledger serves.
    if let Some(released) = state.escrow_release(id, signer)? {
        return Ok(Err(Refusal::AlreadyExists {
            what: format!(
                "{signer}'s escrow piece for break-glass {id} (released already, piece {released})"
            ),
        }));
    }
    state.put_escrow_release(id, signer, piece, &format!("break-glass {id}"))?;
    crate::audit::record_event(
        state,
        signer,
        &b.patient,
        // The custodian's own trail holds its release, so that it knows what it released.
        &[b.doctor, *signer],
        crate::audit::AuditKind::EscrowReleased { id: *id, custodian: *signer },
    )?;
    Ok(Ok(None))
}
