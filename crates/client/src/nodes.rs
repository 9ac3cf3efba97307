//! Node membership, the regulator's side: the bodies of the four node transactions (admit,
//! suspend, reinstate, remove), checked here as the ledger will check them so that a mistyped
//! key or address is refused before anything is signed, and parsing a node key. Submit a body
//! like any other (`NodeClient::submit`); list the nodes with `NodeClient::nodes`.

use medledger_core::{
    ids::AccountId,
    keys::PublicKey,
    tx::{NodeTx, TxBody, nodes::check_node_address},
};

use crate::error::ClientError;

/// A node key given as 64 hex characters (what `medledger node init` prints), refused unless
/// it is an Ed25519 public key.
pub fn parse_node_key(hex_key: &str) -> Result<PublicKey, ClientError> {
    let invalid = |reason: String| ClientError::InvalidInput { what: "node key", reason };
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut bytes)
        .map_err(|e| invalid(format!("{:?} is not 64 hex characters: {e}", hex_key.trim())))?;
    let key = PublicKey(bytes);
    key.verifier().map_err(|_| invalid(format!("{key} is not an Ed25519 public key")))?;
    Ok(key)
}

/// The regulator's admission of `node_key`, listening at `address`, run by `hospital`; the
/// address is checked first (an `http`/`https` base URL with a host and an explicit port).
pub fn admit(
    node_key: PublicKey,
    address: &str,
    hospital: AccountId,
) -> Result<TxBody, ClientError> {
    check_node_address(address).map_err(|e| ClientError::InvalidInput {
        what: "node address",
        reason: format!("{address:?}: {e}"),
    })?;
    Ok(TxBody::Nodes(NodeTx::Admit { node_key, address: address.to_owned(), hospital }))
}

/// The regulator's suspension of the node with `node_key`.
pub fn suspend(node_key: PublicKey) -> TxBody {
    TxBody::Nodes(NodeTx::Suspend { node_key })
}

/// The regulator's reinstatement of the suspended node with `node_key`.
pub fn reinstate(node_key: PublicKey) -> TxBody {
    TxBody::Nodes(NodeTx::Reinstate { node_key })
}

/// The regulator's removal, for good, of the node with `node_key`.
pub fn remove(node_key: PublicKey) -> TxBody {
    TxBody::Nodes(NodeTx::Remove { node_key })
}

#[cfg(test)]
mod tests {
    use medledger_core::keys::SigningKey;

    use super::*;

    #[test]
    fn a_node_key_is_64_hex_characters_of_an_ed25519_key() {
        let key = SigningKey::generate().public_key();
        assert_eq!(parse_node_key(&key.to_string()).unwrap(), key);
        assert_eq!(parse_node_key(&format!(" {key}\n")).unwrap(), key);
        for bad in ["", "abc", &format!("{key}00"), &"zz".repeat(32)] {
            let e = parse_node_key(bad).unwrap_err().to_string();
            assert!(e.contains("node key") && e.contains("hex"), "{bad:?}: {e}");
        }
        // 32 bytes that are not a point on the curve.
        let not_a_point = (0u8..=255)
            .map(|b| PublicKey([b; 32]))
            .find(|k| !k.is_point())
            .expect("some byte pattern is not a point");
        let e = parse_node_key(&not_a_point.to_string()).unwrap_err().to_string();
        assert!(e.contains("not an Ed25519 public key"), "{e}");
    }

    #[test]
    fn an_admission_with_a_malformed_address_is_refused_before_signing() {
        let key = SigningKey::generate().public_key();
        let hospital = AccountId::from_initial_key(&key);
        assert!(matches!(
            admit(key, "http://127.0.0.2:7301", hospital),
            Ok(TxBody::Nodes(NodeTx::Admit { .. }))
        ));
        for bad in ["http://127.0.0.2", "http://127.0.0.2:7301/", "ftp://h:1", "http://u@h:1"] {
            let e = admit(key, bad, hospital).unwrap_err().to_string();
            assert!(e.contains("invalid node address"), "{bad}: {e}");
        }
    }
}
