//! A doctor sets a device's thresholds: allowed only with the patient's consent (a treatment
//! grant covering device data, in force at the block).

use medledger_core::{
    block::{Created, Refusal},
    ids::AccountId,
    tx::{
        Role,
        consent::{Action, Basis, Decision, Purpose, RecordCategory, Resource},
        devices::SetThresholds,
    },
};

use crate::{
    LedgerError,
    audit::AuditKind,
    handler::{HandlerResult, refuse_on},
    state::{Account, StateTxn, ThresholdsEntry},
};

pub(crate) fn set(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    t: &SetThresholds,
) -> HandlerResult {
    if signer_account.role != Role::Doctor {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "only a doctor may set a device's thresholds; the signer is a {:?}",
                signer_account.role
            ),
        }));
    }
    let mut d = refuse_on!(super::existing(state, &t.device)?);
    refuse_on!(super::require_active(&t.device, &d));
    refuse_on!(consented(state, signer, &d.patient)?);
    if t.metrics.is_empty() {
        return Ok(Err(Refusal::Invalid { reason: "thresholds cover at least one metric".into() }));
    }
    let mut metrics = t.metrics.clone();
    metrics.sort();
    metrics.dedup();
    if metrics.len() != t.metrics.len() {
        return Ok(Err(Refusal::Invalid { reason: "a metric appears twice".into() }));
    }
    if let Some(m) = t.metrics.iter().find(|m| !d.kind.measures(**m)) {
        return Ok(Err(Refusal::Invalid {
            reason: format!("a {:?} does not measure {}", d.kind, m.name()),
        }));
    }
    let id = state.tx_hash;
    state.put_thresholds(
        &id,
        &ThresholdsEntry {
            device: t.device,
            doctor: *signer,
            metrics: t.metrics.clone(),
            sealed: t.sealed,
            set_at: state.height,
            set_time_ms: state.time_ms,
        },
    )?;
    d.thresholds = Some(id);
    state.put_device(&t.device, &d)?;
    crate::audit::record_event(
        state,
        signer,
        &d.patient,
        &[*signer, t.device],
        AuditKind::DeviceThresholdsSet {
            device: t.device,
            thresholds: id,
            metrics: t.metrics.clone(),
        },
    )?;
    Ok(Ok(Some(Created::Thresholds { id })))
}

/// A treatment grant from the patient covering device data, in force at this block.
fn consented(
    state: &StateTxn<'_, '_>,
    doctor: &AccountId,
    patient: &AccountId,
) -> Result<Result<(), Refusal>, LedgerError> {
    let resource = Resource {
        patient: *patient,
        category: Some(RecordCategory::DeviceData),
        record: None,
        case: None,
    };
    let decision = crate::consent::authorize(
        state,
        doctor,
        Action::Read,
        &resource,
        Purpose::Treatment,
        state.height,
        state.time_ms,
    )?;
    match decision {
        Decision::Allow(Basis::Grant { .. }) => Ok(Ok(())),
        other => Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "doctor {doctor} has no consent from patient {patient} for their device data (a treatment grant covering device data must be in force): {other:?}"
            ),
        })),
    }
}
