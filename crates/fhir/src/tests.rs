//! The mappings, one rule at a time, and a whole export: every resource re-serialises and
//! re-parses as R4 through the model, unchanged, and passes its validation.

use std::collections::{BTreeMap, BTreeSet};

use fhir::r4::resources::Resource;
use fhir::r4::validate::Validate;
use medledger_api::{
    CaseSealView, CaseView, DenyView, DoctorView, GrantView, HospitalView, PatientView, RecordView,
    WhoCanSeeView,
};
use medledger_core::{
    Hash,
    audit::{AuditEvent, AuditKind},
    ids::{AccountId, PatientId},
    keys::SigningKey,
    tx::{
        Role,
        consent::{
            Basis, Decision, Denial, DenyRule, Purpose, RecordCategory, Resource as Res, Scope,
            Validity,
        },
        emergency::ReasonCode,
        records::VisitDate,
        registry::{OrganisationKind, SealedRef},
    },
};
use serde_json::{Value, json};

use super::*;

mod devices;
mod grantee;
mod review;
mod roundtrip;

fn account() -> AccountId {
    AccountId::from_initial_key(&SigningKey::generate().public_key())
}

const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

struct World {
    patient: PatientView,
    other_patient: AccountId,
    hospital: HospitalView,
    doctor: DoctorView,
    insurer: AccountId,
    records: Vec<RecordView>,
    consent: WhoCanSeeView,
    trail: Vec<AuditEvent>,
    cases: Vec<CaseView>,
    details: Value,
    readings: Vec<DeviceReading>,
}

fn record(w: &World, pmr: &str, n: u8, category: RecordCategory) -> RecordView {
    RecordView {
        pmr: pmr.into(),
        patient: w.patient.account,
        owner: w.patient.account,
        author: w.doctor.account,
        hospital: w.hospital.account,
        category,
        visit_date: VisitDate { year: 2026, month: 1, day: 2 },
        cid: format!("bafkreitest{n}"),
        content: Hash([n; 32]),
        size: 1000 + u64::from(n),
        metadata: Hash([n + 100; 32]),
        version: 1,
        supersedes: None,
        superseded_by: None,
        approved: None,
        minted_at: 10 + u64::from(n),
        minted_time_ms: T0 + u64::from(n) * 1000,
        mint_tx: Hash([n + 50; 32]),
        erased_at: None,
        sharing: None,
    }
}

fn event(w: &World, seq: u64, actor: AccountId, kind: AuditKind) -> AuditEvent {
    AuditEvent {
        seq,
        height: 20 + seq,
        time_ms: T0 + 60_000 * seq,
        tx_hash: Hash([seq as u8; 32]),
        actor,
        patient: w.patient.account,
        kind,
    }
}

fn grant(id: u8, grantee: AccountId, scope: Scope, purpose: Purpose) -> AuditKind {
    AuditKind::Granted {
        grant: Hash([id; 32]),
        grantee,
        scope,
        purpose,
        validity: Validity { not_before_ms: T0, expires_at_ms: T0 + 86_400_000 },
    }
}

