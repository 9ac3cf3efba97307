//! medledger node: the server. It owns a data directory (ledger, Raft log, node key, vault),
//! runs Raft (a one-member cluster of the genesis node by default; nodes the regulator admits
//! join it), produces blocks from admitted transactions on the leader, and serves the HTTP API
//! ([`http`]) and the Raft RPCs between nodes.
#![warn(missing_docs)]

pub mod admission;
pub mod app;
mod audited;
pub mod auth;
pub mod datadir;
pub mod durable;
pub mod http;
pub mod janitor;
pub mod limits;
pub mod metrics;
pub mod producer;
pub mod quotas;
pub mod raft;
pub mod server;
pub mod storage;
pub mod tls;

use std::{future::Future, sync::Arc};

use medledger_ledger::Ledger;
use tokio::{net::TcpListener, sync::mpsc};

pub use datadir::DataDir;
pub use server::Limits;

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
    /// The fault rules file given for a fault test cannot be used.
    #[error(transparent)]
    FaultRules(#[from] raft::faults::FaultRulesError),
    /// Serving failed.
    #[error("server: {0}")]
    Serve(#[from] std::io::Error),
    /// The Raft log or the ledger could not be written or fsynced: the node stopped rather than
    /// go on without durable storage. Restart it once the storage is repaired; it recovers
    /// every acknowledged transaction from its Raft log.
    #[error(
        "storage fault, the node stopped: {0}; repair the storage (free space, check the disk) and restart the node, which recovers from its Raft log"
    )]
    StorageFault(String),
    /// The leader sent a block or membership entry that does not check out: the node stopped
    /// rather than diverge from what the ledger's rules allow.
    #[error(
        "protocol fault, the node stopped rather than diverge: {0}; keep this data directory as evidence and tell the consortium (the reason names the proposer and its term) before restarting the node"
    )]
    ProtocolFault(String),
}

/// How a node runs, beyond its data directory and address.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Connection, body, stream and shutdown limits of the HTTP server.
    pub limits: Limits,
    /// Free space kept on the data directory's file system: below it the node refuses new
    /// transactions and uploads (HTTP 507 `disk_full`) until space returns (0: no reserve).
    pub disk_reserve_bytes: u64,
    /// Vault quotas by role.
    pub vault_quotas: quotas::VaultQuotas,
    /// This node's Raft id, as the ledger of the network it joins gave it (`medledger up
    /// --join`). `None`: 1 for the genesis node, else the id this node's own ledger holds for
    /// its key.
    pub node_id: Option<u64>,
    /// Raft entries (blocks) applied between two snapshots of the ledger; the log is purged
    /// behind each ([`raft::SnapshotSettings::every`]).
    pub snapshot_every: u64,
    /// For fault tests only: a file of rules that cut, drop or delay what this node sends to
    /// other nodes, re-read when it changes ([`raft::faults`]). `None` (the default): no fault
    /// injection, and no cost.
    pub fault_rules: Option<std::path::PathBuf>,
    /// Serve HTTPS (TLS 1.3, the certificate bound to the node key; [`tls`]) instead of plain
    /// HTTP. The genesis node's Raft address is then an `https://` URL; admitted nodes give
    /// theirs at admission.
    pub tls: bool,
}

impl Default for NodeOptions {
    /// [`Limits::default`], [`storage::DEFAULT_DISK_RESERVE_BYTES`] and
    /// [`quotas::VaultQuotas::default`].
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            disk_reserve_bytes: storage::DEFAULT_DISK_RESERVE_BYTES,
            vault_quotas: quotas::VaultQuotas::default(),
            node_id: None,
            snapshot_every: raft::SNAPSHOT_EVERY_ENTRIES,
            fault_rules: None,
            tls: false,
        }
    }
}

/// After a storage fault, `/health` reports it for this long before the node stops serving
/// (so that a monitor sees why); then it stops like on a signal.
pub const FAIL_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs a node on `dir` with the default [`NodeOptions`], serving on `listener` until
/// `shutdown` completes. The ledger is checked before anything is served; a corrupt ledger is
/// refused.
pub async fn serve(
    dir: &DataDir,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    serve_with(dir, listener, NodeOptions::default(), shutdown).await
}

