//! The start of a measurement session (the patient or a delegate registers the public half of
//! the session's temporary key) and its end.

use medledger_core::{
    Hash,
    block::{Created, Refusal},
    ids::AccountId,
    tx::{
        Role,
        devices::{MAX_SESSION_KEYS, StartSession},
    },
};

use crate::{
    LedgerError,
    audit::AuditKind,
    handler::{HandlerResult, refuse_on},
    state::{SessionEntry, StateTxn},
};

pub(crate) fn start(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    s: &StartSession,
) -> HandlerResult {
    let mut d = refuse_on!(super::existing(state, &s.device)?);
    if !super::is_patient_or_delegate(state, signer, &d)? {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "only patient {} or a delegate they named may start a session on their device",
                d.patient
            ),
        }));
    }
    refuse_on!(super::require_active(&s.device, &d));
    if let Some(open) = d.session
        && let Some(entry) = state.device_session(&open)?
        && entry.closed_reason(state.time_ms).is_none()
    {
        return Ok(Err(Refusal::Invalid {
            reason: format!("device {} already has an open session {open}: end it first", s.device),
        }));
    }
    refuse_on!(check_fields(state, &d.patient, s)?);
    let id = state.tx_hash;
    state.put_device_session(
        &id,
        &SessionEntry {
            device: s.device,
            patient: d.patient,
            public_key: s.public_key,
            started_by: *signer,
            started_at: state.height,
            started_time_ms: state.time_ms,
            expires_at_ms: s.expires_at_ms,
            doctor: s.doctor,
            ended_at: None,
            batch_high: 0,
            alert_high: 0,
            readings: 0,
            batches: 0,
            alerts: 0,
        },
    )?;
    for k in &s.keys {
        state.put_session_key(&id, &k.recipient, &k.blob)?;
    }
    d.session = Some(id);
    state.put_device(&s.device, &d)?;
    let mut others = vec![*signer, s.device];
    others.extend(s.doctor);
    crate::audit::record_event(
        state,
        signer,
        &d.patient,
        &others,
        AuditKind::DeviceSessionStarted { device: s.device, session: id, doctor: s.doctor },
    )?;
    Ok(Ok(Some(Created::DeviceSession { id })))
}

/// The key is usable, the expiry is ahead, the doctor is an active doctor, and the secret is
/// wrapped to the patient and the doctor (if named), each once, and to no one else.
fn check_fields(
    state: &StateTxn<'_, '_>,
    patient: &AccountId,
    s: &StartSession,
) -> Result<Result<(), Refusal>, LedgerError> {
    let bad = |reason: String| Ok(Err(Refusal::Invalid { reason }));
    if s.public_key.0 == [0; 32] {
        return bad("the session key is the all-zero (unusable) X25519 key".into());
    }
    if let Some(e) = s.expires_at_ms
        && e <= state.time_ms
    {
        return bad(format!(
            "the session would expire at {e} ms, before this block ({} ms)",
            state.time_ms
        ));
    }
    if let Some(doctor) = &s.doctor {
        match state.account(doctor)? {
            Some(a) if a.role == Role::Doctor && a.key.is_some() && !a.suspended => {}
            _ => return bad(format!("{doctor} is not an active doctor")),
        }
    }
    let mut expected: Vec<AccountId> = std::iter::once(*patient).chain(s.doctor).collect();
    expected.sort();
    expected.dedup();
    let mut recipients: Vec<AccountId> = s.keys.iter().map(|k| k.recipient).collect();
    recipients.sort();
    if s.keys.len() > MAX_SESSION_KEYS || recipients != expected {
        return bad(
            "the session's secret key must be wrapped to the patient, and to the doctor if one is named, once each and to no one else".into(),
        );
    }
    Ok(Ok(()))
}

pub(crate) fn end(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    session: &Hash,
) -> HandlerResult {
    let Some(mut s) = state.device_session(session)? else {
        return Ok(Err(Refusal::NotFound { what: format!("device session {session}") }));
    };
    let Some(mut d) = state.device(&s.device)? else {
        return Err(LedgerError::Corrupt(format!("session {session} names no device")));
    };
    if *signer != s.device && !super::is_patient_or_delegate(state, signer, &d)? {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!("only the patient, a delegate or the device may end session {session}"),
        }));
    }
    if let Some(h) = s.ended_at {
        return Ok(Err(Refusal::SessionNotOpen {
            session: *session,
            reason: format!("it ended already, at block {h}"),
        }));
    }
    s.ended_at = Some(state.height);
    state.put_device_session(session, &s)?;
    if d.session == Some(*session) {
        d.session = None;
        state.put_device(&s.device, &d)?;
    }
    let mut others = vec![*signer, s.device];
    others.extend(s.doctor);
    crate::audit::record_event(
        state,
        signer,
        &s.patient,
        &others,
        AuditKind::DeviceSessionEnded { device: s.device, session: *session },
    )?;
    Ok(Ok(None))
}
