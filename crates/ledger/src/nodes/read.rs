//! Queries over committed node membership: every node, one by id, one by key (the genesis node
//! synthesised as node 1 until its status changes).

use medledger_core::keys::PublicKey;
use redb::ReadableDatabase;

use crate::{
    Ledger, LedgerError,
    state::{NODES, NODES_BY_KEY, NodeEntry, all_nodes, node_by_id, node_by_key},
};

impl Ledger {
    /// Every node, by id, the genesis node (1) first; removed ones too.
    pub fn node_members(&self) -> Result<Vec<NodeEntry>, LedgerError> {
        let read = self.db.begin_read()?;
        all_nodes(&read.open_table(NODES)?, self.genesis())
    }

    /// The node `id`.
    pub fn node_member(&self, id: u64) -> Result<Option<NodeEntry>, LedgerError> {
        let read = self.db.begin_read()?;
        node_by_id(&read.open_table(NODES)?, self.genesis(), id)
    }

    /// The node with `key`.
    pub fn node_member_by_key(&self, key: &PublicKey) -> Result<Option<NodeEntry>, LedgerError> {
        let read = self.db.begin_read()?;
        node_by_key(&read.open_table(NODES)?, &read.open_table(NODES_BY_KEY)?, self.genesis(), key)
    }
}
