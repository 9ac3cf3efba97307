//! openraft behind one module. Raft entries carry blocks; the state machine is a thin adapter
//! around `Ledger::apply_block`; the log lives in its own redb file written by one thread that
//! group-commits appends. Nodes talk over HTTP with signed envelopes (`transport.rs`,
//! `network.rs`); the leader turns the ledger's node table into Raft membership
//! (`membership.rs`); snapshots of the ledger let the log be purged and a lagging node catch
//! up (`snapshots.rs`). A single-node network is a one-member cluster of the genesis node
//! (id 1).

#![allow(
    clippy::result_large_err,
    reason = "openraft's StorageError is large and its traits return it by value"
)]

pub mod blocks;
pub mod faults;
mod log_store;
pub mod membership;
pub mod network;
mod receive;
pub mod replicas;
#[cfg(test)]
mod sim;
mod snapshots;
mod state_machine;
#[cfg(test)]
mod tests;
pub mod transport;
mod verify;

use std::{collections::BTreeMap, path::Path, sync::Arc};

use medledger_core::{Hash, block::Receipt, seal::SealedBlock};
use medledger_ledger::Ledger;
use openraft::{BasicNode, Config, SnapshotPolicy};
use serde::{Deserialize, Serialize};

pub use log_store::{LogClosed, LogStore};
pub use receive::SnapshotReceiver;
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
        D = SealedBlock,
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
/// checks it and replays every block it lacks then, about 13,000 transactions a second in a
/// release build here: docs/benchmarks.md): 30 minutes covers a new node joining a ledger of
/// some 20 million transactions; openraft's 200 ms default is far too short.
pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 1_800_000;

/// How long one (non-last) chunk of a snapshot may take to be sent and written.
pub const SEND_SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 30_000;

/// Most entries (blocks) in one AppendEntries request. openraft 0.9 gives each request the
/// heartbeat interval (250 ms) to be sent, checked, stored and answered, and on a timeout
/// sends the same range again. Its probe of a new or lagging follower carries entries too,
/// so with 64 blocks of tens of kilobytes each (megabytes to sign, decode and fsync) a
/// follower on a busy machine could time out on every retry and never catch up: a node
/// joining after 100,000 transactions did so (crates/cli/tests/e2e/join.rs). A follower
/// that keeps up gets one or two blocks a request anyway.
pub const MAX_ENTRIES_PER_APPEND: u64 = 8;

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

impl SnapshotSettings {
    /// A snapshot every `entries` applied entries (at least 1), keeping a quarter of that
    /// behind it (at most [`LOG_KEPT_BEHIND_SNAPSHOT`]) and purging in batches of an eighth (at
    /// most [`PURGE_BATCH`]): the default for 2,000, scaled for other intervals.
    pub fn every(entries: u64) -> Self {
        let entries = entries.max(1);
        Self {
            every_entries: entries,
            keep_behind: (entries / 4).min(LOG_KEPT_BEHIND_SNAPSHOT),
            purge_batch: (entries / 8).clamp(1, PURGE_BATCH),
        }
    }
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

/// The genesis node's Raft id: it founds the cluster (the contract of issue 12).
pub const GENESIS_NODE_ID: u64 = 1;

/// Starts Raft over `ledger`, with its log in `log_path`, as node `node_id` at `addr`, talking
/// to its peers over `network`, with the default [`SnapshotSettings`]. The genesis node
/// ([`GENESIS_NODE_ID`]) initialises a one-member cluster on first start; any other node starts
/// uninitialised and waits for the leader to add it. A failed write or fsync of the log or the
/// ledger is reported to `fault`.
#[allow(clippy::too_many_arguments, reason = "what Raft is started over, one argument each")]
pub async fn start(
    ledger: Arc<Ledger>,
    log_path: &Path,
    node_id: u64,
    addr: &str,
    network: network::Network,
    preverified: PreVerified,
    applied: tokio::sync::watch::Sender<u64>,
    fault: Arc<crate::storage::StorageFault>,
) -> Result<Started, String> {
    let snapshots = SnapshotSettings::default();
    start_with(ledger, log_path, node_id, addr, network, preverified, applied, fault, snapshots)
        .await
}

/// [`start`] with explicit snapshot settings, over any network (the node's is
/// [`network::Network`]; the simulation's is in memory).
#[allow(clippy::too_many_arguments, reason = "start's arguments and one more")]
pub async fn start_with<N: openraft::RaftNetworkFactory<TypeConfig>>(
    ledger: Arc<Ledger>,
    log_path: &Path,
    node_id: u64,
    addr: &str,
    network: N,
    preverified: PreVerified,
    applied: tokio::sync::watch::Sender<u64>,
    fault: Arc<crate::storage::StorageFault>,
    snapshots: SnapshotSettings,
) -> Result<Started, String> {
    let timers = Timers::default();
    start_timed(
        ledger,
        log_path,
        node_id,
        addr,
        network,
        preverified,
        applied,
        fault,
        snapshots,
        timers,
    )
    .await
}

/// Raft's heartbeat and election timers, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timers {
    /// How often the leader sends a heartbeat.
    pub heartbeat_ms: u64,
    /// A follower that hears no leader for a random time in this range starts an election.
    pub election_ms: (u64, u64),
}

impl Default for Timers {
    /// What every node runs with.
    fn default() -> Self {
        Self { heartbeat_ms: 250, election_ms: (600, 1200) }
    }
}

