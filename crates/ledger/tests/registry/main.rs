//! Registry behaviour through `Ledger::apply_block`: the happy paths, and every refusal, each
//! checked to change nothing.

use medledger_core::{
    Hash,
    block::{Created, Genesis, Outcome, Receipt, Refusal, Tip},
    ids::AccountId,
    keys::{DecryptionKey, SigningKey},
    tx::{
        AdmitHospital, OnboardDoctor, RegisterPatient, RegistryTx, SealedRef, SignedTransaction,
        Transaction, TxBody,
    },
};
use medledger_ledger::{Ledger, verify_signatures};

mod amend;
mod authorize_model;
mod blobs;
mod cases;
mod consent;
mod devices;
mod emergency;
mod log_chunks;
mod nodes;
mod organisations;
mod records;
mod research;
mod tamper;
mod visibility;

const CHAIN: &str = "test-chain";
/// Genesis time of the test networks: 2026-11-30 00:00 UTC (records are dated before it).
const GENESIS_MS: u64 = 1_796_000_000_000 / 86_400_000 * 86_400_000;

/// A person or organisation with keys, and the nonce of their next transaction.
struct Actor {
    key: SigningKey,
    enc: DecryptionKey,
    account: AccountId,
    nonce: u64,
}

impl Actor {
    fn new() -> Self {
        let key = SigningKey::generate();
        let account = AccountId::from_initial_key(&key.public_key());
        Actor { key, enc: DecryptionKey::generate(), account, nonce: 0 }
    }
    fn sign(&mut self, body: RegistryTx) -> SignedTransaction {
        self.sign_body(TxBody::Registry(body))
    }
    fn sign_body(&mut self, body: TxBody) -> SignedTransaction {
        self.nonce += 1;
        Transaction { chain_id: CHAIN.into(), signer: self.account, nonce: self.nonce, body }
            .sign(&self.key)
    }
}

struct Net {
    ledger: Ledger,
    tip: Tip,
    regulator: Actor,
    time: u64,
}

fn sealed(tag: &str) -> SealedRef {
    SealedRef {
        blob: Hash::of(tag.as_bytes()),
        commitment: Hash::of_parts(&[b"salt", tag.as_bytes()]),
    }
}

/// Makes the ledger file at `path` look as a version from before `table` existed left it:
/// the share of each of its `rows` (key and value as the digests hash them: integers
/// big-endian) taken out of the digest stored under `digest` (a row's share: table name, 0,
/// key length little-endian, key, value), the fill's `marker` removed, and `reset` run in the
/// same write transaction (it deletes the table, or empties it: a crash after an open created
/// it and before the fill committed).
fn as_before_table(
    path: &std::path::Path,
    (table, digest, marker): (&str, &str, &str),
    rows: &[(Vec<u8>, Vec<u8>)],
    reset: impl FnOnce(&redb::WriteTransaction),
) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("meta")).unwrap();
        let mut sum: [u8; 32] =
            redb::ReadableTable::get(&meta, digest).unwrap().unwrap().value().try_into().unwrap();
        for (key, value) in rows {
            let len = (key.len() as u64).to_le_bytes();
            let row = Hash::of_parts(&[table.as_bytes(), &[0], &len, key, value]);
            sum.iter_mut().zip(row.0).for_each(|(d, r)| *d ^= r);
        }
        meta.insert(digest, sum.as_slice()).unwrap();
        assert!(meta.remove(marker).unwrap().is_some(), "no {marker}");
    }
    reset(&txn);
    txn.commit().unwrap();
}

/// Every blob an applied transaction names (`TxBody::blobs`) is in the vault's keep-set
/// (`Ledger::blobs_in_use`), checked after every block of every test (the suite applies every
/// kind that names a blob, all eighteen blob roles): a blob outside it would be deleted by the
/// garbage collector a day after its upload.
fn blobs_kept(ledger: &Ledger, txs: &[SignedTransaction], receipts: &[Receipt]) {
    let in_use = ledger.blobs_in_use().unwrap();
    for (tx, receipt) in txs.iter().zip(receipts) {
        match &receipt.outcome {
            // A release to a reader the ledger denied stores nothing: its blob is garbage.
            Outcome::Applied { created: Some(Created::ShareRelease { decision, .. }) }
                if !decision.is_allowed() =>
            {
                continue;
            }
            Outcome::Applied { .. } => {}
            Outcome::Refused { .. } => continue,
        }
        for blob in tx.tx.body.blobs() {
            assert!(
                in_use.contains(&blob.hash),
                "the {} blob of an applied {} is not kept",
                blob.role.name(),
                tx.tx.body.kind()
            );
        }
    }
}

