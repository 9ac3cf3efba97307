//! `medledger record import --fhir`: a FHIR R4 Bundle's DocumentReference (with its Binary),
//! DiagnosticReport and Observation entries become encrypted records the patient reads back;
//! a patient's exported DocumentReference and Binary import back to the same content; the FHIR
//! specification's own examples (the `hl7.fhir.r4.examples` package, installed by the test
//! command) import and export again unchanged; and a bundle with one bad entry mints nothing.

use serde_json::{Value, json};

use crate::{
    fhir_export::of_type,
    harness::*,
    registry::{Cast, cast},
};

fn write_bundle(dir: &std::path::Path, name: &str, resources: Vec<Value>) -> String {
    let entry: Vec<Value> = resources
        .into_iter()
        .enumerate()
        .map(|(i, r)| json!({ "fullUrl": format!("urn:uuid:10000000-0000-4000-8000-{i:012}"), "resource": r }))
        .collect();
    write_json(
        dir,
        name,
        &json!({ "resourceType": "Bundle", "type": "collection", "entry": entry }),
    )
}

fn write_json(dir: &std::path::Path, name: &str, v: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    path.display().to_string()
}

fn import(c: &Cast, bundle: &str, env: &[(&str, &str)]) -> Vec<Value> {
    let out = ok(
        &["record", "import", "--wallet", &c.doctor, "--patient", &c.patient_id]
            .into_iter()
            .chain(["--fhir", bundle, "--json"])
            .collect::<Vec<_>>(),
        env,
    );
    serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
}

/// The patient's records as `record list` shows them.
fn records(c: &Cast, env: &[(&str, &str)]) -> Vec<Value> {
    let out = ok(&["record", "list", "--wallet", &c.patient, "--json"], env);
    serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
}

/// Reads record `pmr` as the patient: its bytes and what `record get` printed.
fn read(c: &Cast, pmr: &str, dir: &std::path::Path, env: &[(&str, &str)]) -> (Vec<u8>, String) {
    let out = dir.join(format!("{pmr}.out"));
    let printed =
        ok(&["record", "get", pmr, "--wallet", &c.patient, "-o", &out.display().to_string()], env);
    (std::fs::read(&out).unwrap(), printed)
}

fn discharge() -> Vec<Value> {
    let text = b"Discharge summary: stable, review in 2 weeks";
    vec![
        json!({
            "resourceType": "DocumentReference",
            "status": "current",
            "type": { "coding": [{ "system": "http://loinc.org", "code": "34133-9" }] },
            "description": "Discharge summary",
            "content": [{ "attachment": {
                "contentType": "text/plain",
                "url": "urn:uuid:10000000-0000-4000-8000-000000000001",
                "title": "discharge.txt",
            } }],
            "context": { "period": { "start": "2026-01-02" } },
        }),
        json!({ "resourceType": "Binary", "contentType": "text/plain", "data": data_encoding::BASE64.encode(text) }),
    ]
}

fn heart_rate() -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }] }],
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }], "text": "Heart rate" },
        "effectiveDateTime": "2026-01-05T08:00:00Z",
        "valueQuantity": { "value": 72, "system": "http://unitsofmeasure.org", "code": "/min" },
    })
}

