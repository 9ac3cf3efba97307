//! Audit trail events as AuditEvent resources, after IHE Basic Audit Log Patterns (BALP):
//! type DICOM 110110 "Patient Record" for what concerns the patient's record (reads with
//! action R, changes with C/U/D), the patient as an entity in role 1 (Patient), the actor as
//! the requesting agent, the purpose of use from v3-ActReason; a denied access has outcome 4
//! (minor failure) and says why; break-glass is type DICOM 110113 "Security Alert" with
//! subtype 110127 "Emergency Override Started" or 110138 "Emergency Override Stopped" and
//! purposeOfEvent BTG, as is every read that break-glass allowed. The patient's own reads
//! carry purpose PATRQT (patient requested); a device alert is an event of the patient record
//! (110110, action E), not a security alert.

use fhir::r4::resources::Resource;
use medledger_core::{
    audit::{AuditEvent, AuditKind},
    tx::consent::{Basis, Decision},
};
use serde_json::{Value, json};

use crate::{
    Directory, Error,
    codes::{DCM, btg, coding, purpose_concept, systems},
    identifier, instant, parse, uuid,
};

/// How one kind of event maps.
struct Shape {
    ty: Value,
    subtype: Vec<Value>,
    action: &'static str,
    outcome: &'static str,
    outcome_desc: Option<String>,
    purposes: Vec<Value>,
    what: String,
    entities: Vec<Value>,
}

fn patient_record() -> Value {
    coding(DCM, "110110", "Patient Record")
}

fn security_alert() -> Value {
    coding(DCM, "110113", "Security Alert")
}

/// An entity the event concerns: a resource of the bundle (by url) or a ledger id.
fn entity(reference: Value, role: (&str, &str), name: &str) -> Value {
    json!({
        "what": reference,
        "type": coding(
            "http://terminology.hl7.org/CodeSystem/audit-entity-type",
            "2",
            "System Object",
        ),
        "role": coding("http://terminology.hl7.org/CodeSystem/object-role", role.0, role.1),
        "name": name,
    })
}

/// A Reference by identifier, pointing into the bundle where it holds the resource.
fn local_or_logical(
    dir: &Directory<'_>,
    kind: &'static str,
    key: &str,
    system: &str,
    id: impl std::fmt::Display,
) -> Value {
    let mut what = json!({ "identifier": identifier(system, id) });
    if let Some(url) = dir.local(kind, key) {
        what["reference"] = json!(url);
    }
    what
}

fn record_entity(pmr: &str, dir: &Directory<'_>) -> Value {
    let what = local_or_logical(dir, "DocumentReference", pmr, systems::PMR, pmr);
    entity(what, ("4", "Domain Resource"), &format!("record {pmr}"))
}

fn id_entity(system: &str, id: impl std::fmt::Display, name: &str) -> Value {
    entity(json!({ "identifier": identifier(system, &id) }), ("4", "Domain Resource"), name)
}

