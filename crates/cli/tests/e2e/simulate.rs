//! Simulation before submission (issue 10 item 3, as `eth_call`): `POST
//! /v1/transactions/simulate` answers a doomed transaction with the refusal the ledger gives
//! it, code and message alike, and orders nothing; the wallet simulates every transaction it
//! submits and reports a doomed one without sending it; a simulation of a good transaction
//! writes nothing (log, height, nonce, audit trail) and foretells what it creates.

use medledger_client::{Wallet, tx::build};
use medledger_core::{
    ids::AccountId,
    keys::SigningKey,
    tx::{
        ConsentTx, TxBody,
        consent::{DenyRule, RecordCategory},
    },
};

use crate::{
    harness::*,
    registry::{cast, identity, wallet},
};

const SIMULATE: &str = "/v1/transactions/simulate";

fn unlock(wallet: &str) -> (medledger_client::Identity, AccountId) {
    let mut w = Wallet::load(wallet).unwrap();
    (w.unlock(PASS).unwrap(), w.account())
}

/// What the node tells `account` about itself and its patient's trail, as the account sees
/// it: the account view (with its nonce) and the audit trail, raw.
fn own_view(node: &Node, key: &SigningKey, account: AccountId) -> (String, String) {
    let view = signed_http(node.port, key, account, "GET", &format!("/v1/accounts/{account}"), b"")
        .unwrap();
    assert_eq!(view.status, 200, "{}", view.text());
    let trail =
        signed_http(node.port, key, account, "GET", &format!("/v1/audit/{account}"), b"").unwrap();
    assert_eq!(trail.status, 200, "{}", trail.text());
    (view.text(), trail.text())
}

#[test]
fn a_doomed_transaction_is_refused_by_simulation_and_never_ordered() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
    let (patient, patient_account) = unlock(&c.patient);
    let guardian = wallet(tmp.path(), "guardian", &node.url);
    let (_, guardian_account) = unlock(&guardian);

    // Naming a delegate who is not registered: the simulation answers with the ledger's own
    // refusal and orders nothing.
    let name = TxBody::Consent(ConsentTx::NameDelegate { delegate: guardian_account });
    let doomed = build(&patient, patient_account, &chain, 1, name.clone());
    let size = node.log_size();
    let simulated = http(node.port, "POST", SIMULATE, &doomed.encode()).unwrap();
    assert_eq!(simulated.status, 422, "{}", simulated.text());
    assert_eq!(node.log_size(), size, "a simulation orders nothing");
    let simulated = simulated.json();
    assert_eq!(simulated["code"], "refused", "{simulated}");
    assert!(simulated["outcome"]["refused"]["reason"].get("not_found").is_some(), "{simulated}");

    // The ledger's refusal of the same transaction, sent for real, is word for word the same.
    let real = http(node.port, "POST", "/v1/transactions", &doomed.encode()).unwrap();
    assert_eq!(real.status, 422, "{}", real.text());
    assert_eq!(node.log_size(), size + 1, "submitted for real, it was ordered and refused");
    assert_eq!(real.json(), simulated, "simulation and ledger disagree");

    // The wallet simulates first: the same refusal, and nothing reaches the log.
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let command = ["consent", "delegate", &guardian_account.to_string(), "--wallet", &c.patient];
    let err = fails(&command, &env);
    let message = simulated["message"].as_str().unwrap();
    assert!(err.contains(message), "the ledger's message {message:?} is not in:\n{err}");
    assert!(err.contains("nothing was submitted"), "{err}");
    assert_eq!(node.log_size(), size + 1, "the wallet sent a doomed transaction");
    // The operator's log has both refusals at info: the ledger's, and the simulation's.
    let log = node.log_text();
    for what in ["transaction refused by the ledger", "transaction refused in simulation"] {
        let line = log.lines().find(|l| l.contains(what));
        assert!(line.is_some_and(|l| l.contains(" INFO ")), "no {what:?} at info in:\n{log}");
    }

    // Once the cause is fixed (the guardian is registered), the same command succeeds.
    ok(
        &[
            "patient",
            "register",
            "--wallet",
            &c.hospital,
            "--identity",
            &identity(&guardian),
            "--name",
            "Gail Guardian",
            "--date-of-birth",
            "1970-05-06",
            "--phone",
            "+44 7700 900789",
            "--attendant-name",
            "Gus Guardian",
            "--attendant-phone",
            "+44 7700 900790",
            "--attendant-relationship",
            "sibling",
        ],
        &[],
    );
    ok(&command, &env);
}

