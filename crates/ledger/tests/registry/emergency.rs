//! Emergency access through `apply_block` and `authorize`: the profile and its logged reads,
//! break-glass (a coded reason and a sealed text long enough to hold one, active doctor only,
//! bounded window), escrow releases only
//! while open, and hospital reviews; every refusal changes nothing.

use medledger_core::{
    Hash,
    block::{Created, Refusal},
    keys::DecryptionKey,
    tx::{
        EmergencyTx, RegistryTx, TxBody,
        consent::{Action, Basis, Decision, Denial, Purpose, RecordCategory, Resource},
        emergency::{
            EmergencyProfile, MAX_SEALED_TEXT_BYTES, MIN_SEALED_FINDING_BYTES,
            MIN_SEALED_REASON_BYTES, ReasonCode,
        },
        records::KeyRef,
    },
};

use super::*;

const HOUR: u64 = 3_600_000;

/// Stands in for a text sealed by the wallet: the ledger sees only its length.
fn sealed(len: usize) -> Vec<u8> {
    vec![0xA5; len]
}

fn declare(patient: &Actor, reason: Vec<u8>) -> EmergencyTx {
    EmergencyTx::BreakGlass { patient: patient.account, code: ReasonCode::Unconscious, reason }
}

fn finding(len: usize) -> Vec<u8> {
    sealed(len)
}

pub(super) fn em(tx: EmergencyTx, actor: &mut Actor) -> SignedTransaction {
    actor.sign_body(TxBody::Emergency(tx))
}

pub(super) fn profile(custodian: &Actor, open_records: bool) -> EmergencyProfile {
    EmergencyProfile {
        profile: Hash::of(b"sealed profile"),
        key_check: Hash::of(b"check"),
        emergency_key: DecryptionKey::generate().public_key(),
        open_records,
        escrow: vec![KeyRef { recipient: custodian.account, blob: Hash::of(b"piece") }],
        threshold: 1,
    }
}

fn lab(patient: &Actor) -> Resource {
    Resource {
        patient: patient.account,
        category: Some(RecordCategory::LabReport),
        record: None,
        case: None,
    }
}

fn decide(net: &Net, who: &Actor, patient: &Actor) -> Decision {
    net.ledger
        .authorize(&who.account, Action::Read, &lab(patient), Purpose::Emergency, None)
        .unwrap()
}

fn emergency_state(net: &Net, patient: &Actor, hospital: &Actor) -> String {
    format!(
        "{:?}|{:?}|{:?}",
        net.ledger.emergency_profile(&patient.account).unwrap(),
        net.ledger.open_reviews(&hospital.account).unwrap(),
        net.ledger.audit_trail(&patient.account, None, 1000).unwrap()
    )
}

fn break_glass(net: &mut Net, doctor: &mut Actor, patient: &Actor) -> (Hash, u64) {
    let t = em(declare(patient, sealed(MIN_SEALED_REASON_BYTES)), doctor);
    match applied(&net.one(t)) {
        Some(Created::BreakGlass { id, until_ms }) => (*id, *until_ms),
        other => panic!("{other:?}"),
    }
}

#[test]
fn break_glass_opens_records_for_the_window_only_if_the_patient_allowed_it() {
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    // No profile: break-glass is logged but opens nothing.
    let (first, _) = break_glass(&mut net, &mut doctor, &patient);
    assert_eq!(decide(&net, &doctor, &patient), Decision::Deny(Denial::NoGrant));
    let t = em(EmergencyTx::End { break_glass: first }, &mut doctor);
    applied(&net.one(t));
    // A profile that allows it: the next break-glass opens records until the window closes.
    let t = em(
        EmergencyTx::SetProfile { patient: patient.account, profile: profile(&hospital, true) },
        &mut patient,
    );
    applied(&net.one(t));
    let (id, until) = break_glass(&mut net, &mut doctor, &patient);
    assert_eq!(until, net.time + 4 * HOUR, "the default window is four hours");
    assert_eq!(decide(&net, &doctor, &patient), Decision::Allow(Basis::BreakGlass { id }));
    // One millisecond before the end it still holds; at the end it does not.
    let t = em(EmergencyTx::ReadProfile { patient: patient.account }, &mut doctor);
    net.block_at(until - 1, vec![t]);
    assert_eq!(decide(&net, &doctor, &patient), Decision::Allow(Basis::BreakGlass { id }));
    net.block_at(until, vec![]);
    assert_eq!(decide(&net, &doctor, &patient), Decision::Deny(Denial::NoGrant));
    // The escrow cannot be released after the window either.
    let before = emergency_state(&net, &patient, &hospital);
    let t =
        em(EmergencyTx::ReleaseEscrow { break_glass: id, piece: Hash::of(b"late") }, &mut hospital);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    assert_eq!(emergency_state(&net, &patient, &hospital), before);
    // A deny rule still wins over break-glass.
    let (_, _) = break_glass(&mut net, &mut doctor, &patient);
    let t = patient.sign_body(TxBody::Consent(medledger_core::tx::ConsentTx::Deny {
        patient: patient.account,
        rule: medledger_core::tx::consent::DenyRule {
            grantee: Some(doctor.account),
            grantee_role: None,
            category: None,
            purpose: None,
        },
    }));
    applied(&net.one(t));
    assert!(matches!(decide(&net, &doctor, &patient), Decision::Deny(Denial::DenyRule { .. })));
}

