//! Visibility (`ledger/src/visibility.rs`): who may see that a record, case, device or session
//! exists, one rule per test, each of which fails if its rule is removed: the parties
//! (patient, author, hospital, custodian, registrant, session doctor, thresholds author, case
//! author and their hospital), a delegate, a grantee of each scope kind, and nobody else: not
//! a stranger, a revoked or expired grantee, one a deny rule names, nor a doctor whose only
//! basis is an open break-glass.

use medledger_core::{
    Hash,
    block::Created,
    ids::AccountId,
    keys::DecryptionKey,
    tx::{
        CaseTx, ConsentTx, DeviceTx, EmergencyTx, RecordTx, TxBody,
        cases::OpenCase,
        consent::{AccessTx, Action, DenyRule, Purpose, RecordCategory, Resource, Scope, Validity},
        devices::{DeviceKind, Metric, RegisterDevice, SetThresholds, StartSession},
        emergency::{EmergencyProfile, MIN_SEALED_REASON_BYTES, ReasonCode},
        records::{KeyRef, KeySharing, MintRecord, VisitDate},
    },
};
use medledger_ledger::{consent::Basis, visibility::CaseSight};

use super::*;

const HOUR: u64 = 3_600_000;

/// The node's clock for "now" in these tests: just after the last block.
fn now(net: &Net) -> u64 {
    net.time + 1
}

fn mint(net: &mut Net, doctor: &mut Actor, patient: &Actor, sharing: Option<KeySharing>) -> String {
    let tag = format!("{}", doctor.nonce);
    let t = doctor.sign_body(TxBody::Records(RecordTx::Mint(MintRecord {
        patient: patient.account,
        visit_date: VisitDate { year: 2021, month: 1, day: 26 },
        category: RecordCategory::LabReport,
        content: Hash::of(format!("content/{tag}").as_bytes()),
        size: 1024,
        metadata: Hash::of(format!("meta/{tag}").as_bytes()),
        keys: vec![
            KeyRef { recipient: patient.account, blob: Hash::of(format!("kp/{tag}").as_bytes()) },
            KeyRef { recipient: doctor.account, blob: Hash::of(format!("ka/{tag}").as_bytes()) },
        ],
        supersedes: None,
        sharing,
    })));
    match applied(&net.one(t)) {
        Some(Created::Record { pmr }) => pmr.clone(),
        other => panic!("expected a record, got {other:?}"),
    }
}

fn open_case(net: &mut Net, doctor: &mut Actor, patient: &Actor) -> (String, Hash) {
    let t = doctor.sign_body(TxBody::Cases(CaseTx::Open(OpenCase {
        patient: patient.account,
        description: Hash::of(format!("desc/{}", doctor.nonce).as_bytes()),
        keys: vec![
            KeyRef { recipient: patient.account, blob: Hash::of(b"case key/p") },
            KeyRef { recipient: doctor.account, blob: Hash::of(b"case key/o") },
        ],
        follow_up_of: None,
    })));
    match applied(&net.one(t)) {
        Some(Created::Case { case, head }) => (case.clone(), *head),
        other => panic!("expected a case, got {other:?}"),
    }
}

