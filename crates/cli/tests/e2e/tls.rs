//! TLS between nodes and from wallets (issue 13), on real `medledger up --tls` processes: two
//! nodes replicate over mutually authenticated TLS 1.3; a client certificate whose key is no
//! active node of the ledger (a stranger's, or a removed node's) ends the handshake; over TLS
//! a signed Raft envelope is taken only from the connection that proved its sender's key; a
//! wallet reaches a node that is not the genesis node only after that node proved its
//! admission, and refuses an impostor that relays a real node's answers under a key of its own.

use std::{
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use medledger_core::{Hash, keys::SigningKey};
use medledger_node::{
    DataDir,
    raft::transport::{Envelope, RpcKind},
};
use medledger_tls::AnyKey;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::harness::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// GET `url` over TLS showing `key`'s node certificate (or none), any server key accepted,
/// with an optional header: the status and body, or why the connection failed.
fn get(
    url: &str,
    key: Option<&SigningKey>,
    header: Option<(&'static str, String)>,
) -> Result<(u16, String), String> {
    send(url, key, header, None)
}

/// [`get`], or a POST of `body` when given.
fn send(
    url: &str,
    key: Option<&SigningKey>,
    header: Option<(&'static str, String)>,
    body: Option<Vec<u8>>,
) -> Result<(u16, String), String> {
    let tls = medledger_tls::client_config(key, Arc::new(AnyKey::default())).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    runtime().block_on(async {
        let mut request = match body {
            Some(body) => client.post(url).body(body),
            None => client.get(url),
        };
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.map_err(|e| format!("{e:?}"))?))
    })
}

/// The node's count of failed TLS handshakes (its public metrics).
fn handshakes_failed(node: &Node) -> u64 {
    let (status, text) = get(&format!("{}/metrics", node.url), None, None).unwrap();
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("medledger_tls_handshakes_failed_total "))
        .unwrap_or_else(|| panic!("no TLS handshake counter in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// A signed blob pull from node `from` (signing with `key`) to node 1, as the header a
/// replica puller sends.
fn blob_pull(key: &SigningKey, chain: &str, from: u64, blob: Hash) -> (&'static str, String) {
    let body = medledger_core::encoding::encode(&(blob, [7u8; 16]));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let envelope =
        Envelope::seal(key, chain, from, 1, now.as_millis() as u64, RpcKind::Blob, None, body);
    (medledger_api::paths::NODE_REQUEST_HEADER, hex::encode(envelope.encode()))
}

/// An impostor: a TLS proxy on a free loopback port, under `key`'s certificate, relaying
/// every connection to the node on `target` (for at most two minutes).
fn impostor(key: SigningKey, target: u16) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        runtime().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let any = || Arc::new(AnyKey::default());
            let acceptor =
                tokio_rustls::TlsAcceptor::from(medledger_tls::server_config(&key, any()).unwrap());
            let connector = tokio_rustls::TlsConnector::from(Arc::new(
                medledger_tls::client_config(None, any()).unwrap(),
            ));
            let relay = async {
                while let Ok((inbound, _)) = listener.accept().await {
                    let (acceptor, connector) = (acceptor.clone(), connector.clone());
                    tokio::spawn(async move {
                        let mut inbound = acceptor.accept(inbound).await?;
                        let out = tokio::net::TcpStream::connect(("127.0.0.1", target)).await?;
                        let name = ServerName::try_from("127.0.0.1").unwrap();
                        let mut out = connector.connect(name, out).await?;
                        tokio::io::copy_bidirectional(&mut inbound, &mut out).await
                    });
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(120), relay).await;
        });
    });
    port
}

/// Runs `medledger network check` of the regulator's wallet through `node_url`.
fn network_check(regulator: &str, node_url: &str) -> std::process::Output {
    cli(&["network", "check", "--wallet", regulator, "--node", node_url, "--json"], &[])
}

