//! A node joining a network after 100,000 transactions (issue 12's fault list): the genesis
//! node, a real process with a snapshot every 200 entries, is loaded with `medledger bench tx`;
//! then the regulator admits a second node with the CLI (`node init`, `node admit`,
//! `up --join --genesis-hash`), which catches up by installing a snapshot (not by replaying
//! the log, whose early entries are gone), reaches the same tip, log root and state digest,
//! and serves data written before it joined. Both nodes' Raft logs stay bounded by a small
//! multiple of the snapshot interval, and `medledger verify` passes on both data directories.
//! (One node under the load, not two, halves the CPU the test needs on a debug build.)

use std::time::{Duration, Instant};

use crate::{cluster_harness::*, harness::*};

/// Transactions committed before the third node joins.
const TXS: u64 = 100_000;

/// Raft entries (blocks) between snapshots on every node: the load makes ~2,400 blocks (of
/// ~40 transactions), so about a dozen snapshots are built and the log purged behind each.
const SNAPSHOT_EVERY: u64 = 200;

/// The most entries any node's Raft log may hold when stopped: the entries since the last
/// snapshot, those kept behind it (a quarter of the interval), and those applied while a
/// snapshot was being built (a few seconds in a debug build), within three intervals.
/// Without purging, it would be every block of the load.
const LOG_BOUND: u64 = 3 * SNAPSHOT_EVERY;

/// How long `medledger bench`, the catch-up and each `medledger verify` of a
/// 100,000-transaction ledger (a full replay in a debug build) may take on a busy machine.
const SLOW: Duration = Duration::from_secs(300);

/// The `key=value` field of the first line of `log` that contains `message`.
fn logged_field(log: &str, message: &str, key: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains(message))?;
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

#[test]
fn a_node_joining_after_100000_transactions_catches_up_by_snapshot_and_logs_stay_bounded() {
    let started = Instant::now();
    let tmp = tempdir();
    let every = SNAPSHOT_EVERY.to_string();
    let (mut net, _) = Network::start_with(tmp.path(), 1, false, &["--snapshot-every", &every]);

    // 100,000 transactions (patients, doctors, key rotations from 64 hospitals), requests of
    // 32 from 16 clients; every one must apply.
    let wallet = net.node(1).regulator();
    let txs = TXS.to_string();
    let args = ["bench", "tx", "--wallet", &wallet, "--node", &net.node(1).url, "--txs", &txs];
    let tail = ["--hospitals", "64", "--concurrency", "16", "--batch", "32", "--json"];
    let out = cli_within(&[&args[..], &tail[..]].concat(), &[], SLOW);
    assert!(out.status.success(), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    // (The bench rounds the count up to whole requests per hospital.)
    assert_eq!(report["committed"], report["txs"], "{report}");
    assert!(report["committed"].as_u64().is_some_and(|c| c >= TXS), "{report}");
    let loaded = net.node(1).health();
    let height = loaded["height"].as_u64().unwrap();
    assert!(loaded["log_size"].as_u64().unwrap() >= TXS, "{loaded}");
    eprintln!("loaded {TXS} transactions in {:?} ({report})", started.elapsed());
    let log1 = net.node(1).log_text();
    assert!(log1.contains("built a snapshot"), "node 1 built no snapshot\n{log1}");

    // The regulator admits a second node, which joins with the genesis hash.
    let joining = Instant::now();
    let (id, admission) = net.admit_and_join(&tmp.path().join("node-2"));
    assert_eq!(id, 2);
    net.wait_all_within("node 2 a voter at the tip", SLOW, |v| {
        v.iter().all(|v| voters(v) == [1, 2]) && converged(v, height)
    });
    let caught_up = joining.elapsed();

    // By a snapshot: node 2 installed one holding (nearly) the whole load, built by node 1
    // behind the entries its log still held.
    let log2 = net.node(2).log_text();
    let installed = logged_field(&log2, "installed a snapshot", "log_size")
        .unwrap_or_else(|| panic!("node 2 installed no snapshot\n{log2}"));
    assert!(installed >= TXS / 2, "a snapshot of only {installed} transactions\n{log2}");
    eprintln!("node 2: a snapshot of {installed} transactions, at the tip after {caught_up:?}");

    // Node 2 serves what was written before it joined: the directory of hospitals (the first
    // one the regulator admitted among them), as node 1 serves it, and an inclusion proof of
    // its own admission under its own checkpoint.
    let mut regulator = medledger_client::Wallet::load(net.node(1).regulator_wallet()).unwrap();
    let identity = regulator.unlock(PASS).unwrap();
    let (port2, account) = (net.node(2).port, regulator.account());
    let listed =
        signed_http(port2, &identity.signing, account, "GET", "/v1/hospitals", b"").unwrap();
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert!(listed.text().contains("St. Mary's"), "{}", listed.text());
    assert_eq!(listed.json(), net.node(1).regulator_get("/v1/hospitals").json());
    let proof = ok(&["proof", &admission, "--wallet", &wallet, "--node", &net.node(2).url], &[]);
    assert!(proof.contains("proof verified") && proof.contains("signed by node 2"), "{proof}");

    // Stopped: both data directories pass `verify`, both hold one tip and one state, and
    // each Raft log holds a few snapshot intervals' worth of entries, not the load's.
    let nodes = net.stop_and_verify(SLOW);
    for (i, n) in nodes.iter().enumerate() {
        let span = RaftLogSpan::from_verify(&n.report);
        eprintln!("node {}: raft log {span:?}", i + 1);
        assert!(span.entries <= LOG_BOUND, "node {}: {span:?}\n{}", i + 1, n.report);
        assert!(span.purged.is_some_and(|p| p + 1 == span.first), "{}", n.report);
        assert_eq!((n.tip, n.digests), (nodes[0].tip, nodes[0].digests), "node {}", i + 1);
    }
    // The bound means something: far more entries were written than either log holds.
    let written = RaftLogSpan::from_verify(&nodes[0].report).last;
    assert!(written > 3 * LOG_BOUND, "only {written} entries were written");
    // Node 2 never held the early entries: its log starts past the snapshot it installed.
    let span2 = RaftLogSpan::from_verify(&nodes[1].report);
    assert!(span2.first > written / 2, "node 2's log starts at {}", span2.first);
    eprintln!("the whole test: {:?}", started.elapsed());
}
