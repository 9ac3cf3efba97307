//! Device data as vital-signs Observations: one per reading the wallet read and decrypted
//! from a session ([`reading_observation`]), and one per alert of the trail whose reading it
//! could not read ([`alert_observation`], the value absent). Both are keyed by the session and
//! the reading's number, so a reading that raised an alert and was read is one Observation with
//! its value and the alert's interpretation, under the id the alert alone would have had.

use fhir::r4::resources::Resource;
use medledger_core::{
    Hash,
    audit::{AuditEvent, AuditKind},
    ids::AccountId,
    tx::devices::{Metric, Severity},
};
use serde_json::{Value, json};

use crate::{
    Directory, Error,
    codes::{coding, metric_coding, metric_quantity, systems},
    identifier, instant, parse, uuid,
};

/// One reading of a device session, decrypted by the wallet (`device readings`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceReading {
    /// The patient the session serves (the export refuses another patient's).
    pub patient: AccountId,
    /// The device that took it.
    pub device: AccountId,
    /// The session.
    pub session: Hash,
    /// Its number in the session.
    pub seq: u64,
    /// When the device took it, ms since the Unix epoch.
    pub time_ms: u64,
    /// Which vital sign.
    pub metric: Metric,
    /// The value, in the metric's unit, exactly as the device sealed it.
    pub value: f64,
    /// The alert it raised, if it was abnormal.
    pub alert: Option<Severity>,
}

/// The key of the Observation of reading `seq` of `session` (its id and business identifier).
fn key(session: &Hash, seq: u64) -> String {
    format!("{session}/{seq}")
}

/// What every device Observation has: id, identifier, `final`, category vital-signs, the
/// metric's LOINC code, the patient, the device, and the alert's interpretation (v3
/// ObservationInterpretation AA critical, A abnormal) if there was one.
fn base(
    session: &Hash,
    seq: u64,
    metric: Metric,
    device: &AccountId,
    alert: Option<Severity>,
    dir: &Directory<'_>,
) -> Value {
    let mut o = json!({
        "resourceType": "Observation",
        "id": uuid("Observation", &key(session, seq)),
        "identifier": [identifier(systems::DEVICE_SESSION, key(session, seq))],
        "status": "final",
        "category": [{ "coding": [coding(
            "http://terminology.hl7.org/CodeSystem/observation-category",
            "vital-signs",
            "Vital Signs",
        )] }],
        "code": { "coding": [metric_coding(metric)] },
        "subject": dir.patient_ref(),
        "device": dir.reference(device),
    });
    if let Some(severity) = alert {
        let (code, display) = match severity {
            Severity::Critical => ("AA", "Critical abnormal"),
            Severity::Warning => ("A", "Abnormal"),
        };
        o["interpretation"] = json!([{ "coding": [coding(
            "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
            code,
            display,
        )] }]);
    }
    o
}

/// The data-absent-reason coding `code`.
fn absent(code: &str, display: &str, text: String) -> Value {
    json!({
        "coding": [coding("http://terminology.hl7.org/CodeSystem/data-absent-reason", code, display)],
        "text": text,
    })
}

/// A reading as a vital-signs Observation: the value as a UCUM Quantity, written as the
/// shortest decimal that is exactly the device's `f64` (36.6 stays `36.6`: the crate's
/// serde_json keeps a number's lexeme), the time the device took it, and the alert's
/// interpretation if it raised one. A value that is no number (NaN, ±infinity: the device
/// sealed it, nothing checked it) is absent with data-absent-reason saying which.
pub fn reading_observation(
    r: &DeviceReading,
    dir: &Directory<'_>,
) -> Result<(String, Resource), Error> {
    let mut o = base(&r.session, r.seq, r.metric, &r.device, r.alert, dir);
    if let Some(t) = instant(r.time_ms) {
        o["effectiveDateTime"] = json!(t);
    }
    match serde_json::Number::from_f64(r.value) {
        Some(value) => o["valueQuantity"] = metric_quantity(r.metric, value),
        None => {
            let (code, display) = if r.value.is_nan() {
                ("not-a-number", "Not a Number (NaN)")
            } else if r.value > 0.0 {
                ("positive-infinity", "Positive Infinity (PINF)")
            } else {
                ("negative-infinity", "Negative Infinity (NINF)")
            };
            o["dataAbsentReason"] =
                absent(code, display, format!("the device sealed {} as the value", r.value));
        }
    }
    let id = uuid("Observation", &key(&r.session, r.seq));
    Ok((format!("urn:uuid:{id}"), parse(o)?))
}

/// A device alert of the trail whose reading was not read, as a vital-signs Observation: the
/// metric's LOINC code, the device, the alert's time; interpretation AA (critical) or A
/// (abnormal). The alert carries no value (the reading is in the session's sealed batch, which
/// this export could not open), so the value is absent with reason `unknown` and says where it
/// is. `None` for any other event.
pub fn alert_observation(
    e: &AuditEvent,
    dir: &Directory<'_>,
) -> Result<Option<(String, Resource)>, Error> {
    let AuditKind::DeviceAlert { device, session, seq, metric, severity } = &e.kind else {
        return Ok(None);
    };
    let mut o = base(session, *seq, *metric, device, Some(*severity), dir);
    o["effectiveDateTime"] = json!(instant(e.time_ms));
    o["issued"] = json!(instant(e.time_ms));
    o["dataAbsentReason"] = absent(
        "unknown",
        "Unknown",
        format!("an alert: the reading is number {seq} of session {session}, sealed"),
    );
    let id = uuid("Observation", &key(session, *seq));
    Ok(Some((format!("urn:uuid:{id}"), parse(o)?)))
}
