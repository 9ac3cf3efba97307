//! The application state every route handler reaches (after openraft's example `app.rs`):
//! committed state, the producer's queue, the vault, the node key, and the node's limits,
//! gauges and guards.

use std::sync::Arc;

use medledger_core::{block::SignedCheckpoint, keys::SigningKey};
use medledger_ledger::Ledger;
use medledger_vault::FsVault;
use tokio::sync::mpsc;

use crate::{metrics::Metrics, producer::Submission};

/// What every handler can reach: one pointer to the node's [`Shared`] state, so that the
/// clones axum makes for every request and middleware layer cost one reference count, not one
/// per field (the per-field counts, shared by every core, showed up at 9 % of the node's CPU
/// under one-transaction-per-request load).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state handlers reach.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The node's state, behind [`AppState`].
#[derive(Debug)]
pub struct Shared {
    /// Committed state.
    pub ledger: Arc<Ledger>,
    /// The block producer's queue.
    pub queue: mpsc::Sender<Submission>,
    /// Signs checkpoints.
    pub node_key: Arc<SigningKey>,
    /// The Raft node: its handle, id and transport.
    pub cluster: Arc<crate::raft::Cluster>,
    /// Sealed blobs.
    pub vault: Arc<FsVault>,
    /// Pulls blobs this node lacks from its peers.
    pub replicas: crate::raft::replicas::Puller,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Nonces of signed requests seen recently.
    pub replay_guard: Arc<crate::auth::ReplayGuard>,
    /// Rate-limited log of refused requests.
    pub denials: Arc<crate::auth::DenialLog>,
    /// Per-signer limits of admission.
    pub limits: Arc<crate::admission::Limits>,
    /// Key changes admitted and not yet committed.
    pub pending_keys: Arc<crate::admission::PendingKeys>,
    /// The height of the last applied block, updated as blocks are applied.
    pub applied: tokio::sync::watch::Receiver<u64>,
    /// Turns true when the node begins to stop; event streams end on it.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Open event streams per account.
    pub event_streams: Arc<crate::limits::EventStreams>,
    /// Turns for batch and blob bodies.
    pub large_bodies: Arc<crate::limits::BodyGate>,
    /// Turns for the other buffered bodies.
    pub small_bodies: Arc<crate::limits::BodyGate>,
    /// Free space of the data directory's file system: writes are refused below the reserve.
    pub disk: Arc<crate::storage::DiskGuard>,
    /// A storage fault that stops the node, once there is one.
    pub fault: Arc<crate::storage::StorageFault>,
}

impl Shared {
    /// A checkpoint of committed state, signed now by the node key.
    pub fn signed_checkpoint(&self) -> SignedCheckpoint {
        self.ledger.checkpoint().sign(&self.node_key)
    }
}