/// A grant from `patient` to `grantee`, valid for a day from the last block.
fn grant_for(
    net: &mut Net,
    patient: &mut Actor,
    grantee: &Actor,
    scope: Scope,
    p: Purpose,
) -> Hash {
    let now = net.time;
    let t = patient.sign_body(TxBody::Consent(ConsentTx::Grant {
        patient: patient.account,
        grantee: grantee.account,
        scope,
        purpose: p,
        validity: Validity { not_before_ms: now, expires_at_ms: now + 24 * HOUR },
    }));
    match applied(&net.one(t)) {
        Some(Created::Consent { id }) => *id,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn grant(net: &mut Net, patient: &mut Actor, grantee: &Actor, scope: Scope) -> Hash {
    grant_for(net, patient, grantee, scope, Purpose::Treatment)
}

fn deny(net: &mut Net, patient: &mut Actor, rule: DenyRule) -> Hash {
    let t = patient.sign_body(TxBody::Consent(ConsentTx::Deny { patient: patient.account, rule }));
    match applied(&net.one(t)) {
        Some(Created::Consent { id }) => *id,
        other => panic!("expected a deny rule, got {other:?}"),
    }
}

fn against(who: &Actor, purpose: Option<Purpose>) -> DenyRule {
    DenyRule { grantee: Some(who.account), grantee_role: None, category: None, purpose }
}

/// A doctor of a second hospital, with no relation to the patient, and that hospital.
fn outsider(net: &mut Net) -> (Actor, Actor) {
    let mut other_hospital = Actor::new();
    let doctor = Actor::new();
    applied(&net.admit(&other_hospital));
    let t = onboard(&mut other_hospital, &doctor);
    applied(&net.one(t));
    (doctor, other_hospital)
}

fn sees_record(net: &Net, who: &Actor, pmr: &str) -> bool {
    let by_id = net.ledger.record_visible_to(&who.account, pmr, now(net)).unwrap().is_some();
    let patient = net.ledger.record(pmr).unwrap().unwrap().patient;
    let listed = net
        .ledger
        .records_of_patient_visible_to(&who.account, &patient, now(net))
        .unwrap()
        .iter()
        .any(|(id, _)| id == pmr);
    assert_eq!(by_id, listed, "named by its id and listed answer alike");
    by_id
}

fn case_sight(net: &Net, who: &Actor, case: &str) -> CaseSight {
    let c = net.ledger.case(case).unwrap().unwrap();
    let sight = net.ledger.case_sight(&who.account, case, &c, now(net)).unwrap();
    let listed = net
        .ledger
        .cases_of_patient_visible_to(&who.account, &c.patient, now(net))
        .unwrap()
        .iter()
        .any(|(id, _)| id == case);
    assert_eq!(listed, sight != CaseSight::Hidden, "listed as far as it is seen");
    for needed in [CaseSight::Existence, CaseSight::Content] {
        let got = net.ledger.case_visible_to(&who.account, case, needed, now(net)).unwrap();
        assert_eq!(got.is_some(), sight != CaseSight::Hidden && sight >= needed);
    }
    sight
}

fn sees_device(net: &Net, who: &Actor, device: &AccountId) -> bool {
    let by_id = net.ledger.device_visible_to(&who.account, device, now(net)).unwrap().is_some();
    let patient = net.ledger.device(device).unwrap().unwrap().patient;
    let listed = net
        .ledger
        .devices_of_patient_visible_to(&who.account, &patient, now(net))
        .unwrap()
        .iter()
        .any(|(id, _)| id == device);
    assert_eq!(by_id, listed, "named by its id and listed answer alike");
    by_id
}

fn sees_session(net: &Net, who: &Actor, session: &Hash) -> bool {
    net.ledger.session_visible_to(&who.account, session, now(net)).unwrap().is_some()
}

#[test]
fn a_records_parties_see_it_and_a_stranger_does_not() {
    let (mut net, hospital, mut doctor, patient) = populated();
    let (stranger, other_hospital) = outsider(&mut net);
    let pmr = mint(&mut net, &mut doctor, &patient, None);
    for party in [&patient, &doctor, &hospital] {
        assert!(sees_record(&net, party, &pmr));
    }
    assert!(!sees_record(&net, &stranger, &pmr));
    assert!(!sees_record(&net, &other_hospital, &pmr));
    assert!(!sees_record(&net, &Actor::new(), &pmr), "an unknown account");
    assert_eq!(net.ledger.record_visible_to(&stranger.account, "nope", now(&net)).unwrap(), None);
}

#[test]
fn a_custodian_of_a_records_key_sees_it() {
    let (mut net, _, mut doctor, patient) = populated();
    let (_, custodian) = outsider(&mut net);
    let sharing = KeySharing {
        threshold: 1,
        shares: vec![KeyRef { recipient: custodian.account, blob: Hash::of(b"share") }],
    };
    let shared = mint(&mut net, &mut doctor, &patient, Some(sharing));
    let unshared = mint(&mut net, &mut doctor, &patient, None);
    assert!(sees_record(&net, &custodian, &shared));
    assert!(!sees_record(&net, &custodian, &unshared));
}

#[test]
fn a_delegate_sees_records_cases_and_devices() {
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    let guardian = Actor::new();
    applied(&net.one(register(&mut hospital, &guardian)));
    let pmr = mint(&mut net, &mut doctor, &patient, None);
    let (case, _) = open_case(&mut net, &mut doctor, &patient);
    let device = Actor::new();
    let t = register_device(&device, patient.account, &mut patient);
    applied(&net.one(t));
    assert!(!sees_record(&net, &guardian, &pmr));
    assert_eq!(case_sight(&net, &guardian, &case), CaseSight::Hidden);
    assert!(!sees_device(&net, &guardian, &device.account));
    let t =
        patient.sign_body(TxBody::Consent(ConsentTx::NameDelegate { delegate: guardian.account }));
    applied(&net.one(t));
    assert!(sees_record(&net, &guardian, &pmr));
    assert_eq!(case_sight(&net, &guardian, &case), CaseSight::Content);
    assert!(sees_device(&net, &guardian, &device.account));
    assert!(net.ledger.acts_for(&guardian.account, &patient.account).unwrap());
    assert!(net.ledger.acts_for(&patient.account, &patient.account).unwrap());
    assert!(!net.ledger.acts_for(&doctor.account, &patient.account).unwrap());
}

#[test]
fn a_grantee_sees_what_each_scope_kind_covers() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let pmr = mint(&mut net, &mut doctor, &patient, None);
    let other = mint(&mut net, &mut doctor, &patient, None);
    let (case, _) = open_case(&mut net, &mut doctor, &patient);
    let scopes = [
        (Scope::All, true, true),
        (Scope::Categories(vec![RecordCategory::LabReport]), true, false),
        (Scope::Categories(vec![RecordCategory::Imaging]), false, false),
        (Scope::Records(vec![pmr.clone()]), true, false),
        (Scope::Records(vec![other.clone()]), false, false),
        (Scope::Case(case.clone()), false, true),
    ];
    for (scope, record, sees_case) in scopes {
        let (grantee, _) = outsider(&mut net);
        assert!(!sees_record(&net, &grantee, &pmr));
        grant(&mut net, &mut patient, &grantee, scope.clone());
        assert_eq!(sees_record(&net, &grantee, &pmr), record, "{scope:?}");
        let sight = if sees_case { CaseSight::Content } else { CaseSight::Hidden };
        assert_eq!(case_sight(&net, &grantee, &case), sight, "{scope:?}");
    }
}

#[test]
fn a_grant_for_any_purpose_shows_the_record() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let pmr = mint(&mut net, &mut doctor, &patient, None);
    for purpose in [Purpose::Research, Purpose::Insurance, Purpose::Other, Purpose::Emergency] {
        let (grantee, _) = outsider(&mut net);
        grant_for(&mut net, &mut patient, &grantee, Scope::All, purpose);
        assert!(sees_record(&net, &grantee, &pmr), "{purpose:?}");
    }
}

