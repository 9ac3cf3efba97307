//! Starting from what the last block recorded: [`Ledger::open_checking_in_background`] reads
//! the tip, the digests, the log's chunk roots and its last chunk (work that does not grow with
//! history), checks them against the last block's header, and serves; the checks of
//! [`Ledger::open`] (every block against its transactions, every table against its digest)
//! then run on a thread of their own, over the state as it was at open, and their verdict is
//! [`Ledger::integrity`]. A ledger found corrupt applies no further block.

use std::{
    path::Path,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use medledger_core::{
    Hash,
    block::{BlockHeader, Genesis, Tip},
    merkle::ChunkedLog,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};

use crate::{Ledger, LedgerError, state::*, verify};

/// What the checks of the stored ledger found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Integrity {
    /// The full checks are still running (a ledger opened with
    /// [`Ledger::open_checking_in_background`]).
    Checking,
    /// Every block, the log and every table checked out (at open, or since).
    Verified,
    /// A check failed: why. The ledger applies no further block.
    Corrupt(String),
}

/// The verdict of the full checks, shared with the thread that runs them, and the flag that
/// tells that thread to give up (the ledger is being closed).
#[derive(Debug, Default)]
pub(crate) struct Verdict(OnceLock<Result<(), String>>, AtomicBool);

impl Verdict {
    /// A verdict already given: the checks ran before the ledger was served.
    pub(crate) fn verified() -> Arc<Self> {
        let verdict = Self::default();
        let _ = verdict.0.set(Ok(()));
        Arc::new(verdict)
    }

    /// Tells the checks to give up (they stop within a block or 4,096 rows of a table).
    pub(crate) fn stop(&self) {
        self.1.store(true, Ordering::Relaxed);
    }

    fn stopping(&self) -> bool {
        self.1.load(Ordering::Relaxed)
    }

    pub(crate) fn get(&self) -> Integrity {
        match self.0.get() {
            None => Integrity::Checking,
            Some(Ok(())) => Integrity::Verified,
            Some(Err(why)) => Integrity::Corrupt(why.clone()),
        }
    }

    /// An error if the checks found the ledger corrupt.
    pub(crate) fn refuse_if_corrupt(&self) -> Result<(), LedgerError> {
        match self.0.get() {
            Some(Err(why)) => Err(LedgerError::Corrupt(format!(
                "the check of the stored ledger at start failed, so no block is applied: {why}"
            ))),
            _ => Ok(()),
        }
    }
}

/// What the quick start read, for the full checks to confirm.
struct Expected {
    genesis: Genesis,
    tip: (u64, Hash, u64),
    log_size: u64,
    log_root: Hash,
    chunks: Vec<Hash>,
    digest: Digests,
}

impl Ledger {
    /// Opens a ledger written by this version without reading its history: the stored tip
    /// must be the last block's, and the log's stored chunk roots with its last chunk's
    /// transactions must give that block's log size and root. The full checks of
    /// [`Ledger::open`] then run in the background over the state as it was at open
    /// ([`Ledger::integrity`]); until they pass, the state digests are the ones the last block
    /// stored. A ledger that needs its stored tables completed (written by an earlier version)
    /// is opened by [`Ledger::open`], checks first.
    pub fn open_checking_in_background(path: &Path) -> Result<Self, LedgerError> {
        let db = crate::open_database(path)?;
        if !current(&db)? {
            drop(db);
            return Self::open(path);
        }
        let read = db.begin_read()?;
        let (tip, log, expected) = quick_start(&read)?;
        let (genesis, digest) = (expected.genesis.clone(), expected.digest);
        let verdict = Arc::new(Verdict::default());
        let checker = {
            let verdict = verdict.clone();
            std::thread::Builder::new()
                .name("ledger-check".into())
                .spawn(move || {
                    let stop = || verdict.stopping();
                    // The storage engine panics on some malformed pages rather than failing:
                    // that too is a ledger that did not check out.
                    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        full_check(&read, &expected, &stop)
                    }))
                    .unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(Some(format!("reading the stored ledger failed: {what}")))
                    });
                    match found {
                        Ok(()) => {
                            let _ = verdict.0.set(Ok(()));
                        }
                        Err(Some(why)) => {
                            tracing::error!(%why, "the stored ledger failed its check at start");
                            let _ = verdict.0.set(Err(why));
                        }
                        // Given up: the ledger is being closed, and no verdict is due.
                        Err(None) => {}
                    }
                })
                .map_err(|e| LedgerError::Setup(format!("starting the ledger's check: {e}")))?
        };
        Ok(Ledger::assemble(db, genesis, tip, digest, log, verdict, Some(checker)))
    }

    /// What the checks of the stored ledger found so far.
    pub fn integrity(&self) -> Integrity {
        self.verdict.get()
    }
}

