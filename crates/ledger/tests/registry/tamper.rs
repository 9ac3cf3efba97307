//! Tampering with any state table is caught, driven by the table registry
//! (`medledger_ledger::state::TABLES`): a ledger built with real transactions that leave a row
//! in every registered table is altered table by table (a value changed, a row deleted, a row
//! added, as a disk fault or an editor would), and each time `Ledger::open` (the start-up
//! digests) refuses and `verify` names the table. A table added to the registry is covered
//! without a change here; one the fixture leaves empty fails the test.

use medledger_core::{
    Hash,
    block::Created,
    keys::DecryptionKey,
    tx::{
        CaseTx, ConsentTx, DelegatePowers, DeviceTx, EmergencyTx, NodeTx, RecordTx, TxBody,
        cases::OpenCase,
        consent::{DenyRule, Purpose, RecordCategory, Scope, Validity},
        devices::{
            Alert, DeviceKind, Metric, ReadingBatch, RegisterDevice, SetThresholds, Severity,
            StartSession,
        },
        emergency::{EmergencyProfile, MIN_SEALED_REASON_BYTES, ReasonCode},
        records::{KeyRef, KeySharing, MintRecord, VisitDate},
        research::{PlannedRecord, ResearchExportTx, plan_digest},
    },
};
use medledger_ledger::{
    Integrity, LedgerError,
    state::{StateTable, TABLES},
    verify::verify_ledger,
};

use redb::ReadableDatabase;

use super::*;

const DAY: u64 = 86_400_000;

fn key(recipient: &Actor, tag: &str) -> KeyRef {
    KeyRef {
        recipient: recipient.account,
        blob: Hash::of(format!("{tag}/{}", recipient.account).as_bytes()),
    }
}

/// Applies `body` signed by `who` and expects it applied; returns what it created.
fn ok(net: &mut Net, who: &mut Actor, body: TxBody) -> Option<Created> {
    let t = who.sign_body(body);
    applied(&net.one(t)).cloned()
}

