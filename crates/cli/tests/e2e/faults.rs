//! Fault tests of networks of real `medledger up` processes on loopback ports (issue 12's
//! "Faults"): five nodes keep writing with two killed (kill -9, the leader among them), refuse
//! writes with 503 `no_quorum` with three killed, and lose no acknowledged write when they
//! return; a minority cut off by the nodes' fault rules (`up --fault-rules`) commits nothing
//! while the majority goes on, as does a follower cut off alone, and after healing every node
//! holds one history; three nodes whose links lose and delay messages under writes converge
//! with every acknowledged write; a malformed rules file is refused.

use std::time::{Duration, Instant};

use medledger_core::Hash;

use crate::{cluster_harness::*, harness::*};

/// A bound on how long a write refused for want of a quorum may take to be answered (a loose
/// one: this is not a timing test): the leader answers once it has heard from no quorum for
/// 3 s, a follower forwards to it.
const REFUSAL_WITHIN: Duration = Duration::from_secs(25);

/// Submits a fresh write to `port` and asserts that it is refused with 503 `no_quorum` within
/// [`REFUSAL_WITHIN`], and not by the leader's 10 s commit timeout, which is only for a
/// quorum that answers but does not commit; its hash.
fn refused_for_want_of_quorum(regulator: &mut Regulator, port: u16, name: &str) -> Hash {
    let tx = regulator.sign(hospital(name).0);
    let started = Instant::now();
    let r = http(port, "POST", "/v1/transactions", &tx.encode()).unwrap();
    eprintln!("{name} on port {port}: {} {} after {:?}", r.status, r.text(), started.elapsed());
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("no_quorum")), "{}", r.text());
    assert!(started.elapsed() < REFUSAL_WITHIN, "refused only after {:?}", started.elapsed());
    assert!(!r.text().contains("not committed within"), "{}", r.text());
    tx.hash()
}

#[test]
fn five_nodes_write_on_without_two_refuse_without_three_and_lose_nothing() {
    let tmp = tempdir();
    let (mut net, regulator) = Network::start(tmp.path(), 5, false);
    let ids = net.ids();
    let writer = Writer::start(regulator, net.ports(&ids), "Crash");
    writer.wait_for_more(5, "five nodes");

    // kill -9 the leader and another node: three of five are still a quorum.
    let leader = net.leader_seen_by(1, &ids);
    let other = if leader == 5 { 4 } else { 5 };
    for id in [leader, other] {
        writer.avoid(net.node(id).port);
        net.node_mut(id).kill9();
    }
    let alive: Vec<u64> = ids.iter().copied().filter(|i| ![leader, other].contains(i)).collect();
    writer.wait_for_more(10, "three of five nodes");
    let (mut regulator, writes) = writer.stop();
    let new_leader = net.leader_seen_by(alive[0], &alive);
    assert_ne!(new_leader, leader);

    // A third node killed (a follower): two of five cannot commit. The leader and the other
    // survivor (which forwards to it) both refuse, and nothing is acknowledged.
    let third = *alive.iter().find(|i| **i != new_leader).unwrap();
    net.node_mut(third).kill9();
    let rest: Vec<u64> = alive.iter().copied().filter(|i| *i != third).collect();
    let refused: Vec<Hash> = rest
        .iter()
        .map(|id| refused_for_want_of_quorum(&mut regulator, net.node(*id).port, "No Quorum"))
        .collect();

    // The three return (node 1 first: the others rejoin through its address). Every node
    // catches up with every acknowledged write, and the network takes writes again.
    let mut killed = [leader, other, third];
    killed.sort();
    for id in killed {
        net.node_mut(id).start_again();
    }
    let top = writes.acked.iter().map(|(_, h)| *h).max().unwrap();
    net.wait_all("all five caught up", |v| converged(v, top));
    let after = regulator.submit(net.node(leader).port, hospital("After").0);
    let height = after["height"].as_u64().unwrap();
    net.wait_all("all five at the write after recovery", |v| converged(v, height));

    // One history on every node, each passing `verify`, with every acknowledged write
    // applied; a refused write may commit later (its answer said so), but at most once.
    let txs = net.stop_and_check_ledgers();
    eprintln!(
        "{} acknowledged, {} failed; ledger of {}",
        writes.acked.len(),
        writes.failed.len(),
        txs.len()
    );
    for (hash, _) in &writes.acked {
        assert!(txs.contains(&(*hash, true)), "acknowledged write {hash} is missing");
    }
    for hash in refused {
        assert!(txs.iter().filter(|(h, _)| *h == hash).count() <= 1);
    }
}

