//! Case logs through `apply_block`: who may open, append, seal and share a case's key; the
//! hash chain and its refusal of stale heads; sealing; follow-ups. Every refusal changes
//! nothing.

use medledger_core::{
    Hash,
    block::{Created, Refusal},
    tx::{
        CaseTx, ConsentTx, RecordTx, TxBody,
        cases::{OpenCase, appended_head, opened_head},
        consent::{Purpose, RecordCategory, Scope, Validity},
        records::{KeyRef, MintRecord, VisitDate},
    },
};

use super::*;

pub(super) fn case_tx(tx: CaseTx, actor: &mut Actor) -> SignedTransaction {
    actor.sign_body(TxBody::Cases(tx))
}

pub(super) fn open_body(patient: &Actor, opener: &Actor, tag: &str) -> OpenCase {
    OpenCase {
        patient: patient.account,
        description: Hash::of(format!("desc/{tag}").as_bytes()),
        keys: vec![
            KeyRef { recipient: patient.account, blob: Hash::of(format!("kp/{tag}").as_bytes()) },
            KeyRef { recipient: opener.account, blob: Hash::of(format!("ko/{tag}").as_bytes()) },
        ],
        follow_up_of: None,
    }
}

fn opened(r: &Receipt) -> (String, Hash) {
    match applied(r) {
        Some(Created::Case { case, head }) => (case.clone(), *head),
        other => panic!("expected a case, got {other:?}"),
    }
}

pub(super) fn open(
    net: &mut Net,
    doctor: &mut Actor,
    patient: &Actor,
    tag: &str,
) -> (String, Hash) {
    let t = case_tx(CaseTx::Open(open_body(patient, doctor, tag)), doctor);
    opened(&net.one(t))
}

fn append_tx(doctor: &mut Actor, case: &str, prev: Hash, tag: &str) -> SignedTransaction {
    case_tx(
        CaseTx::Append {
            case: case.into(),
            prev,
            entry: Hash::of(format!("entry/{case}/{tag}").as_bytes()),
        },
        doctor,
    )
}

/// Appends and returns the new head.
pub(super) fn append(net: &mut Net, doctor: &mut Actor, case: &str, prev: Hash, tag: &str) -> Hash {
    let t = append_tx(doctor, case, prev, tag);
    match applied(&net.one(t)) {
        Some(Created::CaseEntry { head, .. }) => *head,
        other => panic!("expected an entry, got {other:?}"),
    }
}

/// Everything a refused case transaction must leave as it was.
fn case_state(net: &Net, patient: &Actor) -> String {
    let cases = net.ledger.cases_of_patient(&patient.account).unwrap();
    let details: Vec<_> = cases
        .iter()
        .map(|(id, _)| {
            (net.ledger.case_entries(id, 0, 100_000).unwrap(), net.ledger.case_keys(id).unwrap())
        })
        .collect();
    format!(
        "{cases:?}|{details:?}|{:?}",
        net.ledger.audit_trail(&patient.account, None, 1000).unwrap()
    )
}

/// A doctor of a second hospital, with no relation to the patient.
fn outsider(net: &mut Net) -> Actor {
    let mut other_hospital = Actor::new();
    let doctor = Actor::new();
    applied(&net.admit(&other_hospital));
    let t = onboard(&mut other_hospital, &doctor);
    applied(&net.one(t));
    doctor
}

