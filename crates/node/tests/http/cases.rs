//! Cases: who may see that a case exists (the patient, its opener and authors and their
//! hospitals, a grantee), who gets their own wrapped case key, and who the audited read
//! serves; a stranger gets the answer of a case that does not exist.

use crate::{World, names, run};

#[test]
fn a_case_is_visible_to_its_patient_opener_hospital_and_grantee_and_missing_to_strangers() {
    run(async {
        let world = World::build().await;
        let n = &world.node;
        let path = format!("/v1/cases/{}", world.case);
        for who in [&world.patient, &world.doctor, &world.hospital, &world.grantee] {
            let (status, body) = n.get(who, &path).await;
            assert_eq!(status, 200, "{path} for {}: {body}", who.account);
            assert!(names(&body, &world.case), "{body}");
        }
        for who in [&world.stranger_doctor, &world.stranger_patient, &world.other_hospital] {
            let (status, body) = n.get(who, &path).await;
            assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
        }
        let list = format!("/v1/cases?patient={}", world.patient.account);
        for who in [&world.patient, &world.doctor, &world.grantee] {
            let (status, body) = n.get(who, &list).await;
            assert!(status == 200 && names(&body, &world.case), "{list}: {body}");
        }
        let (status, body) = n.get(&world.stranger_doctor, &list).await;
        assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(0)), "{body}");
        world.node.stop().await;
    });
}

#[test]
fn a_cases_wrapped_key_goes_only_to_its_recipients() {
    run(async {
        let world = World::build().await;
        let path = format!("/v1/cases/{}/key", world.case);
        for who in [&world.patient, &world.doctor] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!(status, 200, "{body}");
            let wrapped = hex::decode(body["wrapped_hex"].as_str().unwrap()).unwrap();
            assert_eq!(wrapped, format!("case key for {}", who.account).into_bytes());
        }
        // The grantee may see the case but holds no key of it; a stranger may not see it.
        for who in [&world.grantee, &world.stranger_doctor] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
        }
        world.node.stop().await;
    });
}

#[test]
fn the_audited_case_read_serves_the_patient_and_grantee_and_denies_a_stranger() {
    run(async {
        let mut world = World::build().await;
        let path = format!("/v1/cases/{}/read", world.case);
        let resource = world.case_resource();
        for who in [&mut world.patient, &mut world.doctor, &mut world.grantee] {
            let access = who.access(resource.clone());
            let (status, _) = world.node.post_tx(&path, &access).await;
            assert_eq!(status, 200, "the read of {}", who.account);
        }
        let access = world.stranger_doctor.access(resource);
        let (status, body) = world.node.post_tx(&path, &access).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("denied")), "{body}");
        // Every case read, allowed or denied, is in the patient's trail.
        let trail = format!("/v1/audit/{}", world.patient.account);
        let (status, body) = world.node.get(&world.patient, &trail).await;
        assert_eq!(status, 200, "{body}");
        for who in [&world.grantee, &world.stranger_doctor] {
            assert!(names(&body, &who.account.to_string()), "{body}");
        }
        world.node.stop().await;
    });
}
