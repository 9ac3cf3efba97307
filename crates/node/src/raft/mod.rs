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
mod snapshots;
mod state_machine;
#[cfg(test)]
mod tests;
mod verify;

use std::{collections::BTreeMap, path::Path, sync::Arc};

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
        SnapshotData = tokio::fs::File,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// Raft entries applied between two snapshots. A snapshot is the whole ledger (every block
/// since genesis), so a build costs in proportion to the ledger, not to this: about 1 s per
/// 100,000 transactions of state (release build, docs/benchmarks.md), on a blocking thread.
/// Under a full load of batched submissions an entry (a block) holds ~80 transactions and
/// ~55 KB, and the node commits up to ~60 a second: a snapshot then every half minute or more,
/// and a log of at most ~2,750 entries (~150 MB; a few MB when blocks are small). More often
/// would spend a core on rebuilding a million-transaction ledger; less often lets the log grow
/// towards the size this bound exists to prevent.
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 2_000;

/// Entries kept in the log behind the latest snapshot, so that a follower slightly behind
/// catches up from the log rather than by a whole snapshot.
pub const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 500;

/// Purge the log behind a snapshot in batches of at least this many entries (one log write
/// transaction each).
pub const PURGE_BATCH: u64 = 250;

/// How long the last chunk of a snapshot may take to be sent and installed (the receiver
/// checks and imports the whole ledger then): generous for a ledger of millions of
/// transactions; openraft's 200 ms default is far too short.
pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 300_000;

/// How long one (non-last) chunk of a snapshot may take to be sent and written.
pub const SEND_SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 30_000;

/// When snapshots are built and how much log is kept behind them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// Build a snapshot every this many applied entries.
    pub every_entries: u64,
    /// Entries kept in the log behind the latest snapshot.
    pub keep_behind: u64,
    /// Purge in batches of at least this many entries.
    pub purge_batch: u64,
}

impl Default for SnapshotSettings {
    /// [`SNAPSHOT_EVERY_ENTRIES`], [`LOG_KEPT_BEHIND_SNAPSHOT`] and [`PURGE_BATCH`].
    fn default() -> Self {
        Self {
            every_entries: SNAPSHOT_EVERY_ENTRIES,
            keep_behind: LOG_KEPT_BEHIND_SNAPSHOT,
            purge_batch: PURGE_BATCH,
        }
    }
}

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
    let snapshots = SnapshotSettings::default();
    start_with(ledger, log_path, node_id, addr, preverified, applied, fault, snapshots).await
}

/// [`start`] with other [`SnapshotSettings`] (tests use small ones).
#[allow(clippy::too_many_arguments, reason = "start's arguments and one more")]
pub(crate) async fn start_with(
    ledger: Arc<Ledger>,
    log_path: &Path,
    node_id: u64,
    addr: &str,
    preverified: PreVerified,
    applied: tokio::sync::watch::Sender<u64>,
    fault: Arc<crate::storage::StorageFault>,
    snapshots: SnapshotSettings,
) -> Result<Raft, String> {
    #[allow(deprecated, reason = "openraft 0.9 still sends snapshots in chunks, timed by it")]
    let config = Config {
        cluster_name: ledger.chain_id().to_owned(),
        heartbeat_interval: 250,
        election_timeout_min: 600,
        election_timeout_max: 1200,
        max_payload_entries: 64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshots.every_entries),
        max_in_snapshot_log_to_keep: snapshots.keep_behind,
        purge_batch_size: snapshots.purge_batch,
        // A follower further behind than this gets the snapshot instead of entries.
        replication_lag_threshold: snapshots.every_entries + snapshots.keep_behind,
        install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
        send_snapshot_timeout: SEND_SNAPSHOT_CHUNK_TIMEOUT_MS,
        ..Default::default()
    };
    let config = Arc::new(config.validate().map_err(|e| e.to_string())?);
    let log = LogStore::open(log_path, fault.clone())
        .map_err(|e| format!("raft log at {}: {e}", log_path.display()))?;
    // Snapshots live beside the log, in the data directory's `snapshots/`.
    let snapshot_dir = log_path.with_file_name("snapshots");
    let sm = StateMachine::new(ledger, preverified, applied, fault, &snapshot_dir)
        .map_err(|e| format!("snapshots at {}: {e}", snapshot_dir.display()))?;
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