#[test]
fn a_fhir_bundle_imports_as_encrypted_records_the_patient_reads_back() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let c = cast(dir, &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let mut resources = discharge();
    resources.push(json!({
        "resourceType": "DiagnosticReport",
        "status": "final",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB" }] }],
        "code": { "text": "Lipid panel" },
        "effectiveDateTime": "2026-01-04",
        "presentedForm": [{ "contentType": "text/plain", "data": data_encoding::BASE64.encode(b"LDL 2.1 mmol/L") }],
    }));
    resources.push(heart_rate());
    let bundle = write_bundle(dir, "bundle.json", resources);
    let imported = import(&c, &bundle, &env);
    assert_eq!(imported.len(), 3, "{imported:?}");
    let cats: Vec<&str> = imported.iter().map(|r| r["category"].as_str().unwrap()).collect();
    assert_eq!(cats, ["treatment_summary", "lab_report", "device_data"]);
    assert_eq!(imported[0]["entry"], "Bundle.entry[0].resource");
    assert_eq!(imported[2]["entry"], "Bundle.entry[3].resource");

    // On the ledger, the patient's, and readable by the patient.
    let list = records(&c, &env);
    assert_eq!(list.len(), 3);
    let pmr = |i: usize| imported[i]["pmr"].as_str().unwrap().to_owned();
    for (i, r) in imported.iter().enumerate() {
        let on_ledger = list.iter().find(|l| l["pmr"] == r["pmr"]).unwrap();
        assert_eq!(on_ledger["category"], r["category"]);
        assert_eq!(on_ledger["author"].as_str().unwrap(), c.doctor_account, "{i}");
    }
    assert_eq!(
        list.iter().find(|l| l["pmr"] == pmr(0).as_str()).unwrap()["visit_date"],
        json!({ "year": 2026, "month": 1, "day": 2 })
    );
    let (bytes, printed) = read(&c, &pmr(0), dir, &env);
    assert_eq!(bytes, b"Discharge summary: stable, review in 2 weeks");
    assert!(printed.contains("Discharge summary (text/plain)"), "{printed}");
    assert_eq!(read(&c, &pmr(1), dir, &env).0, b"LDL 2.1 mmol/L");
    let (obs, printed) = read(&c, &pmr(2), dir, &env);
    assert_eq!(serde_json::from_slice::<Value>(&obs).unwrap(), heart_rate());
    assert!(printed.contains("application/fhir+json"), "{printed}");

    // Export, then import: the patient's exported DocumentReference and Binary of the
    // discharge summary, imported again, are a new record with the same content and metadata.
    let exported: Value =
        serde_json::from_str(&exported_with_content(dir, &c.patient, &env)).unwrap();
    let entries = exported["entry"].as_array().unwrap();
    let doc = entries
        .iter()
        .find(|e| e["resource"]["masterIdentifier"]["value"] == pmr(0).as_str())
        .unwrap()
        .clone();
    let bin_url = doc["resource"]["content"][1]["attachment"]["url"].clone();
    let bin = entries.iter().find(|e| e["fullUrl"] == bin_url).unwrap().clone();
    let again = write_json(
        dir,
        "again.json",
        &json!({ "resourceType": "Bundle", "type": "collection", "entry": [doc, bin] }),
    );
    let second = import(&c, &again, &env);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["category"], "treatment_summary");
    assert_ne!(second[0]["pmr"], imported[0]["pmr"]);
    let (bytes2, printed2) = read(&c, second[0]["pmr"].as_str().unwrap(), dir, &env);
    assert_eq!(bytes2, bytes);
    assert!(printed2.contains("Discharge summary (text/plain)"), "{printed2}");
    let list = records(&c, &env);
    let copy = list.iter().find(|l| l["pmr"] == second[0]["pmr"]).unwrap();
    assert_eq!(copy["visit_date"], json!({ "year": 2026, "month": 1, "day": 2 }));
}

#[test]
fn a_bundle_with_one_bad_entry_mints_nothing() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let c = cast(dir, &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let good = || {
        let mut r = discharge();
        r.push(heart_rate());
        r
    };
    let cases: Vec<(&str, Vec<Value>, &str, &str)> = vec![
        (
            "unknown element",
            {
                let mut r = good();
                r[2]["valueQuantity"]["accuracy"] = json!("high");
                r
            },
            "Bundle.entry[2].resource.valueQuantity.accuracy",
            "unknown element",
        ),
        (
            "invalid code",
            {
                let mut r = good();
                r[2]["status"] = json!("finalised");
                r
            },
            "Bundle.entry[2].resource.status",
            "required value set",
        ),
        (
            "wrong resource type",
            {
                let mut r = good();
                r.push(json!({ "resourceType": "MedicationRequest", "status": "active" }));
                r
            },
            "Bundle.entry[3].resource.resourceType",
            "unsupported resource type",
        ),
        (
            "another patient's",
            {
                let mut r = good();
                r[2]["subject"] = json!({ "identifier": { "system": "urn:medledger:patient-id", "value": "424242" } });
                r
            },
            "Bundle.entry[2].resource.subject.identifier",
            "424242",
        ),
        (
            "a visit in the future",
            {
                let mut r = good();
                r[2]["effectiveDateTime"] = json!("2999-01-01");
                r
            },
            "Bundle.entry[2].resource",
            "in the future",
        ),
    ];
    for (what, resources, path, says) in cases {
        let bundle = write_bundle(dir, "bad.json", resources);
        let err = fails(
            &["record", "import", "--wallet", &c.doctor, "--patient", &c.patient_id]
                .into_iter()
                .chain(["--fhir", &bundle])
                .collect::<Vec<_>>(),
            &env,
        );
        assert!(err.contains("nothing was imported"), "{what}: {err}");
        assert!(err.contains(&format!("{path}: ")) && err.contains(says), "{what}: {err}");
        // Checked on the ledger: no record, and no mint in the patient's trail.
        assert!(records(&c, &env).is_empty(), "{what}: something was minted");
        let trail = ok(&["audit", "trail", "--wallet", &c.patient, "--json"], &env);
        assert!(!trail.contains("record_minted"), "{what}: {trail}");
    }
    // The good bundle alone imports (so the refusals above were the bad entry's).
    let bundle = write_bundle(dir, "good.json", good());
    assert_eq!(import(&c, &bundle, &env).len(), 2);
}