/// Runs a node on `dir` under `options`, serving on `listener` until `shutdown` completes or
/// a storage fault stops it ([`NodeError::StorageFault`], after [`FAIL_STOP_GRACE`]); then
/// stops in bounded time: event streams end at once, requests in flight get
/// `limits.shutdown_grace` to finish, Raft stops, and the ledger is synced and closed (not
/// after a storage fault: the restart recovers from the Raft log).
pub async fn serve_with(
    dir: &DataDir,
    listener: TcpListener,
    options: NodeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let started = std::time::Instant::now();
    medledger_tls::install_default_provider();
    let limits = options.limits;
    let _lock = dir.lock()?;
    warn_widened(dir.secure()?);
    let disk = storage::DiskGuard::new(dir.root(), options.disk_reserve_bytes)
        .map(Arc::new)
        .map_err(|e| NodeError::DataDir(format!("{}: {e}", dir.root().display())))?;
    let fault = Arc::new(storage::StorageFault::default());
    // Served from what the last block recorded; the full checks of the stored ledger run in
    // the background and stop the node if they fail (`watch_integrity`).
    let ledger = Arc::new(tokio::task::block_in_place(|| {
        Ledger::open_checking_in_background(&dir.ledger())
    })?);
    // Raft's log is fsynced before any block is applied and is re-applied after a crash, so
    // the ledger file need not be fsynced for every block.
    ledger.set_durable_every(LEDGER_FSYNC_EVERY);
    let integrity_watch = tokio::spawn(watch_integrity(Arc::downgrade(&ledger), fault.clone()));
    let node_key = Arc::new(dir.node_key()?);
    let node_id = match options.node_id {
        Some(id) => id,
        None => own_node_id(&ledger, &node_key)?,
    };
    let vault_config = medledger_vault::VaultConfig {
        quotas: Some(options.vault_quotas.for_ledger(ledger.clone())),
        ..medledger_vault::VaultConfig::default()
    };
    let vault = medledger_vault::FsVault::open_with(&dir.vault(), vault_config)
        .map_err(|e| NodeError::DataDir(e.to_string()))?;
    let preverified = raft::PreVerified::default();
    let addr = match options.tls {
        true => format!("https://{}", listener.local_addr()?),
        false => listener.local_addr()?.to_string(),
    };
    let tls = match options.tls {
        true => Some(
            tls::server_config(&node_key, ledger.clone())
                .map_err(|e| NodeError::DataDir(e.to_string()))?,
        ),
        false => None,
    };
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(ledger.tip().height);
    let transport = Arc::new(
        raft::transport::Transport::new(node_id, node_key.clone(), ledger.clone())
            .https_only(options.tls),
    );
    let faults = match &options.fault_rules {
        Some(path) => Some(raft::faults::Faults::watch(path)?),
        None => None,
    };
    let network = raft::network::Network::new(transport.clone())
        .map_err(NodeError::Raft)?
        .with_faults(faults.clone());
    let raft::Started { raft, closed: log_closed, receiver } = raft::start_with(
        ledger.clone(),
        &dir.raft_log(),
        node_id,
        &addr,
        network,
        preverified.clone(),
        applied_tx,
        fault.clone(),
        raft::SnapshotSettings::every(options.snapshot_every),
    )
    .await
    .map_err(NodeError::Raft)?;
    raft::wait_until_caught_up(&raft, node_id).await.map_err(NodeError::Raft)?;
    let membership = tokio::spawn(raft::membership::run(
        raft.clone(),
        ledger.clone(),
        node_id,
        applied_rx.clone(),
    ));
    let cluster = Arc::new(raft::Cluster {
        raft: raft.clone(),
        id: node_id,
        http: transport.peer_client().map_err(NodeError::Raft)?,
        transport,
        bodies: limits::BodyGate::new(
            limits.max_large_bodies.max(4),
            raft::transport::MAX_APPEND_BYTES,
            limits.body_read_timeout,
        ),
        faults,
        served_pulls: Default::default(),
        preverified: preverified.clone(),
        snapshots: receiver,
    });
    // The Raft log and the vault index may have just been created.
    warn_widened(dir.secure()?);
    let raft_watch = tokio::spawn(raft::report_fatal(raft.clone(), fault.clone()));
    let (queue_tx, queue_rx) = mpsc::channel(producer::QUEUE);
    let proposer = producer::Proposer { id: node_id, key: node_key.clone() };
    let producer =
        tokio::spawn(producer::run(raft.clone(), ledger.clone(), preverified, proposer, queue_rx));
    let replicas = raft::replicas::Puller::new(
        raft.clone(),
        ledger.clone(),
        node_id,
        cluster.transport.clone(),
        vault.clone(),
        cluster.faults.clone(),
        raft::replicas::Writable { disk: disk.clone(), fault: fault.clone() },
    )
    .map_err(NodeError::Raft)?;
    let janitor = tokio::spawn(janitor::run(
        ledger.clone(),
        vault.clone(),
        applied_rx.clone(),
        dir.janitor_cursor(),
        Some(replicas.clone()),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(metrics::Metrics::for_ledger(ledger.clone()));
    let state = app::AppState::new(app::Shared {
        ledger: ledger.clone(),
        queue: queue_tx,
        node_key,
        cluster,
        vault: Arc::new(vault),
        replicas,
        metrics: metrics.clone(),
        replay_guard: Arc::default(),
        denials: Arc::default(),
        limits: Arc::default(),
        pending_keys: Arc::default(),
        applied: applied_rx,
        stopping: stop_rx.clone(),
        event_streams: limits::EventStreams::new(
            limits.max_event_streams_per_account,
            metrics.event_streams.clone(),
        ),
        large_bodies: limits::BodyGate::new(
            limits.max_large_bodies,
            limits::MAX_BATCH_BYTES,
            limits.body_read_timeout,
        ),
        small_bodies: limits::BodyGate::new(
            limits.max_small_bodies,
            4 * medledger_core::tx::MAX_TX_BYTES,
            limits.body_read_timeout,
        ),
        disk,
        fault: fault.clone(),
    });
    tracing::info!(
        %addr,
        height = ledger.tip().height,
        log_size = ledger.log_size(),
        startup_ms = started.elapsed().as_millis() as u64,
        "serving"
    );
    // Stop on the caller's signal, or a while after a storage fault (so that /health says
    // why first).
    let signal = {
        let fault = fault.clone();
        async move {
            tokio::select! {
                () = shutdown => {}
                () = fault.reported() => tokio::time::sleep(FAIL_STOP_GRACE).await,
            }
            tracing::info!("stopping: closing event streams and draining requests in flight");
            let _ = stop_tx.send(true);
        }
    };
    tokio::join!(
        server::run(listener, tls, http::router(state), &limits, metrics, stop_rx),
        signal
    );
    let stopping = std::time::Instant::now();
    let _ = raft.shutdown().await;
    drop(raft);
    producer.abort();
    janitor.abort();
    membership.abort();
    raft_watch.abort();
    integrity_watch.abort();
    let _ = integrity_watch.await;
    let _ = producer.await;
    let _ = janitor.await;
    let _ = membership.await;
    let _ = raft_watch.await;
    // The Raft log's file is closed cleanly only once its last handle (the writer thread's)
    // is dropped: exiting before that left a log `verify` could not open without repair.
    if !log_closed.wait(std::time::Duration::from_secs(10)).await {
        tracing::warn!("the Raft log is still open at exit; every entry in it was fsynced");
    }
    if let Some(reason) = fault.reason() {
        // Nothing more is written after a storage fault, not even the ledger's final fsync:
        // the restart recovers from the Raft log.
        close(ledger).await;
        if fault.is_protocol() {
            return Err(NodeError::ProtocolFault(reason));
        }
        return Err(NodeError::StorageFault(reason));
    }
    ledger.flush()?;
    close(ledger).await;
    tracing::info!(
        stop_ms = stopping.elapsed().as_millis() as u64,
        "stopped cleanly: the Raft log and the ledger are synced"
    );
    Ok(())
}

/// This node's Raft id from its own ledger: 1 for the genesis node, else the id the ledger
/// gave its key at admission.
fn own_node_id(ledger: &Ledger, key: &medledger_core::keys::SigningKey) -> Result<u64, NodeError> {
    let key = key.public_key();
    if key == ledger.genesis().node_key {
        return Ok(raft::GENESIS_NODE_ID);
    }
    if let Some(entry) = ledger.node_member_by_key(&key)? {
        return Ok(entry.id);
    }
    Err(NodeError::DataDir(format!(
        "this node's key {} is not the genesis node's and its ledger does not hold its \
         admission yet: start it with `medledger up --join URL` (after the regulator ran \
         `medledger node admit`)",
        hex::encode(key.0)
    )))
}

/// Waits for the background checks of the stored ledger; a ledger they find corrupt is a
/// storage fault, which stops the node (the ledger itself applies no further block).
/// It holds the ledger weakly, so that a start that fails after the open still closes it.
async fn watch_integrity(ledger: std::sync::Weak<Ledger>, fault: Arc<storage::StorageFault>) {
    loop {
        let Some(integrity) = ledger.upgrade().map(|l| l.integrity()) else { return };
        match integrity {
            medledger_ledger::Integrity::Checking => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            medledger_ledger::Integrity::Verified => {
                tracing::info!(
                    "the stored ledger checked out: every block, the log and every table"
                );
                return;
            }
            medledger_ledger::Integrity::Corrupt(why) => {
                fault.report(format!(
                    "the stored ledger failed its check at start ({why}): it was changed or \
                     damaged while the node was stopped; `medledger verify` names what differs, \
                     and the node starts again once the ledger is restored from a backup"
                ));
                return;
            }
        }
    }
}

/// Drops the last handle on the ledger so that its database is closed cleanly (waiting a
/// little for Raft's tasks to let go of theirs), on a blocking thread: the drop stops the
/// background checks and waits for them to give up.
async fn close(mut ledger: Arc<Ledger>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Arc::try_unwrap(ledger) {
            Ok(last) => {
                let _ = tokio::task::spawn_blocking(move || drop(last)).await;
                return;
            }
            Err(shared) if std::time::Instant::now() < deadline => {
                ledger = shared;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(_) => {
                tracing::warn!("the ledger is still in use at exit; it was synced");
                return;
            }
        }
    }
}

fn warn_widened(paths: Vec<std::path::PathBuf>) {
    for path in paths {
        tracing::warn!(path = %path.display(), "was readable by others; now owner-only");
    }
}