#[test]
fn a_cut_off_minority_commits_nothing_and_converges_after_healing() {
    let tmp = tempdir();
    let (mut net, mut regulator) = Network::start(tmp.path(), 5, true);
    let ids = net.ids();
    let first = regulator.submit(net.node(1).port, hospital("Before").0);
    let first = first["tx_hash"].as_str().unwrap().parse::<Hash>().unwrap();

    // {leader, a follower} cut off from the three others, both ways.
    let leader = net.leader_seen_by(1, &ids);
    let follower = *ids.iter().find(|i| **i != leader).unwrap();
    let minority = [leader, follower];
    let majority: Vec<u64> = ids.iter().copied().filter(|i| !minority.contains(i)).collect();
    net.partition(&minority);

    // The majority elects a leader of its own and commits.
    let writer = Writer::start(regulator, net.ports(&majority), "Majority");
    writer.wait_for_more(10, "the majority");
    let (mut regulator, mut writes) = writer.stop();
    let new_leader = net.leader_seen_by(majority[0], &majority);

    // The minority's clients: 503 no_quorum from the old leader and from its follower (which
    // forwards to it); nothing acknowledged.
    let mut refused = Vec::new();
    for i in 0..3 {
        for id in minority {
            let name = format!("Minority {id} {i}");
            refused.push(refused_for_want_of_quorum(&mut regulator, net.node(id).port, &name));
        }
    }
    // A malformed rules file on the old leader is refused, and its cut stays in force.
    let old = net.node(leader);
    let log_before = old.log_text().matches("fault rules file refused").count();
    write_rules(&net.rules[leader as usize - 1], r#"{"rules": [{"to": [3], "cut": tru"#);
    let deadline = Instant::now() + LIMIT;
    while old.log_text().matches("fault rules file refused").count() <= log_before {
        assert!(Instant::now() < deadline, "no error logged\n{}", old.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(old.log_text().contains("invalid fault rules"), "{}", old.log_text());
    refused.push(refused_for_want_of_quorum(&mut regulator, old.port, "Minority after"));
    let writer = Writer::start(regulator, net.ports(&majority), "Majority again");
    writer.wait_for_more(5, "the majority, still cut off");
    let (mut regulator, more) = writer.stop();
    writes.acked.extend(more.acked);

    // Healed: one tip, log root and leader on all five, and the old leader forwards a write.
    net.heal();
    let top = writes.acked.iter().map(|(_, h)| *h).max().unwrap();
    net.wait_all("all five after healing", |v| converged(v, top));
    let after = regulator.submit(net.node(leader).port, hospital("Healed").0);
    let height = after["height"].as_u64().unwrap();
    net.wait_all("all five at the write after healing", |v| converged(v, height));
    assert!(majority.contains(&new_leader));

    // A follower cut off alone: it cannot reach the leader it knows, so it does not forward
    // its clients' writes there; they are refused, while the four others commit.
    let leader = net.leader_seen_by(1, &ids);
    let lone = *ids.iter().rev().find(|i| **i != leader).unwrap();
    net.partition(&[lone]);
    refused.push(refused_for_want_of_quorum(&mut regulator, net.node(lone).port, "Lone"));
    let rest: Vec<u64> = ids.iter().copied().filter(|i| *i != lone).collect();
    let r = regulator.submit(net.node(rest[0]).port, hospital("Without the lone node").0);
    let height = r["height"].as_u64().unwrap();
    writes.acked.push((r["tx_hash"].as_str().unwrap().parse().unwrap(), height));
    net.heal();
    net.wait_all("all five after the second healing", |v| converged(v, height));

    // One history everywhere (verify passes on each), with every acknowledged write, and
    // none of the writes the minority's clients were refused.
    let txs = net.stop_and_check_ledgers();
    let acked = writes.acked.iter().map(|(h, _)| *h).chain([first]);
    for hash in acked {
        assert!(txs.contains(&(hash, true)), "acknowledged write {hash} is missing");
    }
    for hash in refused {
        assert!(
            !txs.iter().any(|(h, _)| *h == hash),
            "{hash}, refused to a client of the minority, is in the ledger"
        );
    }
}

#[test]
fn up_refuses_a_malformed_fault_rules_file_and_hides_the_flag() {
    let tmp = tempdir();
    let rules = tmp.path().join("rules.json");
    write_rules(&rules, r#"{"rules": [{"to": [2]}]}"#);
    let dir = tmp.path().join("node");
    let listen = format!("127.0.0.1:{}", free_port());
    let args = [
        "up",
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        &listen,
        "--fault-rules",
        rules.to_str().unwrap(),
    ];
    let err = fails(&args, &[]);
    assert!(err.contains("invalid fault rules") && err.contains("no effect"), "{err}");
    assert!(!dir.exists(), "nothing is created for a refused rules file");
    let help = ok(&["up", "--help"], &[]);
    assert!(!help.contains("--fault-rules"), "{help}");
}

#[test]
fn three_nodes_losing_and_delaying_messages_under_writes_converge_and_lose_nothing() {
    let tmp = tempdir();
    let (mut net, regulator) = Network::start(tmp.path(), 3, true);
    let ids = net.ids();
    // On every link: 30% of Raft appends and votes lost (the sender hears nothing until its
    // timeout), the rest 50 ms late; forwarded writes 50 ms late.
    let lossy = r#"{"rules": [
        {"messages": ["append", "vote"], "drop": 0.3, "delay_ms": 50},
        {"messages": ["forward"], "delay_ms": 50}
    ]}"#;
    net.set_rules(&ids.iter().map(|i| (*i, lossy.to_owned())).collect::<Vec<_>>());
    let writer = Writer::start(regulator, net.ports(&ids), "Lossy");
    writer.wait_for_more(30, "three nodes on lossy links");
    let (_, writes) = writer.stop();
    net.heal();
    let top = writes.acked.iter().map(|(_, h)| *h).max().unwrap();
    net.wait_all("all three after the lossy links healed", |v| converged(v, top));

    // Messages were lost: the leader's replication timed out (openraft logs each).
    let lost: usize = net.nodes.iter().map(|n| n.log_text().matches("RPCError").count()).sum();
    assert!(lost > 0, "no message was lost");
    let txs = net.stop_and_check_ledgers();
    eprintln!("{} acknowledged, {} failed", writes.acked.len(), writes.failed.len());
    for (hash, _) in &writes.acked {
        assert!(txs.contains(&(*hash, true)), "acknowledged write {hash} is missing");
    }
}

/// The wallet's node is cut off from its peers: a transaction it cannot get included (503
/// `no_quorum`) is reported, and the wallet sends the same signed transaction through another
/// node it learnt from the ledger before submitting, which includes it once.
#[test]
fn a_transaction_the_wallets_node_cannot_include_is_resubmitted_through_another_node() {
    let tmp = tempdir();
    let (net, _) = Network::start(tmp.path(), 3, true);
    let c = crate::registry::cast(tmp.path(), net.node(1));
    let leader = net.leader_seen_by(1, &net.ids());
    let cut_off = *net.ids().iter().find(|i| **i != leader).unwrap();
    let at = cluster(net.node(1).port).unwrap()["height"].as_u64().unwrap();
    net.wait_all("every node to hold the cast", |v| converged(v, at));
    let through = [("MEDLEDGER_NODE", net.node(cut_off).url.as_str())];
    net.partition(&[cut_off]);

    let grant = [
        "consent",
        "grant",
        "--wallet",
        &c.patient,
        "--grantee",
        &c.doctor_account,
        "--scope",
        "categories:lab_report",
        "--purpose",
        "treatment",
        "--days",
        "30",
        "--json",
    ];
    let o = cli(&grant, &through);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}\n{err}");
    assert!(err.contains("did not confirm transaction") && err.contains("no_quorum"), "{err}");
    assert!(err.contains("resubmitting transaction") && err.contains("included through node"));
    let id =
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"].as_str().unwrap().to_owned();

    // Applied once, as a node of the majority sees it.
    let majority = net.ids().into_iter().find(|i| *i != cut_off).unwrap();
    let out = ok(
        &["consent", "who-can-see", "--wallet", &c.patient, "--json"],
        &[("MEDLEDGER_NODE", net.node(majority).url.as_str())],
    );
    let view: serde_json::Value = serde_json::from_str(&out).unwrap();
    let grants = view["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{view}");
    assert_eq!(grants[0]["id"], id.as_str(), "{view}");
}