#[test]
fn a_revoked_grantee_no_longer_sees() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let (grantee, _) = outsider(&mut net);
    let pmr = mint(&mut net, &mut doctor, &patient, None);
    let id = grant(&mut net, &mut patient, &grantee, Scope::All);
    assert!(sees_record(&net, &grantee, &pmr));
    let t = patient.sign_body(TxBody::Consent(ConsentTx::Revoke { grant: id }));
    applied(&net.one(t));
    // Revoked at the tip: "now" is the next block, where it no longer holds.
    assert!(!sees_record(&net, &grantee, &pmr));
}

#[test]
fn an_expired_grant_shows_nothing_at_once() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let (grantee, _) = outsider(&mut net);
    let pmr = mint(&mut net, &mut doctor, &patient, None);
    grant(&mut net, &mut patient, &grantee, Scope::All);
    let expiry = net.time - 1_000 + 24 * HOUR;
    let at = |t: u64| net.ledger.record_visible_to(&grantee.account, &pmr, t).unwrap().is_some();
    assert!(at(expiry - 1));
    // Past the expiry on the node's clock: hidden, without waiting for a block.
    assert!(!at(expiry + 1));
}

#[test]
fn a_deny_rule_hides_what_a_grant_shows_for_the_purposes_it_names() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let (grantee, _) = outsider(&mut net);
    let pmr = mint(&mut net, &mut doctor, &patient, None);
    grant(&mut net, &mut patient, &grantee, Scope::All);
    grant_for(&mut net, &mut patient, &grantee, Scope::All, Purpose::Research);
    // A rule for research leaves the treatment grant.
    let research = deny(&mut net, &mut patient, against(&grantee, Some(Purpose::Research)));
    assert!(sees_record(&net, &grantee, &pmr));
    // One for treatment too: both grants are stopped.
    deny(&mut net, &mut patient, against(&grantee, Some(Purpose::Treatment)));
    assert!(!sees_record(&net, &grantee, &pmr));
    let t = patient.sign_body(TxBody::Consent(ConsentTx::RemoveDeny { rule: research }));
    applied(&net.one(t));
    assert!(sees_record(&net, &grantee, &pmr), "the research grant is back");
    // A rule for every purpose stops both, but not the record's author.
    deny(&mut net, &mut patient, against(&grantee, None));
    assert!(!sees_record(&net, &grantee, &pmr));
    deny(&mut net, &mut patient, against(&doctor, None));
    assert!(sees_record(&net, &doctor, &pmr), "the author is a party");
}