impl Net {
    fn new() -> Self {
        Self::with(|g| Ledger::in_memory(g).unwrap())
    }

    /// A network whose ledger `make` creates from genesis.
    fn with(make: impl FnOnce(Genesis) -> Ledger) -> Self {
        let regulator = Actor::new();
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            time_ms: GENESIS_MS,
            regulator_key: regulator.key.public_key(),
            regulator_encryption_key: regulator.enc.public_key(),
            node_key: SigningKey::generate().public_key(),
        };
        let ledger = make(genesis.clone());
        Net { tip: Tip::genesis(&genesis), ledger, regulator, time: GENESIS_MS }
    }

    /// Orders `txs` into the next block and applies it, verifying signatures as a node does.
    fn block(&mut self, txs: Vec<SignedTransaction>) -> Vec<Receipt> {
        self.time += 1_000;
        self.block_at(self.time, txs)
    }

    /// The same, at a given block time.
    fn block_at(&mut self, time: u64, txs: Vec<SignedTransaction>) -> Vec<Receipt> {
        self.time = time;
        let block = self.tip.propose(self.time, txs);
        let ok = verify_signatures(&block.txs, |_| false);
        let receipts = self.ledger.apply_block(&block, &ok, &[]).unwrap();
        blobs_kept(&self.ledger, &block.txs, &receipts);
        receipts
    }

    fn one(&mut self, tx: SignedTransaction) -> Receipt {
        self.block(vec![tx]).pop().unwrap()
    }

    fn admit(&mut self, hospital: &Actor) -> Receipt {
        let tx = self.regulator.sign(RegistryTx::AdmitHospital(AdmitHospital {
            key: hospital.key.public_key(),
            encryption_key: hospital.enc.public_key(),
            registration_id: "GOV-1".into(),
            name: "St. Mary's".into(),
            city: "Leeds".into(),
            specialisation: "cardiology".into(),
            contact: sealed(&format!("contact of {}", hospital.account)),
        }));
        self.one(tx)
    }

    /// The full registry state, to prove that a refusal changed nothing.
    fn snapshot(&self) -> String {
        let accounts: Vec<_> = [&self.regulator.account]
            .iter()
            .map(|a| format!("{:?}", self.ledger.account(a).unwrap()))
            .collect();
        format!(
            "{:?}|{:?}|{:?}",
            self.ledger.hospitals().unwrap(),
            self.ledger.doctors(None).unwrap(),
            accounts
        )
    }
}

fn onboard(hospital: &mut Actor, doctor: &Actor) -> SignedTransaction {
    hospital.sign(RegistryTx::OnboardDoctor(OnboardDoctor {
        key: doctor.key.public_key(),
        encryption_key: doctor.enc.public_key(),
        // One number per doctor: the registry refuses a number twice.
        registration_number: format!("GMC-{}", doctor.account),
        name: "Dr. Okafor".into(),
        specialisation: "cardiology".into(),
    }))
}

fn register(hospital: &mut Actor, patient: &Actor) -> SignedTransaction {
    hospital.sign(RegistryTx::RegisterPatient(RegisterPatient {
        key: patient.key.public_key(),
        encryption_key: patient.enc.public_key(),
        details: details_of(patient),
        attendant: attendant_of(patient),
    }))
}

/// The sealed details `register` registers for `patient` (each blob belongs to one owner).
fn details_of(patient: &Actor) -> SealedRef {
    sealed(&format!("details of {}", patient.account))
}

/// The sealed attendant details `register` registers for `patient`.
fn attendant_of(patient: &Actor) -> SealedRef {
    sealed(&format!("attendant of {}", patient.account))
}

fn refusal(r: &Receipt) -> &Refusal {
    match &r.outcome {
        Outcome::Refused { reason } => reason,
        Outcome::Applied { .. } => panic!("expected a refusal, got {r:?}"),
    }
}

fn applied(r: &Receipt) -> Option<&Created> {
    match &r.outcome {
        Outcome::Applied { created } => created.as_ref(),
        Outcome::Refused { reason } => panic!("expected success, got refusal {reason}"),
    }
}

