//! Node membership through `apply_block`: the regulator admits, suspends, reinstates and removes
//! nodes; the genesis node is member 1; every refusal (each written as the attack it stops)
//! changes nothing.

use medledger_core::{
    block::{Created, Refusal},
    keys::PublicKey,
    tx::{NodeTx, RegistryTx, TxBody},
};
use medledger_ledger::{NodeEntry, NodeStatus};

use super::*;

const ADDRESS: &str = "http://127.0.0.2:7301";

/// A network with an admitted hospital (and a doctor of it).
fn consortium() -> (Net, Actor, Actor) {
    let (net, hospital, doctor, _) = populated();
    (net, hospital, doctor)
}

fn admit_body(key: PublicKey, address: &str, hospital: &Actor) -> TxBody {
    TxBody::Nodes(NodeTx::Admit {
        node_key: key,
        address: address.into(),
        hospital: hospital.account,
    })
}

/// Signs `body` as the regulator and applies it.
fn by_regulator(net: &mut Net, body: TxBody) -> Receipt {
    let t = net.regulator.sign_body(body);
    net.one(t)
}

fn fresh_key() -> PublicKey {
    SigningKey::generate().public_key()
}

/// Admits a node with a fresh key for `hospital`, at an address of its own (the first at
/// [`ADDRESS`]); its key and id.
fn admit(net: &mut Net, hospital: &Actor) -> (PublicKey, u64) {
    let key = fresh_key();
    let address = format!("http://127.0.0.2:{}", 7300 + net.ledger.node_members().unwrap().len());
    let r = by_regulator(net, admit_body(key, &address, hospital));
    let Some(Created::Node { id }) = applied(&r) else { panic!("no node id: {r:?}") };
    (key, *id)
}

fn status_of(net: &Net, key: &PublicKey) -> NodeStatus {
    net.ledger.node_member_by_key(key).unwrap().expect("a node").status
}

/// Refused with nothing changed: the members, and the state digest's view of them, as before.
fn refused(net: &mut Net, t: SignedTransaction) -> Refusal {
    let before = (net.ledger.node_members().unwrap(), net.snapshot());
    let r = net.one(t);
    assert_eq!((net.ledger.node_members().unwrap(), net.snapshot()), before, "{r:?}");
    refusal(&r).clone()
}

fn refused_by_regulator(net: &mut Net, body: TxBody) -> Refusal {
    let t = net.regulator.sign_body(body);
    refused(net, t)
}

#[test]
fn the_genesis_node_is_member_one_and_admitted_nodes_are_numbered_from_two() {
    let (mut net, hospital, _) = consortium();
    let genesis_key = net.ledger.genesis().node_key;
    let genesis_node = NodeEntry {
        id: 1,
        node_key: genesis_key,
        address: String::new(),
        hospital: None,
        status: NodeStatus::Active,
        admitted_at: 0,
    };
    assert_eq!(net.ledger.node_members().unwrap(), vec![genesis_node.clone()]);
    assert_eq!(net.ledger.node_member(1).unwrap(), Some(genesis_node.clone()));
    assert_eq!(net.ledger.node_member_by_key(&genesis_key).unwrap(), Some(genesis_node.clone()));
    assert_eq!(net.ledger.node_member(2).unwrap(), None);

    let (k2, id2) = admit(&mut net, &hospital);
    let height = net.ledger.tip().height;
    let (k3, id3) = admit(&mut net, &hospital);
    assert_eq!((id2, id3), (2, 3));
    let node2 = NodeEntry {
        id: 2,
        node_key: k2,
        address: ADDRESS.into(),
        hospital: Some(hospital.account),
        status: NodeStatus::Active,
        admitted_at: height,
    };
    assert_eq!(net.ledger.node_member(2).unwrap(), Some(node2.clone()));
    assert_eq!(net.ledger.node_member_by_key(&k2).unwrap(), Some(node2.clone()));
    let ids: Vec<u64> = net.ledger.node_members().unwrap().iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(net.ledger.node_member_by_key(&k3).unwrap().unwrap().id, 3);
    assert_eq!(net.ledger.node_member_by_key(&fresh_key()).unwrap(), None);
}