#[test]
fn a_case_author_reads_it_and_their_hospital_sees_it_exists() {
    let (mut net, hospital, mut doctor, mut patient) = populated();
    let (mut second, second_hospital) = outsider(&mut net);
    let (case, head) = open_case(&mut net, &mut doctor, &patient);
    assert_eq!(case_sight(&net, &doctor, &case), CaseSight::Content, "the opener");
    assert_eq!(case_sight(&net, &hospital, &case), CaseSight::Existence, "the opener's hospital");
    assert_eq!(case_sight(&net, &second, &case), CaseSight::Hidden);
    assert_eq!(case_sight(&net, &second_hospital, &case), CaseSight::Hidden);
    // The second doctor writes in the case under a case grant, which is then revoked.
    let id = grant(&mut net, &mut patient, &second, Scope::Case(case.clone()));
    let t = second.sign_body(TxBody::Cases(CaseTx::Append {
        case: case.clone(),
        prev: head,
        entry: Hash::of(b"entry"),
    }));
    applied(&net.one(t));
    let t = patient.sign_body(TxBody::Consent(ConsentTx::Revoke { grant: id }));
    applied(&net.one(t));
    assert_eq!(case_sight(&net, &second, &case), CaseSight::Content, "an author");
    assert_eq!(case_sight(&net, &second_hospital, &case), CaseSight::Existence);
    // A deny rule stops the author's reading, not the sight of the case.
    deny(&mut net, &mut patient, against(&second, None));
    assert_eq!(case_sight(&net, &second, &case), CaseSight::Existence);
    // One for a single purpose leaves the others: the author still reads.
    deny(&mut net, &mut patient, against(&doctor, Some(Purpose::Research)));
    assert_eq!(case_sight(&net, &doctor, &case), CaseSight::Content);
}

/// A case's open is served to whoever holds the case's key while they may see the case (a
/// doctor the patient shared it with proves the case by it before writing), and not to a
/// doctor of another hospital who holds none, nor to that doctor's hospital, nor to a key
/// holder whose grant was revoked. The ledger names the transaction that wrapped each key.
#[test]
fn a_case_key_holder_may_fetch_the_cases_open_while_seeing_the_case_and_a_stranger_may_not() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let (second, second_hospital) = outsider(&mut net);
    let (stranger, _) = outsider(&mut net);
    let t = doctor.sign_body(TxBody::Cases(CaseTx::Open(OpenCase {
        patient: patient.account,
        description: Hash::of(b"desc/shared"),
        keys: vec![
            KeyRef { recipient: patient.account, blob: Hash::of(b"case key/p") },
            KeyRef { recipient: doctor.account, blob: Hash::of(b"case key/o") },
        ],
        follow_up_of: None,
    })));
    let receipt = net.one(t.clone());
    let Some(Created::Case { case, .. }) = applied(&receipt).cloned() else {
        panic!("expected a case, got {receipt:?}")
    };
    let sees = |net: &Net, who: &Actor| {
        net.ledger.may_see_transaction(&who.account, &t, &receipt, now(net)).unwrap()
    };
    assert!(sees(&net, &doctor) && sees(&net, &patient), "the opener and the patient");
    for who in [&second, &second_hospital, &stranger] {
        assert!(!sees(&net, who), "no key yet");
    }
    let share = patient.sign_body(TxBody::Cases(CaseTx::ShareKey {
        case: case.clone(),
        key: KeyRef { recipient: second.account, blob: Hash::of(b"case key/s") },
    }));
    let shared = share.hash();
    applied(&net.one(share));
    assert_eq!(
        net.ledger.case_key_and_tx(&case, &second.account).unwrap(),
        Some((Hash::of(b"case key/s"), Some(shared)))
    );
    assert_eq!(
        net.ledger.case_key_and_tx(&case, &doctor.account).unwrap(),
        Some((Hash::of(b"case key/o"), Some(t.hash())))
    );
    assert!(!sees(&net, &second), "a key, but no sight of the case");
    let id = grant(&mut net, &mut patient, &second, Scope::Case(case.clone()));
    assert!(sees(&net, &second), "the doctor the patient shared the key with, let in");
    assert!(!sees(&net, &second_hospital), "that doctor's hospital holds no key");
    assert!(!sees(&net, &stranger), "a doctor holding no key");
    let t = patient.sign_body(TxBody::Consent(ConsentTx::Revoke { grant: id }));
    applied(&net.one(t));
    assert!(!sees(&net, &second), "a revocation bites at once");
}