fn shape(e: &AuditEvent, dir: &Directory<'_>) -> Shape {
    let mut s = Shape {
        ty: patient_record(),
        subtype: Vec::new(),
        action: "E",
        outcome: "0",
        outcome_desc: None,
        purposes: Vec::new(),
        what: String::new(),
        entities: Vec::new(),
    };
    match &e.kind {
        AuditKind::Access { resource, purpose, decision } => {
            s.action = "R";
            s.purposes.push(purpose_concept(*purpose));
            s.what = "access".into();
            if let Some(pmr) = &resource.record {
                s.entities.push(record_entity(pmr, dir));
            }
            if let Some(case) = &resource.case {
                s.entities.push(id_entity(systems::CASE, case, &format!("case {case}")));
            }
            match decision {
                Decision::Allow(Basis::BreakGlass { id }) => {
                    s.purposes.push(btg());
                    s.entities.push(id_entity(systems::BREAK_GLASS, id, "break-glass"));
                    s.outcome_desc = Some(format!("allowed by break-glass {id}"));
                }
                Decision::Allow(basis) => {
                    // The patient's own read (an export, `record get`): v3-ActReason PATRQT,
                    // whatever purpose the ledger's access names.
                    if *basis == Basis::Ownership {
                        s.purposes.push(json!({ "coding": [coding(
                            crate::codes::ACT_REASON,
                            "PATRQT",
                            "patient requested",
                        )] }));
                    }
                    s.outcome_desc = Some(format!("allowed: {basis}"));
                }
                Decision::Deny(denial) => {
                    s.outcome = "4";
                    s.outcome_desc = Some(format!("denied: {denial}"));
                }
            }
        }
        AuditKind::Granted { grant, purpose, .. } => {
            s.action = "C";
            s.purposes.push(purpose_concept(*purpose));
            s.what = "consent granted".into();
            s.entities.push(consent_entity(dir, "grant", grant));
        }
        AuditKind::Revoked { grant } => {
            s.action = "D";
            s.what = "consent revoked".into();
            s.entities.push(consent_entity(dir, "grant", grant));
        }
        AuditKind::DenyAdded { rule } => {
            s.action = "C";
            s.what = "deny rule added".into();
            s.entities.push(consent_entity(dir, "deny", rule));
        }
        AuditKind::DenyRemoved { rule } => {
            s.action = "D";
            s.what = "deny rule removed".into();
            s.entities.push(consent_entity(dir, "deny", rule));
        }
        AuditKind::Requested { purpose, .. } => {
            s.purposes.push(purpose_concept(*purpose));
            s.what = "access requested".into();
        }
        AuditKind::RecordMinted { record, supersedes, .. } => {
            s.action = if supersedes.is_some() { "U" } else { "C" };
            s.what = "record created".into();
            s.entities.push(record_entity(record, dir));
        }
        AuditKind::RecordErased { record } => {
            s.action = "D";
            s.what = "record erased".into();
            s.entities.push(record_entity(record, dir));
        }
        AuditKind::RecordTransferred { record, .. }
        | AuditKind::RecordApproval { record, .. }
        | AuditKind::RecordKeyShared { record, .. } => {
            s.action = "U";
            s.what = "record token or key changed".into();
            s.entities.push(record_entity(record, dir));
        }
        AuditKind::ShareReleased { record, purpose, decision, .. } => {
            s.purposes.push(purpose_concept(*purpose));
            s.what = "key share released".into();
            s.entities.push(record_entity(record, dir));
            if !decision.is_allowed() {
                s.outcome = "4";
                s.outcome_desc = Some("the custodian's release was refused".into());
            }
        }
        AuditKind::ResearchExport { project, rule_set, grants, .. } => {
            s.action = "R";
            s.purposes.push(purpose_concept(medledger_core::tx::consent::Purpose::Research));
            s.what = format!("research export for project {project}, de-identified by {rule_set}");
            for grant in grants {
                s.entities.push(consent_entity(dir, "grant", grant));
            }
        }
        AuditKind::EmergencyProfileRead => {
            s.action = "R";
            s.purposes.push(purpose_concept(medledger_core::tx::consent::Purpose::Emergency));
            s.what = "emergency profile read".into();
        }
        AuditKind::BreakGlassStarted { id, code, until_ms, .. } => {
            s.ty = security_alert();
            s.subtype.push(coding(DCM, "110127", "Emergency Override Started"));
            s.purposes.push(btg());
            s.what = format!("break-glass started ({code})");
            s.entities.push(id_entity(systems::BREAK_GLASS, id, "break-glass"));
            if let Some(until) = instant(*until_ms) {
                s.outcome_desc = Some(format!("emergency access until {until}"));
            }
        }
        AuditKind::BreakGlassEnded { id } => {
            s.ty = security_alert();
            s.subtype.push(coding(DCM, "110138", "Emergency Override Stopped"));
            s.purposes.push(btg());
            s.what = "break-glass ended".into();
            s.entities.push(id_entity(systems::BREAK_GLASS, id, "break-glass"));
        }
        AuditKind::EscrowReleased { id, .. } => {
            s.ty = security_alert();
            s.purposes.push(btg());
            s.what = "emergency key escrow released".into();
            s.entities.push(id_entity(systems::BREAK_GLASS, id, "break-glass"));
        }
        AuditKind::BreakGlassReviewed { id, .. } => {
            s.ty = security_alert();
            s.purposes.push(btg());
            s.what = "break-glass reviewed".into();
            s.entities.push(id_entity(systems::BREAK_GLASS, id, "break-glass"));
        }
        AuditKind::CaseOpened { case, .. }
        | AuditKind::CaseEntryAppended { case, .. }
        | AuditKind::CaseSealed { case, .. }
        | AuditKind::CaseKeyShared { case, .. } => {
            s.action = match e.kind {
                AuditKind::CaseOpened { .. } => "C",
                _ => "U",
            };
            s.what = "case changed".into();
            s.entities.push(entity(
                local_or_logical(dir, "EpisodeOfCare", case, systems::CASE, case),
                ("4", "Domain Resource"),
                &format!("case {case}"),
            ));
        }
        AuditKind::DeviceAlert { device, seq, severity, metric, .. } => {
            // A clinical alert about the patient, not a security alert (DICOM 110113 would
            // page a security team for every abnormal heart rate): Patient Record, execute.
            s.what = format!(
                "device alert: {} {} (reading {seq})",
                serde_json::to_value(severity)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                metric.name()
            );
            s.entities.push(id_entity(systems::ACCOUNT, device, "device"));
        }
        AuditKind::DeviceRegistered { device, .. }
        | AuditKind::DeviceRetired { device }
        | AuditKind::DeviceSessionStarted { device, .. }
        | AuditKind::DeviceSessionEnded { device, .. }
        | AuditKind::DeviceThresholdsSet { device, .. } => {
            s.action = match e.kind {
                AuditKind::DeviceRegistered { .. } => "C",
                AuditKind::DeviceRetired { .. } => "D",
                _ => "U",
            };
            s.what = "device changed".into();
            s.entities.push(id_entity(systems::ACCOUNT, device, "device"));
        }
        AuditKind::Declined { .. }
        | AuditKind::DelegateNamed { .. }
        | AuditKind::DelegateRemoved { .. }
        | AuditKind::DelegateScoped { .. }
        | AuditKind::EmergencyProfileSet { .. }
        | AuditKind::PatientAmended { .. } => {
            s.action = "U";
            s.what = "consent or registration changed".into();
        }
    }
    s
}

