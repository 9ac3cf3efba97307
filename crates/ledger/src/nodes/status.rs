//! The regulator suspends a node (it leaves the membership until reinstated), reinstates it,
//! or removes it for good. The last active node is never suspended or removed.

use medledger_core::{
    block::{Genesis, Refusal},
    keys::PublicKey,
    tx::Role,
};

use crate::LedgerError;
use crate::handler::{HandlerResult, refuse_on, require_role};
use crate::state::{Account, NodeEntry, NodeStatus, StateTxn};

/// The node with `key`, or a refusal naming it.
fn known(
    state: &StateTxn<'_, '_>,
    genesis: &Genesis,
    key: &PublicKey,
) -> Result<Result<NodeEntry, Refusal>, LedgerError> {
    Ok(state
        .node_by_key(genesis, key)?
        .ok_or_else(|| Refusal::NotFound { what: format!("node with key {key}") }))
}

/// Refuses to take `node` out of the membership if no other node is active.
fn require_another_active(
    state: &StateTxn<'_, '_>,
    genesis: &Genesis,
    node: &NodeEntry,
    action: &str,
) -> Result<Result<(), Refusal>, LedgerError> {
    let others = state
        .nodes(genesis)?
        .iter()
        .filter(|n| n.id != node.id && n.status == NodeStatus::Active)
        .count();
    Ok(if others == 0 {
        Err(Refusal::Invalid {
            reason: format!(
                "node {} is the last active node: {action} it would leave the network with no member",
                node.id
            ),
        })
    } else {
        Ok(())
    })
}

fn set_status(
    state: &mut StateTxn<'_, '_>,
    mut node: NodeEntry,
    status: NodeStatus,
) -> HandlerResult {
    node.status = status;
    state.put_node(&node)?;
    Ok(Ok(None))
}

pub(crate) fn suspend(
    state: &mut StateTxn<'_, '_>,
    genesis: &Genesis,
    signer: &Account,
    key: &PublicKey,
) -> HandlerResult {
    refuse_on!(require_role(signer, Role::Regulator, "suspend a node"));
    let node = refuse_on!(known(state, genesis, key)?);
    if node.status != NodeStatus::Active {
        return Ok(Err(Refusal::Invalid {
            reason: format!("node {} is {}, not active", node.id, node.status.name()),
        }));
    }
    refuse_on!(require_another_active(state, genesis, &node, "suspending")?);
    set_status(state, node, NodeStatus::Suspended)
}

pub(crate) fn reinstate(
    state: &mut StateTxn<'_, '_>,
    genesis: &Genesis,
    signer: &Account,
    key: &PublicKey,
) -> HandlerResult {
    refuse_on!(require_role(signer, Role::Regulator, "reinstate a node"));
    let node = refuse_on!(known(state, genesis, key)?);
    if node.status != NodeStatus::Suspended {
        return Ok(Err(Refusal::Invalid {
            reason: format!("node {} is {}, not suspended", node.id, node.status.name()),
        }));
    }
    set_status(state, node, NodeStatus::Active)
}

pub(crate) fn remove(
    state: &mut StateTxn<'_, '_>,
    genesis: &Genesis,
    signer: &Account,
    key: &PublicKey,
) -> HandlerResult {
    refuse_on!(require_role(signer, Role::Regulator, "remove a node"));
    let node = refuse_on!(known(state, genesis, key)?);
    match node.status {
        NodeStatus::Removed => {
            return Ok(Err(Refusal::Invalid {
                reason: format!("node {} is already removed", node.id),
            }));
        }
        NodeStatus::Active => {
            refuse_on!(require_another_active(state, genesis, &node, "removing")?);
        }
        NodeStatus::Suspended => {}
    }
    set_status(state, node, NodeStatus::Removed)
}
