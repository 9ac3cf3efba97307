//! The import's reading of a bundle: what it makes of each resource, and each refusal with
//! the exact path of the problem.

use serde_json::{Value, json};

use super::*;

fn b64(b: &[u8]) -> String {
    data_encoding::BASE64.encode(b)
}

fn sha1_b64(b: &[u8]) -> String {
    b64(&sha1::Sha1::digest(b))
}

fn bundle(resources: Vec<Value>) -> Vec<u8> {
    let entry: Vec<Value> = resources
        .into_iter()
        .enumerate()
        .map(|(i, r)| json!({ "fullUrl": format!("urn:uuid:00000000-0000-4000-8000-00000000000{i}"), "resource": r }))
        .collect();
    serde_json::to_vec(&json!({ "resourceType": "Bundle", "type": "collection", "entry": entry }))
        .unwrap()
}

fn doc_with_binary() -> Vec<Value> {
    let pdf = b"%PDF-1.4 discharge summary";
    vec![
        json!({
            "resourceType": "DocumentReference",
            "status": "current",
            "type": { "coding": [{ "system": "http://loinc.org", "code": "34133-9" }] },
            "subject": { "identifier": { "system": "urn:medledger:patient-id", "value": "7" } },
            "description": "Discharge summary",
            "content": [{ "attachment": {
                "contentType": "application/pdf",
                "url": "urn:uuid:00000000-0000-4000-8000-000000000001",
                "size": pdf.len(),
                "hash": sha1_b64(pdf),
                "title": "discharge.pdf",
                "creation": "2026-01-03",
            } }],
            "context": { "period": { "start": "2026-01-02" } },
        }),
        json!({ "resourceType": "Binary", "contentType": "application/pdf", "data": b64(pdf) }),
    ]
}

fn lab_report() -> Value {
    json!({
        "resourceType": "DiagnosticReport",
        "id": "cbc",
        "status": "final",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "HM" }] }],
        "code": { "coding": [{ "system": "http://loinc.org", "code": "58410-2" }], "text": "CBC panel" },
        "effectiveDateTime": "2026-01-04T09:30:00+05:30",
        "conclusion": "normal",
    })
}

fn heart_rate() -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }] }],
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4", "display": "Heart rate" }] },
        "effectiveDateTime": "2026-01-05",
        "valueQuantity": {
            // A decimal as written (arbitrary precision): 44.50, not 44.5.
            "value": serde_json::from_str::<Value>("44.50").unwrap(),
            "unit": "beats/minute",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    })
}

fn problems_of(bytes: &[u8]) -> Vec<Problem> {
    read_bundle(bytes).expect_err("the bundle should be refused")
}

fn has(problems: &[Problem], path: &str, says: &str) -> bool {
    problems.iter().any(|p| p.path == path && p.message.contains(says))
}

#[test]
fn a_valid_bundle_becomes_one_record_per_resource() {
    let mut rs = doc_with_binary();
    rs.push(lab_report());
    rs.push(heart_rate());
    let records = read_bundle(&bundle(rs)).unwrap();
    assert_eq!(records.len(), 3);
    let d = &records[0];
    assert_eq!(d.path, "Bundle.entry[0].resource");
    assert_eq!(d.category, RecordCategory::TreatmentSummary);
    assert_eq!(d.bytes, b"%PDF-1.4 discharge summary");
    assert_eq!(d.content_type, "application/pdf");
    assert_eq!(d.title, "Discharge summary");
    assert_eq!(d.file_name.as_deref(), Some("discharge.pdf"));
    assert_eq!(d.visit_date.as_deref(), Some("2026-01-02"));
    assert_eq!(
        d.subject,
        vec![(
            "urn:medledger:patient-id".to_owned(),
            "7".to_owned(),
            "Bundle.entry[0].resource.subject.identifier".to_owned()
        )]
    );
    let r = &records[1];
    assert_eq!(r.category, RecordCategory::LabReport);
    assert_eq!(r.content_type, "application/fhir+json");
    assert_eq!(r.title, "CBC panel");
    assert_eq!(r.visit_date.as_deref(), Some("2026-01-04"));
    assert!(r.notes.contains("DiagnosticReport/cbc") && r.notes.contains("normal"));
    let back: Value = serde_json::from_slice(&r.bytes).unwrap();
    assert_eq!(back, lab_report());
    let o = &records[2];
    assert_eq!(o.category, RecordCategory::DeviceData);
    // The decimal as written (arbitrary precision): 44.50, not 44.5.
    assert!(String::from_utf8_lossy(&o.bytes).contains("44.50"));
}

