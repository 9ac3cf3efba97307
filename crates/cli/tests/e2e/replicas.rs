//! Vault replication across a network (issue 13): a record uploaded to one hospital's node
//! is minted through the leader (which pulls the blobs from that node), replicated to every
//! node, and still read after the uploading node is killed; a damaged copy is replaced with
//! a peer's before it could be served; a replica lost from a node's disk is pulled back by
//! the repair pass at its restart; an erasure leaves no replica on any node.

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    cluster_harness::*,
    harness::*,
    registry::{Cast, cast},
};

/// The names of the blob files in a node's vault (a blob's file is its SHA-256 in hex).
fn blob_files(data: &Path) -> BTreeSet<String> {
    std::fs::read_dir(data.join("vault"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())).then_some(name)
        })
        .collect()
}

/// Waits (at most [`LIMIT`]) until `done` holds, polling.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    poll_until(what, LIMIT, done);
}

/// Waits (at most `limit`) until `done` holds, polling.
fn poll_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The doctor adds `file` for the patient through the node at `url`; the command's output.
fn add_record(c: &Cast, file: &Path, category: &str, url: &str) -> String {
    ok(
        &[
            "record",
            "add",
            "--wallet",
            &c.doctor,
            "--patient",
            &c.patient_id,
            "--file",
            &file.display().to_string(),
            "--category",
            category,
            "--date",
            "2021-01-26",
            "--title",
            "Replicated",
        ],
        &[("MEDLEDGER_NODE", url)],
    )
}

#[test]
fn a_record_uploaded_to_a_follower_is_replicated_and_read_after_that_node_is_killed() {
    let tmp = tempdir();
    let (mut net, _) = Network::start(tmp.path(), 3, false);
    let c = cast(tmp.path(), net.node(1));
    let leader = net.leader_seen_by(1, &net.ids());
    // The upload goes to a follower: the leader does not hold the blobs it must admit.
    let uploader = *net.ids().iter().find(|i| **i != leader).unwrap();
    let reader = *net.ids().iter().find(|i| **i != leader && **i != uploader).unwrap();
    let plain: Vec<u8> =
        (0..700_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let file = tmp.path().join("scan.dcm");
    std::fs::write(&file, &plain).unwrap();
    let (uploader_url, reader_url) = (net.node(uploader).url.clone(), net.node(reader).url.clone());
    let out = add_record(&c, &file, "imaging", &uploader_url);
    let start = out.find("record ").expect("a record line") + "record ".len();
    let pmr = out[start..].split_whitespace().next().unwrap().to_owned();

    // Every node ends up with every blob the uploader holds (record content, metadata, keys,
    // and the registration details uploaded to node 1).
    let uploaded = blob_files(&net.node(uploader).dir);
    assert!(uploaded.len() >= 3, "{uploaded:?}");
    for id in net.ids() {
        let dir = net.node(id).dir.clone();
        wait_until(&format!("node {id} to hold every blob"), || {
            blob_files(&dir).is_superset(&uploaded)
        });
    }

    // The uploading node is killed: the record is read through another node.
    net.node_mut(uploader).kill9();
    let back = tmp.path().join("back.dcm");
    let out = ok(
        &["record", "get", &pmr, "--wallet", &c.patient, "-o", &back.display().to_string()],
        &[("MEDLEDGER_NODE", &reader_url)],
    );
    assert_eq!(std::fs::read(&back).unwrap(), plain, "{out}");

    // The reader's copy of the ciphertext is damaged on disk: the read still serves the
    // record (a good copy pulled from the leader replaces the damaged one, which is reported),
    // and nothing damaged is served.
    let reader_dir = net.node(reader).dir.clone();
    let content = uploaded
        .iter()
        .max_by_key(|name| std::fs::metadata(reader_dir.join("vault").join(name)).unwrap().len())
        .unwrap()
        .clone();
    let path = reader_dir.join("vault").join(&content);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::remove_file(&back).unwrap();
    let out = ok(
        &["record", "get", &pmr, "--wallet", &c.patient, "-o", &back.display().to_string()],
        &[("MEDLEDGER_NODE", &reader_url)],
    );
    assert_eq!(std::fs::read(&back).unwrap(), plain, "{out}");
    let log = net.node(reader).log_text();
    assert!(log.contains("damaged"), "{log}");
    let repaired = std::fs::read(&path).unwrap();
    assert_eq!(medledger_core::Hash::of(&repaired).to_hex(), content, "the copy was not replaced");

    // A replica lost from the reader's disk while it was down is pulled back by the repair
    // pass when it starts again (the uploader is still down: it comes from the leader).
    net.node_mut(reader).stop();
    let pulled_before = net.node(reader).log_text().matches("pulled a replica").count();
    let lost = uploaded.iter().next().unwrap().clone();
    std::fs::remove_file(reader_dir.join("vault").join(&lost)).unwrap();
    assert!(!blob_files(&reader_dir).contains(&lost));
    net.node_mut(reader).start_again();
    // (The node logs the pull just after the file is in place: both are waited for.)
    wait_until("the repair pass to pull the lost replica back", || {
        blob_files(&reader_dir).contains(&lost)
            && net.node(reader).log_text().matches("pulled a replica").count() > pulled_before
    });

    // The uploader returns; the patient erases the record: once the janitors have run, no
    // node keeps any of its blobs (the registration details stay).
    net.node_mut(uploader).start_again();
    let before_erasure: Vec<BTreeSet<String>> =
        net.ids().iter().map(|id| blob_files(&net.node(*id).dir)).collect();
    let out = ok(
        &["record", "erase", &pmr, "--wallet", &c.patient, "--yes"],
        &[("MEDLEDGER_NODE", &reader_url)],
    );
    assert!(out.contains("erased"), "{out}");
    for (id, before) in net.ids().into_iter().zip(before_erasure) {
        let dir = net.node(id).dir.clone();
        wait_until(&format!("node {id} to delete the erased record's blobs"), || {
            !blob_files(&dir).contains(&content)
        });
        let gone: BTreeSet<String> = before.difference(&blob_files(&dir)).cloned().collect();
        assert!(gone.len() >= 3, "node {id} deleted only {gone:?}");
    }
}

/// `medledger vault status --node URL --json`.
fn vault_status(url: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["vault", "status", "--node", url, "--json"], &[])).unwrap()
}

