//! Checkpoints from every node, with real nodes: in a 2-node network each node signs with its
//! own key, and `medledger proof --node URL` passes against either (the second node's key is
//! trusted through its proven admission) and the wallet remembers both; a node serving a
//! forked history (a copy of node 1's data directory, same keys, that then diverges) is named;
//! a node signing with a key the regulator never admitted is refused; and a command that seals
//! to an account key proven under node 2's checkpoint (`patient amend`) passes through node 2.
//! `medledger network check` asks every listed node: both agree; node 1 down is unreachable
//! (the check fails as incomplete);
//! the fork answering at node 1's address is named inconsistent with node 2, with both signed
//! checkpoints.

use std::{path::Path, thread, time::Instant};

use medledger_client::Wallet;
use medledger_core::tx::{NodeTx, TxBody};
use medledger_node::DataDir;

use crate::{cluster_harness::*, harness::*};

/// `medledger network check --wallet W --node URL --json`, parsed, and whether it succeeded.
fn network_check(wallet: &str, url: &str) -> (bool, serde_json::Value) {
    let o = cli(&["network", "check", "--wallet", wallet, "--node", url, "--json"], &[]);
    let json = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    });
    (o.status.success(), json)
}

/// The report of node `id` in a `network check`.
fn checked_node(json: &serde_json::Value, id: u64) -> &serde_json::Value {
    json["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap()
}

/// `medledger proof TX --wallet W --node URL --json`, parsed, and whether it succeeded.
fn proof_json(tx: &str, wallet: &str, url: &str) -> (bool, serde_json::Value) {
    let o = cli(&["proof", tx, "--wallet", wallet, "--node", url, "--json"], &[]);
    let json = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", show(&o)));
    (o.status.success(), json)
}

/// The node ids whose checkpoints the wallet at `path` remembers.
fn remembered(path: &str) -> Vec<u64> {
    seen(path).iter().map(|s| s.node_id).collect()
}

/// The checkpoints the wallet at `path` remembers.
fn seen(path: &str) -> Vec<medledger_client::checkpoints::SeenCheckpoint> {
    let mut wallet = Wallet::load(path).unwrap();
    wallet.unlock(PASS).unwrap();
    wallet.state().unwrap().seen_checkpoints.clone()
}

fn height(port: u16) -> u64 {
    cluster(port).map_or(0, |v| v["height"].as_u64().unwrap_or(0))
}

#[test]
fn proof_passes_on_every_admitted_node_and_names_a_forked_one() {
    let tmp = tempdir();
    let n1_dir = tmp.path().join("node-1");
    let mut n1 = Node::start(&n1_dir);
    let mut regulator = Regulator::of(&n1);
    let (admit, hospital_account) = hospital("St. Mary's");
    let first = regulator.submit(n1.port, admit);
    let first_tx = first["tx_hash"].as_str().unwrap().to_owned();

    // Two copies of node 1 as it is now: a fork-to-be (same genesis, same keys), and one that
    // will sign with a key the regulator never admitted.
    n1.stop();
    let fork_dir = tmp.path().join("fork");
    let stranger_dir = tmp.path().join("stranger");
    copy_dir(&n1_dir, &fork_dir);
    copy_dir(&n1_dir, &stranger_dir);
    n1.start_again();

    // Node 2: its own key, admitted by the regulator, joins.
    let dir2 = tmp.path().join("node-2");
    let port2 = free_port();
    let node_key = node_key_in(&dir2);
    let address = format!("http://127.0.0.1:{port2}");
    regulator.submit(
        n1.port,
        TxBody::Nodes(NodeTx::Admit { node_key, address, hospital: hospital_account }),
    );
    let join = n1.url.clone();
    let n2 = Node::start_with(&dir2, port2, &["--join", &join]);
    let (admit, _) = hospital("Leeds General");
    let receipt = regulator.submit(n1.port, admit);
    let tx = receipt["tx_hash"].as_str().unwrap().to_owned();
    let at = receipt["height"].as_u64().unwrap();
    wait_for("two voters at one tip", &[n1.port, n2.port], &[&n1, &n2], |v| {
        v.iter().all(|v| voters(v) == [1, 2]) && converged(v, at)
    });

    // A watcher (a copy of the regulator's wallet, with its own memory of checkpoints).
    let watcher = tmp.path().join("watcher.wallet.json").display().to_string();
    std::fs::copy(n1.regulator_wallet(), &watcher).unwrap();
    let out = ok(&["proof", &tx, "--wallet", &watcher, "--node", &n2.url], &[]);
    assert!(out.contains("signed by node 2") && out.contains("first checkpoint"), "{out}");
    let out = ok(&["proof", &tx, "--wallet", &watcher, "--node", &n1.url], &[]);
    assert!(out.contains("signed by node 1") && out.contains("node 2 (log size"), "{out}");
    assert_eq!(remembered(&watcher), [1, 2]);
    let (passed, json) = proof_json(&tx, &watcher, &n2.url);
    assert!(passed && json["ok"] == true, "{json}");
    assert_eq!(json["node"]["id"], 2, "{json}");
    assert_eq!(json["checked_against"].as_array().unwrap().len(), 2, "{json}");
    // Node 2 signs with its own key, not the genesis node's.
    assert_eq!(json["node"]["key"], node_key.to_string(), "{json}");
    // Every listed node answers with one history (node 1 is found through Raft's members:
    // the ledger keeps no address for the genesis node).
    let (passed, json) = network_check(&watcher, &n2.url);
    assert!(passed && json["ok"] == true && json["splits"] == serde_json::json!([]), "{json}");
    for id in [1, 2] {
        let node = checked_node(&json, id);
        assert!(node["verdict"] == "ok" || node["verdict"] == "lagging", "{json}");
        assert!(node["checkpoint"]["signature"].is_string(), "{json}");
    }
    assert_eq!(checked_node(&json, 2)["checkpoint"]["signer"], node_key.to_string(), "{json}");

    // The fork: node 1's old copy, alone on another port, commits a history of its own until
    // it is higher than the network.
    let fork = Node::start_on(&fork_dir, free_port());
    let mut forger = Regulator::of(&fork);
    forger.nonce = 1;
    let network = height(n1.port).max(height(n2.port));
    let deadline = Instant::now() + CONVERGE;
    let mut fork_tx = String::new();
    let mut i = 0;
    while height(fork.port) <= network {
        assert!(Instant::now() < deadline, "the fork did not grow\n{}", fork.log_text());
        let (admit, _) = hospital(&format!("Fork Clinic {i}"));
        fork_tx = forger.submit(fork.port, admit)["tx_hash"].as_str().unwrap().to_owned();
        i += 1;
    }
    let (passed, json) = proof_json(&fork_tx, &watcher, &fork.url);
    assert!(!passed && json["ok"] == false, "{json}");
    let named = &json["inconsistent"];
    assert_eq!(named["node"]["id"], 1, "the fork serves node 1's key: {json}");
    assert!(named["seen"]["id"] == 1 || named["seen"]["id"] == 2, "{json}");
    assert!(named["node"]["log_root"] != named["seen"]["log_root"], "{json}");
    let err = fails(&["proof", &fork_tx, "--wallet", &watcher, "--node", &fork.url], &[]);
    assert!(err.contains("INCONSISTENT LEDGER HISTORY") && err.contains("node 1 (key"), "{err}");
    // Nothing of the fork was remembered, and the real network still passes.
    assert_eq!(remembered(&watcher), [1, 2]);
    ok(&["proof", &tx, "--wallet", &watcher, "--node", &n2.url], &[]);

    // A node signing with a key the regulator never admitted: refused, naming the key.
    let stranger_key = stranger_node(&stranger_dir);
    let (url, stop) = serve_in_process(&stranger_dir);
    let (passed, json) = proof_json(&first_tx, &watcher, &url);
    let err = json["error"].as_str().unwrap_or_default().to_owned();
    assert!(!passed && err.contains("refusing checkpoints signed by node key"), "{json}");
    assert_eq!(json["unadmitted"]["key"], stranger_key.to_string(), "{json}");
    assert_eq!(remembered(&watcher), [1, 2]);
    stop();

    // A command that seals to an account's key proven by node 2 (under node 2's checkpoint):
    // a hospital registers a patient through node 2 (whose vault keeps the sealed details),
    // then amends them there, sealing the new details to the patient's proven key.
    let c = crate::registry::cast(tmp.path(), &n1);
    let through_n2 = [("MEDLEDGER_NODE", n2.url.as_str())];
    let caught_up = |what: &str| {
        let at = height(n1.port);
        wait_for(what, &[n1.port, n2.port], &[&n1, &n2], |v| converged(v, at));
    };
    caught_up("node 2 has the cast");
    let patient = crate::registry::wallet(tmp.path(), "patient-2", &n2.url);
    let identity = crate::registry::identity(&patient);
    let register = [
        "patient",
        "register",
        "--wallet",
        &c.hospital,
        "--identity",
        &identity,
        "--name",
        "Ann Lee",
        "--date-of-birth",
        "1990-03-04",
        "--phone",
        "+44 7700 900001",
        "--attendant-name",
        "Bo Lee",
        "--attendant-phone",
        "+44 7700 900002",
        "--attendant-relationship",
        "sibling",
    ];
    let out = ok(&register, &through_n2);
    let start = out.find("Patient-ID ").unwrap_or_else(|| panic!("no Patient-ID in:\n{out}")) + 11;
    let patient_id: String = out[start..].chars().take_while(char::is_ascii_digit).collect();
    caught_up("node 2 has the patient");
    let amend = ["patient", "amend", &patient_id, "--wallet", &c.hospital, "--name", "Ann Leigh"];
    let out = ok(&amend, &through_n2);
    assert!(out.contains("patient details amended"), "{out}");

    // Node 1 stops: `network check` reports it unreachable and node 2 as it is, and fails as
    // incomplete (a node that does not answer could hide a split view).
    let mut fork = fork;
    fork.stop();
    let n1_port = n1.port;
    n1.stop();
    let (passed, json) = network_check(&watcher, &n2.url);
    assert!(!passed && json["ok"] == false && json["splits"] == serde_json::json!([]), "{json}");
    assert_eq!(checked_node(&json, 1)["verdict"], "unreachable", "{json}");
    assert!(json["problems"][0].as_str().unwrap().contains("node 1 is unreachable"), "{json}");
    assert!(checked_node(&json, 2)["checkpoint"].is_object(), "{json}");

    // The fork answers at node 1's address: node 1 and node 2 are named as two histories,
    // with both signed checkpoints; the command fails and the wallet remembers nothing of it.
    let _fork = Node::start_on(&fork_dir, n1_port);
    let before = seen(&watcher);
    let (passed, json) = network_check(&watcher, &n2.url);
    assert!(!passed && json["ok"] == false, "{json}");
    let split = &json["splits"][0];
    let mut pair: Vec<u64> =
        split["nodes"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
    pair.sort();
    assert_eq!(pair, [1, 2], "{json}");
    assert!(split["newer"]["signature"].is_string() && split["older"]["signature"].is_string());
    assert_eq!(checked_node(&json, 1)["verdict"], "inconsistent", "{json}");
    // (Node 1 is also inconsistent with what node 1 signed before, which the wallet kept.)
    let with = checked_node(&json, 1)["inconsistent_with"].as_array().unwrap().clone();
    assert!(with.contains(&serde_json::json!(2)), "{json}");
    assert_eq!(seen(&watcher), before, "a check that found a split remembers nothing");
    let err = fails(&["network", "check", "--wallet", &watcher, "--node", &n2.url], &[]);
    assert!(err.contains("INCONSISTENT") && err.contains("node 1"), "{err}");

    // Once its operators have dealt with node 1, the wallet forgets its checkpoints and keeps
    // node 2's; a node it remembers nothing of is refused, nothing changed.
    let forget = ["wallet", "forget-checkpoints", "--wallet", &watcher, "--node", "1"];
    let out = ok(&[&forget[..], &["--json"]].concat(), &[]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["forgotten"][0]["node"], 1, "{json}");
    assert_eq!(json["remembered"], serde_json::json!([2]), "{json}");
    assert_eq!(remembered(&watcher), [2]);
    let err = fails(&forget, &[]);
    assert!(err.contains("remembers no checkpoint of node 1"), "{err}");
    assert_eq!(remembered(&watcher), [2]);
    drop(n2);
}

/// Gives the data directory a fresh node key (one no regulator admitted); returns it.
fn stranger_node(dir: &Path) -> medledger_core::keys::PublicKey {
    let data = DataDir::new(dir);
    std::fs::remove_file(data.node_key_path()).unwrap();
    data.ensure_node_key().unwrap().public_key()
}

/// Serves `dir` with a real node in this process, as node 1 whatever its key (`medledger up`
/// refuses a key its ledger does not hold, so no process can be started so); its URL, and a
/// function that stops it and waits for it.
fn serve_in_process(dir: &Path) -> (String, impl FnOnce()) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let dir = DataDir::new(dir);
    let server = thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let options = medledger_node::NodeOptions { node_id: Some(1), ..Default::default() };
            let stop = async move {
                let _ = stop_rx.await;
            };
            // Bounded: the test stops it, and it stops by itself after LIMIT at the latest.
            let bounded = async move {
                let _ = tokio::time::timeout(LIMIT * 4, stop).await;
            };
            medledger_node::serve_with(&dir, listener, options, bounded).await.unwrap();
        });
    });
    // Up once it answers.
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let deadline = Instant::now() + LIMIT;
    while http(port, "GET", "/health", b"").ok().map(|r| r.status) != Some(200) {
        assert!(Instant::now() < deadline, "the in-process node did not come up");
        thread::sleep(std::time::Duration::from_millis(100));
    }
    (url, move || {
        let _ = stop_tx.send(());
        server.join().unwrap();
    })
}