/// Every record and case transaction that names a record or case, signed by a doctor who may
/// not see it (another hospital's, no grant), is refused exactly as the same transaction
/// naming one that does not exist: PMR-IDs and Case-IDs carry the Patient-ID, a date and a
/// count, so a refusal that said "not the owner" or "not authorised" told a stranger which
/// exist (and simulating it was free). Once the patient lets the doctor see the record and
/// the case, the refusals say why again.
#[test]
fn a_refusal_tells_a_stranger_no_more_than_a_missing_record_or_case_would() {
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    let (mut stranger, _) = outsider(&mut net);
    let other_patient = Actor::new();
    applied(&net.one(register(&mut hospital, &other_patient)));
    let pmr = mint(&mut net, &mut doctor, &patient, None);
    let (case, head) = open_case(&mut net, &mut doctor, &patient);
    // A count no record or case of the patient has reached.
    let (no_pmr, no_case) = (format!("{pmr}9"), format!("{case}9"));
    let me = stranger.account;
    let key = |tag: &str| KeyRef { recipient: me, blob: Hash::of(tag.as_bytes()) };
    let record_txs = |id: &str| {
        vec![
            RecordTx::Approve { record: id.into(), approved: Some(me) },
            RecordTx::Transfer { record: id.into(), to: me },
            RecordTx::ShareKey { record: id.into(), key: key("k/record") },
            RecordTx::Erase { record: id.into() },
            RecordTx::ReleaseShare {
                record: id.into(),
                reader: me,
                purpose: Purpose::Treatment,
                share: Hash::of(b"share"),
            },
            RecordTx::Mint(MintRecord {
                patient: patient.account,
                visit_date: VisitDate { year: 2021, month: 1, day: 27 },
                category: RecordCategory::LabReport,
                content: Hash::of(format!("content/over/{id}").as_bytes()),
                size: 1024,
                metadata: Hash::of(format!("meta/over/{id}").as_bytes()),
                keys: vec![KeyRef {
                    recipient: patient.account,
                    blob: Hash::of(format!("k/over/{id}").as_bytes()),
                }],
                supersedes: Some(id.into()),
                sharing: None,
            }),
        ]
    };
    let case_txs = |id: &str| {
        vec![
            CaseTx::Append { case: id.into(), prev: head, entry: Hash::of(b"entry/stranger") },
            CaseTx::Seal { case: id.into(), head },
            CaseTx::ShareKey { case: id.into(), key: key("k/case") },
            CaseTx::Open(OpenCase {
                patient: patient.account,
                description: Hash::of(format!("desc/follow-up/{id}").as_bytes()),
                keys: vec![KeyRef {
                    recipient: patient.account,
                    blob: Hash::of(format!("k/follow-up/{id}").as_bytes()),
                }],
                follow_up_of: Some(id.into()),
            }),
        ]
    };
    let mut refused = |body: TxBody| match net.one(stranger.sign_body(body)).outcome {
        medledger_core::block::Outcome::Refused { reason } => reason,
        applied => panic!("applied: {applied:?}"),
    };
    let missing = |what: String| Refusal::NotFound { what };
    for (there, absent) in record_txs(&pmr).into_iter().zip(record_txs(&no_pmr)) {
        let said = format!("{there:?}");
        assert_eq!(refused(TxBody::Records(there)), missing(format!("record {pmr}")), "{said}");
        assert_eq!(refused(TxBody::Records(absent)), missing(format!("record {no_pmr}")), "{said}");
    }
    for (there, absent) in case_txs(&case).into_iter().zip(case_txs(&no_case)) {
        let said = format!("{there:?}");
        assert_eq!(refused(TxBody::Cases(there)), missing(format!("case {case}")), "{said}");
        assert_eq!(refused(TxBody::Cases(absent)), missing(format!("case {no_case}")), "{said}");
    }
    // An access naming the case with another patient, and one naming a case that does not
    // exist: the same refusal, and neither says whose the case is.
    let access = |id: &str| {
        TxBody::Access(AccessTx {
            resource: Resource {
                patient: other_patient.account,
                category: None,
                record: None,
                case: Some(id.into()),
            },
            action: Action::Read,
            purpose: Purpose::Treatment,
        })
    };
    assert_eq!(refused(access(&case)), missing(format!("case {case}")));
    assert_eq!(refused(access(&no_case)), missing(format!("case {no_case}")));
    // Let in for treatment (a grant of everything), the doctor is told why an erasure and a
    // seal are refused: they are the patient's, and the opener's or the patient's.
    grant(&mut net, &mut patient, &stranger, Scope::All);
    let mut refused = |body: TxBody| match net.one(stranger.sign_body(body)).outcome {
        medledger_core::block::Outcome::Refused { reason } => reason,
        applied => panic!("applied: {applied:?}"),
    };
    let erase = refused(TxBody::Records(RecordTx::Erase { record: pmr.clone() }));
    assert!(matches!(erase, Refusal::Unauthorised { .. }), "{erase:?}");
    let seal = refused(TxBody::Cases(CaseTx::Seal { case: case.clone(), head }));
    assert!(matches!(seal, Refusal::Unauthorised { .. }), "{seal:?}");
}

