//! Devices through `apply_block`: registration by the patient or an entitled hospital,
//! sessions, thresholds behind consent, batches and alerts with their replay rules, and who is
//! notified of an alert; every refusal changes nothing.

use medledger_core::{
    Hash,
    block::{Created, Refusal},
    tx::{
        ConsentTx, DeviceTx, Role, TxBody,
        consent::{AccessTx, Action, Purpose, RecordCategory, Resource, Scope, Validity},
        devices::{
            Alert, DeviceKind, Metric, ReadingBatch, RegisterDevice, SetThresholds, Severity,
            StartSession,
        },
        records::KeyRef,
    },
};

use super::*;

const HOUR: u64 = 3_600_000;

pub(super) fn dev(tx: DeviceTx, actor: &mut Actor) -> SignedTransaction {
    actor.sign_body(TxBody::Devices(tx))
}

pub(super) fn register_body(device: &Actor, patient: &Actor, kind: DeviceKind) -> DeviceTx {
    DeviceTx::Register(RegisterDevice {
        key: device.key.public_key(),
        encryption_key: device.enc.public_key(),
        patient: patient.account,
        kind,
        details: sealed(&format!("serial/{}", device.account)),
    })
}

fn start_body(device: &Actor, patient: &Actor, doctor: Option<&Actor>, tag: &str) -> DeviceTx {
    let mut keys = vec![KeyRef {
        recipient: patient.account,
        blob: Hash::of(format!("session-key/patient/{tag}").as_bytes()),
    }];
    if let Some(d) = doctor {
        keys.push(KeyRef {
            recipient: d.account,
            blob: Hash::of(format!("session-key/doctor/{tag}").as_bytes()),
        });
    }
    DeviceTx::StartSession(StartSession {
        device: device.account,
        public_key: DecryptionKey::generate().public_key(),
        expires_at_ms: None,
        doctor: doctor.map(|d| d.account),
        keys,
    })
}

pub(super) fn batch(session: Hash, first: u64, last: u64, count: u32) -> DeviceTx {
    DeviceTx::Readings(ReadingBatch {
        session,
        first_seq: first,
        last_seq: last,
        count,
        blob: Hash::of(format!("batch/{session}/{first}/{last}/{count}").as_bytes()),
        size: 100 + u64::from(count),
    })
}

fn alert(session: Hash, seq: u64, metric: Metric, thresholds: Option<Hash>) -> DeviceTx {
    DeviceTx::Alert(Alert {
        session,
        seq,
        metric,
        severity: Severity::Critical,
        reading: Hash::of(format!("reading/{session}/{seq}/{metric:?}").as_bytes()),
        thresholds,
    })
}

fn grant_device_data(net: &Net, patient: &mut Actor, grantee: &Actor) -> SignedTransaction {
    grant_of(net, patient, grantee, RecordCategory::DeviceData)
}

fn grant_of(
    net: &Net,
    patient: &mut Actor,
    grantee: &Actor,
    category: RecordCategory,
) -> SignedTransaction {
    let now = net.time;
    patient.sign_body(TxBody::Consent(ConsentTx::Grant {
        patient: patient.account,
        grantee: grantee.account,
        scope: Scope::Categories(vec![category]),
        purpose: Purpose::Treatment,
        validity: Validity { not_before_ms: now, expires_at_ms: now + 24 * HOUR },
    }))
}

fn thresholds_body(device: &Actor, metrics: Vec<Metric>) -> DeviceTx {
    DeviceTx::SetThresholds(SetThresholds {
        device: device.account,
        metrics,
        sealed: sealed(&format!("thresholds/{}/{}", device.account, fresh())),
    })
}

/// A number not returned before, for blobs that must be new.
fn fresh() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn session_id(r: &Receipt) -> Hash {
    match applied(r) {
        Some(Created::DeviceSession { id }) => *id,
        other => panic!("expected a session, got {other:?}"),
    }
}

