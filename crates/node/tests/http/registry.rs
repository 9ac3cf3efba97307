//! The directory, accounts, patients, transactions, checkpoints and registration blobs: the
//! directory is for any registered signer; an account's nonce only to itself and a patient's
//! Patient-ID only to those who may look the patient up; a patient's registration and a
//! transaction only to those they concern (anyone else gets the answer of one that does not
//! exist); a blob by hash only when the ledger names it as registration details.

use crate::{World, names, run};

#[test]
fn the_directory_checkpoint_and_proofs_answer_any_registered_signer() {
    run(async {
        let world = World::build().await;
        for path in [
            "/v1/hospitals",
            "/v1/organisations",
            "/v1/doctors",
            "/v1/checkpoint",
            "/v1/consistency?old=1&new=2",
        ] {
            for who in [&world.stranger_patient, &world.doctor] {
                let (status, body) = world.node.get(who, path).await;
                assert_eq!(status, 200, "{path}: {body}");
            }
        }
        let (_, body) = world.node.get(&world.stranger_patient, "/v1/doctors").await;
        assert!(names(&body, &world.doctor.account.to_string()), "{body}");
        world.node.stop().await;
    });
}

#[test]
fn an_accounts_nonce_and_patient_id_go_only_to_whom_they_concern() {
    run(async {
        let world = World::build().await;
        let path = format!("/v1/accounts/{}", world.patient.account);
        let (status, own) = world.node.get(&world.patient, &path).await;
        assert_eq!(status, 200, "{own}");
        assert!(own["nonce"].as_u64().is_some(), "{own}");
        assert_eq!(own["patient_id"].as_u64(), Some(world.patient_id.0), "{own}");
        let (status, theirs) = world.node.get(&world.stranger_patient, &path).await;
        assert_eq!(status, 200, "{theirs}");
        assert!(theirs["nonce"].is_null() && theirs["patient_id"].is_null(), "{theirs}");
        // The patient's hospital may look the patient up.
        let (_, body) = world.node.get(&world.hospital, &path).await;
        assert_eq!(body["patient_id"].as_u64(), Some(world.patient_id.0), "{body}");
        // The encryption key, with its proof, is for any registered signer; the Patient-ID
        // its registration's receipt assigned only for those who may look the patient up.
        let key = format!("{path}/encryption-key");
        let created = |body: &serde_json::Value| body["registration"]["receipt"]["outcome"].clone();
        let (status, theirs) = world.node.get(&world.stranger_patient, &key).await;
        assert_eq!(status, 200, "{theirs}");
        let account = world.patient.account.to_string();
        assert_eq!(
            created(&theirs),
            serde_json::json!({"applied": {"created": {"account": {"account": account}}}}),
            "{theirs}"
        );
        assert!(!theirs.to_string().contains(&world.patient_id.0.to_string()), "{theirs}");
        for who in [&world.patient, &world.hospital] {
            let (status, body) = world.node.get(who, &key).await;
            assert_eq!(status, 200, "{body}");
            let assigned = &created(&body)["applied"]["created"]["patient"]["patient_id"];
            assert_eq!(assigned.as_u64(), Some(world.patient_id.0), "{body}");
        }
        // The stranger's wallet still proves the key from what it was given.
        let proof: medledger_api::AccountKeyProof = serde_json::from_value(theirs).unwrap();
        assert_eq!(proof.account, world.patient.account);
        world.node.stop().await;
    });
}

#[test]
fn a_patients_registration_is_missing_to_strangers() {
    run(async {
        let world = World::build().await;
        let path = format!("/v1/patients/{}", world.patient_id);
        for who in [&world.patient, &world.hospital, &world.doctor] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!(status, 200, "{path} for {}: {body}", who.account);
        }
        for who in [&world.stranger_doctor, &world.stranger_patient, &world.other_hospital] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
        }
        world.node.stop().await;
    });
}

#[test]
fn a_transaction_is_missing_to_those_it_does_not_concern() {
    run(async {
        let world = World::build().await;
        let path = format!("/v1/transactions/{}", world.mint_tx);
        for who in [&world.doctor, &world.patient, &world.regulator] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!(status, 200, "{path} for {}: {body}", who.account);
        }
        for who in [&world.stranger_doctor, &world.stranger_patient] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
        }
        world.node.stop().await;
    });
}

#[test]
fn blobs_by_hash_serve_only_registration_details() {
    run(async {
        let world = World::build().await;
        // The device's sealed details are registration details: any registered signer.
        let (status, device) =
            world.node.get(&world.patient, &format!("/v1/devices/{}", world.device.account)).await;
        assert_eq!(status, 200, "{device}");
        let details = device["details"]["blob"].as_str().unwrap().to_owned();
        let (status, _) =
            world.node.get(&world.stranger_patient, &format!("/v1/blobs/{details}")).await;
        assert_eq!(status, 200);
        // A record's ciphertext is in the vault too, but leaves it only by the audited read.
        let (status, record) =
            world.node.get(&world.patient, &format!("/v1/records/{}", world.pmr)).await;
        assert_eq!(status, 200, "{record}");
        let content = record["content"].as_str().unwrap().to_owned();
        for who in [&world.patient, &world.doctor] {
            let (status, body) = world.node.get(who, &format!("/v1/blobs/{content}")).await;
            assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
        }
        world.node.stop().await;
    });
}

#[test]
fn only_those_who_register_people_store_sealed_details() {
    run(async {
        let world = World::build().await;
        let body = b"sealed details".to_vec();
        for (who, expected) in [(&world.hospital, 200), (&world.patient, 200), (&world.device, 403)]
        {
            let auth = who.auth("PUT", "/v1/blobs", &body, crate::now_ms());
            let (status, answer) = world
                .node
                .raw(
                    "PUT",
                    "/v1/blobs",
                    &[(medledger_core::request::HEADER, auth.to_header())],
                    body.clone(),
                )
                .await;
            assert_eq!(status, expected, "{answer}");
        }
        world.node.stop().await;
    });
}
