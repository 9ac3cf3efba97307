//! Node membership (stored entries) and its accessors: the nodes by id, the index by node key,
//! and the counter that numbers admitted nodes.
//!
//! The genesis node (the key `Genesis::node_key`) is member 1 without a transaction: until the
//! regulator suspends or removes it, it has no row and every lookup synthesises it
//! ([`genesis_node`]); a change of its status is stored as a row like any other (with its
//! index entry). Admitted nodes get 2, 3, ... from the counter; ids are never reused and keys
//! never re-admitted, so rows are never deleted (a removed node keeps its row).

use medledger_core::{block::Genesis, ids::AccountId, keys::PublicKey};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{StateTxn, decode_entry, get_entry};
use crate::LedgerError;

/// The genesis node's id.
pub const GENESIS_NODE_ID: u64 = 1;
/// The key of the counter's one row in `node_ids`: the last id assigned.
pub(crate) const LAST_NODE_ID: &str = "last";

/// Where a node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeStatus {
    /// A member of the network.
    Active,
    /// Out of the network until the regulator reinstates it.
    Suspended,
    /// Out of the network for good.
    Removed,
}

impl NodeStatus {
    /// How messages and the API name it.
    pub fn name(&self) -> &'static str {
        match self {
            NodeStatus::Active => "active",
            NodeStatus::Suspended => "suspended",
            NodeStatus::Removed => "removed",
        }
    }
}

/// A node of the network, as the ledger knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Its id: 1 for the genesis node, then 2, 3, ... in order of admission.
    pub id: u64,
    /// Its key (signs checkpoints and what it sends to other nodes).
    pub node_key: PublicKey,
    /// Its base URL; empty for the genesis node (Raft's membership holds where it listens).
    pub address: String,
    /// The hospital that runs it; `None` for the genesis node.
    pub hospital: Option<AccountId>,
    /// Where it stands.
    pub status: NodeStatus,
    /// Height of its admission; 0 for the genesis node.
    pub admitted_at: u64,
}

/// The genesis node as every lookup sees it until a transaction changes its status.
pub fn genesis_node(genesis: &Genesis) -> NodeEntry {
    NodeEntry {
        id: GENESIS_NODE_ID,
        node_key: genesis.node_key,
        address: String::new(),
        hospital: None,
        status: NodeStatus::Active,
        admitted_at: 0,
    }
}

/// The node `id`, from `nodes` or synthesised for the genesis node.
pub(crate) fn node_by_id(
    nodes: &impl ReadableTable<u64, &'static [u8]>,
    genesis: &Genesis,
    id: u64,
) -> Result<Option<NodeEntry>, LedgerError> {
    match get_entry(nodes, id, "node")? {
        Some(n) => Ok(Some(n)),
        None if id == GENESIS_NODE_ID => Ok(Some(genesis_node(genesis))),
        None => Ok(None),
    }
}

/// The node with `key`, through the index (or the genesis node's key).
pub(crate) fn node_by_key(
    nodes: &impl ReadableTable<u64, &'static [u8]>,
    by_key: &impl ReadableTable<&'static [u8; 32], u64>,
    genesis: &Genesis,
    key: &PublicKey,
) -> Result<Option<NodeEntry>, LedgerError> {
    let id = match by_key.get(&key.0)? {
        Some(id) => id.value(),
        None if *key == genesis.node_key => GENESIS_NODE_ID,
        None => return Ok(None),
    };
    let node = node_by_id(nodes, genesis, id)?
        .ok_or_else(|| LedgerError::Corrupt(format!("indexed node {id} missing")))?;
    if node.node_key != *key {
        return Err(LedgerError::Corrupt(format!("node {id} is indexed under another key")));
    }
    Ok(Some(node))
}

/// Every node by id, the genesis node first.
pub(crate) fn all_nodes(
    nodes: &impl ReadableTable<u64, &'static [u8]>,
    genesis: &Genesis,
) -> Result<Vec<NodeEntry>, LedgerError> {
    let mut out = Vec::new();
    if nodes.get(GENESIS_NODE_ID)?.is_none() {
        out.push(genesis_node(genesis));
    }
    for row in nodes.iter()? {
        let (_, v) = row?;
        out.push(decode_entry("node", v.value())?);
    }
    Ok(out)
}

impl StateTxn<'_, '_> {
    /// The node `id` (the genesis node synthesised).
    pub fn node(&self, genesis: &Genesis, id: u64) -> Result<Option<NodeEntry>, LedgerError> {
        node_by_id(&self.tables.nodes, genesis, id)
    }

    /// The node with `key` (the genesis node synthesised).
    pub fn node_by_key(
        &self,
        genesis: &Genesis,
        key: &PublicKey,
    ) -> Result<Option<NodeEntry>, LedgerError> {
        node_by_key(&self.tables.nodes, &self.tables.nodes_by_key, genesis, key)
    }

    /// Every node, the genesis node first.
    pub fn nodes(&self, genesis: &Genesis) -> Result<Vec<NodeEntry>, LedgerError> {
        all_nodes(&self.tables.nodes, genesis)
    }

    /// The id the next admitted node gets (2 for the first).
    pub fn next_node_id(&self) -> Result<u64, LedgerError> {
        let last = self.tables.node_ids.get(LAST_NODE_ID)?.map_or(GENESIS_NODE_ID, |v| v.value());
        last.checked_add(1).ok_or_else(|| LedgerError::Corrupt("node ids exhausted".into()))
    }

    /// Writes a node (and its key's index entry, and, for a new id above the counter, the
    /// counter).
    pub fn put_node(&mut self, node: &NodeEntry) -> Result<(), LedgerError> {
        if self.write().nodes().put_entry(node.id, node)?.is_none() {
            self.write().nodes_by_key().put(&node.node_key.0, node.id)?;
            if node.id >= self.next_node_id()? {
                self.write().node_ids().put(LAST_NODE_ID, node.id)?;
            }
        }
        Ok(())
    }
}