/// A ledger at `path` in which every transaction family has left its rows: the registry,
/// consent (a grant, a request, a deny rule, a delegate with some powers), a record with a
/// split key and an operator, an erased record, an emergency profile, a break-glass not yet reviewed with an
/// escrow release, the network's window, a case with an entry, a device with thresholds,
/// a session, a batch and an alert, an admitted node with the genesis node suspended, and an
/// organisation with a member that made a research export.
fn build(path: &std::path::Path) {
    let mut net = Net::with(|g| Ledger::create(path, g).unwrap());
    let mut hospital = Actor::new();
    let mut doctor = Actor::new();
    let mut patient = Actor::new();
    let guardian = Actor::new();
    let mut device = Actor::new();
    applied(&net.admit(&hospital));
    let t = onboard(&mut hospital, &doctor);
    applied(&net.one(t));
    for p in [&patient, &guardian] {
        let t = register(&mut hospital, p);
        applied(&net.one(t));
    }
    let now = net.time;
    let validity = Validity { not_before_ms: now, expires_at_ms: now + DAY };

    let consent = |tx| TxBody::Consent(tx);
    ok(&mut net, &mut patient, consent(ConsentTx::NameDelegate { delegate: guardian.account }));
    let powers = DelegatePowers::CONSENT;
    ok(
        &mut net,
        &mut patient,
        consent(ConsentTx::ScopeDelegate { delegate: guardian.account, powers }),
    );
    let grant = ConsentTx::Grant {
        patient: patient.account,
        grantee: doctor.account,
        scope: Scope::All,
        purpose: Purpose::Treatment,
        validity,
    };
    ok(&mut net, &mut patient, consent(grant));
    let device_grant = ConsentTx::Grant {
        patient: patient.account,
        grantee: doctor.account,
        scope: Scope::Categories(vec![RecordCategory::DeviceData]),
        purpose: Purpose::Treatment,
        validity,
    };
    ok(&mut net, &mut patient, consent(device_grant));
    let request = ConsentTx::Request {
        patient: patient.account,
        scope: Scope::Categories(vec![RecordCategory::Imaging]),
        purpose: Purpose::Research,
    };
    ok(&mut net, &mut doctor, consent(request));
    let rule = DenyRule {
        grantee: Some(hospital.account),
        grantee_role: None,
        category: None,
        purpose: Some(Purpose::Research),
    };
    let deny = ConsentTx::Deny { patient: patient.account, rule };
    ok(&mut net, &mut patient, consent(deny));

    let mint = MintRecord {
        patient: patient.account,
        visit_date: VisitDate { year: 2021, month: 1, day: 26 },
        category: RecordCategory::LabReport,
        content: Hash::of(b"content"),
        size: 1024,
        metadata: Hash::of(b"metadata"),
        keys: vec![key(&patient, "key"), key(&doctor, "key")],
        supersedes: None,
        sharing: Some(KeySharing { threshold: 1, shares: vec![key(&hospital, "share")] }),
    };
    let Some(Created::Record { pmr: lab }) =
        ok(&mut net, &mut doctor, TxBody::Records(RecordTx::Mint(mint.clone())))
    else {
        panic!("the first record was not minted")
    };
    let approve = RecordTx::SetApprovalForAll { operator: guardian.account, approved: true };
    ok(&mut net, &mut patient, TxBody::Records(approve));
    // A second record, erased: its blobs are kept as erased.
    let erased = MintRecord {
        content: Hash::of(b"erased content"),
        metadata: Hash::of(b"erased metadata"),
        keys: vec![key(&patient, "erased key"), key(&doctor, "erased key")],
        sharing: None,
        ..mint
    };
    let Some(Created::Record { pmr }) =
        ok(&mut net, &mut doctor, TxBody::Records(RecordTx::Mint(erased)))
    else {
        panic!("the second record was not minted")
    };
    ok(&mut net, &mut patient, TxBody::Records(RecordTx::Erase { record: pmr }));

    let profile = EmergencyProfile {
        profile: Hash::of(b"sealed profile"),
        key_check: Hash::of(b"check"),
        emergency_key: DecryptionKey::generate().public_key(),
        open_records: true,
        escrow: vec![key(&hospital, "piece")],
        threshold: 1,
    };
    let em = |tx| TxBody::Emergency(tx);
    let set = EmergencyTx::SetProfile { patient: patient.account, profile };
    ok(&mut net, &mut patient, em(set));
    let declare = EmergencyTx::BreakGlass {
        patient: patient.account,
        code: ReasonCode::Unconscious,
        reason: vec![0xA5; MIN_SEALED_REASON_BYTES],
    };
    let Some(Created::BreakGlass { id, .. }) = ok(&mut net, &mut doctor, em(declare)) else {
        panic!("no break-glass id")
    };
    let release = EmergencyTx::ReleaseEscrow { break_glass: id, piece: Hash::of(b"released") };
    ok(&mut net, &mut hospital, em(release));
    let mut regulator = std::mem::replace(&mut net.regulator, Actor::new());
    ok(&mut net, &mut regulator, em(EmergencyTx::SetWindow { minutes: 60 }));

    let open = OpenCase {
        patient: patient.account,
        description: Hash::of(b"description"),
        keys: vec![key(&patient, "case-key"), key(&doctor, "case-key")],
        follow_up_of: None,
    };
    let Some(Created::Case { case, head }) =
        ok(&mut net, &mut doctor, TxBody::Cases(CaseTx::Open(open)))
    else {
        panic!("no case")
    };
    let append = CaseTx::Append { case, prev: head, entry: Hash::of(b"entry") };
    ok(&mut net, &mut doctor, TxBody::Cases(append));

    let register = DeviceTx::Register(RegisterDevice {
        key: device.key.public_key(),
        encryption_key: device.enc.public_key(),
        patient: patient.account,
        kind: DeviceKind::VitalSignsMonitor,
        details: sealed("device details"),
    });
    ok(&mut net, &mut patient, TxBody::Devices(register));
    let thresholds = DeviceTx::SetThresholds(SetThresholds {
        device: device.account,
        metrics: vec![Metric::Temperature],
        sealed: sealed("thresholds"),
    });
    ok(&mut net, &mut doctor, TxBody::Devices(thresholds));
    let start = DeviceTx::StartSession(StartSession {
        device: device.account,
        public_key: DecryptionKey::generate().public_key(),
        expires_at_ms: None,
        doctor: Some(doctor.account),
        keys: vec![key(&patient, "session-key"), key(&doctor, "session-key")],
    });
    let Some(Created::DeviceSession { id: session }) =
        ok(&mut net, &mut patient, TxBody::Devices(start))
    else {
        panic!("no session")
    };
    let alert = DeviceTx::Alert(Alert {
        session,
        seq: 3,
        metric: Metric::Temperature,
        severity: Severity::Critical,
        reading: Hash::of(b"reading"),
        thresholds: None,
    });
    ok(&mut net, &mut device, TxBody::Devices(alert));
    let batch = DeviceTx::Readings(ReadingBatch {
        session,
        first_seq: 1,
        last_seq: 9,
        count: 8,
        blob: Hash::of(b"batch"),
        size: 108,
    });
    ok(&mut net, &mut device, TxBody::Devices(batch));

    // A node admitted (a row, its key's index entry, the counter), and the genesis node
    // suspended (its override row).
    let admit = NodeTx::Admit {
        node_key: SigningKey::generate().public_key(),
        address: "http://127.0.0.2:7301".into(),
        hospital: hospital.account,
    };
    ok(&mut net, &mut regulator, TxBody::Nodes(admit));
    // An organisation with a member (the directory and its index), and a research export by
    // the member under the organisation's grant (the record it may read).
    let mut org = Actor::new();
    let mut member = Actor::new();
    let admit_org = medledger_core::tx::AdmitOrganisation {
        key: org.key.public_key(),
        encryption_key: org.enc.public_key(),
        kind: medledger_core::tx::OrganisationKind::Researcher,
        name: "Cohort Lab".into(),
        contact: sealed("contact of the cohort lab"),
    };
    ok(&mut net, &mut regulator, TxBody::Registry(RegistryTx::AdmitOrganisation(admit_org)));
    let accept = medledger_core::tx::AddMember::accept(
        &member.key,
        &org.account,
        member.enc.public_key(),
        "Dr. Rao",
    );
    ok(&mut net, &mut org, TxBody::Registry(RegistryTx::AddMember(accept)));
    // (The record it may read is an image: `safe-harbor-1` exports imaging content only.)
    let scan = MintRecord {
        patient: patient.account,
        visit_date: VisitDate { year: 2021, month: 2, day: 3 },
        category: RecordCategory::Imaging,
        content: Hash::of(b"scan content"),
        size: 2048,
        metadata: Hash::of(b"scan metadata"),
        keys: vec![key(&patient, "scan key"), key(&doctor, "scan key")],
        supersedes: None,
        sharing: None,
    };
    let Some(Created::Record { pmr: scan_pmr }) =
        ok(&mut net, &mut doctor, TxBody::Records(RecordTx::Mint(scan.clone())))
    else {
        panic!("the scan was not minted")
    };
    let mut labs = vec![RecordCategory::LabReport, RecordCategory::Imaging];
    labs.sort();
    let research = ConsentTx::Grant {
        patient: patient.account,
        grantee: org.account,
        scope: Scope::Categories(labs.clone()),
        purpose: Purpose::Research,
        validity: Validity { not_before_ms: net.time, expires_at_ms: net.time + DAY },
    };
    ok(&mut net, &mut patient, TxBody::Consent(research));
    let planned = [
        PlannedRecord { pmr: lab, category: RecordCategory::LabReport, content: mint.content },
        PlannedRecord { pmr: scan_pmr, category: RecordCategory::Imaging, content: scan.content },
    ];
    let (project, rule_set) = ("cardio-2026", "safe-harbor-1");
    let export = ResearchExportTx {
        patient: patient.account,
        categories: labs.clone(),
        project: project.into(),
        rule_set: rule_set.into(),
        plan: plan_digest(project, rule_set, &patient.account, &labs, &planned),
    };
    ok(&mut net, &mut member, TxBody::ResearchExport(export)).expect("the research export applies");

    let genesis_node = net.ledger.genesis().node_key;
    ok(&mut net, &mut regulator, TxBody::Nodes(NodeTx::Suspend { node_key: genesis_node }));
}

