//! Node membership transactions: the regulator admits a hospital's node (its node key, the base
//! URL it listens on, the hospital that runs it), suspends it, reinstates it, or removes it for
//! good. The ledger numbers admitted nodes (2, 3, ...; the genesis node is 1) and the Raft
//! membership follows only what committed transactions of this family say.
//!
//! A node's address is public consortium infrastructure, checked here by
//! [`check_node_address`] (the one rule, used by the ledger and by clients before they sign):
//! an `http` or `https` base URL with a host and an explicit port, and nothing else.

use serde::{Deserialize, Serialize};

use crate::{ids::AccountId, keys::PublicKey};

/// Longest accepted node address, in bytes.
pub const MAX_NODE_ADDRESS_LEN: usize = 200;

/// A node membership transaction; only the regulator signs these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeTx {
    /// The regulator admits a hospital's node.
    Admit {
        /// The node's key (it signs checkpoints and, between nodes, what it sends).
        node_key: PublicKey,
        /// The node's base URL, e.g. `http://127.0.0.2:7301` (see [`check_node_address`]).
        address: String,
        /// The hospital that runs it.
        hospital: AccountId,
    },
    /// The regulator suspends a node: it leaves Raft membership until reinstated.
    Suspend {
        /// The node's key.
        node_key: PublicKey,
    },
    /// The regulator reinstates a suspended node.
    Reinstate {
        /// The node's key.
        node_key: PublicKey,
    },
    /// The regulator removes a node for good.
    Remove {
        /// The node's key.
        node_key: PublicKey,
    },
}

impl NodeTx {
    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeTx::Admit { .. } => "admit_node",
            NodeTx::Suspend { .. } => "suspend_node",
            NodeTx::Reinstate { .. } => "reinstate_node",
            NodeTx::Remove { .. } => "remove_node",
        }
    }

    /// The key of the node it concerns.
    pub fn node_key(&self) -> &PublicKey {
        match self {
            NodeTx::Admit { node_key, .. }
            | NodeTx::Suspend { node_key }
            | NodeTx::Reinstate { node_key }
            | NodeTx::Remove { node_key } => node_key,
        }
    }
}

/// Why a node address is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeAddressError {
    /// Longer than [`MAX_NODE_ADDRESS_LEN`].
    #[error("the address is {0} bytes, more than {MAX_NODE_ADDRESS_LEN}")]
    TooLong(usize),
    /// Contains a control character (or whitespace).
    #[error("the address contains control characters or spaces")]
    ControlCharacters,
    /// Not `http://` or `https://`.
    #[error("the address must start with http:// or https://")]
    Scheme,
    /// Has user information (`user@host`).
    #[error("the address must not carry user information (user@host)")]
    UserInfo,
    /// Has a path (even `/`), a query or a fragment.
    #[error("the address must be a base URL without a path, query or fragment")]
    Path,
    /// No host.
    #[error("the address has no host")]
    NoHost,
    /// A host with characters a host name or IP address cannot have.
    #[error("the address's host {0:?} is not a host name or IP address")]
    BadHost(String),
    /// No explicit port, or one that is not a number from 1 to 65535.
    #[error("the address must end with an explicit port from 1 to 65535 (host:port)")]
    Port,
}

