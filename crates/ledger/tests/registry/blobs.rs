//! Each vault blob belongs to one owner. A transaction naming a blob that a record, case,
//! emergency profile, device session or registration holds already is refused, whoever signs
//! it and whatever kind it is: otherwise erasing (or replacing) one owner's blob would delete
//! the bytes another owner still needs.

use medledger_core::{
    Hash,
    block::Refusal,
    tx::{
        AmendPatient, CaseTx, DeviceTx, EmergencyTx, RecordTx, RegisterPatient,
        consent::RecordCategory,
        devices::{DeviceKind, RegisterDevice},
        records::KeyRef,
    },
};

use super::{
    cases::{append, case_tx, open, open_body},
    devices::{batch, dev, register_body, with_session},
    emergency::{em, profile},
    records::{mint_body, minted, rec},
    *,
};

/// The actors of the test and the state its attacks build on.
struct World {
    net: Net,
    hospital: Actor,
    doctor: Actor,
    patient: Actor,
    device: Actor,
    session: Hash,
    /// A record of the patient the attacks share keys of.
    record: String,
    /// A case of the patient the attacks append to, and its head.
    case: String,
    head: Hash,
    /// The next reading number of the device's session.
    next_seq: u64,
    n: u64,
}

/// Every kind of transaction that names a blob, by a signer allowed to send it.
const ATTACKS: [&str; 13] = [
    "mint content",
    "mint metadata",
    "mint wrapped key",
    "record key share",
    "case description",
    "case entry",
    "emergency profile",
    "escrow piece",
    "device readings",
    "register patient details",
    "amend patient details",
    "admit hospital contact",
    "register device details",
];

/// The transaction of attack `kind`, naming `blob` where that kind names one.
fn attack(w: &mut World, kind: &str, blob: Hash) -> SignedTransaction {
    w.n += 1;
    let tag = format!("attack {}", w.n);
    let fresh = |what: &str| Hash::of(format!("{tag} {what}").as_bytes());
    let with_blob = |sealed: SealedRef| SealedRef { blob, ..sealed };
    match kind {
        "mint content" | "mint metadata" | "mint wrapped key" => {
            let mut m = mint_body(&w.patient, &w.doctor, RecordCategory::LabReport, &tag);
            match kind {
                "mint content" => m.content = blob,
                "mint metadata" => m.metadata = blob,
                _ => m.keys[1].blob = blob,
            }
            rec(RecordTx::Mint(m), &mut w.doctor)
        }
        "record key share" => {
            let key = KeyRef { recipient: w.doctor.account, blob };
            rec(RecordTx::ShareKey { record: w.record.clone(), key }, &mut w.patient)
        }
        "case description" => {
            let mut o = open_body(&w.patient, &w.doctor, &tag);
            o.description = blob;
            case_tx(CaseTx::Open(o), &mut w.doctor)
        }
        "case entry" => {
            let append = CaseTx::Append { case: w.case.clone(), prev: w.head, entry: blob };
            case_tx(append, &mut w.doctor)
        }
        "emergency profile" | "escrow piece" => {
            let mut p = profile(&w.hospital, false);
            p.profile = fresh("profile");
            p.escrow[0].blob = fresh("piece");
            match kind {
                "emergency profile" => p.profile = blob,
                _ => p.escrow[0].blob = blob,
            }
            let set = EmergencyTx::SetProfile { patient: w.patient.account, profile: p };
            em(set, &mut w.patient)
        }
        "device readings" => {
            let DeviceTx::Readings(mut b) = batch(w.session, w.next_seq, w.next_seq, 1) else {
                unreachable!()
            };
            b.blob = blob;
            dev(DeviceTx::Readings(b), &mut w.device)
        }
        "register patient details" => {
            let newcomer = Actor::new();
            w.hospital.sign(RegistryTx::RegisterPatient(RegisterPatient {
                key: newcomer.key.public_key(),
                encryption_key: newcomer.enc.public_key(),
                details: with_blob(sealed(&tag)),
                attendant: sealed(&format!("{tag} attendant")),
            }))
        }
        "amend patient details" => {
            let patient = w.net.ledger.patient_id_of(&w.patient.account).unwrap().unwrap();
            let attendant = w.net.ledger.patient(patient).unwrap().unwrap().attendant;
            w.hospital.sign(RegistryTx::AmendPatient(AmendPatient {
                patient,
                details: with_blob(sealed(&tag)),
                attendant,
            }))
        }
        "admit hospital contact" => {
            let newcomer = Actor::new();
            w.net.regulator.sign(RegistryTx::AdmitHospital(AdmitHospital {
                key: newcomer.key.public_key(),
                encryption_key: newcomer.enc.public_key(),
                registration_id: format!("GOV-{}", w.n),
                name: tag.clone(),
                city: "Leeds".into(),
                specialisation: "general".into(),
                contact: with_blob(sealed(&tag)),
            }))
        }
        "register device details" => {
            let DeviceTx::Register(r) =
                register_body(&Actor::new(), &w.patient, DeviceKind::Thermometer)
            else {
                unreachable!()
            };
            let r = RegisterDevice { details: with_blob(r.details), ..r };
            dev(DeviceTx::Register(r), &mut w.patient)
        }
        other => panic!("no attack {other}"),
    }
}