fn grant(net: &mut Net, patient: &mut Actor, grantee: &Actor, scope: Scope) -> Hash {
    let now = net.time;
    let t = patient.sign_body(TxBody::Consent(ConsentTx::Grant {
        patient: patient.account,
        grantee: grantee.account,
        scope,
        purpose: Purpose::Treatment,
        validity: Validity { not_before_ms: now, expires_at_ms: now + 86_400_000 },
    }));
    match applied(&net.one(t)) {
        Some(Created::Consent { id }) => *id,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn patient_id(net: &Net, patient: &Actor) -> u64 {
    net.ledger.account(&patient.account).unwrap().unwrap().patient_id.unwrap().0
}

#[test]
fn a_case_is_opened_written_by_two_doctors_chained_and_sealed() {
    let (mut net, hospital, mut doctor, mut patient) = populated();
    let pid = patient_id(&net, &patient);
    let (case, first) = open(&mut net, &mut doctor, &patient, "a");
    assert_eq!(case, format!("C{pid}-1"));
    let log = net.ledger.case(&case).unwrap().unwrap();
    assert_eq!(
        first,
        opened_head(
            &case,
            &patient.account,
            &doctor.account,
            &log.description,
            log.opened_at,
            log.opened_time_ms
        )
    );
    assert_eq!((log.opener, log.hospital, log.entries), (doctor.account, hospital.account, 0));
    assert_eq!(net.ledger.case_keys(&case).unwrap().len(), 2);

    // The opener writes; a doctor of another hospital writes once the patient authorised
    // them for this case.
    let h1 = append(&mut net, &mut doctor, &case, first, "1");
    let mut colleague = outsider(&mut net);
    grant(&mut net, &mut patient, &colleague, Scope::Case(case.clone()));
    let h2 = append(&mut net, &mut colleague, &case, h1, "2");
    let entries = net.ledger.case_entries(&case, 0, 100).unwrap();
    assert_eq!(entries.len(), 2);
    let (seq, e) = &entries[1];
    assert_eq!((*seq, e.author, e.prev, e.head), (2, colleague.account, h1, h2));
    assert_eq!(h2, appended_head(&h1, &e.entry, &colleague.account, e.height, e.time_ms));
    assert_eq!(net.ledger.blob_owner(&e.entry).unwrap().as_deref(), Some(case.as_str()));
    assert_eq!(net.ledger.case_entries(&case, 1, 100).unwrap().len(), 1, "after entry 1");

    let t = case_tx(CaseTx::Seal { case: case.clone(), head: h2 }, &mut doctor);
    match applied(&net.one(t)) {
        Some(Created::CaseSealed { entries: 2, head, .. }) => assert_eq!(*head, h2),
        other => panic!("expected a seal, got {other:?}"),
    }
    let log = net.ledger.case(&case).unwrap().unwrap();
    assert_eq!((log.head, log.entries, log.authors.len()), (h2, 2, 2));
    assert_eq!(log.sealed.unwrap().by, doctor.account);

    // The patient was told of every step; the colleague's hospital of its doctor's entry.
    let trail = net.ledger.audit_trail(&patient.account, None, 100).unwrap();
    let kinds: Vec<_> =
        trail.iter().map(|e| e.kind.name()).filter(|k| k.starts_with("case")).collect();
    assert_eq!(kinds, ["case_opened", "case_entry", "case_entry", "case_sealed"]);

    // A correction: a follow-up case of the sealed one.
    let mut body = open_body(&patient, &doctor, "b");
    body.follow_up_of = Some(case.clone());
    let t = case_tx(CaseTx::Open(body), &mut doctor);
    let (follow_up, _) = opened(&net.one(t));
    assert_eq!(follow_up, format!("C{pid}-2"));
    assert_eq!(net.ledger.follow_ups(&case).unwrap(), vec![follow_up]);
}

#[test]
fn only_a_treating_doctor_may_open_a_case() {
    let (mut net, mut hospital, _, mut patient) = populated();
    let mut stranger = outsider(&mut net);
    let before = case_state(&net, &patient);
    let t = case_tx(CaseTx::Open(open_body(&patient, &stranger, "x")), &mut stranger);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }), "no relation");
    assert_eq!(case_state(&net, &patient), before);
    // A grant for lab reports does not make them the patient's treating doctor for a case.
    grant(&mut net, &mut patient, &stranger, Scope::Categories(vec![RecordCategory::LabReport]));
    let before = case_state(&net, &patient);
    let t = case_tx(CaseTx::Open(open_body(&patient, &stranger, "y")), &mut stranger);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }), "category grant");
    assert_eq!(case_state(&net, &patient), before);
    // Hospitals and patients do not open cases.
    let t = case_tx(CaseTx::Open(open_body(&patient, &hospital, "h")), &mut hospital);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    let t = case_tx(CaseTx::Open(open_body(&patient, &patient, "p")), &mut patient);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(case_state(&net, &patient), before);
    // A treatment grant for all records makes them one.
    grant(&mut net, &mut patient, &stranger, Scope::All);
    let t = case_tx(CaseTx::Open(open_body(&patient, &stranger, "z")), &mut stranger);
    opened(&net.one(t));
}