/// How a table is tampered with.
#[derive(Clone, Copy, Debug)]
enum Tamper {
    /// A bit of the first row's value flipped (of its key, for a table whose values are empty).
    Alter,
    /// The first row deleted.
    Delete,
    /// A row added: the first row's value under a new key.
    Add,
}

/// A key of the table that is not in `rows`: `key` with one bit of its last byte flipped (the
/// lowest that gives a new key, so that a text key stays text).
fn new_key(rows: &[(Vec<u8>, Vec<u8>)], key: &[u8]) -> Vec<u8> {
    (0..7)
        .map(|bit| {
            let mut k = key.to_vec();
            *k.last_mut().expect("no empty keys") ^= 1 << bit;
            k
        })
        .find(|k| rows.iter().all(|(r, _)| r != k))
        .expect("a free key")
}

fn tamper(path: &std::path::Path, table: &StateTable, how: Tamper) {
    let db = redb::Database::open(path).unwrap();
    let rows = table.rows(&db.begin_read().unwrap()).unwrap();
    let (k, v) = rows[0].clone();
    let txn = db.begin_write().unwrap();
    match how {
        Tamper::Alter if v.is_empty() => {
            assert!(table.remove_raw(&txn, &k).unwrap());
            table.put_raw(&txn, &new_key(&rows, &k), &v).unwrap();
        }
        Tamper::Alter => {
            let mut v = v;
            let mid = v.len() / 2;
            v[mid] ^= 0x04;
            table.put_raw(&txn, &k, &v).unwrap();
        }
        Tamper::Delete => assert!(table.remove_raw(&txn, &k).unwrap()),
        Tamper::Add => table.put_raw(&txn, &new_key(&rows, &k), &v).unwrap(),
    }
    txn.commit().unwrap();
}