/// A grant (`kind` "grant") or deny rule ("deny") as an entity.
fn consent_entity(dir: &Directory<'_>, kind: &str, id: &medledger_core::Hash) -> Value {
    let (system, name) =
        if kind == "grant" { (systems::GRANT, "grant") } else { (systems::DENY_RULE, "deny rule") };
    let what = local_or_logical(dir, "Consent", &format!("{kind}/{id}"), system, id);
    entity(what, ("4", "Domain Resource"), name)
}

/// One trail event as an AuditEvent: recorded at its block time; the actor as the requesting
/// agent; the patient and what the event names as entities; the transaction that caused it as
/// an entity by hash; the ledger (`chain_id`) as the source.
pub fn audit_event(
    e: &AuditEvent,
    chain_id: &str,
    dir: &Directory<'_>,
) -> Result<(String, Resource), Error> {
    let s = shape(e, dir);
    let mut agent = json!({
        "who": dir.reference(&e.actor),
        "requestor": true,
    });
    if !s.purposes.is_empty() {
        agent["purposeOfUse"] = json!(s.purposes);
    }
    if matches!(dir.kind_of(&e.actor), Some("Patient" | "Practitioner")) {
        agent["type"] = json!({ "coding": [coding(
            "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
            "humanuser",
            "human user",
        )] });
    }
    let mut entities = vec![json!({
        "what": dir.patient_ref(),
        "type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1", "Person"),
        "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "1", "Patient"),
    })];
    entities.extend(s.entities);
    entities.push(entity(
        json!({ "identifier": identifier(systems::TX, e.tx_hash) }),
        ("20", "Job"),
        &format!("ledger transaction (block {})", e.height),
    ));
    let id = uuid("AuditEvent", &format!("{}/{}", e.patient, e.seq));
    let mut a = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "type": s.ty,
        "action": s.action,
        "recorded": instant(e.time_ms),
        "outcome": s.outcome,
        "agent": [agent],
        "source": {
            "site": chain_id,
            "observer": {
                "identifier": identifier(systems::CHAIN, chain_id),
                "display": "medledger ledger",
            },
            "type": [coding(
                "http://terminology.hl7.org/CodeSystem/security-source-type",
                "4",
                "Application Server",
            )],
        },
        "entity": entities,
        "extension": [{
            "url": "urn:medledger:fhir:audit-event-seq",
            "valueString": e.seq.to_string(),
        }],
    });
    if !s.subtype.is_empty() {
        a["subtype"] = json!(s.subtype);
    }
    if !s.purposes.is_empty() {
        a["purposeOfEvent"] = json!(s.purposes);
    }
    let desc = match s.outcome_desc {
        Some(d) => format!("{}: {d}", s.what),
        None => s.what,
    };
    a["outcomeDesc"] = json!(desc);
    Ok((format!("urn:uuid:{id}"), parse(a)?))
}
