//! A wallet's TLS pins: it talks over `https://` only to a node that proves, in the TLS
//! handshake, a node key of its pinned network: the genesis node's (in the pinned genesis) or
//! one whose admission by the network's regulator the node proves
//! ([`crate::checkpoints::verify_node_admission`]). Nothing the node merely says is trusted:
//! an unknown key is pinned only after that proof, and only if the proof is about the very key
//! the handshake presented.

use std::sync::Arc;

use medledger_tls::{AnyKey, Pins};

use crate::{
    checkpoints::verify_node_admission,
    error::{ClientError, ProofError},
    http::NodeClient,
    proof::TrustAnchor,
};

/// The pins a wallet starts with: the genesis node's key.
pub fn pins_of(anchor: &TrustAnchor) -> Arc<Pins> {
    Pins::new([anchor.node_key])
}

/// A client for `url` that, over `https://`, talks only to a node proving a key in `pins`.
/// A node whose key is not pinned yet is asked to prove its admission (checked against
/// `anchor`; then its key is pinned); a node that cannot is refused before any request of
/// this wallet reaches it. Over plain `http://` (the loopback default) there is nothing to pin.
pub async fn connect(
    url: &str,
    anchor: &TrustAnchor,
    pins: &Arc<Pins>,
) -> Result<NodeClient, ClientError> {
    let client = NodeClient::pinned(url, pins.clone())?;
    if !is_https(url) {
        return Ok(client);
    }
    let first = match client.health().await {
        Ok(_) => return Ok(client),
        Err(e) => e,
    };
    let Some(key) = pins.take_refused() else { return Err(first) };
    let refuse = |reason: String| ClientError::Proof(ProofError::UnadmittedNode { key, reason });
    // The node presented `key`: ask it (over a connection that records the key it proves) to
    // show the regulator's admission of that key.
    let seen = Arc::new(AnyKey::default());
    let probe = NodeClient::with_tls(url, seen.clone())?;
    let genesis = probe.genesis().await?;
    let nodes = probe.nodes().await?;
    let hex_key = key.to_string();
    let Some(node) = nodes.iter().find(|n| n.node_key.eq_ignore_ascii_case(&hex_key)) else {
        return Err(refuse(format!(
            "the node at {url} presents TLS key {key}, which is no node of the network it lists"
        )));
    };
    let served = probe.node_admission(node.id).await?.ok_or_else(|| {
        refuse(format!("the node at {url} gives no admission for its node {}", node.id))
    })?;
    if seen.last() != Some(key) {
        return Err(refuse(format!(
            "the node at {url} presented TLS key {key} first and {} to the proof request",
            seen.last().map_or("none".to_owned(), |k| k.to_string())
        )));
    }
    if node.status != medledger_api::NodeView::ACTIVE {
        return Err(refuse(format!("node {} is {} on the network", node.id, node.status)));
    }
    verify_node_admission(&key, &served, anchor, &genesis)?;
    pins.add(key);
    client.health().await?;
    Ok(client)
}

/// Whether `url` is reached over TLS: its scheme as the URL parser reads it (`HTTPS://` is
/// https too), so that no spelling of a URL slips past a check into an unpinned connection.
pub fn is_https(url: &str) -> bool {
    reqwest::Url::parse(url.trim()).is_ok_and(|u| u.scheme() == "https")
}

/// Refuses `url` when `home` (the node this wallet reached) is `https://` and `url` is not: a
/// wallet on a TLS network sends nothing in clear, whatever address a node list names.
pub fn same_transport(home: &str, url: &str) -> Result<(), ClientError> {
    if is_https(home) && !is_https(url) {
        return Err(ClientError::InvalidInput {
            what: "node address",
            reason: format!(
                "{url} is plain HTTP, but this wallet reached the network over TLS ({home}): not \
                 used"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wallet_on_a_tls_network_uses_no_plain_address() {
        let home = "https://10.0.0.1:7300";
        let e = same_transport(home, "http://10.0.0.2:7300").unwrap_err();
        assert!(e.to_string().contains("plain HTTP"), "{e}");
        same_transport(home, "https://10.0.0.2:7300").unwrap();
        same_transport(" https://10.0.0.1:7300", "HTTP://x:1").unwrap_err();
        same_transport("HTTPS://10.0.0.1:7300", "http://10.0.0.2:7300").unwrap_err();
        assert!(is_https("HTTPS://10.0.0.1:7300") && is_https(" https://a:1/"));
        assert!(!is_https("http://a:1") && !is_https("not a url"));
        // A wallet on plain HTTP (the loopback default) may be told of either.
        same_transport("http://127.0.0.1:7300", "http://127.0.0.1:7301").unwrap();
        same_transport("http://127.0.0.1:7300", "https://127.0.0.1:7301").unwrap();
    }
}