fn world() -> World {
    let patient = account();
    let hospital = HospitalView {
        account: account(),
        registration_id: "GOV-H-1".into(),
        name: "St. Example".into(),
        city: "Pune".into(),
        specialisation: "general".into(),
        suspended: false,
        admitted_at: 1,
    };
    let doctor = DoctorView {
        account: account(),
        hospital: hospital.account,
        registration_number: "MCI-42".into(),
        name: "Dr. Ada Quill".into(),
        specialisation: "cardiology".into(),
        onboarded_at: 2,
    };
    let mut w = World {
        patient: PatientView {
            patient_id: PatientId(7),
            account: patient,
            hospital: hospital.account,
            details: SealedRef { blob: Hash([1; 32]), commitment: Hash([2; 32]) },
            attendant: SealedRef { blob: Hash([3; 32]), commitment: Hash([4; 32]) },
            registered_at: 3,
        },
        other_patient: account(),
        hospital,
        doctor,
        insurer: account(),
        records: Vec::new(),
        consent: WhoCanSeeView {
            patient,
            height: 99,
            time_ms: T0 + 60_000,
            delegates: Vec::new(),
            delegate_powers: Vec::new(),
            grants: Vec::new(),
            upcoming: Vec::new(),
            past: Vec::new(),
            deny_rules: Vec::new(),
            case_key_holders: Vec::new(),
        },
        trail: Vec::new(),
        cases: Vec::new(),
        details: json!({ "name": "Asha Rao", "date_of_birth": "1980-04-05", "phone": "+91 555 0100" }),
        readings: Vec::new(),
    };
    let mut lab = record(&w, "PMR-1", 1, RecordCategory::LabReport);
    let mut amended = record(&w, "PMR-2", 2, RecordCategory::LabReport);
    lab.superseded_by = Some("PMR-2".into());
    amended.supersedes = Some("PMR-1".into());
    amended.version = 2;
    let psych = record(&w, "PMR-3", 3, RecordCategory::Psychiatry);
    w.records = vec![lab, amended, psych];
    let (d, i, p) = (w.doctor.account, w.insurer, w.patient.account);
    let all = Scope::All;
    let labs = Scope::Categories(vec![RecordCategory::LabReport]);
    let bg = Hash([77; 32]);
    w.trail = vec![
        event(&w, 0, p, grant(10, d, all.clone(), Purpose::Treatment)),
        event(&w, 1, p, grant(11, i, labs, Purpose::Insurance)),
        event(&w, 2, p, AuditKind::Revoked { grant: Hash([11; 32]) }),
        event(&w, 3, p, AuditKind::DenyAdded { rule: Hash([12; 32]) }),
        event(
            &w,
            4,
            d,
            AuditKind::Access {
                resource: Res {
                    patient: p,
                    category: Some(RecordCategory::LabReport),
                    record: Some("PMR-2".into()),
                    case: None,
                },
                purpose: Purpose::Treatment,
                decision: Decision::Allow(Basis::Grant { grant: Hash([10; 32]) }),
            },
        ),
        event(
            &w,
            5,
            d,
            AuditKind::Access {
                resource: Res {
                    patient: p,
                    category: Some(RecordCategory::Psychiatry),
                    record: Some("PMR-3".into()),
                    case: None,
                },
                purpose: Purpose::Treatment,
                decision: Decision::Deny(Denial::DenyRule { rule: Hash([12; 32]) }),
            },
        ),
        event(
            &w,
            6,
            d,
            AuditKind::BreakGlassStarted {
                id: bg,
                doctor: d,
                hospital: w.hospital.account,
                code: ReasonCode::Unconscious,
                reason: vec![1, 2, 3],
                until_ms: T0 + 3_600_000,
            },
        ),
        event(
            &w,
            7,
            d,
            AuditKind::Access {
                resource: Res {
                    patient: p,
                    category: Some(RecordCategory::Psychiatry),
                    record: Some("PMR-3".into()),
                    case: None,
                },
                purpose: Purpose::Emergency,
                decision: Decision::Allow(Basis::BreakGlass { id: bg }),
            },
        ),
        event(&w, 8, d, AuditKind::BreakGlassEnded { id: bg }),
    ];
    w.consent.grants = vec![GrantView {
        id: Hash([10; 32]),
        patient: p,
        grantee: d,
        scope: all,
        purpose: Purpose::Treatment,
        validity: Validity { not_before_ms: T0, expires_at_ms: T0 + 86_400_000 },
        granted_by: p,
        granted_at: 20,
        revoked_at: None,
    }];
    w.consent.deny_rules = vec![DenyView {
        id: Hash([12; 32]),
        rule: DenyRule {
            grantee: None,
            grantee_role: Some(Role::Organisation(OrganisationKind::Insurer)),
            category: Some(RecordCategory::Psychiatry),
            purpose: Some(Purpose::Insurance),
        },
        added_at: 23,
    }];
    w.cases = vec![CaseView {
        case: "CASE-1".into(),
        patient: p,
        opener: d,
        hospital: w.hospital.account,
        description: Hash([5; 32]),
        follow_up_of: None,
        follow_ups: Vec::new(),
        opened_at: 30,
        opened_time_ms: T0 + 5000,
        open_tx: Hash([6; 32]),
        first_head: Hash([7; 32]),
        head: Hash([8; 32]),
        entries: 2,
        authors: vec![d],
        sealed: Some(CaseSealView { height: 40, time_ms: T0 + 9000, by: d, tx: Hash([9; 32]) }),
        keys: Vec::new(),
    }];
    w
}

