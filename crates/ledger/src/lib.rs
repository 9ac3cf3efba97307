//! medledger ledger: the deterministic state machine and its durable storage.
//!
//! [`Ledger::apply_block`] is the one way state changes: given a block and the result of each
//! transaction's signature check, it applies the transactions in order and returns their
//! receipts, all in one redb write transaction (fsynced before it returns, unless a caller with
//! its own durable log of blocks chose to fsync less often). It reads no
//! clock, draws no randomness and does no network I/O: every node that applies the same
//! blocks holds the same state. The ledger knows nothing of HTTP or Raft.
#![warn(missing_docs)]

mod access;
mod apply;
pub mod audit;
pub mod cases;
pub mod consent;
pub mod devices;
pub mod emergency;
mod handler;
mod nodes;
pub mod parties;
mod query;
pub mod records;
pub mod registry;
pub mod research;
pub mod snapshot;
pub mod stages;
mod startup;
pub mod state;
pub mod verify;
pub mod visibility;

use std::{
    path::Path,
    sync::{Mutex, RwLock},
};

use medledger_core::{
    Hash,
    block::{BlockError, Genesis, Tip},
    encoding::{self, DecodeError},
    merkle::{ChunkedLog, ProofError},
    tx::Role,
};
use redb::{Database, ReadableDatabase, ReadableTable};

pub use apply::{Simulated, verify_signatures};
pub use nodes::seals::{SealFault, judge_seal};
pub use query::TxRecord;
pub use snapshot::{ImportBounds, SnapshotError, SnapshotHeader};
pub use startup::Integrity;
use state::*;
pub use state::{
    Account, CaseLog, CaseLogEntry, CaseSeal, DoctorEntry, HospitalEntry, MemberEntry, NodeEntry,
    NodeStatus, OrganisationEntry, PatientEntry,
};

/// Why the ledger could not do what was asked. A refused transaction is not an error: it is a
/// receipt. These are failures of the node or its storage.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The storage engine failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The stored ledger does not check out: it was changed outside the node, or the disk
    /// corrupted it. The node refuses to serve it.
    #[error("the stored ledger is corrupt: {0}")]
    Corrupt(String),
    /// A block does not follow the tip.
    #[error("invalid block: {0}")]
    InvalidBlock(#[from] BlockError),
    /// `create` on a directory that already holds a ledger, or `open` on one that holds none.
    #[error("{0}")]
    Setup(String),
    /// A query asked for something out of range.
    #[error("{0}")]
    BadQuery(String),
    /// A long check was given up because its ledger is being closed.
    #[error("the check was stopped: the ledger is being closed")]
    Stopped,
}

macro_rules! storage_error {
    ($($t:ty),*) => {$(
        impl From<$t> for LedgerError {
            fn from(e: $t) -> Self { LedgerError::Storage(e.to_string()) }
        }
    )*};
}
storage_error!(
    redb::SetDurabilityError,
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A proof asked of the log: a size or index outside it is a bad query; a chunk whose stored
/// transactions no longer hash to its recorded root is a corrupt ledger.
impl From<ProofError> for LedgerError {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::ChunkMismatch { .. } => LedgerError::Corrupt(e.to_string()),
            other => LedgerError::BadQuery(other.to_string()),
        }
    }
}

impl From<DecodeError> for LedgerError {
    fn from(e: DecodeError) -> Self {
        LedgerError::Corrupt(e.to_string())
    }
}

/// The writer's view: the chain tip and the state digest after the last applied block.
#[derive(Debug)]
struct WriterState {
    tip: Tip,
    digest: Digests,
    /// Blocks committed without fsync since the last fsynced commit.
    since_durable: u32,
    /// Fsync every this many blocks (1: every block).
    durable_every: u32,
}

/// redb's page cache for the ledger. redb's default (1 GiB) is what a node's memory grew to
/// after about a million transactions; pages beyond this are read from the operating
/// system's file cache, which does not count against the node (docs/benchmarks.md: RSS and
/// throughput at 1 M transactions with each size).
const CACHE_BYTES: usize = 256 * 1024 * 1024;

