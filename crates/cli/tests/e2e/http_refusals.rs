//! Submissions that must be refused at admission, sent as raw HTTP.

use medledger_client::{Wallet, tx::build};
use medledger_core::{
    Hash,
    keys::{DecryptionKey, SigningKey},
    tx::{AdmitHospital, RegistryTx, SealedRef, SignedTransaction, TxBody},
};

use crate::harness::*;

/// An admission of a fresh hospital named `name`.
pub fn admit_body(name: &str) -> TxBody {
    TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
        key: SigningKey::generate().public_key(),
        encryption_key: DecryptionKey::generate().public_key(),
        registration_id: format!("GOV-{name}"),
        name: name.to_owned(),
        city: "Leeds".into(),
        specialisation: "general".into(),
        contact: SealedRef { blob: Hash::of(name.as_bytes()), commitment: Hash::of(b"commitment") },
    }))
}

fn submit(node: &Node, bytes: &[u8]) -> (u16, serde_json::Value) {
    let r = http(node.port, "POST", "/v1/transactions", bytes).expect("POST /v1/transactions");
    let json = r.json();
    (r.status, json)
}

fn assert_refused(
    node: &Node,
    what: &str,
    bytes: &[u8],
    status: &[u16],
    code: &str,
) -> serde_json::Value {
    let before = node.health();
    let (got, body) = submit(node, bytes);
    assert!(status.contains(&got), "{what}: status {got}, expected {status:?}: {body}");
    assert_eq!(body["code"], code, "{what}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.len() > 5, "{what}: no clear message: {body}");
    assert_eq!(node.health(), before, "{what}: a refused submission changed the tip or log");
    body
}

#[test]
fn malformed_and_bad_signature_submissions_are_refused_over_http() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let mut wallet = Wallet::load(node.regulator_wallet()).unwrap();
    let regulator = wallet.unlock(PASS).unwrap();
    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
    assert_eq!(chain, "medledger-local");
    let signer = wallet.account();
    let hospitals_before = node.regulator_get("/v1/hospitals").json();

    // Garbage.
    assert_refused(
        &node,
        "garbage",
        b"this is not a transaction \xff\xfe\x00",
        &[400],
        "malformed",
    );
    assert_refused(&node, "empty body", b"", &[400], "malformed");

    // Oversized (more than the 16 KiB transaction limit).
    let big = vec![0xabu8; 20 * 1024];
    let status = submit(&node, &big).0;
    let body = assert_refused(
        &node,
        "oversized",
        &big,
        &[400, 413],
        if status == 413 { "too_large" } else { "malformed" },
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("16384") || message.contains("limit"),
        "oversized: unclear message: {body}"
    );

    // A valid transaction with trailing bytes is not canonical.
    let good = build(&regulator, signer, &chain, 1, admit_body("Trailing Hospital"));
    let mut trailing = good.encode();
    trailing.push(0);
    assert_refused(&node, "trailing byte", &trailing, &[400], "malformed");

    // A flipped signature byte.
    let mut forged: SignedTransaction =
        build(&regulator, signer, &chain, 1, admit_body("Forged Hospital"));
    forged.signature.0[7] ^= 0x01;
    assert!(
        SignedTransaction::decode(&forged.encode()).is_ok(),
        "the forged transaction is well encoded"
    );
    assert_refused(&node, "flipped signature", &forged.encode(), &[400], "bad_signature");

    // Signed correctly, but by a key that is not the signer's: refused at admission, never
    // ordered (anyone could otherwise fill the log in the regulator's name); the regulator's
    // account is untouched.
    let impostor = medledger_client::Identity::generate("impostor");
    let stolen = build(&impostor, signer, &chain, 1, admit_body("Impostor Hospital"));
    let body = assert_refused(&node, "another key", &stolen.encode(), &[422], "refused");
    assert!(body["outcome"]["refused"]["reason"].get("key_not_active").is_some(), "{body}");
    let account = node.regulator_get(&format!("/v1/accounts/{signer}")).json();
    assert_eq!(account["nonce"], 0, "a refused transaction consumed no nonce: {account}");

    // Signed correctly, for another network.
    let other =
        build(&regulator, signer, "some-other-chain", 1, admit_body("Other Chain Hospital"));
    let body = assert_refused(&node, "other chain", &other.encode(), &[422], "refused");
    assert!(body["message"].as_str().unwrap().contains("chain"), "{body}");

    // Nothing above reached the directory.
    assert_eq!(node.regulator_get("/v1/hospitals").json(), hospitals_before);

    // A good one is applied...
    let log_size = node.log_size();
    let (status, receipt) = submit(&node, &good.encode());
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["tx_hash"], good.hash().to_hex());
    assert!(receipt["outcome"].get("applied").is_some(), "{receipt}");
    assert_eq!(node.log_size(), log_size + 1);
    let hospitals = node.regulator_get("/v1/hospitals").json();
    assert_eq!(hospitals.as_array().unwrap().len(), 1, "{hospitals}");

    // ...and sent again, it is not ordered again: the answer names where it was applied.
    let body = assert_refused(&node, "replay", &good.encode(), &[422], "refused");
    let duplicate = &body["outcome"]["refused"]["reason"]["duplicate"];
    assert_eq!(duplicate["log_index"], receipt["log_index"], "{body}");
    assert!(body["message"].as_str().unwrap().contains("already applied"), "{body}");
    // A different transaction reusing the spent nonce likewise.
    let reuse = build(&regulator, signer, &chain, 1, admit_body("Nonce Reuse Hospital"));
    assert_refused(&node, "reused nonce", &reuse.encode(), &[422], "refused");
    assert_eq!(node.regulator_get("/v1/hospitals").json(), hospitals);

    // The node still serves well-formed work after all that.
    let next = build(&regulator, signer, &chain, 2, admit_body("Second Hospital"));
    let (status, receipt) = submit(&node, &next.encode());
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(node.log_size(), log_size + 2);

    // A body far over any transaction's size is cut off before it is read.
    let before = node.health();
    let huge = vec![0u8; 1024 * 1024];
    let r = http(node.port, "POST", "/v1/transactions", &huge).expect("POST a huge body");
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(node.health(), before);
}
