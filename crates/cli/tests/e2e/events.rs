//! Notifications: the event stream of an account, delivered within a second, resumed after a
//! reconnect or a node restart without missing or repeating events, and refused for anyone but
//! the account itself.

use std::time::{Duration, Instant};

use medledger_client::{ClientError, HttpError, NodeClient, Signer, Wallet};

use crate::{harness::*, registry::cast};

fn kinds(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["kind"].as_object().unwrap().keys().next().unwrap().clone()
        })
        .collect()
}

#[test]
fn events_arrive_at_once_and_resume_without_gaps_or_repeats() {
    let tmp = tempdir();
    let mut node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let url = node.url.clone();
    let env = [("MEDLEDGER_NODE", url.as_str())];
    let mut patient_wallet = Wallet::load(&c.patient).unwrap();
    let patient = patient_wallet.account();

    // A live subscriber sees a grant within a second of its receipt.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = NodeClient::new(&node.url).unwrap();
        let identity = patient_wallet.unlock(PASS).unwrap();
        let watcher = {
            let client = client.clone().signed_by(Signer::new(identity.signing.clone(), patient));
            tokio::spawn(async move {
                let mut got = None;
                client
                    .watch(patient, None, |e| {
                        got = Some((e, Instant::now()));
                        false
                    })
                    .await
                    .unwrap();
                got.unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let grant = tokio::task::spawn_blocking({
            let (wallet, doctor) = (c.patient.clone(), c.doctor_account.clone());
            let url = node.url.clone();
            move || {
                ok(
                    &["consent", "grant", "--wallet", &wallet, "--grantee", &doctor],
                    &[("MEDLEDGER_NODE", url.as_str())],
                );
                Instant::now()
            }
        })
        .await
        .unwrap();
        let (event, arrived) =
            tokio::time::timeout(LIMIT, watcher).await.expect("no event").unwrap();
        assert_eq!(event.kind.name(), "grant");
        let lag = arrived.saturating_duration_since(grant);
        assert!(lag < Duration::from_secs(1), "the event arrived {lag:?} after the receipt");

        // Someone else's stream is refused.
        let mut doctor_wallet = Wallet::load(&c.doctor).unwrap();
        let doctor = doctor_wallet.unlock(PASS).unwrap();
        // Signed as the doctor, for the patient's stream: forbidden.
        let path = format!("/v1/events/{patient}");
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                as u64;
        let auth = medledger_core::request::RequestAuth::sign(
            &doctor.signing,
            doctor_wallet.account(),
            "GET",
            &path,
            b"",
            now,
            [5; 16],
        );
        let err = client.get_with_auth::<serde_json::Value>(&path, &auth).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Http(HttpError::Refused { status: 403, .. })),
            "{err:?}"
        );
        // Claiming to be the patient with the doctor's key: not authenticated.
        let as_patient = client.clone().signed_by(Signer::new(doctor.signing.clone(), patient));
        let err = as_patient.watch(patient, None, |_| false).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Http(HttpError::Refused { status: 401, .. })),
            "{err:?}"
        );
    });

    // The CLI watcher prints from the start, then remembers where it stopped.
    ok(&["consent", "request", "--wallet", &c.doctor, "--patient", &patient.to_string()], &env);
    let out =
        ok(&["watch", "--wallet", &c.patient, "--from-start", "--count", "2", "--json"], &env);
    assert_eq!(kinds(&out), ["granted", "requested"], "{out}");
    ok(&["consent", "deny", "--wallet", &c.patient, "--category", "psychiatry"], &env);
    let out = ok(&["watch", "--wallet", &c.patient, "--count", "1", "--json"], &env);
    assert_eq!(kinds(&out), ["deny_added"], "{out}");

    // After a node restart the events are still there and the cursor still holds.
    node.stop();
    node.restart();
    // Grants survive the restart too.
    let who = ok(&["consent", "who-can-see", "--wallet", &c.patient, "--json"], &env);
    assert!(who.contains(&c.doctor_account), "{who}");
    ok(&["consent", "delegate", &c.hospital_account, "--wallet", &c.patient], &env);
    let out = ok(&["watch", "--wallet", &c.patient, "--count", "1", "--json"], &env);
    assert_eq!(kinds(&out), ["delegate_named"], "{out}");
    // The grantee is told about the request they made too (their own stream).
    let out = ok(&["watch", "--wallet", &c.doctor, "--from-start", "--count", "2", "--json"], &env);
    assert_eq!(kinds(&out), ["granted", "requested"], "{out}");
}
