//! Findings of the attack review of the export: what a third party controls (the sealed
//! details a hospital wrote) and what a node answers (views of another patient) must not make
//! an invalid resource or land in this patient's bundle.

use super::*;

#[test]
fn a_date_of_birth_that_is_not_a_date_is_left_out_not_written() {
    let mut w = world();
    // The details are sealed by the registering hospital's client, which may write anything.
    w.details = json!({ "name": "Asha Rao", "date_of_birth": "5th April 1980" });
    let all = resources(&run(&w, &BTreeMap::new()));
    let p = of_type(&all, "Patient")[0];
    assert!(p.get("birthDate").is_none(), "{p}");
    assert_eq!(p["name"][0]["text"], "Asha Rao");
    // A real date is kept.
    w.details = json!({ "date_of_birth": "1980-04-05" });
    let all = resources(&run(&w, &BTreeMap::new()));
    assert_eq!(of_type(&all, "Patient")[0]["birthDate"], "1980-04-05");
}

fn try_run(w: &World) -> Result<Export, Error> {
    export(&ExportInput {
        chain_id: "test-chain",
        patient: &w.patient,
        details: None,
        attendant: None,
        hospitals: std::slice::from_ref(&w.hospital),
        doctors: std::slice::from_ref(&w.doctor),
        records: &w.records,
        contents: &BTreeMap::new(),
        consent: &w.consent,
        trail: &w.trail,
        cases: &w.cases,
        readings: &w.readings,
        now_ms: T0 + 10_000_000,
    })
}

#[test]
fn a_view_of_another_patient_refuses_the_export() {
    let w = world();
    assert!(try_run(&w).is_ok());
    type Change = fn(&mut World);
    let cases: [(&str, Change); 6] = [
        ("record PMR-3", |w| w.records[2].patient = w.other_patient),
        ("reading 4 of device session", |w| {
            use medledger_core::tx::devices::Metric::Spo2;
            let mut r = super::devices::reading(w, w.insurer, 4, Spo2, 97.0, None);
            r.patient = w.other_patient;
            w.readings.push(r);
        }),
        ("case CASE-1", |w| w.cases[0].patient = w.other_patient),
        ("audit event 4", |w| w.trail[4].patient = w.other_patient),
        ("the consent view", |w| w.consent.patient = w.other_patient),
        ("grant", |w| w.consent.grants[0].patient = w.other_patient),
    ];
    for (what, change) in cases {
        let mut w = world();
        change(&mut w);
        let other = w.other_patient;
        match try_run(&w) {
            Err(Error::Foreign { what: got, patient }) => {
                assert!(got.starts_with(what), "{got} for {what}");
                assert_eq!(patient, other);
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn the_patient_s_own_read_is_patient_requested_and_a_device_alert_no_security_alert() {
    use medledger_core::tx::devices::{Metric, Severity};
    let w = world();
    let dir = Directory::new(&w.patient, None, &[], &[]);
    let p = w.patient.account;
    let own = event(
        &w,
        20,
        p,
        AuditKind::Access {
            resource: Res { patient: p, category: None, record: Some("PMR-1".into()), case: None },
            purpose: Purpose::Other,
            decision: Decision::Allow(Basis::Ownership),
        },
    );
    let (_, a) = audit_event(&own, "c", &dir).unwrap();
    let a = serde_json::to_value(&a).unwrap();
    let v3 = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
    assert!(has_code(&a["purposeOfEvent"], v3, "PATRQT"), "{a}");
    // A grantee's read is not.
    let (_, a) = audit_event(&w.trail[4], "c", &dir).unwrap();
    let a = serde_json::to_value(&a).unwrap();
    assert!(!has_code(&a["purposeOfEvent"], v3, "PATRQT"), "{a}");
    assert!(has_code(&a["purposeOfEvent"], v3, "TREAT"), "{a}");

    let device = account();
    let alert = event(
        &w,
        21,
        device,
        AuditKind::DeviceAlert {
            device,
            session: Hash([3; 32]),
            seq: 1,
            metric: Metric::HeartRate,
            severity: Severity::Critical,
        },
    );
    let (_, a) = audit_event(&alert, "c", &dir).unwrap();
    let a = serde_json::to_value(&a).unwrap();
    assert_eq!(a["type"]["code"], "110110", "{a}");
    assert_eq!(a["action"], "E");
}