/// Admits a hospital, onboards a doctor, registers a patient.
fn populated() -> (Net, Actor, Actor, Actor) {
    populated_in(|g| Ledger::in_memory(g).unwrap())
}

/// [`populated`] on a ledger that `make` creates from genesis (a file, to reopen as another
/// version would).
fn populated_in(make: impl FnOnce(Genesis) -> Ledger) -> (Net, Actor, Actor, Actor) {
    let mut net = Net::with(make);
    let mut hospital = Actor::new();
    let doctor = Actor::new();
    let patient = Actor::new();
    applied(&net.admit(&hospital));
    let t = onboard(&mut hospital, &doctor);
    applied(&net.one(t));
    let t = register(&mut hospital, &patient);
    applied(&net.one(t));
    (net, hospital, doctor, patient)
}

#[test]
fn happy_path_builds_the_directory_and_assigns_patient_ids() {
    let mut net = Net::new();
    let mut hospital = Actor::new();
    let created = net.admit(&hospital);
    assert_eq!(applied(&created), Some(&Created::Account { account: hospital.account }));
    let doctor = Actor::new();
    let t = onboard(&mut hospital, &doctor);
    applied(&net.one(t));
    let doctors = net.ledger.doctors(Some(&hospital.account)).unwrap();
    assert_eq!(doctors.len(), 1);
    assert_eq!(doctors[0].1.name, "Dr. Okafor");

    let patients: Vec<Actor> = (0..20).map(|_| Actor::new()).collect();
    let txs = patients.iter().map(|p| register(&mut hospital, p)).collect();
    let receipts = net.block(txs);
    let mut ids = Vec::new();
    for (r, p) in receipts.iter().zip(&patients) {
        let Some(Created::Patient { account, patient_id }) = applied(r) else {
            panic!("no patient id")
        };
        assert_eq!(*account, p.account);
        assert!((10_000..100_000).contains(&patient_id.0), "five digits: {patient_id}");
        assert_eq!(net.ledger.patient(*patient_id).unwrap().unwrap().account, p.account);
        assert_eq!(net.ledger.patient_id_of(&p.account).unwrap(), Some(*patient_id));
        ids.push(*patient_id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "Patient-IDs are distinct");
    assert_eq!(net.ledger.account(&hospital.account).unwrap().unwrap().nonce, hospital.nonce);
}

/// A Patient-ID is not a function of what a client can hold: its own transaction (the
/// wallet's key proof serves it) and those of the registrations before it. The same
/// registrations, byte for byte, get other IDs where another registration came first, and on
/// another network (another ledger before them) even as its first patients.
#[test]
fn a_patient_id_is_not_a_function_of_its_transaction_alone() {
    let mut hospital = Actor::new();
    let patients: Vec<Actor> = (0..3).map(|_| Actor::new()).collect();
    let txs: Vec<_> = patients.iter().map(|p| register(&mut hospital, p)).collect();
    let ids = |net: &mut Net| -> Vec<u64> {
        net.admit(&hospital);
        let receipts = net.block(txs.clone());
        let id = |r: &Receipt| match applied(r) {
            Some(Created::Patient { patient_id, .. }) => patient_id.0,
            other => panic!("not registered: {other:?}"),
        };
        receipts.iter().map(id).collect()
    };
    let (mut alone, mut after_another) = (Net::new(), Net::new());
    let mut other = Actor::new();
    after_another.admit(&other);
    let t = register(&mut other, &Actor::new());
    applied(&after_another.one(t)).expect("registered");
    assert_ne!(ids(&mut alone), ids(&mut after_another));
    assert_ne!(ids(&mut Net::new()), ids(&mut Net::new()));
}

#[test]
fn wrongly_signed_transaction_is_refused_and_changes_nothing() {
    let mut net = Net::new();
    let hospital = Actor::new();
    let before = net.snapshot();
    let mut tx = net.regulator.sign(RegistryTx::AdmitHospital(AdmitHospital {
        key: hospital.key.public_key(),
        encryption_key: hospital.enc.public_key(),
        registration_id: "GOV-1".into(),
        name: "Forged".into(),
        city: "Leeds".into(),
        specialisation: "x".into(),
        contact: sealed(&format!("contact of {}", hospital.account)),
    }));
    tx.signature.0[10] ^= 1;
    assert_eq!(refusal(&net.one(tx)), &Refusal::BadSignature);
    assert_eq!(net.snapshot(), before);
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let mut net = Net::new();
    let hospital = Actor::new();
    let mut impostor = Actor::new();
    impostor.account = net.regulator.account; // claims to be the regulator
    let before = net.snapshot();
    let tx = impostor.sign(RegistryTx::AdmitHospital(AdmitHospital {
        key: hospital.key.public_key(),
        encryption_key: hospital.enc.public_key(),
        registration_id: "GOV-1".into(),
        name: "Forged".into(),
        city: "Leeds".into(),
        specialisation: "x".into(),
        contact: sealed(&format!("contact of {}", hospital.account)),
    }));
    assert!(matches!(refusal(&net.one(tx)), Refusal::KeyNotActive { .. }));
    assert_eq!(net.snapshot(), before);
}

#[test]
fn replayed_nonce_and_duplicate_transaction_are_refused() {
    let (mut net, mut hospital, _, _) = populated();
    let doctor = Actor::new();
    let tx = onboard(&mut hospital, &doctor);
    applied(&net.one(tx.clone()));
    let before = net.snapshot();
    // The identical transaction again.
    assert!(matches!(refusal(&net.one(tx)), Refusal::Duplicate { .. }));
    // A different transaction reusing the nonce.
    hospital.nonce -= 1;
    let other = onboard(&mut hospital, &Actor::new());
    assert!(matches!(refusal(&net.one(other)), Refusal::StaleNonce { .. }));
    assert_eq!(net.snapshot(), before);
}

#[test]
fn wrong_chain_id_is_refused() {
    let mut net = Net::new();
    let hospital = Actor::new();
    net.regulator.nonce += 1;
    let tx = Transaction {
        chain_id: "another-chain".into(),
        signer: net.regulator.account,
        nonce: net.regulator.nonce,
        body: TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
            key: hospital.key.public_key(),
            encryption_key: hospital.enc.public_key(),
            registration_id: "GOV-1".into(),
            name: "H".into(),
            city: "C".into(),
            specialisation: "S".into(),
            contact: sealed(&format!("contact of {}", hospital.account)),
        })),
    }
    .sign(&net.regulator.key);
    let before = net.snapshot();
    assert!(matches!(refusal(&net.one(tx)), Refusal::WrongChain { .. }));
    assert_eq!(net.snapshot(), before);
}

