//! FHIR R4 (4.0.1) mappings of a patient's ledger data, on the `fhir` crate's R4 model.
//!
//! Everything here is a pure function from what the wallet read from the node (the API's
//! views, the audit trail, sealed details it opened, record contents it decrypted) to R4
//! resources: no network, no keys. [`export`] assembles the patient's whole export as a
//! `collection` Bundle; the other public functions map one thing each, so that each rule is
//! tested by itself.
//!
//! Every resource is built as FHIR JSON and parsed through the model
//! ([`fhir::r4::resources::Resource`]), then checked with its structural validation
//! ([`fhir::r4::validate::Validate`]): [`export`] fails rather than write a resource the model
//! refuses.
//!
//! [`grantee_export`] is a grantee's share of one patient's record: only what its grants in
//! force cover. [`read_bundle`] is the other direction, the import: a Bundle checked whole
//! (the model, unknown elements, codes, content) into the records to mint.
//!
//! Identifiers: resources get a stable `urn:uuid:` derived from what they describe (the same
//! record exports to the same DocumentReference id every time); the ledger's own ids (accounts,
//! PMR-IDs, transaction hashes, grant ids) are kept as business identifiers under
//! `urn:medledger:*` systems ([`systems`]).

#![warn(missing_docs)]

mod audit;
mod codes;
mod consent;
mod devices;
mod grantee;
mod import;
mod records;
pub mod research;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fhir::r4::resources::{Bundle, Resource};
use fhir::r4::validate::Validate;
use medledger_api::{CaseView, DoctorView, HospitalView, PatientView, RecordView, WhoCanSeeView};
use medledger_core::{Hash, audit::AuditEvent, ids::AccountId};
use serde_json::{Value, json};

pub use audit::audit_event;
pub use codes::{category_coding, purpose_coding, systems};
pub use consent::{GrantHistory, deny_consent, grant_consent, grants_of_trail};
pub use devices::{DeviceReading, alert_observation, reading_observation};
pub use grantee::{GranteeInput, covering_device_grant, covering_grant, grantee_export};
pub use import::{IMPORTED_TYPES, ImportRecord, MAX_BUNDLE_BYTES, Problem, is_loinc, read_bundle};
pub use records::{
    RecordContent, binary, document_reference, encounter, episode_of_care, provenance,
};

/// The FHIR release every resource here is.
pub const FHIR_VERSION: &str = "4.0.1";

/// Why a mapping failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model refused a resource this crate built (a bug here, never the user's input).
    #[error("the {resource} resource does not parse as FHIR R4: {reason}")]
    Parse {
        /// Its resource type.
        resource: String,
        /// The model's reason.
        reason: String,
    },
    /// The node answered with something of another patient (a record, case, audit event or
    /// consent view): the export refuses rather than file it under this patient.
    #[error("the node served {what} of another patient ({patient}): nothing was exported")]
    Foreign {
        /// What it was.
        what: String,
        /// Whose it is.
        patient: AccountId,
    },
    /// The model's validation found problems in a resource this crate built.
    #[error("the {resource} resource fails FHIR R4 validation: {issues}")]
    Invalid {
        /// Its resource type.
        resource: String,
        /// Each issue, `path: message`.
        issues: String,
    },
}

/// Parses FHIR JSON through the R4 model and validates it.
pub(crate) fn parse(value: Value) -> Result<Resource, Error> {
    let kind = value.get("resourceType").and_then(Value::as_str).unwrap_or("?").to_owned();
    let resource: Resource = serde_json::from_value(value)
        .map_err(|e| Error::Parse { resource: kind.clone(), reason: e.to_string() })?;
    valid(kind, &resource)?;
    Ok(resource)
}

/// Refuses what the model's validation finds wrong in `value` (of resource type `kind`).
fn valid(kind: String, value: &impl Validate) -> Result<(), Error> {
    let issues = value.validate();
    if issues.is_empty() {
        return Ok(());
    }
    let issues = issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>();
    Err(Error::Invalid { resource: kind, issues: issues.join("; ") })
}

