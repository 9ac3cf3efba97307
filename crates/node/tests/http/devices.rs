//! Devices and measurement sessions: who may see that a device and its sessions exist (the
//! patient, the device itself, the session's doctor, a grantee of the patient's device data;
//! a stranger gets the answer of a device or session that does not exist), and who the
//! audited read of a session serves (consent at the time of the read, not the session key).

use crate::{World, names, run};

#[test]
fn a_device_is_visible_to_its_patient_itself_and_a_grantee_and_missing_to_strangers() {
    run(async {
        let world = World::build().await;
        let n = &world.node;
        let device = world.device.account.to_string();
        for path in [format!("/v1/devices/{device}"), format!("/v1/devices/{device}/sessions")] {
            for who in [&world.patient, &world.device, &world.grantee] {
                let (status, body) = n.get(who, &path).await;
                assert_eq!(status, 200, "{path} for {}: {body}", who.account);
            }
            for who in [&world.stranger_doctor, &world.stranger_patient, &world.hospital] {
                let (status, body) = n.get(who, &path).await;
                assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
            }
        }
        let list = format!("/v1/devices?patient={}", world.patient.account);
        for who in [&world.patient, &world.grantee] {
            let (status, body) = n.get(who, &list).await;
            assert!(status == 200 && names(&body, &device), "{list}: {body}");
        }
        let (status, body) = n.get(&world.stranger_doctor, &list).await;
        assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(0)), "{body}");
        world.node.stop().await;
    });
}

#[test]
fn a_session_is_visible_to_its_patient_doctor_and_a_grantee_and_missing_to_strangers() {
    run(async {
        let world = World::build().await;
        let n = &world.node;
        let session = world.session.to_string();
        for path in [
            format!("/v1/device-sessions/{session}"),
            format!("/v1/device-sessions/{session}/readings"),
        ] {
            for who in [&world.patient, &world.doctor, &world.device, &world.grantee] {
                let (status, body) = n.get(who, &path).await;
                assert_eq!(status, 200, "{path} for {}: {body}", who.account);
                assert!(names(&body, &session), "{body}");
            }
            for who in [&world.stranger_doctor, &world.stranger_patient, &world.hospital] {
                let (status, body) = n.get(who, &path).await;
                assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
            }
        }
        world.node.stop().await;
    });
}

/// Reading device data needs consent at the time of the read: the patient reads; the doctor
/// the session names (who holds a wrapped session key) is denied without a grant in force,
/// like a stranger; both denials are committed.
#[test]
fn the_audited_session_read_serves_the_patient_and_denies_doctors_without_a_grant() {
    run(async {
        let mut world = World::build().await;
        let path = format!("/v1/device-sessions/{}/read", world.session);
        let resource = world.device_resource();
        let access = world.patient.access(resource.clone());
        let (status, body) = world.node.post_tx(&path, &access).await;
        assert_eq!(status, 200, "the patient's read: {body}");
        for who in [&mut world.doctor, &mut world.stranger_doctor] {
            let access = who.access(resource.clone());
            let (status, body) = world.node.post_tx(&path, &access).await;
            assert_eq!((status, body["code"].as_str()), (403, Some("denied")), "{body}");
        }
        world.node.stop().await;
    });
}
