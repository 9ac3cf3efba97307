//! Record tokens through `apply_block`: who may mint, PMR-IDs, ERC-721 ownership, amendment,
//! key sharing and erasure; every refusal changes nothing.

use medledger_core::{
    Hash,
    block::{Created, Refusal},
    tx::{
        ConsentTx, RecordTx, TxBody,
        consent::{AccessTx, Action, Purpose, RecordCategory, Resource, Scope, Validity},
        records::{KeyRef, KeySharing, MintRecord, VisitDate},
    },
};

use medledger_ledger::consent::{Decision, Denial};

use super::*;

const DAY: VisitDate = VisitDate { year: 2021, month: 1, day: 26 };

/// Signs a record transaction (the body first, so that it may name the signer).
pub(super) fn rec(tx: RecordTx, actor: &mut Actor) -> SignedTransaction {
    actor.sign_body(TxBody::Records(tx))
}

pub(super) fn mint_body(
    patient: &Actor,
    author: &Actor,
    category: RecordCategory,
    tag: &str,
) -> MintRecord {
    MintRecord {
        patient: patient.account,
        visit_date: DAY,
        category,
        content: Hash::of(format!("content/{tag}").as_bytes()),
        size: 1024,
        metadata: Hash::of(format!("meta/{tag}").as_bytes()),
        keys: vec![
            KeyRef { recipient: patient.account, blob: Hash::of(format!("kp/{tag}").as_bytes()) },
            KeyRef { recipient: author.account, blob: Hash::of(format!("ka/{tag}").as_bytes()) },
        ],
        supersedes: None,
        sharing: None,
    }
}

pub(super) fn minted(r: &Receipt) -> String {
    match applied(r) {
        Some(Created::Record { pmr }) => pmr.clone(),
        other => panic!("expected a record, got {other:?}"),
    }
}

fn mint(net: &mut Net, doctor: &mut Actor, patient: &Actor, tag: &str) -> String {
    let body = RecordTx::Mint(mint_body(patient, doctor, RecordCategory::LabReport, tag));
    let t = rec(body, doctor);
    minted(&net.one(t))
}

/// Everything a refused record transaction must leave as it was.
fn record_state(net: &Net, patient: &Actor) -> String {
    format!(
        "{:?}|{:?}",
        net.ledger.records_of_patient(&patient.account).unwrap(),
        net.ledger.audit_trail(&patient.account, None, 1000).unwrap()
    )
}

fn patient_id(net: &Net, patient: &Actor) -> u64 {
    net.ledger.account(&patient.account).unwrap().unwrap().patient_id.unwrap().0
}

#[test]
fn a_doctor_of_the_patients_hospital_mints_tokens_with_pmr_ids() {
    let (mut net, hospital, mut doctor, patient) = populated();
    let pid = patient_id(&net, &patient);
    let first = mint(&mut net, &mut doctor, &patient, "a");
    assert_eq!(first, format!("{pid}26012021"));
    let second = mint(&mut net, &mut doctor, &patient, "b");
    assert_eq!(second, format!("{pid}26012021-2"));
    let r = net.ledger.record(&first).unwrap().unwrap();
    assert_eq!((r.owner, r.patient, r.author), (patient.account, patient.account, doctor.account));
    assert_eq!(r.hospital, hospital.account);
    assert_eq!(r.version, 1);
    assert_eq!(net.ledger.records_owned_by(&patient.account).unwrap().len(), 2, "balance_of");
    assert_eq!(net.ledger.blob_owner(&r.content).unwrap().as_deref(), Some(first.as_str()));
    let holders = net.ledger.record_key_holders(&first).unwrap();
    assert_eq!(holders.len(), 2);
    // The mint is in the patient's trail and in the hospital's (its doctor wrote it).
    let trail = net.ledger.audit_trail(&patient.account, None, 100).unwrap();
    assert_eq!(trail.iter().filter(|e| e.kind.name() == "record_minted").count(), 2);
    let h = net.ledger.audit_trail(&hospital.account, None, 100).unwrap();
    assert_eq!(h.len(), 2, "{h:?}");
}

#[test]
fn only_a_treating_doctor_may_mint() {
    let (mut net, _, _, mut patient) = populated();
    // A doctor of another hospital, with no grant.
    let mut other_hospital = Actor::new();
    let mut outsider = Actor::new();
    applied(&net.admit(&other_hospital));
    let t = onboard(&mut other_hospital, &outsider);
    applied(&net.one(t));
    let before = record_state(&net, &patient);
    let t = rec(
        RecordTx::Mint(mint_body(&patient, &outsider, RecordCategory::LabReport, "x")),
        &mut outsider,
    );
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(record_state(&net, &patient), before);
    // A treatment grant for imaging does not cover a lab report...
    let now = net.time;
    let t = patient.sign_body(TxBody::Consent(ConsentTx::Grant {
        patient: patient.account,
        grantee: outsider.account,
        scope: Scope::Categories(vec![RecordCategory::Imaging]),
        purpose: Purpose::Treatment,
        validity: Validity { not_before_ms: now, expires_at_ms: now + 86_400_000 },
    }));
    applied(&net.one(t));
    let before = record_state(&net, &patient);
    let t = rec(
        RecordTx::Mint(mint_body(&patient, &outsider, RecordCategory::LabReport, "y")),
        &mut outsider,
    );
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(record_state(&net, &patient), before);
    // ...but does cover imaging.
    let t = rec(
        RecordTx::Mint(mint_body(&patient, &outsider, RecordCategory::Imaging, "z")),
        &mut outsider,
    );
    minted(&net.one(t));
    // Patients and hospitals do not mint.
    let mut hospital_actor = other_hospital;
    let t = rec(
        RecordTx::Mint(mint_body(&patient, &hospital_actor, RecordCategory::Other, "h")),
        &mut hospital_actor,
    );
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    let t = rec(
        RecordTx::Mint(mint_body(&patient, &patient, RecordCategory::Other, "p")),
        &mut patient,
    );
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
}

