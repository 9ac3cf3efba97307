//! openraft behind one module. Raft entries carry blocks; the state machine is a thin adapter
//! around `Ledger::apply_block`; the log lives in its own redb file written by one thread that
//! group-commits appends. A single-node network is a one-member cluster: there is no other
//! write path.

#![allow(
    clippy::result_large_err,
    reason = "openraft's StorageError is large and its traits return it by value"
)]

mod log_store;
mod network;
mod state_machine;
mod verify;

use std::{collections::BTreeMap, io::Cursor, path::Path, sync::Arc};

use medledger_core::{
    Hash,
    block::{Block, Receipt},
};
use medledger_ledger::Ledger;
use openraft::{BasicNode, Config, SnapshotPolicy};
use serde::{Deserialize, Serialize};

pub use log_store::LogStore;
pub use state_machine::{PreVerified, StateMachine};
pub use verify::{RaftLogCheck, check_log_offline};

/// What applying one Raft entry produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum BlockResult {
    /// The block was applied; one receipt per transaction.
    Applied(Vec<Receipt>),
    /// The block did not follow the tip (e.g. proposed by a deposed leader) and was skipped on
    /// every node alike.
    Rejected(String),
}

openraft::declare_raft_types!(
    /// The medledger Raft types: entries carry blocks.
    pub TypeConfig:
        D = Block,
        R = BlockResult,
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// Starts Raft over `ledger`, with its log in `log_path`, as a one-member cluster of `node_id`
/// at `addr` (initialised on first start). A failed write or fsync of the log or the ledger is
/// reported to `fault`.
pub async fn start(
    ledger: Arc<Ledger>,
    log_path: &Path,
    node_id: u64,
    addr: &str,
    preverified: PreVerified,
    applied: tokio::sync::watch::Sender<u64>,
    fault: Arc<crate::storage::StorageFault>,
) -> Result<Raft, String> {
    let config = Config {
        cluster_name: ledger.chain_id().to_owned(),
        heartbeat_interval: 250,
        election_timeout_min: 600,
        election_timeout_max: 1200,
        snapshot_policy: SnapshotPolicy::Never,
        max_payload_entries: 64,
        ..Default::default()
    };
    let config = Arc::new(config.validate().map_err(|e| e.to_string())?);
    let log = LogStore::open(log_path, fault.clone())
        .map_err(|e| format!("raft log at {}: {e}", log_path.display()))?;
    let sm = StateMachine::new(ledger, preverified, applied, fault);
    let raft =
        Raft::new(node_id, config, network::Network, log, sm).await.map_err(|e| e.to_string())?;
    if !raft.is_initialized().await.map_err(|e| e.to_string())? {
        let members = BTreeMap::from([(node_id, BasicNode { addr: addr.to_owned() })]);
        raft.initialize(members).await.map_err(|e| e.to_string())?;
    }
    Ok(raft)
}

/// Waits (at most 60 s) until this node leads and has applied every entry in its log, so that
/// block production starts from the true tip after a restart.
pub async fn wait_until_caught_up(raft: &Raft, node_id: u64) -> Result<(), String> {
    raft.wait(Some(std::time::Duration::from_secs(60)))
        .metrics(
            |m| {
                m.current_leader == Some(node_id)
                    && m.last_applied.map(|l| l.index) == m.last_log_index
            },
            "leader with its whole log applied",
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("raft did not catch up with its log: {e}"))
}

/// Reports a fatal stop of the Raft core (a storage error it met outside the log store and the
/// state machine, which report their own) as a storage fault. Runs until Raft shuts down.
pub async fn report_fatal(raft: Raft, fault: Arc<crate::storage::StorageFault>) {
    let mut metrics = raft.metrics();
    loop {
        if let Err(fatal) = &metrics.borrow_and_update().running_state {
            if !matches!(fatal, openraft::error::Fatal::Stopped) {
                fault.report(format!("the Raft core stopped: {fatal}"));
            }
            return;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The set of block hashes whose signatures this node checked at admission.
pub(crate) type BlockHashes = std::collections::HashSet<Hash>;
