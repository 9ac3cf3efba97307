//! The network's nodes: public and unsigned (consortium infrastructure, not patient data); the
//! genesis node is node 1; a node the regulator admits is listed with the next id; an unknown
//! id is a typed 404; a node admission signed by anyone else is refused; a node's admitting
//! transaction is served proven, and a wallet trusts its key by it.

use medledger_core::{
    block::Created,
    keys::SigningKey,
    tx::{NodeTx, TxBody},
};

use crate::{World, all_applied, created, run};

#[test]
fn nodes_are_listed_unsigned_with_the_genesis_node_first() {
    run(async {
        let mut world = World::build().await;
        let (_, genesis) = world.node.raw("GET", "/v1/genesis", &[], Vec::new()).await;
        let (status, list) = world.node.raw("GET", "/v1/nodes", &[], Vec::new()).await;
        assert_eq!(status, 200, "{list}");
        let expected = serde_json::json!([{
            "id": 1,
            "node_key": genesis["node_key"],
            "address": "",
            "hospital": null,
            "status": "active",
            "admitted_at": 0,
        }]);
        assert_eq!(list, expected);

        let key = SigningKey::generate().public_key();
        let admit = world.regulator.tx(TxBody::Nodes(NodeTx::Admit {
            node_key: key,
            address: "http://127.0.0.1:1".into(),
            hospital: world.hospital.account,
        }));
        let receipts = all_applied(&world.regulator.client, &[admit]).await;
        assert_eq!(created(&receipts[0]), &Created::Node { id: 2 });
        let (status, node) = world.node.raw("GET", "/v1/nodes/2", &[], Vec::new()).await;
        assert_eq!(status, 200, "{node}");
        assert_eq!(node["node_key"], key.to_string(), "{node}");
        assert_eq!(node["address"], "http://127.0.0.1:1", "{node}");
        assert_eq!(node["hospital"], world.hospital.account.to_string(), "{node}");
        assert_eq!(node["status"], "active", "{node}");
        assert_eq!(node["admitted_at"], receipts[0].height, "{node}");
        let (_, list) = world.node.raw("GET", "/v1/nodes", &[], Vec::new()).await;
        let ids: Vec<u64> =
            list.as_array().unwrap().iter().map(|n| n["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, vec![1, 2], "{list}");

        // The SDK reads the same, unsigned; an id never assigned is `None`, not an error.
        let sdk = medledger_client::NodeClient::new(&world.node.base).unwrap();
        let listed = sdk.nodes().await.unwrap();
        assert_eq!(listed.iter().map(|n| n.id).collect::<Vec<_>>(), vec![1, 2]);
        let second = sdk.node(2).await.unwrap().expect("node 2");
        assert_eq!((second.node_key, second.status.as_str()), (key.to_string(), "active"));
        assert_eq!(sdk.node(3).await.unwrap(), None);

        let suspend = world.regulator.tx(TxBody::Nodes(NodeTx::Suspend { node_key: key }));
        all_applied(&world.regulator.client, &[suspend]).await;
        let (_, node) = world.node.raw("GET", "/v1/nodes/2", &[], Vec::new()).await;
        assert_eq!(node["status"], "suspended", "{node}");
        world.node.stop().await;
    });
}

#[test]
fn an_unknown_or_malformed_node_id_is_a_typed_error() {
    run(async {
        let world = World::build().await;
        for (path, status, code) in [
            ("/v1/nodes/2", 404, "not_found"),
            ("/v1/nodes/0", 404, "not_found"),
            ("/v1/nodes/18446744073709551615", 404, "not_found"),
            ("/v1/nodes/abc", 400, "malformed"),
            ("/v1/nodes/-1", 400, "malformed"),
            ("/v1/nodes/2/admission", 404, "not_found"),
            ("/v1/nodes/abc/admission", 400, "malformed"),
        ] {
            let (got, body) = world.node.raw("GET", path, &[], Vec::new()).await;
            assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{path}: {body}");
        }
        world.node.stop().await;
    });
}

#[test]
fn a_hospital_cannot_admit_its_own_node() {
    run(async {
        let mut world = World::build().await;
        let admit = world.hospital.tx(TxBody::Nodes(NodeTx::Admit {
            node_key: SigningKey::generate().public_key(),
            address: "http://127.0.0.1:1".into(),
            hospital: world.hospital.account,
        }));
        let (status, body) = world.node.post_tx("/v1/transactions", &admit).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("refused")), "{body}");
        assert!(body.to_string().contains("only a Regulator may admit a node"), "{body}");
        let (_, list) = world.node.raw("GET", "/v1/nodes", &[], Vec::new()).await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        world.node.stop().await;
    });
}

#[test]
fn a_nodes_admission_is_served_proven_and_the_wallet_trusts_its_key_by_it() {
    run(async {
        let mut world = World::build().await;
        let sdk = medledger_client::NodeClient::new(&world.node.base).unwrap();
        let genesis = sdk.genesis().await.unwrap();
        // The genesis node: no admitting transaction.
        let first = sdk.node_admission(1).await.unwrap().expect("node 1");
        assert!(first.admission.is_none());
        assert_eq!(first.node.node_key, genesis.node_key.to_string());

        let node = SigningKey::generate();
        let admit = world.regulator.tx(TxBody::Nodes(NodeTx::Admit {
            node_key: node.public_key(),
            address: "http://127.0.0.1:1".into(),
            hospital: world.hospital.account,
        }));
        let receipts = all_applied(&world.regulator.client, std::slice::from_ref(&admit)).await;
        let served = sdk.node_admission(2).await.unwrap().expect("node 2");
        let proof = served.admission.as_ref().expect("its admission");
        assert_eq!(proof.receipt, receipts[0]);
        assert_eq!(proof.tx_hex, hex::encode(admit.encode()));
        // Proven under this (genesis) node's checkpoint, so not yet the admitted node's own:
        // a wallet trusts node 2's key only from node 2's own log.
        let anchor = medledger_client::proof::TrustAnchor {
            node_key: genesis.node_key,
            chain_id: genesis.chain_id.clone(),
            genesis: genesis.hash(),
        };
        medledger_client::proof::verify_tx_proof(proof, &genesis.node_key).unwrap();
        let err = medledger_client::checkpoints::verify_node_admission(
            &node.public_key(),
            &served,
            &anchor,
            &genesis,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not of its own"), "{err}");
        assert_eq!(sdk.node_admission(3).await.unwrap().map(|n| n.node.id), None);
        world.node.stop().await;
    });
}