/// A ledger over a redb database.
pub struct Ledger {
    db: Database,
    genesis: Genesis,
    writer: Mutex<WriterState>,
    /// The tip as last committed, readable while a block or a snapshot's import holds the
    /// writer (an import replays blocks and may hold it for long).
    committed_tip: RwLock<Tip>,
    /// The Merkle log: the roots of its full chunks (stored in `log_chunks`) and the tree above
    /// them, and the leaves of its last chunk; proofs read other leaves back from `txs`.
    log: RwLock<ChunkedLog>,
    /// Where the time of taking blocks goes (the node's metrics).
    stages: stages::StageTimes,
    /// What the checks of the stored ledger found ([`Ledger::integrity`]).
    verdict: std::sync::Arc<startup::Verdict>,
    /// The thread running those checks in the background, if they were left to one.
    checker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Ledger {
    /// Waits for the background checks, which hold a read of the database: a ledger reopened
    /// after this returns is not refused as in use.
    fn drop(&mut self) {
        self.verdict.stop();
        let checker =
            self.checker.get_mut().map(Option::take).unwrap_or_else(|p| p.into_inner().take());
        if let Some(checker) = checker {
            let _ = checker.join();
        }
    }
}

/// Opens the redb database of a ledger, naming the usual reason it is in use.
fn open_database(path: &Path) -> Result<Database, LedgerError> {
    if !path.exists() {
        return Err(LedgerError::Setup(format!("no ledger at {}", path.display())));
    }
    Database::builder().set_cache_size(CACHE_BYTES).open(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::Setup(format!(
            "{} is in use by another process (is a node already running on this data directory?)",
            path.display()
        )),
        other => LedgerError::from(other),
    })
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("chain_id", &self.genesis.chain_id).finish_non_exhaustive()
    }
}

impl Ledger {
    /// Creates a new ledger file at `path` from `genesis`. Refuses if the file exists.
    pub fn create(path: &Path, genesis: Genesis) -> Result<Self, LedgerError> {
        if path.exists() {
            return Err(LedgerError::Setup(format!(
                "{} already exists: refusing to overwrite a ledger",
                path.display()
            )));
        }
        let db = Database::builder().set_cache_size(CACHE_BYTES).create(path)?;
        Self::init(db, genesis)
    }

