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

/// An audited read's body that is never submitted must not tell which cases, records or
/// device sessions exist, or whose they are (the review of 2026-12-02): the body's shape is
/// checked before the thing is looked up (400 alike whether it exists), and a case or session
/// named with another patient is answered as a missing one (404 alike, charged to the
/// reader's denial allowance, which runs out).
#[test]
fn an_unsubmitted_read_tells_nothing_of_what_exists_or_whose_it_is() {
    run(async {
        let mut world = World::build().await;
        let stranger = world.stranger_patient.account;
        let wrong_patient = |mut r: medledger_core::tx::consent::Resource| {
            r.patient = stranger;
            r
        };
        let targets = [
            (
                format!("/v1/cases/{}/read", world.case),
                "/v1/cases/C99999-9/read".to_owned(),
                world.case_resource(),
            ),
            (
                format!("/v1/device-sessions/{}/read", world.session),
                format!("/v1/device-sessions/{}/read", medledger_core::Hash([7; 32])),
                world.device_resource(),
            ),
        ];
        for (real, missing, resource) in targets {
            // Another shape (naming the world's record): 400 alike, naming no patient.
            let mut answers = Vec::new();
            for path in [&real, &missing] {
                let access = world.stranger_doctor.access(world.record_resource());
                let (status, body) = world.node.post_tx(path, &access).await;
                assert_eq!(status, 400, "{path}: {body}");
                assert!(!body.to_string().contains(&world.patient.account.to_string()), "{body}");
                answers.push(body["code"].clone());
            }
            assert_eq!(answers[0], answers[1]);
            // Named with another patient: 404 as for one that does not exist.
            let access = world.stranger_doctor.access(wrong_patient(resource.clone()));
            let (status, exists) = world.node.post_tx(&real, &access).await;
            // (The missing case is named as itself.)
            let mut absent_resource = wrong_patient(resource.clone());
            if absent_resource.case.is_some() {
                absent_resource.case = Some("C99999-9".into());
            }
            let access = world.stranger_doctor.access(absent_resource);
            let (status_missing, absent) = world.node.post_tx(&missing, &access).await;
            assert_eq!((status, status_missing), (404, 404), "{exists} {absent}");
            assert_eq!(exists["code"], absent["code"]);
            assert!(!exists.to_string().contains(&world.patient.account.to_string()), "{exists}");
        }
        // A record: a body of another shape (naming a case beside it, or no category) is 400
        // alike for a record that exists and one that does not; named with the reader itself
        // as the patient (which would make it the reader's own) it is refused the same way.
        let (real, missing) = (
            format!("/v1/records/{}/read", world.pmr),
            "/v1/records/9999901012020/read".to_owned(),
        );
        for path in [&real, &missing] {
            let pmr = path.trim_start_matches("/v1/records/").trim_end_matches("/read").to_owned();
            let mut with_case = world.record_resource();
            with_case.record = Some(pmr.clone());
            with_case.case = Some(world.case.clone());
            let mut no_category = world.record_resource();
            no_category.record = Some(pmr.clone());
            no_category.category = None;
            let mut own = with_case.clone();
            own.patient = world.stranger_doctor.account;
            for resource in [with_case, no_category, own] {
                let access = world.stranger_doctor.access(resource);
                let (status, body) = world.node.post_tx(path, &access).await;
                assert_eq!((status, body["code"].as_str()), (400, Some("malformed")), "{body}");
            }
        }
        // An erased record, named as it is by a reader who may not read it: the 404 of a
        // missing one; its patient is still told it was erased.
        let erase = world.patient.tx(medledger_core::tx::TxBody::Records(
            medledger_core::tx::RecordTx::Erase { record: world.pmr.clone() },
        ));
        world.patient.client.submit(&erase).await.unwrap();
        let access = world.stranger_doctor.access(world.record_resource());
        let (status, body) = world.node.post_tx(&real, &access).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
        let access = world.patient.access(world.record_resource());
        let (status, body) = world.node.post_tx(&real, &access).await;
        assert_eq!((status, body["code"].as_str()), (410, Some("erased")), "{body}");

        // Each such probe is charged as a denial: the allowance runs out.
        let path = format!("/v1/cases/{}/read", world.case);
        let mut refused = None;
        for _ in 0..30 {
            let access = world.stranger_doctor.access(wrong_patient(world.case_resource()));
            let (status, body) = world.node.post_tx(&path, &access).await;
            if status == 429 {
                refused = Some(body);
                break;
            }
            assert_eq!(status, 404, "{body}");
        }
        let refused = refused.expect("probes of a real case with a false patient are not charged");
        assert_eq!(refused["code"].as_str(), Some("too_many_denials"), "{refused}");
        // Then every read is turned away with the one answer, whether what it names exists
        // (named as it is) or not: nothing is looked up.
        let access = world.stranger_doctor.access(world.case_resource());
        let (status, named) = world.node.post_tx(&path, &access).await;
        let mut absent = world.case_resource();
        absent.case = Some("C99999-9".into());
        let access = world.stranger_doctor.access(absent);
        let (status_absent, missing) = world.node.post_tx("/v1/cases/C99999-9/read", &access).await;
        assert_eq!((status, status_absent), (429, 429), "{named} {missing}");
        assert_eq!(named, refused, "the answers differ");
        assert_eq!(missing, refused, "the answers differ");
        world.node.stop().await;
    });
}