#[test]
fn break_glass_needs_a_reason_and_an_active_doctor() {
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    let t = em(
        EmergencyTx::SetProfile { patient: patient.account, profile: profile(&hospital, true) },
        &mut patient,
    );
    applied(&net.one(t));
    let before = emergency_state(&net, &patient, &hospital);
    // M6: no reason, or a ciphertext too short to hold 20 characters sealed to the patient,
    // the hospital and the regulator, or too long, is refused.
    for len in [0, 1, MIN_SEALED_REASON_BYTES - 1, MAX_SEALED_TEXT_BYTES + 1] {
        let t = em(declare(&patient, sealed(len)), &mut doctor);
        assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }), "{len}");
    }
    // A patient or a hospital cannot declare it.
    let t = em(declare(&patient, sealed(MIN_SEALED_REASON_BYTES)), &mut hospital);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(emergency_state(&net, &patient, &hospital), before);
    // A doctor whose key was revoked cannot either.
    let t = hospital.sign(RegistryTx::RevokeKey { account: doctor.account, replacement: None });
    applied(&net.one(t));
    let before = emergency_state(&net, &patient, &hospital);
    let t = em(declare(&patient, sealed(MIN_SEALED_REASON_BYTES)), &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::KeyNotActive { .. }));
    assert_eq!(emergency_state(&net, &patient, &hospital), before);
}

#[test]
fn escrow_releases_reviews_and_the_window_are_checked() {
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    let mut other = Actor::new();
    applied(&net.admit(&other));
    let t = em(
        EmergencyTx::SetProfile { patient: patient.account, profile: profile(&hospital, false) },
        &mut patient,
    );
    applied(&net.one(t));
    // Reading the profile is logged, and told to the patient (and the doctor's hospital).
    let t = em(EmergencyTx::ReadProfile { patient: patient.account }, &mut doctor);
    assert!(matches!(
        applied(&net.one(t)),
        Some(Created::Access { decision: Decision::Allow(Basis::EmergencyProfile), .. })
    ));
    let kinds: Vec<_> = net
        .ledger
        .audit_trail(&hospital.account, None, 100)
        .unwrap()
        .iter()
        .map(|e| e.kind.name())
        .collect();
    assert!(kinds.contains(&"emergency_profile_read"), "{kinds:?}");

    let (id, _) = break_glass(&mut net, &mut doctor, &patient);
    assert_eq!(net.ledger.open_reviews(&hospital.account).unwrap().len(), 1);
    // Only a custodian releases; the custodian does.
    let before = emergency_state(&net, &patient, &hospital);
    let t = em(EmergencyTx::ReleaseEscrow { break_glass: id, piece: Hash::of(b"p") }, &mut other);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(emergency_state(&net, &patient, &hospital), before);
    let t =
        em(EmergencyTx::ReleaseEscrow { break_glass: id, piece: Hash::of(b"p") }, &mut hospital);
    applied(&net.one(t));
    assert_eq!(net.ledger.escrow_releases(&id).unwrap(), vec![(hospital.account, Hash::of(b"p"))]);

    // Only the doctor's hospital reviews, once, with a finding.
    let before = emergency_state(&net, &patient, &hospital);
    let t = em(
        EmergencyTx::FileReview { break_glass: id, finding: finding(MIN_SEALED_FINDING_BYTES) },
        &mut other,
    );
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    for len in [0, MIN_SEALED_FINDING_BYTES - 1] {
        let t =
            em(EmergencyTx::FileReview { break_glass: id, finding: finding(len) }, &mut hospital);
        assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }), "{len}");
    }
    assert_eq!(emergency_state(&net, &patient, &hospital), before);
    let t = em(
        EmergencyTx::FileReview { break_glass: id, finding: finding(MIN_SEALED_FINDING_BYTES) },
        &mut hospital,
    );
    applied(&net.one(t));
    assert!(net.ledger.open_reviews(&hospital.account).unwrap().is_empty());
    let t = em(EmergencyTx::FileReview { break_glass: id, finding: finding(200) }, &mut hospital);
    assert!(matches!(refusal(&net.one(t)), Refusal::AlreadyExists { .. }));

    // Ending: by the doctor, once. The window: by the regulator only.
    let t = em(EmergencyTx::End { break_glass: id }, &mut doctor);
    applied(&net.one(t));
    let t = em(EmergencyTx::End { break_glass: id }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    let t = em(EmergencyTx::SetWindow { minutes: 30 }, &mut hospital);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(net.ledger.emergency_window_ms().unwrap(), 4 * HOUR);
    let mut regulator = std::mem::replace(&mut net.regulator, Actor::new());
    let t = em(EmergencyTx::SetWindow { minutes: 30 }, &mut regulator);
    applied(&net.one(t));
    net.regulator = regulator;
    let (_, until) = break_glass(&mut net, &mut doctor, &patient);
    assert_eq!(until, net.time + 30 * 60_000);
}

