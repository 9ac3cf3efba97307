//! Receiving a snapshot from the leader: the chunks are written to a file as openraft would,
//! but the whole snapshot is checked and imported into the ledger **before** Raft is told it
//! arrived.
//!
//! openraft 0.9, once told of a complete snapshot, purges its log up to the snapshot's last
//! entry at the same time as it asks the state machine to install it. Had the state machine
//! refused the snapshot then (it does not check out, or the disk failed), the node stopped
//! with a log purged past its ledger and could not restart; a crash during a long install left
//! the same hole. Here a refused snapshot never reaches Raft: the node stops (a protocol fault
//! names the sender's breach) with its log and ledger as they were, and restarts from them. A
//! snapshot that checks out is in the ledger, durably, before the log is purged; the state
//! machine's install then only keeps the file (`state_machine.rs`).

use std::{cmp::Ordering, sync::Arc};

use medledger_ledger::Ledger;
use openraft::{
    StorageIOError,
    error::{Fatal, InstallSnapshotError, RaftError},
    network::snapshot_transport::{Chunked, SnapshotTransport, Streaming},
    raft::{InstallSnapshotRequest, InstallSnapshotResponse},
};

use super::{
    Raft, TypeConfig,
    state_machine::{self, ImportLock, Marker, Refused},
};
use crate::storage::StorageFault;

/// This node's receiving end of snapshots (one stream at a time, as openraft's own).
pub struct SnapshotReceiver {
    /// The ledger the snapshot is imported into.
    ledger: Arc<Ledger>,
    /// Where a refused snapshot is reported: the node stops.
    fault: Arc<StorageFault>,
    /// Keeps the import out of the middle of a batch of applied entries.
    import_lock: ImportLock,
    /// The snapshot being received, if any.
    streaming: tokio::sync::Mutex<Option<Streaming<TypeConfig>>>,
}

impl std::fmt::Debug for SnapshotReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReceiver").finish_non_exhaustive()
    }
}

impl SnapshotReceiver {
    /// A receiver importing into `ledger`, reporting refusals to `fault`.
    pub(super) fn new(ledger: Arc<Ledger>, fault: Arc<StorageFault>, lock: ImportLock) -> Self {
        Self { ledger, fault, import_lock: lock, streaming: Default::default() }
    }

    /// Takes one chunk of a snapshot for `raft`. The last one completes it: the snapshot is
    /// checked and imported into the ledger (or refused, and the node stops), then handed to
    /// Raft. The same answers as `Raft::install_snapshot` otherwise.
    pub async fn receive(
        &self,
        raft: &Raft,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
        // A sender behind this node's vote is answered with it and nothing is written (what
        // openraft checks first too; Raft checks the vote again when handed the snapshot).
        let my_vote = raft.metrics().borrow().vote;
        if !matches!(req.vote.partial_cmp(&my_vote), Some(Ordering::Greater | Ordering::Equal)) {
            return Ok(InstallSnapshotResponse { vote: my_vote });
        }
        let vote = req.vote;
        let meta = req.meta.clone();
        let finished = {
            let mut streaming = self.streaming.lock().await;
            Chunked::receive_snapshot(&mut streaming, raft, req).await?
        };
        let Some(snapshot) = finished else {
            return Ok(InstallSnapshotResponse { vote: my_vote });
        };
        let last =
            meta.last_log_id.ok_or_else(|| fatal("a snapshot that covers no entry".to_owned()))?;
        // The import and the hand-over to Raft run to the end together, whatever happens to
        // the connection that brought the snapshot: a ledger imported but never handed over
        // would let the next snapshot skip the checks below.
        let (ledger, lock, fault, raft) =
            (self.ledger.clone(), self.import_lock.clone(), self.fault.clone(), raft.clone());
        let task = tokio::spawn(async move {
            let marker: Marker = (meta.last_log_id, meta.last_membership.clone());
            let file = snapshot.snapshot.try_clone().await.map_err(|e| fatal(e.to_string()))?;
            let file = file.into_std().await;
            let imported = tokio::task::spawn_blocking(move || {
                // A leader of term T holds no entry of a later term: a snapshot claiming one
                // is made up (and would pass for newer than entries this node acknowledged).
                if last.leader_id.term > vote.leader_id().get_term() {
                    let reason = format!(
                        "its last entry {last} is of a later term than its sender's vote {vote}"
                    );
                    return Err(Refused::protocol(reason));
                }
                let mut import = state_machine::hold(&lock);
                // Only a file this receipt imports is recorded (a declined import's record
                // must not vouch for the next file).
                import.clear();
                let ((applied, previous), _) =
                    state_machine::stored_marker_of(&ledger).map_err(Refused::storage)?;
                // A snapshot the ledger has passed is not imported (Raft ignores it unless it
                // declined the one imported before), but it is checked all the same.
                if applied.is_some_and(|a| a.index >= last.index) {
                    state_machine::passed(&ledger, &file, &marker, previous.membership())?;
                    return Ok(false);
                }
                state_machine::import(&ledger, &file, &marker, previous.membership())?;
                // The state machine keeps this file, when Raft hands it over, as imported.
                import.record(&file);
                Ok(true)
            })
            .await
            .map_err(|e| fatal(e.to_string()))?;
            match imported {
                Ok(imported) => {
                    tracing::debug!(imported, last_log_index = last.index, "snapshot received");
                }
                Err(refused) => return Err(fatal(refused.report(&fault, last))),
            }
            let installed =
                raft.install_full_snapshot(vote, snapshot).await.map_err(RaftError::Fatal)?;
            Ok(installed.into())
        });
        task.await.map_err(|e| fatal(e.to_string()))?
    }
}

/// A refusal as the fatal answer the sender gets (the node is stopping).
fn fatal(reason: String) -> RaftError<u64, InstallSnapshotError> {
    let io = StorageIOError::<u64>::write_snapshot(None, openraft::AnyError::error(reason));
    RaftError::Fatal(Fatal::StorageError(io.into()))
}