#[test]
fn a_doctor_cannot_admit_a_hospital_and_a_patient_cannot_onboard_a_doctor() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let before = net.snapshot();
    let h = Actor::new();
    let tx = doctor.sign(RegistryTx::AdmitHospital(AdmitHospital {
        key: h.key.public_key(),
        encryption_key: h.enc.public_key(),
        registration_id: "GOV-2".into(),
        name: "Shadow Clinic".into(),
        city: "Nowhere".into(),
        specialisation: "none".into(),
        contact: sealed(&format!("contact of {}", h.account)),
    }));
    assert!(matches!(refusal(&net.one(tx)), Refusal::Unauthorised { .. }));
    let tx = onboard(&mut patient, &Actor::new());
    assert!(matches!(refusal(&net.one(tx)), Refusal::Unauthorised { .. }));
    let tx = register(&mut doctor, &Actor::new());
    assert!(matches!(refusal(&net.one(tx)), Refusal::Unauthorised { .. }));
    assert_eq!(net.snapshot(), before);
    // A refused transaction does not consume the signer's nonce.
    assert_eq!(net.ledger.account(&doctor.account).unwrap().unwrap().nonce, 0);
}

#[test]
fn an_unknown_signer_is_refused() {
    let mut net = Net::new();
    let mut stranger = Actor::new();
    let tx = onboard(&mut stranger, &Actor::new());
    let before = net.snapshot();
    assert!(matches!(refusal(&net.one(tx)), Refusal::UnknownSigner { .. }));
    assert_eq!(net.snapshot(), before);
}

#[test]
fn a_revoked_key_is_refused_from_the_next_block_on() {
    let (mut net, mut hospital, mut doctor, _) = populated();
    // The hospital revokes its doctor's key, installing none.
    let tx = hospital.sign(RegistryTx::RevokeKey { account: doctor.account, replacement: None });
    applied(&net.one(tx));
    assert_eq!(net.ledger.account(&doctor.account).unwrap().unwrap().key, None);
    let before = net.snapshot();
    let tx = doctor.sign(RegistryTx::RotateKey { new_key: SigningKey::generate().public_key() });
    assert!(matches!(refusal(&net.one(tx)), Refusal::KeyNotActive { .. }));
    assert_eq!(net.snapshot(), before);
}

