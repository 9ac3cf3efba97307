//! Records: who may see that a token exists (its patient, owner, author and the author's
//! hospital, a delegate, a grantee; a stranger gets the answer of a record that does not
//! exist), who gets their own wrapped key, and who the audited read serves.

use crate::{World, names, run};

#[test]
fn a_record_is_visible_to_its_patient_author_and_grantee_and_missing_to_strangers() {
    run(async {
        let world = World::build().await;
        let n = &world.node;
        let pmr = &world.pmr;
        for path in [format!("/v1/records/{pmr}"), format!("/v1/records/{pmr}/history")] {
            for who in [&world.patient, &world.doctor, &world.hospital, &world.grantee] {
                let (status, body) = n.get(who, &path).await;
                assert_eq!(status, 200, "{path} for {}: {body}", who.account);
                assert!(names(&body, pmr), "{body}");
            }
            for who in [&world.stranger_doctor, &world.stranger_patient, &world.other_hospital] {
                let (status, body) = n.get(who, &path).await;
                assert_eq!(
                    (status, body["code"].as_str()),
                    (404, Some("not_found")),
                    "{path} for a stranger: {body}"
                );
            }
        }
        // A patient's list: the patient and the grantee see the token, a stranger an empty list.
        let list = format!("/v1/records?patient={}", world.patient.account);
        for who in [&world.patient, &world.grantee, &world.doctor] {
            let (status, body) = n.get(who, &list).await;
            assert_eq!(status, 200, "{body}");
            assert!(names(&body, pmr), "{list} for {}: {body}", who.account);
        }
        let (status, body) = n.get(&world.stranger_doctor, &list).await;
        assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(0)), "{body}");
        // An owner's list: the owner only.
        let owned = format!("/v1/records?owner={}", world.patient.account);
        let (status, body) = n.get(&world.patient, &owned).await;
        assert!(status == 200 && names(&body, pmr), "{body}");
        for who in [&world.stranger_doctor, &world.grantee] {
            let (status, body) = n.get(who, &owned).await;
            assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
        }
        world.node.stop().await;
    });
}

#[test]
fn a_records_wrapped_key_goes_only_to_its_recipient() {
    run(async {
        let world = World::build().await;
        let path = format!("/v1/records/{}/key", world.pmr);
        for who in [&world.patient, &world.doctor, &world.grantee] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!(status, 200, "{body}");
            let wrapped = hex::decode(body["wrapped_hex"].as_str().unwrap()).unwrap();
            assert_eq!(wrapped, format!("key for {}", who.account).into_bytes());
        }
        for who in [&world.stranger_doctor, &world.hospital] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
        }
        // Shares: each holder its own; nobody holds any of an unsplit key.
        let shares = format!("/v1/records/{}/shares", world.pmr);
        for who in [&world.patient, &world.stranger_doctor] {
            let (status, body) = world.node.get(who, &shares).await;
            assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(0)), "{body}");
        }
        world.node.stop().await;
    });
}

#[test]
fn the_audited_read_serves_the_patient_and_the_grantee_and_denies_a_stranger() {
    run(async {
        let mut world = World::build().await;
        let path = format!("/v1/records/{}/read", world.pmr);
        let resource = world.record_resource();
        for who in [&mut world.patient, &mut world.grantee] {
            let access = who.access(resource.clone());
            let (status, _) = world.node.post_tx(&path, &access).await;
            assert_eq!(status, 200, "the read of {}", who.account);
        }
        let access = world.stranger_doctor.access(resource);
        let (status, body) = world.node.post_tx(&path, &access).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("denied")), "{body}");
        // The denial is in the patient's trail, with the stranger's name.
        let trail = format!("/v1/audit/{}", world.patient.account);
        let (status, body) = world.node.get(&world.patient, &trail).await;
        assert_eq!(status, 200, "{body}");
        assert!(names(&body, &world.stranger_doctor.account.to_string()), "{body}");
        world.node.stop().await;
    });
}

