//! Queries over committed node membership: every node, one by id, one by key (the genesis node
//! synthesised as node 1 until its status changes), and the transaction that admitted a node.

use medledger_core::{
    block::{Created, Outcome},
    keys::PublicKey,
};
use redb::ReadableDatabase;

use crate::{
    Ledger, LedgerError, TxRecord,
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

    /// The applied transaction that admitted node `id` (the regulator's `NodeTx::Admit`), or
    /// `None` for the genesis node (named by genesis, admitted by no transaction) or an id the
    /// ledger never assigned. Found in the block at the node's `admitted_at` by its receipt,
    /// which names the node id created.
    pub fn node_admission(&self, id: u64) -> Result<Option<TxRecord>, LedgerError> {
        let Some(node) = self.node_member(id)? else { return Ok(None) };
        if node.admitted_at == 0 {
            return Ok(None);
        }
        let header = self.header(node.admitted_at)?.ok_or_else(|| {
            LedgerError::Corrupt(format!(
                "block {} of node {id}'s admission missing",
                node.admitted_at
            ))
        })?;
        let first = header.log_size - u64::from(header.tx_count);
        for (i, outcome) in self.outcomes_at(node.admitted_at)?.into_iter().enumerate() {
            if let Outcome::Applied { created: Some(Created::Node { id: made }) } = outcome
                && made == id
            {
                return self.transaction_at(first + i as u64);
            }
        }
        Err(LedgerError::Corrupt(format!(
            "no transaction in block {} admitted node {id}",
            node.admitted_at
        )))
    }
}