/// Whether the ledger has every table and record this version writes (else [`Ledger::open`]
/// completes them, after its checks).
fn current(db: &Database) -> Result<bool, LedgerError> {
    let read = db.begin_read()?;
    let names: Vec<String> = read.list_tables()?.map(|t| t.name().to_owned()).collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    let others = [META.name(), BLOCKS.name(), TXS.name(), LOG_CHUNKS.name()];
    if !TABLES.iter().all(|t| has(t.name)) || !others.iter().all(|n| has(n)) {
        return Ok(false);
    }
    let meta = read.open_table(META)?;
    for key in [
        META_INDEX_DIGEST,
        META_ERASED_FILLED,
        META_REGISTRATION_BLOBS_FILLED,
        META_LOG_CHUNKS_FILLED,
    ] {
        if meta.get(key)?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn corrupt(why: impl Into<String>) -> LedgerError {
    LedgerError::Corrupt(why.into())
}

/// The tip and log from what the last block recorded, checked against its header: the stored
/// tip is the last block's, and the stored chunk roots with the last chunk's transactions give
/// its log size and root.
fn quick_start(read: &redb::ReadTransaction) -> Result<(Tip, ChunkedLog, Expected), LedgerError> {
    let meta = read.open_table(META)?;
    let entry = |key: &str| -> Result<Vec<u8>, LedgerError> {
        Ok(meta
            .get(key)?
            .ok_or_else(|| corrupt(format!("no {key} in the ledger")))?
            .value()
            .to_vec())
    };
    let genesis: Genesis = decode_entry("genesis", &entry(META_GENESIS)?)?;
    let stored_tip: (u64, Hash, u64) = decode_entry("tip", &entry(META_TIP)?)?;
    let digest = |key: &str| -> Result<[u8; 32], LedgerError> {
        entry(key)?.try_into().map_err(|_| corrupt(format!("the stored {key} is not 32 bytes")))
    };
    let digest = Digests { state: digest(META_STATE_DIGEST)?, index: digest(META_INDEX_DIGEST)? };

    let blocks = read.open_table(BLOCKS)?;
    let (log_size, log_root) = match blocks.last()? {
        None => {
            let at_genesis = Tip::genesis(&genesis);
            if stored_tip != (at_genesis.height, at_genesis.hash, at_genesis.time_ms) {
                return Err(corrupt("the stored tip names a block the ledger does not hold"));
            }
            (0, at_genesis.log.root())
        }
        Some((height, bytes)) => {
            let header: BlockHeader = decode_entry("block header", bytes.value())?;
            if (height.value(), header.height, header.hash(), header.time_ms)
                != (stored_tip.0, stored_tip.0, stored_tip.1, stored_tip.2)
            {
                return Err(corrupt(format!(
                    "the stored tip (height {}) is not the last block (height {})",
                    stored_tip.0,
                    height.value()
                )));
            }
            (header.log_size, header.log_root)
        }
    };

    let mut chunks = Vec::new();
    for row in read.open_table(LOG_CHUNKS)?.iter()? {
        let (chunk, root) = row?;
        if chunk.value() != chunks.len() as u64 {
            return Err(corrupt(format!("the root of log chunk {} is missing", chunks.len())));
        }
        chunks.push(Hash(*root.value()));
    }
    let first = (chunks.len() as u64) << LOG_CHUNK_SHIFT;
    let txs = read.open_table(TXS)?;
    let mut tail = Vec::new();
    for row in txs.range(first..)? {
        let (index, tx) = row?;
        if index.value() != first + tail.len() as u64 {
            return Err(corrupt(format!("transaction {} is missing", first + tail.len() as u64)));
        }
        tail.push(medledger_core::merkle::leaf_hash(tx.value()));
    }
    let log = ChunkedLog::from_parts(LOG_CHUNK_SHIFT, chunks.clone(), tail)
        .filter(|log| log.len() == log_size && log.root() == log_root)
        .ok_or_else(|| {
            corrupt(format!(
                "the stored log chunks and transactions do not give the last block's log \
                 ({log_size} entries)"
            ))
        })?;
    let tip = Tip {
        height: stored_tip.0,
        hash: stored_tip.1,
        time_ms: stored_tip.2,
        log: log.frontier(),
    };
    let expected = Expected { genesis, tip: stored_tip, log_size, log_root, chunks, digest };
    Ok((tip, log, expected))
}

/// The checks of [`Ledger::open`], over the state `read` saw at open, against what the quick
/// start took from it: `Err(Some(why))` if they fail, `Err(None)` if `stop` gave them up.
fn full_check(
    read: &redb::ReadTransaction,
    expected: &Expected,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<(), Option<String>> {
    let failed = |e: LedgerError| match e {
        LedgerError::Stopped => None,
        other => Some(other.to_string()),
    };
    let (chain, digest) = std::thread::scope(|s| {
        let chain =
            s.spawn(|| verify::check_chain_until(read, &expected.genesis, &mut |_, _| {}, stop));
        let digest = verify::state_digest_until(read, stop);
        (chain.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), digest)
    });
    let (tip, log) = chain.map_err(failed)?;
    let digest = digest.map_err(failed)?;
    if (tip.height, tip.hash, tip.time_ms) != expected.tip
        || (log.len(), log.root()) != (expected.log_size, expected.log_root)
        || (0..log.chunks()).map(|c| log.chunk_root(c)).ne(expected.chunks.iter().map(|c| Some(*c)))
    {
        return Err(Some(
            "the block chain does not end at the tip and log the ledger started from".into(),
        ));
    }
    if digest.state != expected.digest.state {
        return Err(Some(
            "the state tables do not match the state digest written with the last block".into(),
        ));
    }
    if digest.index != expected.digest.index {
        return Err(Some(
            "the index tables do not match the index digest written with the last block".into(),
        ));
    }
    Ok(())
}