    /// A ledger held in memory only: for offline replay, tests and benchmarks.
    pub fn in_memory(genesis: Genesis) -> Result<Self, LedgerError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db, genesis)
    }

    fn init(db: Database, genesis: Genesis) -> Result<Self, LedgerError> {
        if genesis.chain_id.is_empty()
            || genesis.chain_id.len() > medledger_core::tx::MAX_CHAIN_ID_LEN
        {
            return Err(LedgerError::Setup("the chain id must be 1 to 64 bytes".into()));
        }
        let tip = Tip::genesis(&genesis);
        let txn = db.begin_write()?;
        let mut digest = Digests::default();
        {
            // Opening the state tables creates them, so that readers never meet a missing one.
            let mut tables = Tables::open(&txn)?;
            let mut state = StateTxn {
                tables: &mut tables,
                digest,
                height: 0,
                time_ms: genesis.time_ms,
                tx_hash: genesis.hash(),
            };
            state.put_account(
                &genesis.regulator(),
                &Account {
                    role: Role::Regulator,
                    key: Some(genesis.regulator_key),
                    encryption_key: genesis.regulator_encryption_key,
                    nonce: 0,
                    authority: None,
                    hospital: None,
                    suspended: false,
                    patient_id: None,
                    created_at: 0,
                },
            )?;
            digest = state.digest;
            let mut meta = txn.open_table(META)?;
            meta.insert(META_GENESIS, encoding::encode(&genesis).as_slice())?;
            meta.insert(
                META_TIP,
                encoding::encode(&(tip.height, tip.hash, tip.time_ms)).as_slice(),
            )?;
            meta.insert(META_STATE_DIGEST, digest.state.as_slice())?;
            meta.insert(META_INDEX_DIGEST, digest.index.as_slice())?;
            meta.insert(META_ERASED_FILLED, [1u8].as_slice())?;
            meta.insert(META_REGISTRATION_BLOBS_FILLED, [1u8].as_slice())?;
            meta.insert(META_LOG_CHUNKS_FILLED, [1u8].as_slice())?;
            txn.open_table(BLOCKS)?;
            txn.open_table(TXS)?;
            txn.open_table(LOG_CHUNKS)?;
        }
        txn.commit()?;
        let log = ChunkedLog::new(LOG_CHUNK_SHIFT);
        Ok(Self::assemble(db, genesis, tip, digest, log, startup::Verdict::verified(), None))
    }

    /// Opens an existing ledger and checks it before anything is served: the block hash chain,
    /// every block's transaction root and log root against the stored transactions, and the
    /// state digest against the stored state tables. A ledger that fails any check is refused
    /// with [`LedgerError::Corrupt`]. (Signatures and a full replay are checked by
    /// [`verify::verify_ledger`], which is slower.)
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let db = open_database(path)?;
        // A ledger written by an older version lacks the newer (empty) state tables.
        let (missing, no_registrations, no_erased, no_registration_blobs) = {
            let read = db.begin_read()?;
            let no_registrations = read.open_table(DOCTORS_BY_REGISTRATION).is_err();
            let meta = read.open_table(META)?;
            let no_erased = meta.get(META_ERASED_FILLED)?.is_none();
            let no_registration_blobs = meta.get(META_REGISTRATION_BLOBS_FILLED)?.is_none();
            (
                no_registrations
                    || read.open_table(ERASED_BLOBS).is_err()
                    || read.open_table(REGISTRATION_BLOBS).is_err()
                    || read.open_table(NETWORK).is_err()
                    || read.open_table(CASE_KEYS).is_err()
                    || read.open_table(CASE_KEY_TXS).is_err()
                    || read.open_table(RESEARCH_READS).is_err()
                    || read.open_table(DEVICE_BLOBS).is_err()
                    || read.open_table(NODE_IDS).is_err(),
                no_registrations,
                no_erased,
                no_registration_blobs,
            )
        };
        if missing {
            let txn = db.begin_write()?;
            {
                let mut tables = Tables::open(&txn)?;
                if no_registrations {
                    // The registration-number index, as the onboardings in order would give it
                    // (later onboardings of a number win).
                    let mut doctors = Vec::new();
                    for row in tables.doctors.iter()? {
                        let (k, v) = row?;
                        let d: DoctorEntry = state::decode_entry("doctor", v.value())?;
                        doctors.push((d.onboarded_at, d.registration_number, *k.value()));
                    }
                    doctors.sort();
                    for (_, number, id) in doctors {
                        let key = state::registration_key(&number);
                        tables.doctors_by_registration.insert(key.as_str(), &id)?;
                    }
                }
            }
            txn.commit()?;
        }
        let read = db.begin_read()?;
        let genesis: Genesis = {
            let meta = read.open_table(META)?;
            let g = meta
                .get(META_GENESIS)?
                .ok_or_else(|| LedgerError::Corrupt("no genesis in the ledger".into()))?;
            decode_entry("genesis", g.value())?
        };
        // The chain (blocks and transactions) and the state tables are checked side by side,
        // in one read transaction, each reading its own tables.
        let (chain, digest) = std::thread::scope(|s| {
            let chain = s.spawn(|| verify::check_chain(&read, &genesis, &mut |_, _| {}));
            let digest = verify::state_digest(&read);
            let chain = chain.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (chain, digest)
        });
        let (tip, log) = chain?;
        let stored_tip: (u64, Hash, u64) = {
            let meta = read.open_table(META)?;
            let t = meta.get(META_TIP)?.ok_or_else(|| LedgerError::Corrupt("no tip".into()))?;
            decode_entry("tip", t.value())?
        };
        if stored_tip != (tip.height, tip.hash, tip.time_ms) {
            return Err(LedgerError::Corrupt(format!(
                "the stored tip (height {}) does not match the block chain (height {})",
                stored_tip.0, tip.height
            )));
        }
        let digest = digest?;
        let stored_state = read
            .open_table(META)?
            .get(META_STATE_DIGEST)?
            .ok_or_else(|| LedgerError::Corrupt("no state digest".into()))?
            .value()
            .to_vec();
        if stored_state != digest.state {
            return Err(LedgerError::Corrupt(
                "the state tables do not match the state digest written with the last block".into(),
            ));
        }
        // Only now that the stored state checked out: a ledger written before erased blobs
        // were kept gets them from its receipts.
        let (read, digest) = if no_erased {
            drop(read);
            let digest = backfill_erased(&db, digest)?;
            (db.begin_read()?, digest)
        } else {
            (read, digest)
        };
        Self::check_index(db, read, genesis, tip, digest, log, no_registration_blobs)
    }

    /// The rest of [`Ledger::open`]: checks the index digest (recording it in a ledger
    /// written before it existed), then fills `registration_blobs` in a ledger written before
    /// that index existed.
    fn check_index(
        db: Database,
        read: redb::ReadTransaction,
        genesis: Genesis,
        tip: Tip,
        digest: Digests,
        log: ChunkedLog,
        no_registration_blobs: bool,
    ) -> Result<Self, LedgerError> {
        let stored_index =
            read.open_table(META)?.get(META_INDEX_DIGEST)?.map(|d| d.value().to_vec());
        drop(read);
        match stored_index {
            Some(stored) if stored != digest.index => {
                return Err(LedgerError::Corrupt(
                    "the index tables do not match the index digest written with the last block"
                        .into(),
                ));
            }
            Some(_) => {}
            None => {
                // A ledger written before the index digest existed: record it now, from the
                // indexes as they are (the state digest above has checked the entries).
                let txn = db.begin_write()?;
                txn.open_table(META)?.insert(META_INDEX_DIGEST, digest.index.as_slice())?;
                txn.commit()?;
            }
        }
        // Only once both digests checked out.
        let digest =
            if no_registration_blobs { backfill_registration_blobs(&db, digest)? } else { digest };
        let chunks_filled =
            db.begin_read()?.open_table(META)?.get(META_LOG_CHUNKS_FILLED)?.is_some();
        if !chunks_filled {
            // A ledger written before `log_chunks`: the walk above has checked every block, so
            // its chunk roots are recorded now.
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(LOG_CHUNKS)?;
                for chunk in 0..log.chunks() {
                    let root = log.chunk_root(chunk).expect("a full chunk has a root");
                    table.insert(chunk, &root.0)?;
                }
                txn.open_table(META)?.insert(META_LOG_CHUNKS_FILLED, [1u8].as_slice())?;
            }
            txn.commit()?;
        }
        Ok(Self::assemble(db, genesis, tip, digest, log, startup::Verdict::verified(), None))
    }

    /// A ledger over `db` at `tip`, with the verdict of its checks and the thread still
    /// running them, if any.
    fn assemble(
        db: Database,
        genesis: Genesis,
        tip: Tip,
        digest: Digests,
        log: ChunkedLog,
        verdict: std::sync::Arc<startup::Verdict>,
        checker: Option<std::thread::JoinHandle<()>>,
    ) -> Self {
        Ledger {
            db,
            genesis,
            committed_tip: RwLock::new(tip.clone()),
            writer: Mutex::new(WriterState { tip, digest, since_durable: 0, durable_every: 1 }),
            log: RwLock::new(log),
            stages: stages::StageTimes::default(),
            verdict,
            checker: Mutex::new(checker),
        }
    }

    /// Cumulative time per stage of taking blocks ([`stages::Stage`]).
    pub fn stages(&self) -> &stages::StageTimes {
        &self.stages
    }

    /// The genesis this ledger started from.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.genesis.chain_id
    }

    /// The chain tip after the last committed block (it does not wait for a block or a
    /// snapshot's import in progress).
    pub fn tip(&self) -> Tip {
        self.committed_tip.read().expect("tip lock poisoned").clone()
    }

    /// The marker stored with the last applied block (the caller's own bookkeeping, e.g. the
    /// Raft log id of the entry that carried it).
    pub fn applied_marker(&self) -> Result<Option<Vec<u8>>, LedgerError> {
        let read = self.db.begin_read()?;
        let meta = read.open_table(META)?;
        Ok(meta.get(META_APPLIED_MARKER)?.map(|v| v.value().to_vec()))
    }
}