/// The resources of one record, in the order a bundle lists them: its content as a Binary
/// (when read), its DocumentReference (pointing at that Binary) and its Provenance.
pub(crate) fn push_record(
    r: &RecordView,
    content: Option<&RecordContent>,
    dir: &Directory<'_>,
    rest: &mut Vec<(String, Resource)>,
) -> Result<(), Error> {
    let binary_url = match content {
        Some(c) => {
            let b = binary(r, c)?;
            let url = b.0.clone();
            rest.push(b);
            Some(url)
        }
        None => None,
    };
    rest.push(document_reference(r, content, binary_url.as_deref(), dir)?);
    rest.push(provenance(r, dir)?);
    Ok(())
}

/// A stable `urn:uuid:` id for the resource of type `kind` that describes `key` (a UUID-shaped
/// prefix of SHA-256, version nibble 8: name-based, custom).
pub fn uuid(kind: &str, key: &str) -> String {
    let h = Hash::of(format!("medledger-fhir/{kind}/{key}").as_bytes()).0;
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = |r: std::ops::Range<usize>| data_encoding::HEXLOWER.encode(&b[r]);
    format!("{}-{}-{}-{}-{}", x(0..4), x(4..6), x(6..8), x(8..10), x(10..16))
}

/// `ms` since the Unix epoch as a FHIR instant (UTC, milliseconds); `None` out of range.
pub fn instant(ms: u64) -> Option<String> {
    let ms = i64::try_from(ms).ok()?;
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)?;
    // FHIR's years are four digits.
    (t.format("%Y").to_string().len() == 4)
        .then(|| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A business identifier.
pub(crate) fn identifier(system: &str, value: impl std::fmt::Display) -> Value {
    json!({ "system": system, "value": value.to_string() })
}

/// Who the accounts in an export are, and which of them the export references (they become
/// Practitioner, Organization or stay bare identifiers).
#[derive(Debug)]
pub struct Directory<'a> {
    patient: &'a PatientView,
    patient_name: Option<String>,
    hospitals: HashMap<AccountId, &'a HospitalView>,
    doctors: HashMap<AccountId, &'a DoctorView>,
    used: std::cell::RefCell<BTreeSet<AccountId>>,
    present: BTreeSet<(&'static str, String)>,
}

impl<'a> Directory<'a> {
    /// The directory of `patient`'s export: the network's hospitals and doctors.
    pub fn new(
        patient: &'a PatientView,
        patient_name: Option<String>,
        hospitals: &'a [HospitalView],
        doctors: &'a [DoctorView],
    ) -> Self {
        Self {
            patient,
            patient_name,
            hospitals: hospitals.iter().map(|h| (h.account, h)).collect(),
            doctors: doctors.iter().map(|d| (d.account, d)).collect(),
            used: Default::default(),
            present: BTreeSet::new(),
        }
    }

    /// Says that the bundle holds the resource of type `kind` for `key` (a record's PMR-ID,
    /// `grant/ID`, `deny/ID`, a case id): references to it then point into the bundle.
    pub fn add_present(&mut self, kind: &'static str, key: &str) {
        self.present.insert((kind, key.to_owned()));
    }

    /// The `urn:uuid:` of the resource of type `kind` for `key`, if the bundle holds it.
    pub fn local(&self, kind: &'static str, key: &str) -> Option<String> {
        self.present
            .contains(&(kind, key.to_owned()))
            .then(|| format!("urn:uuid:{}", uuid(kind, key)))
    }

    /// The `urn:uuid:` of the Patient resource.
    pub fn patient_url(&self) -> String {
        format!("urn:uuid:{}", uuid("Patient", &self.patient.account.to_string()))
    }

    /// A Reference to the patient.
    pub fn patient_ref(&self) -> Value {
        let mut r = json!({ "reference": self.patient_url() });
        if let Some(name) = &self.patient_name {
            r["display"] = json!(name);
        }
        r
    }

    /// What kind of resource `account` is in this export: `Patient`, `Practitioner`,
    /// `Organization`, or `None` for an account the directory does not know (a device, a
    /// custodian's key, the regulator).
    pub fn kind_of(&self, account: &AccountId) -> Option<&'static str> {
        if *account == self.patient.account {
            Some("Patient")
        } else if self.doctors.contains_key(account) {
            Some("Practitioner")
        } else if self.hospitals.contains_key(account) {
            Some("Organization")
        } else {
            None
        }
    }

    /// A Reference to `account`: the Patient, a Practitioner or an Organization of the bundle
    /// (which the bundle will then contain), or a logical reference by account id.
    pub fn reference(&self, account: &AccountId) -> Value {
        let logical = identifier(systems::ACCOUNT, account);
        match self.kind_of(account) {
            Some("Patient") => self.patient_ref(),
            Some(kind) => {
                self.used.borrow_mut().insert(*account);
                let display = match kind {
                    "Practitioner" => self.doctors[account].name.clone(),
                    _ => self.hospitals[account].name.clone(),
                };
                json!({
                    "reference": format!("urn:uuid:{}", uuid(kind, &account.to_string())),
                    "display": display,
                })
            }
            None => json!({ "identifier": logical }),
        }
    }

    /// The Practitioner and Organization resources for every account referenced so far.
    pub fn resources(&self) -> Result<Vec<(String, Resource)>, Error> {
        let used = self.used.borrow().clone();
        let mut out = Vec::new();
        for account in &used {
            if let Some(d) = self.doctors.get(account) {
                out.push(practitioner(d)?);
            } else if let Some(h) = self.hospitals.get(account) {
                out.push(organization(h)?);
            }
        }
        Ok(out)
    }
}