/// Everything a refused device transaction must leave as it was.
fn device_state(net: &Net, patient: &Actor) -> String {
    let devices = net.ledger.devices_of_patient(&patient.account).unwrap();
    let mut s = format!("{devices:?}");
    for (id, _) in &devices {
        for (sid, session) in net.ledger.sessions_of_device(id).unwrap() {
            let page = net.ledger.session_readings(&sid, 0, 1000).unwrap();
            s.push_str(&format!("|{session:?}|{page:?}"));
        }
        s.push_str(&format!("|{:?}", net.ledger.account(id).unwrap()));
    }
    s.push_str(&format!("|{:?}", net.ledger.audit_trail(&patient.account, None, 10_000).unwrap()));
    s
}

/// A patient with a registered pulse oximeter and an open session on it (no doctor).
pub(super) fn with_session() -> (Net, Actor, Actor, Actor, Actor, Hash) {
    let (mut net, hospital, doctor, mut patient) = populated();
    let device = Actor::new();
    let t = dev(register_body(&device, &patient, DeviceKind::PulseOximeter), &mut patient);
    applied(&net.one(t));
    let t = dev(start_body(&device, &patient, None, "s1"), &mut patient);
    let session = session_id(&net.one(t));
    (net, hospital, doctor, patient, device, session)
}

#[test]
fn a_patient_registers_a_device_which_streams_batches_and_alerts() {
    let (mut net, _, _, mut patient, mut device, session) = with_session();
    let d = net.ledger.device(&device.account).unwrap().unwrap();
    assert_eq!(
        (d.patient, d.kind, d.session),
        (patient.account, DeviceKind::PulseOximeter, Some(session))
    );
    let account = net.ledger.account(&device.account).unwrap().unwrap();
    assert_eq!(account.role, Role::Device);
    assert_eq!(account.authority, Some(patient.account), "the patient may revoke its key");
    assert_eq!(net.ledger.devices_of_patient(&patient.account).unwrap().len(), 1);
    assert_eq!(
        net.ledger.session_key(&session, &patient.account).unwrap(),
        Some(Hash::of(b"session-key/patient/s1"))
    );

    // Readings 1-10 in a batch; 11 abnormal at once; 15 abnormal before the batch around it.
    let t = dev(batch(session, 1, 10, 10), &mut device);
    assert_eq!(applied(&net.one(t)), None);
    let t = dev(alert(session, 11, Metric::Spo2, None), &mut device);
    assert!(matches!(applied(&net.one(t)), Some(Created::DeviceAlert { .. })));
    let t = dev(alert(session, 15, Metric::HeartRate, None), &mut device);
    applied(&net.one(t));
    let t = dev(batch(session, 12, 20, 8), &mut device);
    applied(&net.one(t));
    let s = net.ledger.device_session(&session).unwrap().unwrap();
    assert_eq!((s.batch_high, s.alert_high, s.readings, s.batches, s.alerts), (20, 15, 18, 2, 2));
    assert_eq!(s.last_seq(), 20);
    let page = net.ledger.session_readings(&session, 0, 10).unwrap();
    assert_eq!(page.batches.iter().map(|b| b.first_seq).collect::<Vec<_>>(), [1, 12]);
    assert_eq!(page.alerts.iter().map(|a| a.seq).collect::<Vec<_>>(), [11, 15]);
    assert_eq!(page.next_after, None);
    // Paged one batch at a time, nothing is missed or repeated.
    let first = net.ledger.session_readings(&session, 0, 1).unwrap();
    assert_eq!((first.batches.len(), first.alerts.len(), first.next_after), (1, 0, Some(10)));
    let second = net.ledger.session_readings(&session, 10, 1).unwrap();
    assert_eq!(second.batches[0].first_seq, 12);
    assert_eq!(second.alerts.iter().map(|a| a.seq).collect::<Vec<_>>(), [11, 15]);
    // The vault keeps the batches and readings.
    assert_eq!(net.ledger.device_blob(&page.batches[0].blob).unwrap(), Some(session));
    assert_eq!(net.ledger.device_blob(&page.alerts[0].reading).unwrap(), Some(session));

    let trail = net.ledger.audit_trail(&patient.account, None, 100).unwrap();
    let names: Vec<_> = trail.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        names,
        ["device_registered", "device_session_started", "device_alert", "device_alert"]
    );

    // The patient ends the session; the device may start no new readings in it.
    let t = dev(DeviceTx::EndSession { session }, &mut patient);
    applied(&net.one(t));
    assert_eq!(net.ledger.device(&device.account).unwrap().unwrap().session, None);
}