impl Ledger {
    /// Lets `apply_block` fsync only every `n` blocks (at least 1). Only for a caller that
    /// keeps its own durable log of the blocks and re-applies them after a crash, as the node
    /// does with its Raft log: a crash then loses at most the last `n - 1` applied blocks from
    /// this file, always back to a consistent state, and the caller re-applies them.
    pub fn set_durable_every(&self, n: u32) {
        self.writer.lock().expect("writer lock poisoned").durable_every = n.max(1);
    }

    /// Makes every applied block durable now (an fsynced commit).
    pub fn flush(&self) -> Result<(), LedgerError> {
        let mut writer = self.writer.lock().expect("writer lock poisoned");
        let txn = self.db.begin_write()?;
        txn.open_table(META)?;
        txn.commit()?;
        writer.since_durable = 0;
        Ok(())
    }

    /// Stores the caller's applied marker without a block (for Raft entries that carry none).
    pub fn set_applied_marker(&self, marker: &[u8]) -> Result<(), LedgerError> {
        self.verdict.refuse_if_corrupt()?;
        let _writer = self.writer.lock().expect("writer lock poisoned");
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(META_APPLIED_MARKER, marker)?;
        txn.commit()?;
        Ok(())
    }
}

/// Fills `registration_blobs` of a ledger written before that index existed from the
/// registrations as they are (what replaying them writes), and records the index digest with
/// those rows and that the fill is done, in one transaction; the digests after it.
fn backfill_registration_blobs(db: &Database, mut digest: Digests) -> Result<Digests, LedgerError> {
    use state::blobs;
    let txn = db.begin_write()?;
    {
        let mut rows: Vec<(Hash, String)> = Vec::new();
        for row in txn.open_table(PATIENTS)?.iter()? {
            let (id, v) = row?;
            let p: PatientEntry = decode_entry("patient", v.value())?;
            rows.extend(blobs::of_patient(medledger_core::ids::PatientId(id.value()), &p));
        }
        for row in txn.open_table(HOSPITALS)?.iter()? {
            let (id, v) = row?;
            let h: HospitalEntry = decode_entry("hospital", v.value())?;
            rows.extend(blobs::of_hospital(&medledger_core::ids::AccountId(*id.value()), &h));
        }
        for row in txn.open_table(DEVICES)?.iter()? {
            let (id, v) = row?;
            let d: DeviceEntry = decode_entry("device", v.value())?;
            rows.extend(blobs::of_device(&medledger_core::ids::AccountId(*id.value()), &d));
        }
        for row in txn.open_table(DEVICE_THRESHOLDS)?.iter()? {
            let (id, v) = row?;
            let t: ThresholdsEntry = decode_entry("thresholds", v.value())?;
            rows.push((t.sealed.blob, blobs::owner::thresholds(&Hash(*id.value()))));
        }
        let mut index = txn.open_table(REGISTRATION_BLOBS)?;
        for (blob, owner) in &rows {
            Digested::new(&mut index, "registration_blobs", &mut digest.index)
                .put(&blob.0, owner.as_str())?;
        }
        let mut meta = txn.open_table(META)?;
        meta.insert(META_INDEX_DIGEST, digest.index.as_slice())?;
        meta.insert(META_REGISTRATION_BLOBS_FILLED, [1u8].as_slice())?;
    }
    txn.commit()?;
    Ok(digest)
}

