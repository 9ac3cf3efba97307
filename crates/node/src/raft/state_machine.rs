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

/// Held while entries are applied and while a snapshot is imported on receipt
/// ([`super::receive`]), so that an import never lands between two entries of one batch: each
/// batch reads the applied marker once, under it, and skips what an import already holds. It
/// keeps which file was last imported on receipt: the only received file the state machine
/// keeps (and serves) without importing it again.
pub(super) type ImportLock = Arc<Mutex<Imported>>;

/// The snapshot file last imported on receipt, held open: its identity on disk (device,
/// inode) cannot pass to another file while it is held, as it could once the file is deleted.
#[derive(Debug, Default)]
pub struct Imported {
    file: Option<fs::File>,
}

impl Imported {
    /// Records `file` as the one imported on receipt.
    pub(super) fn record(&mut self, file: &fs::File) {
        self.file = file.try_clone().ok();
    }

    /// Forgets the file recorded (a receipt that imports nothing).
    pub(super) fn clear(&mut self) {
        self.file = None;
    }

    /// Whether `file` is the one last imported on receipt; forgets it.
    fn take(&mut self, file: &fs::File) -> bool {
        self.file
            .take()
            .is_some_and(|kept| file_id(&kept).is_some_and(|id| Some(id) == file_id(file)))
    }
}

/// A file's identity on disk (device, inode), where the platform tells it.
type FileId = (u64, u64);

fn file_id(file: &fs::File) -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        file.metadata().ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}

/// Takes the [`ImportLock`]; it guards no data a panicking holder could leave half-written.
pub(super) fn hold(lock: &ImportLock) -> std::sync::MutexGuard<'_, Imported> {
    lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The state machine.
#[derive(Debug)]
pub struct StateMachine {
    ledger: Arc<Ledger>,
    /// Shared with the snapshot receiver ([`ImportLock`]).
    import_lock: ImportLock,
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
        import_lock: ImportLock,
    ) -> io::Result<Self> {
        let snapshots = SnapshotDir::open(snapshots)?;
        let stored = ledger.applied_marker().map_err(io::Error::other)?;
        let skipped = match stored.filter(|m| !m.is_empty()) {
            Some(bytes) => decode_marker(&bytes).map_err(io::Error::other)?.1,
            None => Skipped::default(),
        };
        Ok(Self {
            ledger,
            import_lock,
            preverified,
            applied,
            fault,
            snapshots,
            receiving: None,
            skipped,
        })
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
        stored_marker_of(&self.ledger).map(|(m, _)| m).map_err(sm_err)
    }
}

