//! Device data: a reading the wallet read is a vital-signs Observation with its LOINC code,
//! UCUM unit and exact value; an alert whose reading was read is that one Observation, and an
//! alert whose reading was not keeps its value-absent Observation.

use medledger_core::tx::devices::{Metric, Severity};

use super::*;

const SESSION: Hash = Hash([3; 32]);
const UCUM: &str = "http://unitsofmeasure.org";
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

/// Reading `seq` of the test session, taken at `T0 + seq` seconds.
pub(super) fn reading(
    w: &World,
    device: AccountId,
    seq: u64,
    metric: Metric,
    value: f64,
    alert: Option<Severity>,
) -> DeviceReading {
    DeviceReading {
        patient: w.patient.account,
        device,
        session: SESSION,
        seq,
        time_ms: T0 + 1000 * seq,
        metric,
        value,
        alert,
    }
}

fn alert_event(w: &World, n: u64, device: AccountId, seq: u64, metric: Metric) -> AuditEvent {
    let kind = AuditKind::DeviceAlert {
        device,
        session: SESSION,
        seq,
        metric,
        severity: Severity::Critical,
    };
    event(w, n, device, kind)
}

/// The Observation whose identifier is reading `seq` of the test session.
fn observation(all: &[Value], seq: u64) -> &Value {
    let key = format!("{SESSION}/{seq}");
    let found: Vec<_> = of_type(all, "Observation")
        .into_iter()
        .filter(|o| o["identifier"][0]["value"] == key.as_str())
        .collect();
    assert_eq!(found.len(), 1, "observations of reading {seq}: {found:?}");
    found[0]
}

#[test]
fn a_reading_is_a_vital_signs_observation_with_loinc_ucum_its_exact_value_and_time() {
    let w = world();
    let dir = Directory::new(&w.patient, Some("Asha Rao".into()), &[], &[]);
    let device = account();
    let cases = [
        (Metric::Temperature, 36.6, "8310-5", "Cel", "°C"),
        (Metric::HeartRate, 72.0, "8867-4", "/min", "bpm"),
        (Metric::Spo2, 97.5, "59408-5", "%", "%"),
        (Metric::SystolicPressure, 121.0, "8480-6", "mm[Hg]", "mmHg"),
        (Metric::DiastolicPressure, 79.0, "8462-4", "mm[Hg]", "mmHg"),
        (Metric::Glucose, 5.55, "15074-8", "mmol/L", "mmol/L"),
    ];
    for (metric, value, loinc, ucum, unit) in cases {
        let r = reading(&w, device, 5, metric, value, None);
        let (url, o) = reading_observation(&r, &dir).unwrap();
        let o = serde_json::to_value(&o).unwrap();
        assert_eq!(url, format!("urn:uuid:{}", uuid("Observation", &format!("{SESSION}/5"))));
        assert_eq!(o["status"], "final");
        assert!(has_code(
            &o["category"],
            "http://terminology.hl7.org/CodeSystem/observation-category",
            "vital-signs"
        ));
        assert!(has_code(&o["code"], "http://loinc.org", loinc), "{o}");
        let q = &o["valueQuantity"];
        assert_eq!(q["system"], UCUM, "{o}");
        assert_eq!(q["code"], ucum, "{o}");
        assert_eq!(q["unit"], unit, "{o}");
        assert_eq!(q["value"].as_f64(), Some(value), "{o}");
        assert_eq!(o["effectiveDateTime"], instant(T0 + 5000).unwrap());
        assert_eq!(o["subject"]["display"], "Asha Rao");
        assert_eq!(o["device"]["identifier"]["value"], device.to_string());
        assert!(o.get("interpretation").is_none(), "a normal reading has no alert: {o}");
        assert!(o.get("dataAbsentReason").is_none());
        let typed: Resource = serde_json::from_value(o.clone()).unwrap();
        assert!(typed.validate().is_empty(), "{:?}", typed.validate());
    }
}

#[test]
fn a_reading_s_value_is_written_as_the_shortest_decimal_that_is_exactly_it() {
    let mut w = world();
    let device = account();
    let values =
        [36.6, 0.1 + 0.2, 98.60000000000001, 72.0, 1e-7, 123_456.789, -0.5, f64::MAX, 5e-324];
    w.readings = values
        .iter()
        .enumerate()
        .map(|(i, v)| reading(&w, device, i as u64 + 1, Metric::Temperature, *v, None))
        .collect();
    let e = run(&w, &BTreeMap::new());
    // As the CLI writes it.
    let text = String::from_utf8(serde_json::to_vec_pretty(&e.bundle).unwrap()).unwrap();
    assert!(text.contains("\"value\": 36.6,") || text.contains("\"value\": 36.6\n"), "{text}");
    assert!(!text.contains("36.600000"), "{text}");
    assert!(text.contains("0.30000000000000004"), "{text}");
    // Read back from the file's text (a fresh parse, as an importer would), each is the value
    // the device sealed, bit for bit.
    let back: Value = serde_json::from_str(&text).unwrap();
    let all: Vec<Value> =
        back["entry"].as_array().unwrap().iter().map(|x| x["resource"].clone()).collect();
    for (i, v) in values.iter().enumerate() {
        let o = observation(&all, i as u64 + 1);
        let lexeme = o["valueQuantity"]["value"].to_string();
        let parsed: f64 = lexeme.parse().unwrap();
        assert_eq!(parsed.to_bits(), v.to_bits(), "{v} was written as {lexeme}");
        // And the model keeps the lexeme as it was written.
        let typed: Resource = serde_json::from_value(o.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&typed).unwrap()["valueQuantity"]["value"].to_string(),
            lexeme
        );
    }
    assert_eq!(observation(&all, 1)["valueQuantity"]["value"].to_string(), "36.6");
    assert_eq!(observation(&all, 4)["valueQuantity"]["value"].to_string(), "72.0");
    check_bundle(&e);
}

