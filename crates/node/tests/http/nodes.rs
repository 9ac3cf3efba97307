//! The network's nodes: public and unsigned (consortium infrastructure, not patient data); the
//! genesis node is node 1; a node the regulator admits is listed with the next id; an unknown
//! id is a typed 404; a node admission signed by anyone else is refused.

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
            address: "http://127.0.0.2:7301".into(),
            hospital: world.hospital.account,
        }));
        let receipts = all_applied(&world.regulator.client, &[admit]).await;
        assert_eq!(created(&receipts[0]), &Created::Node { id: 2 });
        let (status, node) = world.node.raw("GET", "/v1/nodes/2", &[], Vec::new()).await;
        assert_eq!(status, 200, "{node}");
        assert_eq!(node["node_key"], key.to_string(), "{node}");
        assert_eq!(node["address"], "http://127.0.0.2:7301", "{node}");
        assert_eq!(node["hospital"], world.hospital.account.to_string(), "{node}");
        assert_eq!(node["status"], "active", "{node}");
        assert_eq!(node["admitted_at"], receipts[0].height, "{node}");
        let (_, list) = world.node.raw("GET", "/v1/nodes", &[], Vec::new()).await;
        let ids: Vec<u64> =
            list.as_array().unwrap().iter().map(|n| n["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, vec![1, 2], "{list}");

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
            address: "http://127.0.0.2:7301".into(),
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
