//! Emergency access: the profile's public part and its key proof are for the patient,
//! delegates, custodians and active doctors; an escrow piece for its custodian; a break-glass
//! for those it concerns; a hospital's open reviews for that hospital.

use medledger_core::tx::{
    EmergencyTx, TxBody,
    emergency::{MIN_SEALED_REASON_BYTES, ReasonCode},
};

use crate::{World, created, names, run};

#[test]
fn the_profile_is_for_the_patient_and_active_doctors_only() {
    run(async {
        let world = World::build().await;
        let p = world.patient.account;
        for path in [format!("/v1/emergency/{p}"), format!("/v1/emergency/{p}/key-proof")] {
            for who in [&world.patient, &world.doctor, &world.stranger_doctor] {
                let (status, body) = world.node.get(who, &path).await;
                assert_eq!(status, 200, "{path} for {}: {body}", who.account);
            }
            for who in [&world.stranger_patient, &world.hospital, &world.device] {
                let (status, body) = world.node.get(who, &path).await;
                assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
            }
        }
        // A patient with no profile: those who would see one are told there is none; anyone
        // else is refused as above, not told whether there is one.
        let none = world.stranger_patient.account;
        for path in [format!("/v1/emergency/{none}"), format!("/v1/emergency/{none}/key-proof")] {
            for who in [&world.stranger_patient, &world.doctor, &world.stranger_doctor] {
                let (status, body) = world.node.get(who, &path).await;
                assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
            }
            for who in [&world.patient, &world.hospital, &world.device] {
                let (status, body) = world.node.get(who, &path).await;
                assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
            }
        }
        // No custodian: nobody holds an escrow piece; asked of a patient with no profile, the
        // same answer.
        for of in [p, none] {
            let escrow = format!("/v1/emergency/{of}/escrow");
            for who in [&world.patient, &world.hospital] {
                let (status, body) = world.node.get(who, &escrow).await;
                assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
                let said = body["message"].as_str().unwrap();
                assert_eq!(said, format!("{} holds no escrow piece of {of}", who.account));
            }
        }
        // The audited read of the sealed profile: a doctor's alone; anyone else is refused
        // the same way whether or not the patient has a profile, and nothing is ordered.
        let mut world = world;
        for of in [p, none] {
            let read =
                world.hospital.tx(TxBody::Emergency(EmergencyTx::ReadProfile { patient: of }));
            let (status, body) =
                world.node.post_tx(&format!("/v1/emergency/{of}/read"), &read).await;
            assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
            let (status, _) =
                world.node.get(&world.hospital, &format!("/v1/transactions/{}", read.hash())).await;
            assert_eq!(status, 404, "a refused read was ordered");
        }
        world.node.stop().await;
    });
}

#[test]
fn a_break_glass_is_for_those_it_concerns_and_its_review_for_the_hospital() {
    run(async {
        let mut world = World::build().await;
        let declare = world.doctor.tx(TxBody::Emergency(EmergencyTx::BreakGlass {
            patient: world.patient.account,
            code: ReasonCode::Unconscious,
            reason: vec![7; MIN_SEALED_REASON_BYTES],
        }));
        let receipt = world.doctor.client.submit(&declare).await.unwrap();
        let medledger_core::block::Created::BreakGlass { id, .. } = created(&receipt) else {
            panic!("no break-glass: {receipt:?}");
        };
        let path = format!("/v1/emergency/break-glass/{id}");
        for who in [&world.doctor, &world.hospital, &world.patient, &world.regulator] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!(status, 200, "{path} for {}: {body}", who.account);
        }
        for who in [&world.stranger_doctor, &world.grantee, &world.other_hospital] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
        }
        let (status, body) = world.node.get(&world.hospital, "/v1/emergency/reviews").await;
        assert!(status == 200 && names(&body, &id.to_string()), "{body}");
        let (status, body) = world.node.get(&world.other_hospital, "/v1/emergency/reviews").await;
        assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(0)), "{body}");
        world.node.stop().await;
    });
}