#[test]
fn revocation_with_replacement_installs_the_new_key() {
    let (mut net, mut hospital, _, mut patient) = populated();
    let lost_phone = std::mem::replace(&mut patient.key, SigningKey::generate());
    let tx = hospital.sign(RegistryTx::RevokeKey {
        account: patient.account,
        replacement: Some(patient.key.public_key()),
    });
    applied(&net.one(tx));
    // The old key is refused, the new one accepted.
    let mut thief = Actor {
        key: lost_phone,
        enc: DecryptionKey::generate(),
        account: patient.account,
        nonce: 0,
    };
    let tx = thief.sign(RegistryTx::RotateKey { new_key: SigningKey::generate().public_key() });
    assert!(matches!(refusal(&net.one(tx)), Refusal::KeyNotActive { .. }));
    let next = SigningKey::generate();
    let tx = patient.sign(RegistryTx::RotateKey { new_key: next.public_key() });
    applied(&net.one(tx));
}

#[test]
fn only_an_authority_may_revoke_a_key() {
    let (mut net, _, doctor, mut patient) = populated();
    let before = net.snapshot();
    let tx = patient.sign(RegistryTx::RevokeKey { account: doctor.account, replacement: None });
    assert!(matches!(refusal(&net.one(tx)), Refusal::Unauthorised { .. }));
    assert_eq!(net.snapshot(), before);
    assert!(net.ledger.account(&doctor.account).unwrap().unwrap().key.is_some());
}

#[test]
fn key_rotation_switches_the_accepted_key() {
    let (mut net, mut hospital, _, _) = populated();
    let new_key = SigningKey::generate();
    let tx = hospital.sign(RegistryTx::RotateKey { new_key: new_key.public_key() });
    applied(&net.one(tx));
    // The old key no longer signs for the hospital.
    let tx = onboard(&mut hospital, &Actor::new());
    assert!(matches!(refusal(&net.one(tx)), Refusal::KeyNotActive { .. }));
    hospital.nonce -= 1;
    hospital.key = new_key;
    let tx = onboard(&mut hospital, &Actor::new());
    applied(&net.one(tx));
}

#[test]
fn a_suspended_hospital_and_its_doctors_are_refused_until_reinstated() {
    let (mut net, mut hospital, mut doctor, _) = populated();
    let tx = net
        .regulator
        .sign(RegistryTx::SuspendHospital { hospital: hospital.account, reason: "audit".into() });
    applied(&net.one(tx));
    assert!(net.ledger.hospitals().unwrap()[0].2, "listed as suspended");
    let before = net.snapshot();
    let tx = onboard(&mut hospital, &Actor::new());
    assert!(matches!(refusal(&net.one(tx)), Refusal::Suspended { .. }));
    let tx = doctor.sign(RegistryTx::RotateKey { new_key: SigningKey::generate().public_key() });
    assert!(matches!(refusal(&net.one(tx)), Refusal::Suspended { .. }));
    assert_eq!(net.snapshot(), before);
    // Only the regulator may reinstate.
    hospital.nonce -= 1;
    let tx = hospital.sign(RegistryTx::ReinstateHospital { hospital: hospital.account });
    assert!(matches!(
        refusal(&net.one(tx)),
        Refusal::Suspended { .. } | Refusal::Unauthorised { .. }
    ));
    let tx = net.regulator.sign(RegistryTx::ReinstateHospital { hospital: hospital.account });
    applied(&net.one(tx));
    hospital.nonce -= 1;
    let tx = onboard(&mut hospital, &Actor::new());
    applied(&net.one(tx));
}

#[test]
fn invalid_directory_text_is_refused() {
    let mut net = Net::new();
    let hospital = Actor::new();
    let before = net.snapshot();
    for (name, city) in [("", "Leeds"), ("ok", &"x".repeat(201)[..]), ("bad\u{7}", "Leeds")] {
        let tx = net.regulator.sign(RegistryTx::AdmitHospital(AdmitHospital {
            key: hospital.key.public_key(),
            encryption_key: hospital.enc.public_key(),
            registration_id: "GOV-1".into(),
            name: name.into(),
            city: city.into(),
            specialisation: "s".into(),
            contact: sealed(&format!("contact of {}", hospital.account)),
        }));
        assert!(matches!(refusal(&net.one(tx)), Refusal::Invalid { .. }));
        net.regulator.nonce -= 1;
    }
    assert_eq!(net.snapshot(), before);
}