#[test]
fn malformed_mints_are_refused() {
    let (mut net, _, mut doctor, patient) = populated();
    let before = record_state(&net, &patient);
    type Edit = Box<dyn Fn(&mut MintRecord)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "no patient key",
            Box::new(|m| {
                m.keys.remove(0);
            }),
        ),
        (
            "no author key",
            Box::new(|m| {
                m.keys.pop();
            }),
        ),
        ("duplicate recipient", Box::new(|m| m.keys[1].recipient = m.keys[0].recipient)),
        ("bad date", Box::new(|m| m.visit_date = VisitDate { year: 2023, month: 2, day: 29 })),
        // Issue 10 item 6: a record dated 2031 was minted.
        ("future date", Box::new(|m| m.visit_date = VisitDate { year: 2031, month: 1, day: 1 })),
        ("empty", Box::new(|m| m.size = 0)),
        ("key is content", Box::new(|m| m.keys[0].blob = m.content)),
        ("unknown superseded", Box::new(|m| m.supersedes = Some("123".into()))),
    ];
    for (what, edit) in cases {
        let mut m = mint_body(&patient, &doctor, RecordCategory::LabReport, what);
        edit(&mut m);
        let t = rec(RecordTx::Mint(m), &mut doctor);
        let r = net.one(t);
        assert!(
            matches!(refusal(&r), Refusal::Invalid { .. } | Refusal::NotFound { .. }),
            "{what}: {r:?}"
        );
        assert_eq!(record_state(&net, &patient), before, "{what}");
    }
}

#[test]
fn tokens_move_only_between_the_patient_and_their_guardian() {
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    let pmr = mint(&mut net, &mut doctor, &patient, "t");
    let mut guardian = Actor::new();
    let t = register(&mut hospital, &guardian);
    applied(&net.one(t));
    // Not a delegate yet: refused. A stranger cannot transfer at all.
    let before = record_state(&net, &patient);
    let t = rec(RecordTx::Transfer { record: pmr.clone(), to: guardian.account }, &mut patient);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    let t = rec(RecordTx::Transfer { record: pmr.clone(), to: patient.account }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. } | Refusal::Invalid { .. }));
    // (The guardian, who may not see the record yet, is answered as for a missing one.)
    let t = rec(RecordTx::Transfer { record: pmr.clone(), to: guardian.account }, &mut guardian);
    assert_eq!(refusal(&net.one(t)), &Refusal::NotFound { what: format!("record {pmr}") });
    assert_eq!(record_state(&net, &patient), before);

    // Named as delegate, the guardian may receive the token; approval is cleared on transfer.
    let t =
        patient.sign_body(TxBody::Consent(ConsentTx::NameDelegate { delegate: guardian.account }));
    applied(&net.one(t));
    let t = rec(
        RecordTx::Approve { record: pmr.clone(), approved: Some(doctor.account) },
        &mut patient,
    );
    applied(&net.one(t));
    assert_eq!(net.ledger.record(&pmr).unwrap().unwrap().approved, Some(doctor.account));
    let t = rec(RecordTx::Transfer { record: pmr.clone(), to: guardian.account }, &mut patient);
    applied(&net.one(t));
    let r = net.ledger.record(&pmr).unwrap().unwrap();
    assert_eq!((r.owner, r.approved), (guardian.account, None));
    assert_eq!(net.ledger.records_owned_by(&guardian.account).unwrap().len(), 1);
    assert!(net.ledger.records_owned_by(&patient.account).unwrap().is_empty());
    // The doctor's approval died with the transfer; an operator of the guardian may move it.
    let t = rec(RecordTx::Transfer { record: pmr.clone(), to: patient.account }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    let t = rec(
        RecordTx::SetApprovalForAll { operator: patient.account, approved: true },
        &mut guardian,
    );
    applied(&net.one(t));
    assert!(net.ledger.is_operator(&guardian.account, &patient.account).unwrap());
    // Back at majority: the patient, as operator, moves it back.
    let t = rec(RecordTx::Transfer { record: pmr.clone(), to: patient.account }, &mut patient);
    applied(&net.one(t));
    assert_eq!(net.ledger.record(&pmr).unwrap().unwrap().owner, patient.account);
    let kinds: Vec<_> = net
        .ledger
        .audit_trail(&patient.account, None, 100)
        .unwrap()
        .iter()
        .map(|e| e.kind.name())
        .filter(|k| k.starts_with("record_"))
        .collect();
    assert_eq!(
        kinds,
        ["record_minted", "record_approval", "record_transferred", "record_transferred"]
    );
}