/// Keeps the world in step with an applied attack (the case's head, the device's numbers).
fn applied_attack(w: &mut World, kind: &str, r: &Receipt) {
    match (kind, applied(r)) {
        ("case entry", Some(Created::CaseEntry { head, .. })) => w.head = *head,
        ("case entry", other) => panic!("{other:?}"),
        ("device readings", _) => w.next_seq += 1,
        _ => {}
    }
}

#[test]
fn no_transaction_may_name_a_blob_that_belongs_to_another_owner() {
    let (mut net, mut hospital, mut doctor, mut patient, mut device, session) = with_session();
    // The victims: a blob of every kind of owner, some of another patient.
    let mut other = Actor::new();
    applied(&net.one(register(&mut hospital, &other)));
    let victim_record = mint_body(&other, &doctor, RecordCategory::LabReport, "victim");
    let r = net.one(rec(RecordTx::Mint(victim_record.clone()), &mut doctor));
    let victim_pmr = minted(&r);
    let record = minted(&net.one(rec(
        RecordTx::Mint(mint_body(&patient, &doctor, RecordCategory::LabReport, "shared")),
        &mut doctor,
    )));
    let (case, head) = open(&mut net, &mut doctor, &patient, "case");
    let head = append(&mut net, &mut doctor, &case, head, "victim");
    let victim_case = open_body(&patient, &doctor, "case");
    let victim_profile = profile(&hospital, false);
    let set = EmergencyTx::SetProfile { patient: patient.account, profile: victim_profile.clone() };
    applied(&net.one(em(set, &mut patient)));
    let readings = batch(session, 1, 10, 10);
    let DeviceTx::Readings(victim_batch) = &readings else { unreachable!() };
    let victim_batch = victim_batch.blob;
    applied(&net.one(dev(readings, &mut device)));
    let victims = [
        ("another patient's record content", victim_record.content),
        ("another patient's record metadata", victim_record.metadata),
        ("another patient's wrapped record key", victim_record.keys[0].blob),
        ("a case description", victim_case.description),
        ("a case entry", Hash::of(format!("entry/{case}/victim").as_bytes())),
        ("a wrapped case key", victim_case.keys[0].blob),
        ("an emergency profile", victim_profile.profile),
        ("an escrow piece", victim_profile.escrow[0].blob),
        ("a device batch", victim_batch),
        ("a wrapped session key", Hash::of(b"session-key/patient/s1")),
        ("a patient's sealed details", details_of(&other).blob),
        ("a patient's sealed attendant", attendant_of(&patient).blob),
        ("a hospital's sealed contact", sealed(&format!("contact of {}", hospital.account)).blob),
        ("a device's sealed details", sealed(&format!("serial/{}", device.account)).blob),
    ];
    let mut w = World {
        net,
        hospital,
        doctor,
        patient,
        device,
        session,
        record,
        case,
        head,
        next_seq: 11,
        n: 0,
    };
    let kept = w.net.ledger.blobs_in_use().unwrap();
    let owners: Vec<_> = victims.iter().map(|(_, b)| w.net.ledger.blob_owner(b).unwrap()).collect();

    for kind in ATTACKS {
        for (what, blob) in victims {
            let t = attack(&mut w, kind, blob);
            match refusal(&w.net.one(t)) {
                // (An amendment naming the patient's own attendant as details names it twice.)
                Refusal::Invalid { reason }
                    if reason.contains("already belongs to") || reason.contains("named twice") => {}
                other => panic!("{kind} naming {what}: {other:?}"),
            }
        }
    }
    assert_eq!(w.net.ledger.blobs_in_use().unwrap(), kept, "a refusal changed what is kept");
    let after: Vec<_> = victims.iter().map(|(_, b)| w.net.ledger.blob_owner(b).unwrap()).collect();
    assert_eq!(after, owners, "a refusal moved a blob to another owner");

    // Each attack is otherwise allowed: with a blob of its own it applies.
    for kind in ATTACKS {
        let t = attack(&mut w, kind, Hash::of(format!("{kind} of its own").as_bytes()));
        let r = w.net.one(t);
        applied_attack(&mut w, kind, &r);
    }

    // Erasing the victim record erases its blobs and nothing that belongs to anyone else.
    applied(&w.net.one(rec(RecordTx::Erase { record: victim_pmr }, &mut other)));
    for (what, blob) in &victims[3..] {
        assert_eq!(w.net.ledger.erased_at(blob).unwrap(), None, "{what} was erased");
    }
}