#[test]
fn a_block_that_does_not_follow_the_tip_is_rejected_whole() {
    let mut net = Net::new();
    let mut stale = net.tip.clone();
    let h = Actor::new();
    applied(&net.admit(&h));
    let block = stale.propose(5_000, vec![]);
    let err = net.ledger.apply_block(&block, &[], &[]).unwrap_err();
    assert!(err.to_string().contains("invalid block"), "{err}");
    // A header that lies about its contents is rejected too.
    let mut tip = net.tip.clone();
    let mut block = tip.propose(9_000, vec![]);
    block.header.log_size += 1;
    assert!(net.ledger.apply_block(&block, &[], &[]).is_err());
    assert_eq!(net.ledger.tip().height, 1);
}

#[test]
fn proofs_from_the_ledger_verify() {
    let (net, _, _, _) = populated();
    let cp = net.ledger.checkpoint();
    assert_eq!(cp.log_size, 3);
    for i in 0..3 {
        let rec = net.ledger.transaction_at(i).unwrap().unwrap();
        let proof = net.ledger.inclusion_proof(i, cp.log_size).unwrap();
        proof.verify(&medledger_core::merkle::leaf_hash(&rec.tx.encode()), &cp.log_root).unwrap();
        assert_eq!(
            net.ledger.transaction(&rec.receipt.tx_hash).unwrap().unwrap().receipt.log_index,
            i
        );
    }
    let c = net.ledger.consistency_proof(1, 3).unwrap();
    c.verify(&net.ledger.root_at(1).unwrap(), &cp.log_root).unwrap();
}

/// The report's H3: what is not signed by a registered account's active key never passes
/// admission, so it is never ordered: a forged signer, an old key after a rotation, an
/// unknown account, a stale nonce, a suspended hospital, a device signing consent.
#[test]
fn admission_refuses_every_transaction_that_is_not_the_accounts_own() {
    let (mut net, mut hospital, _, _) = populated();
    let mut impostor = Actor::new();
    impostor.account = net.regulator.account;
    impostor.nonce = 1_000_000_000;
    let forged = impostor.sign(RegistryTx::RotateKey { new_key: impostor.key.public_key() });
    assert!(matches!(net.ledger.precheck(&forged), Err(Refusal::KeyNotActive { .. })));

    let stranger_tx =
        Actor::new().sign(RegistryTx::RotateKey { new_key: SigningKey::generate().public_key() });
    assert!(matches!(net.ledger.precheck(&stranger_tx), Err(Refusal::UnknownSigner { .. })));

    // The hospital's own key passes; after a rotation, the old key no longer does.
    let ok = onboard(&mut hospital, &Actor::new());
    assert_eq!(net.ledger.precheck(&ok), Ok(()));
    hospital.nonce -= 1;
    let new_key = SigningKey::generate();
    // Under the new key before its rotation is committed: refused, unless the node knows the
    // rotation is in its queue (signed by the active key).
    let mut ahead = Actor { key: new_key.clone(), ..Actor::new() };
    ahead.account = hospital.account;
    ahead.nonce = hospital.nonce + 1;
    let early = onboard(&mut ahead, &Actor::new());
    assert!(matches!(net.ledger.precheck(&early), Err(Refusal::KeyNotActive { .. })));
    let (account, key) = (hospital.account, new_key.public_key());
    assert_eq!(net.ledger.precheck_with(&early, |a, k| *a == account && *k == key), Ok(()));
    let other = SigningKey::generate().public_key();
    assert!(matches!(
        net.ledger.precheck_with(&early, |a, k| *a == account && *k == other),
        Err(Refusal::KeyNotActive { .. })
    ));
    applied(&net.one(hospital.sign(RegistryTx::RotateKey { new_key: new_key.public_key() })));
    let old = onboard(&mut hospital, &Actor::new());
    assert!(matches!(net.ledger.precheck(&old), Err(Refusal::KeyNotActive { .. })));
    hospital.nonce -= 1;
    hospital.key = new_key;
    let fresh = onboard(&mut hospital, &Actor::new());
    assert_eq!(net.ledger.precheck(&fresh), Ok(()));
    applied(&net.one(fresh.clone()));
    assert!(matches!(net.ledger.precheck(&fresh), Err(Refusal::StaleNonce { .. })));

    let suspend = net
        .regulator
        .sign(RegistryTx::SuspendHospital { hospital: hospital.account, reason: "licence".into() });
    applied(&net.one(suspend));
    let while_suspended = onboard(&mut hospital, &Actor::new());
    assert!(matches!(net.ledger.precheck(&while_suspended), Err(Refusal::Suspended { .. })));
}