#[test]
fn an_inline_attachment_and_a_document_held_elsewhere() {
    let inline = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "category": [{ "coding": [{ "system": "urn:medledger:record-category", "code": "psychiatry" }] }],
        "content": [{ "attachment": { "contentType": "text/plain", "data": b64(b"note") } }],
        "date": "2026-01-06T10:00:00Z",
    });
    let elsewhere = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{ "attachment": { "url": "http://example.org/doc/1" } }],
    });
    let records = read_bundle(&bundle(vec![inline, elsewhere.clone()])).unwrap();
    assert_eq!(records[0].category, RecordCategory::Psychiatry);
    assert_eq!(records[0].bytes, b"note");
    assert_eq!(records[0].visit_date.as_deref(), Some("2026-01-06"));
    assert_eq!(records[1].category, RecordCategory::Other);
    assert_eq!(records[1].content_type, "application/fhir+json");
    assert_eq!(serde_json::from_slice::<Value>(&records[1].bytes).unwrap(), elsewhere);
    assert!(records[1].notes.contains("http://example.org/doc/1"));
}

#[test]
fn unknown_elements_are_refused_where_they_are() {
    let mut o = heart_rate();
    o["colour"] = json!("red");
    o["valueQuantity"]["precision"] = json!(2);
    let mut rs = vec![lab_report(), o];
    rs[0]["code"]["coding"][0]["weight"] = json!(1);
    let mut b: Value = serde_json::from_slice(&bundle(rs)).unwrap();
    b["entry"][1]["note"] = json!("x");
    b["signedBy"] = json!("me");
    let p = problems_of(&serde_json::to_vec(&b).unwrap());
    for path in [
        "Bundle.entry[1].resource.colour",
        "Bundle.entry[1].resource.valueQuantity.precision",
        "Bundle.entry[0].resource.code.coding[0].weight",
        "Bundle.entry[1].note",
        "Bundle.signedBy",
    ] {
        assert!(has(&p, path, "unknown element"), "{path}: {p:?}");
    }
    // A choice element of a type the resource does not allow is unknown too.
    let mut o = heart_rate();
    o["valueAddress"] = json!({ "city": "Pune" });
    o.as_object_mut().unwrap().remove("valueQuantity");
    let p = problems_of(&bundle(vec![o]));
    assert!(has(&p, "Bundle.entry[0].resource.valueAddress", "unknown element"), "{p:?}");
}

#[test]
fn invalid_codes_are_refused_with_their_path() {
    let mut d = doc_with_binary();
    d[0]["status"] = json!("draft");
    let p = problems_of(&bundle(d));
    assert!(has(&p, "Bundle.entry[0].resource.status", "required value set"), "{p:?}");

    let mut d = doc_with_binary();
    d[0]["status"] = json!("entered-in-error");
    assert!(has(&problems_of(&bundle(d)), "Bundle.entry[0].resource.status", "only a current"));

    let mut d = doc_with_binary();
    d[0]["docStatus"] = json!("signed");
    assert!(has(
        &problems_of(&bundle(d)),
        "Bundle.entry[0].resource.docStatus",
        "required value set"
    ));
    // A code in an array element: the path has its index.
    let mut d = doc_with_binary();
    d[0]["relatesTo"] = json!([
        { "code": "appends", "target": { "reference": "DocumentReference/a" } },
        { "code": "zzz", "target": { "reference": "DocumentReference/b" } },
    ]);
    let p = problems_of(&bundle(d));
    assert!(has(&p, "Bundle.entry[0].resource.relatesTo[1].code", "zzz"), "{p:?}");

    let mut o = heart_rate();
    o["status"] = json!("done");
    let p = problems_of(&bundle(vec![lab_report(), o]));
    assert!(has(&p, "Bundle.entry[1].resource.status", "required value set"), "{p:?}");

    let mut r = lab_report();
    r["status"] = json!("finished");
    assert!(has(
        &problems_of(&bundle(vec![r])),
        "Bundle.entry[0].resource.status",
        "required value set"
    ));

    // Codes of the systems the import maps.
    let mut o = heart_rate();
    o["code"]["coding"][0]["code"] = json!("8867-5"); // wrong check digit
    let p = problems_of(&bundle(vec![o]));
    assert!(has(&p, "Bundle.entry[0].resource.code.coding[0].code", "LOINC"), "{p:?}");
    let mut o = heart_rate();
    o["category"][0]["coding"][0]["code"] = json!("vitals");
    let p = problems_of(&bundle(vec![o]));
    assert!(has(&p, "Bundle.entry[0].resource.category[0].coding[0].code", "observation-category"));
    let mut r = lab_report();
    r["category"][0]["coding"][0]["code"] = json!("BLOOD");
    let p = problems_of(&bundle(vec![r]));
    assert!(has(&p, "Bundle.entry[0].resource.category[0].coding[0].code", "v2-0074"));
    let mut d = doc_with_binary();
    d[0]["category"] =
        json!([{ "coding": [{ "system": "urn:medledger:record-category", "code": "gossip" }] }]);
    let p = problems_of(&bundle(d));
    assert!(has(&p, "Bundle.entry[0].resource.category[0].coding[0].code", "record category"));
    // A vital sign in the wrong unit.
    let mut o = heart_rate();
    o["valueQuantity"]["code"] = json!("Hz");
    let p = problems_of(&bundle(vec![o]));
    assert!(has(&p, "Bundle.entry[0].resource.valueQuantity.code", "/min"), "{p:?}");
    // Bundle.type.
    let mut b: Value = serde_json::from_slice(&bundle(vec![heart_rate()])).unwrap();
    b["type"] = json!("pile");
    let p = problems_of(&serde_json::to_vec(&b).unwrap());
    assert!(has(&p, "Bundle.type", "required value set"), "{p:?}");
}