/// A doctor as a Practitioner: the ledger account and the registration number as identifiers,
/// the name as text, the specialisation as a qualification's text.
pub fn practitioner(d: &DoctorView) -> Result<(String, Resource), Error> {
    let id = uuid("Practitioner", &d.account.to_string());
    let r = parse(json!({
        "resourceType": "Practitioner",
        "id": id,
        "identifier": [
            identifier(systems::ACCOUNT, d.account),
            identifier(systems::DOCTOR_REGISTRATION, &d.registration_number),
        ],
        "active": true,
        "name": [{ "text": d.name }],
        "qualification": [{ "code": { "text": d.specialisation } }],
    }))?;
    Ok((format!("urn:uuid:{id}"), r))
}

/// A hospital as an Organization (type `prov`, healthcare provider).
pub fn organization(h: &HospitalView) -> Result<(String, Resource), Error> {
    let id = uuid("Organization", &h.account.to_string());
    let r = parse(json!({
        "resourceType": "Organization",
        "id": id,
        "identifier": [
            identifier(systems::ACCOUNT, h.account),
            identifier(systems::HOSPITAL_REGISTRATION, &h.registration_id),
        ],
        "active": !h.suspended,
        "type": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/organization-type",
            "code": "prov",
            "display": "Healthcare Provider",
        }], "text": h.specialisation }],
        "name": h.name,
        "address": [{ "city": h.city }],
    }))?;
    Ok((format!("urn:uuid:{id}"), r))
}

