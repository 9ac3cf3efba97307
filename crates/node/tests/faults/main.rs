//! Injected storage faults (issue 16): failpoints at the Raft log store's write and fsync and at
//! the ledger's commit (the `failpoints` feature, on for this crate's tests). A node on a real
//! data directory and a loopback port takes acknowledged transactions, then meets the fault:
//! the transaction in flight is refused with `storage_fault`, `/health` answers 503 with the
//! reason, and `serve` stops with [`NodeError::StorageFault`]. A restart on the same directory
//! recovers: every acknowledged transaction is there, new ones are taken, and the full offline
//! verification of the ledger passes.

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use medledger_core::{
    Hash,
    block::Genesis,
    ids::AccountId,
    keys::{DecryptionKey, SigningKey},
    request::RequestAuth,
    tx::{AdmitHospital, RegistryTx, SealedRef, SignedTransaction, Transaction, TxBody},
};
use medledger_node::{DataDir, NodeError, NodeOptions};
use tokio::sync::oneshot;

/// How long anything may take before the test fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(30);
const CHAIN: &str = "faults-test";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A node served in this process on a data directory and a loopback port.
struct Node {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<Result<(), NodeError>>,
}

async fn start(dir: &DataDir) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let dir = dir.clone();
    let served = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        medledger_node::serve_with(&dir, listener, NodeOptions::default(), shutdown).await
    });
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Ok((200, _)) = http(port, "GET", "/health", b"", &[]).await {
            return Node { port, stop: Some(stop), served };
        }
        assert!(!served.is_finished(), "the node stopped before serving: {:?}", served.await);
        assert!(Instant::now() < deadline, "the node did not serve within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request over a fresh connection, off the runtime's workers; status and JSON body.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(String, String)],
) -> std::io::Result<(u16, serde_json::Value)> {
    let (method, path, body, headers) =
        (method.to_owned(), path.to_owned(), body.to_vec(), headers.to_vec());
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(LIMIT))?;
        let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())?;
        s.write_all(&body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no end of headers"))?;
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let json = serde_json::from_slice(&raw[split + 4..]).unwrap_or(serde_json::Value::Null);
        Ok((status, json))
    })
    .await
    .unwrap()
}

/// The regulator: admits hospitals, and signs its reads.
struct Regulator {
    key: SigningKey,
    account: AccountId,
}

impl Regulator {
    fn admit(&self, nonce: u64) -> SignedTransaction {
        let name = format!("Hospital {nonce}");
        let body = TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
            key: SigningKey::generate().public_key(),
            encryption_key: DecryptionKey::generate().public_key(),
            registration_id: format!("GOV-{nonce}"),
            name: name.clone(),
            city: "Leeds".into(),
            specialisation: "general".into(),
            contact: SealedRef { blob: Hash::of(name.as_bytes()), commitment: Hash::of(b"c") },
        }));
        Transaction { chain_id: CHAIN.into(), signer: self.account, nonce, body }.sign(&self.key)
    }

    /// A signed GET of `path`.
    async fn get(&self, port: u16, path: &str) -> (u16, serde_json::Value) {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = Hash::of_parts(&[
            &COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes(),
            &now_ms().to_le_bytes(),
        ]);
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&seed.0[..16]);
        let auth = RequestAuth::sign(&self.key, self.account, "GET", path, b"", now_ms(), nonce);
        let header = (medledger_core::request::HEADER.to_owned(), auth.to_header());
        http(port, "GET", path, b"", &[header]).await.unwrap()
    }
}

fn setup(root: &std::path::Path) -> (DataDir, Regulator) {
    let dir = DataDir::new(root.join("data"));
    let node_key = dir.ensure_node_key().unwrap();
    let key = SigningKey::generate();
    let genesis = Genesis {
        chain_id: CHAIN.into(),
        time_ms: now_ms(),
        regulator_key: key.public_key(),
        regulator_encryption_key: DecryptionKey::generate().public_key(),
        node_key: node_key.public_key(),
    };
    dir.initialise(&genesis).unwrap();
    let account = AccountId::from_initial_key(&key.public_key());
    (dir, Regulator { key, account })
}

