//! Node membership through the CLI: `node init` makes the key `up` then uses (and never
//! replaces it), the regulator admits a hospital's node (id 2), suspends, reinstates and removes
//! it, and `node list` shows each change; a second admission of a key, an admission by a
//! hospital and malformed keys and addresses are refused with messages that say why.

use std::path::Path;

use crate::{
    harness::*,
    registry::{identity, wallet},
};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn init(dir: &Path) -> serde_json::Value {
    json(&ok(&["node", "init", "--data-dir", &dir.display().to_string(), "--json"], &[]))
}

fn list(url: &str) -> serde_json::Value {
    json(&ok(&["node", "list", "--node", url, "--json"], &[]))
}

/// The status of node `id` in `node list --json`.
fn status(url: &str, id: u64) -> String {
    let nodes = list(url);
    let node = nodes.as_array().unwrap().iter().find(|n| n["id"] == id).expect("listed");
    node["status"].as_str().unwrap().to_owned()
}

#[test]
fn node_init_creates_the_key_up_uses_and_never_replaces_it() {
    let tmp = tempdir();
    let data = tmp.path().join("genesis-node");
    let first = init(&data);
    let key = first["node_key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 64, "{first}");
    let path = data.join("node.key");
    assert_eq!(first["path"], path.display().to_string(), "{first}");
    let stored = std::fs::read(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    // Twice: the same key, the file untouched; the human form names the key and the file.
    assert_eq!(init(&data), first);
    let out = ok(&["node", "init", "--data-dir", &data.display().to_string()], &[]);
    assert!(out.contains(&key) && out.contains("existing key file"), "{out}");
    assert_eq!(std::fs::read(&path).unwrap(), stored);
    // `up` on that directory makes it the genesis node: node 1, under that key.
    let node = Node::start(&data);
    let nodes = list(&node.url);
    assert_eq!(nodes[0]["id"], 1, "{nodes}");
    assert_eq!(nodes[0]["node_key"], key, "{nodes}");
    assert_eq!(nodes[0]["status"], "active", "{nodes}");
    assert_eq!(init(&data), first, "a running node's key is not replaced either");
}

#[test]
fn the_regulator_admits_suspends_reinstates_and_removes_a_node() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("node"));
    let url = node.url.as_str();
    let reg = node.regulator();
    let hospital = wallet(tmp.path(), "hospital", url);
    let out = ok(
        &[
            "hospital",
            "admit",
            "--wallet",
            &reg,
            "--node",
            url,
            "--identity",
            &identity(&hospital),
            "--registration-id",
            "GOV-77",
            "--name",
            "St. Jude",
            "--city",
            "York",
            "--specialisation",
            "general",
            "--contact",
            "+44 1904 000000",
        ],
        &[],
    );
    let hospital_account = account(&out);
    let key = init(&tmp.path().join("second"))["node_key"].as_str().unwrap().to_owned();
    // The admitted node never runs: a loopback port nothing listens on.
    let address = "http://127.0.0.1:1";
    let admit = |wallet: &str, key: &str| {
        cli(
            &[
                "node",
                "admit",
                "--wallet",
                wallet,
                "--node",
                url,
                "--node-key",
                key,
                "--address",
                address,
                "--hospital",
                &hospital_account,
                "--json",
            ],
            &[],
        )
    };

    let o = admit(&reg, &key);
    assert!(o.status.success(), "{}", show(&o));
    let admitted = json(&stdout(&o));
    assert_eq!(admitted["node_id"], 2, "{admitted}");
    assert_eq!(admitted["node_key"], key, "{admitted}");
    let admission = admitted["tx_hash"].as_str().unwrap().to_owned();
    assert_eq!(admission.len(), 64, "{admitted}");
    // The admission is in the log: its inclusion proof verifies against the pinned node key.
    let proof = ok(&["proof", &admission, "--wallet", &reg, "--node", url], &[]);
    assert!(proof.contains("proof verified"), "{proof}");
    let nodes = list(url);
    assert_eq!(nodes.as_array().unwrap().len(), 2, "{nodes}");
    let second = &nodes[1];
    assert_eq!(second["id"], 2, "{nodes}");
    assert_eq!(second["node_key"], key, "{nodes}");
    assert_eq!(second["address"], address, "{nodes}");
    assert_eq!(second["hospital"], hospital_account, "{nodes}");
    assert_eq!(second["status"], "active", "{nodes}");

    // The same key again, even for another address: refused, and nothing was submitted.
    let o = admit(&reg, &key);
    assert!(!o.status.success(), "{}", show(&o));
    let e = stderr(&o);
    assert!(e.contains("already exists") && e.contains("admitted once"), "{e}");
    assert!(e.contains("nothing was submitted"), "{e}");
    // A hospital admitting a node of its own.
    let other = init(&tmp.path().join("third"))["node_key"].as_str().unwrap().to_owned();
    let o = admit(&hospital, &other);
    assert!(!o.status.success(), "{}", show(&o));
    assert!(stderr(&o).contains("only a Regulator may admit a node"), "{}", show(&o));
    assert_eq!(list(url).as_array().unwrap().len(), 2);

    let change = |verb: &str| {
        let out =
            ok(&["node", verb, "--wallet", &reg, "--node", url, "--node-key", &key, "--json"], &[]);
        json(&out)["status"].as_str().unwrap().to_owned()
    };
    assert_eq!(change("suspend"), "suspended");
    assert_eq!(status(url, 2), "suspended");
    assert_eq!(change("reinstate"), "active");
    assert_eq!(status(url, 2), "active");
    // A hospital cannot take a node out either.
    let e =
        fails(&["node", "remove", "--wallet", &hospital, "--node", url, "--node-key", &key], &[]);
    assert!(e.contains("only a Regulator may remove a node"), "{e}");
    assert_eq!(change("remove"), "removed");
    assert_eq!(status(url, 2), "removed");
    let table = ok(&["node", "list", "--node", url], &[]);
    assert!(table.contains("removed") && table.contains(&key), "{table}");
    // A removed node's key stays out.
    let e = stderr(&admit(&reg, &key));
    assert!(e.contains("already exists") && e.contains("removed"), "{e}");
    // The genesis node is the last active one: it cannot be removed.
    let genesis_key = list(url)[0]["node_key"].as_str().unwrap().to_owned();
    let e = fails(
        &["node", "remove", "--wallet", &reg, "--node", url, "--node-key", &genesis_key],
        &[],
    );
    assert!(e.contains("last active node"), "{e}");
}