#[test]
fn tampering_with_any_registered_table_is_refused_at_open_and_named_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let built = dir.path().join("built.redb");
    build(&built);
    verify_ledger(&built, &mut |_, _, _| {}).unwrap();
    Ledger::open(&built).unwrap();

    // The fixture must cover every registered table: an empty one could not be tampered with.
    let empty: Vec<&str> = {
        let db = redb::Database::open(&built).unwrap();
        let read = db.begin_read().unwrap();
        TABLES.iter().filter(|t| t.rows(&read).unwrap().is_empty()).map(|t| t.name).collect()
    };
    assert!(empty.is_empty(), "the fixture leaves these registered tables empty: {empty:?}");

    let case = dir.path().join("tampered.redb");
    for table in TABLES {
        for how in [Tamper::Alter, Tamper::Delete, Tamper::Add] {
            std::fs::copy(&built, &case).unwrap();
            tamper(&case, table, how);
            let what = format!("{how:?} in table {}", table.name);
            match Ledger::open(&case) {
                Err(LedgerError::Corrupt(_)) => {}
                other => panic!("{what}: the start-up check let it through: {other:?}"),
            }
            match verify_ledger(&case, &mut |_, _, _| {}) {
                Err(LedgerError::Corrupt(e)) => {
                    assert!(e.contains(&format!("{:?}", table.name)), "{what}: verify said {e}")
                }
                other => panic!("{what}: verify let it through: {other:?}"),
            }
            // Started without reading history, the ledger finds it in the background, and
            // then applies nothing more.
            let ledger = Ledger::open_checking_in_background(&case).unwrap();
            match settled(&ledger) {
                Integrity::Corrupt(e) => assert!(e.contains("digest"), "{what}: {e}"),
                other => panic!("{what}: the background check let it through: {other:?}"),
            }
            assert!(
                matches!(next_empty_block(&ledger), Err(LedgerError::Corrupt(_))),
                "{what}: a block was applied to a ledger found corrupt"
            );
        }
    }
}

/// The verdict of a ledger's checks once they have finished.
pub(super) fn settled(ledger: &Ledger) -> Integrity {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match ledger.integrity() {
            Integrity::Checking if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            settled => return settled,
        }
    }
}

/// Applies an empty block on top of the ledger's tip.
pub(super) fn next_empty_block(ledger: &Ledger) -> Result<Vec<Receipt>, LedgerError> {
    let mut tip = ledger.tip();
    let block = tip.propose(tip.time_ms + 1_000, vec![]);
    ledger.apply_block(&block, &[], &[])
}