/// The applied marker `ledger` stores, with the blocks skipped since its last applied one.
pub(super) fn stored_marker_of(ledger: &Ledger) -> Result<(Marker, Skipped), String> {
    match ledger.applied_marker().map_err(|e| e.to_string())? {
        Some(bytes) if !bytes.is_empty() => decode_marker(&bytes).map_err(|e| e.to_string()),
        _ => Ok(((None, StoredMembership::default()), Skipped::default())),
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
        let import_lock = self.import_lock.clone();
        let mut results = Vec::new();
        tokio::task::block_in_place(|| {
            // A snapshot imported on receipt may already hold some of these entries; it lands
            // between batches, never inside one (the lock), and the marker is read after it.
            let _import = hold(&import_lock);
            let ((applied, mut membership), skipped) =
                stored_marker_of(&self.ledger).map_err(sm_err)?;
            self.skipped = skipped;
            for entry in entries {
                let log_id = entry.log_id;
                if let Some(a) = applied.filter(|a| log_id.index <= a.index) {
                    // Committed entries are final, so the snapshot holds this one's effect;
                    // unless the entry could not have preceded it, which a true snapshot's
                    // log id rules out (a made-up one would silence this node for good).
                    if log_id.leader_id.term > a.leader_id.term
                        || (log_id.index == a.index && log_id != a)
                    {
                        let reason = format!(
                            "entry {log_id} cannot precede the snapshot installed at {a}: the \
                             snapshot's log id was made up"
                        );
                        tracing::error!(%reason, "refusing an entry");
                        self.fault.report_protocol(reason.clone());
                        return Err(sm_err(reason));
                    }
                    tracing::debug!(index = log_id.index, "entry already in an imported snapshot");
                    results.push(BlockResult::Applied(Vec::new()));
                    continue;
                }
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
                        match self.ledger.apply_sealed_block(&sealed, &signature_ok, &stored) {
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
        let file = snapshot.into_std().await;
        let (ledger, dir, receiving, lock) = (
            self.ledger.clone(),
            self.snapshots.clone(),
            self.receiving.take(),
            self.import_lock.clone(),
        );
        let installed = tokio::task::spawn_blocking(move || {
            let mut import_lock = hold(&lock);
            let imported_on_receipt = import_lock.take(&file);
            // Whether the file handed over is kept as the node's snapshot (else it is removed).
            let (file_kept, built_instead) = (true, false);
            let imported = match stored_marker_of(&ledger).map_err(Refused::storage)? {
                // Received from a peer: checked and imported on receipt (`receive.rs`), before
                // Raft was told and purged its log behind it.
                (stored, skipped) if stored == marker && imported_on_receipt => header_of(&file)
                    .map(|h| Some((h, skipped, file_kept)))
                    .map_err(Refused::storage),
                // The ledger holds this point, but not from this file: the one imported on
                // receipt was declined by Raft and this one, sent again with the same log id,
                // was checked on receipt by its header alone. Its rows were never compared, so
                // it is not kept (nor served): a snapshot built from the ledger is, instead.
                (stored, skipped) if stored == marker => build(&ledger, &dir)
                    .and_then(|published| header_of_path(&published.path))
                    .map(|h| Some((h, skipped, built_instead)))
                    .map_err(Refused::storage),
                // Past it already: Raft declined a snapshot imported on receipt (a newer vote
                // overtook it) and entries were applied on top; committed entries are final,
                // so there is nothing to import, nor to keep, once its tip is one of ours.
                ((Some(applied), previous), _) if applied.index >= last.index => {
                    passed(&ledger, &file, &marker, previous.membership())?;
                    // Raft purged its log up to this snapshot and will serve the current one
                    // to lagging followers: make it one that covers the purged entries.
                    if let Err(e) = build(&ledger, &dir) {
                        tracing::warn!(%e, "rebuilding the snapshot after one the ledger passed");
                    }
                    Ok(None)
                }
                // Handed over by this process (`Raft::install_full_snapshot`).
                ((_, previous), _) => import(&ledger, &file, &marker, previous.membership())
                    .map(|(h, skipped)| Some((h, skipped, file_kept))),
            };
            let (header, skipped, keep_file) = match imported {
                Ok(Some(imported)) => imported,
                Ok(None) => {
                    if let Some(path) = receiving.as_deref().filter(|p| same_file(p, &file)) {
                        let _ = fs::remove_file(path);
                    }
                    return Ok(None);
                }
                Err(e) => {
                    if let Some(path) = receiving.as_deref().filter(|p| same_file(p, &file)) {
                        let _ = fs::remove_file(path);
                    }
                    return Err(e);
                }
            };
            if keep_file {
                keep(&dir, file, receiving.as_deref(), last)?;
            } else if let Some(path) = receiving.as_deref().filter(|p| same_file(p, &file)) {
                let _ = fs::remove_file(path);
            }
            Ok(Some((header, skipped)))
        })
        .await
        .map_err(sm_err)?;
        match installed {
            Ok(None) => {
                tracing::info!(last_log_index = last.index, "the ledger is past the snapshot");
                Ok(())
            }
            Ok(Some((header, skipped))) => {
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
            Err(refused) => Err(sm_err(refused.report(&self.fault, last))),
        }
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let dir = self.snapshots.clone();
        let ledger = self.ledger.clone();
        let newest = tokio::task::spawn_blocking(move || {
            // Snapshots an older medledger wrote are replaced by one built now (a node whose
            // Raft log is purged behind them needs one to serve).
            if dir.remove_outdated()? > 0
                && let Err(e) = build(&ledger, &dir)
            {
                tracing::warn!(error = %e, "no snapshot to replace those of an older format");
            }
            dir.open_newest()
        })
        .await
        .map_err(snapshot_read_err)?
        .map_err(snapshot_read_err)?;
        Ok(newest.map(|(published, file)| Snapshot {
            meta: published.meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}

/// Checks the snapshot in `file` and imports it into `ledger` (the ledger's import checks it
/// against `marker`, the Raft log id and membership announced with it, and the membership
/// against `previous`, the one applied before), returning its header and the blocks skipped
/// before the point it was taken. On refusal the ledger is unchanged. The caller holds the
/// [`ImportLock`].
pub(super) fn import(
    ledger: &Ledger,
    mut file: &fs::File,
    marker: &Marker,
    previous: &openraft::Membership<u64, BasicNode>,
) -> Result<(SnapshotHeader, Skipped), Refused> {
    let started = std::time::Instant::now();
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
    // A block it adds may be timed no further ahead of this node's clock than one that comes
    // as a log entry, and sealed for no term after the entry the snapshot was taken at.
    let bounds = medledger_ledger::ImportBounds {
        latest_ms: super::transport::now_ms().saturating_add(super::blocks::MAX_AHEAD_MS),
        max_term: marker.0.map_or(0, |last| last.leader_id.term),
    };
    let header = ledger.import_snapshot_checked(file, &stored, bounds, members).map_err(|e| {
        let protocol = !matches!(e, SnapshotError::Io(_) | SnapshotError::Ledger(_));
        Refused { reason: e.to_string(), protocol }
    })?;
    tracing::info!(
        height = header.height,
        import_ms = started.elapsed().as_millis() as u64,
        "imported a snapshot into the ledger"
    );
    Ok((header, skipped))
}

/// Checks that the snapshot in `file`, taken at a point this ledger has passed, is what was
/// announced (`marker`), names only admitted members (against `previous`), and ends at one of
/// this ledger's blocks: otherwise its sender broke the protocol.
pub(super) fn passed(
    ledger: &Ledger,
    file: &fs::File,
    marker: &Marker,
    previous: &openraft::Membership<u64, BasicNode>,
) -> Result<(), Refused> {
    let header = header_of(file).map_err(|e| Refused { reason: e.to_string(), protocol: true })?;
    // What it says of itself is what was announced, and its membership names only nodes this
    // ledger admitted, as on import: Raft takes the announced membership on install.
    if !decode_marker(&header.marker).is_ok_and(|(m, _)| m == *marker) {
        let reason = "it carries another applied marker (Raft log id or membership) than \
                      announced"
            .to_owned();
        return Err(Refused { reason, protocol: true });
    }
    let known = ledger.node_members().map_err(Refused::storage)?;
    super::membership::check_snapshot_members(&known, previous, marker.1.membership()).map_err(
        |reason| Refused { reason: format!("its Raft membership: {reason}"), protocol: true },
    )?;
    let ours = match header.height {
        0 => Some(ledger.genesis().hash()),
        h => ledger.header(h).map_err(Refused::storage)?.map(|b| b.hash()),
    };
    if ours == Some(header.tip_hash) {
        return Ok(());
    }
    let reason = match ours {
        Some(_) => format!(
            "its block {} differs from the block {} this ledger applied",
            header.height, header.height
        ),
        None => format!(
            "it ends at height {} although this ledger, past its point in the log, ends at {}",
            header.height,
            ledger.tip().height
        ),
    };
    Err(Refused { reason, protocol: true })
}

/// The header of the snapshot in `file`.
fn header_of(mut file: &fs::File) -> Result<SnapshotHeader, SnapshotError> {
    file.seek(SeekFrom::Start(0))?;
    SnapshotHeader::read_from(&mut io::BufReader::new(file))
}

/// [`header_of`] the file at `path`.
fn header_of_path(path: &std::path::Path) -> Result<SnapshotHeader, String> {
    let file = fs::File::open(path).map_err(|e| e.to_string())?;
    header_of(&file).map_err(|e| e.to_string())
}

/// Keeps the installed snapshot `file` as the current one, covering the log up to `last`.
fn keep(
    dir: &SnapshotDir,
    mut file: fs::File,
    receiving: Option<&std::path::Path>,
    last: LogId<u64>,
) -> Result<(), Refused> {
    // The file Raft handed over is the one this node received, unless the caller installed
    // a snapshot of its own (`Raft::install_full_snapshot`): then keep a copy.
    let temp = match receiving.filter(|p| same_file(p, &file)) {
        Some(path) => path.to_owned(),
        None => {
            let (path, mut copy) = dir.create_temp("receiving").map_err(Refused::storage)?;
            let copied = file
                .seek(SeekFrom::Start(0))
                .and_then(|_| io::copy(&mut file, &mut copy))
                .and_then(|_| copy.sync_all());
            if let Err(e) = copied {
                // A partial copy is no snapshot: removed now rather than at the next start.
                let _ = fs::remove_file(&path);
                return Err(Refused::storage(e));
            }
            path
        }
    };
    dir.publish(&temp, last)
        .map_err(|e| Refused::storage(format!("keeping the installed snapshot: {e}")))?;
    Ok(())
}

/// The applied marker to install a snapshot with, and the blocks skipped before the point it
/// was taken: the marker in its header, skipped blocks and all, when that marker is the one
/// Raft announced (`marker`); otherwise the announced one, which the import refuses as not
/// the snapshot's.
fn stored_marker(file: &mut &fs::File, marker: &Marker) -> Result<(Vec<u8>, Skipped), Refused> {
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
pub(super) struct Refused {
    reason: String,
    protocol: bool,
}

impl Refused {
    /// The snapshot breaks the protocol for `reason`.
    pub(super) fn protocol(reason: String) -> Self {
        Refused { reason, protocol: true }
    }

    pub(super) fn storage(e: impl std::fmt::Display) -> Self {
        Refused { reason: e.to_string(), protocol: false }
    }

    /// Reports the refusal of the snapshot up to `last` to `fault` (the node stops: as a
    /// protocol fault when the snapshot did not check out) and returns the reason.
    pub(super) fn report(self, fault: &crate::storage::StorageFault, last: LogId<u64>) -> String {
        let reason = format!("installing the snapshot up to entry {}: {}", last.index, self.reason);
        if self.protocol {
            fault.report_protocol(reason.clone());
        } else {
            fault.report(reason.clone());
        }
        reason
    }
}

/// Whether the file at `path` is `file`.
fn same_file(path: &std::path::Path, file: &fs::File) -> bool {
    let at_path = fs::File::open(path).ok();
    at_path.and_then(|f| file_id(&f)).is_some_and(|id| Some(id) == file_id(file))
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
    let header = header_of_path(&path)?;
    let meta = snapshots::meta_of(&header, &path).map_err(|e| e.to_string())?;
    Ok(snapshots::Published { path, meta })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file imported on receipt is recognised once, and no other file is: not one
    /// created after it was deleted (which a file system may give the same inode number), not
    /// one after a receipt that imported nothing.
    #[test]
    fn only_the_file_imported_on_receipt_is_taken_for_it_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("receiving.tmp");
        let mut imported = Imported::default();

        let a = fs::File::create(&path).unwrap();
        imported.record(&a);
        assert!(imported.take(&a));
        assert!(!imported.take(&a), "taken twice");

        // Recorded, then the file deleted and another created in its place: never the same.
        for _ in 0..20 {
            let a = fs::File::create(&path).unwrap();
            imported.record(&a);
            drop(a);
            fs::remove_file(&path).unwrap();
            let b = fs::File::create(&path).unwrap();
            assert!(!imported.take(&b), "a new file was taken for the one imported");
            fs::remove_file(&path).unwrap();
        }

        // A receipt that imported nothing forgets the record.
        let a = fs::File::create(&path).unwrap();
        imported.record(&a);
        imported.clear();
        assert!(!imported.take(&a));
    }
}