#[test]
fn an_amendment_supersedes_and_keeps_history() {
    let (mut net, _, mut doctor, patient) = populated();
    let v1 = mint(&mut net, &mut doctor, &patient, "v1");
    let mut m = mint_body(&patient, &doctor, RecordCategory::LabReport, "v2");
    m.supersedes = Some(v1.clone());
    let t = rec(RecordTx::Mint(m), &mut doctor);
    let v2 = minted(&net.one(t));
    let history = net.ledger.record_history(&v1).unwrap();
    let ids: Vec<_> = history.iter().map(|(id, r)| (id.clone(), r.version)).collect();
    assert_eq!(ids, [(v1.clone(), 1), (v2.clone(), 2)]);
    assert_eq!(net.ledger.record_history(&v2).unwrap().len(), 2);
    // v1 cannot be amended twice.
    let before = record_state(&net, &patient);
    let mut m = mint_body(&patient, &doctor, RecordCategory::LabReport, "v2b");
    m.supersedes = Some(v1.clone());
    let t = rec(RecordTx::Mint(m), &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    assert_eq!(record_state(&net, &patient), before);
}

#[test]
fn erasure_destroys_keys_keeps_the_token_and_stops_access() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.redb");
    let mut net = Net::with(|g| Ledger::create(&path, g).unwrap());
    let mut hospital = Actor::new();
    let mut doctor = Actor::new();
    let mut patient = Actor::new();
    net.admit(&hospital);
    let t = onboard(&mut hospital, &doctor);
    net.one(t);
    let t = register(&mut hospital, &patient);
    net.one(t);
    let pmr = mint(&mut net, &mut doctor, &patient, "e");
    let r = net.ledger.record(&pmr).unwrap().unwrap();

    // Share the key with a stranger: only the owner, patient or delegate may.
    let stranger = Actor::new();
    let before = record_state(&net, &patient);
    let key = KeyRef { recipient: doctor.account, blob: Hash::of(b"another wrap") };
    let t = rec(RecordTx::ShareKey { record: pmr.clone(), key: key.clone() }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    let t = rec(
        RecordTx::ShareKey {
            record: pmr.clone(),
            key: KeyRef { recipient: stranger.account, blob: Hash::of(b"x") },
        },
        &mut patient,
    );
    assert!(matches!(refusal(&net.one(t)), Refusal::NotFound { .. }));
    assert_eq!(record_state(&net, &patient), before);

    // An access naming the wrong category is denied (see
    // `a_record_named_falsely_is_denied_in_its_real_patients_trail`); the records are unchanged.
    let patient_account = patient.account;
    let access = |category| {
        TxBody::Access(AccessTx {
            resource: Resource {
                patient: patient_account,
                category: Some(category),
                record: Some(pmr.clone()),
                case: None,
            },
            action: Action::Read,
            purpose: Purpose::Treatment,
        })
    };
    let records = |net: &Net| format!("{:?}", net.ledger.records_of_patient(&patient_account));
    let records_before = records(&net);
    let t = doctor.sign_body(access(RecordCategory::Imaging));
    assert!(matches!(
        applied(&net.one(t)),
        Some(Created::Access { decision: Decision::Deny(Denial::NotAsNamed), .. })
    ));
    assert_eq!(records(&net), records_before);

    // The doctor cannot erase; the patient can, once.
    let t = rec(RecordTx::Erase { record: pmr.clone() }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    let t = rec(RecordTx::Erase { record: pmr.clone() }, &mut patient);
    match applied(&net.one(t)) {
        Some(Created::Erased { pmr: erased, blobs }) => {
            assert_eq!(erased, &pmr);
            // Both wrapped keys, the content and the metadata: what the vault must delete.
            assert_eq!(blobs.len(), 4, "{blobs:?}");
            assert!(blobs.contains(&r.content) && blobs.contains(&r.metadata));
        }
        other => panic!("{other:?}"),
    }
    let outcomes = net.ledger.outcomes_at(net.ledger.tip().height).unwrap();
    assert!(matches!(&outcomes[..], [Outcome::Applied { created: Some(Created::Erased { .. }) }]));
    let erased = net.ledger.record(&pmr).unwrap().unwrap();
    assert!(erased.erased_at.is_some());
    assert_eq!((erased.content, erased.metadata), (r.content, r.metadata), "hashes are kept");
    assert!(net.ledger.record_key_holders(&pmr).unwrap().is_empty());
    for blob in [r.content, r.metadata] {
        assert_eq!(net.ledger.blob_owner(&blob).unwrap(), None, "the vault may delete {blob}");
    }
    let t = rec(RecordTx::Erase { record: pmr.clone() }, &mut patient);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    // Reading an erased record is refused.
    let t = patient.sign_body(access(RecordCategory::LabReport));
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));

    // Everything still verifies.
    drop(net);
    let report = medledger_ledger::verify::verify_ledger(&path, &mut |_, _, _| {}).unwrap();
    assert!(report.applied > 0);
    Ledger::open(&path).unwrap();
}