/// Node `id`'s status in a `vault status --json` answer.
fn member(status: &serde_json::Value, id: u64) -> serde_json::Value {
    status["members"].as_array().unwrap().iter().find(|m| m["id"] == id).unwrap()["status"].clone()
}

#[test]
fn a_node_cut_off_from_its_peers_blobs_is_reported_under_replicated_until_a_repair_pass_heals_it() {
    let tmp = tempdir();
    let (net, _) = Network::start(tmp.path(), 3, true);
    let leader = net.leader_seen_by(1, &net.ids());
    // Node 1 (through which the cast registers) is never the cut node.
    let uploader = *net.ids().iter().find(|i| **i != leader).unwrap();
    let cut = *net.ids().iter().find(|i| **i != leader && **i != uploader).unwrap();
    assert_ne!(cut, 1);
    let url = net.node(1).url.clone();
    // The cut node's blob requests fail (its Raft traffic flows: it applies every block).
    // From before the cast: it misses the registrations' sealed details too, which no
    // admission requires, and a node must still ask for them again once a peer answers.
    net.set_rules(&[(cut, r#"{"rules": [{"messages": ["blob"], "cut": true}]}"#.into())]);
    let c = cast(tmp.path(), net.node(1));
    let registered = blob_files(&net.node(1).dir);
    let file = tmp.path().join("note.txt");
    std::fs::write(&file, b"a short clinical note").unwrap();
    add_record(&c, &file, "treatment-summary", &net.node(uploader).url);
    let held: BTreeSet<String> =
        registered.union(&blob_files(&net.node(uploader).dir)).cloned().collect();
    wait_until("the uncut nodes to replicate", || {
        [leader, uploader].iter().all(|id| blob_files(&net.node(*id).dir).is_superset(&held))
    });
    let before_cut = blob_files(&net.node(cut).dir);
    assert!(!before_cut.is_superset(&held));
    assert!(!registered.is_subset(&before_cut), "the cut node holds every registration's details");
    wait_until("the cut node to report blobs it still asks for", || {
        member(&vault_status(&url), cut)["retrying"].as_u64().unwrap() > 0
    });

    // A repair pass on every node: the cut node reports what it lacks, named.
    let out = ok(&["vault", "repair", "--node", &url, "--all"], &[]);
    assert_eq!(out.matches("repair pass asked for").count(), 3, "{out}");
    poll_until("the cut node's repair pass", Duration::from_secs(60), || {
        member(&vault_status(&url), cut)["missing"].as_u64().unwrap() > 0
    });
    let status = vault_status(&url);
    let under = status["under_replicated"].as_array().unwrap();
    let named: BTreeSet<String> =
        under.iter().map(|u| u["blob"].as_str().unwrap().to_owned()).collect();
    let lacking: BTreeSet<String> =
        held.difference(&blob_files(&net.node(cut).dir)).cloned().collect();
    assert_eq!(named, lacking, "{status}");
    for u in under {
        assert_eq!(u["missing_on"], serde_json::json!([cut]), "{status}");
    }
    // What the harness's hospital admission names without uploading is held by no node.
    let unheld: Vec<&str> =
        status["unheld"].as_array().unwrap().iter().map(|b| b.as_str().unwrap()).collect();
    assert!(!unheld.is_empty(), "the harness's hospital contact is held by no node: {status}");
    assert!(unheld.iter().all(|b| !held.contains(*b)), "{status}");
    let text = ok(&["vault", "status", "--node", &url], &[]);
    assert!(text.contains("under-replicated blobs"), "{text}");

    // Healed: the blobs arrive (asked for again every 10 s), and the status says so without
    // waiting for another pass.
    net.set_rules(&[(cut, r#"{"rules": []}"#.into())]);
    poll_until("the cut node to catch up", Duration::from_secs(60), || {
        blob_files(&net.node(cut).dir).is_superset(&held)
    });
    poll_until("the status to show the cut node complete", Duration::from_secs(30), || {
        let s = member(&vault_status(&url), cut);
        s["missing"] == unheld.len() && s["repair_pending"] == false && s["retrying"] == 0
    });
    let status = vault_status(&url);
    assert_eq!(status["under_replicated"], serde_json::json!([]), "{status}");
    for id in net.ids() {
        let s = member(&status, id);
        let (held, referenced) = (s["held"].as_u64().unwrap(), s["referenced"].as_u64().unwrap());
        assert_eq!(held + unheld.len() as u64, referenced, "node {id}: {status}");
        assert!(held >= 3, "node {id}: {status}");
    }
    let text = ok(&["vault", "status", "--node", &url], &[]);
    assert!(text.contains("no under-replicated blob"), "{text}");
}

#[test]
fn a_one_node_network_refuses_a_repair_it_has_no_peer_for() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let err = fails(&["vault", "repair", "--node", &node.url], &[]);
    assert!(err.contains("refused") && err.contains("no peers"), "{err}");
    let status = vault_status(&node.url);
    assert_eq!(member(&status, 1)["checked_at_ms"], serde_json::Value::Null, "{status}");
    let text = ok(&["vault", "status", "--node", &node.url], &[]);
    assert!(text.contains("no repair pass yet"), "{text}");
}

/// A mint naming blobs no node holds.
fn mint_of_nothing(patient: medledger_core::ids::AccountId) -> medledger_core::tx::TxBody {
    use medledger_core::tx::{
        RecordTx, TxBody,
        consent::RecordCategory,
        records::{KeyRef, MintRecord, VisitDate},
    };
    TxBody::Records(RecordTx::Mint(MintRecord {
        patient,
        visit_date: VisitDate { year: 2026, month: 1, day: 1 },
        category: RecordCategory::LabReport,
        content: medledger_core::Hash::of(b"content nobody uploaded"),
        size: 23,
        metadata: medledger_core::Hash::of(b"metadata nobody uploaded"),
        keys: vec![KeyRef {
            recipient: patient,
            blob: medledger_core::Hash::of(b"a key nobody uploaded"),
        }],
        supersedes: None,
        sharing: None,
    }))
}

#[test]
fn the_leader_asks_its_peers_for_a_submissions_blobs_only_for_an_authenticated_signer() {
    use medledger_core::{ids::AccountId, keys::SigningKey, tx::Transaction};
    let tmp = tempdir();
    let (net, mut regulator) = Network::start(tmp.path(), 3, false);
    let leader = net.leader_seen_by(1, &net.ids());
    let port = net.node(leader).port;
    const ASKED: &str = "a blob of a submission is on no peer asked";

    // A stranger (no account on the ledger) names blobs nobody holds: refused without a
    // single pull.
    let stranger = SigningKey::generate();
    let account = AccountId::from_initial_key(&stranger.public_key());
    let forged = Transaction {
        chain_id: regulator.chain.clone(),
        signer: account,
        nonce: 1,
        body: mint_of_nothing(account),
    }
    .sign(&stranger);
    let r = http(port, "POST", "/v1/transactions", &forged.encode()).unwrap();
    assert!(r.text().contains("unknown_signer"), "{} {}", r.status, r.text());
    // The regulator is registered: its peers are asked (and have nothing), then admission
    // refuses the missing blobs. Its log line is what the stranger's submission must not
    // have caused.
    let mint = regulator.sign(mint_of_nothing(regulator.account));
    let r = http(port, "POST", "/v1/transactions", &mint.encode()).unwrap();
    assert_eq!((r.status, r.json()["code"].as_str()), (422, Some("blob_missing")), "{}", r.text());
    let log = net.node(leader).log_text();
    let asked: Vec<&str> = log.lines().filter(|l| l.contains(ASKED)).collect();
    assert!(asked.iter().any(|l| l.contains(&mint.hash().to_string())), "{log}");
    assert!(!asked.iter().any(|l| l.contains(&forged.hash().to_string())), "{log}");
}

#[test]
fn a_pull_below_the_free_space_reserve_is_refused_and_resumes_when_space_returns() {
    use medledger_core::tx::{NodeTx, TxBody};
    const MIB: u64 = 1024 * 1024;
    let tmp = tempdir();
    let n1 = Node::start(&tmp.path().join("node-1"));
    let mut regulator = Regulator::of(&n1);
    let (admit, hospital_account) = hospital("St. Mary's");
    regulator.submit(n1.port, admit);
    // Node 2 keeps its data on a small file system with a 24 MiB reserve.
    let small = SmallFs::mount(64);
    let dir2 = small.path().join("node-2");
    let port2 = free_port();
    let node_key = node_key_in(&dir2);
    let address = format!("http://127.0.0.1:{port2}");
    regulator.submit(
        n1.port,
        TxBody::Nodes(NodeTx::Admit { node_key, address, hospital: hospital_account }),
    );
    let n2 = Node::start_with(&dir2, port2, &["--join", &n1.url, "--disk-reserve-mb", "24"]);
    wait_for("both nodes voters", &[n1.port, n2.port], &[&n1, &n2], |v| {
        v.iter().all(|v| voters(v) == [1, 2]) && converged(v, 1)
    });
    let c = cast(tmp.path(), &n1);

    // A filler leaves node 2 two MiB above its reserve: a 6 MiB record is not pulled.
    let headroom = crate::diskfull::free_bytes(&n2) - 24 * MIB - 2 * MIB;
    let filler = small.path().join("filler");
    std::fs::write(&filler, vec![0u8; headroom as usize]).unwrap();
    let file = tmp.path().join("scan.dcm");
    let plain: Vec<u8> =
        (0..6 * MIB as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(&file, &plain).unwrap();
    add_record(&c, &file, "imaging", &n1.url);
    let wanted = blob_files(&n1.dir);
    wait_until("node 2 to refuse the pull below its reserve", || {
        n2.log_text().contains("the node's disk is full")
    });
    let content = wanted
        .iter()
        .max_by_key(|name| std::fs::metadata(n1.dir.join("vault").join(name)).unwrap().len())
        .unwrap()
        .clone();
    assert!(!blob_files(&dir2).contains(&content), "pulled below the reserve");
    assert_eq!(n2.health()["status"], "ok", "{}", n2.health());
    let status = vault_status(&n1.url);
    assert!(member(&status, 2)["retrying"].as_u64().unwrap() >= 1, "{status}");

    // Space returns: the blob is asked for again and arrives, nothing restarted.
    std::fs::remove_file(&filler).unwrap();
    poll_until("node 2 to pull once space returned", Duration::from_secs(40), || {
        blob_files(&dir2).is_superset(&wanted)
    });
}

/// An erased blob does not come back from a peer that has not applied the erasure yet. One
/// follower (the laggard) is cut off from the leader's appends, so it still holds the
/// record's blobs and, knowing nothing of the erasure, offers them. A submission naming the
/// erased content makes the leader ask its peers for it before admission: it must not pull it
/// (its ledger says erased) and refuses the submission 410 `erased`. Once the laggard catches
/// up, its janitor deletes its copies too.
#[test]
fn an_erased_blob_is_not_pulled_back_from_a_peer_that_lags_behind_the_erasure() {
    let tmp = tempdir();
    let (net, mut regulator) = Network::start(tmp.path(), 3, true);
    let c = cast(tmp.path(), net.node(1));
    let leader = net.leader_seen_by(1, &net.ids());
    let laggard = *net.ids().iter().find(|i| **i != leader).unwrap();
    let leader_url = net.node(leader).url.clone();
    let file = tmp.path().join("note.txt");
    std::fs::write(&file, b"a record that will be erased").unwrap();
    let before = blob_files(&net.node(leader).dir);
    let out = add_record(&c, &file, "lab-report", &leader_url);
    let start = out.find("record ").expect("a record line") + "record ".len();
    let pmr = out[start..].split_whitespace().next().unwrap().to_owned();
    let record: BTreeSet<String> =
        blob_files(&net.node(leader).dir).difference(&before).cloned().collect();
    assert!(record.len() >= 3, "{record:?}");
    let laggard_dir = net.node(laggard).dir.clone();
    wait_until("the laggard to hold the record's blobs", || {
        blob_files(&laggard_dir).is_superset(&record)
    });

    // The laggard hears no appends and asks for no votes (it cannot unseat the leader).
    net.set_rules(&[
        (
            leader,
            format!(r#"{{"rules": [{{"to": [{laggard}], "messages": ["append"], "cut": true}}]}}"#),
        ),
        (laggard, r#"{"rules": [{"messages": ["vote"], "cut": true}]}"#.to_owned()),
    ]);
    let out = ok(
        &["record", "erase", &pmr, "--wallet", &c.patient, "--yes"],
        &[("MEDLEDGER_NODE", &leader_url)],
    );
    assert!(out.contains("erased"), "{out}");
    let leader_dir = net.node(leader).dir.clone();
    wait_until("the leader to delete the erased record's blobs", || {
        blob_files(&leader_dir).is_disjoint(&record)
    });
    assert!(blob_files(&laggard_dir).is_superset(&record), "the laggard applied the erasure");

    // A submission naming the erased blobs, signed by a registered account (the regulator):
    // its envelope passes, so the leader asks its peers for them, and takes none.
    let shown = ok(
        &[
            "wallet",
            "show",
            "--wallet",
            &net.node(1).regulator_wallet().display().to_string(),
            "--json",
            "--ledger",
        ],
        &[("MEDLEDGER_NODE", &leader_url)],
    );
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    regulator.nonce = shown["ledger"]["nonce"].as_u64().unwrap();
    let mut names: Vec<medledger_core::Hash> =
        record.iter().map(|h| medledger_core::Hash::from_hex(h).unwrap()).collect();
    let content = names.pop().unwrap();
    let medledger_core::tx::TxBody::Records(medledger_core::tx::RecordTx::Mint(mut mint)) =
        mint_of_nothing(regulator.account)
    else {
        unreachable!()
    };
    (mint.content, mint.metadata, mint.keys[0].blob) = (content, names[0], names[1]);
    let pulled = || net.node(leader).log_text().matches("pulled a replica").count();
    let pulled_before = pulled();
    let tx = regulator
        .sign(medledger_core::tx::TxBody::Records(medledger_core::tx::RecordTx::Mint(mint)));
    let r = http(net.node(leader).port, "POST", "/v1/transactions", &tx.encode()).unwrap();
    assert_eq!((r.status, r.json()["code"].as_str()), (410, Some("erased")), "{}", r.text());
    assert!(blob_files(&leader_dir).is_disjoint(&record), "an erased blob came back");
    assert_eq!(pulled(), pulled_before, "the leader pulled a replica");

    // Healed, the laggard applies the erasure and deletes its copies.
    let none = r#"{"rules": []}"#.to_owned();
    net.set_rules(&[(leader, none.clone()), (laggard, none)]);
    wait_until("the laggard to delete the erased record's blobs", || {
        blob_files(&laggard_dir).is_disjoint(&record)
    });
}