/// A new version supersedes only a record its minter may see, and only as a record of the
/// same category; a follow-up opens only after a case its opener may see. A colleague at the
/// patient's hospital may mint and open for the patient (they treat them by registration),
/// but does not see another doctor's record or case: an applied amendment or follow-up would
/// tell them it exists (and mark the record superseded, so its author could no longer amend
/// it). Each is refused as naming a missing one.
#[test]
fn only_one_who_sees_a_record_or_case_amends_it_or_follows_it_up() {
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    let colleague = Actor::new();
    applied(&net.one(onboard(&mut hospital, &colleague)));
    let mut colleague = colleague;
    let pmr = mint(&mut net, &mut doctor, &patient, None);
    let amend = |by: &AccountId, category: RecordCategory, tag: &str| {
        TxBody::Records(RecordTx::Mint(MintRecord {
            patient: patient.account,
            visit_date: VisitDate { year: 2021, month: 1, day: 27 },
            category,
            content: Hash::of(format!("content/v2/{tag}").as_bytes()),
            size: 1024,
            metadata: Hash::of(format!("meta/v2/{tag}").as_bytes()),
            keys: vec![
                KeyRef {
                    recipient: patient.account,
                    blob: Hash::of(format!("kp/v2/{tag}").as_bytes()),
                },
                KeyRef { recipient: *by, blob: Hash::of(format!("ka/v2/{tag}").as_bytes()) },
            ],
            supersedes: Some(pmr.clone()),
            sharing: None,
        }))
    };
    let r = net.one(colleague.sign_body(amend(&colleague.account, RecordCategory::LabReport, "c")));
    assert_eq!(refusal(&r), &Refusal::NotFound { what: format!("record {pmr}") });
    let r = net.one(doctor.sign_body(amend(&doctor.account, RecordCategory::Imaging, "d")));
    assert!(
        matches!(refusal(&r), Refusal::Invalid { reason } if reason.contains("its new version must be one too")),
        "{r:?}"
    );
    // The author amends it as what it is.
    applied(&net.one(doctor.sign_body(amend(&doctor.account, RecordCategory::LabReport, "a"))));

    let (case, head) = open_case(&mut net, &mut doctor, &patient);
    applied(&net.one(patient.sign_body(TxBody::Cases(CaseTx::Seal { case: case.clone(), head }))));
    let follow_up = |by: &AccountId, tag: &str| {
        TxBody::Cases(CaseTx::Open(OpenCase {
            patient: patient.account,
            description: Hash::of(format!("desc/follow-up/{tag}").as_bytes()),
            keys: vec![
                KeyRef {
                    recipient: patient.account,
                    blob: Hash::of(format!("case key/fp/{tag}").as_bytes()),
                },
                KeyRef { recipient: *by, blob: Hash::of(format!("case key/fo/{tag}").as_bytes()) },
            ],
            follow_up_of: Some(case.clone()),
        }))
    };
    let r = net.one(colleague.sign_body(follow_up(&colleague.account, "c")));
    assert_eq!(refusal(&r), &Refusal::NotFound { what: format!("case {case}") });
    // Its opener follows it up.
    applied(&net.one(doctor.sign_body(follow_up(&doctor.account, "d"))));
}

fn register_device(device: &Actor, patient: AccountId, signer: &mut Actor) -> SignedTransaction {
    signer.sign_body(TxBody::Devices(DeviceTx::Register(RegisterDevice {
        key: device.key.public_key(),
        encryption_key: device.enc.public_key(),
        patient,
        kind: DeviceKind::PulseOximeter,
        details: sealed(&format!("serial/{}", device.account)),
    })))
}

