//! medledger node: the server. It owns a data directory (ledger, Raft log, node key, vault),
//! runs Raft as a one-member cluster by default, produces blocks from admitted transactions,
//! and serves the HTTP API ([`http`]).
#![warn(missing_docs)]

pub mod admission;
pub mod auth;
mod cases;
pub mod datadir;
mod devices;
mod emergency;
pub mod http;
pub mod janitor;
pub mod metrics;
pub mod producer;
pub mod raft;
mod records;

use std::{future::Future, sync::Arc};

use medledger_ledger::Ledger;
use tokio::{net::TcpListener, sync::mpsc};

pub use datadir::DataDir;

/// The ledger file is fsynced every this many blocks; the Raft log, every block.
pub const LEDGER_FSYNC_EVERY: u32 = 32;

/// Why the node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory is unusable.
    #[error("data directory: {0}")]
    DataDir(String),
    /// The ledger could not be opened (for example, it is corrupt).
    #[error(transparent)]
    Ledger(#[from] medledger_ledger::LedgerError),
    /// Raft failed to start.
    #[error("raft: {0}")]
    Raft(String),
    /// Serving failed.
    #[error("server: {0}")]
    Serve(#[from] std::io::Error),
}

/// Runs a node on `dir`, serving on `listener` until `shutdown` completes. The ledger is
/// checked before anything is served; a corrupt ledger is refused.
pub async fn serve(
    dir: &DataDir,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let started = std::time::Instant::now();
    let ledger = Arc::new(tokio::task::block_in_place(|| Ledger::open(&dir.ledger()))?);
    // Raft's log is fsynced before any block is applied and is re-applied after a crash, so
    // the ledger file need not be fsynced for every block.
    ledger.set_durable_every(LEDGER_FSYNC_EVERY);
    let node_key = dir.node_key()?;
    let vault = medledger_vault::FsVault::open(&dir.vault())
        .map_err(|e| NodeError::DataDir(e.to_string()))?;
    let preverified = raft::PreVerified::default();
    let addr = listener.local_addr()?.to_string();
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(ledger.tip().height);
    let raft =
        raft::start(ledger.clone(), &dir.raft_log(), 1, &addr, preverified.clone(), applied_tx)
            .await
            .map_err(NodeError::Raft)?;
    raft::wait_until_caught_up(&raft, 1).await.map_err(NodeError::Raft)?;
    let (queue_tx, queue_rx) = mpsc::channel(producer::QUEUE);
    let producer = tokio::spawn(producer::run(raft.clone(), ledger.clone(), preverified, queue_rx));
    let janitor = tokio::spawn(janitor::run(
        ledger.clone(),
        vault.clone(),
        applied_rx.clone(),
        dir.janitor_cursor(),
    ));
    let state = http::AppState {
        ledger: ledger.clone(),
        queue: queue_tx,
        node_key: Arc::new(node_key),
        vault: Arc::new(vault),
        metrics: Arc::new(metrics::Metrics::new()),
        replay_guard: Arc::default(),
        denials: Arc::default(),
        limits: Arc::default(),
        pending_keys: Arc::default(),
        applied: applied_rx,
    };
    tracing::info!(
        %addr,
        height = ledger.tip().height,
        log_size = ledger.log_size(),
        startup_ms = started.elapsed().as_millis() as u64,
        "serving"
    );
    axum::serve(listener, http::router(state)).with_graceful_shutdown(shutdown).await?;
    let _ = raft.shutdown().await;
    producer.abort();
    janitor.abort();
    ledger.flush()?;
    Ok(())
}