#[test]
fn malformed_keys_and_addresses_are_refused_before_anything_is_signed() {
    // No node runs: these fail on their arguments, before the wallet or the network.
    let tmp = tempdir();
    let key = medledger_core::keys::SigningKey::generate().public_key().to_string();
    let not_a_point = "ab".repeat(32);
    let base = ["node", "admit", "--wallet", "none.json", "--hospital", &"0".repeat(40)];
    for (node_key, address, says) in [
        ("abc", "http://127.0.0.2:7301", "64 hex characters"),
        (not_a_point.as_str(), "http://127.0.0.2:7301", "not an Ed25519 public key"),
        (key.as_str(), "http://127.0.0.2", "explicit port"),
        (key.as_str(), "http://127.0.0.2:7301/raft", "without a path"),
        (key.as_str(), "ftp://127.0.0.2:7301", "http:// or https://"),
        (key.as_str(), "http://admin@127.0.0.2:7301", "user information"),
    ] {
        let mut args = base.to_vec();
        args.extend(["--node-key", node_key, "--address", address]);
        let e = fails(&args, &[]);
        assert!(e.contains(says), "{address} / {node_key}: {e}");
    }
    let e = fails(&["node", "suspend", "--wallet", "none.json", "--node-key", "zz"], &[]);
    assert!(e.contains("--node-key"), "{e}");
    // `init` on a directory whose key file is not a key: refused, the file kept.
    let data = tmp.path().join("broken");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("node.key"), "not a key").unwrap();
    let e = fails(&["node", "init", "--data-dir", &data.display().to_string()], &[]);
    assert!(e.contains("not a node key"), "{e}");
    assert_eq!(std::fs::read_to_string(data.join("node.key")).unwrap(), "not a key");
}