/// Admission refuses, before anything is ordered, a transaction naming a blob that belongs to
/// another owner, or one blob twice (422 `refused`, the ledger's own refusal): here the
/// treating doctor mints a second record whose content is the first record's ciphertext, and
/// one whose metadata is its content. Nothing reaches the log.
#[test]
fn admission_refuses_a_blob_of_another_owner_or_named_twice_and_orders_nothing() {
    use medledger_core::tx::{
        RecordTx, TxBody,
        consent::RecordCategory,
        records::{KeyRef, MintRecord, VisitDate},
    };
    run(async {
        let mut world = World::build().await;
        let size_before = world.doctor.client.checkpoint().await.unwrap().checkpoint.log_size;
        let (fresh, size) = world.doctor.store(b"another ciphertext").await;
        let (metadata, _) = world.doctor.store(b"another sealed metadata").await;
        let (key, _) = world.doctor.store(b"another wrapped key").await;
        let taken = medledger_core::Hash::of(b"record ciphertext");
        let mint = |content, size, metadata| {
            TxBody::Records(RecordTx::Mint(MintRecord {
                patient: world.patient.account,
                visit_date: VisitDate { year: 2026, month: 1, day: 2 },
                category: RecordCategory::LabReport,
                content,
                size,
                metadata,
                keys: vec![KeyRef { recipient: world.patient.account, blob: key }],
                supersedes: None,
                sharing: None,
            }))
        };
        let taken_size = b"record ciphertext".len() as u64;
        let (another_owners, twice) = (mint(taken, taken_size, metadata), mint(fresh, size, fresh));
        for (body, words) in [(another_owners, "already belongs to"), (twice, "named twice")] {
            let tx = world.doctor.tx(body);
            let (status, answer) = world.node.post_tx("/v1/transactions", &tx).await;
            assert_eq!((status, answer["code"].as_str()), (422, Some("refused")), "{answer}");
            assert!(answer["message"].as_str().unwrap().contains(words), "{answer}");
            world.doctor.nonce -= 1;
        }
        let size_after = world.doctor.client.checkpoint().await.unwrap().checkpoint.log_size;
        assert_eq!(size_after, size_before, "a refused submission was ordered");
        world.node.stop().await;
    });
}

/// A record's history shows each version only to whom may see that version (the review of
/// 2026-12-02): a grantee of the first version alone sees neither the amendment made since,
/// nor its PMR-ID in the version it sees (history, token, listing), nor, asking by the
/// amendment's PMR-ID, anything; the patient sees both, linked.
#[test]
fn a_records_history_shows_only_the_versions_the_reader_may_see() {
    use medledger_core::tx::{
        ConsentTx, RecordTx, TxBody,
        consent::{Purpose, RecordCategory, Scope, Validity},
        records::{KeyRef, MintRecord, VisitDate},
    };
    run(async {
        let mut world = World::build().await;
        let (content, size) = world.doctor.store(b"amended ciphertext").await;
        let (metadata, _) = world.doctor.store(b"amended sealed metadata").await;
        let (key, _) = world.doctor.store(b"amended key for the patient").await;
        let (own, _) = world.doctor.store(b"amended key for the doctor").await;
        let amend = world.doctor.tx(TxBody::Records(RecordTx::Mint(MintRecord {
            patient: world.patient.account,
            visit_date: VisitDate { year: 2026, month: 1, day: 3 },
            category: RecordCategory::LabReport,
            content,
            size,
            metadata,
            keys: vec![
                KeyRef { recipient: world.patient.account, blob: key },
                KeyRef { recipient: world.doctor.account, blob: own },
            ],
            supersedes: Some(world.pmr.clone()),
            sharing: None,
        })));
        let receipt = world.doctor.client.submit(&amend).await.unwrap();
        let medledger_core::block::Outcome::Applied {
            created: Some(medledger_core::block::Created::Record { pmr: amended }),
        } = receipt.outcome
        else {
            panic!("the amendment was not minted: {receipt:?}")
        };
        let grant = world.patient.tx(TxBody::Consent(ConsentTx::Grant {
            patient: world.patient.account,
            grantee: world.stranger_doctor.account,
            scope: Scope::Records(vec![world.pmr.clone()]),
            purpose: Purpose::Treatment,
            validity: Validity { not_before_ms: 0, expires_at_ms: crate::now_ms() + 3_600_000 },
        }));
        world.patient.client.submit(&grant).await.unwrap();
        let path = format!("/v1/records/{}/history", world.pmr);
        let pmrs = |body: &serde_json::Value| -> Vec<String> {
            body.as_array().unwrap().iter().map(|r| r["pmr"].as_str().unwrap().to_owned()).collect()
        };
        let (status, all) = world.node.get(&world.patient, &path).await;
        assert_eq!(status, 200, "{all}");
        assert_eq!(pmrs(&all), [world.pmr.clone(), amended.clone()]);
        assert_eq!(all[0]["superseded_by"].as_str(), Some(amended.as_str()), "{all}");
        let (status, granted) = world.node.get(&world.stranger_doctor, &path).await;
        assert_eq!(status, 200, "{granted}");
        assert_eq!(pmrs(&granted), [world.pmr.clone()], "the amendment is shown");
        // Nor named by the version the grantee sees: not in its history, token or listing.
        assert!(granted[0]["superseded_by"].is_null(), "{granted}");
        let token = format!("/v1/records/{}", world.pmr);
        let listing = format!("/v1/records?patient={}", world.patient.account);
        for path in [token, listing] {
            let (status, body) = world.node.get(&world.stranger_doctor, &path).await;
            assert_eq!(status, 200, "{body}");
            assert!(!body.to_string().contains(&amended), "{path} names the amendment: {body}");
        }
        let (_, own) = world.node.get(&world.patient, &format!("/v1/records/{}", world.pmr)).await;
        assert_eq!(own["superseded_by"].as_str(), Some(amended.as_str()), "{own}");
        let later = format!("/v1/records/{amended}/history");
        let (status, body) = world.node.get(&world.stranger_doctor, &later).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
        world.node.stop().await;
    });
}