#[test]
fn an_append_by_a_doctor_not_authorised_for_the_case_is_refused() {
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    let (case, head) = open(&mut net, &mut doctor, &patient, "a");
    let (other_case, _) = open(&mut net, &mut doctor, &patient, "b");
    // A colleague at the same hospital is not the opener and holds no grant.
    let mut colleague = Actor::new();
    let t = onboard(&mut hospital, &colleague);
    applied(&net.one(t));
    let mut stranger = outsider(&mut net);
    let before = case_state(&net, &patient);
    // Neither may see that the case exists: refused as a missing case would be.
    for who in [&mut colleague, &mut stranger] {
        let t = append_tx(who, &case, head, "x");
        assert_eq!(refusal(&net.one(t)), &Refusal::NotFound { what: format!("case {case}") });
    }
    // The opener's hospital sees the case exists, and is told why.
    let t = append_tx(&mut hospital, &case, head, "x");
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(case_state(&net, &patient), before);
    // A grant for another case, or for research, does not cover this one.
    grant(&mut net, &mut patient, &stranger, Scope::Case(other_case));
    let now = net.time;
    let t = patient.sign_body(TxBody::Consent(ConsentTx::Grant {
        patient: patient.account,
        grantee: stranger.account,
        scope: Scope::Case(case.clone()),
        purpose: Purpose::Research,
        validity: Validity { not_before_ms: now, expires_at_ms: now + 86_400_000 },
    }));
    applied(&net.one(t));
    let before = case_state(&net, &patient);
    let t = append_tx(&mut stranger, &case, head, "y");
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    // Neither the patient nor the hospital writes entries.
    let t = append_tx(&mut patient, &case, head, "p");
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    let t = append_tx(&mut hospital, &case, head, "h");
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(case_state(&net, &patient), before);
    // Revoked grants stop working: authorised, then revoked, then refused.
    let g = grant(&mut net, &mut patient, &stranger, Scope::Case(case.clone()));
    let head = append(&mut net, &mut stranger, &case, head, "ok");
    let t = patient.sign_body(TxBody::Consent(ConsentTx::Revoke { grant: g }));
    applied(&net.one(t));
    let before = case_state(&net, &patient);
    let t = append_tx(&mut stranger, &case, head, "late");
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(case_state(&net, &patient), before);
}

#[test]
fn an_append_naming_a_stale_head_is_refused() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let (case, first) = open(&mut net, &mut doctor, &patient, "a");
    let mut colleague = outsider(&mut net);
    grant(&mut net, &mut patient, &colleague, Scope::Case(case.clone()));
    // Both saw the first head; the doctor's entry lands first.
    let second = append(&mut net, &mut doctor, &case, first, "1");
    let before = case_state(&net, &patient);
    let t = append_tx(&mut colleague, &case, first, "2");
    match refusal(&net.one(t)) {
        Refusal::StaleHead { head, .. } => assert_eq!(*head, second),
        other => panic!("expected a stale head, got {other:?}"),
    }
    assert_eq!(case_state(&net, &patient), before);
    // Two appends from the same head in one block: one lands, the other is stale.
    let a = append_tx(&mut doctor, &case, second, "3");
    let b = append_tx(&mut colleague, &case, second, "4");
    let receipts = net.block(vec![a, b]);
    applied(&receipts[0]);
    assert!(matches!(refusal(&receipts[1]), Refusal::StaleHead { .. }));
    assert_eq!(net.ledger.case(&case).unwrap().unwrap().entries, 2);
}