#[test]
fn custodians_release_shares_only_to_authorised_readers() {
    let (mut net, hospital, mut doctor, mut patient) = populated();
    let mut second = Actor::new();
    applied(&net.admit(&second));
    let mut hospital = hospital;
    let share = |tag: &str, who: &Actor| KeyRef {
        recipient: who.account,
        blob: Hash::of(format!("share/{tag}/{}", who.account).as_bytes()),
    };

    // Malformed splits are refused.
    let before = record_state(&net, &patient);
    let bad: Vec<(&str, KeySharing)> = vec![
        ("threshold 0", KeySharing { threshold: 0, shares: vec![share("a", &hospital)] }),
        ("threshold above n", KeySharing { threshold: 2, shares: vec![share("b", &hospital)] }),
        ("a doctor as custodian", KeySharing { threshold: 1, shares: vec![share("c", &doctor)] }),
        (
            "the same custodian twice",
            KeySharing { threshold: 1, shares: vec![share("d", &hospital), share("e", &hospital)] },
        ),
    ];
    for (what, sharing) in bad {
        let mut m = mint_body(&patient, &doctor, RecordCategory::LabReport, what);
        m.sharing = Some(sharing);
        let t = rec(RecordTx::Mint(m), &mut doctor);
        assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }), "{what}");
        assert_eq!(record_state(&net, &patient), before, "{what}");
    }

    // A 2-of-2 split between the two hospitals.
    let mut m = mint_body(&patient, &doctor, RecordCategory::LabReport, "split");
    m.sharing = Some(KeySharing {
        threshold: 2,
        shares: vec![share("s1", &hospital), share("s2", &second)],
    });
    let t = rec(RecordTx::Mint(m), &mut doctor);
    let pmr = minted(&net.one(t));
    assert_eq!(net.ledger.record_shares(&pmr, &hospital.account).unwrap().len(), 1);
    assert_eq!(net.ledger.record_shares(&pmr, &second.account).unwrap()[0].0, 2);

    // Only a custodian releases.
    let release = |reader: &Actor, tag: &str| RecordTx::ReleaseShare {
        record: pmr.clone(),
        reader: reader.account,
        purpose: Purpose::Treatment,
        share: Hash::of(tag.as_bytes()),
    };
    let before = record_state(&net, &patient);
    let t = rec(release(&doctor, "r0"), &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(record_state(&net, &patient), before);

    // A reader without a grant: the refusal is decided and audited, and nothing is stored.
    let t = rec(release(&doctor, "r1"), &mut second);
    match applied(&net.one(t)) {
        Some(Created::ShareRelease { decision, .. }) => assert!(!decision.is_allowed()),
        other => panic!("{other:?}"),
    }
    assert!(net.ledger.record_shares(&pmr, &doctor.account).unwrap().is_empty());
    assert_eq!(net.ledger.blob_owner(&Hash::of(b"r1")).unwrap(), None);

    // The patient is authorised: both custodians release, each under its own index.
    let t = rec(release(&patient, "p1"), &mut hospital);
    assert!(matches!(applied(&net.one(t)), Some(Created::ShareRelease { .. })));
    let t = rec(release(&patient, "p2"), &mut second);
    applied(&net.one(t));
    let got = net.ledger.record_shares(&pmr, &patient.account).unwrap();
    assert_eq!(got, vec![(1, Hash::of(b"p1")), (2, Hash::of(b"p2"))]);
    let kinds: Vec<_> = net
        .ledger
        .audit_trail(&patient.account, None, 100)
        .unwrap()
        .iter()
        .map(|e| e.kind.name())
        .filter(|k| k.starts_with("share_"))
        .collect();
    assert_eq!(kinds, ["share_refused", "share_released", "share_released"]);

    // Erasure destroys the shares too.
    let t = rec(RecordTx::Erase { record: pmr.clone() }, &mut patient);
    applied(&net.one(t));
    assert!(net.ledger.record_shares(&pmr, &patient.account).unwrap().is_empty());
    assert!(net.ledger.record_shares(&pmr, &second.account).unwrap().is_empty());
}