#[test]
fn a_ledger_with_emergency_state_verifies_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("emergency.redb");
    let mut net = Net::with(|g| Ledger::create(&path, g).unwrap());
    let mut hospital = Actor::new();
    let mut doctor = Actor::new();
    let mut patient = Actor::new();
    net.admit(&hospital);
    let t = onboard(&mut hospital, &doctor);
    net.one(t);
    let t = register(&mut hospital, &patient);
    net.one(t);
    let t = em(
        EmergencyTx::SetProfile { patient: patient.account, profile: profile(&hospital, true) },
        &mut patient,
    );
    applied(&net.one(t));
    let (id, _) = break_glass(&mut net, &mut doctor, &patient);
    let t =
        em(EmergencyTx::ReleaseEscrow { break_glass: id, piece: Hash::of(b"p") }, &mut hospital);
    applied(&net.one(t));
    let t = em(EmergencyTx::FileReview { break_glass: id, finding: finding(200) }, &mut hospital);
    applied(&net.one(t));
    let mut regulator = std::mem::replace(&mut net.regulator, Actor::new());
    let t = em(EmergencyTx::SetWindow { minutes: 60 }, &mut regulator);
    applied(&net.one(t));
    drop(net);
    let report = medledger_ledger::verify::verify_ledger(&path, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.refused, 0);
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.emergency_window_ms().unwrap(), 3_600_000);
}

/// A custodian hospital that is not the doctor's learns of a break-glass on the patient from
/// its own trail (so that it knows its piece is needed), and its trail holds its release; a
/// hospital that is neither learns nothing.
#[test]
fn a_custodian_is_told_of_a_break_glass_and_of_its_own_release() {
    let (mut net, _hospital, mut doctor, mut patient) = populated();
    let mut custodian = Actor::new();
    applied(&net.admit(&custodian));
    let stranger = Actor::new();
    applied(&net.admit(&stranger));
    let t = em(
        EmergencyTx::SetProfile { patient: patient.account, profile: profile(&custodian, true) },
        &mut patient,
    );
    applied(&net.one(t));
    let kinds = |net: &Net, who: &Actor| -> Vec<&'static str> {
        net.ledger
            .audit_trail(&who.account, None, 100)
            .unwrap()
            .iter()
            .map(|e| e.kind.name())
            .collect()
    };
    let (id, _) = break_glass(&mut net, &mut doctor, &patient);
    assert_eq!(kinds(&net, &custodian), vec!["break_glass"]);
    let t =
        em(EmergencyTx::ReleaseEscrow { break_glass: id, piece: Hash::of(b"p") }, &mut custodian);
    applied(&net.one(t));
    assert_eq!(kinds(&net, &custodian), vec!["break_glass", "escrow_released"]);
    assert!(kinds(&net, &stranger).is_empty(), "{:?}", kinds(&net, &stranger));
}

/// A custodian releases its piece once per break-glass: a second release for the same
/// break-glass (a reloaded form, a resent command) is refused and changes nothing, while a
/// new break-glass on the same patient gets its own release.
#[test]
fn a_custodian_releases_its_piece_once_per_break_glass() {
    let (mut net, hospital, mut doctor, mut patient) = populated();
    let mut custodian = Actor::new();
    applied(&net.admit(&custodian));
    let t = em(
        EmergencyTx::SetProfile { patient: patient.account, profile: profile(&custodian, true) },
        &mut patient,
    );
    applied(&net.one(t));
    let (id, _) = break_glass(&mut net, &mut doctor, &patient);
    let release = |id: Hash, piece: &[u8], custodian: &mut Actor| {
        em(EmergencyTx::ReleaseEscrow { break_glass: id, piece: Hash::of(piece) }, custodian)
    };
    applied(&net.one(release(id, b"first", &mut custodian)));
    let account = custodian.account;
    let trail = |net: &Net| net.ledger.audit_trail(&account, None, 100).unwrap().len();
    let (before, events) = (emergency_state(&net, &patient, &hospital), trail(&net));
    // A repeat wraps the piece afresh: a new blob (the same blob is refused as owned already).
    match refusal(&net.one(release(id, b"second", &mut custodian))) {
        Refusal::AlreadyExists { what } => assert!(what.contains("released already"), "{what}"),
        other => panic!("a second release was not refused as one: {other:?}"),
    }
    assert_eq!(
        net.ledger.escrow_releases(&id).unwrap(),
        vec![(custodian.account, Hash::of(b"first"))]
    );
    assert_eq!(emergency_state(&net, &patient, &hospital), before);
    assert_eq!(trail(&net), events, "a refused release reached the custodian's trail");
    // Another break-glass is another release.
    let (next, _) = break_glass(&mut net, &mut doctor, &patient);
    applied(&net.one(release(next, b"again", &mut custodian)));
    assert_eq!(
        net.ledger.escrow_releases(&next).unwrap(),
        vec![(custodian.account, Hash::of(b"again"))]
    );
}