/// The issue-10 retry: a transaction refused for a cause that is later fixed goes through
/// when sent again, byte for byte (its nonce was not consumed); one that was applied stays a
/// duplicate, and the duplicate names where it was applied.
#[test]
fn a_refused_transaction_applies_when_sent_again_after_its_cause_is_fixed() {
    let (mut net, mut hospital, _, _) = populated();
    let mut p = Actor::new();
    let guardian = Actor::new();
    // The patient names a guardian who is not registered yet: refused.
    applied(&net.one(register(&mut hospital, &p)));
    let name = p.sign_body(TxBody::Consent(medledger_core::tx::ConsentTx::NameDelegate {
        delegate: guardian.account,
    }));
    let first = net.one(name.clone());
    assert!(matches!(refusal(&first), Refusal::NotFound { .. }), "{first:?}");
    // The guardian registers; the same bytes now apply.
    applied(&net.one(register(&mut hospital, &guardian)));
    let second = net.one(name.clone());
    assert!(matches!(second.outcome, Outcome::Applied { .. }), "{second:?}");
    // Sent a third time: a duplicate of the applied one, which the index now names.
    let third = net.one(name.clone());
    assert_eq!(refusal(&third), &Refusal::Duplicate { log_index: second.log_index });
    let found = net.ledger.transaction(&name.hash()).unwrap().unwrap();
    assert_eq!(found.receipt.log_index, second.log_index);
}

/// Issue 10 item 6: the same doctor registration number was onboarded twice. A number names
/// one doctor with an active key, whichever hospital onboards it and however it is spelt; once
/// that doctor's key is revoked (they left), another hospital may onboard the number again.
#[test]
fn a_doctor_registration_number_is_onboarded_once_while_its_doctor_is_active() {
    let mut net = Net::new();
    let mut first_hospital = Actor::new();
    let mut second_hospital = Actor::new();
    applied(&net.admit(&first_hospital));
    applied(&net.admit(&second_hospital));
    let with_number = |hospital: &mut Actor, doctor: &Actor, number: &str| {
        hospital.sign(RegistryTx::OnboardDoctor(OnboardDoctor {
            key: doctor.key.public_key(),
            encryption_key: doctor.enc.public_key(),
            registration_number: number.into(),
            name: "Dr. Okafor".into(),
            specialisation: "cardiology".into(),
        }))
    };
    let doctor = Actor::new();
    let t = with_number(&mut first_hospital, &doctor, "GMC-7654321");
    applied(&net.one(t));

    let before = net.snapshot();
    for (first, number) in [
        (true, "GMC-7654321"),
        (false, "GMC-7654321"),
        (false, "gmc 7654321"),
        (false, " GMC7654321"),
    ] {
        let hospital = if first { &mut first_hospital } else { &mut second_hospital };
        let t = with_number(hospital, &Actor::new(), number);
        match refusal(&net.one(t)) {
            Refusal::AlreadyExists { what } => assert!(what.contains("registration"), "{what}"),
            other => panic!("{number:?}: {other:?}"),
        }
        assert_eq!(net.snapshot(), before, "{number:?}");
    }
    let t = with_number(&mut second_hospital, &Actor::new(), " - ");
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    assert_eq!(net.snapshot(), before);

    // The first hospital revokes its doctor's key: the number is free for the second.
    let t =
        first_hospital.sign(RegistryTx::RevokeKey { account: doctor.account, replacement: None });
    applied(&net.one(t));
    let moved = Actor::new();
    let t = with_number(&mut second_hospital, &moved, "GMC 7654321");
    applied(&net.one(t));
    let t = with_number(&mut first_hospital, &Actor::new(), "GMC-7654321");
    assert!(matches!(refusal(&net.one(t)), Refusal::AlreadyExists { .. }));
}
