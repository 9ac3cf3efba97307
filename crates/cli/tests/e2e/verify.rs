//! `medledger verify` covers the whole data directory (security review L2): on copies of a
//! stopped node's directory, a deleted or truncated Raft log, a blob with a flipped byte, a
//! deleted blob and a deleted vault index are each named in their part's line, the command
//! exits non-zero, and the ledger's own line still says OK. The intact directory (with node
//! membership transactions among the rest) passes, in text and in JSON.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{harness::*, registry::cast};

fn verify(dir: &Path, json: bool) -> (bool, String, String) {
    let dir = dir.display().to_string();
    let mut args = vec!["verify", "--data-dir", &dir];
    if json {
        args.push("--json");
    }
    let out = cli(&args, &[]);
    (out.status.success(), stdout(&out), stderr(&out))
}

/// The blob files of the vault in `dir`, by name.
fn blobs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir.join("vault"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().len() == 64)
        .collect();
    out.sort();
    out
}

/// A copy of `intact` broken by `damage`; verify must fail and name the damage.
fn broken(tmp: &Path, intact: &Path, name: &str, damage: impl FnOnce(&Path) -> String) {
    let copy = tmp.join(name);
    copy_dir(intact, &copy);
    let expected = damage(&copy);
    let (ok, out, err) = verify(&copy, false);
    assert!(!ok, "{name}: verify passed\n{out}\n{err}");
    assert!(out.contains("ledger OK"), "{name}: the ledger itself is intact\n{out}\n{err}");
    assert!(out.contains(&expected), "{name}: {expected:?} not in\n{out}\n{err}");
    assert!(err.contains("verification FAILED"), "{name}: {err}");
}

#[test]
fn verify_names_damage_to_the_raft_log_and_the_vault() {
    let tmp = tempdir();
    let mut node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    ok(&["consent", "delegate", &c.hospital_account, "--wallet", &c.patient], &env);
    // Node membership too: an admission (a new node id from the counter) and a suspension,
    // replayed and compared like every other table. (The admitted node never runs: its
    // address is a loopback port nothing listens on.)
    let second = tmp.path().join("second-node");
    let key = ok(&["node", "init", "--data-dir", &second.display().to_string(), "--json"], &[]);
    let key: serde_json::Value = serde_json::from_str(&key).unwrap();
    let key = key["node_key"].as_str().unwrap();
    let reg = node.regulator();
    let admit = [
        "node",
        "admit",
        "--wallet",
        &reg,
        "--node-key",
        key,
        "--address",
        "http://127.0.0.1:1",
        "--hospital",
        &c.hospital_account,
    ];
    ok(&admit, &env);
    ok(&["node", "suspend", "--wallet", &reg, "--node-key", key], &env);
    assert!(node.stop().expect("the node was running").success());
    let intact = node.dir.clone();

    let (passed, out, err) = verify(&intact, false);
    assert!(passed, "{out}\n{err}");
    for part in ["ledger OK", "raft log: OK", "vault: OK"] {
        assert!(out.contains(part), "{part:?} not in\n{out}");
    }
    // Every block a node applied is stored with its proposer's seal, and verify checked each.
    let counts = out.split(" blocks (").next().and_then(|s| s.rsplit(", ").next());
    let sealed = out.split(" blocks (").nth(1).and_then(|s| s.split(' ').next());
    let (blocks, sealed): (u64, u64) =
        (counts.unwrap().parse().unwrap(), sealed.unwrap().parse().unwrap());
    assert!(blocks > 0 && sealed == blocks, "{blocks} blocks, {sealed} sealed:\n{out}");
    let (passed, out, err) = verify(&intact, true);
    assert!(passed, "{out}\n{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let parts: Vec<_> = report["parts"].as_array().unwrap().iter().map(|p| &p["part"]).collect();
    assert_eq!(parts, ["ledger", "raft log", "vault"], "{report}");

    let blob_files = blobs(&intact);
    assert!(blob_files.len() >= 3, "the cast's sealed details are in the vault: {blob_files:?}");
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();

    broken(tmp.path(), &intact, "no-raft-log", |d| {
        fs::remove_file(d.join("raft-log.redb")).unwrap();
        "raft log: FAILED".into()
    });
    broken(tmp.path(), &intact, "truncated-raft-log", |d| {
        let log = fs::OpenOptions::new().write(true).open(d.join("raft-log.redb")).unwrap();
        let len = log.metadata().unwrap().len();
        log.set_len(len / 3).unwrap();
        "raft log: FAILED".into()
    });
    let flipped = name(&blob_files[0]);
    broken(tmp.path(), &intact, "flipped-blob", |d| {
        let path = d.join("vault").join(&flipped);
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 1;
        fs::write(&path, bytes).unwrap();
        format!("vault: 1 blob corrupt: {flipped}")
    });
    let deleted = name(&blob_files[1]);
    broken(tmp.path(), &intact, "deleted-blob", |d| {
        fs::remove_file(d.join("vault").join(&deleted)).unwrap();
        format!("vault: 1 blob missing: {deleted}")
    });
    broken(tmp.path(), &intact, "no-index", |d| {
        fs::remove_file(d.join("vault").join("index.redb")).unwrap();
        "index.redb is missing".into()
    });
    // In JSON, the failed part says so with its problems.
    let copy = tmp.path().join("no-raft-log");
    let (passed, out, _) = verify(&copy, true);
    assert!(!passed);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["parts"][1]["ok"], false, "{report}");
    assert!(!report["parts"][1]["problems"].as_array().unwrap().is_empty(), "{report}");
}