#[test]
fn suspend_reinstate_and_remove_change_the_status_and_ids_are_never_reused() {
    let (mut net, hospital, _) = consortium();
    let (k2, _) = admit(&mut net, &hospital);
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Suspend { node_key: k2 })));
    assert_eq!(status_of(&net, &k2), NodeStatus::Suspended);
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Reinstate { node_key: k2 })));
    assert_eq!(status_of(&net, &k2), NodeStatus::Active);
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Remove { node_key: k2 })));
    assert_eq!(status_of(&net, &k2), NodeStatus::Removed);
    // A removed node keeps its row and its id; the next admission gets a new id.
    assert_eq!(net.ledger.node_members().unwrap().len(), 2);
    let (_, id) = admit(&mut net, &hospital);
    assert_eq!(id, 3);

    // A suspended node may be removed too.
    let (k4, _) = admit(&mut net, &hospital);
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Suspend { node_key: k4 })));
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Remove { node_key: k4 })));
    assert_eq!(status_of(&net, &k4), NodeStatus::Removed);
}

#[test]
fn the_genesis_node_can_be_suspended_and_removed_once_another_node_is_active() {
    let (mut net, hospital, _) = consortium();
    let genesis_key = net.ledger.genesis().node_key;
    let (k2, _) = admit(&mut net, &hospital);
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Suspend { node_key: genesis_key })));
    let g = net.ledger.node_member(1).unwrap().unwrap();
    assert_eq!((g.status, g.node_key, g.admitted_at), (NodeStatus::Suspended, genesis_key, 0));
    assert_eq!(status_of(&net, &genesis_key), NodeStatus::Suspended);
    // The stored override keeps the genesis node first and counts it once.
    let ids: Vec<u64> = net.ledger.node_members().unwrap().iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![1, 2]);
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Reinstate { node_key: genesis_key })));
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Remove { node_key: genesis_key })));
    assert_eq!(status_of(&net, &genesis_key), NodeStatus::Removed);
    // Its override row did not move the counter: the next node is 3.
    let (_, id) = admit(&mut net, &hospital);
    assert_eq!(id, 3);
    // Node 2 is now the only active one besides 3.
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Remove { node_key: k2 })));
}

#[test]
fn only_the_regulator_admits_suspends_reinstates_or_removes_a_node() {
    let (mut net, mut hospital, mut doctor) = consortium();
    let (k2, _) = admit(&mut net, &hospital);
    // A hospital admitting its own node, and a doctor trying it.
    let t = hospital.sign_body(admit_body(fresh_key(), ADDRESS, &hospital));
    assert!(
        matches!(refused(&mut net, t), Refusal::Unauthorised { reason } if reason.contains("admit a node"))
    );
    let t = doctor.sign_body(admit_body(fresh_key(), ADDRESS, &hospital));
    assert!(matches!(refused(&mut net, t), Refusal::Unauthorised { .. }));
    // A hospital suspending, reinstating or removing a node (its own or the genesis node).
    let genesis_key = net.ledger.genesis().node_key;
    for body in [
        NodeTx::Suspend { node_key: genesis_key },
        NodeTx::Remove { node_key: genesis_key },
        NodeTx::Remove { node_key: k2 },
    ] {
        let t = hospital.sign_body(TxBody::Nodes(body));
        assert!(matches!(refused(&mut net, t), Refusal::Unauthorised { .. }));
    }
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Suspend { node_key: k2 })));
    let t = hospital.sign_body(TxBody::Nodes(NodeTx::Reinstate { node_key: k2 }));
    assert!(matches!(refused(&mut net, t), Refusal::Unauthorised { .. }));
    assert_eq!(status_of(&net, &k2), NodeStatus::Suspended);
}

