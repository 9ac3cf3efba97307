//! The Raft state machine: a thin adapter that hands each committed block to
//! `Ledger::apply_block`, storing the Raft log id and membership atomically with it.
//!
//! Snapshots are the whole ledger ([`medledger_ledger::snapshot`]) in a file under the data
//! directory's `snapshots/` ([`super::snapshots`]): built off the async runtime from one
//! ledger read transaction while blocks keep being applied, and installed by the ledger's
//! checked import (chain, Merkle root and digests must match the snapshot's header, and its
//! Raft log id and membership the ones Raft announced), which either replaces the ledger or
//! refuses and changes nothing.
//!
//! Every block is checked before it is applied ([`super::blocks`]): its seal, its place after
//! the tip, its time, its signatures. A stale block is skipped on every node alike; a block
//! that breaks the protocol stops the node. Signatures are checked once per node: a block
//! this node proposed was built from transactions whose signatures it checked at admission,
//! and its header hash is in [`PreVerified`]; any other block's signatures are checked on all
//! cores.

use std::{
    fs,
    io::{self, Seek, SeekFrom},
    path::PathBuf,
    sync::{Arc, Mutex},
};

use medledger_core::{Hash, encoding, seal::SealedBlock};
use medledger_ledger::{Ledger, LedgerError, SnapshotError, SnapshotHeader};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, storage::RaftStateMachine,
};

use super::{
    BlockHashes, BlockResult, TypeConfig,
    blocks::{Skipped, Verdict},
    snapshots::{self, SnapshotDir},
};

/// Blocks whose signatures this node has checked before applying them: a block it proposed
/// (checked at admission) or one a leader sent it (checked as it arrived, while an earlier
/// block was being applied: `http/raft.rs`). Keyed by header hash, which commits to the
/// transactions (apply checks them against it). The state machine takes a block's entry,
/// waiting for a check that is running, so a signature is normally checked once per node
/// (twice only when a check outlived `CHECK_WAIT`, was forgotten by a full set, or failed).
#[derive(Clone, Debug, Default)]
pub struct PreVerified(Arc<(Mutex<Checks>, std::sync::Condvar)>);

#[derive(Debug, Default)]
struct Checks {
    /// Blocks whose signatures all verified.
    done: BlockHashes,
    /// Blocks being checked now.
    running: BlockHashes,
}

/// At most this many verified blocks are remembered (blocks proposed or received but never
/// applied, e.g. after a change of leader, would otherwise accumulate); past it, the set is
/// emptied, and a block whose entry was lost is simply checked again at apply.
const MAX_REMEMBERED: usize = 4096;

/// How long apply waits for a running check before checking the block itself.
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl PreVerified {
    fn checks(&self) -> std::sync::MutexGuard<'_, Checks> {
        // The sets hold no invariant a panicking holder could break half-way.
        self.0.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes that every signature of block `hash` verified.
    pub fn note(&self, hash: Hash) {
        let mut checks = self.checks();
        if checks.done.len() >= MAX_REMEMBERED {
            checks.done.clear();
        }
        checks.done.insert(hash);
    }

    /// Claims the check of block `hash`: false if it is done or running already.
    pub fn start(&self, hash: Hash) -> bool {
        let mut checks = self.checks();
        !checks.done.contains(&hash) && checks.running.insert(hash)
    }

    /// Ends the check claimed by [`PreVerified::start`]; `all_ok` if every signature verified.
    pub fn finish(&self, hash: Hash, all_ok: bool) {
        {
            let mut checks = self.checks();
            checks.running.remove(&hash);
            if all_ok {
                if checks.done.len() >= MAX_REMEMBERED {
                    checks.done.clear();
                }
                checks.done.insert(hash);
            }
        }
        self.0.1.notify_all();
    }

    /// Whether block `hash` was checked and all its signatures verified (forgetting it),
    /// after waiting for a check that is running. Blocking: call it off the async workers.
    pub fn take(&self, hash: &Hash) -> bool {
        let checks = self.checks();
        let (mut checks, _) = self
            .0
            .1
            .wait_timeout_while(checks, CHECK_WAIT, |c| c.running.contains(hash))
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        checks.done.remove(hash)
    }
}

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
    /// Where snapshots are kept.
    snapshots: SnapshotDir,
    /// The temporary file of the snapshot being received, if any (the last one handed to
    /// Raft: it receives one at a time).
    receiving: Option<PathBuf>,
    /// The blocks skipped since the last one applied (a block built on one is skipped too),
    /// as stored with the applied marker.
    skipped: Skipped,
}