fn contents() -> BTreeMap<String, RecordContent> {
    let mut m = BTreeMap::new();
    m.insert(
        "PMR-2".into(),
        RecordContent {
            title: "HbA1c".into(),
            content_type: "text/plain".into(),
            date: "2026-01-02".into(),
            file_name: Some("hba1c.txt".into()),
            bytes: b"HbA1c 6.1 %".to_vec(),
        },
    );
    m
}

fn run(w: &World, contents: &BTreeMap<String, RecordContent>) -> Export {
    export(&ExportInput {
        chain_id: "test-chain",
        patient: &w.patient,
        details: Some(&w.details),
        attendant: Some(
            &json!({ "name": "Ravi Rao", "phone": "+91 555 0101", "relationship": "brother" }),
        ),
        hospitals: std::slice::from_ref(&w.hospital),
        doctors: std::slice::from_ref(&w.doctor),
        records: &w.records,
        contents,
        consent: &w.consent,
        trail: &w.trail,
        cases: &w.cases,
        readings: &w.readings,
        now_ms: T0 + 10_000_000,
    })
    .unwrap()
}

/// The bundle as JSON, its entries' resources.
fn resources(e: &Export) -> Vec<Value> {
    let v = serde_json::to_value(&e.bundle).unwrap();
    v["entry"].as_array().unwrap().iter().map(|x| x["resource"].clone()).collect()
}

fn of_type<'a>(all: &'a [Value], t: &str) -> Vec<&'a Value> {
    all.iter().filter(|r| r["resourceType"] == t).collect()
}

fn has_code(concepts: &Value, system: &str, code: &str) -> bool {
    let codings: Vec<&Value> = match concepts {
        Value::Array(a) => a
            .iter()
            .flat_map(|c| match c.get("coding") {
                Some(Value::Array(cs)) => cs.iter().collect(),
                _ => vec![c],
            })
            .collect(),
        Value::Object(o) if o.contains_key("coding") => {
            concepts["coding"].as_array().unwrap().iter().collect()
        }
        other => vec![other],
    };
    codings.iter().any(|c| c["system"] == system && c["code"] == code)
}

#[test]
fn every_resource_reparses_unchanged_as_r4_and_passes_validation() {
    let w = world();
    let e = run(&w, &contents());
    assert!(resources(&e).len() > 20, "{}", resources(&e).len());
    check_bundle(&e);
}