#[test]
fn a_node_is_admitted_only_for_a_hospital_in_good_standing() {
    let (mut net, mut hospital, doctor) = consortium();
    // Unknown account.
    let stranger = Actor::new();
    let r = refused_by_regulator(&mut net, admit_body(fresh_key(), ADDRESS, &stranger));
    assert!(matches!(&r, Refusal::NotFound { what } if what.contains("hospital")), "{r:?}");
    // Not a hospital: a doctor, and the regulator itself.
    let r = refused_by_regulator(&mut net, admit_body(fresh_key(), ADDRESS, &doctor));
    assert!(
        matches!(&r, Refusal::Invalid { reason } if reason.contains("not a hospital")),
        "{r:?}"
    );
    let regulator_account = Actor {
        key: SigningKey::generate(),
        enc: DecryptionKey::generate(),
        account: net.regulator.account,
        nonce: 0,
    };
    let r = refused_by_regulator(&mut net, admit_body(fresh_key(), ADDRESS, &regulator_account));
    assert!(
        matches!(&r, Refusal::Invalid { reason } if reason.contains("not a hospital")),
        "{r:?}"
    );
    // A suspended hospital.
    let suspend = TxBody::Registry(RegistryTx::SuspendHospital {
        hospital: hospital.account,
        reason: "audit".into(),
    });
    applied(&by_regulator(&mut net, suspend));
    let r = refused_by_regulator(&mut net, admit_body(fresh_key(), ADDRESS, &hospital));
    assert_eq!(r, Refusal::Suspended { account: hospital.account });
    // A hospital whose key was revoked.
    let reinstate = TxBody::Registry(RegistryTx::ReinstateHospital { hospital: hospital.account });
    applied(&by_regulator(&mut net, reinstate));
    let t = hospital.sign(RegistryTx::RevokeKey { account: hospital.account, replacement: None });
    applied(&net.one(t));
    let r = refused_by_regulator(&mut net, admit_body(fresh_key(), ADDRESS, &hospital));
    assert!(matches!(&r, Refusal::Invalid { reason } if reason.contains("revoked")), "{r:?}");
}

#[test]
fn a_node_key_is_admitted_once_whatever_became_of_it() {
    let (mut net, hospital, _) = consortium();
    // The genesis node's key.
    let genesis_key = net.ledger.genesis().node_key;
    let r = refused_by_regulator(&mut net, admit_body(genesis_key, ADDRESS, &hospital));
    assert!(matches!(&r, Refusal::AlreadyExists { what } if what.contains("node 1")), "{r:?}");
    // An active node's key, a suspended one's, a removed one's.
    let (k2, _) = admit(&mut net, &hospital);
    let r = refused_by_regulator(&mut net, admit_body(k2, "http://127.0.0.3:7302", &hospital));
    assert!(matches!(&r, Refusal::AlreadyExists { what } if what.contains("active")), "{r:?}");
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Suspend { node_key: k2 })));
    let r = refused_by_regulator(&mut net, admit_body(k2, ADDRESS, &hospital));
    assert!(matches!(&r, Refusal::AlreadyExists { what } if what.contains("suspended")), "{r:?}");
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Remove { node_key: k2 })));
    let r = refused_by_regulator(&mut net, admit_body(k2, ADDRESS, &hospital));
    assert!(matches!(&r, Refusal::AlreadyExists { what } if what.contains("removed")), "{r:?}");
}

#[test]
fn the_genesis_key_is_refused_after_its_status_was_stored_too() {
    let (mut net, hospital, _) = consortium();
    let genesis_key = net.ledger.genesis().node_key;
    admit(&mut net, &hospital);
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Remove { node_key: genesis_key })));
    let r = refused_by_regulator(&mut net, admit_body(genesis_key, ADDRESS, &hospital));
    assert!(matches!(&r, Refusal::AlreadyExists { what } if what.contains("removed")), "{r:?}");
}

#[test]
fn a_node_key_that_is_not_an_ed25519_key_is_refused() {
    let (mut net, hospital, _) = consortium();
    let not_a_point = (0u8..=255)
        .map(|b| PublicKey([b; 32]))
        .find(|k| !k.is_point())
        .expect("some byte pattern is not a point");
    let r = refused_by_regulator(&mut net, admit_body(not_a_point, ADDRESS, &hospital));
    assert!(
        matches!(&r, Refusal::Invalid { reason } if reason.contains("not an Ed25519")),
        "{r:?}"
    );
    // The identity (y = 1) and a point of order 4 (y = 0): points, but of small order.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for weak in [PublicKey(identity), PublicKey([0; 32])] {
        assert!(weak.is_point());
        let r = refused_by_regulator(&mut net, admit_body(weak, ADDRESS, &hospital));
        assert!(
            matches!(&r, Refusal::Invalid { reason } if reason.contains("small order")),
            "{weak}: {r:?}"
        );
    }
}

