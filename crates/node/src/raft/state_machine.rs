//! The Raft state machine: a thin adapter that hands each committed block to
//! `Ledger::apply_block`, storing the Raft log id and membership atomically with it.
//!
//! Signatures are checked once per node: a block this node proposed was built from
//! transactions whose signatures it checked at admission, and its header hash is in
//! [`PreVerified`]; any other block's signatures are checked here, on all cores.

use std::{
    io::Cursor,
    sync::{Arc, Mutex},
};

use medledger_core::encoding;
use medledger_ledger::{Ledger, LedgerError, verify_signatures};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, storage::RaftStateMachine,
};

use super::{BlockHashes, BlockResult, TypeConfig};

/// Header hashes of blocks whose signatures this node verified at admission.
pub type PreVerified = Arc<Mutex<BlockHashes>>;

/// The state machine.
#[derive(Debug)]
pub struct StateMachine {
    ledger: Arc<Ledger>,
    preverified: PreVerified,
    /// Told the height after every applied block (wakes event streams).
    applied: tokio::sync::watch::Sender<u64>,
    /// Where a failed commit of the ledger is reported: the node cannot recover from it in
    /// place (its in-memory view may be ahead of the file), so it stops.
    fault: Arc<crate::storage::StorageFault>,
}

/// What the ledger stores with each applied entry: its Raft log id and the membership.
pub(super) type Marker = (Option<LogId<u64>>, StoredMembership<u64, BasicNode>);

fn sm_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::<u64>::write_state_machine(openraft::AnyError::error(e.to_string())).into()
}

impl StateMachine {
    /// Wraps `ledger`; a failed commit is reported to `fault`.
    pub fn new(
        ledger: Arc<Ledger>,
        preverified: PreVerified,
        applied: tokio::sync::watch::Sender<u64>,
        fault: Arc<crate::storage::StorageFault>,
    ) -> Self {
        Self { ledger, preverified, applied, fault }
    }

    /// A failed write to the ledger: reported as a storage fault, and fatal to Raft.
    fn commit_failed(&self, what: &str, e: impl std::fmt::Display) -> StorageError<u64> {
        let reason = format!("committing {what} to the ledger failed: {e}");
        self.fault.report(reason.clone());
        sm_err(reason)
    }

    /// A membership entry no committed transaction asked for: the node stops (Raft's core
    /// turns fatal, and the fault stops the node) rather than follow it.
    fn refuse_membership(&self, reason: String) -> StorageError<u64> {
        tracing::error!(%reason, "refusing a Raft membership entry");
        self.fault.report(reason.clone());
        sm_err(reason)
    }

    fn marker(&self) -> Result<Marker, StorageError<u64>> {
        match self.ledger.applied_marker().map_err(sm_err)? {
            Some(bytes) if !bytes.is_empty() => {
                encoding::decode("applied marker", &bytes, 64 * 1024).map_err(sm_err)
            }
            _ => Ok((None, StoredMembership::default())),
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = NoSnapshots;

    async fn applied_state(&mut self) -> Result<Marker, StorageError<u64>> {
        self.marker()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BlockResult>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let (_, mut membership) = self.marker()?;
        let mut results = Vec::new();
        tokio::task::block_in_place(|| {
            for entry in entries {
                let log_id = entry.log_id;
                match entry.payload {
                    EntryPayload::Blank => {
                        let m: Marker = (Some(log_id), membership.clone());
                        self.ledger
                            .set_applied_marker(&encoding::encode(&m))
                            .map_err(|e| self.commit_failed("the applied marker", e))?;
                        results.push(BlockResult::Applied(Vec::new()));
                    }
                    EntryPayload::Membership(m) => {
                        // Only a committed admission changes membership (raft/membership.rs).
                        super::membership::check_admitted(
                            &self.ledger,
                            membership.membership(),
                            &m,
                        )
                        .map_err(|e| self.refuse_membership(e))?;
                        membership = StoredMembership::new(Some(log_id), m);
                        let m: Marker = (Some(log_id), membership.clone());
                        self.ledger
                            .set_applied_marker(&encoding::encode(&m))
                            .map_err(|e| self.commit_failed("the applied marker", e))?;
                        results.push(BlockResult::Applied(Vec::new()));
                    }
                    EntryPayload::Normal(block) => {
                        let verified = self
                            .preverified
                            .lock()
                            .map_err(|_| sm_err("pre-verified set poisoned"))?
                            .remove(&block.header.hash());
                        let signature_ok = if verified {
                            vec![true; block.txs.len()]
                        } else {
                            verify_signatures(&block.txs, |_| false)
                        };
                        let m: Marker = (Some(log_id), membership.clone());
                        let applying = std::time::Instant::now();
                        match self.ledger.apply_block(&block, &signature_ok, &encoding::encode(&m))
                        {
                            Ok(receipts) => {
                                tracing::debug!(
                                    height = block.header.height,
                                    txs = block.txs.len(),
                                    preverified = verified,
                                    apply_us = applying.elapsed().as_micros() as u64,
                                    "applied"
                                );
                                results.push(BlockResult::Applied(receipts));
                                self.applied.send_replace(block.header.height);
                            }
                            Err(LedgerError::InvalidBlock(e)) => {
                                tracing::warn!(height = block.header.height, error = %e, "skipping a block that does not follow the tip");
                                self.ledger
                                    .set_applied_marker(&encoding::encode(&m))
                                    .map_err(|e| self.commit_failed("the applied marker", e))?;
                                results.push(BlockResult::Rejected(e.to_string()));
                            }
                            Err(e) => {
                                let what = format!("block {}", block.header.height);
                                return Err(self.commit_failed(&what, e));
                            }
                        }
                    }
                }
            }
            Ok(())
        })?;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> NoSnapshots {
        NoSnapshots
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<u64, BasicNode>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        Err(sm_err("installing snapshots is not supported: a one-member cluster never needs one"))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(None)
    }
}

/// Snapshots are not built: the ledger keeps every block (it is an append-only log), the
/// snapshot policy is `Never`, and a one-member cluster has no follower to send one to.
/// Multi-node operation will add snapshot transfer.
#[derive(Debug)]
pub struct NoSnapshots;

impl RaftSnapshotBuilder<TypeConfig> for NoSnapshots {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        Err(sm_err("snapshots are not built by a one-member cluster"))
    }
}
