//! The node's side of TLS (`medledger up --tls`): who may be on the other end of a
//! connection between nodes, the server configuration, and the one HTTP client a node uses
//! to reach its peers (Raft RPCs, blob pulls, forwarded writes).
//!
//! Both directions accept exactly the keys of active nodes on this node's own ledger (the
//! genesis node's key, and each key the regulator admitted and has not suspended or removed),
//! looked up at each handshake, so a suspension or removal applies to the next connection.
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
/// accepts only an active node of `ledger`; no proxy, no redirects (a peer answers itself: a
/// redirect would carry signed envelopes or forwarded writes elsewhere).
pub fn peer_client(key: &SigningKey, ledger: Arc<Ledger>) -> Result<reqwest::Client, String> {
    let tls = medledger_tls::client_config(Some(key), Arc::new(ActiveNodes(ledger)))
        .map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(PEER_CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(30))
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| e.to_string())
}