#[test]
fn one_address_is_one_member_until_it_is_removed() {
    let (mut net, hospital, _) = consortium();
    let (k2, _) = admit(&mut net, &hospital);
    let upper = ADDRESS.to_uppercase().replace("HTTP://", "http://");
    for address in [ADDRESS, upper.as_str()] {
        let r = refused_by_regulator(&mut net, admit_body(fresh_key(), address, &hospital));
        assert!(matches!(&r, Refusal::AlreadyExists { what } if what.contains("node 2")), "{r:?}");
    }
    // Suspended, it still holds its address; removed, the address is free for a new key.
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Suspend { node_key: k2 })));
    let r = refused_by_regulator(&mut net, admit_body(fresh_key(), ADDRESS, &hospital));
    assert!(matches!(&r, Refusal::AlreadyExists { what } if what.contains("suspended")), "{r:?}");
    applied(&by_regulator(&mut net, TxBody::Nodes(NodeTx::Remove { node_key: k2 })));
    let (_, id) = admit(&mut net, &hospital);
    assert_eq!(id, 3);
}

#[test]
fn a_malformed_address_is_refused() {
    let (mut net, hospital, _) = consortium();
    let too_long = format!("http://{}.example:7301", "a".repeat(200));
    for (bad, says) in [
        ("ftp://127.0.0.2:7301", "http"),
        ("127.0.0.2:7301", "http"),
        ("http://127.0.0.2", "port"),
        ("http://127.0.0.2:7301/raft", "path"),
        ("http://127.0.0.2:7301/", "path"),
        ("http://127.0.0.2:7301?q", "path"),
        ("http://admin:pw@127.0.0.2:7301", "user"),
        (too_long.as_str(), "more than 200"),
        ("http://127.0.0.2:7301\u{1b}[2J", "control"),
        ("", "http"),
    ] {
        let r = refused_by_regulator(&mut net, admit_body(fresh_key(), bad, &hospital));
        assert!(
            matches!(&r, Refusal::Invalid { reason } if reason.contains("node address") && reason.contains(says)),
            "{bad:?}: {r:?}"
        );
    }
}

#[test]
fn status_changes_follow_the_lifecycle() {
    let (mut net, hospital, _) = consortium();
    let (k2, _) = admit(&mut net, &hospital);
    let nodes = |t| TxBody::Nodes(t);
    // Reinstating an active node.
    let r = refused_by_regulator(&mut net, nodes(NodeTx::Reinstate { node_key: k2 }));
    assert!(matches!(&r, Refusal::Invalid { reason } if reason.contains("not suspended")), "{r:?}");
    // Suspending a suspended node.
    applied(&by_regulator(&mut net, nodes(NodeTx::Suspend { node_key: k2 })));
    let r = refused_by_regulator(&mut net, nodes(NodeTx::Suspend { node_key: k2 }));
    assert!(matches!(&r, Refusal::Invalid { reason } if reason.contains("not active")), "{r:?}");
    // A removed node: no suspension, no reinstatement, no second removal.
    applied(&by_regulator(&mut net, nodes(NodeTx::Remove { node_key: k2 })));
    for body in [
        NodeTx::Suspend { node_key: k2 },
        NodeTx::Reinstate { node_key: k2 },
        NodeTx::Remove { node_key: k2 },
    ] {
        let r = refused_by_regulator(&mut net, nodes(body));
        assert!(matches!(&r, Refusal::Invalid { reason } if reason.contains("removed")), "{r:?}");
    }
}

#[test]
fn an_unknown_node_key_is_refused() {
    let (mut net, _, _) = consortium();
    let unknown = fresh_key();
    for body in [
        NodeTx::Suspend { node_key: unknown },
        NodeTx::Reinstate { node_key: unknown },
        NodeTx::Remove { node_key: unknown },
    ] {
        let r = refused_by_regulator(&mut net, TxBody::Nodes(body));
        assert!(
            matches!(&r, Refusal::NotFound { what } if what.contains(&unknown.to_string())),
            "{r:?}"
        );
    }
}

