//! A grantee's export holds what their grants in force cover, never more.

use super::*;

fn labs_grant(w: &World) -> GrantView {
    GrantView {
        id: Hash([40; 32]),
        patient: w.patient.account,
        grantee: w.insurer,
        scope: Scope::Categories(vec![RecordCategory::LabReport]),
        purpose: Purpose::Insurance,
        validity: Validity { not_before_ms: T0, expires_at_ms: T0 + 86_400_000 },
        granted_by: w.patient.account,
        granted_at: 50,
        revoked_at: None,
    }
}

fn run_grantee(
    w: &World,
    grants: &[GrantView],
    contents: &BTreeMap<String, RecordContent>,
) -> Result<Export, Error> {
    grantee_export(&GranteeInput {
        grantee: w.insurer,
        patient: &w.patient,
        hospitals: std::slice::from_ref(&w.hospital),
        doctors: std::slice::from_ref(&w.doctor),
        grants,
        records: &w.records,
        contents,
        readings: &w.readings,
        now_ms: T0 + 10_000_000,
    })
}

#[test]
fn a_category_grant_exports_only_its_categories_and_their_content() {
    let w = world();
    let grants = [labs_grant(&w)];
    let mut contents = contents();
    // Content of the psychiatric note handed in by mistake: still not exported.
    contents.insert(
        "PMR-3".into(),
        RecordContent {
            title: "PSY".into(),
            content_type: "text/plain".into(),
            date: "2026-01-02".into(),
            file_name: None,
            bytes: b"PSYCHIATRIC NOTE".to_vec(),
        },
    );
    let e = run_grantee(&w, &grants, &contents).unwrap();
    let all = resources(&e);
    for r in &all {
        let r: Resource = serde_json::from_value(r.clone()).unwrap();
        assert!(r.validate().is_empty());
    }
    let docs = of_type(&all, "DocumentReference");
    let pmrs: BTreeSet<&str> =
        docs.iter().map(|d| d["masterIdentifier"]["value"].as_str().unwrap()).collect();
    assert_eq!(pmrs, BTreeSet::from(["PMR-1", "PMR-2"]));
    assert_eq!(of_type(&all, "Binary").len(), 1);
    let text = serde_json::to_string(&e.bundle).unwrap();
    assert!(!text.contains("PMR-3"));
    assert!(!text.contains(&data_encoding::BASE64.encode(b"PSYCHIATRIC NOTE")));
    // No trail, no cases, no deny rules, no sealed details: the patient's own.
    for t in ["AuditEvent", "EpisodeOfCare", "Encounter"] {
        assert!(of_type(&all, t).is_empty(), "{t}");
    }
    let consents = of_type(&all, "Consent");
    assert_eq!(consents.len(), 1);
    assert_eq!(consents[0]["provision"]["type"], "permit");
    assert!(of_type(&all, "Patient")[0].get("name").is_none());
    assert!(!text.contains("Asha Rao"));
}

#[test]
fn no_grant_covers_nothing_and_a_foreign_grant_refuses() {
    let w = world();
    let e = run_grantee(&w, &[], &contents()).unwrap();
    let all = resources(&e);
    assert!(of_type(&all, "DocumentReference").is_empty());
    assert!(of_type(&all, "Binary").is_empty());
    // A grant to someone else, or from another patient, is no grant of this grantee's.
    let mut to_other = labs_grant(&w);
    to_other.grantee = w.doctor.account;
    assert!(matches!(run_grantee(&w, &[to_other], &contents()), Err(Error::Foreign { .. })));
    let mut from_other = labs_grant(&w);
    from_other.patient = w.other_patient;
    assert!(matches!(run_grantee(&w, &[from_other], &contents()), Err(Error::Foreign { .. })));
    // A record grant covers that record only.
    let mut one = labs_grant(&w);
    one.scope = Scope::Records(vec!["PMR-3".into()]);
    let all = resources(&run_grantee(&w, &[one], &BTreeMap::new()).unwrap());
    let docs = of_type(&all, "DocumentReference");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["masterIdentifier"]["value"], "PMR-3");
}

#[test]
fn device_readings_are_exported_only_under_a_grant_covering_device_data() {
    use medledger_core::tx::devices::{Metric, Severity};
    let mut w = world();
    let device = account();
    w.readings = vec![
        super::devices::reading(&w, device, 1, Metric::HeartRate, 71.0, None),
        super::devices::reading(&w, device, 2, Metric::HeartRate, 151.5, Some(Severity::Critical)),
    ];
    // Lab reports only: the readings handed in are left out.
    let e = run_grantee(&w, &[labs_grant(&w)], &BTreeMap::new()).unwrap();
    assert!(of_type(&resources(&e), "Observation").is_empty());
    // Device data (by category, or everything): one Observation per reading, values and all.
    let mut devices = labs_grant(&w);
    devices.scope = Scope::Categories(vec![RecordCategory::DeviceData]);
    let mut all = labs_grant(&w);
    all.scope = Scope::All;
    for grant in [devices, all] {
        assert!(covering_device_grant(std::slice::from_ref(&grant), &w.patient.account).is_some());
        let e = run_grantee(&w, &[grant], &BTreeMap::new()).unwrap();
        check_bundle(&e);
        let all = resources(&e);
        let obs = of_type(&all, "Observation");
        assert_eq!(obs.len(), 2);
        let alerted = obs.iter().find(|o| o.get("interpretation").is_some()).unwrap();
        assert_eq!(alerted["valueQuantity"]["value"].to_string(), "151.5");
    }
    // A grant of a case or of records names no device data.
    let mut case = labs_grant(&w);
    case.scope = Scope::Case("CASE-1".into());
    assert!(covering_device_grant(&[case], &w.patient.account).is_none());
    // A reading of another patient refuses the export.
    let mut devices = labs_grant(&w);
    devices.scope = Scope::Categories(vec![RecordCategory::DeviceData]);
    w.readings[1].patient = w.other_patient;
    match run_grantee(&w, &[devices], &BTreeMap::new()) {
        Err(Error::Foreign { what, patient }) => {
            assert!(what.starts_with("reading 2 of device session"), "{what}");
            assert_eq!(patient, w.other_patient);
        }
        other => panic!("{other:?}"),
    }
}