/// [`start_with`] with explicit timers (the simulation runs them faster).
#[allow(clippy::too_many_arguments, reason = "start_with's arguments and one more")]
pub(crate) async fn start_timed<N: openraft::RaftNetworkFactory<TypeConfig>>(
    ledger: Arc<Ledger>,
    log_path: &Path,
    node_id: u64,
    addr: &str,
    network: N,
    preverified: PreVerified,
    applied: tokio::sync::watch::Sender<u64>,
    fault: Arc<crate::storage::StorageFault>,
    snapshots: SnapshotSettings,
    timers: Timers,
) -> Result<Started, String> {
    #[allow(deprecated, reason = "openraft 0.9 still sends snapshots in chunks, timed by it")]
    let config = Config {
        cluster_name: ledger.chain_id().to_owned(),
        heartbeat_interval: timers.heartbeat_ms,
        election_timeout_min: timers.election_ms.0,
        election_timeout_max: timers.election_ms.1,
        max_payload_entries: MAX_ENTRIES_PER_APPEND,
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
    let closed = log.closed();
    // Leftovers of an old term past a snapshot imported just before a stop (`receive.rs`).
    if let Ok(((Some(applied), _), _)) = state_machine::stored_marker_of(&ledger) {
        let dropped = log
            .drop_stale_after(applied)
            .map_err(|e| format!("raft log at {}: {e}", log_path.display()))?;
        if dropped > 0 {
            tracing::warn!(dropped, %applied, "dropped uncommitted entries of an older term");
        }
    }
    // Snapshots live beside the log, in the data directory's `snapshots/`.
    let snapshot_dir = log_path.with_file_name("snapshots");
    let import_lock = state_machine::ImportLock::default();
    let receiver =
        Arc::new(SnapshotReceiver::new(ledger.clone(), fault.clone(), import_lock.clone()));
    let sm = StateMachine::new(ledger, preverified, applied, fault, &snapshot_dir, import_lock)
        .map_err(|e| format!("snapshots at {}: {e}", snapshot_dir.display()))?;
    let raft = Raft::new(node_id, config, network, log, sm).await.map_err(|e| e.to_string())?;
    if node_id == GENESIS_NODE_ID && !raft.is_initialized().await.map_err(|e| e.to_string())? {
        let members = BTreeMap::from([(node_id, BasicNode { addr: addr.to_owned() })]);
        raft.initialize(members).await.map_err(|e| e.to_string())?;
    }
    Ok(Started { raft, closed, receiver })
}

/// A started Raft node.
#[allow(missing_debug_implementations, reason = "openraft's Raft has no Debug")]
pub struct Started {
    /// The Raft handle.
    pub raft: Raft,
    /// Reports when the Raft log's file is closed, after a shutdown.
    pub closed: LogClosed,
    /// Where snapshots sent by the leader arrive (`POST` of the Raft snapshot route).
    pub receiver: Arc<SnapshotReceiver>,
}

/// Waits (at most 60 s) until this node leads and has applied every entry in its log, so that
/// block production starts from the true tip after a restart.
pub async fn wait_until_caught_up(raft: &Raft, node_id: u64) -> Result<(), String> {
    raft.wait(Some(std::time::Duration::from_secs(60)))
        .metrics(
            |m| {
                let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
                // The genesis node's metrics may not show the membership it just initialised.
                let alone =
                    voters == [node_id] || (voters.is_empty() && node_id == GENESIS_NODE_ID);
                !alone
                    || (m.current_leader == Some(node_id)
                        && m.last_applied.map(|l| l.index) == m.last_log_index)
            },
            "its whole log applied (and leader, when the only voter)",
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

/// The running Raft node as the HTTP routes reach it: the Raft handle, this node's id and
/// its end of the transport, and the client that forwards submissions to the leader.
pub struct Cluster {
    /// The Raft handle.
    pub raft: Raft,
    /// This node's Raft id.
    pub id: u64,
    /// Opens and seals the signed envelopes of Raft RPCs.
    pub transport: Arc<transport::Transport>,
    /// Forwards submissions to the leader.
    pub http: reqwest::Client,
    /// Turns for receiving Raft bodies (apart from clients' bodies, so that clients cannot
    /// starve replication).
    pub bodies: Arc<crate::limits::BodyGate>,
    /// A fault test's rules for the submissions this node forwards (`medledger up
    /// --fault-rules`); `None` in production.
    pub faults: Option<Arc<faults::Faults>>,
    /// Blob requests already served (a captured one replayed within its window gets nothing).
    pub served_pulls: transport::SeenRequests,
    /// Blocks whose signatures this node checked before applying them.
    pub preverified: PreVerified,
    /// Checks and imports snapshots sent by the leader before Raft is told of them.
    pub snapshots: Arc<SnapshotReceiver>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("id", &self.id).finish_non_exhaustive()
    }
}

/// This node's role, as `GET /v1/cluster` names it.
pub fn role_name(state: openraft::ServerState) -> &'static str {
    match state {
        openraft::ServerState::Leader => "leader",
        openraft::ServerState::Follower => "follower",
        openraft::ServerState::Candidate => "candidate",
        openraft::ServerState::Learner => "learner",
        openraft::ServerState::Shutdown => "shutdown",
    }
}

impl Cluster {
    /// The leader's id and base URL, if this node knows a leader.
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let leader = m.current_leader?;
        let node = m.membership_config.membership().get_node(&leader)?;
        Some((leader, network::base_url(&node.addr)))
    }

    /// Whether the cluster has more than one voter (a one-member cluster behaves as before).
    pub fn is_multi_node(&self) -> bool {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().nth(1).is_some()
    }
}

/// A set of block header hashes ([`PreVerified`]).
pub(crate) type BlockHashes = std::collections::HashSet<Hash>;
