//! A 3-node network of real `medledger up` processes on loopback ports: the genesis node, and
//! two nodes with their own keys that the regulator admits on the ledger and that join with
//! `up --join`. The leader adds them (learner, then voter); a transaction submitted to a
//! follower is committed on all three with the same tip and log root; after kill -9 of the
//! leader, a new leader commits, and the killed node restarts and catches up. Then the
//! regulator suspends a node, which leaves the voters; with one of the two left killed, the
//! survivor answers writes with 503 `no_quorum`; and a node whose key is not admitted, or
//! that is given the wrong genesis hash, is refused by `up --join`.

use std::{
    thread,
    time::{Duration, Instant},
};

use medledger_client::tx::build;
use medledger_core::tx::{NodeTx, TxBody};
use medledger_node::DataDir;

use crate::{cluster_harness::*, harness::*};

#[test]
fn three_nodes_replicate_forward_fail_over_and_catch_up() {
    let tmp = tempdir();
    let mut n1 = Node::start(&tmp.path().join("node-1"));
    let mut regulator = Regulator::of(&n1);
    let (admit, hospital_account) = hospital("St. Mary's");
    regulator.submit(n1.port, admit);

    // Two hospitals' nodes: keys made locally, admitted by the regulator at their addresses.
    let dirs = [tmp.path().join("node-2"), tmp.path().join("node-3")];
    let ports = [free_port(), free_port()];
    for (dir, port) in dirs.iter().zip(ports) {
        let node_key = node_key_in(dir);
        let address = format!("http://127.0.0.1:{port}");
        regulator.submit(
            n1.port,
            TxBody::Nodes(NodeTx::Admit { node_key, address, hospital: hospital_account }),
        );
    }
    let join = n1.url.clone();
    let mut n2 = Node::start_with(&dirs[0], ports[0], &["--join", &join]);
    let mut n3 = Node::start_with(&dirs[1], ports[1], &["--join", &join]);
    let all = [n1.port, n2.port, n3.port];
    wait_for("three voters", &all, &[&n1, &n2, &n3], |v| {
        v.iter().all(|v| voters(v) == [1, 2, 3]) && converged(v, 3)
    });

    // A transaction submitted to a follower is forwarded, and committed everywhere.
    let leader = cluster(n1.port).unwrap()["leader"].as_u64().unwrap();
    let follower = [&n1, &n2, &n3]
        .into_iter()
        .find(|n| cluster(n.port).unwrap()["node_id"] != leader)
        .unwrap()
        .port;
    let (admit, _) = hospital("Leeds General");
    let receipt = regulator.submit(follower, admit);
    let height = receipt["height"].as_u64().unwrap();
    wait_for("the follower's write on every node", &all, &[&n1, &n2, &n3], |v| {
        converged(v, height)
    });

    // kill -9 the leader: the other two elect a new leader, which commits.
    let (killed, survivors): (&mut Node, [u16; 2]) = match leader {
        1 => (&mut n1, [n2.port, n3.port]),
        2 => (&mut n2, [n1.port, n3.port]),
        _ => (&mut n3, [n1.port, n2.port]),
    };
    killed.kill9();
    wait_for("a new leader", &survivors, &[], |v| {
        v.iter().all(|v| v["leader"].as_u64().is_some_and(|l| l != leader))
    });
    let (admit, _) = hospital("Bradford Royal");
    let receipt = regulator.submit(survivors[0], admit);
    let after = receipt["height"].as_u64().unwrap();
    assert!(after > height, "{receipt}");

    // The killed node restarts and catches up: one tip and log root on all three.
    killed.start_again();
    wait_for("the restarted node caught up", &all, &[&n1, &n2, &n3], |v| converged(v, after));

    // `cluster status --json`: the leader, the term, and each member's own report.
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["cluster", "status", "--node", &n2.url, "--json"], &[]))
            .unwrap();
    let view = cluster(n1.port).unwrap();
    assert_eq!(status["leader"], view["leader"], "{status}");
    assert!(status["term"].as_u64().is_some_and(|t| t >= 1), "{status}");
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{status}");
    for m in members {
        assert_eq!(m["role"], "voter", "{status}");
        assert_eq!(m["log_root"], view["log_root"], "{status}");
        assert_eq!(m["height"], view["height"], "{status}");
        assert!(m["applied"].as_u64().is_some() && m["url"].as_str().is_some(), "{status}");
    }

    // A forwarded write is never forwarded again: a follower answers it `no_quorum`.
    let leader = view["leader"].as_u64().unwrap();
    let nodes = [&n1, &n2, &n3];
    let follower = nodes.iter().find(|n| cluster(n.port).unwrap()["node_id"] != leader).unwrap();
    regulator.nonce += 1;
    let (admit, _) = hospital("Forwarded Twice");
    let tx =
        build(&regulator.identity, regulator.account, &regulator.chain, regulator.nonce, admit);
    let r = request(
        follower.port,
        "POST",
        "/v1/transactions",
        &tx.encode(),
        &[("x-medledger-forwarded", "1")],
    )
    .unwrap();
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("no_quorum")), "{}", r.text());
    regulator.nonce -= 1;

    // The regulator suspends a follower's node: it leaves the voters.
    let suspended = follower.port;
    let suspended_id = cluster(suspended).unwrap()["node_id"].as_u64().unwrap();
    let key = node_key_in(&follower.dir);
    regulator.submit(n1.port, TxBody::Nodes(NodeTx::Suspend { node_key: key }));
    let rest: Vec<u16> = all.iter().copied().filter(|p| *p != suspended).collect();
    wait_for("the suspended node out of the voters", &rest, &[&n1, &n2, &n3], |v| {
        v.iter().all(|v| !voters(v).contains(&suspended_id) && voters(v).len() == 2)
    });

    // One of the two voters left is killed: the other cannot commit, and says so.
    let victim = if rest[0] == n1.port {
        &mut n1
    } else if rest[0] == n2.port {
        &mut n2
    } else {
        &mut n3
    };
    victim.kill9();
    regulator.nonce += 1;
    let (admit, _) = hospital("No Quorum");
    let tx =
        build(&regulator.identity, regulator.account, &regulator.chain, regulator.nonce, admit);
    let r = http(rest[1], "POST", "/v1/transactions", &tx.encode()).unwrap();
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("no_quorum")), "{}", r.text());
}

