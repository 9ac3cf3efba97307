//! Authentication on every route: a signature by a key that is no account's active key, a
//! stale timestamp, a replayed nonce, a signature over another path (or another body) are
//! refused with 401 `unauthenticated` on every header-signed route; a suspended hospital's
//! doctor is refused with 403 `suspended`; the routes whose body is a signed transaction
//! refuse a transaction by an unregistered key, a broken signature, and a replay.

use medledger_core::{
    keys::SigningKey,
    request::{HEADER, MAX_SKEW_MS},
    tx::{RegistryTx, TxBody},
};

use crate::{
    Actor, World, now_ms,
    routes::{Auth, ROUTES},
    run,
};

/// The body a header-signed route gets in these tests.
fn body_for(auth: Auth) -> Vec<u8> {
    if auth == Auth::HeaderOverBody { b"sealed details".to_vec() } else { Vec::new() }
}

/// Sends `method path` with `who`'s signature `header`; status, code and message.
async fn send(
    world: &World,
    method: &str,
    path: &str,
    header: String,
    body: Vec<u8>,
) -> (u16, String, String) {
    let (status, json) = world.node.raw(method, path, &[(HEADER, header)], body).await;
    let text = |k: &str| json.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    (status, text("code"), text("message"))
}

#[track_caller]
fn assert_refused(answer: &(u16, String, String), because: &str, what: &str) {
    assert_eq!((answer.0, answer.1.as_str()), (401, "unauthenticated"), "{what}: {answer:?}");
    assert!(answer.2.contains(because), "{what}: expected {because:?} in {answer:?}");
}

#[test]
fn every_signed_route_refuses_unknown_keys_stale_replayed_and_misdirected_signatures() {
    run(async {
        let world = World::build().await;
        // A registered signer (the regulator), whose valid requests pass authentication.
        let signer = &world.regulator;
        let outsider = Actor::with_key(&world.node.base, SigningKey::generate());
        let mut checked = 0;
        for r in ROUTES.iter().filter(|r| matches!(r.auth, Auth::Header | Auth::HeaderOverBody)) {
            let path = world.path(r.path);
            let body = body_for(r.auth);
            let what = format!("{} {path}", r.method);
            let sign =
                |who: &Actor, at: u64, over: &str| who.auth(r.method, over, &body, at).to_header();

            let h = sign(&outsider, now_ms(), &path);
            let answer = send(&world, r.method, &path, h, body.clone()).await;
            assert_refused(&answer, "is not the active key", &format!("{what}, unknown key"));

            let h = sign(signer, now_ms() - MAX_SKEW_MS - 5_000, &path);
            let answer = send(&world, r.method, &path, h, body.clone()).await;
            assert_refused(&answer, "stale request", &format!("{what}, stale"));

            let h = sign(signer, now_ms(), "/v1/hospitals?elsewhere");
            let answer = send(&world, r.method, &path, h, body.clone()).await;
            assert_refused(&answer, "does not verify", &format!("{what}, another path"));

            if r.auth == Auth::HeaderOverBody {
                let h = sign(signer, now_ms(), &path);
                let answer = send(&world, r.method, &path, h, b"other details".to_vec()).await;
                assert_refused(&answer, "does not verify", &format!("{what}, another body"));
            }

            // A valid request passes authentication; the very same request again does not.
            let h = sign(signer, now_ms(), &path);
            let first = send(&world, r.method, &path, h.clone(), body.clone()).await;
            assert_ne!(first.0, 401, "{what}, valid: {first:?}");
            let again = send(&world, r.method, &path, h, body.clone()).await;
            assert_refused(&again, "replayed request", &format!("{what}, replayed"));
            checked += 1;
        }
        assert_eq!(checked, 39, "header-signed routes checked");
        world.node.stop().await;
    });
}

/// A suspended hospital's doctor reads nothing: 403 `suspended` on a signed GET, and the
/// same request by the doctor was answered before the suspension.
#[test]
fn a_suspended_hospitals_doctor_is_refused() {
    run(async {
        let mut world = World::build().await;
        let path = "/v1/hospitals";
        let (status, body) = world.node.get(&world.stranger_doctor, path).await;
        assert_eq!(status, 200, "{body}");
        let suspend = world.regulator.tx(TxBody::Registry(RegistryTx::SuspendHospital {
            hospital: world.other_hospital.account,
            reason: "inspection".into(),
        }));
        world.regulator.client.submit(&suspend).await.unwrap();
        for who in [&world.stranger_doctor, &world.other_hospital] {
            let (status, body) = world.node.get(who, path).await;
            assert_eq!((status, body["code"].as_str()), (403, Some("suspended")), "{body}");
        }
        // Others read on.
        let (status, body) = world.node.get(&world.doctor, path).await;
        assert_eq!(status, 200, "{body}");
        world.node.stop().await;
    });
}

/// The routes whose body is a signed transaction: the audited reads. An access signed by a
/// key that is no account's, an access whose signature is broken, and an access sent twice
/// are refused, and nothing is served; the same access, well signed and sent once, is served.
#[test]
fn audited_reads_refuse_unknown_signers_broken_signatures_and_replays() {
    run(async {
        let mut world = World::build().await;
        let reads = [
            (format!("/v1/records/{}/read", world.pmr), world.record_resource()),
            (format!("/v1/cases/{}/read", world.case), world.case_resource()),
            (format!("/v1/device-sessions/{}/read", world.session), world.device_resource()),
        ];
        for (path, resource) in reads {
            let mut outsider = Actor::with_key(&world.node.base, SigningKey::generate());
            let forged = outsider.access(resource.clone());
            let (status, body) = world.node.post_tx(&path, &forged).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (422, Some("refused")),
                "{path}, unknown signer: {body}"
            );

            let mut broken = world.patient.access(resource.clone());
            broken.signature.0[0] ^= 1;
            let (status, body) = world.node.post_tx(&path, &broken).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (400, Some("bad_signature")),
                "{path}, broken signature: {body}"
            );

            // The nonce the broken one used is still free: the same access, signed, is served.
            broken.signature.0[0] ^= 1;
            let (status, body) = world.node.post_tx(&path, &broken).await;
            assert_eq!(status, 200, "{path}, the patient's own read: {body}");
            let (status, body) = world.node.post_tx(&path, &broken).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (422, Some("refused")),
                "{path}, replayed: {body}"
            );
        }
        world.node.stop().await;
    });
}