/// The report's H6: a delegate the patient removed keeps the token, but decides nothing by
/// holding it: it can neither erase the record nor share its key, and the patient takes it
/// back without the holder's consent.
#[test]
fn a_removed_delegate_cannot_erase_and_the_patient_takes_the_record_back() {
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    let pmr = mint(&mut net, &mut doctor, &patient, "psych");
    let mut guardian = Actor::new();
    applied(&net.one(register(&mut hospital, &guardian)));
    let name = ConsentTx::NameDelegate { delegate: guardian.account };
    applied(&net.one(patient.sign_body(TxBody::Consent(name))));
    let t = rec(RecordTx::Transfer { record: pmr.clone(), to: guardian.account }, &mut patient);
    applied(&net.one(t));
    let remove = ConsentTx::RemoveDelegate { delegate: guardian.account };
    applied(&net.one(patient.sign_body(TxBody::Consent(remove))));

    let before = record_state(&net, &patient);
    let t = rec(RecordTx::Erase { record: pmr.clone() }, &mut guardian);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    guardian.nonce -= 1;
    let key = Hash::of(b"a key wrapped to someone else");
    let share = RecordTx::ShareKey {
        record: pmr.clone(),
        key: KeyRef { recipient: doctor.account, blob: key },
    };
    let t = rec(share, &mut guardian);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(record_state(&net, &patient), before, "refusals changed nothing");
    assert!(net.ledger.record(&pmr).unwrap().unwrap().erased_at.is_none());

    let t = rec(RecordTx::Transfer { record: pmr.clone(), to: patient.account }, &mut patient);
    applied(&net.one(t));
    assert_eq!(net.ledger.record(&pmr).unwrap().unwrap().owner, patient.account);
}