fn start_session(
    net: &mut Net,
    device: &Actor,
    patient: &mut Actor,
    doctor: Option<&Actor>,
) -> Hash {
    let tag = patient.nonce;
    let mut keys = vec![KeyRef {
        recipient: patient.account,
        blob: Hash::of(format!("sk/p/{tag}").as_bytes()),
    }];
    if let Some(d) = doctor {
        keys.push(KeyRef {
            recipient: d.account,
            blob: Hash::of(format!("sk/d/{tag}").as_bytes()),
        });
    }
    let t = patient.sign_body(TxBody::Devices(DeviceTx::StartSession(StartSession {
        device: device.account,
        public_key: DecryptionKey::generate().public_key(),
        expires_at_ms: None,
        doctor: doctor.map(|d| d.account),
        keys,
    })));
    match applied(&net.one(t)) {
        Some(Created::DeviceSession { id }) => *id,
        other => panic!("expected a session, got {other:?}"),
    }
}

#[test]
fn a_devices_parties_see_it_and_its_sessions() {
    let (mut net, mut hospital, doctor, mut patient) = populated();
    let (stranger, _) = outsider(&mut net);
    // Registered by the patient's hospital, for its patient.
    let device = Actor::new();
    let t = register_device(&device, patient.account, &mut hospital);
    applied(&net.one(t));
    let session = start_session(&mut net, &device, &mut patient, None);
    for party in [&patient, &device, &hospital] {
        assert!(sees_device(&net, party, &device.account));
        assert!(sees_session(&net, party, &session));
    }
    for nobody in [&stranger, &doctor] {
        assert!(!sees_device(&net, nobody, &device.account));
        assert!(!sees_session(&net, nobody, &session));
    }
    assert_eq!(net.ledger.session_visible_to(&patient.account, &Hash([9; 32]), 0).unwrap(), None);
    // The doctor a session names sees the device while that session is current, and that
    // session always.
    let t = patient.sign_body(TxBody::Devices(DeviceTx::EndSession { session }));
    applied(&net.one(t));
    let named = start_session(&mut net, &device, &mut patient, Some(&doctor));
    assert!(sees_device(&net, &doctor, &device.account));
    assert!(sees_session(&net, &doctor, &named));
    assert!(!sees_session(&net, &doctor, &session), "not the earlier session");
}

#[test]
fn the_author_of_a_devices_thresholds_sees_it_and_a_grantee_of_device_data_too() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let device = Actor::new();
    let t = register_device(&device, patient.account, &mut patient);
    applied(&net.one(t));
    assert!(!sees_device(&net, &doctor, &device.account));
    let id =
        grant(&mut net, &mut patient, &doctor, Scope::Categories(vec![RecordCategory::DeviceData]));
    assert!(sees_device(&net, &doctor, &device.account), "a grantee of device data");
    let t = doctor.sign_body(TxBody::Devices(DeviceTx::SetThresholds(SetThresholds {
        device: device.account,
        metrics: vec![Metric::Spo2],
        sealed: sealed("thresholds"),
    })));
    applied(&net.one(t));
    let t = patient.sign_body(TxBody::Consent(ConsentTx::Revoke { grant: id }));
    applied(&net.one(t));
    assert!(sees_device(&net, &doctor, &device.account), "the thresholds' author");
    let (other, _) = outsider(&mut net);
    grant(&mut net, &mut patient, &other, Scope::Categories(vec![RecordCategory::LabReport]));
    assert!(!sees_device(&net, &other, &device.account), "a grant of another category");
}

#[test]
fn an_open_break_glass_alone_shows_nothing_to_a_signed_get() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let (mut other, _) = outsider(&mut net);
    let pmr = mint(&mut net, &mut doctor, &patient, None);
    let (case, _) = open_case(&mut net, &mut doctor, &patient);
    let device = Actor::new();
    let t = register_device(&device, patient.account, &mut patient);
    applied(&net.one(t));
    let t = patient.sign_body(TxBody::Emergency(EmergencyTx::SetProfile {
        patient: patient.account,
        profile: EmergencyProfile {
            profile: Hash::of(b"sealed profile"),
            key_check: Hash::of(b"check"),
            emergency_key: DecryptionKey::generate().public_key(),
            open_records: true,
            escrow: vec![],
            threshold: 0,
        },
    }));
    applied(&net.one(t));
    let t = other.sign_body(TxBody::Emergency(EmergencyTx::BreakGlass {
        patient: patient.account,
        code: ReasonCode::Unconscious,
        reason: vec![0xA5; MIN_SEALED_REASON_BYTES],
    }));
    applied(&net.one(t));
    // authorize allows the read, on break-glass alone ...
    let record = Resource {
        patient: patient.account,
        category: Some(RecordCategory::LabReport),
        record: Some(pmr.clone()),
        case: None,
    };
    let decided = net
        .ledger
        .authorize_now(&other.account, Action::Read, &record, Purpose::Emergency, now(&net))
        .unwrap();
    assert!(matches!(
        decided,
        medledger_ledger::consent::Decision::Allow(Basis::BreakGlass { .. })
    ));
    // ... but a signed GET shows none of it (the audited overview does).
    assert!(!sees_record(&net, &other, &pmr));
    assert_eq!(case_sight(&net, &other, &case), CaseSight::Hidden);
    assert!(!sees_device(&net, &other, &device.account));
    assert!(!net.ledger.readable_now(&other.account, &record, now(&net)).unwrap());
}