async fn submit(port: u16, tx: &SignedTransaction) -> (u16, serde_json::Value) {
    http(port, "POST", "/v1/transactions", &tx.encode(), &[]).await.unwrap()
}

/// Acknowledged transactions, a fault at `failpoint`, a fail-stop, and a recovery.
async fn fault_stops_the_node_and_a_restart_recovers(failpoint: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, regulator) = setup(tmp.path());
    let node = start(&dir).await;
    let mut acked = Vec::new();
    for nonce in 1..=5 {
        let tx = regulator.admit(nonce);
        let (status, body) = submit(node.port, &tx).await;
        assert_eq!(status, 200, "transaction {nonce}: {body}");
        acked.push(tx.hash());
    }

    fail::cfg(failpoint, "return").unwrap();
    let (status, body) = submit(node.port, &regulator.admit(6)).await;
    assert_eq!(status, 503, "a write during the fault: {body}");
    assert_eq!(body["code"], "storage_fault", "{body}");
    assert!(body["message"].as_str().unwrap().contains(failpoint), "{body}");
    // /health says so at once, with the reason.
    let (status, health) = http(node.port, "GET", "/health", b"", &[]).await.unwrap();
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "storage_fault", "{health}");
    assert!(health["reason"].as_str().unwrap().contains(failpoint), "{health}");
    // Further writes are refused without being tried; reads of committed state still work.
    let (status, body) = submit(node.port, &regulator.admit(7)).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("storage_fault")), "{body}");
    let (status, body) = regulator.get(node.port, &format!("/v1/transactions/{}", acked[0])).await;
    assert_eq!(status, 200, "{body}");

    // The node stops by itself, with the reason.
    let stopped = tokio::time::timeout(LIMIT, node.served)
        .await
        .expect("the node did not stop after the storage fault")
        .unwrap();
    let Err(NodeError::StorageFault(reason)) = &stopped else {
        panic!("the node should stop with a storage fault, not {stopped:?}");
    };
    assert!(reason.contains(failpoint), "{reason}");
    drop(node.stop);
    fail::remove(failpoint);

    // A restart recovers: every acknowledged transaction is there, applied.
    let mut node = start(&dir).await;
    for hash in &acked {
        let (status, body) = regulator.get(node.port, &format!("/v1/transactions/{hash}")).await;
        assert_eq!(status, 200, "acknowledged transaction {hash} lost: {body}");
        assert!(body["receipt"]["outcome"].get("applied").is_some(), "{body}");
    }
    // New work is taken, after whatever the log held.
    let (status, account) =
        regulator.get(node.port, &format!("/v1/accounts/{}", regulator.account)).await;
    assert_eq!(status, 200, "{account}");
    let nonce = account["nonce"].as_u64().unwrap();
    assert!(nonce >= 5, "{account}");
    let (status, body) = submit(node.port, &regulator.admit(nonce + 1)).await;
    assert_eq!(status, 200, "a write after the restart: {body}");
    let (status, health) = http(node.port, "GET", "/health", b"", &[]).await.unwrap();
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")), "{health}");

    let _ = node.stop.take().unwrap().send(());
    tokio::time::timeout(LIMIT, node.served).await.unwrap().unwrap().unwrap();
    let report = medledger_ledger::verify::verify_ledger(&dir.ledger(), &mut |_, _, _| {})
        .expect("the recovered ledger verifies");
    assert!(report.applied >= 6, "{report:?}");
}

fn run(failpoint: &str) {
    // Failpoints are process-wide: a scenario at a time (nextest runs each test alone anyway).
    let scenario = fail::FailScenario::setup();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(fault_stops_the_node_and_a_restart_recovers(failpoint));
    scenario.teardown();
}

#[test]
fn a_failed_raft_log_write_stops_the_node_and_a_restart_recovers() {
    run("raft-log-write");
}

#[test]
fn a_failed_raft_log_fsync_stops_the_node_and_a_restart_recovers() {
    run("raft-log-fsync");
}

#[test]
fn a_failed_ledger_commit_stops_the_node_and_a_restart_recovers() {
    run("ledger-commit");
}