#[test]
fn unsupported_resource_types_and_non_bundles_are_refused() {
    let patient = json!({ "resourceType": "Patient", "name": [{ "text": "X" }] });
    let p = problems_of(&bundle(vec![heart_rate(), patient]));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(has(
        &p,
        "Bundle.entry[1].resource.resourceType",
        "unsupported resource type \"Patient\""
    ));
    let p = problems_of(&serde_json::to_vec(&heart_rate()).unwrap());
    assert!(has(&p, "Bundle.resourceType", "expected \"Bundle\""));
    let p = problems_of(b"{ not json");
    assert!(has(&p, "Bundle", "not JSON"));
    let p = problems_of(br#"{"resourceType":"Bundle","type":"collection"}"#);
    assert!(has(&p, "Bundle.entry", "no entries"));
}

#[test]
fn dates_empty_values_and_content_are_checked() {
    let mut o = heart_rate();
    o["effectiveDateTime"] = json!("2026-13-45");
    let p = problems_of(&bundle(vec![o]));
    assert!(has(&p, "Bundle.entry[0].resource.effectiveDateTime", "not a FHIR date"), "{p:?}");
    let mut o = heart_rate();
    o["issued"] = json!("");
    assert!(has(&problems_of(&bundle(vec![o])), "Bundle.entry[0].resource.issued", "empty"));
    // A partial date is no visit date, and no problem.
    let mut o = heart_rate();
    o["effectiveDateTime"] = json!("2026-01");
    assert_eq!(read_bundle(&bundle(vec![o])).unwrap()[0].visit_date, None);

    let mut d = doc_with_binary();
    d[0]["content"][0]["attachment"]["hash"] = json!(sha1_b64(b"something else"));
    let p = problems_of(&bundle(d));
    assert!(has(&p, "Bundle.entry[0].resource.content[0].attachment.hash", "SHA-1"), "{p:?}");
    let mut d = doc_with_binary();
    d[0]["content"][0]["attachment"]["size"] = json!(3);
    assert!(has(
        &problems_of(&bundle(d)),
        "Bundle.entry[0].resource.content[0].attachment.size",
        "3 bytes"
    ));
    let mut d = doc_with_binary();
    d[1]["data"] = json!("not base64!");
    assert!(has(&problems_of(&bundle(d)), "Bundle.entry[1].resource.data", "base64"));
    // A Binary nobody refers to, and a reference to a Binary that is not there.
    let d = doc_with_binary();
    let p = problems_of(&bundle(vec![heart_rate(), d[1].clone()]));
    assert!(has(&p, "Bundle.entry[1].resource", "no DocumentReference"), "{p:?}");
    let p = problems_of(&bundle(vec![d[0].clone()]));
    assert!(has(&p, "Bundle.entry[0].resource.content[0].attachment.url", "not in the bundle"));
}

#[test]
fn every_problem_of_the_bundle_is_reported_at_once() {
    let mut o = heart_rate();
    o["status"] = json!("done");
    let mut r = lab_report();
    r["bogus"] = json!(true);
    let p = problems_of(&bundle(vec![o, heart_rate(), r]));
    assert!(has(&p, "Bundle.entry[0].resource.status", "required value set"), "{p:?}");
    assert!(has(&p, "Bundle.entry[2].resource.bogus", "unknown element"));
    assert!(!p.iter().any(|x| x.path.starts_with("Bundle.entry[1]")), "{p:?}");
}

#[test]
fn loinc_check_digits() {
    for code in [
        "8867-4",
        "59408-5",
        "8480-6",
        "8462-4",
        "15074-8",
        "8310-5",
        "11502-2",
        "18748-4",
        "34133-9",
        "10164-2",
        "11348-0",
        "58410-2",
        "59284-0",
        "LP29684-5",
    ] {
        assert!(is_loinc(code), "{code}");
    }
    for code in ["8867-5", "8867", "88a7-4", "-4", "8867-44", "123456789-0"] {
        assert!(!is_loinc(code), "{code}");
    }
}
