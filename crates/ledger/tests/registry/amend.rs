//! Amending a patient's registration (issue 10 item 6): the registering hospital replaces the
//! sealed references and the patient's trail records it; every other signer, an unknown
//! patient, an amendment that changes nothing and a suspended hospital are refused with
//! nothing changed. And [`Ledger::simulate`] runs the same code without writing anything.

use medledger_core::{
    block::{Outcome, Refusal},
    ids::PatientId,
    tx::{AmendPatient, RegistryTx},
};
use medledger_ledger::audit::AuditKind;

use super::*;

fn patient_id(net: &Net, patient: &Actor) -> PatientId {
    net.ledger.patient_id_of(&patient.account).unwrap().expect("a registered patient")
}

/// An amendment of `patient`'s details that keeps `attendant` (the registered one).
fn amend(
    signer: &mut Actor,
    patient: PatientId,
    tag: &str,
    attendant: SealedRef,
) -> SignedTransaction {
    signer.sign(RegistryTx::AmendPatient(AmendPatient {
        patient,
        details: sealed(&format!("details {tag}")),
        attendant,
    }))
}

/// The patient's registration and trail, to prove that a refusal changed nothing.
fn registration(net: &Net, patient: &Actor) -> String {
    let pid = patient_id(net, patient);
    format!(
        "{:?}|{:?}",
        net.ledger.patient(pid).unwrap(),
        net.ledger.audit_trail(&patient.account, None, 1000).unwrap()
    )
}

#[test]
fn the_registering_hospital_amends_a_patients_details_and_the_trail_records_it() {
    let (mut net, mut hospital, _, patient) = populated();
    let pid = patient_id(&net, &patient);
    let r = net.one(amend(&mut hospital, pid, "corrected", attendant_of(&patient)));
    applied(&r);
    let entry = net.ledger.patient(pid).unwrap().unwrap();
    assert_eq!(entry.details, sealed("details corrected"));
    assert_eq!(entry.attendant, attendant_of(&patient));
    assert_eq!(entry.hospital, hospital.account, "still registered by the same hospital");
    let trail = net.ledger.audit_trail(&patient.account, None, 100).unwrap();
    let last = trail.last().expect("an event in the patient's trail");
    assert_eq!(last.actor, hospital.account);
    assert_eq!(last.tx_hash, r.tx_hash);
    assert_eq!(
        last.kind,
        AuditKind::PatientAmended {
            details: sealed("details corrected"),
            attendant: attendant_of(&patient)
        }
    );
}

#[test]
fn only_the_registering_hospital_may_amend_and_only_a_real_change() {
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    let mut other = Actor::new();
    applied(&net.admit(&other));
    let pid = patient_id(&net, &patient);
    let before = registration(&net, &patient);

    let attendant = attendant_of(&patient);
    // A doctor and the patient are no hospital.
    for signer in [&mut doctor, &mut patient] {
        let r = net.one(amend(signer, pid, "forged", attendant));
        assert!(matches!(refusal(&r), Refusal::Unauthorised { .. }), "{r:?}");
        signer.nonce -= 1;
    }
    // Another hospital is told what a Patient-ID nobody holds tells it (M4): nothing of
    // whether the patient exists, nor of who registered them.
    let missing = PatientId(if pid.0 == 1 { 2 } else { 1 });
    for (other_hospital, id) in [(true, pid), (true, missing), (false, missing)] {
        let signer = if other_hospital { &mut other } else { &mut hospital };
        let r = net.one(amend(signer, id, "forged", sealed(&format!("attendant of {id}"))));
        assert_eq!(refusal(&r), &Refusal::NotFound { what: format!("patient {id}") }, "{r:?}");
        signer.nonce -= 1;
    }
    let same = hospital.sign(RegistryTx::AmendPatient(AmendPatient {
        patient: pid,
        details: details_of(&patient),
        attendant: attendant_of(&patient),
    }));
    assert!(matches!(refusal(&net.one(same)), Refusal::Invalid { .. }));
    hospital.nonce -= 1;
    assert_eq!(registration(&net, &patient), before, "a refusal changed the registration");

    // A suspended registering hospital may not amend either.
    let tx = net
        .regulator
        .sign(RegistryTx::SuspendHospital { hospital: hospital.account, reason: "audit".into() });
    applied(&net.one(tx));
    let r = net.one(amend(&mut hospital, pid, "while suspended", attendant_of(&patient)));
    assert!(matches!(refusal(&r), Refusal::Suspended { .. }), "{r:?}");
    hospital.nonce -= 1;
    assert_eq!(registration(&net, &patient), before);
}

#[test]
fn simulation_runs_apply_and_writes_nothing() {
    let (mut net, mut hospital, mut doctor, patient) = populated();
    let pid = patient_id(&net, &patient);
    let hospital_id = hospital.account;
    let hospital_account = |net: &Net| format!("{:?}", net.ledger.account(&hospital_id).unwrap());
    let (tip, before, nonce) =
        (net.ledger.tip(), registration(&net, &patient), hospital_account(&net));

    let good = amend(&mut hospital, pid, "corrected", attendant_of(&patient));
    let simulated = net.ledger.simulate(&good, net.time + 1).unwrap();
    assert_eq!(simulated.outcome, Outcome::Applied { created: None });
    assert_eq!((simulated.height, simulated.tx_hash), (tip.height + 1, good.hash()));
    let forged = amend(&mut doctor, pid, "forged", attendant_of(&patient));
    let refused = net.ledger.simulate(&forged, net.time + 1).unwrap();

    // Nothing was written: tip, registration, trail, the signer's nonce.
    assert_eq!(net.ledger.tip().hash, tip.hash);
    assert_eq!(registration(&net, &patient), before);
    assert_eq!(hospital_account(&net), nonce);

    // The real block gives each exactly the simulated outcome.
    let receipts = net.block(vec![good, forged]);
    assert_eq!(receipts[0].outcome, simulated.outcome);
    assert_eq!(receipts[1].outcome, refused.outcome);
    assert!(matches!(refusal(&receipts[1]), Refusal::Unauthorised { .. }));
}