#[test]
fn a_tls_network_takes_only_ledger_keys_between_nodes_and_wallets_pin_them() {
    let dir = tempdir();
    let n1 = Node::start_with(&dir.path().join("node-1"), free_port(), &["--tls"]);
    assert!(n1.url.starts_with("https://"), "{}", n1.url);
    assert!(
        http(n1.port, "GET", "/health", b"").map_or(true, |r| r.status != 200),
        "a node started with --tls must not answer plain HTTP"
    );
    let regulator = n1.regulator();
    let chain = "medledger-local";

    // A hospital, and a second node admitted at an https:// address, joining over TLS.
    let hospital = dir.path().join("hospital.wallet.json");
    let h = hospital.display().to_string();
    ok(&["wallet", "create", "--out", &h, "--name", "St. Mary's"], &[]);
    let identity = ok(&["wallet", "show", "--wallet", &h, "--identity-only"], &[]);
    let admitted = ok(
        &[
            "hospital",
            "admit",
            "--wallet",
            &regulator,
            "--identity",
            identity.trim(),
            "--registration-id",
            "GOV-1",
            "--name",
            "St. Mary's",
            "--city",
            "Leeds",
            "--specialisation",
            "cardiology",
            "--contact",
            "+44 113 000 0000",
            "--json",
        ],
        &[],
    );
    let admitted: serde_json::Value = serde_json::from_str(&admitted).unwrap();
    let hospital_account = admitted["account"].as_str().unwrap().to_owned();
    let dir2 = dir.path().join("node-2");
    let d2 = dir2.display().to_string();
    let init: serde_json::Value =
        serde_json::from_str(&ok(&["node", "init", "--data-dir", &d2, "--json"], &[])).unwrap();
    let k2 = init["node_key"].as_str().unwrap().to_owned();
    let p2 = free_port();
    ok(
        &[
            "node",
            "admit",
            "--wallet",
            &regulator,
            "--node-key",
            &k2,
            "--address",
            &format!("https://127.0.0.1:{p2}"),
            "--hospital",
            &hospital_account,
            "--json",
        ],
        &[],
    );
    let genesis: medledger_core::block::Genesis =
        serde_json::from_slice(&std::fs::read(n1.dir.join("genesis.json")).unwrap()).unwrap();
    let hash = genesis.hash().to_string();
    let n2 = Node::start_with(&dir2, p2, &["--tls", "--join", &n1.url, "--genesis-hash", &hash]);

    // The wallet, pinned to the genesis node's key only, goes through node 2 once node 2
    // proved its admission; both nodes check out, so Raft ran between them over TLS.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = network_check(&regulator, &n2.url);
        if out.status.success() {
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let verdicts = verdicts(&report);
            if verdicts == ["ok", "ok"] {
                break;
            }
        }
        assert!(Instant::now() < deadline, "node 2 never checked out over TLS: {}", show(&out));
        thread::sleep(Duration::from_millis(300));
    }

    // Between nodes: node 2's key, shown in a client certificate, is taken; a stranger's
    // ends the handshake (counted by the node) before any HTTP is read.
    let key2 = DataDir::new(&dir2).node_key().unwrap();
    let stranger = SigningKey::generate();
    let blob = Hash::of(b"no such blob");
    let pull = format!("{}/v1/raft/blobs/{blob}", n1.url);
    let failed = handshakes_failed(&n1);
    let refused = get(&pull, Some(&stranger), Some(blob_pull(&stranger, chain, 2, blob)));
    assert!(refused.is_err(), "a stranger's certificate was served: {refused:?}");
    assert_eq!(handshakes_failed(&n1), failed + 1, "the stranger was not refused at the handshake");

    // Over TLS an envelope is taken only from the connection that proved its sender's key:
    // node 2's signed pull, relayed by a client without a certificate, is refused.
    let (status, body) = get(&pull, None, Some(blob_pull(&key2, chain, 2, blob))).unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("wrong_sender") && body.contains("no node key"), "{body}");
    // The same pull on node 2's own connection passes every check (the blob is not there).
    let (status, body) = get(&pull, Some(&key2), Some(blob_pull(&key2, chain, 2, blob))).unwrap();
    assert_eq!(status, 404, "{body}");

    // A wallet refuses an impostor relaying node 1's answers under a key of its own, before
    // any signed request reaches it; pinning a fresh wallet through it is refused too.
    let fake = impostor(SigningKey::generate(), n1.port);
    let fake_url = format!("https://127.0.0.1:{fake}");
    let out = network_check(&regulator, &fake_url);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(stderr(&out).contains("no node of the network"), "{}", show(&out));
    let fresh = dir.path().join("fresh.wallet.json");
    let f = fresh.display().to_string();
    ok(&["wallet", "create", "--out", &f, "--name", "Dr. Rao"], &[]);
    let pin = fails(&["wallet", "pin", "--wallet", &f, "--node", &fake_url], &[]);
    assert!(pin.contains("no node of the network"), "{pin}");
    // Expecting the genesis node's key, a pin over TLS must reach the node that proves it:
    // node 2 (an honest node, but another key) is refused, node 1 is taken.
    let genesis_key = genesis.node_key.to_string();
    let pin = fails(
        &["wallet", "pin", "--wallet", &f, "--node", &n2.url, "--node-key", &genesis_key],
        &[],
    );
    assert!(pin.contains(&format!("must prove node key {genesis_key}")), "{pin}");
    // However the scheme is spelt.
    let shouting = n2.url.replace("https://", "HTTPS://");
    let pin = fails(
        &["wallet", "pin", "--wallet", &f, "--node", &shouting, "--node-key", &genesis_key],
        &[],
    );
    assert!(pin.contains(&format!("must prove node key {genesis_key}")), "{pin}");
    ok(&["wallet", "pin", "--wallet", &f, "--node", &n1.url, "--node-key", &genesis_key], &[]);

    // Removed by the regulator, node 2 is refused by node 1 at the handshake.
    ok(&["node", "remove", "--wallet", &regulator, "--node-key", &k2, "--json"], &[]);
    let failed = handshakes_failed(&n1);
    let refused = get(&pull, Some(&key2), Some(blob_pull(&key2, chain, 2, blob)));
    assert!(refused.is_err(), "a removed node's certificate was served: {refused:?}");
    assert_eq!(handshakes_failed(&n1), failed + 1);
    // Once its own ledger holds its removal, node 2 cannot serve the wallet either: it cannot
    // prove itself an active node, so the wallet sends it nothing signed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = ok(&["node", "list", "--node", &n2.url, "--json"], &[]);
        let list: serde_json::Value = serde_json::from_str(&list).unwrap();
        if list.as_array().unwrap().iter().any(|n| n["id"] == 2 && n["status"] == "removed") {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 never applied its removal: {list}");
        thread::sleep(Duration::from_millis(200));
    }
    let out = network_check(&regulator, &n2.url);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(stderr(&out).contains("is removed on the network"), "{}", show(&out));
    drop(n2);
}
