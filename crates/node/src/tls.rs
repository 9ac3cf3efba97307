//! The node's side of TLS (`medledger up --tls`): who may be on the other end of a
//! connection between nodes, the server configuration, and the one HTTP client a node uses
//! to reach its peers (Raft RPCs, blob pulls, forwarded writes).
//!
//! Both directions accept exactly the keys of active nodes on this node's own ledger (the
//! genesis node's key, and each key the regulator admitted and has not suspended or removed),
//! looked up at each handshake (there is no session resumption), so a suspension or removal
//! applies to the next connection.
//! The TLS layer proves which node is on the other end; the signed envelopes above it still
//! prove each message.

use std::{sync::Arc, time::Duration};

use medledger_core::keys::{PublicKey, SigningKey};
use medledger_ledger::{Ledger, NodeStatus};
use medledger_tls::KeyPolicy;

/// Accepts the key of an active node of the ledger.
#[derive(Debug)]
pub struct ActiveNodes(pub Arc<Ledger>);

impl KeyPolicy for ActiveNodes {
    fn check(&self, key: &PublicKey) -> Result<(), String> {
        match self.0.node_member_by_key(key) {
            Ok(Some(m)) if m.status == NodeStatus::Active => Ok(()),
            Ok(Some(m)) => Err(format!(
                "node {} (key {key}) is {:?} on this node's ledger, not active",
                m.id, m.status
            )),
            Ok(None) if *key == self.0.genesis().node_key => Ok(()),
            Ok(None) => Err(format!("key {key} is not a node admitted on this node's ledger")),
            Err(e) => Err(format!("cannot look key {key} up on the ledger: {e}")),
        }
    }
}

/// The TLS configuration of a node serving with `key`: any client may connect without a
/// certificate; one with a certificate must be an active node of `ledger`.
pub fn server_config(
    key: &SigningKey,
    ledger: Arc<Ledger>,
) -> Result<Arc<rustls::ServerConfig>, medledger_tls::TlsError> {
    medledger_tls::server_config(key, Arc::new(ActiveNodes(ledger)))
}

/// How long a node waits to connect to a peer.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The client a node reaches its peers with: over `https://` it shows its own certificate and
/// accepts only an active node of `ledger`; with `https_only` (a node serving TLS) a peer at
/// a plain `http://` address is refused rather than sent anything in clear; no proxy, no
/// redirects (a peer answers itself: a redirect would carry signed envelopes or forwarded
/// writes elsewhere).
pub fn peer_client(
    key: &SigningKey,
    ledger: Arc<Ledger>,
    https_only: bool,
) -> Result<reqwest::Client, String> {
    let tls = medledger_tls::client_config(Some(key), Arc::new(ActiveNodes(ledger)))
        .map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(PEER_CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(30))
        .tls_backend_preconfigured(tls)
        .https_only(https_only)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_node_serving_tls_sends_nothing_to_a_plain_http_peer() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        let genesis = medledger_core::block::Genesis {
            chain_id: "tls-test".into(),
            time_ms: 1,
            regulator_key: SigningKey::generate().public_key(),
            regulator_encryption_key: medledger_core::keys::DecryptionKey::generate().public_key(),
            node_key: key.public_key(),
        };
        let ledger = Arc::new(Ledger::create(&dir.path().join("ledger.redb"), genesis).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let accepted = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(2), listener.accept()).await.is_ok()
        });
        let client = peer_client(&key, ledger.clone(), true).unwrap();
        let e = client.get(&url).send().await.unwrap_err();
        assert!(e.is_builder() || e.to_string().contains("URL scheme"), "{e:?}");
        assert!(!accepted.await.unwrap(), "a connection was opened to the plain peer");
        // A node serving plain HTTP may reach it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let accepted = tokio::spawn(async move { listener.accept().await.is_ok() });
        let plain = peer_client(&key, ledger, false).unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(500), plain.get(&url).send()).await;
        assert!(accepted.await.unwrap());
    }
}
