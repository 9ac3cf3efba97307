//! A node whose history does not extend what a wallet saw before is refused loudly by
//! `medledger proof`: two copies of one network diverge after genesis, and a wallet that saw
//! one of them is then served by the other.

use crate::harness::*;

#[test]
fn proof_refuses_a_node_whose_history_forked() {
    let tmp = tempdir();
    let a_dir = tmp.path().join("a");
    let b_dir = tmp.path().join("b");
    // One genesis, one node key, one regulator: then two copies of the data directory.
    let mut a = Node::start(&a_dir);
    let port = a.port;
    a.stop();
    copy_dir(&a_dir, &b_dir);

    // History A: admit "Alpha". A wallet records A's checkpoint.
    a.restart();
    let out = run_ok(admit(&a, "Alpha", &a.regulator()));
    let tx_a = tx_hash(&out);
    // Reads are signed by a registered identity: the watcher is a copy of the regulator's
    // wallet, so that it keeps its own record of the last checkpoint seen.
    let watcher = tmp.path().join("watcher.wallet.json").display().to_string();
    std::fs::copy(a.regulator_wallet(), &watcher).unwrap();
    let first = ok(&["proof", &tx_a, "--wallet", &watcher], &[]);
    assert!(first.contains("first checkpoint"), "{first}");
    // A second look at the same node is consistent.
    let again = ok(&["proof", &tx_a, "--wallet", &watcher], &[]);
    assert!(again.contains("consistent"), "{again}");
    a.stop();

    // History B, at the same address: admit "Beta" and "Gamma" instead. Its log is longer
    // than A's, but its first entry differs.
    let b = Node::start_on(&b_dir, port);
    run_ok(admit(&b, "Beta", &b.regulator()));
    let out = run_ok(admit(&b, "Gamma", &b.regulator()));
    let tx_b = tx_hash(&out);
    let err = fails(&["proof", &tx_b, "--wallet", &watcher], &[]);
    assert!(err.contains("INCONSISTENT"), "{err}");
}

fn admit(node: &Node, name: &str, regulator: &str) -> Vec<String> {
    let card = format!(
        "mlid1:{}:{}",
        hex::encode(medledger_core::keys::SigningKey::generate().public_key().0),
        hex::encode(medledger_core::keys::DecryptionKey::generate().public_key().0)
    );
    [
        "hospital",
        "admit",
        "--wallet",
        regulator,
        "--node",
        &node.url,
        "--identity",
        &card,
        "--registration-id",
        &format!("GOV-{name}"),
        "--name",
        name,
        "--city",
        "Leeds",
        "--specialisation",
        "general",
        "--contact",
        "+44 0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_ok(args: Vec<String>) -> String {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&refs, &[])
}