/// Fills `erased_blobs` of a ledger written before that table existed from the receipts of
/// its erasures (what replaying them writes; a row already there is written again, unchanged),
/// and records the state digest with those rows and that the fill is done, in one
/// transaction; the digests after it.
fn backfill_erased(db: &Database, mut digest: Digests) -> Result<Digests, LedgerError> {
    let txn = db.begin_write()?;
    {
        let blocks = txn.open_table(BLOCKS)?;
        let receipts = txn.open_table(RECEIPTS)?;
        let mut erased = txn.open_table(ERASED_BLOBS)?;
        for row in blocks.iter()? {
            let (height, bytes) = row?;
            let header: medledger_core::block::BlockHeader =
                medledger_core::encoding::decode("block header", bytes.value(), 1024)?;
            let first = header.log_size - u64::from(header.tx_count);
            for receipt in receipts.range(first..header.log_size)? {
                let outcome: medledger_core::block::Outcome =
                    decode_entry("receipt", receipt?.1.value())?;
                if let medledger_core::block::Outcome::Applied {
                    created: Some(medledger_core::block::Created::Erased { blobs, .. }),
                } = outcome
                {
                    for blob in blobs {
                        Digested::new(&mut erased, "erased_blobs", &mut digest.state)
                            .put(&blob.0, height.value())?;
                    }
                }
            }
        }
        let mut meta = txn.open_table(META)?;
        meta.insert(META_STATE_DIGEST, digest.state.as_slice())?;
        meta.insert(META_ERASED_FILLED, [1u8].as_slice())?;
    }
    txn.commit()?;
    Ok(digest)
}