/// A transaction naming one blob in two places is refused (erasing or replacing one place
/// would take the other), and so is an amendment that moves a patient's blob to another slot.
#[test]
fn a_transaction_may_not_name_one_blob_twice_or_move_it_to_another_slot() {
    let (mut net, mut hospital, mut doctor, patient) = populated();
    let mut twice = mint_body(&patient, &doctor, RecordCategory::LabReport, "twice");
    twice.metadata = twice.content;
    let mut key_is_content = mint_body(&patient, &doctor, RecordCategory::LabReport, "key");
    key_is_content.keys[0].blob = key_is_content.content;
    for m in [twice, key_is_content] {
        match refusal(&net.one(rec(RecordTx::Mint(m), &mut doctor))) {
            Refusal::Invalid { reason } if reason.contains("named twice") => {}
            other => panic!("{other:?}"),
        }
    }
    let newcomer = Actor::new();
    let same = sealed("details and attendant at once");
    let t = hospital.sign(RegistryTx::RegisterPatient(RegisterPatient {
        key: newcomer.key.public_key(),
        encryption_key: newcomer.enc.public_key(),
        details: same,
        attendant: same,
    }));
    assert!(
        matches!(refusal(&net.one(t)), Refusal::Invalid { reason } if reason.contains("named twice"))
    );

    // The patient's attendant blob moved into the details slot (and back): refused; keeping
    // the attendant in its own slot is allowed.
    let patient_id = net.ledger.patient_id_of(&patient.account).unwrap().unwrap();
    let swapped = hospital.sign(RegistryTx::AmendPatient(AmendPatient {
        patient: patient_id,
        details: attendant_of(&patient),
        attendant: sealed("a new attendant"),
    }));
    match refusal(&net.one(swapped)) {
        Refusal::Invalid { reason } if reason.contains("already belongs to attendant of") => {}
        other => panic!("{other:?}"),
    }
    let kept = hospital.sign(RegistryTx::AmendPatient(AmendPatient {
        patient: patient_id,
        details: sealed("corrected details"),
        attendant: attendant_of(&patient),
    }));
    applied(&net.one(kept));
    // The old details blob no longer belongs to the patient: it may be named again (the vault
    // may have collected it, but the ledger does not hold it for anyone).
    let mut reuse = mint_body(&patient, &doctor, RecordCategory::LabReport, "reuse");
    reuse.metadata = details_of(&patient).blob;
    minted(&net.one(rec(RecordTx::Mint(reuse), &mut doctor)));
}

/// A ledger written before `registration_blobs` existed (no table, no marker, an index digest
/// without those rows) opens with the index filled from its registrations once both digests
/// checked out, and `verify`'s replay agrees; the same when the table is there but empty (a
/// crash after an open created it and before the fill committed). Without the fill, a record
/// could name a patient's sealed details in such a ledger, and erasing it would take them.
#[test]
fn a_ledger_from_before_registration_blobs_were_indexed_fills_the_index() {
    for table_left_empty in [false, true] {
        from_before_registration_blobs(table_left_empty);
    }
}

fn from_before_registration_blobs(table_left_empty: bool) {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    let (mut net, _, mut doctor, mut patient) = populated_in(|g| Ledger::create(&path, g).unwrap());
    let device = Actor::new();
    let t = dev(register_body(&device, &patient, DeviceKind::Thermometer), &mut patient);
    applied(&net.one(t));
    let Net { ledger, tip, regulator, time } = net;
    drop(ledger);

    // As an older version left the file.
    let index = TableDefinition::<&[u8; 32], &str>::new("registration_blobs");
    let rows: Vec<(Vec<u8>, Vec<u8>)> = {
        let db = redb::Database::open(&path).unwrap();
        let read = db.begin_read().unwrap();
        let table = read.open_table(index).unwrap();
        table
            .iter()
            .unwrap()
            .map(|row| {
                let (k, v) = row.unwrap();
                (k.value().to_vec(), v.value().as_bytes().to_vec())
            })
            .collect()
    };
    let names = ("registration_blobs", "index_digest", "registration_blobs_filled");
    as_before_table(&path, names, &rows, |txn| {
        assert!(txn.delete_table(index).unwrap());
        if table_left_empty {
            txn.open_table(index).unwrap();
        }
    });
    // Patient details and attendant, hospital contact, device details.
    assert_eq!(rows.len(), 4, "{rows:?}");

    let ledger = Ledger::open(&path).unwrap();
    let mut net = Net { ledger, tip, regulator, time };
    let mut m = mint_body(&patient, &doctor, RecordCategory::LabReport, "old");
    m.content = details_of(&patient).blob;
    match refusal(&net.one(rec(RecordTx::Mint(m), &mut doctor))) {
        Refusal::Invalid { reason } if reason.contains("already belongs to registration of") => {}
        other => panic!("{other:?}"),
    }
    drop(net);
    medledger_ledger::verify::verify_ledger(&path, &mut |_, _, _| {}).unwrap();
    Ledger::open(&path).unwrap();
}