#[test]
fn hospitals_register_devices_only_for_their_patients_or_with_consent() {
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    // The patient's own hospital may.
    let own = Actor::new();
    let t = dev(register_body(&own, &patient, DeviceKind::Thermometer), &mut hospital);
    assert_eq!(applied(&net.one(t)), Some(&Created::Account { account: own.account }));
    assert_eq!(net.ledger.account(&own.account).unwrap().unwrap().hospital, Some(hospital.account));
    // Another hospital may not, without the patient's consent.
    let mut other = Actor::new();
    applied(&net.admit(&other));
    let before = device_state(&net, &patient);
    let d2 = Actor::new();
    let t = dev(register_body(&d2, &patient, DeviceKind::GlucoseMeter), &mut other);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    // A grant for imaging is not consent for device data.
    assert_eq!(device_state(&net, &patient), before);
    let t = grant_of(&net, &mut patient, &other, RecordCategory::Imaging);
    applied(&net.one(t));
    let before = device_state(&net, &patient);
    let t = dev(register_body(&d2, &patient, DeviceKind::GlucoseMeter), &mut other);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    // Doctors register no devices; nor does another patient.
    let t = dev(register_body(&d2, &patient, DeviceKind::GlucoseMeter), &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(device_state(&net, &patient), before);
    let mut stranger = Actor::new();
    let t = register(&mut hospital, &stranger);
    applied(&net.one(t));
    let before = device_state(&net, &patient);
    let t = dev(register_body(&d2, &patient, DeviceKind::GlucoseMeter), &mut stranger);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    // The same device key twice (with new sealed details), and a patient that is not one,
    // are refused.
    let DeviceTx::Register(mut again) = register_body(&own, &patient, DeviceKind::Thermometer)
    else {
        unreachable!()
    };
    again.details = sealed("the same device's details sealed again");
    let t = dev(DeviceTx::Register(again), &mut patient);
    assert!(matches!(refusal(&net.one(t)), Refusal::AlreadyExists { .. }));
    let t = dev(register_body(&d2, &doctor, DeviceKind::Thermometer), &mut hospital);
    assert!(matches!(refusal(&net.one(t)), Refusal::NotFound { .. }));
    assert_eq!(device_state(&net, &patient), before);
    // With consent for device data, the other hospital may.
    let t = grant_device_data(&net, &mut patient, &other);
    applied(&net.one(t));
    let t = dev(register_body(&d2, &patient, DeviceKind::GlucoseMeter), &mut other);
    applied(&net.one(t));
    assert_eq!(net.ledger.devices_of_patient(&patient.account).unwrap().len(), 2);
}

#[test]
fn readings_from_an_unregistered_or_retired_device_are_refused() {
    let (mut net, mut hospital, _, mut patient, mut device, session) = with_session();
    let before = device_state(&net, &patient);
    // A key the ledger never registered.
    let mut unknown = Actor::new();
    let t = dev(batch(session, 1, 5, 5), &mut unknown);
    assert!(matches!(refusal(&net.one(t)), Refusal::UnknownSigner { .. }));
    let t = dev(alert(session, 1, Metric::Spo2, None), &mut unknown);
    assert!(matches!(refusal(&net.one(t)), Refusal::UnknownSigner { .. }));
    assert_eq!(device_state(&net, &patient), before);
    // Another registered device naming this session.
    let mut other = Actor::new();
    let t = dev(register_body(&other, &patient, DeviceKind::PulseOximeter), &mut hospital);
    applied(&net.one(t));
    let before = device_state(&net, &patient);
    let t = dev(batch(session, 1, 5, 5), &mut other);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    let t = dev(alert(session, 1, Metric::Spo2, None), &mut other);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(device_state(&net, &patient), before);
    // Retired: nothing it signs is applied.
    let t = dev(DeviceTx::Retire { device: device.account }, &mut patient);
    applied(&net.one(t));
    assert!(net.ledger.device_session(&session).unwrap().unwrap().ended_at.is_some());
    let before = device_state(&net, &patient);
    let t = dev(batch(session, 1, 5, 5), &mut device);
    assert!(
        matches!(refusal(&net.one(t)), Refusal::Unauthorised { reason } if reason.contains("retired"))
    );
    let t = dev(alert(session, 1, Metric::Spo2, None), &mut device);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    let t = dev(start_body(&device, &patient, None, "after-retire"), &mut patient);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(device_state(&net, &patient), before);
}

#[test]
fn readings_for_an_ended_or_expired_session_are_refused() {
    let (mut net, _, _, mut patient, mut device, session) = with_session();
    let t = dev(batch(session, 1, 5, 5), &mut device);
    applied(&net.one(t));
    let t = dev(DeviceTx::EndSession { session }, &mut device);
    applied(&net.one(t));
    let before = device_state(&net, &patient);
    let t = dev(batch(session, 6, 10, 5), &mut device);
    assert!(matches!(refusal(&net.one(t)), Refusal::SessionNotOpen { .. }));
    let t = dev(alert(session, 6, Metric::Spo2, None), &mut device);
    assert!(matches!(refusal(&net.one(t)), Refusal::SessionNotOpen { .. }));
    let t = dev(DeviceTx::EndSession { session }, &mut patient);
    assert!(matches!(refusal(&net.one(t)), Refusal::SessionNotOpen { .. }));
    assert_eq!(device_state(&net, &patient), before);

    // A session with an expiry takes readings until its block time passes.
    let DeviceTx::StartSession(mut s) = start_body(&device, &patient, None, "s2") else {
        unreachable!()
    };
    s.expires_at_ms = Some(net.time + 10_000);
    let t = dev(DeviceTx::StartSession(s), &mut patient);
    let expiring = session_id(&net.one(t));
    let t = dev(batch(expiring, 1, 5, 5), &mut device);
    applied(&net.one(t));
    let later = net.time + 10_000;
    let before = device_state(&net, &patient);
    let t = dev(batch(expiring, 6, 10, 5), &mut device);
    let r = net.block_at(later, vec![t]).pop().unwrap();
    assert!(
        matches!(refusal(&r), Refusal::SessionNotOpen { reason, .. } if reason.contains("expired"))
    );
    assert_eq!(device_state(&net, &patient), before);
    // A new session may start once the old one has expired.
    let t = dev(start_body(&device, &patient, None, "s3"), &mut patient);
    session_id(&net.one(t));
}

#[test]
fn replayed_readings_are_refused() {
    let (mut net, _, _, patient, mut device, session) = with_session();
    let first = dev(batch(session, 1, 10, 10), &mut device);
    applied(&net.one(first.clone()));
    let before = device_state(&net, &patient);
    // The same transaction again.
    assert!(matches!(refusal(&net.one(first)), Refusal::Duplicate { .. }));
    // The same readings re-signed with a new nonce: their blob belongs to the session already.
    let t = dev(batch(session, 1, 10, 10), &mut device);
    assert!(matches!(
        refusal(&net.one(t)),
        Refusal::Invalid { reason } if reason.contains("already belongs to device session")
    ));
    device.nonce -= 1;
    // Old numbers in a new blob, an overlapping batch, an old number.
    let DeviceTx::Readings(mut again) = batch(session, 1, 10, 10) else { unreachable!() };
    again.blob = Hash::of(b"the same readings sealed again");
    let t = dev(DeviceTx::Readings(again), &mut device);
    assert!(matches!(refusal(&net.one(t)), Refusal::ReplayedReading { last: 10, got: 1, .. }));
    device.nonce -= 1;
    let t = dev(batch(session, 5, 15, 11), &mut device);
    assert!(matches!(refusal(&net.one(t)), Refusal::ReplayedReading { .. }));
    device.nonce -= 1;
    let t = dev(alert(session, 3, Metric::Spo2, None), &mut device);
    assert!(matches!(refusal(&net.one(t)), Refusal::ReplayedReading { got: 3, .. }));
    device.nonce -= 1;
    assert_eq!(device_state(&net, &patient), before);
    // An alert once, not twice (re-signed); and a batch cannot hold the alerted number too.
    let t = dev(alert(session, 12, Metric::Spo2, None), &mut device);
    applied(&net.one(t));
    let before = device_state(&net, &patient);
    let t = dev(alert(session, 12, Metric::HeartRate, None), &mut device);
    assert!(matches!(refusal(&net.one(t)), Refusal::ReplayedReading { got: 12, .. }));
    device.nonce -= 1;
    let t = dev(batch(session, 11, 13, 3), &mut device);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    device.nonce -= 1;
    // Malformed ranges.
    for body in [batch(session, 0, 13, 3), batch(session, 14, 13, 1), batch(session, 11, 13, 0)] {
        let t = dev(body, &mut device);
        assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
        device.nonce -= 1;
    }
    assert_eq!(device_state(&net, &patient), before);
    let t = dev(batch(session, 11, 13, 2), &mut device);
    applied(&net.one(t));
}

#[test]
fn thresholds_need_the_patients_consent() {
    let (mut net, mut hospital, mut doctor, mut patient, device, _) = with_session();
    let before = device_state(&net, &patient);
    // A doctor of the patient's own hospital, without a grant.
    let t = dev(thresholds_body(&device, vec![Metric::Spo2]), &mut doctor);
    assert!(
        matches!(refusal(&net.one(t)), Refusal::Unauthorised { reason } if reason.contains("consent"))
    );
    assert_eq!(device_state(&net, &patient), before);
    // With a grant that does not cover device data.
    let t = grant_of(&net, &mut patient, &doctor, RecordCategory::LabReport);
    applied(&net.one(t));
    let before = device_state(&net, &patient);
    let t = dev(thresholds_body(&device, vec![Metric::Spo2]), &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    // The patient and the hospital are no doctors.
    let t = dev(thresholds_body(&device, vec![Metric::Spo2]), &mut patient);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    let t = dev(thresholds_body(&device, vec![Metric::Spo2]), &mut hospital);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(device_state(&net, &patient), before);

    // With consent for device data: allowed, for metrics the device measures only.
    let t = grant_device_data(&net, &mut patient, &doctor);
    let grant = match applied(&net.one(t)) {
        Some(Created::Consent { id }) => *id,
        other => panic!("{other:?}"),
    };
    let before = device_state(&net, &patient);
    for metrics in [vec![Metric::Glucose], vec![], vec![Metric::Spo2, Metric::Spo2]] {
        let t = dev(thresholds_body(&device, metrics), &mut doctor);
        assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    }
    assert_eq!(device_state(&net, &patient), before);
    let t = dev(thresholds_body(&device, vec![Metric::HeartRate, Metric::Spo2]), &mut doctor);
    let id = match applied(&net.one(t)) {
        Some(Created::Thresholds { id }) => *id,
        other => panic!("{other:?}"),
    };
    let d = net.ledger.device(&device.account).unwrap().unwrap();
    assert_eq!(d.thresholds, Some(id));
    assert_eq!(net.ledger.thresholds(&id).unwrap().unwrap().doctor, doctor.account);
    let trail = net.ledger.audit_trail(&patient.account, None, 100).unwrap();
    assert_eq!(trail.last().unwrap().kind.name(), "device_thresholds_set");

    // Once the patient revokes the grant, the doctor may no longer.
    let t = patient.sign_body(TxBody::Consent(ConsentTx::Revoke { grant }));
    applied(&net.one(t));
    net.block(vec![]);
    let before = device_state(&net, &patient);
    let t = dev(thresholds_body(&device, vec![Metric::Spo2]), &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(device_state(&net, &patient), before);
}

#[test]
fn an_alert_notifies_the_patient_the_doctors_and_their_hospitals() {
    let (mut net, hospital, doctor, mut patient) = populated();
    // A second doctor at another hospital, consented to, sets the thresholds.
    let mut other_hospital = Actor::new();
    applied(&net.admit(&other_hospital));
    let mut specialist = Actor::new();
    let t = onboard(&mut other_hospital, &specialist);
    applied(&net.one(t));
    let mut device = Actor::new();
    let t = dev(register_body(&device, &patient, DeviceKind::BloodPressureMonitor), &mut patient);
    applied(&net.one(t));
    let t = grant_device_data(&net, &mut patient, &specialist);
    applied(&net.one(t));
    let t = dev(thresholds_body(&device, vec![Metric::SystolicPressure]), &mut specialist);
    let thresholds = match applied(&net.one(t)) {
        Some(Created::Thresholds { id }) => *id,
        other => panic!("{other:?}"),
    };
    // The session names the patient's own doctor as responsible.
    let t = dev(start_body(&device, &patient, Some(&doctor), "bp"), &mut patient);
    let session = session_id(&net.one(t));

    let before = device_state(&net, &patient);
    // A metric the device does not measure, thresholds that do not cover it, or unknown ones.
    let t = dev(alert(session, 1, Metric::Spo2, None), &mut device);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    device.nonce -= 1;
    let t = dev(alert(session, 1, Metric::HeartRate, Some(thresholds)), &mut device);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    device.nonce -= 1;
    let t = dev(alert(session, 1, Metric::SystolicPressure, Some(Hash::of(b"nope"))), &mut device);
    assert!(matches!(refusal(&net.one(t)), Refusal::NotFound { .. }));
    device.nonce -= 1;
    assert_eq!(device_state(&net, &patient), before);

    let t = dev(alert(session, 1, Metric::SystolicPressure, Some(thresholds)), &mut device);
    let event = match applied(&net.one(t)) {
        Some(Created::DeviceAlert { event }) => *event,
        other => panic!("{other:?}"),
    };
    for who in [&patient, &doctor, &hospital, &specialist, &other_hospital] {
        let trail = net.ledger.audit_trail(&who.account, None, 100).unwrap();
        let e = trail
            .iter()
            .find(|e| e.seq == event)
            .unwrap_or_else(|| panic!("{} was not told of the alert: {trail:?}", who.account));
        match &e.kind {
            medledger_ledger::audit::AuditKind::DeviceAlert { metric, severity, seq, .. } => {
                assert_eq!(
                    (*metric, *severity, *seq),
                    (Metric::SystolicPressure, Severity::Critical, 1)
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // Someone unrelated is not.
    let outsider = Actor::new();
    assert!(net.ledger.audit_trail(&outsider.account, None, 100).unwrap().is_empty());
}

#[test]
fn sessions_are_the_patients_with_the_key_wrapped_to_them() {
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    let mut device = Actor::new();
    let t = dev(register_body(&device, &patient, DeviceKind::PulseOximeter), &mut patient);
    applied(&net.one(t));
    let before = device_state(&net, &patient);
    // Not the patient: the registering hospital, the doctor, the device itself.
    let body = start_body(&device, &patient, None, "x");
    for signer in [&mut hospital, &mut doctor, &mut device] {
        let t = dev(body.clone(), signer);
        assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    }
    // The key must be wrapped to the patient, and to the named doctor, and to no one else.
    let bad_keys = |keys: Vec<KeyRef>, doctor: Option<&Actor>| {
        DeviceTx::StartSession(StartSession {
            device: device.account,
            public_key: DecryptionKey::generate().public_key(),
            expires_at_ms: None,
            doctor: doctor.map(|d| d.account),
            keys,
        })
    };
    let k =
        |who: &Actor, tag: &str| KeyRef { recipient: who.account, blob: Hash::of(tag.as_bytes()) };
    for body in [
        bad_keys(vec![], None),
        bad_keys(vec![k(&doctor, "d")], Some(&doctor)),
        bad_keys(vec![k(&patient, "p")], Some(&doctor)),
        bad_keys(vec![k(&patient, "p"), k(&hospital, "h")], None),
        bad_keys(vec![k(&patient, "same"), k(&doctor, "same")], Some(&doctor)),
        bad_keys(vec![k(&patient, "p"), k(&hospital, "h")], Some(&hospital)),
    ] {
        let t = dev(body, &mut patient);
        assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    }
    assert_eq!(device_state(&net, &patient), before);
    let t = dev(start_body(&device, &patient, Some(&doctor), "ok"), &mut patient);
    let session = session_id(&net.one(t));
    assert!(net.ledger.session_key(&session, &doctor.account).unwrap().is_some());
    // One open session per device.
    let before = device_state(&net, &patient);
    let t = dev(start_body(&device, &patient, None, "second"), &mut patient);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    // The doctor may not end it; the device may.
    let t = dev(DeviceTx::EndSession { session }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(device_state(&net, &patient), before);
    let t = dev(DeviceTx::EndSession { session }, &mut device);
    applied(&net.one(t));
}

#[test]
fn a_device_signs_nothing_but_device_transactions() {
    let (mut net, _, doctor, patient, mut device, _) = with_session();
    let before = device_state(&net, &patient);
    let now = net.time;
    let t = device.sign_body(TxBody::Consent(ConsentTx::Grant {
        patient: patient.account,
        grantee: doctor.account,
        scope: Scope::All,
        purpose: Purpose::Treatment,
        validity: Validity { not_before_ms: now, expires_at_ms: now + HOUR },
    }));
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    device.nonce -= 1;
    let t = device.sign_body(TxBody::Access(AccessTx {
        resource: Resource {
            patient: patient.account,
            category: Some(RecordCategory::DeviceData),
            record: None,
            case: None,
        },
        action: Action::Read,
        purpose: Purpose::Treatment,
    }));
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    device.nonce -= 1;
    let other = Actor::new();
    let t = dev(register_body(&other, &patient, DeviceKind::Thermometer), &mut device);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(device_state(&net, &patient), before);
    // The patient, as the device's authority, may revoke its key.
    let mut patient = patient;
    let t = patient.sign(RegistryTx::RevokeKey { account: device.account, replacement: None });
    applied(&net.one(t));
}

#[test]
fn a_ledger_with_devices_verifies_and_a_tampered_session_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("devices.redb");
    let mut net = Net::with(|g| Ledger::create(&path, g).unwrap());
    let mut hospital = Actor::new();
    let mut doctor = Actor::new();
    let mut patient = Actor::new();
    let mut device = Actor::new();
    net.admit(&hospital);
    let t = onboard(&mut hospital, &doctor);
    net.one(t);
    let t = register(&mut hospital, &patient);
    net.one(t);
    let t = dev(register_body(&device, &patient, DeviceKind::VitalSignsMonitor), &mut patient);
    applied(&net.one(t));
    let t = grant_device_data(&net, &mut patient, &doctor);
    applied(&net.one(t));
    let t = dev(thresholds_body(&device, vec![Metric::Temperature]), &mut doctor);
    applied(&net.one(t));
    let t = dev(start_body(&device, &patient, Some(&doctor), "v"), &mut patient);
    let session = session_id(&net.one(t));
    let t = dev(alert(session, 3, Metric::Temperature, None), &mut device);
    applied(&net.one(t));
    let t = dev(batch(session, 1, 9, 8), &mut device);
    applied(&net.one(t));
    drop(net);
    let report = medledger_ledger::verify::verify_ledger(&path, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.refused, 0);
    Ledger::open(&path).unwrap();
    // Edit the session (its counters) in place: refused at open and by verify.
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let def: redb::TableDefinition<&[u8; 32], &[u8]> =
            redb::TableDefinition::new("device_sessions");
        let mut t = txn.open_table(def).unwrap();
        let (k, mut v) = {
            let (k, v) = redb::ReadableTable::first(&t).unwrap().unwrap();
            (*k.value(), v.value().to_vec())
        };
        let last = v.len() - 1;
        v[last] ^= 1;
        t.insert(&k, v.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    assert!(Ledger::open(&path).is_err());
    assert!(medledger_ledger::verify::verify_ledger(&path, &mut |_, _, _| {}).is_err());
}