/// The patient's whole export with every record's content (`export --fhir --content`), as
/// written to `dir/export.json`.
fn exported_with_content(dir: &std::path::Path, patient: &str, env: &[(&str, &str)]) -> String {
    let export = dir.join("export.json");
    let out = export.display().to_string();
    ok(&["export", "--wallet", patient, "--fhir", "-o", &out, "--content"], env);
    std::fs::read_to_string(&export).unwrap()
}

/// The directory of the FHIR R4 examples package (`hl7.fhir.r4.examples` 4.0.1, from npm),
/// which the test command installs and names in `MEDLEDGER_FHIR_R4_EXAMPLES`.
fn spec_examples() -> std::path::PathBuf {
    let dir = std::env::var_os("MEDLEDGER_FHIR_R4_EXAMPLES").map(std::path::PathBuf::from);
    let dir = dir.filter(|d| d.join("Observation-heart-rate.json").is_file());
    dir.expect(
        "MEDLEDGER_FHIR_R4_EXAMPLES must name the hl7.fhir.r4.examples package's directory: the \
         test command (scripts/test.sh) installs it from npm",
    )
}

#[test]
fn the_fhir_specification_s_own_examples_import_and_export_again() {
    let examples = spec_examples();
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let c = cast(dir, &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let files = [
        ("Observation-heart-rate.json", "device_data"),
        ("Observation-f001.json", "other"),
        ("DiagnosticReport-ultrasound.json", "imaging"),
        ("DiagnosticReport-f201.json", "imaging"),
        ("DocumentReference-example.json", "other"),
        // A pathology report (v2-0074 PAT) whose presented form is a PDF in base64 with MIME
        // line breaks, as base64Binary allows: the record holds the PDF.
        ("DiagnosticReport-gingival-mass.json", "lab_report"),
    ];
    let originals: Vec<Value> = files
        .iter()
        .map(|(f, _)| serde_json::from_slice(&std::fs::read(examples.join(f)).unwrap()).unwrap())
        .collect();
    let bundle = write_bundle(dir, "spec.json", originals.clone());
    let imported = import(&c, &bundle, &env);
    assert_eq!(imported.len(), files.len(), "{imported:?}");
    for ((f, category), r) in files.iter().zip(&imported) {
        assert_eq!(r["category"], *category, "{f}");
    }
    // Exported again: each example comes back, as the content of its record, unchanged.
    let text = exported_with_content(dir, &c.patient, &env);
    let bundle: fhir::r4::resources::Bundle = serde_json::from_str(&text).unwrap();
    assert!(fhir::r4::validate::Validate::validate(&bundle).is_empty());
    let exported: Value = serde_json::from_str(&text).unwrap();
    let entries = exported["entry"].as_array().unwrap();
    for ((f, _), (r, original)) in files.iter().zip(imported.iter().zip(&originals)) {
        let doc = of_type(entries, "DocumentReference")
            .into_iter()
            .find(|d| d["masterIdentifier"]["value"] == r["pmr"])
            .unwrap_or_else(|| panic!("{f}: no DocumentReference"));
        let url = doc["content"][1]["attachment"]["url"].as_str().unwrap();
        let bin = entries.iter().find(|e| e["fullUrl"] == url).unwrap();
        let bytes = data_encoding::BASE64
            .decode(bin["resource"]["data"].as_str().unwrap().as_bytes())
            .unwrap();
        match original["presentedForm"][0]["data"].as_str() {
            Some(form) => {
                assert_eq!(bin["resource"]["contentType"], "application/pdf", "{f}");
                let form: String = form.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                assert_eq!(bytes, data_encoding::BASE64.decode(form.as_bytes()).unwrap(), "{f}");
            }
            None => {
                assert_eq!(bin["resource"]["contentType"], "application/fhir+json", "{f}");
                assert_eq!(&serde_json::from_slice::<Value>(&bytes).unwrap(), original, "{f}");
            }
        }
    }
}
