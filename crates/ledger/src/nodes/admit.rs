//! The regulator admits a hospital's node: a new key that is an Ed25519 public key (one that
//! can sign), a well-formed address no other member (active or suspended) uses, a hospital in
//! good standing; the node gets the next id.

use medledger_core::{
    block::{Created, Genesis, Refusal},
    ids::AccountId,
    keys::PublicKey,
    tx::{Role, nodes::check_node_address},
};

use crate::handler::{HandlerResult, refuse_on, require_active, require_role};
use crate::state::{Account, NodeEntry, NodeStatus, StateTxn};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    genesis: &Genesis,
    signer: &Account,
    node_key: &PublicKey,
    address: &str,
    hospital: &AccountId,
) -> HandlerResult {
    refuse_on!(require_role(signer, Role::Regulator, "admit a node"));
    if !node_key.is_point() {
        return Ok(Err(Refusal::Invalid {
            reason: format!("node key {node_key} is not an Ed25519 public key"),
        }));
    }
    // Under a key of small order anyone could sign (the signature rule refuses such keys
    // everywhere; `medledger_core::keys`).
    if node_key.verifier().is_err() {
        return Ok(Err(Refusal::Invalid {
            reason: format!("node key {node_key} is of small order: anyone could sign for it"),
        }));
    }
    if let Err(e) = check_node_address(address) {
        return Ok(Err(Refusal::Invalid { reason: format!("node address: {e}") }));
    }
    let account = refuse_on!(require_active(state, hospital, "hospital")?);
    if account.role != Role::Hospital {
        return Ok(Err(Refusal::Invalid {
            reason: format!("{hospital} is a {:?}, not a hospital", account.role),
        }));
    }
    if let Some(existing) = state.node_by_key(genesis, node_key)? {
        return Ok(Err(Refusal::AlreadyExists {
            what: format!(
                "node key {node_key} (node {}, {}); a key is admitted once",
                existing.id,
                existing.status.name()
            ),
        }));
    }
    // Two members at one address would be one machine counted twice (or one hiding another).
    if let Some(other) = state
        .nodes(genesis)?
        .into_iter()
        .find(|n| n.status != NodeStatus::Removed && n.address.eq_ignore_ascii_case(address))
    {
        return Ok(Err(Refusal::AlreadyExists {
            what: format!("node {} ({}) at address {address}", other.id, other.status.name()),
        }));
    }
    let id = state.next_node_id()?;
    state.put_node(&NodeEntry {
        id,
        node_key: *node_key,
        address: address.to_owned(),
        hospital: Some(*hospital),
        status: NodeStatus::Active,
        admitted_at: state.height,
    })?;
    Ok(Ok(Some(Created::Node { id })))
}
