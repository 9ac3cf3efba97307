//! Registration of a device for a patient (by the patient, a delegate, or a hospital that may),
//! and its retirement.

use medledger_core::{
    block::{Created, Refusal},
    ids::AccountId,
    tx::{
        Role,
        consent::{Action, Basis, Decision, Purpose, RecordCategory, Resource},
        devices::RegisterDevice,
    },
};

use crate::{
    LedgerError,
    audit::AuditKind,
    handler::{HandlerResult, refuse_on, require_new_account},
    state::{Account, DeviceEntry, StateTxn},
};

pub(crate) fn register(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    r: &RegisterDevice,
) -> HandlerResult {
    let patient = match state.account(&r.patient)? {
        Some(p) if p.role == Role::Patient => p,
        _ => return Ok(Err(Refusal::NotFound { what: format!("patient {}", r.patient) })),
    };
    refuse_on!(may_register(state, signer, signer_account, &r.patient, &patient)?);
    let id = AccountId::from_initial_key(&r.key);
    refuse_on!(require_new_account(state, &id)?);
    let by_hospital = signer_account.role == Role::Hospital;
    state.put_account(
        &id,
        &Account {
            role: Role::Device,
            key: Some(r.key),
            encryption_key: r.encryption_key,
            nonce: 0,
            // The patient owns the device and may revoke its key.
            authority: Some(r.patient),
            hospital: by_hospital.then_some(*signer),
            suspended: false,
            patient_id: None,
            created_at: state.height,
        },
    )?;
    state.put_device(
        &id,
        &DeviceEntry {
            patient: r.patient,
            kind: r.kind,
            details: r.details,
            registered_by: *signer,
            registered_at: state.height,
            retired_at: None,
            thresholds: None,
            session: None,
        },
    )?;
    crate::audit::record_event(
        state,
        signer,
        &r.patient,
        &[*signer, id],
        AuditKind::DeviceRegistered { device: id, kind: r.kind },
    )?;
    Ok(Ok(Some(Created::Account { account: id })))
}

/// The patient, a delegate, or a hospital that registered the patient or holds a treatment
/// grant covering device data.
fn may_register(
    state: &StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    patient_id: &AccountId,
    patient: &Account,
) -> Result<Result<(), Refusal>, LedgerError> {
    if signer == patient_id || state.is_delegate(patient_id, signer)? {
        return Ok(Ok(()));
    }
    if signer_account.role != Role::Hospital {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "only the patient, a delegate they named, or a hospital may register a device for patient {patient_id}; the signer is a {:?}",
                signer_account.role
            ),
        }));
    }
    if patient.hospital == Some(*signer) {
        return Ok(Ok(()));
    }
    let resource = Resource {
        patient: *patient_id,
        category: Some(RecordCategory::DeviceData),
        record: None,
        case: None,
    };
    let decision = crate::consent::authorize(
        state,
        signer,
        Action::Read,
        &resource,
        Purpose::Treatment,
        state.height,
        state.time_ms,
    )?;
    if matches!(decision, Decision::Allow(Basis::Grant { .. })) {
        return Ok(Ok(()));
    }
    Ok(Err(Refusal::Unauthorised {
        reason: format!(
            "hospital {signer} may not register a device for patient {patient_id}: the patient was not registered there and no treatment grant covering device data is in force"
        ),
    }))
}

pub(crate) fn retire(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    device: &AccountId,
) -> HandlerResult {
    let mut d = refuse_on!(super::existing(state, device)?);
    if !super::is_patient_or_delegate(state, signer, &d)? && *signer != d.registered_by {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "only the patient, a delegate or the registering party may retire device {device}"
            ),
        }));
    }
    refuse_on!(super::require_active(device, &d));
    if let Some(id) = d.session.take()
        && let Some(mut s) = state.device_session(&id)?
        && s.ended_at.is_none()
    {
        s.ended_at = Some(state.height);
        state.put_device_session(&id, &s)?;
    }
    d.retired_at = Some(state.height);
    state.put_device(device, &d)?;
    let patient = d.patient;
    crate::audit::record_event(
        state,
        signer,
        &patient,
        &[*signer, d.registered_by],
        AuditKind::DeviceRetired { device: *device },
    )?;
    Ok(Ok(None))
}