/// Erasure is for good: after it, no transaction may name any blob the erased record had
/// (its content, metadata, a wrapped key), in whatever role: a node would have to store it
/// again, and a lagging peer's copy would come back. Each refusal changes nothing; a mint
/// with fresh blobs still applies.
#[test]
fn no_transaction_may_name_an_erased_blob_again() {
    let (mut net, _hospital, mut doctor, mut patient) = populated();
    let gone = mint_body(&patient, &doctor, RecordCategory::LabReport, "gone");
    let pmr = mint(&mut net, &mut doctor, &patient, "gone");
    let kept = mint(&mut net, &mut doctor, &patient, "kept");
    applied(&net.one(rec(RecordTx::Erase { record: pmr.clone() }, &mut patient)));
    let erased_at = net.ledger.tip().height;
    let erased = [gone.content, gone.metadata, gone.keys[0].blob, gone.keys[1].blob];
    for blob in erased {
        assert_eq!(net.ledger.erased_at(&blob).unwrap(), Some(erased_at), "{blob}");
    }

    let mut content_again = mint_body(&patient, &doctor, RecordCategory::LabReport, "again");
    content_again.content = gone.content;
    let mut metadata_is_erased_content =
        mint_body(&patient, &doctor, RecordCategory::LabReport, "m");
    metadata_is_erased_content.metadata = gone.content;
    let mut key_again = mint_body(&patient, &doctor, RecordCategory::LabReport, "k");
    key_again.keys[1].blob = gone.keys[1].blob;
    let before = record_state(&net, &patient);
    for body in [
        RecordTx::Mint(gone.clone()),
        RecordTx::Mint(content_again),
        RecordTx::Mint(metadata_is_erased_content),
        RecordTx::Mint(key_again),
    ] {
        let t = rec(body, &mut doctor);
        match refusal(&net.one(t)) {
            Refusal::Invalid { reason } => {
                assert!(reason.contains(&format!("erased at block {erased_at}")), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        doctor.nonce -= 1;
    }
    let share = RecordTx::ShareKey {
        record: kept.clone(),
        key: KeyRef { recipient: doctor.account, blob: gone.keys[0].blob },
    };
    assert!(matches!(refusal(&net.one(rec(share, &mut patient))), Refusal::Invalid { .. }));
    patient.nonce -= 1;
    assert_eq!(record_state(&net, &patient), before, "refusals changed nothing");
    for blob in erased {
        assert_eq!(net.ledger.blob_owner(&blob).unwrap(), None, "{blob} is referenced again");
    }

    mint(&mut net, &mut doctor, &patient, "fresh");
}

/// A ledger written before erased blobs were kept (no `erased_blobs` table, a state digest
/// without those rows) opens: the table is filled from the receipts of its erasures once the
/// stored state checked out, the digest is recorded with the rows, and `verify`'s replay
/// agrees. The same when the table is there but empty (a crash after an open created it and
/// before the fill committed). Without the fill, an erased blob of such a ledger could be
/// named again.
#[test]
fn a_ledger_from_before_erased_blobs_were_kept_gets_them_from_its_receipts() {
    for table_left_empty in [false, true] {
        from_before_erased_blobs(table_left_empty);
    }
}

fn from_before_erased_blobs(table_left_empty: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    let (mut net, _, mut doctor, mut patient) = populated_in(|g| Ledger::create(&path, g).unwrap());
    let body = mint_body(&patient, &doctor, RecordCategory::LabReport, "old");
    let pmr = mint(&mut net, &mut doctor, &patient, "old");
    applied(&net.one(rec(RecordTx::Erase { record: pmr }, &mut patient)));
    let height = net.ledger.tip().height;
    let blobs = [body.content, body.metadata, body.keys[0].blob, body.keys[1].blob];
    drop(net);

    // As an older version left the file.
    let rows: Vec<_> =
        blobs.iter().map(|b| (b.0.to_vec(), height.to_be_bytes().to_vec())).collect();
    let erased = redb::TableDefinition::<&[u8; 32], u64>::new("erased_blobs");
    as_before_table(&path, ("erased_blobs", "state_digest", "erased_blobs_filled"), &rows, |txn| {
        assert!(txn.delete_table(erased).unwrap());
        if table_left_empty {
            txn.open_table(erased).unwrap();
        }
    });

    let ledger = Ledger::open(&path).unwrap();
    for blob in blobs {
        assert_eq!(ledger.erased_at(&blob).unwrap(), Some(height), "{blob}");
    }
    drop(ledger);
    medledger_ledger::verify::verify_ledger(&path, &mut |_, _, _| {}).unwrap();
    let reopened = Ledger::open(&path).unwrap();
    assert_eq!(reopened.erased_at(&blobs[0]).unwrap(), Some(height));
}

/// A record minted before the patient's emergency profile can be wrapped to the emergency key
/// afterwards (the patient's wallet does it when saving the profile), but only once there is
/// a profile, only for the record's own patient, and only by the patient, owner or delegate.
#[test]
fn a_record_key_is_wrapped_to_the_emergency_key_only_once_there_is_a_profile() {
    use medledger_core::{
        ids::AccountId,
        keys::DecryptionKey,
        tx::{EmergencyTx, emergency::EmergencyProfile},
    };
    let (mut net, hospital, mut doctor, mut patient) = populated();
    let pmr = mint(&mut net, &mut doctor, &patient, "before-profile");
    let emergency = AccountId::emergency_of(&patient.account);
    let wrap = KeyRef { recipient: emergency, blob: Hash::of(b"wrapped to the emergency key") };

    // No profile yet: no emergency key to wrap to.
    let before = record_state(&net, &patient);
    let t = rec(RecordTx::ShareKey { record: pmr.clone(), key: wrap.clone() }, &mut patient);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    assert_eq!(record_state(&net, &patient), before);
    assert_eq!(net.ledger.record_key(&pmr, &emergency).unwrap(), None);

    let t = patient.sign_body(TxBody::Emergency(EmergencyTx::SetProfile {
        patient: patient.account,
        profile: EmergencyProfile {
            profile: Hash::of(b"sealed profile"),
            key_check: Hash::of(b"check"),
            emergency_key: DecryptionKey::generate().public_key(),
            open_records: true,
            escrow: vec![KeyRef { recipient: hospital.account, blob: Hash::of(b"piece") }],
            threshold: 1,
        },
    }));
    applied(&net.one(t));

    // The author is not the owner: refused. Another patient's emergency pseudo-account is
    // no account at all: refused.
    let before = record_state(&net, &patient);
    let t = rec(RecordTx::ShareKey { record: pmr.clone(), key: wrap.clone() }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    let other = AccountId::emergency_of(&doctor.account);
    let t = rec(
        RecordTx::ShareKey {
            record: pmr.clone(),
            key: KeyRef { recipient: other, blob: Hash::of(b"to another") },
        },
        &mut patient,
    );
    assert!(matches!(refusal(&net.one(t)), Refusal::NotFound { .. }));
    assert_eq!(record_state(&net, &patient), before);

    // The patient wraps it: the node can now serve it under break-glass.
    let t = rec(RecordTx::ShareKey { record: pmr.clone(), key: wrap.clone() }, &mut patient);
    applied(&net.one(t));
    assert_eq!(net.ledger.record_key(&pmr, &emergency).unwrap(), Some(wrap.blob));
}

/// The ledger has no clock: a visit date is in the future when it is after the block's date
/// (allowing a clinic at UTC+14 its local date).
#[test]
fn a_visit_date_after_the_blocks_date_is_refused() {
    let (mut net, _, mut doctor, patient) = populated();
    // Noon UTC: at UTC+14 it is already tomorrow.
    net.block_at(GENESIS_MS + 12 * 3_600_000, vec![]);
    let today = VisitDate::of_unix_ms(net.time + 1_000);
    let tomorrow = VisitDate::of_unix_ms(net.time + 1_000 + 86_400_000);
    let after = VisitDate::of_unix_ms(net.time + 1_000 + 2 * 86_400_000);
    let before = record_state(&net, &patient);
    let mut m = mint_body(&patient, &doctor, RecordCategory::LabReport, "after");
    m.visit_date = after;
    let t = rec(RecordTx::Mint(m), &mut doctor);
    match refusal(&net.one(t)) {
        Refusal::Invalid { reason } => assert!(reason.contains("in the future"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(record_state(&net, &patient), before);
    for (tag, date) in [("today", today), ("tomorrow", tomorrow)] {
        let mut m = mint_body(&patient, &doctor, RecordCategory::LabReport, tag);
        m.visit_date = date;
        let t = rec(RecordTx::Mint(m), &mut doctor);
        minted(&net.one(t));
    }
}

/// L5: an access naming a record with a category or a patient it does not have (to borrow a
/// grant for that category, or another patient's grant) is denied as a false declaration,
/// and the denial is in the trail of the record's real patient, who sees the probe. Without
/// the check, the borrowed grants would allow both.
#[test]
fn a_record_named_falsely_is_denied_in_its_real_patients_trail() {
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    let mut other = Actor::new();
    let t = register(&mut hospital, &other);
    applied(&net.one(t));
    let pmr = mint(&mut net, &mut doctor, &patient, "probe");
    // The patient lets the doctor read imaging only; the other patient lets it read anything.
    let now = net.time;
    let validity = Validity { not_before_ms: now, expires_at_ms: now + 86_400_000 };
    for (granter, scope) in
        [(&mut patient, Scope::Categories(vec![RecordCategory::Imaging])), (&mut other, Scope::All)]
    {
        let t = granter.sign_body(TxBody::Consent(ConsentTx::Grant {
            patient: granter.account,
            grantee: doctor.account,
            scope,
            purpose: Purpose::Treatment,
            validity,
        }));
        applied(&net.one(t));
    }
    let as_declared = |patient, category| AccessTx {
        resource: Resource {
            patient,
            category: Some(category),
            record: Some(pmr.clone()),
            case: None,
        },
        action: Action::Read,
        purpose: Purpose::Treatment,
    };
    let false_category = as_declared(patient.account, RecordCategory::Imaging);
    let other_patient = as_declared(other.account, RecordCategory::LabReport);
    let records_before = format!("{:?}", net.ledger.records_of_patient(&patient.account));
    let other_trail = net.ledger.audit_trail(&other.account, None, 100).unwrap();
    for access in [&false_category, &other_patient] {
        // The grant the declaration borrows would allow it.
        let borrowed = net
            .ledger
            .authorize(&doctor.account, Action::Read, &access.resource, Purpose::Treatment, None)
            .unwrap();
        assert!(borrowed.is_allowed(), "{borrowed:?}");
        // What admission charges: a denial.
        let likely = net.ledger.decide_access_now(&doctor.account, access, net.time).unwrap();
        assert_eq!(likely, Decision::Deny(Denial::NotAsNamed));
        let t = doctor.sign_body(TxBody::Access(access.clone()));
        match applied(&net.one(t)) {
            Some(Created::Access { decision, .. }) => {
                assert_eq!(*decision, Decision::Deny(Denial::NotAsNamed))
            }
            other => panic!("expected a denial, got {other:?}"),
        }
        let last = net.ledger.audit_trail(&patient.account, None, 100).unwrap().pop().unwrap();
        assert_eq!(
            (last.patient, last.actor, last.kind.name()),
            (patient.account, doctor.account, "denial")
        );
        match &last.kind {
            medledger_ledger::audit::AuditKind::Access { resource, decision, .. } => {
                assert_eq!(resource, &access.resource, "the trail shows what was declared");
                assert_eq!(*decision, Decision::Deny(Denial::NotAsNamed));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(format!("{:?}", net.ledger.records_of_patient(&patient.account)), records_before);
    assert_eq!(net.ledger.audit_trail(&other.account, None, 100).unwrap(), other_trail);
    // The record named as it is is decided by `authorize` as usual: no grant covers it.
    let as_it_is = as_declared(patient.account, RecordCategory::LabReport);
    let likely = net.ledger.decide_access_now(&doctor.account, &as_it_is, net.time).unwrap();
    assert_eq!(likely, Decision::Deny(Denial::NoGrant));
}

/// The report's L7: a patient scopes a delegation. A delegate without `records` can neither
/// erase nor transfer nor share a record, nor be handed one; without `emergency` it cannot
/// replace the emergency profile; without `consent` it can neither grant nor revoke. Each
/// refusal changes nothing, and the delegate with every power still does all of it.
#[test]
fn a_scoped_delegate_acts_only_within_its_powers() {
    use medledger_core::{
        keys::DecryptionKey,
        tx::{DelegatePowers as P, EmergencyTx, emergency::EmergencyProfile},
    };
    const HOUR: u64 = 3_600_000;
    let (mut net, mut hospital, mut doctor, mut patient) = populated();
    let pmr = mint(&mut net, &mut doctor, &patient, "scoped");
    let mut guardian = Actor::new();
    let other = Actor::new();
    applied(&net.one(register(&mut hospital, &guardian)));
    applied(&net.one(register(&mut hospital, &other)));
    let scope = |delegate: &Actor, powers: P| {
        TxBody::Consent(ConsentTx::ScopeDelegate { delegate: delegate.account, powers })
    };
    // A refusal that changes nothing (the refused transaction does not use up a nonce).
    let refused = |net: &mut Net, t: SignedTransaction, who: &mut Actor, patient: &Actor| {
        let state = |net: &Net| {
            format!(
                "{}|{:?}|{:?}",
                record_state(net, patient),
                net.ledger.who_can_see(&patient.account, None).unwrap(),
                net.ledger.emergency_profile(&patient.account).unwrap()
            )
        };
        let before = state(net);
        assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
        who.nonce -= 1;
        assert_eq!(state(net), before);
    };
    let profile = |patient: &Actor, tag: &[u8]| {
        TxBody::Emergency(EmergencyTx::SetProfile {
            patient: patient.account,
            profile: EmergencyProfile {
                profile: Hash::of(tag),
                key_check: Hash::of(b"check"),
                emergency_key: DecryptionKey::generate().public_key(),
                open_records: true,
                escrow: vec![KeyRef { recipient: hospital.account, blob: Hash::of(b"piece") }],
                threshold: 1,
            },
        })
    };
    let grant = |patient: &Actor, grantee: &Actor, now: u64| {
        TxBody::Consent(ConsentTx::Grant {
            patient: patient.account,
            grantee: grantee.account,
            scope: Scope::All,
            purpose: Purpose::Treatment,
            validity: Validity { not_before_ms: now, expires_at_ms: now + HOUR },
        })
    };
    let consent_id = |r: &Receipt| match applied(r) {
        Some(Created::Consent { id }) => *id,
        o => panic!("{o:?}"),
    };

    // Malformed powers, or a scope not signed by the patient: refused, nothing named.
    for bad in [P(0), P(8), P(0xff)] {
        let t = patient.sign_body(scope(&guardian, bad));
        assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
        patient.nonce -= 1;
    }
    let t = doctor.sign_body(scope(&guardian, P::ALL));
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    doctor.nonce -= 1;
    assert!(net.ledger.who_can_see(&patient.account, None).unwrap().delegates.is_empty());

    // `other` holds records; the guardian is handed the record while it has every power.
    applied(&net.one(patient.sign_body(scope(&other, P::RECORDS))));
    applied(&net.one(patient.sign_body(scope(&guardian, P::ALL))));
    let t = rec(RecordTx::Transfer { record: pmr.clone(), to: guardian.account }, &mut patient);
    applied(&net.one(t));

    // Without `records`: the guardian (the owner) cannot erase, share or pass the record on,
    // and the patient cannot hand a record to it.
    applied(&net.one(patient.sign_body(scope(&guardian, P(P::CONSENT.0 | P::EMERGENCY.0)))));
    let who = net.ledger.who_can_see(&patient.account, None).unwrap();
    let g = who.delegates.iter().position(|d| *d == guardian.account).unwrap();
    assert_eq!(who.delegate_powers[g], P(P::CONSENT.0 | P::EMERGENCY.0));
    let t = rec(RecordTx::Erase { record: pmr.clone() }, &mut guardian);
    refused(&mut net, t, &mut guardian, &patient);
    let share = RecordTx::ShareKey {
        record: pmr.clone(),
        key: KeyRef { recipient: doctor.account, blob: Hash::of(b"wrapped") },
    };
    let t = rec(share.clone(), &mut guardian);
    refused(&mut net, t, &mut guardian, &patient);
    let t = rec(RecordTx::Transfer { record: pmr.clone(), to: other.account }, &mut guardian);
    refused(&mut net, t, &mut guardian, &patient);
    let pmr2 = mint(&mut net, &mut doctor, &patient, "scoped-2");
    let t = rec(RecordTx::Transfer { record: pmr2.clone(), to: guardian.account }, &mut patient);
    let before = record_state(&net, &patient);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    patient.nonce -= 1;
    assert_eq!(record_state(&net, &patient), before);
    assert!(net.ledger.record(&pmr).unwrap().unwrap().erased_at.is_none());

    // Without `emergency`: no profile.
    applied(&net.one(patient.sign_body(scope(&guardian, P(P::CONSENT.0 | P::RECORDS.0)))));
    let t = guardian.sign_body(profile(&patient, b"by the guardian"));
    refused(&mut net, t, &mut guardian, &patient);
    assert!(net.ledger.emergency_profile(&patient.account).unwrap().is_none());

    // Without `consent`: no grant, and no revoking the patient's own grant.
    let by_patient = consent_id(&net.one(patient.sign_body(grant(&patient, &doctor, net.time))));
    applied(&net.one(patient.sign_body(scope(&guardian, P(P::RECORDS.0 | P::EMERGENCY.0)))));
    let t = guardian.sign_body(grant(&patient, &other, net.time));
    refused(&mut net, t, &mut guardian, &patient);
    let t = guardian.sign_body(TxBody::Consent(ConsentTx::Revoke { grant: by_patient }));
    refused(&mut net, t, &mut guardian, &patient);

    // Every power again (the same as `NameDelegate`): all of it applies.
    applied(&net.one(patient.sign_body(scope(&guardian, P::ALL))));
    let who = net.ledger.who_can_see(&patient.account, None).unwrap();
    let g = who.delegates.iter().position(|d| *d == guardian.account).unwrap();
    assert_eq!(who.delegate_powers[g], P::ALL);
    applied(&net.one(guardian.sign_body(grant(&patient, &other, net.time))));
    applied(&net.one(guardian.sign_body(TxBody::Consent(ConsentTx::Revoke { grant: by_patient }))));
    applied(&net.one(guardian.sign_body(profile(&patient, b"by the guardian"))));
    assert!(net.ledger.emergency_profile(&patient.account).unwrap().is_some());
    applied(&net.one(rec(share, &mut guardian)));
    let t = rec(RecordTx::Transfer { record: pmr2.clone(), to: guardian.account }, &mut patient);
    applied(&net.one(t));
    applied(&net.one(rec(RecordTx::Erase { record: pmr.clone() }, &mut guardian)));
    assert!(net.ledger.record(&pmr).unwrap().unwrap().erased_at.is_some());
}