#[test]
fn a_value_that_is_no_number_is_absent_with_its_reason() {
    let w = world();
    let dir = Directory::new(&w.patient, None, &[], &[]);
    let device = account();
    for (v, code) in [
        (f64::NAN, "not-a-number"),
        (f64::INFINITY, "positive-infinity"),
        (f64::NEG_INFINITY, "negative-infinity"),
    ] {
        let r = reading(&w, device, 1, Metric::HeartRate, v, Some(Severity::Critical));
        let (_, o) = reading_observation(&r, &dir).unwrap();
        let o = serde_json::to_value(&o).unwrap();
        assert!(o.get("valueQuantity").is_none(), "{o}");
        assert!(
            has_code(
                &o["dataAbsentReason"],
                "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                code
            ),
            "{o}"
        );
        assert!(has_code(&o["interpretation"], INTERPRETATION, "AA"), "{o}");
    }
}

#[test]
fn a_read_alert_is_one_observation_with_its_value_and_an_unread_one_stays_value_absent() {
    let mut w = world();
    let device = account();
    // Readings 1..=3 read, the 2nd raised a critical alert; reading 7 (a session read before it
    // arrived, or one this wallet could not open) raised one too, not read.
    w.trail.push(alert_event(&w, 9, device, 2, Metric::Spo2));
    w.trail.push(alert_event(&w, 10, device, 7, Metric::Spo2));
    w.readings = vec![
        reading(&w, device, 1, Metric::Spo2, 97.0, None),
        reading(&w, device, 2, Metric::Spo2, 84.5, Some(Severity::Critical)),
        reading(&w, device, 3, Metric::Spo2, 96.0, None),
    ];
    let e = run(&w, &BTreeMap::new());
    check_bundle(&e);
    let all = resources(&e);
    assert_eq!(of_type(&all, "Observation").len(), 4);
    assert_eq!(e.counts.get("Observation"), Some(&4));
    let alerted = observation(&all, 2);
    assert_eq!(alerted["id"], uuid("Observation", &format!("{SESSION}/2")));
    assert_eq!(alerted["valueQuantity"]["value"].to_string(), "84.5");
    assert_eq!(alerted["effectiveDateTime"], instant(T0 + 2000).unwrap());
    assert!(has_code(&alerted["interpretation"], INTERPRETATION, "AA"), "{alerted}");
    assert!(alerted.get("dataAbsentReason").is_none(), "{alerted}");
    for seq in [1, 3] {
        let o = observation(&all, seq);
        assert!(o.get("interpretation").is_none() && o.get("valueQuantity").is_some(), "{o}");
    }
    let unread = observation(&all, 7);
    assert!(unread.get("valueQuantity").is_none(), "{unread}");
    assert!(unread["dataAbsentReason"]["text"].as_str().unwrap().contains("sealed"), "{unread}");
    assert!(has_code(&unread["interpretation"], INTERPRETATION, "AA"), "{unread}");
    // Every alert still has its AuditEvent.
    assert_eq!(of_type(&all, "AuditEvent").len(), w.trail.len());
    // The same input, the same ids.
    let again = resources(&run(&w, &BTreeMap::new()));
    assert_eq!(observation(&again, 2)["id"], alerted["id"]);
}

#[test]
fn a_device_alert_is_a_vital_signs_observation_with_loinc_and_interpretation() {
    let w = world();
    let dir = Directory::new(&w.patient, Some("Asha Rao".into()), &[], &[]);
    let device = account();
    let alert = |metric, severity| {
        event(
            &w,
            9,
            device,
            AuditKind::DeviceAlert { device, session: Hash([3; 32]), seq: 12, metric, severity },
        )
    };
    let (_, o) =
        alert_observation(&alert(Metric::Spo2, Severity::Critical), &dir).unwrap().unwrap();
    let o = serde_json::to_value(&o).unwrap();
    assert_eq!(o["resourceType"], "Observation");
    assert!(has_code(
        &o["category"],
        "http://terminology.hl7.org/CodeSystem/observation-category",
        "vital-signs"
    ));
    assert!(has_code(&o["code"], "http://loinc.org", "59408-5"));
    assert!(has_code(
        &o["interpretation"],
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "AA"
    ));
    assert_eq!(o["subject"]["display"], "Asha Rao");
    assert_eq!(o["device"]["identifier"]["value"], device.to_string());
    assert!(o.get("valueQuantity").is_none() && o.get("dataAbsentReason").is_some());
    let (_, o) =
        alert_observation(&alert(Metric::HeartRate, Severity::Warning), &dir).unwrap().unwrap();
    let o = serde_json::to_value(&o).unwrap();
    assert!(has_code(&o["code"], "http://loinc.org", "8867-4"));
    assert!(has_code(
        &o["interpretation"],
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "A"
    ));
    // Any other event is no observation.
    assert!(alert_observation(&w.trail[0], &dir).unwrap().is_none());
}
