//! The terminology an export uses: code systems of HL7 v3, DICOM and LOINC, and medledger's own
//! identifier systems.

use medledger_core::tx::{
    consent::{Purpose, RecordCategory},
    devices::Metric,
};
use serde_json::{Value, json};

/// Identifier and code systems of medledger's own ids (URNs: they name, they do not resolve).
pub mod systems {
    /// A ledger account id (hex of its initial key's hash).
    pub const ACCOUNT: &str = "urn:medledger:account";
    /// A Patient-ID.
    pub const PATIENT_ID: &str = "urn:medledger:patient-id";
    /// A record's PMR-ID.
    pub const PMR: &str = "urn:medledger:pmr";
    /// A ledger transaction hash (hex SHA-256): verified with `medledger proof`.
    pub const TX: &str = "urn:medledger:tx";
    /// SHA-256 (hex) of a record's ciphertext as the ledger commits to it. FHIR's
    /// `Attachment.hash` is SHA-1 of the attachment's data, which the ledger does not hold.
    pub const CONTENT_SHA256: &str = "urn:medledger:content-sha256";
    /// A grant's id.
    pub const GRANT: &str = "urn:medledger:grant";
    /// A deny rule's id.
    pub const DENY_RULE: &str = "urn:medledger:deny-rule";
    /// A case id.
    pub const CASE: &str = "urn:medledger:case";
    /// An audit event's number in the patient's trail.
    pub const AUDIT_EVENT: &str = "urn:medledger:audit-event";
    /// A break-glass id.
    pub const BREAK_GLASS: &str = "urn:medledger:break-glass";
    /// A network's chain id.
    pub const CHAIN: &str = "urn:medledger:chain";
    /// One export (patient account / time).
    pub const EXPORT: &str = "urn:medledger:export";
    /// A hospital's government registration id.
    pub const HOSPITAL_REGISTRATION: &str = "urn:medledger:hospital-registration";
    /// A doctor's registration number.
    pub const DOCTOR_REGISTRATION: &str = "urn:medledger:doctor-registration";
    /// medledger's record categories (code = the category's wire name, `lab_report`).
    pub const RECORD_CATEGORY: &str = "urn:medledger:record-category";
    /// medledger's account roles (`insurer`, `doctor`, ...), for deny rules by role.
    pub const ROLE: &str = "urn:medledger:role";
    /// A device session.
    pub const DEVICE_SESSION: &str = "urn:medledger:device-session";
}

pub(crate) const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
pub(crate) const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
pub(crate) const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub(crate) const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
pub(crate) const LOINC: &str = "http://loinc.org";

/// A Coding.
pub(crate) fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

/// The v3-ActReason purpose of use for a ledger purpose: treatment TREAT, emergency ETREAT,
/// research HRESCH, insurance HPAYMT; `None` for "other", which has no code.
pub fn purpose_coding(p: Purpose) -> Option<Value> {
    let (code, display) = match p {
        Purpose::Treatment => ("TREAT", "treatment"),
        Purpose::Emergency => ("ETREAT", "Emergency Treatment"),
        Purpose::Research => ("HRESCH", "healthcare research"),
        Purpose::Insurance => ("HPAYMT", "healthcare payment"),
        Purpose::Other => return None,
    };
    Some(coding(ACT_REASON, code, display))
}

/// The purpose as a CodeableConcept (the code where there is one, the word always).
pub(crate) fn purpose_concept(p: Purpose) -> Value {
    let word = serde_json::to_value(p).ok().and_then(|v| v.as_str().map(str::to_owned));
    match purpose_coding(p) {
        Some(c) => json!({ "coding": [c], "text": word }),
        None => json!({ "text": word }),
    }
}

/// Break-the-glass, v3-ActReason BTG.
pub(crate) fn btg() -> Value {
    json!({ "coding": [coding(ACT_REASON, "BTG", "break the glass")] })
}

/// A record category in medledger's own system.
pub fn category_coding(c: RecordCategory) -> Value {
    let display = c.name().replace('_', " ");
    coding(systems::RECORD_CATEGORY, c.name(), &display)
}

/// The LOINC document type of a category, where one fits exactly.
pub(crate) fn category_loinc(c: RecordCategory) -> Option<Value> {
    let (code, display) = match c {
        RecordCategory::PresentIllness => ("10164-2", "History of Present illness Narrative"),
        RecordCategory::PastIllness => ("11348-0", "History of Past illness Narrative"),
        RecordCategory::TreatmentSummary => ("34133-9", "Summary of episode note"),
        RecordCategory::LabReport => ("11502-2", "Laboratory report"),
        RecordCategory::Imaging => ("18748-4", "Diagnostic imaging study"),
        _ => return None,
    };
    Some(coding(LOINC, code, display))
}

/// The LOINC code of a vital sign (the vital-signs profile's codes).
pub(crate) fn metric_coding(m: Metric) -> Value {
    let (code, display) = match m {
        Metric::HeartRate => ("8867-4", "Heart rate"),
        Metric::Spo2 => ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
        Metric::SystolicPressure => ("8480-6", "Systolic blood pressure"),
        Metric::DiastolicPressure => ("8462-4", "Diastolic blood pressure"),
        Metric::Glucose => ("15074-8", "Glucose [Moles/volume] in Blood"),
        Metric::Temperature => ("8310-5", "Body temperature"),
    };
    coding(LOINC, code, display)
}

/// UCUM, the units of a Quantity.
pub(crate) const UCUM: &str = "http://unitsofmeasure.org";

/// A value of `m` as a Quantity: the ledger's unit as the human-readable `unit`, the UCUM code
/// (the vital-signs profile's units: `/min`, `%`, `mm[Hg]`, `Cel`; mmol/L for blood glucose).
pub(crate) fn metric_quantity(m: Metric, value: serde_json::Number) -> Value {
    let code = match m {
        Metric::HeartRate => "/min",
        Metric::Spo2 => "%",
        Metric::SystolicPressure | Metric::DiastolicPressure => "mm[Hg]",
        Metric::Glucose => "mmol/L",
        Metric::Temperature => "Cel",
    };
    json!({ "value": value, "unit": m.unit(), "system": UCUM, "code": code })
}