/// What the ledger stores with each applied entry: its Raft log id and the membership.
pub(super) type Marker = (Option<LogId<u64>>, StoredMembership<u64, BasicNode>);

/// The largest stored applied marker read.
const MARKER_LIMIT: usize = 64 * 1024;

/// The applied marker as the ledger stores it: the [`Marker`], then the hashes of the blocks
/// skipped since the last applied one, so that a node restarted (or a snapshot taken) between
/// a skipped block and the block built on it decides that block as every other node does.
pub(super) fn encode_marker(m: &Marker, skipped: &Skipped) -> Vec<u8> {
    encoding::encode(&(m, skipped.hashes()))
}

/// Reads a stored applied marker; one written before skipped blocks were kept has none.
pub(super) fn decode_marker(bytes: &[u8]) -> Result<(Marker, Skipped), encoding::DecodeError> {
    match encoding::decode::<(Marker, Vec<Hash>)>("applied marker", bytes, MARKER_LIMIT) {
        Ok((m, skipped)) => Ok((m, Skipped::from_hashes(skipped))),
        Err(e) => encoding::decode::<Marker>("applied marker", bytes, MARKER_LIMIT)
            .map(|m| (m, Skipped::default()))
            .map_err(|_| e),
    }
}

fn sm_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::<u64>::write_state_machine(openraft::AnyError::error(e.to_string())).into()
}

fn snapshot_read_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::<u64>::read_snapshot(None, openraft::AnyError::error(e.to_string())).into()
}

fn snapshot_write_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::<u64>::write_snapshot(None, openraft::AnyError::error(e.to_string())).into()
}

impl StateMachine {
    /// Wraps `ledger`, keeping snapshots in `snapshots` (created if need be); a failed commit
    /// is reported to `fault`.
    pub fn new(
        ledger: Arc<Ledger>,
        preverified: PreVerified,
        applied: tokio::sync::watch::Sender<u64>,
        fault: Arc<crate::storage::StorageFault>,
        snapshots: &std::path::Path,
    ) -> io::Result<Self> {
        let snapshots = SnapshotDir::open(snapshots)?;
        let stored = ledger.applied_marker().map_err(io::Error::other)?;
        let skipped = match stored.filter(|m| !m.is_empty()) {
            Some(bytes) => decode_marker(&bytes).map_err(io::Error::other)?.1,
            None => Skipped::default(),
        };
        Ok(Self { ledger, preverified, applied, fault, snapshots, receiving: None, skipped })
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
        self.fault.report_protocol(reason.clone());
        sm_err(reason)
    }

    /// A block that breaks the protocol (raft/blocks.rs): the node stops rather than apply
    /// it, naming the proposer, its term and the block.
    fn refuse_block(&self, sealed: &SealedBlock, reason: String) -> StorageError<u64> {
        let (h, seal) = (&sealed.block.header, &sealed.seal);
        tracing::error!(
            %reason,
            height = h.height,
            block = %h.hash(),
            proposer = seal.proposer,
            term = seal.term,
            "refusing a block"
        );
        let reason = format!("refused a block: {reason}");
        self.fault.report_protocol(reason.clone());
        sm_err(reason)
    }

