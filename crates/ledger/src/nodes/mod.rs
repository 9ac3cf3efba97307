//! Node membership: the regulator admits a hospital's node, suspends it, reinstates it or
//! removes it for good (one file per kind; queries in `read.rs`).
//!
//! **Who.** Only the regulator signs these. An admitted node belongs to a hospital that exists,
//! is a hospital, holds an active key and is not suspended.
//!
//! **Ids and keys.** The genesis node (the key in genesis) is member 1 without a transaction.
//! Each admission gets the next id (2, 3, ...) from a counter in the state, so every node
//! numbers members alike. A key is admitted once: a key that is or was a member (removed ones
//! and the genesis node's included) is refused, and ids are never reused.
//!
//! **Status.** Active -> Suspended (suspend) -> Active (reinstate); Active or Suspended ->
//! Removed (remove, final). Suspending or removing the last active node is refused: the network
//! would have no member left to order blocks. The Raft membership follows these committed
//! transactions (the node's membership driver); nothing here knows of Raft.
//!
//! **Addresses** are checked by `medledger_core::tx::nodes::check_node_address`; one address
//! (compared without regard to ASCII case) belongs to at most one node that is not removed.

mod admit;
mod read;
pub mod seals;
mod status;

use medledger_core::{block::Genesis, tx::NodeTx};

use crate::{
    handler::HandlerResult,
    state::{Account, StateTxn},
};

/// Applies one node membership transaction signed by `signer_account`.
pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    genesis: &Genesis,
    signer_account: &Account,
    tx: &NodeTx,
) -> HandlerResult {
    match tx {
        NodeTx::Admit { node_key, address, hospital } => {
            admit::apply(state, genesis, signer_account, node_key, address, hospital)
        }
        NodeTx::Suspend { node_key } => status::suspend(state, genesis, signer_account, node_key),
        NodeTx::Reinstate { node_key } => {
            status::reinstate(state, genesis, signer_account, node_key)
        }
        NodeTx::Remove { node_key } => status::remove(state, genesis, signer_account, node_key),
    }
}