#[test]
fn simulating_a_good_transaction_writes_nothing_and_foretells_its_outcome() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
    let (patient, patient_account) = unlock(&c.patient);

    let deny = TxBody::Consent(ConsentTx::Deny {
        patient: patient_account,
        rule: DenyRule {
            grantee: None,
            grantee_role: None,
            category: Some(RecordCategory::Psychiatry),
            purpose: None,
        },
    });
    let tx = build(&patient, patient_account, &chain, 1, deny);
    let health = node.health();
    let before = own_view(&node, &patient.signing, patient_account);
    let simulated = http(node.port, "POST", SIMULATE, &tx.encode()).unwrap();
    assert_eq!(simulated.status, 200, "{}", simulated.text());
    let simulated = simulated.json();
    assert_eq!(simulated["tx_hash"], tx.hash().to_string());
    assert_eq!(simulated["height"], health["height"].as_u64().unwrap() + 1, "{simulated}");
    assert!(simulated["outcome"].get("applied").is_some(), "{simulated}");
    // Again, to be sure the first left nothing behind that would change the answer.
    let again = http(node.port, "POST", SIMULATE, &tx.encode()).unwrap().json();
    assert_eq!(again["outcome"], simulated["outcome"]);

    let after = node.health();
    assert_eq!((&after["height"], &after["log_size"]), (&health["height"], &health["log_size"]));
    assert_eq!(own_view(&node, &patient.signing, patient_account), before, "nonce or trail moved");

    // Submitted for real, it does what the simulation said.
    let real = http(node.port, "POST", "/v1/transactions", &tx.encode()).unwrap();
    assert_eq!(real.status, 200, "{}", real.text());
    assert_eq!(real.json()["outcome"], simulated["outcome"]);
    assert_ne!(own_view(&node, &patient.signing, patient_account), before);

    // Simulated again once applied, it is a duplicate, as a submission would be told.
    let dup = http(node.port, "POST", SIMULATE, &tx.encode()).unwrap();
    assert_eq!(dup.status, 422, "{}", dup.text());
    let resent = http(node.port, "POST", "/v1/transactions", &tx.encode()).unwrap();
    assert_eq!(dup.json(), resent.json());

    // A bad signature is refused before anything else.
    let mut forged = build(&patient, patient_account, &chain, 2, tx.tx.body.clone());
    forged.tx.nonce = 3;
    let r = http(node.port, "POST", SIMULATE, &forged.encode()).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["code"], "bad_signature");
}

#[test]
fn simulations_are_rate_limited_per_signer() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
    let (patient, patient_account) = unlock(&c.patient);
    let (doctor, doctor_account) = unlock(&c.doctor);
    let body = |n: u8| TxBody::Consent(ConsentTx::NameDelegate { delegate: AccountId([n; 20]) });
    let mut limited = 0;
    for n in 0..130u8 {
        let tx = build(&patient, patient_account, &chain, 1, body(n));
        let r = http(node.port, "POST", SIMULATE, &tx.encode()).unwrap();
        if r.status == 429 {
            assert_eq!(r.json()["code"], "too_many_simulations", "{}", r.text());
            limited += 1;
        }
    }
    assert!(limited >= 5, "130 simulations in a row were not limited ({limited} refused)");
    // Another signer has its own allowance.
    let tx = build(&doctor, doctor_account, &chain, 1, body(1));
    let r = http(node.port, "POST", SIMULATE, &tx.encode()).unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["code"], "refused");
}

/// An access, a research export, a custodian's release of a key share and a case key's share
/// are not simulated: the answer (the record missing, named with another patient, erased, the
/// decision for a reader, a plan's size) would tell what a patient has with nothing in the
/// patient's trail. Refused for a record that exists and one that does not alike, before any
/// state is read; nothing is ordered. (The wallet submits these kinds without simulating:
/// `case share` and `record release` still work, in their own tests.)
#[test]
fn an_access_or_a_research_export_is_not_simulated() {
    use medledger_core::{
        Hash,
        tx::{
            consent::{AccessTx, Action, Purpose, Resource},
            research::ResearchExportTx,
        },
    };
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
    let pmr = crate::organisations::record(
        tmp.path(),
        &c.doctor,
        &c.patient_id,
        "lab-report",
        "2024-03-01",
    );
    let (doctor, doctor_account) = unlock(&c.doctor);
    let (_, patient_account) = unlock(&c.patient);
    let stranger = AccountId([9; 20]);
    let access = |record: &str, patient: AccountId| {
        TxBody::Access(AccessTx {
            resource: Resource {
                patient,
                category: Some(RecordCategory::LabReport),
                record: Some(record.to_owned()),
                case: None,
            },
            action: Action::Read,
            purpose: Purpose::Treatment,
        })
    };
    let export = TxBody::ResearchExport(ResearchExportTx {
        patient: patient_account,
        categories: vec![RecordCategory::LabReport],
        project: "p".into(),
        rule_set: "safe-harbor-1".into(),
        plan: Hash([0; 32]),
    });
    let size = node.log_size();
    let mut answers = Vec::new();
    let release = TxBody::Records(medledger_core::tx::RecordTx::ReleaseShare {
        record: pmr.clone(),
        reader: stranger,
        purpose: Purpose::Treatment,
        share: Hash([1; 32]),
    });
    let share_case = TxBody::Cases(medledger_core::tx::CaseTx::ShareKey {
        case: "C10001-1".into(),
        key: medledger_core::tx::records::KeyRef { recipient: stranger, blob: Hash([2; 32]) },
    });
    for body in [
        access(&pmr, patient_account),
        access(&pmr, stranger),
        access("9999901012020", stranger),
        export,
        release,
        share_case,
    ] {
        let tx = build(&doctor, doctor_account, &chain, 2, body);
        let r = http(node.port, "POST", SIMULATE, &tx.encode()).unwrap();
        assert_eq!(r.status, 400, "{}", r.text());
        let text = r.json()["message"].as_str().unwrap().to_owned();
        assert!(text.contains("not simulated"), "{text}");
        answers.push(text);
    }
    assert_eq!(answers[0], answers[1], "an access's answer depends on what it names");
    assert_eq!(answers[1], answers[2], "an access's answer depends on what exists");
    assert_eq!(node.log_size(), size, "a simulation ordered something");
}