/// The patient's Patient resource: the Patient-ID and account as identifiers; name, birth date
/// and phone from the sealed registration `details` (opened by the wallet), the attendant as a
/// contact; the registering hospital as managing organization.
pub fn patient(
    view: &PatientView,
    details: Option<&Value>,
    attendant: Option<&Value>,
    dir: &Directory<'_>,
) -> Result<(String, Resource), Error> {
    let field = |v: Option<&Value>, k: &str| {
        v.and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut p = json!({
        "resourceType": "Patient",
        "id": uuid("Patient", &view.account.to_string()),
        "identifier": [
            identifier(systems::PATIENT_ID, view.patient_id),
            identifier(systems::ACCOUNT, view.account),
        ],
        "active": true,
        "managingOrganization": dir.reference(&view.hospital),
    });
    if let Some(name) = field(details, "name") {
        p["name"] = json!([{ "text": name }]);
    }
    // The details were sealed by the registering hospital's client: a date of birth that is
    // not a date would make an invalid Patient (the model does not check dates), so it is
    // left out rather than written.
    if let Some(dob) = field(details, "date_of_birth").filter(|d| records::is_date(d)) {
        p["birthDate"] = json!(dob);
    }
    if let Some(phone) = field(details, "phone") {
        p["telecom"] = json!([{ "system": "phone", "value": phone }]);
    }
    let mut contact = serde_json::Map::new();
    if let Some(name) = field(attendant, "name") {
        contact.insert("name".into(), json!({ "text": name }));
    }
    if let Some(phone) = field(attendant, "phone") {
        contact.insert("telecom".into(), json!([{ "system": "phone", "value": phone }]));
    }
    if let Some(rel) = field(attendant, "relationship") {
        contact.insert("relationship".into(), json!([{ "text": rel }]));
    }
    if !contact.is_empty() {
        p["contact"] = json!([contact]);
    }
    Ok((dir.patient_url(), parse(p)?))
}

/// Everything a patient's export is made of, as the wallet read it.
#[derive(Debug)]
pub struct ExportInput<'a> {
    /// The network (AuditEvent.source.site).
    pub chain_id: &'a str,
    /// The patient's registration.
    pub patient: &'a PatientView,
    /// The sealed registration details, opened (`name`, `date_of_birth`, `phone`).
    pub details: Option<&'a Value>,
    /// The sealed attendant details, opened (`name`, `phone`, `relationship`).
    pub attendant: Option<&'a Value>,
    /// The hospital directory.
    pub hospitals: &'a [HospitalView],
    /// The doctor directory.
    pub doctors: &'a [DoctorView],
    /// The patient's records (every version, erased ones included).
    pub records: &'a [RecordView],
    /// Decrypted contents by PMR-ID (only when the export includes content).
    pub contents: &'a BTreeMap<String, RecordContent>,
    /// Grants and deny rules now, with the node's clock that judges which grants are in force.
    pub consent: &'a WhoCanSeeView,
    /// The whole audit trail.
    pub trail: &'a [AuditEvent],
    /// The patient's cases.
    pub cases: &'a [CaseView],
    /// The readings of the patient's device sessions the wallet read and decrypted (a session
    /// it could not open has none here: its alerts stay value-absent Observations).
    pub readings: &'a [DeviceReading],
    /// The export's time, ms since the Unix epoch (Bundle.timestamp).
    pub now_ms: u64,
}

/// A patient's export: the Bundle and how many resources of each type it holds.
#[derive(Debug)]
pub struct Export {
    /// The `collection` Bundle.
    pub bundle: Bundle,
    /// Resource type → count.
    pub counts: BTreeMap<String, usize>,
}

/// Maps everything in `input` to one `collection` Bundle: Patient, then the Practitioners and
/// Organizations referenced, then a DocumentReference (with a Binary when its content is in
/// `input.contents`) and a Provenance per record, a Consent per grant ever made and per deny
/// rule in force, an EpisodeOfCare and an Encounter per case, an AuditEvent per event of the
/// trail, and a vital-signs Observation per device reading read (with its value; an alert's
/// interpretation when it raised one) and per alert of the trail whose reading was not read
/// (the value absent). A reading and its alert are one Observation, keyed by session and
/// number; a reading read twice is written once.
pub fn export(input: &ExportInput<'_>) -> Result<Export, Error> {
    check_patient(input)?;
    let name = input.details.and_then(|d| d.get("name")).and_then(Value::as_str).map(str::to_owned);
    let mut dir = Directory::new(input.patient, name, input.hospitals, input.doctors);
    // In force by the node's clock (its next block's judgement), not the exporter's.
    let in_force: BTreeSet<Hash> = (input.consent.grants.iter())
        .filter(|g| g.state_at(input.consent.time_ms) == medledger_api::GrantState::Active)
        .map(|g| g.id)
        .collect();
    let grants = grants_of_trail(input.trail, &in_force);
    for r in input.records {
        dir.add_present("DocumentReference", &r.pmr);
    }
    for g in &grants {
        dir.add_present("Consent", &format!("grant/{}", g.id));
    }
    for d in &input.consent.deny_rules {
        dir.add_present("Consent", &format!("deny/{}", d.id));
    }
    for c in input.cases {
        dir.add_present("EpisodeOfCare", &c.case);
    }
    let mut rest: Vec<(String, Resource)> = Vec::new();
    for r in input.records {
        push_record(r, input.contents.get(&r.pmr), &dir, &mut rest)?;
    }
    for g in grants {
        rest.push(grant_consent(&g, input.consent.time_ms, &dir)?);
    }
    let added: HashMap<Hash, u64> = input
        .trail
        .iter()
        .filter_map(|e| match &e.kind {
            medledger_core::audit::AuditKind::DenyAdded { rule } => Some((*rule, e.time_ms)),
            _ => None,
        })
        .collect();
    for d in &input.consent.deny_rules {
        rest.push(deny_consent(d, added.get(&d.id).copied(), &dir)?);
    }
    for c in input.cases {
        let eoc = episode_of_care(c, &dir)?;
        let eoc_url = eoc.0.clone();
        rest.push(eoc);
        rest.push(encounter(c, &eoc_url, &dir)?);
    }
    let read: BTreeMap<(Hash, u64), &DeviceReading> =
        input.readings.iter().map(|r| ((r.session, r.seq), r)).collect();
    for e in input.trail {
        rest.push(audit_event(e, input.chain_id, &dir)?);
        let alert_read = matches!(
            e.kind,
            medledger_core::audit::AuditKind::DeviceAlert { session, seq, .. }
                if read.contains_key(&(session, seq))
        );
        if !alert_read && let Some(o) = alert_observation(e, &dir)? {
            rest.push(o);
        }
    }
    for r in read.values() {
        rest.push(reading_observation(r, &dir)?);
    }
    let mut all = vec![patient(input.patient, input.details, input.attendant, &dir)?];
    all.extend(dir.resources()?);
    all.extend(rest);
    bundle(all, input.patient, input.now_ms)
}