#[test]
fn an_inactive_requester_sees_nothing_through_a_grant() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let (grantee, mut other_hospital) = outsider(&mut net);
    let pmr = mint(&mut net, &mut doctor, &patient, None);
    grant(&mut net, &mut patient, &grantee, Scope::All);
    assert!(sees_record(&net, &grantee, &pmr));
    let t =
        other_hospital.sign(RegistryTx::RevokeKey { account: grantee.account, replacement: None });
    applied(&net.one(t));
    assert!(!sees_record(&net, &grantee, &pmr));
}

#[test]
fn a_patient_profile_and_break_glass_are_seen_by_their_parties_only() {
    let (mut net, hospital, mut doctor, mut patient) = populated();
    let (stranger_doctor, custodian) = outsider(&mut net);
    let (_, other_hospital) = outsider(&mut net);
    let stranger = Actor::new();
    applied(&net.one(register(&mut { hospital }, &stranger)));
    let card = Hash::of(b"check");
    let profile = EmergencyProfile {
        profile: Hash::of(b"sealed profile"),
        key_check: card,
        emergency_key: DecryptionKey::generate().public_key(),
        open_records: false,
        escrow: vec![KeyRef { recipient: custodian.account, blob: Hash::of(b"piece") }],
        threshold: 1,
    };
    let t = patient.sign_body(TxBody::Emergency(EmergencyTx::SetProfile {
        patient: patient.account,
        profile: profile.clone(),
    }));
    applied(&net.one(t));
    let sees_profile = |who: &Actor| {
        net.ledger
            .emergency_profile_visible_to(&who.account, &patient.account, Some(&profile))
            .unwrap()
    };
    assert!(sees_profile(&patient));
    assert!(sees_profile(&custodian));
    assert!(sees_profile(&stranger_doctor), "any active doctor");
    assert!(!sees_profile(&other_hospital));
    assert!(!sees_profile(&stranger));
    // A patient with no profile (the stranger): the same answer but for custodians, of whom
    // there are none, so that a refusal does not tell whether a profile exists.
    let sees_none = |who: &Actor| {
        net.ledger.emergency_profile_visible_to(&who.account, &stranger.account, None).unwrap()
    };
    assert!(sees_none(&stranger) && sees_none(&stranger_doctor));
    assert!(!sees_none(&custodian) && !sees_none(&patient) && !sees_none(&other_hospital));

    let pid = net.ledger.account(&patient.account).unwrap().unwrap().patient_id.unwrap();
    let entry = net.ledger.patient(pid).unwrap().unwrap();
    let sees_patient = |who: &Actor, card: Option<&Hash>| {
        net.ledger.patient_visible_to(&who.account, &entry, card, now(&net)).unwrap()
    };
    assert!(sees_patient(&patient, None));
    assert!(sees_patient(&doctor, None), "a doctor of the registering hospital");
    assert!(!sees_patient(&stranger_doctor, None));
    assert!(sees_patient(&stranger_doctor, Some(&card)), "whoever holds the card");
    assert!(!sees_patient(&stranger_doctor, Some(&Hash::of(b"guess"))));

    let t = doctor.sign_body(TxBody::Emergency(EmergencyTx::BreakGlass {
        patient: patient.account,
        code: ReasonCode::Unconscious,
        reason: vec![0xA5; MIN_SEALED_REASON_BYTES],
    }));
    let id = match applied(&net.one(t)) {
        Some(Created::BreakGlass { id, .. }) => *id,
        other => panic!("{other:?}"),
    };
    let b = net.ledger.break_glass(&id).unwrap().unwrap();
    let sees = |who: &AccountId| net.ledger.break_glass_visible_to(who, &b).unwrap();
    for party in [doctor.account, b.hospital, patient.account, net.regulator.account] {
        assert!(sees(&party), "{party}");
    }
    assert!(sees(&custodian.account), "a custodian of the escrow");
    assert!(!sees(&stranger_doctor.account));
    assert!(!sees(&other_hospital.account));
}
