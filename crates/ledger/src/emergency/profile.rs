//! The emergency profile: set by the patient (or a delegate), fetched by any active doctor with
//! a logged read. The ledger never sees the code; only the code opens the sealed profile.

use medledger_core::{
    block::{Created, Refusal},
    ids::AccountId,
    tx::{
        Role,
        consent::{Basis, Decision},
        emergency::{EmergencyProfile, MAX_ESCROW},
    },
};

use crate::{
    LedgerError,
    handler::{HandlerResult, refuse_on},
    state::{Account, StateTxn},
};

fn owner_tag(patient: &AccountId) -> String {
    format!("emergency profile of {patient}")
}

pub(crate) fn set(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    patient: &AccountId,
    p: &EmergencyProfile,
) -> HandlerResult {
    refuse_on!(crate::consent::require_patient_or_delegate(
        state,
        signer,
        patient,
        medledger_core::tx::DelegatePowers::EMERGENCY
    )?);
    refuse_on!(check(state, p)?);
    // Replace: the old profile's blobs are no longer referenced.
    let tag = owner_tag(patient);
    if let Some(old) = state.emergency_profile(patient)? {
        state.remove_blob_ref(&old.profile, &tag)?;
        for piece in &old.escrow {
            state.remove_blob_ref(&piece.blob, &tag)?;
        }
    }
    state.add_blob_ref(&p.profile, &tag)?;
    for piece in &p.escrow {
        state.add_blob_ref(&piece.blob, &tag)?;
    }
    state.put_emergency_profile(patient, p)?;
    crate::audit::record_event(
        state,
        signer,
        patient,
        &[],
        crate::audit::AuditKind::EmergencyProfileSet { open_records: p.open_records },
    )?;
    Ok(Ok(None))
}

fn check(
    state: &StateTxn<'_, '_>,
    p: &EmergencyProfile,
) -> Result<Result<(), Refusal>, LedgerError> {
    let bad = |reason: String| Ok(Err(Refusal::Invalid { reason }));
    let n = p.escrow.len();
    if n > MAX_ESCROW {
        return bad(format!("an emergency key is escrowed with at most {MAX_ESCROW} custodians"));
    }
    if n > 0 && (p.threshold == 0 || usize::from(p.threshold) > n) {
        return bad(format!("the escrow threshold must be 1 to {n}"));
    }
    if n == 0 && p.threshold != 0 {
        return bad("a threshold without custodians".into());
    }
    let mut seen = Vec::with_capacity(n);
    for piece in &p.escrow {
        match state.account(&piece.recipient)? {
            Some(a) if a.role == Role::Hospital && !a.suspended && a.key.is_some() => {}
            _ => return bad(format!("custodian {} is not an active hospital", piece.recipient)),
        }
        if seen.contains(&piece.recipient) || piece.blob == p.profile {
            return bad("each custodian once, each piece a blob of its own".into());
        }
        seen.push(piece.recipient);
    }
    Ok(Ok(()))
}

pub(crate) fn read(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    patient: &AccountId,
) -> HandlerResult {
    if signer_account.role != Role::Doctor {
        return Ok(Err(Refusal::Unauthorised {
            reason: "only a doctor may read an emergency profile".into(),
        }));
    }
    if state.emergency_profile(patient)?.is_none() {
        return Ok(Err(Refusal::NotFound { what: format!("emergency profile of {patient}") }));
    }
    let others = super::notified(state, patient, signer)?;
    let event = crate::audit::record_event(
        state,
        signer,
        patient,
        &others,
        crate::audit::AuditKind::EmergencyProfileRead,
    )?;
    Ok(Ok(Some(Created::Access { decision: Decision::Allow(Basis::EmergencyProfile), event })))
}