/// Refuses input that names another patient than `input.patient`: the wallet trusts the node's
/// lists, and a list mixing patients must not become this patient's export.
fn check_patient(input: &ExportInput<'_>) -> Result<(), Error> {
    let me = input.patient.account;
    let foreign = |what: String, patient: AccountId| {
        if patient == me { Ok(()) } else { Err(Error::Foreign { what, patient }) }
    };
    foreign("the consent view".into(), input.consent.patient)?;
    for r in input.records {
        foreign(format!("record {}", r.pmr), r.patient)?;
    }
    for c in input.cases {
        foreign(format!("case {}", c.case), c.patient)?;
    }
    for e in input.trail {
        foreign(format!("audit event {}", e.seq), e.patient)?;
    }
    for g in &input.consent.grants {
        foreign(format!("grant {}", g.id), g.patient)?;
    }
    for r in input.readings {
        foreign(format!("reading {} of device session {}", r.seq, r.session), r.patient)?;
    }
    Ok(())
}

/// The resources as a `collection` Bundle with each one's `fullUrl`.
///
/// The model keeps an entry's resource as JSON, and each resource was parsed and validated when
/// it was made ([`parse`]): the Bundle's own fields are parsed and validated here, and the
/// entries go in as they are, not through a second parse of the whole Bundle (a deep copy of
/// every resource, which was a third of the export's time).
pub fn bundle(
    resources: Vec<(String, Resource)>,
    patient: &PatientView,
    now_ms: u64,
) -> Result<Export, Error> {
    use fhir::r4::{resources::bundle::BundleEntry, types::Uri};
    let mut counts = BTreeMap::new();
    let mut entry = Vec::with_capacity(resources.len());
    for (url, r) in resources {
        let value = serde_json::to_value(&r)
            .map_err(|e| Error::Parse { resource: "Bundle entry".into(), reason: e.to_string() })?;
        let kind = value.get("resourceType").and_then(Value::as_str).unwrap_or("?").to_owned();
        *counts.entry(kind).or_insert(0) += 1;
        entry.push(BundleEntry {
            full_url: Some(Uri(url)),
            resource: Some(value),
            ..BundleEntry::default()
        });
    }
    let b = json!({
        "resourceType": "Bundle",
        "id": uuid("Bundle", &format!("{}/{now_ms}", patient.account)),
        "identifier": identifier(systems::EXPORT, format!("{}/{now_ms}", patient.account)),
        "type": "collection",
        "timestamp": instant(now_ms),
    });
    let Resource::Bundle(mut bundle) = parse(b)? else {
        unreachable!("a Bundle parses as a Bundle")
    };
    bundle.entry = entry;
    valid("Bundle".into(), bundle.as_ref())?;
    Ok(Export { bundle: *bundle, counts })
}

#[cfg(test)]
mod tests;