    fn marker(&self) -> Result<Marker, StorageError<u64>> {
        match self.ledger.applied_marker().map_err(sm_err)? {
            Some(bytes) if !bytes.is_empty() => {
                decode_marker(&bytes).map(|(m, _)| m).map_err(sm_err)
            }
            _ => Ok((None, StoredMembership::default())),
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

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
                            .set_applied_marker(&encode_marker(&m, &self.skipped))
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
                            .set_applied_marker(&encode_marker(&m, &self.skipped))
                            .map_err(|e| self.commit_failed("the applied marker", e))?;
                        results.push(BlockResult::Applied(Vec::new()));
                    }
                    EntryPayload::Normal(sealed) => {
                        let block = &sealed.block;
                        let verified = self.preverified.take(&block.header.hash());
                        let m: Marker = (Some(log_id), membership.clone());
                        let now = super::transport::now_ms();
                        let verdict = super::blocks::check(
                            &self.ledger,
                            log_id.leader_id.term,
                            &sealed,
                            &self.skipped,
                            verified,
                            now,
                        )
                        .map_err(|e| self.commit_failed("checking a block", e))?;
                        let signature_ok = match verdict {
                            Verdict::Apply(ok) => ok,
                            Verdict::Skip(reason) => {
                                tracing::warn!(height = block.header.height, %reason, "skipping a block, as every node does");
                                self.skipped.note(block.header.hash());
                                self.ledger
                                    .set_applied_marker(&encode_marker(&m, &self.skipped))
                                    .map_err(|e| self.commit_failed("the applied marker", e))?;
                                results.push(BlockResult::Rejected(reason));
                                continue;
                            }
                            Verdict::Refuse(reason) => {
                                return Err(self.refuse_block(&sealed, reason));
                            }
                        };
                        let applying = std::time::Instant::now();
                        // Applied, the block empties the list of skipped ones.
                        let stored = encode_marker(&m, &Skipped::default());
                        match self.ledger.apply_block(block, &signature_ok, &stored) {
                            Ok(receipts) => {
                                self.skipped.clear();
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
                            // Header fields that do not match the transactions.
                            Err(LedgerError::InvalidBlock(e)) => {
                                return Err(self.refuse_block(&sealed, e.to_string()));
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

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder { ledger: self.ledger.clone(), snapshots: self.snapshots.clone() }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<u64>> {
        // Raft receives one snapshot at a time: one it began before is abandoned.
        if let Some(abandoned) = self.receiving.take() {
            let _ = fs::remove_file(abandoned);
        }
        let (path, file) = self.snapshots.create_temp("receiving").map_err(snapshot_write_err)?;
        self.receiving = Some(path);
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<u64>> {
        let last = meta.last_log_id.ok_or_else(|| sm_err("a snapshot that covers no entry"))?;
        let marker: Marker = (meta.last_log_id, meta.last_membership.clone());
        let (_, previous) = self.marker()?;
        let file = snapshot.into_std().await;
        let (ledger, dir, receiving) =
            (self.ledger.clone(), self.snapshots.clone(), self.receiving.take());
        let installed = tokio::task::spawn_blocking(move || {
            install(&ledger, &dir, file, receiving.as_deref(), &marker, previous.membership(), last)
        })
        .await
        .map_err(sm_err)?;
        match installed {
            Ok((header, skipped)) => {
                tracing::info!(
                    height = header.height,
                    log_size = header.log_size,
                    last_log_index = last.index,
                    "installed a snapshot"
                );
                self.skipped = skipped;
                self.applied.send_replace(header.height);
                Ok(())
            }
            Err(Refused { reason, protocol }) => {
                let reason =
                    format!("installing the snapshot up to entry {}: {reason}", last.index);
                if protocol {
                    self.fault.report_protocol(reason.clone());
                } else {
                    self.fault.report(reason.clone());
                }
                Err(sm_err(reason))
            }
        }
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let dir = self.snapshots.clone();
        let newest = tokio::task::spawn_blocking(move || dir.open_newest())
            .await
            .map_err(snapshot_read_err)?
            .map_err(snapshot_read_err)?;
        Ok(newest.map(|(published, file)| Snapshot {
            meta: published.meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}

/// Installs the received snapshot `file` into `ledger` (checked by the ledger's import against
/// `marker`, the Raft log id and membership announced with it), then keeps it as the current
/// snapshot. On refusal the ledger is unchanged and the file deleted.
fn install(
    ledger: &Ledger,
    dir: &SnapshotDir,
    mut file: fs::File,
    receiving: Option<&std::path::Path>,
    marker: &Marker,
    previous: &openraft::Membership<u64, BasicNode>,
    last: LogId<u64>,
) -> Result<(SnapshotHeader, Skipped), Refused> {
    let started = std::time::Instant::now();
    let imported = (|| {
        file.sync_all().map_err(Refused::storage)?;
        file.seek(SeekFrom::Start(0)).map_err(Refused::storage)?;
        let (stored, skipped) = stored_marker(&mut file, marker)?;
        file.seek(SeekFrom::Start(0)).map_err(Refused::storage)?;
        // The membership it carries names only nodes its own ledger admitted; otherwise it is
        // refused with nothing changed, and the node stops.
        let members = |known: &[medledger_ledger::NodeEntry]| {
            super::membership::check_snapshot_members(known, previous, marker.1.membership())
                .map_err(|reason| format!("its Raft membership: {reason}"))
        };
        let header = ledger.import_snapshot_checked(&file, &stored, members).map_err(|e| {
            let protocol = !matches!(e, SnapshotError::Io(_) | SnapshotError::Ledger(_));
            Refused { reason: e.to_string(), protocol }
        })?;
        Ok((header, skipped))
    })();
    let (header, skipped) = match imported {
        Ok(header) => header,
        Err(e) => {
            if let Some(path) = receiving.filter(|p| same_file(p, &file)) {
                let _ = fs::remove_file(path);
            }
            return Err(e);
        }
    };
    tracing::info!(
        height = header.height,
        import_ms = started.elapsed().as_millis() as u64,
        "imported a snapshot into the ledger"
    );
    // The file Raft handed over is the one this node received, unless the caller installed
    // a snapshot of its own (`Raft::install_full_snapshot`): then keep a copy.
    let temp = match receiving.filter(|p| same_file(p, &file)) {
        Some(path) => path.to_owned(),
        None => {
            let (path, mut copy) = dir.create_temp("receiving").map_err(Refused::storage)?;
            file.seek(SeekFrom::Start(0)).map_err(Refused::storage)?;
            io::copy(&mut file, &mut copy).map_err(Refused::storage)?;
            copy.sync_all().map_err(Refused::storage)?;
            path
        }
    };
    dir.publish(&temp, last)
        .map_err(|e| Refused::storage(format!("keeping the installed snapshot: {e}")))?;
    Ok((header, skipped))
}

/// The applied marker to install a snapshot with, and the blocks skipped before the point it
/// was taken: the marker in its header, skipped blocks and all, when that marker is the one
/// Raft announced (`marker`); otherwise the announced one, which the import refuses as not
/// the snapshot's.
fn stored_marker(file: &mut fs::File, marker: &Marker) -> Result<(Vec<u8>, Skipped), Refused> {
    let header = SnapshotHeader::read_from(file)
        .map_err(|e| Refused { reason: e.to_string(), protocol: true })?;
    Ok(match decode_marker(&header.marker) {
        Ok((m, skipped)) if m == *marker => (header.marker, skipped),
        _ => (encode_marker(marker, &Skipped::default()), Skipped::default()),
    })
}

/// Why a snapshot was not installed: the storage failed, or (`protocol`) the snapshot does
/// not check out, so the leader that sent it broke the protocol.
#[derive(Debug)]
struct Refused {
    reason: String,
    protocol: bool,
}

impl Refused {
    fn storage(e: impl std::fmt::Display) -> Self {
        Refused { reason: e.to_string(), protocol: false }
    }
}

/// Whether the file at `path` is `file`.
fn same_file(path: &std::path::Path, file: &fs::File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (fs::metadata(path), file.metadata()) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, file);
        false
    }
}

/// Builds a snapshot of the ledger as applied now, into `snapshots/`, on a blocking thread
/// (off the async runtime's core threads). Blocks keep being applied meanwhile: the export
/// reads one ledger read transaction.
#[derive(Debug)]
pub struct SnapshotBuilder {
    ledger: Arc<Ledger>,
    snapshots: SnapshotDir,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (ledger, dir) = (self.ledger.clone(), self.snapshots.clone());
        let published = tokio::task::spawn_blocking(move || build(&ledger, &dir))
            .await
            .map_err(snapshot_write_err)?
            .map_err(snapshot_write_err)?;
        let file = tokio::fs::File::open(&published.path).await.map_err(snapshot_read_err)?;
        Ok(Snapshot { meta: published.meta, snapshot: Box::new(file) })
    }
}

/// Writes a snapshot to a temporary file, fsyncs it, makes the ledger durable up to (at least)
/// what the snapshot holds (Raft may purge its log behind the snapshot, and the ledger fsyncs
/// only every few blocks), and publishes it.
fn build(ledger: &Ledger, dir: &SnapshotDir) -> Result<snapshots::Published, String> {
    let started = std::time::Instant::now();
    let (temp, file) = dir.create_temp("building").map_err(|e| e.to_string())?;
    let built = (|| {
        let header = ledger.export_snapshot_to(&file).map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        ledger.flush().map_err(|e| e.to_string())?;
        let (last, _) = snapshots::marker_of(&header).map_err(|e| e.to_string())?;
        let last = last.ok_or("the ledger has applied no Raft entry yet")?;
        Ok::<_, String>((header, last))
    })();
    let (header, last) = match built {
        Ok(built) => built,
        Err(e) => {
            let _ = fs::remove_file(&temp);
            return Err(format!("building a snapshot: {e}"));
        }
    };
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let path = dir.publish(&temp, last).map_err(|e| format!("publishing a snapshot: {e}"))?;
    tracing::info!(
        height = header.height,
        log_size = header.log_size,
        last_log_index = last.index,
        bytes,
        build_ms = started.elapsed().as_millis() as u64,
        "built a snapshot"
    );
    let header = SnapshotHeader::read_from(&mut io::BufReader::new(
        fs::File::open(&path).map_err(|e| e.to_string())?,
    ))
    .map_err(|e| e.to_string())?;
    let meta = snapshots::meta_of(&header, &path).map_err(|e| e.to_string())?;
    Ok(snapshots::Published { path, meta })
}