/// The whole bundle parses through the model again, unchanged, and passes validation; so does
/// every resource by itself; every fullUrl is unique and every urn:uuid reference points into
/// the bundle.
fn check_bundle(e: &Export) {
    let text = serde_json::to_string(&e.bundle).unwrap();
    // The whole bundle through the model again: parses, and serialises to the same JSON.
    let again: fhir::r4::resources::Bundle = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_string(&again).unwrap(), text);
    assert!(again.validate().is_empty(), "{:?}", again.validate());
    let all = resources(e);
    for r in &all {
        let typed: Resource = serde_json::from_value(r.clone()).unwrap();
        let issues = typed.validate();
        assert!(issues.is_empty(), "{}: {issues:?}", r["resourceType"]);
        // Nothing the model does not know was dropped: re-serialised, it is the same JSON.
        assert_eq!(&serde_json::to_value(&typed).unwrap(), r, "{} changed", r["resourceType"]);
    }
    // Every fullUrl is unique, and every urn:uuid reference points into the bundle.
    let v = serde_json::to_value(&e.bundle).unwrap();
    let urls: BTreeSet<String> = v["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["fullUrl"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(urls.len(), all.len());
    let mut refs = Vec::new();
    collect_refs(&v, &mut refs);
    // A grant may name a case or record the patient no longer has; all here are present.
    for r in refs {
        assert!(urls.contains(&r), "dangling reference {r}");
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("reference") {
                out.push(r.clone());
            }
            o.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[test]
fn counts_say_what_the_bundle_holds() {
    let w = world();
    let e = run(&w, &contents());
    let all = resources(&e);
    let expect = [
        ("Patient", 1),
        ("Practitioner", 1),
        ("Organization", 1),
        ("DocumentReference", 3),
        ("Binary", 1),
        ("Provenance", 3),
        ("Consent", 3), // two grants (one revoked) and one deny rule
        ("AuditEvent", 9),
        ("EpisodeOfCare", 1),
        ("Encounter", 1),
    ];
    for (t, n) in expect {
        assert_eq!(of_type(&all, t).len(), n, "{t}");
        assert_eq!(e.counts.get(t).copied(), Some(n), "{t}");
    }
    assert_eq!(e.counts.values().sum::<usize>(), all.len());
    assert_eq!(serde_json::to_value(&e.bundle).unwrap()["type"], "collection");
    // Without content: no Binary, and no plaintext anywhere.
    let bare = run(&w, &BTreeMap::new());
    assert!(!bare.counts.contains_key("Binary"));
    let text = serde_json::to_string(&bare.bundle).unwrap();
    assert!(!text.contains(&data_encoding::BASE64.encode(b"HbA1c 6.1 %")));
    assert!(!text.contains("HbA1c"));
}

#[test]
fn the_patient_carries_the_opened_details_and_identifiers() {
    let w = world();
    let all = resources(&run(&w, &BTreeMap::new()));
    let p = of_type(&all, "Patient")[0];
    assert_eq!(p["name"][0]["text"], "Asha Rao");
    assert_eq!(p["birthDate"], "1980-04-05");
    assert_eq!(p["telecom"][0]["value"], "+91 555 0100");
    assert_eq!(p["contact"][0]["name"]["text"], "Ravi Rao");
    assert_eq!(p["contact"][0]["relationship"][0]["text"], "brother");
    let ids = p["identifier"].as_array().unwrap();
    assert!(ids.contains(&json!({ "system": systems::PATIENT_ID, "value": "7" })));
    assert!(
        ids.contains(
            &json!({ "system": systems::ACCOUNT, "value": w.patient.account.to_string() })
        )
    );
    assert_eq!(p["managingOrganization"]["display"], "St. Example");
    // Another patient's account appears nowhere.
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains(&w.other_patient.to_string()));
}

#[test]
fn a_document_reference_names_the_cid_size_hashes_category_and_binary() {
    let w = world();
    let all = resources(&run(&w, &contents()));
    let docs = of_type(&all, "DocumentReference");
    let d = docs.iter().find(|d| d["masterIdentifier"]["value"] == "PMR-2").unwrap();
    assert_eq!(d["status"], "current");
    assert_eq!(d["content"][0]["attachment"]["url"], "ipfs://bafkreitest2");
    assert_eq!(d["content"][0]["attachment"]["size"], 1002);
    let ids = d["identifier"].as_array().unwrap();
    assert!(ids.contains(
        &json!({ "system": systems::CONTENT_SHA256, "value": Hash([2; 32]).to_string() })
    ));
    assert!(has_code(&d["category"], systems::RECORD_CATEGORY, "lab_report"));
    assert!(has_code(&d["category"], "http://loinc.org", "11502-2"));
    assert_eq!(d["author"][0]["display"], "Dr. Ada Quill");
    assert_eq!(d["custodian"]["display"], "St. Example");
    assert_eq!(d["context"]["period"]["start"], "2026-01-02");
    // The plaintext's attachment: its Binary, SHA-1 of the bytes (FHIR's Attachment.hash).
    let plain = &d["content"][1]["attachment"];
    assert_eq!(plain["contentType"], "text/plain");
    assert_eq!(plain["size"], 11);
    use sha1::Digest;
    assert_eq!(plain["hash"], data_encoding::BASE64.encode(&sha1::Sha1::digest(b"HbA1c 6.1 %")));
    let bin = of_type(&all, "Binary")[0];
    assert_eq!(plain["url"], format!("urn:uuid:{}", bin["id"].as_str().unwrap()));
    assert_eq!(bin["data"], data_encoding::BASE64.encode(b"HbA1c 6.1 %"));
    assert_eq!(
        bin["securityContext"]["reference"],
        format!("urn:uuid:{}", d["id"].as_str().unwrap())
    );
    // The amendment replaces the first version, which is superseded.
    let old = docs.iter().find(|d| d["masterIdentifier"]["value"] == "PMR-1").unwrap();
    assert_eq!(old["status"], "superseded");
    assert_eq!(d["relatesTo"][0]["code"], "replaces");
    assert_eq!(
        d["relatesTo"][0]["target"]["reference"],
        format!("urn:uuid:{}", old["id"].as_str().unwrap())
    );
}

#[test]
fn provenance_names_the_author_hospital_and_mint_transaction() {
    let w = world();
    let all = resources(&run(&w, &BTreeMap::new()));
    let provs = of_type(&all, "Provenance");
    assert_eq!(provs.len(), 3);
    let p = provs
        .iter()
        .find(|p| p["entity"][0]["what"]["identifier"]["value"] == Hash([51; 32]).to_string())
        .unwrap();
    assert_eq!(p["entity"][0]["role"], "source");
    assert_eq!(p["entity"][0]["what"]["identifier"]["system"], systems::TX);
    assert_eq!(p["agent"][0]["who"]["display"], "Dr. Ada Quill");
    assert_eq!(p["agent"][0]["onBehalfOf"]["display"], "St. Example");
    assert!(has_code(
        &p["agent"][0]["type"],
        "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
        "author"
    ));
    assert_eq!(p["recorded"], "2026-01-01T00:00:01.000Z");
}

#[test]
fn consents_follow_ihe_pcf() {
    let w = world();
    let all = resources(&run(&w, &BTreeMap::new()));
    let consents = of_type(&all, "Consent");
    let by_id = |system: &str, id: u8| {
        *consents
            .iter()
            .find(|c| {
                c["identifier"][0]["system"] == system
                    && c["identifier"][0]["value"] == Hash([id; 32]).to_string()
            })
            .unwrap()
    };
    for c in &consents {
        assert!(has_code(
            &c["scope"],
            "http://terminology.hl7.org/CodeSystem/consentscope",
            "patient-privacy"
        ));
        assert!(has_code(&c["category"], "http://loinc.org", "59284-0"));
        assert_eq!(
            c["patient"]["reference"],
            format!("urn:uuid:{}", uuid("Patient", &w.patient.account.to_string()))
        );
    }
    // The grant in force: active, permit, the doctor as IRCP, for TREAT, over its period.
    let g = by_id(systems::GRANT, 10);
    assert_eq!(g["status"], "active");
    assert!(has_code(
        &g["policyRule"],
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "OPTIN"
    ));
    let p = &g["provision"];
    assert_eq!(p["type"], "permit");
    assert_eq!(p["period"]["start"], "2026-01-01T00:00:00.000Z");
    assert_eq!(p["period"]["end"], "2026-01-02T00:00:00.000Z");
    assert!(has_code(
        &p["actor"][0]["role"],
        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
        "IRCP"
    ));
    assert_eq!(p["actor"][0]["reference"]["display"], "Dr. Ada Quill");
    assert!(has_code(&p["purpose"], "http://terminology.hl7.org/CodeSystem/v3-ActReason", "TREAT"));
    assert!(p.get("code").is_none(), "a grant of everything names no category");
    // The revoked grant: inactive, says when, HPAYMT, lab reports only, to an unknown account.
    let r = by_id(systems::GRANT, 11);
    assert_eq!(r["status"], "inactive");
    assert_eq!(r["extension"][0]["valueDateTime"], "2026-01-01T00:02:00.000Z");
    assert!(has_code(
        &r["provision"]["purpose"],
        "http://terminology.hl7.org/CodeSystem/v3-ActReason",
        "HPAYMT"
    ));
    assert!(has_code(&r["provision"]["code"], systems::RECORD_CATEGORY, "lab_report"));
    assert_eq!(
        r["provision"]["actor"][0]["reference"]["identifier"]["value"],
        w.insurer.to_string()
    );
    // The deny rule: active, deny, every insurer, psychiatry, for HPAYMT, OPTOUT.
    let d = by_id(systems::DENY_RULE, 12);
    assert_eq!(d["status"], "active");
    assert!(has_code(
        &d["policyRule"],
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "OPTOUT"
    ));
    assert_eq!(d["provision"]["type"], "deny");
    assert!(has_code(
        &d["provision"]["actor"][0]["role"],
        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
        "IRCP"
    ));
    assert_eq!(d["provision"]["actor"][0]["reference"]["identifier"]["value"], "insurer");
    assert!(has_code(&d["provision"]["code"], systems::RECORD_CATEGORY, "psychiatry"));
    assert!(has_code(
        &d["provision"]["purpose"],
        "http://terminology.hl7.org/CodeSystem/v3-ActReason",
        "HPAYMT"
    ));
    assert_eq!(d["dateTime"], "2026-01-01T00:03:00.000Z");
}

#[test]
fn a_grant_not_yet_started_is_proposed_and_an_expired_one_inactive() {
    let w = world();
    let dir = Directory::new(&w.patient, None, &[], &[]);
    let mut g = grants_of_trail(&w.trail, &BTreeSet::new()).remove(0);
    assert!(!g.in_force);
    g.validity.not_before_ms = T0 + 10_000;
    let (_, c) = grant_consent(&g, T0, &dir).unwrap();
    assert_eq!(serde_json::to_value(&c).unwrap()["status"], "proposed");
    let (_, c) = grant_consent(&g, T0 + 100_000_000, &dir).unwrap();
    assert_eq!(serde_json::to_value(&c).unwrap()["status"], "inactive");
}

#[test]
fn purposes_map_to_v3_act_reason() {
    for (p, code) in [
        (Purpose::Treatment, Some("TREAT")),
        (Purpose::Emergency, Some("ETREAT")),
        (Purpose::Research, Some("HRESCH")),
        (Purpose::Insurance, Some("HPAYMT")),
        (Purpose::Other, None),
    ] {
        let c = purpose_coding(p);
        assert_eq!(c.as_ref().map(|c| c["code"].as_str().unwrap()), code, "{p:?}");
        if let Some(c) = c {
            assert_eq!(c["system"], "http://terminology.hl7.org/CodeSystem/v3-ActReason");
        }
    }
}

fn audit_by_seq(all: &[Value], seq: u64) -> &Value {
    of_type(all, "AuditEvent")
        .into_iter()
        .find(|a| {
            a["extension"][0]["valueString"].as_str().and_then(|s| s.parse().ok()) == Some(seq)
        })
        .unwrap()
}

#[test]
fn audit_events_follow_ihe_balp() {
    let w = world();
    let all = resources(&run(&w, &BTreeMap::new()));
    const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
    const REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
    for a in of_type(&all, "AuditEvent") {
        // The patient is an entity in role Patient; the transaction is named by hash.
        assert_eq!(a["entity"][0]["what"]["display"], "Asha Rao");
        assert_eq!(a["entity"][0]["role"]["code"], "1");
        let last = a["entity"].as_array().unwrap().last().unwrap();
        assert_eq!(last["what"]["identifier"]["system"], systems::TX);
        assert_eq!(a["source"]["site"], "test-chain");
        assert_eq!(a["agent"][0]["requestor"], true);
    }
    // An allowed read: Patient Record, R, success, TREAT, the record as entity.
    let read = audit_by_seq(&all, 4);
    assert_eq!(read["type"]["system"], DCM);
    assert_eq!(read["type"]["code"], "110110");
    assert_eq!(read["action"], "R");
    assert_eq!(read["outcome"], "0");
    assert!(has_code(&read["purposeOfEvent"], REASON, "TREAT"));
    assert!(has_code(&read["agent"][0]["purposeOfUse"], REASON, "TREAT"));
    assert_eq!(read["agent"][0]["who"]["display"], "Dr. Ada Quill");
    assert_eq!(read["entity"][1]["what"]["identifier"]["value"], "PMR-2");
    assert_eq!(read["recorded"], "2026-01-01T00:04:00.000Z");
    // A denied read: outcome 4 and why, naming the deny rule.
    let denied = audit_by_seq(&all, 5);
    assert_eq!(denied["action"], "R");
    assert_eq!(denied["outcome"], "4");
    let why = denied["outcomeDesc"].as_str().unwrap();
    assert!(why.contains("denied") && why.contains(&Hash([12; 32]).to_string()), "{why}");
    // Break-glass started and ended: Security Alert, 110127 / 110138, BTG.
    let started = audit_by_seq(&all, 6);
    assert_eq!(started["type"]["code"], "110113");
    assert_eq!(started["subtype"][0]["system"], DCM);
    assert_eq!(started["subtype"][0]["code"], "110127");
    assert!(has_code(&started["purposeOfEvent"], REASON, "BTG"));
    let ended = audit_by_seq(&all, 8);
    assert_eq!(ended["type"]["code"], "110113");
    assert_eq!(ended["subtype"][0]["code"], "110138");
    assert!(has_code(&ended["purposeOfEvent"], REASON, "BTG"));
    // A read allowed by break-glass: BTG beside ETREAT, success.
    let bg_read = audit_by_seq(&all, 7);
    assert_eq!(bg_read["outcome"], "0");
    assert!(has_code(&bg_read["purposeOfEvent"], REASON, "BTG"));
    assert!(has_code(&bg_read["purposeOfEvent"], REASON, "ETREAT"));
    // Consent changes: create and delete, the grant as entity, pointing at its Consent.
    let granted = audit_by_seq(&all, 1);
    assert_eq!(granted["action"], "C");
    assert!(has_code(&granted["purposeOfEvent"], REASON, "HPAYMT"));
    let revoked = audit_by_seq(&all, 2);
    assert_eq!(revoked["action"], "D");
    assert_eq!(
        revoked["entity"][1]["what"]["reference"],
        format!("urn:uuid:{}", uuid("Consent", &format!("grant/{}", Hash([11; 32]))))
    );
    // No read of a case or record is ever marked as a break-glass without one.
    assert!(!has_code(&read["purposeOfEvent"], REASON, "BTG"));
    assert!(denied.get("subtype").is_none());
}

#[test]
fn cases_are_episodes_of_care_with_an_encounter() {
    let w = world();
    let all = resources(&run(&w, &BTreeMap::new()));
    let eoc = of_type(&all, "EpisodeOfCare")[0];
    assert_eq!(eoc["status"], "finished");
    assert_eq!(eoc["identifier"][0]["value"], "CASE-1");
    assert_eq!(eoc["period"]["end"], "2026-01-01T00:00:09.000Z");
    assert_eq!(eoc["careManager"]["display"], "Dr. Ada Quill");
    let enc = of_type(&all, "Encounter")[0];
    assert_eq!(enc["status"], "finished");
    assert_eq!(
        enc["episodeOfCare"][0]["reference"],
        format!("urn:uuid:{}", eoc["id"].as_str().unwrap())
    );
    assert_eq!(enc["participant"].as_array().unwrap().len(), 1);
}

#[test]
fn ids_are_stable_and_distinct() {
    assert_eq!(uuid("Patient", "a"), uuid("Patient", "a"));
    assert_ne!(uuid("Patient", "a"), uuid("Patient", "b"));
    assert_ne!(uuid("Patient", "a"), uuid("Practitioner", "a"));
    let u = uuid("X", "y");
    assert_eq!(u.len(), 36);
    assert_eq!(&u[14..15], "8");
    assert_eq!(instant(0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
    assert_eq!(instant(u64::MAX), None);
}
