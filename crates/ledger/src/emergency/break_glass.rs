//! Break-glass: declared by an active doctor with a coded reason and a sealed text (long
//! enough to hold [`MIN_REASON_CHARS`] characters; the ledger never sees the text), open until
//! the network's window closes (block time) or someone ends it; the regulator sets the window.

use medledger_core::{
    Hash,
    block::{Created, Refusal},
    ids::AccountId,
    tx::{
        Role,
        emergency::{MAX_WINDOW_MINUTES, MIN_SEALED_REASON_BYTES, ReasonCode},
    },
};

use crate::{
    handler::{HandlerResult, refuse_on},
    state::{Account, BreakGlassEntry, StateTxn},
};

pub(crate) fn start(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    patient: &AccountId,
    code: ReasonCode,
    reason: &[u8],
) -> HandlerResult {
    if signer_account.role != Role::Doctor {
        return Ok(Err(Refusal::Unauthorised {
            reason: "only a doctor may declare emergency access".into(),
        }));
    }
    refuse_on!(super::check_sealed("reason", reason, MIN_SEALED_REASON_BYTES));
    match state.account(patient)? {
        Some(p) if p.role == Role::Patient => {}
        _ => return Ok(Err(Refusal::NotFound { what: format!("patient {patient}") })),
    }
    let Some(hospital) = signer_account.hospital else {
        return Err(crate::LedgerError::Corrupt(format!("doctor {signer} has no hospital")));
    };
    let id = state.tx_hash;
    let until_ms = state.time_ms.saturating_add(state.emergency_window_ms()?);
    let entry = BreakGlassEntry {
        patient: *patient,
        doctor: *signer,
        hospital,
        code,
        reason: reason.to_vec(),
        started_at: state.height,
        started_ms: state.time_ms,
        until_ms,
        ended_at: None,
        review: None,
    };
    state.put_break_glass(&id, &entry)?;
    let mut others = super::notified(state, patient, signer)?;
    // The custodians of the patient's emergency key are told too: each may release its
    // escrow piece to the doctor, and learns of the break-glass from its own trail.
    if let Some(profile) = state.emergency_profile(patient)? {
        others.extend(profile.escrow.iter().map(|piece| piece.recipient));
    }
    crate::audit::record_event(
        state,
        signer,
        patient,
        &others,
        crate::audit::AuditKind::BreakGlassStarted {
            id,
            doctor: *signer,
            hospital,
            code,
            reason: entry.reason.clone(),
            until_ms,
        },
    )?;
    Ok(Ok(Some(Created::BreakGlass { id, until_ms })))
}

pub(crate) fn end(state: &mut StateTxn<'_, '_>, signer: &AccountId, id: &Hash) -> HandlerResult {
    let Some(mut b) = state.break_glass(id)? else {
        return Ok(Err(Refusal::NotFound { what: format!("break-glass {id}") }));
    };
    if ![b.doctor, b.hospital, b.patient].contains(signer) {
        return Ok(Err(Refusal::Unauthorised {
            reason: "only the doctor, their hospital or the patient may end a break-glass".into(),
        }));
    }
    if !b.open_at(state.height, state.time_ms) {
        return Ok(Err(Refusal::Invalid { reason: format!("break-glass {id} is already over") }));
    }
    b.ended_at = Some(state.height);
    state.put_break_glass(id, &b)?;
    let others = super::notified(state, &b.patient, &b.doctor)?;
    crate::audit::record_event(
        state,
        signer,
        &b.patient,
        &others,
        crate::audit::AuditKind::BreakGlassEnded { id: *id },
    )?;
    Ok(Ok(None))
}

pub(crate) fn set_window(
    state: &mut StateTxn<'_, '_>,
    signer_account: &Account,
    minutes: u32,
) -> HandlerResult {
    if signer_account.role != Role::Regulator {
        return Ok(Err(Refusal::Unauthorised {
            reason: "only the regulator sets the break-glass window".into(),
        }));
    }
    if minutes == 0 || minutes > MAX_WINDOW_MINUTES {
        return Ok(Err(Refusal::Invalid {
            reason: format!("the window is 1 to {MAX_WINDOW_MINUTES} minutes"),
        }));
    }
    state.set_emergency_window_ms(u64::from(minutes) * 60_000)?;
    Ok(Ok(None))
}
