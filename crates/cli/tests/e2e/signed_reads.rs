//! Signed read requests: consent state is readable only by whom it concerns, and unsigned,
//! stale, replayed or mis-signed requests are refused.

use medledger_client::{ClientError, HttpError, NodeClient, Wallet};
use medledger_core::{
    ids::AccountId,
    request::{HEADER, RequestAuth},
};

use crate::{harness::*, registry::cast};

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn code(r: Result<medledger_api::WhoCanSeeView, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Http(HttpError::Refused { status, code, message, .. })) => {
            (status, format!("{code}: {message}"))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn consent_state_is_read_by_signed_requests_only() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let mut patient_wallet = Wallet::load(&c.patient).unwrap();
    let patient_account = patient_wallet.account().to_string();
    ok(
        &[
            "consent",
            "grant",
            "--wallet",
            &c.patient,
            "--grantee",
            &c.doctor_account,
            "--scope",
            "all",
        ],
        &env,
    );

    // The patient sees the grant; the doctor sees it from their side; the doctor may not ask
    // who can see the patient's records.
    let out = ok(&["consent", "who-can-see", "--wallet", &c.patient, "--json"], &env);
    let view: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(view["grants"][0]["grantee"], c.doctor_account.as_str(), "{view}");
    let out = ok(
        &["consent", "grants", "--wallet", &c.doctor, "--patient", &patient_account, "--json"],
        &env,
    );
    let grants: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(grants.as_array().unwrap().len(), 1, "{grants}");
    let err = fails(
        &["consent", "who-can-see", "--wallet", &c.doctor, "--patient", &patient_account],
        &env,
    );
    assert!(err.contains("only the patient"), "{err}");

    // Unsigned.
    let path = format!("/v1/consent/who-can-see/{patient_account}");
    let r = http(node.port, "GET", &path, b"").unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains(HEADER), "{}", r.text());

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = NodeClient::new(&node.url).unwrap();
        let identity = patient_wallet.unlock(PASS).unwrap();
        let me: AccountId = patient_wallet.account();
        // A good signed request works once; the same request again is a replay.
        let auth = RequestAuth::sign(&identity.signing, me, "GET", &path, b"", now_ms(), [9; 16]);
        let first: medledger_api::WhoCanSeeView = client.get_with_auth(&path, &auth).await.unwrap();
        assert_eq!(first.grants.len(), 1);
        let (status, msg) = code(client.get_with_auth(&path, &auth).await);
        assert_eq!(status, 401);
        assert!(msg.contains("replayed"), "{msg}");
        // A stale timestamp.
        let stale = RequestAuth::sign(
            &identity.signing,
            me,
            "GET",
            &path,
            b"",
            now_ms() - 120_000,
            [8; 16],
        );
        let (status, msg) = code(client.get_with_auth(&path, &stale).await);
        assert_eq!(status, 401);
        assert!(msg.contains("stale"), "{msg}");
        // Signed for another path (the signature does not cover this one).
        let other = RequestAuth::sign(
            &identity.signing,
            me,
            "GET",
            "/v1/consent/grants",
            b"",
            now_ms(),
            [7; 16],
        );
        let (status, msg) = code(client.get_with_auth(&path, &other).await);
        assert_eq!(status, 401);
        assert!(msg.contains("does not verify"), "{msg}");
        // Signed by a key that is not the patient's.
        let stranger = medledger_core::keys::SigningKey::generate();
        let forged = RequestAuth::sign(&stranger, me, "GET", &path, b"", now_ms(), [6; 16]);
        let (status, msg) = code(client.get_with_auth(&path, &forged).await);
        assert_eq!(status, 401);
        assert!(msg.contains("not the active key"), "{msg}");
    });
}

#[test]
fn the_audit_trail_is_the_patients_and_the_regulator_sees_counts() {
    use medledger_core::tx::{
        TxBody,
        consent::{AccessTx, Action, Purpose, RecordCategory, Resource},
    };
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let patient_account = Wallet::load(&c.patient).unwrap().account();
    ok(
        &[
            "consent",
            "grant",
            "--wallet",
            &c.patient,
            "--grantee",
            &c.doctor_account,
            "--scope",
            "categories:lab_report",
        ],
        &env,
    );

    // The doctor declares two reads: one the grant covers, one it does not.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = NodeClient::new(&node.url).unwrap();
        let mut wallet = Wallet::load(&c.doctor).unwrap();
        let identity = wallet.unlock(PASS).unwrap();
        let chain = client.genesis().await.unwrap().chain_id;
        for (n, category) in [(1, RecordCategory::LabReport), (2, RecordCategory::Psychiatry)] {
            let body = TxBody::Access(AccessTx {
                resource: Resource {
                    patient: patient_account,
                    category: Some(category),
                    record: None,
                    case: None,
                },
                action: Action::Read,
                purpose: Purpose::Treatment,
            });
            let tx = medledger_client::tx::build(&identity, wallet.account(), &chain, n, body);
            client.submit(&tx).await.unwrap();
        }
    });

    let out = ok(&["audit", "trail", "--wallet", &c.patient, "--json"], &env);
    let events: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kinds: Vec<String> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_object().unwrap().keys().next().unwrap().clone())
        .collect();
    assert_eq!(kinds, ["granted", "access", "access"], "{events}");
    assert!(events[1]["kind"]["access"]["decision"]["allow"].is_object(), "{events}");
    assert_eq!(events[2]["kind"]["access"]["decision"]["deny"], "no_grant", "{events}");
    let table = ok(&["audit", "trail", "--wallet", &c.patient], &env);
    assert!(table.contains("ALLOWED by grant") && table.contains("DENIED"), "{table}");

    // Nobody else reads it; the regulator sees counts only.
    let err = fails(
        &["audit", "trail", "--wallet", &c.doctor, "--patient", &patient_account.to_string()],
        &env,
    );
    assert!(err.contains("only the patient"), "{err}");
    let counts = ok(&["audit", "counts", "--wallet", &node.regulator(), "--json"], &env);
    let counts: serde_json::Value = serde_json::from_str(&counts).unwrap();
    assert_eq!(counts["access"], 1, "{counts}");
    assert_eq!(counts["denial"], 1, "{counts}");
    let err = fails(&["audit", "counts", "--wallet", &c.hospital], &env);
    assert!(err.contains("only the regulator"), "{err}");
}