#[test]
fn nothing_is_appended_to_a_sealed_case() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let (case, first) = open(&mut net, &mut doctor, &patient, "a");
    let head = append(&mut net, &mut doctor, &case, first, "1");
    let t = case_tx(CaseTx::Seal { case: case.clone(), head }, &mut patient);
    applied(&net.one(t));
    let before = case_state(&net, &patient);
    // The opener, with the right head, is refused: the case is sealed.
    let t = append_tx(&mut doctor, &case, head, "2");
    assert!(matches!(refusal(&net.one(t)), Refusal::CaseSealed { .. }));
    let t = case_tx(CaseTx::Seal { case: case.clone(), head }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::CaseSealed { .. }), "sealed twice");
    assert_eq!(case_state(&net, &patient), before);
}

#[test]
fn only_the_opener_or_the_patient_may_seal_and_at_the_current_head() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let (case, first) = open(&mut net, &mut doctor, &patient, "a");
    let mut writer = outsider(&mut net);
    grant(&mut net, &mut patient, &writer, Scope::Case(case.clone()));
    let head = append(&mut net, &mut writer, &case, first, "1");
    let mut stranger = outsider(&mut net);
    let before = case_state(&net, &patient);
    // A stranger, and even a doctor who writes in the case, may not seal it (the stranger,
    // who may not see the case, is answered as for a missing one).
    let t = case_tx(CaseTx::Seal { case: case.clone(), head }, &mut stranger);
    assert_eq!(refusal(&net.one(t)), &Refusal::NotFound { what: format!("case {case}") });
    let t = case_tx(CaseTx::Seal { case: case.clone(), head }, &mut writer);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    // The opener with an old head: refused, the case moved on.
    let t = case_tx(CaseTx::Seal { case: case.clone(), head: first }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::StaleHead { .. }));
    assert_eq!(case_state(&net, &patient), before);
    assert!(net.ledger.case(&case).unwrap().unwrap().sealed.is_none());
}

#[test]
fn malformed_opens_and_borrowed_blobs_are_refused() {
    let (mut net, _, mut doctor, mut patient) = populated();
    // A record's content blob cannot become a case's description or entry.
    let record_blob = Hash::of(b"content/r");
    let t = doctor.sign_body(TxBody::Records(RecordTx::Mint(MintRecord {
        patient: patient.account,
        visit_date: VisitDate { year: 2021, month: 1, day: 26 },
        category: RecordCategory::LabReport,
        content: record_blob,
        size: 10,
        metadata: Hash::of(b"meta/r"),
        keys: vec![
            KeyRef { recipient: patient.account, blob: Hash::of(b"kp/r") },
            KeyRef { recipient: doctor.account, blob: Hash::of(b"kd/r") },
        ],
        supersedes: None,
        sharing: None,
    })));
    applied(&net.one(t));
    let before = case_state(&net, &patient);
    let mut body = open_body(&patient, &doctor, "a");
    body.description = record_blob;
    let t = case_tx(CaseTx::Open(body), &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }), "borrowed description");
    let mut body = open_body(&patient, &doctor, "a");
    body.keys.retain(|k| k.recipient != patient.account);
    let t = case_tx(CaseTx::Open(body), &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }), "no key for the patient");
    let mut body = open_body(&patient, &doctor, "a");
    body.follow_up_of = Some("C0-9".into());
    let t = case_tx(CaseTx::Open(body), &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::NotFound { .. }), "unknown follow-up");
    assert_eq!(case_state(&net, &patient), before);

    let (case, head) = open(&mut net, &mut doctor, &patient, "a");
    let before = case_state(&net, &patient);
    let t =
        case_tx(CaseTx::Append { case: case.clone(), prev: head, entry: record_blob }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }), "borrowed entry");
    // A follow-up of a case that is still open is refused: append to it instead.
    let mut body = open_body(&patient, &doctor, "b");
    body.follow_up_of = Some(case.clone());
    let t = case_tx(CaseTx::Open(body), &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }), "follow-up of an open case");
    let t = append_tx(&mut doctor, "C0-9", head, "x");
    assert!(matches!(refusal(&net.one(t)), Refusal::NotFound { .. }), "unknown case");
    assert_eq!(case_state(&net, &patient), before);
    // The patient may seal it (they own their records).
    let t = case_tx(CaseTx::Seal { case, head }, &mut patient);
    applied(&net.one(t));
}