/// The one check of a node's address: an `http` or `https` base URL with a host (a name, an
/// IPv4 address or a bracketed IPv6 address) and an explicit port from 1 to 65535; no user
/// information, path (not even `/`), query or fragment; at most [`MAX_NODE_ADDRESS_LEN`] bytes
/// and no control characters or spaces.
pub fn check_node_address(address: &str) -> Result<(), NodeAddressError> {
    if address.len() > MAX_NODE_ADDRESS_LEN {
        return Err(NodeAddressError::TooLong(address.len()));
    }
    if address.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(NodeAddressError::ControlCharacters);
    }
    let rest = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .ok_or(NodeAddressError::Scheme)?;
    if rest.contains('@') {
        return Err(NodeAddressError::UserInfo);
    }
    if rest.contains(['/', '?', '#', '\\']) {
        return Err(NodeAddressError::Path);
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (inner, after) = v6.split_once(']').ok_or(NodeAddressError::NoHost)?;
            if inner.is_empty()
                || !inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return Err(NodeAddressError::BadHost(format!("[{inner}]")));
            }
            (inner, after.strip_prefix(':').ok_or(NodeAddressError::Port)?)
        }
        None => {
            let (host, port) = rest.rsplit_once(':').ok_or(NodeAddressError::Port)?;
            if host.is_empty() {
                return Err(NodeAddressError::NoHost);
            }
            let label_ok = |l: &str| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            };
            // A fully qualified name may end with a dot.
            let name = host.strip_suffix('.').unwrap_or(host);
            if !name.split('.').all(label_ok) {
                return Err(NodeAddressError::BadHost(host.to_owned()));
            }
            (host, port)
        }
    };
    if host.is_empty() {
        return Err(NodeAddressError::NoHost);
    }
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NodeAddressError::Port);
    }
    match port.parse::<u32>() {
        Ok(1..=65535) => Ok(()),
        _ => Err(NodeAddressError::Port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_with_a_host_and_a_port_are_accepted() {
        for good in [
            "http://127.0.0.2:7301",
            "https://node-3.st-marys.example:443",
            "http://localhost:1",
            "http://[::1]:7300",
            "https://[2001:db8::7]:65535",
            "http://node.example.:8080",
        ] {
            assert_eq!(check_node_address(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn every_malformed_address_is_refused_with_its_reason() {
        use NodeAddressError as E;
        type Expect = fn(&E) -> bool;
        let cases: &[(&str, Expect)] = &[
            ("ftp://127.0.0.1:21", |e| *e == E::Scheme),
            ("127.0.0.1:7301", |e| *e == E::Scheme),
            ("HTTP://127.0.0.1:7301", |e| *e == E::Scheme),
            ("http://127.0.0.1", |e| *e == E::Port),
            ("http://127.0.0.1:", |e| *e == E::Port),
            ("http://127.0.0.1:0", |e| *e == E::Port),
            ("http://127.0.0.1:65536", |e| *e == E::Port),
            ("http://127.0.0.1:+80", |e| *e == E::Port),
            ("http://127.0.0.1:000080", |e| *e == E::Port),
            ("http://[::1]", |e| *e == E::Port),
            ("http://127.0.0.1:7301/", |e| *e == E::Path),
            ("http://127.0.0.1:7301/v1", |e| *e == E::Path),
            ("http://127.0.0.1:7301?x=1", |e| *e == E::Path),
            ("http://127.0.0.1:7301#f", |e| *e == E::Path),
            ("http://user:pw@127.0.0.1:7301", |e| *e == E::UserInfo),
            ("http://evil@127.0.0.1:7301", |e| *e == E::UserInfo),
            ("http://:7301", |e| *e == E::NoHost),
            ("http://bad_host:7301", |e| matches!(e, E::BadHost(_))),
            ("http://-bad:7301", |e| matches!(e, E::BadHost(_))),
            ("http://a..b:7301", |e| matches!(e, E::BadHost(_))),
            ("http://[zz]:7301", |e| matches!(e, E::BadHost(_))),
            ("http://a:b:7301", |e| matches!(e, E::BadHost(_))),
            ("http://127.0.0.1:7301\n", |e| *e == E::ControlCharacters),
            ("http://127.0.0.1:73\u{1b}01", |e| *e == E::ControlCharacters),
            ("http://127.0.0.1 :7301", |e| *e == E::ControlCharacters),
        ];
        for (bad, expected) in cases {
            match check_node_address(bad) {
                Err(e) if expected(&e) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let long = format!("http://{}.example:7301", "a".repeat(MAX_NODE_ADDRESS_LEN));
        assert_eq!(check_node_address(&long), Err(E::TooLong(long.len())));
        let longest = format!("http://{}:7301", "a".repeat(MAX_NODE_ADDRESS_LEN - 12));
        assert_eq!(longest.len(), MAX_NODE_ADDRESS_LEN);
        // One label of 188 characters: still a host by the character rule.
        assert_eq!(check_node_address(&longest), Ok(()));
    }
}
