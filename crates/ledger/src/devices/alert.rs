//! An alert for an abnormal reading, signed by the session's device and raised at once. Its
//! audit event notifies the patient, the responsible doctors and their hospitals, and the
//! hospital that registered the device.

use medledger_core::{
    block::{Created, Refusal},
    ids::AccountId,
    tx::{Role, devices::Alert},
};

use crate::{
    audit::AuditKind,
    handler::{HandlerResult, refuse_on},
    state::{AlertEntry, StateTxn},
};

pub(crate) fn apply(state: &mut StateTxn<'_, '_>, signer: &AccountId, a: &Alert) -> HandlerResult {
    let (mut s, d) = refuse_on!(super::readings::open_session_of(state, signer, &a.session)?);
    let bad = |reason: String| Ok(Err(Refusal::Invalid { reason }));
    if a.seq == 0 {
        return bad("sequence numbers start at 1".into());
    }
    if a.seq <= s.batch_high || state.alert(&a.session, a.seq)?.is_some() {
        return Ok(Err(Refusal::ReplayedReading {
            session: a.session,
            last: s.batch_high,
            got: a.seq,
        }));
    }
    if !d.kind.measures(a.metric) {
        return bad(format!("a {:?} does not measure {}", d.kind, a.metric.name()));
    }
    let mut others = vec![*signer];
    others.extend(s.doctor);
    if let Some(t) = &a.thresholds {
        let Some(entry) = state.thresholds(t)? else {
            return Ok(Err(Refusal::NotFound { what: format!("thresholds {t}") }));
        };
        if entry.device != *signer {
            return bad(format!("thresholds {t} are another device's"));
        }
        if !entry.metrics.contains(&a.metric) {
            return bad(format!("thresholds {t} do not cover {}", a.metric.name()));
        }
        others.push(entry.doctor);
    }
    if state.account(&d.registered_by)?.is_some_and(|r| r.role == Role::Hospital) {
        others.push(d.registered_by);
    }
    let event = crate::audit::record_event(
        state,
        signer,
        &s.patient,
        &others,
        AuditKind::DeviceAlert {
            device: *signer,
            session: a.session,
            seq: a.seq,
            metric: a.metric,
            severity: a.severity,
        },
    )?;
    state.put_alert(
        &a.session,
        &AlertEntry {
            seq: a.seq,
            metric: a.metric,
            severity: a.severity,
            reading: a.reading,
            thresholds: a.thresholds,
            tx: state.tx_hash,
            height: state.height,
            time_ms: state.time_ms,
            event,
        },
    )?;
    s.alert_high = s.alert_high.max(a.seq);
    s.alerts += 1;
    state.put_device_session(&a.session, &s)?;
    Ok(Ok(Some(Created::DeviceAlert { event })))
}