#[test]
fn only_the_patient_shares_a_case_key_or_the_opener_with_the_patients_consent() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let (case, _) = open(&mut net, &mut doctor, &patient, "a");
    let mut stranger = outsider(&mut net);
    let colleague = outsider(&mut net);
    let before = case_state(&net, &patient);
    let key = KeyRef { recipient: stranger.account, blob: Hash::of(b"k/stranger") };
    let t = case_tx(CaseTx::ShareKey { case: case.clone(), key }, &mut stranger);
    assert_eq!(refusal(&net.one(t)), &Refusal::NotFound { what: format!("case {case}") });
    assert_eq!(case_state(&net, &patient), before);
    // The opener alone cannot hand the key to someone the patient has not let in (H2)...
    let key = KeyRef { recipient: colleague.account, blob: Hash::of(b"k/early") };
    let t = case_tx(CaseTx::ShareKey { case: case.clone(), key }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }), "share without consent");
    doctor.nonce -= 1;
    assert_eq!(case_state(&net, &patient), before);
    // ...nor with a grant for another case or for records only.
    grant(&mut net, &mut patient, &colleague, Scope::Case("C0-1".into()));
    grant(&mut net, &mut patient, &colleague, Scope::Categories(vec![RecordCategory::LabReport]));
    let key = KeyRef { recipient: colleague.account, blob: Hash::of(b"k/early2") };
    let t = case_tx(CaseTx::ShareKey { case: case.clone(), key }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }), "share on another grant");
    doctor.nonce -= 1;
    // The patient shares; once the patient grants the case, the opener may too.
    let key = KeyRef { recipient: colleague.account, blob: Hash::of(&patient.account.0) };
    applied(&net.one(case_tx(CaseTx::ShareKey { case: case.clone(), key }, &mut patient)));
    grant(&mut net, &mut patient, &colleague, Scope::Case(case.clone()));
    let key = KeyRef { recipient: colleague.account, blob: Hash::of(&doctor.account.0) };
    applied(&net.one(case_tx(CaseTx::ShareKey { case: case.clone(), key }, &mut doctor)));
    // The second share replaced the first: one key per recipient, the old blob released.
    let keys = net.ledger.case_keys(&case).unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(
        net.ledger.case_key(&case, &colleague.account).unwrap(),
        Some(Hash::of(&doctor.account.0))
    );
    assert_eq!(net.ledger.blob_owner(&Hash::of(&patient.account.0)).unwrap(), None);
}

#[test]
fn a_ledger_with_cases_verifies_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.redb");
    let mut net = Net::with(|g| Ledger::create(&path, g).unwrap());
    let mut hospital = Actor::new();
    let mut doctor = Actor::new();
    let patient = Actor::new();
    applied(&net.admit(&hospital));
    let t = onboard(&mut hospital, &doctor);
    applied(&net.one(t));
    let t = register(&mut hospital, &patient);
    applied(&net.one(t));
    let (case, first) = open(&mut net, &mut doctor, &patient, "a");
    let head = append(&mut net, &mut doctor, &case, first, "1");
    let t = case_tx(CaseTx::Seal { case: case.clone(), head }, &mut doctor);
    applied(&net.one(t));
    drop(net);
    let report = medledger_ledger::verify::verify_ledger(&path, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.refused, 0);
    let ledger = Ledger::open(&path).unwrap();
    let txs = ledger.case_transactions(&case).unwrap().unwrap();
    assert_eq!(txs.entries.len(), 1);
    assert!(txs.seal.is_some());
}