#[test]
fn the_last_active_node_is_neither_suspended_nor_removed() {
    let (mut net, hospital, _) = consortium();
    let genesis_key = net.ledger.genesis().node_key;
    let nodes = |t| TxBody::Nodes(t);
    // Alone, the genesis node can be neither suspended nor removed.
    for body in
        [NodeTx::Suspend { node_key: genesis_key }, NodeTx::Remove { node_key: genesis_key }]
    {
        let r = refused_by_regulator(&mut net, nodes(body));
        assert!(
            matches!(&r, Refusal::Invalid { reason } if reason.contains("last active")),
            "{r:?}"
        );
    }
    // With a second node, the genesis node goes; then the second is the last.
    let (k2, _) = admit(&mut net, &hospital);
    let (k3, _) = admit(&mut net, &hospital);
    applied(&by_regulator(&mut net, nodes(NodeTx::Suspend { node_key: k3 })));
    applied(&by_regulator(&mut net, nodes(NodeTx::Remove { node_key: genesis_key })));
    for body in [NodeTx::Suspend { node_key: k2 }, NodeTx::Remove { node_key: k2 }] {
        let r = refused_by_regulator(&mut net, nodes(body));
        assert!(
            matches!(&r, Refusal::Invalid { reason } if reason.contains("last active")),
            "{r:?}"
        );
    }
    // A suspended node does not count as a member left: reinstated, it does.
    applied(&by_regulator(&mut net, nodes(NodeTx::Reinstate { node_key: k3 })));
    applied(&by_regulator(&mut net, nodes(NodeTx::Remove { node_key: k2 })));
    assert_eq!(status_of(&net, &k3), NodeStatus::Active);
}

#[test]
fn node_transactions_in_one_block_see_each_other() {
    // Two admissions of one key in one block: the second is refused by the first's row.
    let (mut net, hospital, _) = consortium();
    let key = fresh_key();
    let a = net.regulator.sign_body(admit_body(key, ADDRESS, &hospital));
    let b = net.regulator.sign_body(admit_body(key, "http://127.0.0.3:7302", &hospital));
    let receipts = net.block(vec![a, b]);
    assert_eq!(applied(&receipts[0]), Some(&Created::Node { id: 2 }));
    assert!(matches!(refusal(&receipts[1]), Refusal::AlreadyExists { .. }));
    assert_eq!(net.ledger.node_member(2).unwrap().unwrap().address, ADDRESS);
}

#[test]
fn a_ledger_written_before_node_membership_opens_and_takes_node_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let mut net = Net::with(|g| Ledger::create(&path, g).unwrap());
    let hospital = Actor::new();
    applied(&net.admit(&hospital));
    // Close the file, then take the node tables away, as a ledger of an earlier version lacks
    // them.
    let genesis = net.ledger.genesis().clone();
    net.ledger = Ledger::in_memory(genesis).unwrap();
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(redb::TableDefinition::<u64, &[u8]>::new("nodes")).unwrap());
        assert!(
            txn.delete_table(redb::TableDefinition::<&[u8; 32], u64>::new("nodes_by_key")).unwrap()
        );
        assert!(txn.delete_table(redb::TableDefinition::<&str, u64>::new("node_ids")).unwrap());
        txn.commit().unwrap();
    }
    net.ledger = Ledger::open(&path).unwrap();
    let ids: Vec<u64> = net.ledger.node_members().unwrap().iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![1]);
    let (key, id) = admit(&mut net, &hospital);
    assert_eq!(id, 2);
    let genesis = net.ledger.genesis().clone();
    net.ledger = Ledger::in_memory(genesis).unwrap();
    let reopened = Ledger::open(&path).unwrap();
    assert_eq!(reopened.node_member_by_key(&key).unwrap().unwrap().id, 2);
}

#[test]
fn a_nodes_admission_is_the_regulators_transaction_that_created_it() {
    let (mut net, hospital, _) = consortium();
    // The genesis node has no admitting transaction; an unknown id has none either.
    assert!(net.ledger.node_admission(1).unwrap().is_none());
    assert!(net.ledger.node_admission(9).unwrap().is_none());
    // A refused admission (a duplicate key) in a later block is never offered as one.
    let (key, id) = admit(&mut net, &hospital);
    refused_by_regulator(&mut net, admit_body(key, "http://127.0.0.3:7301", &hospital));
    let (other, other_id) = admit(&mut net, &hospital);
    for (key, id) in [(key, id), (other, other_id)] {
        let record = net.ledger.node_admission(id).unwrap().expect("an admission");
        let TxBody::Nodes(NodeTx::Admit { node_key, .. }) = &record.tx.tx.body else {
            panic!("not an admission: {record:?}")
        };
        assert_eq!(*node_key, key);
        assert_eq!(record.tx.tx.signer, net.ledger.genesis().regulator());
        assert_eq!(applied(&record.receipt), Some(&Created::Node { id }));
    }
}