#[test]
fn up_join_refuses_a_key_not_admitted_and_a_wrong_genesis() {
    let tmp = tempdir();
    let n1 = Node::start(&tmp.path().join("node-1"));
    let dir = tmp.path().join("node-2");
    let key = node_key_in(&dir);
    let listen = format!("127.0.0.1:{}", free_port());
    let d = dir.display().to_string();
    let err = fails(&["up", "--data-dir", &d, "--listen", &listen, "--join", &n1.url], &[]);
    assert!(err.contains("not admitted") && err.contains("node admit"), "{err}");
    assert!(err.contains(&hex::encode(key.0)), "{err}");
    assert!(!DataDir::new(&dir).is_initialised(), "nothing is created for a refused join");
    let wrong = "00".repeat(32);
    let err = fails(
        &["up", "--data-dir", &d, "--listen", &listen, "--join", &n1.url, "--genesis-hash", &wrong],
        &[],
    );
    assert!(err.contains("--genesis-hash") && err.contains("refusing"), "{err}");
}

#[test]
fn a_node_joining_after_the_log_was_purged_catches_up_by_snapshot() {
    let tmp = tempdir();
    // A snapshot every 40 entries (the default is 2,000) so that a short test purges the log.
    let every = ["--snapshot-every", "40"];
    let mut n1 = Node::start_with(&tmp.path().join("node-1"), free_port(), &every);
    let mut regulator = Regulator::of(&n1);
    let (admit, hospital_account) = hospital("St. Mary's");
    regulator.submit(n1.port, admit);
    // One transaction a block, each waited for: 120 blocks, three snapshots' worth.
    for i in 0..120 {
        let (admit, _) = hospital(&format!("Clinic {i}"));
        regulator.submit(n1.port, admit);
    }
    let snapshots = tmp.path().join("node-1").join("snapshots");
    let snap_files = || {
        std::fs::read_dir(&snapshots)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + CONVERGE;
    while snap_files() == 0 {
        assert!(Instant::now() < deadline, "node 1 built no snapshot\n{}", n1.log_text());
        thread::sleep(Duration::from_millis(100));
    }

    // A new node: the entries it would need from the start are gone from node 1's log.
    let dir = tmp.path().join("node-2");
    let port = free_port();
    let node_key = node_key_in(&dir);
    let address = format!("http://127.0.0.1:{port}");
    regulator.submit(
        n1.port,
        TxBody::Nodes(NodeTx::Admit { node_key, address, hospital: hospital_account }),
    );
    let height = n1.health()["height"].as_u64().unwrap();
    let join = n1.url.clone();
    let mut n2 =
        Node::start_with(&dir, port, &[&["--join", join.as_str()][..], &every[..]].concat());
    wait_for("node 2 caught up by snapshot", &[n1.port, n2.port], &[&n1, &n2], |v| {
        v.iter().all(|v| voters(v) == [1, 2]) && converged(v, height)
    });

    // Both stopped: each data directory passes the full offline audit, and node 2's Raft log
    // starts after a purged prefix (it never held the early entries: it installed them).
    n2.stop();
    n1.stop();
    for d in [tmp.path().join("node-1"), dir] {
        let out = ok(&["verify", "--data-dir", d.to_str().unwrap()], &[]);
        assert!(out.contains("purged behind a snapshot"), "{}: {out}", d.display());
    }
}
