//! Ledger snapshots: the whole ledger (every block, every transaction and every row of every
//! registered state table) written as one stream from one redb read transaction, and read back
//! into a ledger in one write transaction, checked before it is committed.
//!
//! A node that is far behind (or new) catches up by installing a snapshot instead of replaying
//! every block: [`Ledger::export_snapshot`] writes it while blocks keep being applied (a redb
//! read transaction is a consistent view), [`Ledger::import_snapshot`] replaces the ledger's
//! contents with it, or refuses and changes nothing. Neither holds the snapshot in memory.
//!
//! # Format (version 2)
//!
//! [`MAGIC`], then frames, each `tag: u8 || len: u32 little-endian || payload[len]`:
//!
//! 1. one `HEADER` frame: the [`SnapshotHeader`] (postcard);
//! 2. for each block from height 1 to the header's height: a `BLOCK` frame (the stored header
//!    bytes), a `SEAL` frame (the proposer's stored seal; empty for a block stored without
//!    one), then one `TX` frame per transaction (the stored transaction bytes);
//! 3. for each table of [`TABLES`], in that order: a `TABLE` frame (its name), then one `ROW`
//!    frame per row in strictly ascending key order (`key_len: u32 LE || key || value`);
//! 4. one `END` frame (empty), and nothing after it.
//!
//! Every frame's length is capped by its tag, and the header bounds the number of blocks,
//! transactions and rows, so that a garbled or hostile stream is refused before it makes the
//! importer allocate or write much. The import recomputes the hash chain, every block's
//! transaction root and the log's Merkle root, and commits only if all equal the header's (and
//! the genesis is this ledger's).
//!
//! # What is taken from the sender
//!
//! Only the blocks, and those only as the hash chain binds them: the state is never read from
//! the snapshot's rows. The importer replays every block it has not applied onto its own state,
//! with every signature checked and the pure `apply`, exactly as if the blocks had come as
//! log entries; the snapshot's rows must then be that state row for row, and its digests the
//! replayed state's. So a sender can no more make up state in a snapshot than in the log; what
//! it can do with blocks is what a Raft leader can do with entries. Every block it adds must
//! carry its proposer's seal, judged as a log entry's is ([`crate::judge_seal`]) against the
//! nodes the replayed state had admitted before that block: a made-up block needs an admitted,
//! active node's key, and the seal names that node. The price is the replay: catching up costs
//! what applying the missing blocks costs (a new node applies the whole history), bounded in
//! memory by a block.

use std::io::{self, BufReader, BufWriter, Read, Write};

use medledger_core::{
    Hash,
    block::MAX_BLOCK_TXS,
    block::{BlockHeader, Genesis, Tip},
    encoding, merkle,
    merkle::ChunkedLog,
    tx::SignedTransaction,
};
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use crate::{Ledger, LedgerError, apply::apply_txs, nodes::seals::MAX_SEAL_BYTES, state::*};

/// The first bytes of every snapshot (format version 2: version 1 had no seals).
pub const MAGIC: &[u8; 16] = b"medledger-snap2\n";

const HEADER: u8 = 1;
const BLOCK: u8 = 2;
const TX: u8 = 3;
const TABLE: u8 = 4;
const ROW: u8 = 5;
const END: u8 = 6;
const SEAL: u8 = 7;

/// Largest header frame (the genesis and the caller's marker are its only variable parts).
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest stored block header.
const MAX_BLOCK_HEADER_BYTES: usize = 1024;
/// Largest row frame: a state entry is at most 64 KiB ([`crate::state`]); its key is short.
const MAX_ROW_BYTES: usize = 128 * 1024;
/// Largest table-name frame.
const MAX_TABLE_NAME_BYTES: usize = 256;

/// What a snapshot says it holds: the ledger's identity and tip, the roots and digests its
/// contents must reproduce, and how much there is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// The genesis of the chain (its chain id names the network).
    pub genesis: Genesis,
    /// Height of the last block.
    pub height: u64,
    /// Hash of the last block's header (the genesis hash at height 0).
    pub tip_hash: Hash,
    /// Time of the last block.
    pub tip_time_ms: u64,
    /// Transactions in the log.
    pub log_size: u64,
    /// Merkle root of the log.
    pub log_root: Hash,
    /// The state digest (over the [`Cover::State`] tables).
    pub state_digest: [u8; 32],
    /// The index digest (over the [`Cover::Index`] tables).
    pub index_digest: [u8; 32],
    /// Rows in all state tables together.
    pub rows: u64,
    /// The caller's applied marker stored with the last block (the node's Raft log id and
    /// membership); empty if none.
    pub marker: Vec<u8>,
}

impl SnapshotHeader {
    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.genesis.chain_id
    }

    /// Reads the magic and the header at the start of a snapshot (and nothing more).
    pub fn read_from(input: &mut impl Read) -> Result<Self, SnapshotError> {
        let mut frames = FrameReader { input, buf: Vec::new() };
        frames.magic()?;
        frames.header()
    }
}

/// Why a snapshot could not be written or was refused. A refused import changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The stream ended before its end frame.
    #[error("the snapshot is truncated")]
    Truncated,
    /// The stream is not a well-formed snapshot.
    #[error("the snapshot is malformed: {0}")]
    Malformed(String),
    /// A frame, or the whole, is larger than allowed or than its header says.
    #[error("the snapshot is oversized: {0}")]
    Oversized(String),
    /// The snapshot is of another network (or another genesis).
    #[error("the snapshot is of chain {theirs:?}, this ledger is of chain {ours:?}")]
    OtherChain {
        /// Our chain id.
        ours: String,
        /// The snapshot's.
        theirs: String,
    },
    /// The contents do not reproduce what the header says.
    #[error("the snapshot does not check out: {0}")]
    Mismatch(String),
    /// The snapshot does not extend the history this ledger has applied: it would roll back
    /// or rewrite committed blocks.
    #[error("the snapshot does not extend this ledger's history: {0}")]
    Rewrites(String),
    /// Reading or writing the stream failed.
    #[error("snapshot I/O: {0}")]
    Io(#[source] io::Error),
    /// The ledger's storage failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<io::Error> for SnapshotError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            SnapshotError::Truncated
        } else {
            SnapshotError::Io(e)
        }
    }
}

macro_rules! via_ledger_error {
    ($($t:ty),*) => {$(
        impl From<$t> for SnapshotError {
            fn from(e: $t) -> Self { SnapshotError::Ledger(e.into()) }
        }
    )*};
}
via_ledger_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

fn write_frame(out: &mut impl Write, tag: u8, parts: &[&[u8]]) -> io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len).map_err(|_| io::Error::other("a snapshot frame over 4 GiB"))?;
    out.write_all(&[tag])?;
    out.write_all(&len.to_le_bytes())?;
    for p in parts {
        out.write_all(p)?;
    }
    Ok(())
}

/// How far a block a snapshot adds may reach ([`Ledger::import_snapshot_checked`]).
#[derive(Clone, Copy, Debug)]
pub struct ImportBounds {
    /// The latest time a block may carry: the caller's clock and the lead it allows.
    pub latest_ms: u64,
    /// The latest Raft term a block may be sealed for: the term of the log entry the
    /// snapshot was taken at.
    pub max_term: u64,
}

impl ImportBounds {
    /// No bound (a snapshot read outside a network).
    pub const NONE: Self = Self { latest_ms: u64::MAX, max_term: u64::MAX };
}

impl Ledger {
    /// Writes a snapshot of the ledger as committed now to `out` (see the [module
    /// docs](self)), from one read transaction: blocks applied meanwhile are not in it. Checks
    /// the state against the stored digests as it goes (a corrupt ledger is not exported).
    /// Returns the header it wrote. `out` is written in frames; pass a buffered writer.
    pub fn export_snapshot(&self, out: &mut impl Write) -> Result<SnapshotHeader, SnapshotError> {
        let read = self.db.begin_read()?;
        let meta = read.open_table(META)?;
        let get = |key: &str| -> Result<Option<Vec<u8>>, SnapshotError> {
            Ok(meta.get(key)?.map(|v| v.value().to_vec()))
        };
        let corrupt =
            |what: &str| SnapshotError::Ledger(LedgerError::Corrupt(format!("no {what}")));
        let tip: (u64, Hash, u64) =
            decode_entry("tip", &get(META_TIP)?.ok_or_else(|| corrupt("tip"))?)?;
        let state_digest = get(META_STATE_DIGEST)?.ok_or_else(|| corrupt("state digest"))?;
        let index_digest = get(META_INDEX_DIGEST)?.ok_or_else(|| corrupt("index digest"))?;
        let blocks = read.open_table(BLOCKS)?;
        let txs = read.open_table(TXS)?;
        // A ledger that never stored a seal has no table of them.
        let seals = match read.open_table(SEALS) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(LedgerError::from(e).into()),
        };
        let (log_size, log_root) = match blocks.last()? {
            Some((_, bytes)) => {
                let h: BlockHeader = decode_entry("block header", bytes.value())?;
                (h.log_size, h.log_root)
            }
            None => (0, merkle::empty_root()),
        };
        let mut rows = 0;
        for table in TABLES {
            rows += table.len(&read)?;
        }
        let header = SnapshotHeader {
            genesis: self.genesis.clone(),
            height: tip.0,
            tip_hash: tip.1,
            tip_time_ms: tip.2,
            log_size,
            log_root,
            state_digest: state_digest.try_into().map_err(|_| {
                LedgerError::Corrupt("the stored state digest is not 32 bytes".into())
            })?,
            index_digest: index_digest.try_into().map_err(|_| {
                LedgerError::Corrupt("the stored index digest is not 32 bytes".into())
            })?,
            rows,
            marker: get(META_APPLIED_MARKER)?.unwrap_or_default(),
        };
        out.write_all(MAGIC)?;
        write_frame(out, HEADER, &[&encoding::encode(&header)])?;
        let mut tx_rows = txs.iter()?;
        for row in blocks.iter()? {
            let (_, bytes) = row?;
            let h: BlockHeader = decode_entry("block header", bytes.value())?;
            write_frame(out, BLOCK, &[bytes.value()])?;
            let seal = seals.as_ref().map(|s| s.get(h.height)).transpose()?.flatten();
            write_frame(out, SEAL, &[seal.as_ref().map_or(&[][..], |s| s.value())])?;
            for _ in 0..h.tx_count {
                let (_, tx) = tx_rows.next().transpose()?.ok_or_else(|| {
                    LedgerError::Corrupt(format!("block {}: transactions missing", h.height))
                })?;
                write_frame(out, TX, &[tx.value()])?;
            }
        }
        let mut digests = Digests::default();
        for table in TABLES {
            write_frame(out, TABLE, &[table.name.as_bytes()])?;
            let digest = table.export(&read, &mut |k, v| {
                let klen = u32::try_from(k.len()).expect("a redb key is under 4 GiB");
                Ok(write_frame(out, ROW, &[&klen.to_le_bytes(), k, v])?)
            })?;
            xor_into(digests.slot(table.cover), &digest);
        }
        write_frame(out, END, &[])?;
        out.flush()?;
        if digests.state != header.state_digest || digests.index != header.index_digest {
            return Err(LedgerError::Corrupt(
                "the state tables do not match the stored digests: not exported".into(),
            )
            .into());
        }
        Ok(header)
    }

    /// [`Self::export_snapshot`] into a buffered `out`.
    pub fn export_snapshot_to(&self, out: impl Write) -> Result<SnapshotHeader, SnapshotError> {
        let mut out = BufWriter::with_capacity(256 * 1024, out);
        let header = self.export_snapshot(&mut out)?;
        out.into_inner().map_err(|e| SnapshotError::Io(e.into_error()))?;
        Ok(header)
    }

    /// Replaces this ledger's contents with the snapshot read from `input`, in one write
    /// transaction (after a crash the ledger is either the old one or the new one), and reloads
    /// the in-memory view (tip, digests, Merkle log). `marker` is the applied marker the caller
    /// expects the snapshot to carry (its Raft log id and membership; empty for none): it is
    /// stored with the imported state.
    ///
    /// The blocks it adds are replayed onto this ledger's state (every signature checked); its
    /// rows are compared with the result, never written (see the [module docs](self)).
    ///
    /// Refused, with nothing changed, if the snapshot is of another genesis, carries another
    /// marker, does not extend the blocks this ledger has applied (it ends behind them or
    /// differs from one of them), is truncated, malformed or larger than its header says, if
    /// the hash chain, the blocks' roots or the log root recomputed from its contents differ
    /// from its header, or if its rows or its header's digests are not the state that
    /// replaying its blocks gives. Blocks applying meanwhile wait.
    pub fn import_snapshot(
        &self,
        input: impl Read,
        marker: &[u8],
    ) -> Result<SnapshotHeader, SnapshotError> {
        self.import_snapshot_checked(input, marker, ImportBounds::NONE, |_| Ok(()))
    }

    /// [`Ledger::import_snapshot`], also refused (with nothing changed) when a block it adds
    /// is beyond `bounds` (timed after the caller's clock allows, or sealed for a Raft term
    /// after the snapshot's), and when `accept` refuses the nodes of the imported ledger
    /// (every node ever admitted, with its status): what a caller checks the snapshot's
    /// marker against, such as the Raft membership it carries.
    pub fn import_snapshot_checked(
        &self,
        input: impl Read,
        marker: &[u8],
        bounds: ImportBounds,
        accept: impl FnOnce(&[NodeEntry]) -> Result<(), String>,
    ) -> Result<SnapshotHeader, SnapshotError> {
        let ImportBounds { latest_ms, max_term } = bounds;
        // A ledger found damaged refuses (a storage fault, not the sender's): its own rows
        // would not match an honest snapshot's.
        self.verdict.refuse_if_corrupt()?;
        let mut input = BufReader::with_capacity(256 * 1024, input);
        let mut frames = FrameReader { input: &mut input, buf: Vec::new() };
        frames.magic()?;
        let header = frames.header()?;
        if header.genesis != self.genesis {
            return Err(SnapshotError::OtherChain {
                ours: self.genesis.chain_id.clone(),
                theirs: header.genesis.chain_id.clone(),
            });
        }
        if header.marker != marker {
            return Err(SnapshotError::Mismatch(
                "it carries another applied marker (Raft log id or membership) than announced"
                    .into(),
            ));
        }
        let mut writer = self.writer.lock().expect("writer lock poisoned");
        // Committed blocks are final: the snapshot must hold every block this ledger has
        // applied, unchanged, and may only add to them.
        let ours = writer.tip.clone();
        if header.height < ours.height {
            return Err(SnapshotError::Rewrites(format!(
                "it ends at height {}, behind this ledger's tip at {}",
                header.height, ours.height
            )));
        }
        let applied = self.db.begin_read()?;
        let applied = applied.open_table(BLOCKS)?;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        // Dropping `txn` without commit on any error below leaves the ledger as it was.
        txn.delete_table(BLOCKS)?;
        txn.delete_table(TXS)?;
        txn.delete_table(LOG_CHUNKS)?;
        let mut tip = Tip::genesis(&self.genesis);
        let mut log = ChunkedLog::new(LOG_CHUNK_SHIFT);
        let mut leaves: Vec<Hash> = Vec::new();
        // The state is not taken from the sender: the blocks this ledger has not applied are
        // replayed onto its own state, with every signature checked, as if they had come as
        // log entries; the snapshot's rows must then be that state, row for row.
        let mut digests = writer.digest;
        let mut replay: Vec<SignedTransaction> = Vec::new();
        let mut encoded: Vec<Vec<u8>> = Vec::new();
        {
            let mut blocks = txn.open_table(BLOCKS)?;
            let mut txs = txn.open_table(TXS)?;
            let mut chunks = txn.open_table(LOG_CHUNKS)?;
            // Seals of blocks this ledger applied stay its own; those of added blocks are added.
            let mut seals = txn.open_table(SEALS)?;
            let mut tables = Tables::open(&txn)?;
            while tip.height < header.height {
                let bytes = frames.expect(BLOCK, MAX_BLOCK_HEADER_BYTES, "a block")?;
                let h: BlockHeader =
                    encoding::decode("block header", bytes, MAX_BLOCK_HEADER_BYTES)
                        .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
                if encoding::encode(&h) != bytes {
                    return Err(SnapshotError::Malformed(format!(
                        "block {} is not canonically encoded",
                        h.height
                    )));
                }
                // Before its transactions are read: what is held of a block is bounded.
                if h.tx_count as usize > MAX_BLOCK_TXS {
                    return Err(SnapshotError::Oversized(format!(
                        "block {} of {} transactions (at most {MAX_BLOCK_TXS})",
                        h.height, h.tx_count
                    )));
                }
                if h.height <= ours.height
                    && applied.get(h.height)?.is_none_or(|own| own.value() != bytes)
                {
                    return Err(SnapshotError::Rewrites(format!(
                        "its block {} differs from the block {} this ledger applied",
                        h.height, h.height
                    )));
                }
                blocks.insert(h.height, bytes).map_err(LedgerError::from)?;
                let new = h.height > ours.height;
                let seal = frames.expect(SEAL, MAX_SEAL_BYTES, "a block's seal")?;
                if new {
                    // Judged, as a log entry's seal is, against the nodes admitted before it:
                    // the state replayed up to the block before.
                    let at = |fault: String| {
                        SnapshotError::Mismatch(format!("its block {}: {fault}", h.height))
                    };
                    if seal.is_empty() {
                        return Err(at("it carries no seal: no node is named as its proposer \
                                       (a ledger that applied blocks outside a network cannot \
                                       serve them)"
                            .into()));
                    }
                    let decoded = crate::nodes::seals::decode_seal(seal).map_err(|e| {
                        SnapshotError::Malformed(format!("block {}: {e}", h.height))
                    })?;
                    if crate::nodes::seals::encode_seal(&decoded) != seal {
                        return Err(SnapshotError::Malformed(format!(
                            "the seal of block {} is not canonically encoded",
                            h.height
                        )));
                    }
                    // The block before's seal: this ledger's own, or added just before.
                    let previous = crate::nodes::seals::stored_term(&seals, h.height - 1)?;
                    crate::judge_seal(&self.genesis.chain_id, &h, &decoded, previous, |id| {
                        node_by_id(&tables.nodes, &self.genesis, id)
                    })?
                    .map_err(|fault| at(fault.to_string()))?;
                    // A block is sealed for the term of the log entry that carried it, which
                    // is no later than the entry the snapshot was taken at.
                    if decoded.term > max_term {
                        return Err(at(format!(
                            "it is sealed for Raft term {}, after the term {max_term} the \
                             snapshot was taken in",
                            decoded.term
                        )));
                    }
                    seals.insert(h.height, seal).map_err(LedgerError::from)?;
                }
                if log.len() + u64::from(h.tx_count) > header.log_size {
                    return Err(SnapshotError::Oversized(format!(
                        "more transactions than the {} its header says",
                        header.log_size
                    )));
                }
                leaves.clear();
                replay.clear();
                encoded.clear();
                for _ in 0..h.tx_count {
                    let tx =
                        frames.expect(TX, medledger_core::tx::MAX_TX_BYTES, "a transaction")?;
                    txs.insert(log.len() + leaves.len() as u64, tx).map_err(LedgerError::from)?;
                    leaves.push(merkle::leaf_hash(tx));
                    if new {
                        encoded.push(tx.to_vec());
                    }
                }
                tip.check_and_advance(&h, &leaves)
                    .map_err(|e| SnapshotError::Mismatch(e.to_string()))?;
                // What every node refuses of a block that comes as a log entry, it refuses of
                // one that comes in a snapshot: a time too far ahead of its clock, and (below)
                // a transaction whose signature does not verify.
                if new && h.time_ms > latest_ms {
                    return Err(SnapshotError::Mismatch(format!(
                        "its block {} is timed {} ms, after the latest time this node accepts \
                         ({latest_ms} ms)",
                        h.height, h.time_ms
                    )));
                }
                if new {
                    for tx in &encoded {
                        let decoded = SignedTransaction::decode(tx).map_err(|e| {
                            SnapshotError::Malformed(format!(
                                "a transaction of block {}: {e}",
                                h.height
                            ))
                        })?;
                        if decoded.encode() != *tx {
                            return Err(SnapshotError::Malformed(format!(
                                "a transaction of block {} is not canonically encoded",
                                h.height
                            )));
                        }
                        replay.push(decoded);
                    }
                    let signature_ok = crate::verify_signatures(&replay, |_| false);
                    if let Some(i) = signature_ok.iter().position(|ok| !ok) {
                        return Err(SnapshotError::Mismatch(format!(
                            "transaction {i} of its block {} does not have a valid signature: no \
                             honest leader proposes it",
                            h.height
                        )));
                    }
                    apply_txs(
                        &mut tables,
                        &self.genesis,
                        &h,
                        &replay,
                        &encoded,
                        &signature_ok,
                        &mut digests,
                    )?;
                }
                for leaf in &leaves {
                    let chunk = log.chunks();
                    if let Some(root) = log.push(*leaf) {
                        chunks.insert(chunk, &root.0).map_err(LedgerError::from)?;
                    }
                }
            }
        }
        if (tip.height, tip.hash, tip.time_ms, tip.log.len(), tip.log.root())
            != (
                header.height,
                header.tip_hash,
                header.tip_time_ms,
                header.log_size,
                header.log_root,
            )
        {
            return Err(SnapshotError::Mismatch(
                "its blocks do not end at the tip, log size and log root its header names".into(),
            ));
        }
        let mut rows = 0u64;
        for table in TABLES {
            let name = frames.expect(TABLE, MAX_TABLE_NAME_BYTES, "a table")?;
            if name != table.name.as_bytes() {
                return Err(SnapshotError::Malformed(format!(
                    "expected table {:?}, found {:?}",
                    table.name,
                    String::from_utf8_lossy(name)
                )));
            }
            table.check_rows(&txn, &mut || {
                if frames.peek_tag()? != ROW {
                    return Ok(None);
                }
                rows += 1;
                if rows > header.rows {
                    return Err(SnapshotError::Oversized(format!(
                        "more rows than the {} its header says",
                        header.rows
                    )));
                }
                let row = frames.expect(ROW, MAX_ROW_BYTES, "a row")?;
                split_row(row).map(|(k, v)| Some((k.to_vec(), v.to_vec())))
            })?;
        }
        frames.expect(END, 0, "the end")?;
        frames.at_eof()?;
        if rows != header.rows {
            return Err(SnapshotError::Mismatch(format!(
                "it holds {rows} rows, its header says {}",
                header.rows
            )));
        }
        if digests.state != header.state_digest {
            return Err(SnapshotError::Mismatch(
                "its state tables do not match the state digest in its header".into(),
            ));
        }
        if digests.index != header.index_digest {
            return Err(SnapshotError::Mismatch(
                "its index tables do not match the index digest in its header".into(),
            ));
        }
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(
                META_TIP,
                encoding::encode(&(tip.height, tip.hash, tip.time_ms)).as_slice(),
            )
            .map_err(LedgerError::from)?;
            meta.insert(META_STATE_DIGEST, digests.state.as_slice()).map_err(LedgerError::from)?;
            meta.insert(META_INDEX_DIGEST, digests.index.as_slice()).map_err(LedgerError::from)?;
            meta.insert(META_APPLIED_MARKER, marker).map_err(LedgerError::from)?;
            meta.insert(META_LOG_CHUNKS_FILLED, [1u8].as_slice()).map_err(LedgerError::from)?;
        }
        let nodes = all_nodes(&txn.open_table(NODES).map_err(LedgerError::from)?, &self.genesis)?;
        accept(&nodes).map_err(SnapshotError::Mismatch)?;
        txn.commit()?;
        *self.committed_tip.write().expect("tip lock poisoned") = tip.clone();
        writer.tip = tip;
        writer.digest = digests;
        writer.since_durable = 0;
        *self.log.write().expect("log lock poisoned") = log;
        Ok(header)
    }
}

/// Splits a row frame into key and value.
fn split_row(row: &[u8]) -> Result<(&[u8], &[u8]), SnapshotError> {
    let bad = || SnapshotError::Malformed("a row frame is shorter than its key".into());
    let (len, rest) = row.split_first_chunk::<4>().ok_or_else(bad)?;
    let klen = u32::from_le_bytes(*len) as usize;
    if klen > rest.len() {
        return Err(bad());
    }
    Ok(rest.split_at(klen))
}

/// Reads frames, one at a time, into one reused buffer.
struct FrameReader<'a, R: Read> {
    input: &'a mut R,
    buf: Vec<u8>,
}

impl<R: Read> FrameReader<'_, R> {
    fn magic(&mut self) -> Result<(), SnapshotError> {
        let mut magic = [0u8; MAGIC.len()];
        self.input.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(SnapshotError::Malformed("not a medledger snapshot (version 2)".into()));
        }
        Ok(())
    }

    fn header(&mut self) -> Result<SnapshotHeader, SnapshotError> {
        let bytes = self.expect(HEADER, MAX_HEADER_BYTES, "the header")?;
        encoding::decode("snapshot header", bytes, MAX_HEADER_BYTES)
            .map_err(|e| SnapshotError::Malformed(e.to_string()))
    }

    /// The next frame's tag, without consuming it (the frame is then read by `expect`).
    fn peek_tag(&mut self) -> Result<u8, SnapshotError>
    where
        R: io::BufRead,
    {
        let buf = self.input.fill_buf()?;
        buf.first().copied().ok_or(SnapshotError::Truncated)
    }

    /// Reads the next frame, which must be a `tag` frame of at most `max` bytes.
    fn expect(&mut self, tag: u8, max: usize, what: &str) -> Result<&[u8], SnapshotError> {
        let mut head = [0u8; 5];
        self.input.read_exact(&mut head)?;
        if head[0] != tag {
            return Err(SnapshotError::Malformed(format!(
                "expected {what} (frame {tag}), found frame {}",
                head[0]
            )));
        }
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > max {
            return Err(SnapshotError::Oversized(format!("{what} of {len} bytes (at most {max})")));
        }
        self.buf.resize(len, 0);
        self.input.read_exact(&mut self.buf)?;
        Ok(&self.buf)
    }

    fn at_eof(&mut self) -> Result<(), SnapshotError> {
        let mut byte = [0u8; 1];
        match self.input.read(&mut byte)? {
            0 => Ok(()),
            _ => Err(SnapshotError::Malformed("bytes follow its end".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Round trips, and every kind of tampering refused with the target unchanged.

    use std::path::Path;

    use medledger_core::{
        block::{Block, BlockError, Genesis, Outcome, Receipt, Tip},
        ids::AccountId,
        keys,
        keys::{DecryptionKey, SigningKey},
        seal::{BlockSeal, SealedBlock},
        tx::{AdmitHospital, NodeTx, RegistryTx, SealedRef, Transaction, TxBody},
    };

    use super::*;

    struct Chain {
        genesis: Genesis,
        regulator: SigningKey,
        /// The genesis node's key: it seals every block.
        node: SigningKey,
        tip: Tip,
        nonce: u64,
    }

    impl Chain {
        fn new(chain_id: &str) -> Self {
            let (regulator, node) = (SigningKey::generate(), SigningKey::generate());
            let genesis = Genesis {
                chain_id: chain_id.into(),
                time_ms: 1,
                regulator_key: regulator.public_key(),
                regulator_encryption_key: DecryptionKey::generate().public_key(),
                node_key: node.public_key(),
            };
            let tip = Tip::genesis(&genesis);
            Chain { genesis, regulator, node, tip, nonce: 0 }
        }

        /// `block` sealed by the genesis node (node 1), in term 1.
        fn seal(&self, block: &Block) -> SealedBlock {
            SealedBlock::seal(block.clone(), &self.genesis.chain_id, 1, 1, &self.node)
        }

        /// Applies `block` to `ledger` as a node does: sealed, every signature taken as good.
        fn apply(&self, ledger: &Ledger, block: &Block, marker: &[u8]) -> Vec<Receipt> {
            let ok = vec![true; block.txs.len()];
            ledger.apply_sealed_block(&self.seal(block), &ok, marker).unwrap()
        }

        /// The next block: `n` hospital admissions (state rows and index rows).
        fn block(&mut self, n: usize) -> Block {
            self.block_with(n, |_| {})
        }

        /// [`Self::block`], each transaction edited by `edit` after it was signed.
        fn block_with(&mut self, n: usize, edit: impl Fn(&mut SignedTransaction)) -> Block {
            let signer = AccountId::from_initial_key(&self.regulator.public_key());
            let txs = (0..n)
                .map(|_| {
                    self.nonce += 1;
                    let h = SigningKey::generate();
                    Transaction {
                        chain_id: self.genesis.chain_id.clone(),
                        signer,
                        nonce: self.nonce,
                        body: TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
                            key: h.public_key(),
                            encryption_key: DecryptionKey::generate().public_key(),
                            registration_id: format!("GOV-{}", self.nonce),
                            name: format!("Hospital {}", self.nonce),
                            city: "Leeds".into(),
                            specialisation: "general".into(),
                            contact: SealedRef {
                                blob: Hash::of(format!("contact {}", self.nonce).as_bytes()),
                                commitment: Hash::of(b"c"),
                            },
                        })),
                    }
                    .sign(&self.regulator)
                })
                .map(|mut tx| {
                    edit(&mut tx);
                    tx
                })
                .collect();
            self.tip.propose(self.tip.time_ms + 10, txs)
        }

        /// Ledgers in `dir` of this network: a source that applied `blocks` new blocks of
        /// three transactions each, a new one, and a lagging one that applied the first two.
        /// Returns them with the blocks.
        fn source_new_and_lagging(&mut self, dir: &Path, blocks: usize) -> Ledgers {
            let blocks: Vec<Block> = (0..blocks).map(|_| self.block(3)).collect();
            let [source, new, lagging] = ["a", "b", "c"].map(|name| {
                Ledger::create(&dir.join(format!("{name}.redb")), self.genesis.clone()).unwrap()
            });
            for (i, b) in blocks.iter().enumerate() {
                self.apply(&source, b, b"marker");
                if i < 2 {
                    self.apply(&lagging, b, b"old");
                }
            }
            Ledgers { blocks, source, new, lagging }
        }

        /// A ledger at `path` with `blocks` blocks of three transactions each.
        fn ledger(&mut self, path: &Path, blocks: usize) -> Ledger {
            let ledger = Ledger::create(path, self.genesis.clone()).unwrap();
            for _ in 0..blocks {
                let block = self.block(3);
                self.apply(&ledger, &block, b"marker");
            }
            ledger
        }
    }

    /// See [`Chain::source_new_and_lagging`].
    struct Ledgers {
        blocks: Vec<Block>,
        source: Ledger,
        new: Ledger,
        lagging: Ledger,
    }

    fn export(ledger: &Ledger) -> Vec<u8> {
        let mut out = Vec::new();
        ledger.export_snapshot_to(&mut out).unwrap();
        out
    }

    /// A snapshot as (tag, payload) frames, to edit.
    fn frames(snapshot: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut rest = &snapshot[MAGIC.len()..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_le_bytes(rest[1..5].try_into().unwrap()) as usize;
            out.push((rest[0], rest[5..5 + len].to_vec()));
            rest = &rest[5 + len..];
        }
        out
    }

    fn assemble(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (tag, payload) in frames {
            write_frame(&mut out, *tag, &[payload]).unwrap();
        }
        out
    }

    /// Edits the header frame.
    fn with_header(frames: &mut [(u8, Vec<u8>)], edit: impl FnOnce(&mut SnapshotHeader)) {
        let mut header: SnapshotHeader =
            encoding::decode("header", &frames[0].1, MAX_HEADER_BYTES).unwrap();
        edit(&mut header);
        frames[0].1 = encoding::encode(&header);
    }

    /// The index of the first row frame of `table`.
    fn first_row_of(frames: &[(u8, Vec<u8>)], table: &str) -> usize {
        let at = frames.iter().position(|(t, p)| *t == TABLE && p == table.as_bytes()).unwrap();
        assert_eq!(frames[at + 1].0, ROW, "table {table} has rows");
        at + 1
    }

    /// What a reader sees of a ledger: tip, log size and root (in memory), state digests
    /// and every stored byte (through a re-export), and the applied marker.
    #[allow(clippy::type_complexity)] // reason: a test's tuple of everything compared
    fn view(l: &Ledger) -> ((u64, Hash, u64, Hash), u64, Hash, Digests, Vec<u8>, Option<Vec<u8>>) {
        let digests = crate::verify::state_digest(&l.db.begin_read().unwrap()).unwrap();
        let root = l.root_at(l.log_size()).unwrap();
        let t = l.tip();
        let tip = (t.height, t.hash, t.time_ms, t.log.root());
        (tip, l.log_size(), root, digests, export(l), l.applied_marker().unwrap())
    }

    #[test]
    fn an_export_imports_into_a_fresh_ledger_as_the_same_ledger_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::new("snap");
        let source = chain.ledger(&dir.path().join("a.redb"), 12);
        let snapshot = export(&source);
        let header = SnapshotHeader::read_from(&mut &snapshot[..]).unwrap();
        assert_eq!((header.height, header.log_size), (12, 36));
        assert_eq!(header.marker, b"marker");

        let target_path = dir.path().join("b.redb");
        let target = Ledger::create(&target_path, chain.genesis.clone()).unwrap();
        let imported = target.import_snapshot(&snapshot[..], b"marker").unwrap();
        assert_eq!(imported, header);
        assert_eq!(view(&target), view(&source));
        assert_eq!(target.hospitals().unwrap().len(), 36);
        // The in-memory view was reloaded: the next block applies on top, proofs work.
        let next = chain.block(2);
        chain.apply(&target, &next, b"m2");
        chain.apply(&source, &next, b"m2");
        assert_eq!(view(&target), view(&source));
        target.inclusion_proof(37, 38).unwrap();
        drop(target);
        crate::verify::verify_ledger(&target_path, &mut |_, _, _| {}).unwrap();
        assert_eq!(Ledger::open(&target_path).unwrap().tip().hash, source.tip().hash);
    }

    #[test]
    fn an_import_extends_a_ledger_that_holds_a_prefix_of_its_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::new("snap");
        let Ledgers { source, lagging, .. } = chain.source_new_and_lagging(dir.path(), 5);
        lagging.import_snapshot(&export(&source)[..], b"marker").unwrap();
        assert_eq!(view(&lagging), view(&source));
    }

    #[test]
    fn an_export_taken_while_blocks_are_applied_is_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::new("snap");
        let source = chain.ledger(&dir.path().join("a.redb"), 1);
        let blocks: Vec<Block> = (0..40).map(|_| chain.block(3)).collect();
        let snapshots = std::thread::scope(|s| {
            s.spawn(|| {
                for b in &blocks {
                    chain.apply(&source, b, b"marker");
                }
            });
            (0..10).map(|_| export(&source)).collect::<Vec<_>>()
        });
        for (i, snapshot) in snapshots.iter().enumerate() {
            let path = dir.path().join(format!("t{i}.redb"));
            let target = Ledger::create(&path, chain.genesis.clone()).unwrap();
            target.import_snapshot(&snapshot[..], b"marker").unwrap();
        }
    }

    /// Builds a source ledger of six blocks, a new target of the same network and a lagging
    /// one holding its first two blocks; `tamper` edits the source's snapshot (as frames) and
    /// returns the bytes to import, which both targets must refuse as `expected` says, changing
    /// nothing.
    fn refused(
        tamper: impl Fn(&mut Vec<(u8, Vec<u8>)>) -> Vec<u8>,
        expected: impl Fn(&SnapshotError) -> bool,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::new("snap");
        let Ledgers { source, new, lagging, .. } = chain.source_new_and_lagging(dir.path(), 6);
        let snapshot = export(&source);
        for (which, target) in [("new", &new), ("lagging", &lagging)] {
            let before = view(target);
            let bytes = tamper(&mut frames(&snapshot));
            let err = target.import_snapshot(&bytes[..], b"marker").unwrap_err();
            assert!(expected(&err), "{which} target: unexpected refusal: {err}");
            assert_eq!(view(target), before, "{which} target: a refused import changed it");
        }
    }

    #[test]
    fn a_snapshot_that_rewrites_or_rolls_back_applied_blocks_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::new("snap");
        let source = chain.ledger(&dir.path().join("a.redb"), 6);
        let snapshot = export(&source);
        // A ledger that applied another block 1.
        let forked = Ledger::create(&dir.path().join("b.redb"), chain.genesis.clone()).unwrap();
        forked
            .apply_block(&Tip::genesis(&chain.genesis).propose(5, Vec::new()), &[], b"t")
            .unwrap();
        let before = view(&forked);
        let err = forked.import_snapshot(&snapshot[..], b"marker").unwrap_err();
        assert!(
            matches!(&err, SnapshotError::Rewrites(m) if m.contains("its block 1 differs")),
            "{err}"
        );
        assert_eq!(view(&forked), before);
        // The ledger the snapshot was taken from takes it again: it extends its history ...
        source.import_snapshot(&snapshot[..], b"marker").unwrap();
        // ... until it is ahead of it: importing would roll it back.
        let block = chain.block(3);
        chain.apply(&source, &block, b"marker");
        let before = view(&source);
        let err = source.import_snapshot(&snapshot[..], b"marker").unwrap_err();
        assert!(matches!(&err, SnapshotError::Rewrites(m) if m.contains("behind")), "{err}");
        assert_eq!(view(&source), before);
    }

    fn mismatch(words: &'static str) -> impl Fn(&SnapshotError) -> bool {
        move |e| matches!(e, SnapshotError::Mismatch(m) if m.contains(words))
    }

    #[test]
    fn a_changed_row_is_refused() {
        for (table, words) in [
            ("hospitals", "its table hospitals differs"),
            ("tx_index", "its table tx_index differs"),
        ] {
            refused(
                |f| {
                    let at = first_row_of(f, table);
                    let last = f[at].1.len() - 1;
                    f[at].1[last] ^= 1;
                    assemble(f)
                },
                mismatch(words),
            );
        }
    }

    #[test]
    fn a_dropped_row_is_refused() {
        refused(
            |f| {
                let at = first_row_of(f, "accounts");
                f.remove(at);
                with_header(f, |h| h.rows -= 1);
                assemble(f)
            },
            mismatch("its table accounts differs"),
        );
        // Without adjusting the header's count.
        refused(
            |f| {
                f.remove(first_row_of(f, "receipts"));
                assemble(f)
            },
            mismatch("its table receipts differs"),
        );
        // No row dropped, but a header that counts one more.
        refused(
            |f| {
                with_header(f, |h| h.rows += 1);
                assemble(f)
            },
            mismatch("rows, its header says"),
        );
    }

    /// Adds a receipt for a transaction that does not exist, after the last one.
    fn add_receipt(f: &mut Vec<(u8, Vec<u8>)>) {
        let mut end = first_row_of(f, "receipts");
        while f[end + 1].0 == ROW {
            end += 1;
        }
        let mut row = 8u32.to_le_bytes().to_vec();
        row.extend(1_000_000u64.to_be_bytes());
        row.extend(f[end].1[12..].to_vec());
        f.insert(end + 1, (ROW, row));
    }

    #[test]
    fn an_added_row_is_refused() {
        refused(
            |f| {
                add_receipt(f);
                with_header(f, |h| h.rows += 1);
                assemble(f)
            },
            mismatch("its table receipts differs"),
        );
        // Without adjusting the header's count: refused at the row (before the count, which
        // the rows of later tables would exceed).
        refused(
            |f| {
                add_receipt(f);
                assemble(f)
            },
            mismatch("its table receipts differs"),
        );
        // A row added after the last row without adjusting the count: refused as soon as the
        // count is exceeded, before the row is read.
        refused(
            |f| {
                let last = f.iter().rposition(|(t, _)| *t == ROW).unwrap();
                f.insert(last + 1, f[last].clone());
                assemble(f)
            },
            |e| matches!(e, SnapshotError::Oversized(_)),
        );
        // The same row twice (the digest would cancel it out: XOR).
        refused(
            |f| {
                let at = first_row_of(f, "hospitals");
                f.insert(at, f[at].clone());
                f.insert(at, f[at].clone());
                with_header(f, |h| h.rows += 2);
                assemble(f)
            },
            mismatch("its table hospitals differs"),
        );
    }

    #[test]
    fn a_changed_header_is_refused() {
        refused(
            |f| {
                with_header(f, |h| h.state_digest[0] ^= 1);
                assemble(f)
            },
            mismatch("state digest"),
        );
        refused(
            |f| {
                with_header(f, |h| h.index_digest[0] ^= 1);
                assemble(f)
            },
            mismatch("index digest"),
        );
        refused(
            |f| {
                with_header(f, |h| h.log_root = Hash::of(b"another root"));
                assemble(f)
            },
            mismatch("log root"),
        );
        refused(
            |f| {
                with_header(f, |h| h.marker = b"another raft log id".to_vec());
                assemble(f)
            },
            mismatch("marker"),
        );
    }

    #[test]
    fn a_changed_transaction_or_block_is_refused() {
        refused(
            |f| {
                let at = f.iter().position(|(t, _)| *t == TX).unwrap();
                let mid = f[at].1.len() / 2;
                f[at].1[mid] ^= 1;
                assemble(f)
            },
            |e| matches!(e, SnapshotError::Mismatch(m) if m.contains("tx_root")),
        );
        refused(
            |f| {
                let at = f.iter().position(|(t, _)| *t == BLOCK).unwrap();
                f.remove(at + 1);
                assemble(f)
            },
            |e| matches!(e, SnapshotError::Malformed(_)),
        );
    }

    #[test]
    fn a_truncated_or_garbled_snapshot_is_refused() {
        let cuts = [0, 3, MAGIC.len(), MAGIC.len() + 3, 300, 2000];
        for cut in cuts {
            refused(
                |f| assemble(f)[..cut].to_vec(),
                |e| matches!(e, SnapshotError::Truncated | SnapshotError::Malformed(_)),
            );
        }
        refused(
            |f| {
                let bytes = assemble(f);
                bytes[..bytes.len() - 1].to_vec()
            },
            |e| matches!(e, SnapshotError::Truncated),
        );
        refused(
            |f| {
                let mut bytes = assemble(f);
                bytes.push(0);
                bytes
            },
            |e| matches!(e, SnapshotError::Malformed(m) if m.contains("follow its end")),
        );
        refused(
            |f| {
                let mut bytes = assemble(f);
                bytes[0] ^= 1;
                bytes
            },
            |e| matches!(e, SnapshotError::Malformed(m) if m.contains("not a medledger snapshot")),
        );
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_read() {
        refused(
            |f| {
                let mut bytes = assemble(&f[..first_row_of(f, "accounts")]);
                bytes.push(ROW);
                bytes.extend(u32::MAX.to_le_bytes());
                bytes
            },
            |e| matches!(e, SnapshotError::Oversized(m) if m.contains("4294967295 bytes")),
        );
    }

    /// Edits `ledger`'s `hospitals` table behind its back (`edit` is given the table and its
    /// first row), then stores the digests of the edited tables: a ledger whose snapshot is
    /// made up yet consistent with its own header.
    fn forge(ledger: &Ledger, edit: Edit) {
        let hospitals = table("hospitals");
        let first = hospitals.rows(&ledger.db.begin_read().unwrap()).unwrap().remove(0);
        let txn = ledger.db.begin_write().unwrap();
        edit(&txn, hospitals, first);
        txn.commit().unwrap();
        let digests = crate::verify::state_digest(&ledger.db.begin_read().unwrap()).unwrap();
        let txn = ledger.db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert(META_STATE_DIGEST, digests.state.as_slice()).unwrap();
            meta.insert(META_INDEX_DIGEST, digests.index.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    /// An edit of a table, given its first row (key, value).
    type Edit = fn(&redb::WriteTransaction, &StateTable, (Vec<u8>, Vec<u8>));

    /// The state table registered as `name`.
    fn table(name: &str) -> &'static StateTable {
        TABLES.iter().find(|t| t.name == name).unwrap()
    }

    /// A sender that makes up state (a changed, an added or a deleted row) and a header whose
    /// digests and row count match it is refused by a new ledger and by one holding a prefix
    /// of the blocks: the state is replayed from the blocks, not taken from the rows.
    #[test]
    fn made_up_state_with_a_consistent_header_is_refused() {
        let edits: [(&str, Edit); 3] = [
            ("a changed row", |w, t, (k, mut v)| {
                let last = v.len() - 1;
                v[last] ^= 1;
                t.put_raw(w, &k, &v).unwrap();
            }),
            ("an added row", |w, t, (mut k, v)| {
                k[0] ^= 0xff;
                t.put_raw(w, &k, &v).unwrap();
            }),
            ("a deleted row", |w, t, (k, _)| assert!(t.remove_raw(w, &k).unwrap())),
        ];
        for (what, edit) in edits {
            let dir = tempfile::tempdir().unwrap();
            let mut chain = Chain::new("snap");
            let Ledgers { source, new, lagging, .. } = chain.source_new_and_lagging(dir.path(), 4);
            forge(&source, edit);
            let snapshot = export(&source);
            for target in [&new, &lagging] {
                let before = view(target);
                let err = target.import_snapshot(&snapshot[..], b"marker").unwrap_err();
                assert!(
                    mismatch("its table hospitals differs from the state that replaying")(&err),
                    "{what}: {err}"
                );
                assert_eq!(view(target), before, "{what}: a refused import changed the ledger");
            }
        }
    }

    /// A sender that applied a transaction whose signature does not check (it skipped the
    /// check) sends blocks and state that agree with each other; the importer checks every
    /// signature as it replays and refuses the block, as it would refuse it as a log entry.
    #[test]
    fn a_block_with_a_badly_signed_transaction_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::new("snap");
        let source = chain.ledger(&dir.path().join("a.redb"), 2);
        // Renamed after it was signed: the signature no longer checks.
        let forged = chain.block_with(1, |tx| match &mut tx.tx.body {
            TxBody::Registry(RegistryTx::AdmitHospital(h)) => h.name.push_str(" (renamed)"),
            _ => unreachable!("the chain's blocks are admissions"),
        });
        // The sender takes the admission as if it were signed.
        let applied = chain.apply(&source, &forged, b"marker");
        assert!(matches!(applied[0].outcome, Outcome::Applied { .. }));
        let target = Ledger::create(&dir.path().join("b.redb"), chain.genesis.clone()).unwrap();
        let before = view(&target);
        let err = target.import_snapshot(&export(&source)[..], b"marker").unwrap_err();
        assert!(
            mismatch("transaction 0 of its block 3 does not have a valid signature")(&err),
            "{err}"
        );
        assert_eq!(view(&target), before);
    }

    /// Bounds by a clock alone.
    fn by_clock(latest_ms: u64) -> ImportBounds {
        ImportBounds { latest_ms, ..ImportBounds::NONE }
    }

    /// A block it adds sealed for a Raft term after the one the snapshot was taken in is
    /// refused (no honest leader sealed it before the snapshot's entry); sealed in that very
    /// term, it is taken.
    #[test]
    fn a_block_sealed_for_a_term_after_the_snapshots_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::new("snap");
        let Ledgers { source, lagging: target, .. } = chain.source_new_and_lagging(dir.path(), 4);
        let snapshot = export(&source);
        let term = source.seal(3).unwrap().expect("block 3 is sealed").term;
        let in_term = |max_term| ImportBounds { max_term, ..ImportBounds::NONE };
        let before = view(&target);
        let err =
            target.import_snapshot_checked(&snapshot[..], b"marker", in_term(term - 1), |_| Ok(()));
        let words =
            format!("its block 3: it is sealed for Raft term {term}, after the term {}", term - 1);
        let err = err.unwrap_err();
        assert!(matches!(&err, SnapshotError::Mismatch(m) if m.contains(&words)), "{err}");
        assert_eq!(view(&target), before);
        target
            .import_snapshot_checked(&snapshot[..], b"marker", in_term(term), |_| Ok(()))
            .unwrap();
        assert_eq!(view(&target), view(&source));
    }

    /// A block it adds timed after the latest time the caller accepts is refused; one timed
    /// at it is taken. Blocks the target already applied are not judged by its clock again.
    #[test]
    fn a_block_timed_ahead_of_the_clock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::new("snap");
        let Ledgers { blocks, source, lagging: target, .. } =
            chain.source_new_and_lagging(dir.path(), 4);
        let snapshot = export(&source);
        let last = blocks[3].header.time_ms;
        let before = view(&target);
        let err = target.import_snapshot_checked(
            &snapshot[..],
            b"marker",
            by_clock(last - 1),
            |_| Ok(()),
        );
        let err = err.unwrap_err();
        assert!(mismatch("its block 4 is timed")(&err), "{err}");
        assert_eq!(view(&target), before);
        // Its own blocks 1 and 2 are timed before block 3; a clock between them is enough.
        let at = blocks[3].header.time_ms;
        target.import_snapshot_checked(&snapshot[..], b"marker", by_clock(at), |_| Ok(())).unwrap();
        assert_eq!(view(&target), view(&source));
    }

    /// Gives the bytes up to `open_at`, then says so on `waiting` and gives the rest only
    /// once `gate` opens.
    struct Gated {
        bytes: Vec<u8>,
        pos: usize,
        open_at: usize,
        waiting: std::sync::mpsc::Sender<()>,
        gate: std::sync::mpsc::Receiver<()>,
    }

    impl Read for Gated {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.open_at && self.open_at < self.bytes.len() {
                self.waiting.send(()).unwrap();
                self.gate.recv().unwrap();
                self.open_at = self.bytes.len();
            }
            let n = buf.len().min(self.open_at - self.pos);
            buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    /// An import holds the writer while it replays (for long, on a large ledger); the tip is
    /// read meanwhile, as it was last committed, and is the snapshot's once it commits.
    #[test]
    fn the_tip_is_read_while_an_import_holds_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::new("snap");
        let source = chain.ledger(&dir.path().join("a.redb"), 3);
        let target = Ledger::create(&dir.path().join("b.redb"), chain.genesis.clone()).unwrap();
        let snapshot = export(&source);
        let header_len = u32::from_le_bytes(snapshot[MAGIC.len() + 1..][..4].try_into().unwrap());
        let (waiting, waited) = std::sync::mpsc::channel();
        let (open, gate) = std::sync::mpsc::channel();
        let input = Gated {
            bytes: snapshot,
            pos: 0,
            open_at: MAGIC.len() + 5 + header_len as usize,
            waiting,
            gate,
        };
        std::thread::scope(|s| {
            let import = s.spawn(|| target.import_snapshot(input, b"marker"));
            // The import has read the header and holds the writer, waiting for the blocks.
            waited.recv().unwrap();
            let (tip, read) = std::sync::mpsc::channel();
            let target = &target;
            s.spawn(move || tip.send(target.tip().height).unwrap());
            let during = read.recv_timeout(std::time::Duration::from_secs(10));
            open.send(()).unwrap();
            assert_eq!(during, Ok(0), "the tip was not readable while the import ran");
            import.join().unwrap().unwrap();
        });
        assert_eq!(target.tip().hash, source.tip().hash);
    }

    /// A block whose header matches its transactions' bytes (as a sender that made both up
    /// would send) but one of them is no transaction is refused, with nothing changed.
    #[test]
    fn a_block_of_bytes_that_are_no_transaction_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::new("snap");
        let source = chain.ledger(&dir.path().join("a.redb"), 1);
        let target = Ledger::create(&dir.path().join("b.redb"), chain.genesis.clone()).unwrap();
        let mut f = frames(&export(&source));
        let at = f.iter().position(|(t, _)| *t == BLOCK).unwrap();
        assert_eq!((f[at + 1].0, f[at + 2].0), (SEAL, TX));
        f[at + 2].1 = b"not a transaction".to_vec();
        // The header, its seal and the snapshot's header, made again over the bytes as they
        // now are (by a sender holding the proposer's key).
        let mut h: BlockHeader =
            encoding::decode("block", &f[at].1, MAX_BLOCK_HEADER_BYTES).unwrap();
        let (mut block, mut log) = (merkle::Frontier::new(), merkle::Frontier::new());
        for (_, tx) in &f[at + 2..at + 2 + h.tx_count as usize] {
            block.push(merkle::leaf_hash(tx));
            log.push(merkle::leaf_hash(tx));
        }
        (h.tx_root, h.log_root) = (block.root(), log.root());
        f[at].1 = encoding::encode(&h);
        f[at + 1].1 = encoding::encode(&BlockSeal::sign("snap", 1, 1, &h, &chain.node));
        with_header(&mut f, |s| (s.tip_hash, s.log_root) = (h.hash(), h.log_root));
        let before = view(&target);
        let err = target.import_snapshot(&assemble(&f)[..], b"marker").unwrap_err();
        assert!(
            matches!(&err, SnapshotError::Malformed(m) if m.contains("a transaction of block 1")),
            "{err}"
        );
        assert_eq!(view(&target), before);
    }

    /// A block header that claims more transactions than a block may hold is refused before
    /// any of them is read (what the import holds of a block is bounded).
    #[test]
    fn a_block_claiming_too_many_transactions_is_refused_before_they_are_read() {
        refused(
            |f| {
                let at = f.iter().position(|(t, _)| *t == BLOCK).unwrap();
                let mut h: BlockHeader =
                    encoding::decode("block", &f[at].1, MAX_BLOCK_HEADER_BYTES).unwrap();
                h.tx_count = MAX_BLOCK_TXS as u32 + 1;
                f[at].1 = encoding::encode(&h);
                // Nothing after the header: a reader that went on would find the stream cut.
                assemble(&f[..=at])
            },
            |e| matches!(e, SnapshotError::Oversized(m) if m.contains("block 1 of 8193")),
        );
    }

    /// The index of the seal frame of block `height` (the `BLOCK` frames in order).
    fn seal_of(frames: &[(u8, Vec<u8>)], height: usize) -> usize {
        let at = frames.iter().enumerate().filter(|(_, (t, _))| *t == BLOCK).nth(height - 1);
        let at = at.unwrap().0 + 1;
        assert_eq!(frames[at].0, SEAL);
        at
    }

    /// Every block a snapshot adds must carry its proposer's seal: one made by another key,
    /// one naming a node never admitted, one that seals another block, a garbled one and none
    /// at all are refused by a new and by a lagging target.
    #[test]
    fn a_block_whose_seal_is_not_its_proposers_is_refused() {
        let seal_at = |f: &[(u8, Vec<u8>)], height| -> BlockSeal {
            encoding::decode("seal", &f[seal_of(f, height)].1, MAX_SEAL_BYTES).unwrap()
        };
        let reseal = |f: &mut Vec<(u8, Vec<u8>)>, seal: BlockSeal| {
            let at = seal_of(f, 3);
            f[at].1 = encoding::encode(&seal);
            assemble(f)
        };
        refused(
            |f| {
                let seal = seal_at(f, 3);
                let other = SigningKey::generate().sign(keys::namespace::BLOCK_SEAL, b"x");
                reseal(f, BlockSeal { signature: other, ..seal })
            },
            mismatch("its block 3: its seal does not verify under node 1's key"),
        );
        refused(
            |f| {
                let seal = seal_at(f, 3);
                reseal(f, BlockSeal { proposer: 7, ..seal })
            },
            mismatch("its block 3: it is sealed by node 7, which the ledger never admitted"),
        );
        refused(
            |f| {
                let of_block_4 = seal_at(f, 4);
                reseal(f, of_block_4)
            },
            mismatch("its block 3: its seal does not verify"),
        );
        refused(
            |f| {
                let at = seal_of(f, 3);
                f[at].1 = b"no seal at all".to_vec();
                assemble(f)
            },
            |e| matches!(e, SnapshotError::Malformed(m) if m.contains("block 3")),
        );
        refused(
            |f| {
                let at = seal_of(f, 3);
                f[at].1.clear();
                assemble(f)
            },
            mismatch("its block 3: it carries no seal"),
        );
    }

    /// A seal's Raft term may not go back: the ledger applies no such block, an import
    /// refuses it, and `verify` names it in a ledger that holds one.
    #[test]
    fn a_block_sealed_for_an_earlier_term_than_the_one_before_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::new("snap");
        let source = Ledger::create(&dir.path().join("a.redb"), chain.genesis.clone()).unwrap();
        let in_term = |chain: &Chain, block: &Block, term| {
            SealedBlock::seal(block.clone(), &chain.genesis.chain_id, 1, term, &chain.node)
        };
        let (first, second) = (chain.block(1), chain.block(1));
        source.apply_sealed_block(&in_term(&chain, &first, 2), &[true], b"marker").unwrap();
        let back = in_term(&chain, &second, 1);
        let err = source.apply_sealed_block(&back, &[true], b"marker").unwrap_err();
        let words = "it is sealed for Raft term 1, earlier than the term 2 of the block before it";
        assert!(matches!(&err, LedgerError::InvalidBlock(e) if e.to_string().contains(words)));
        assert_eq!(source.tip().height, 1);
        // A sender that wrote it in by hand.
        source.apply_block(&second, &[true], b"marker").unwrap();
        let txn = source.db.begin_write().unwrap();
        txn.open_table(SEALS).unwrap().insert(2, encoding::encode(&back.seal).as_slice()).unwrap();
        txn.commit().unwrap();
        let target = Ledger::create(&dir.path().join("b.redb"), chain.genesis.clone()).unwrap();
        let before = view(&target);
        let err = target.import_snapshot(&export(&source)[..], b"marker").unwrap_err();
        let expected = format!("its block 2: {words}");
        assert!(matches!(&err, SnapshotError::Mismatch(m) if m.contains(&expected)), "{err}");
        assert_eq!(view(&target), before);
        drop(source);
        let err = crate::verify::verify_ledger(&dir.path().join("a.redb"), &mut |_, _, _| {});
        let err = err.unwrap_err();
        assert!(matches!(&err, LedgerError::Corrupt(m) if m.contains(words)), "{err}");
    }

    /// A ledger that applied blocks outside a network (no seals) cannot serve them: its
    /// snapshot is refused at the first unsealed block the target does not hold.
    #[test]
    fn a_block_stored_without_a_seal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::new("snap");
        let Ledgers { source, lagging, .. } = chain.source_new_and_lagging(dir.path(), 2);
        let unsealed = chain.block(1);
        source.apply_block(&unsealed, &[true], b"marker").unwrap();
        let before = view(&lagging);
        let err = lagging.import_snapshot(&export(&source)[..], b"marker").unwrap_err();
        assert!(mismatch("its block 3: it carries no seal")(&err), "{err}");
        assert_eq!(view(&lagging), before);
    }

    /// A seal is judged by the nodes admitted *before* its block, in the state the import
    /// replays: a node admitted in block 1 may seal block 2 but not block 1; once suspended
    /// (block 3), its block 4 is refused. The seals of blocks the target holds stay its own.
    #[test]
    fn a_seal_is_judged_by_the_nodes_admitted_before_its_block() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::new("snap");
        let (hospital, second) = (SigningKey::generate(), SigningKey::generate());
        let regulator = |chain: &mut Chain, body| {
            chain.nonce += 1;
            Transaction {
                chain_id: chain.genesis.chain_id.clone(),
                signer: AccountId::from_initial_key(&chain.regulator.public_key()),
                nonce: chain.nonce,
                body,
            }
            .sign(&chain.regulator)
        };
        let admit_hospital = regulator(
            &mut chain,
            TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
                key: hospital.public_key(),
                encryption_key: DecryptionKey::generate().public_key(),
                registration_id: "GOV-N".into(),
                name: "Hospital N".into(),
                city: "Leeds".into(),
                specialisation: "general".into(),
                contact: SealedRef { blob: Hash::of(b"contact N"), commitment: Hash::of(b"c") },
            })),
        );
        let admit_node = regulator(
            &mut chain,
            TxBody::Nodes(NodeTx::Admit {
                node_key: second.public_key(),
                address: "http://127.0.0.2:7301".into(),
                hospital: AccountId::from_initial_key(&hospital.public_key()),
            }),
        );
        let by = |chain: &Chain, block: &Block, id: u64, key: &SigningKey| {
            SealedBlock::seal(block.clone(), &chain.genesis.chain_id, id, 1, key)
        };
        let block_1 = chain.tip.propose(10, vec![admit_hospital, admit_node]);
        let block_2 = chain.block(1);
        let suspend =
            regulator(&mut chain, TxBody::Nodes(NodeTx::Suspend { node_key: second.public_key() }));
        let block_3 = chain.tip.propose(30, vec![suspend]);
        let block_4 = chain.block(1);
        // A sender's ledger holding the seals given, good or not: the ledger itself refuses
        // to store a seal that is not good (checked below), so such a block is applied
        // without one and its seal written in by hand, as a sender that edits its file would.
        let ledger = |name: &str, seals: &[SealedBlock]| {
            let l = Ledger::create(&dir.path().join(name), chain.genesis.clone()).unwrap();
            for s in seals {
                let ok = vec![true; s.block.txs.len()];
                let receipts = match l.apply_sealed_block(s, &ok, b"marker") {
                    Ok(receipts) => receipts,
                    // Only the two bad seals below: node 2's on block 1 (which admits it) and
                    // on block 4 (after its suspension). Any other is applied as it is.
                    Err(LedgerError::InvalidBlock(BlockError::Seal { .. }))
                        if s.seal.proposer == 2 && s.block.header.height != 2 =>
                    {
                        let receipts = l.apply_block(&s.block, &ok, b"marker").unwrap();
                        let txn = l.db.begin_write().unwrap();
                        txn.open_table(SEALS)
                            .unwrap()
                            .insert(s.block.header.height, encoding::encode(&s.seal).as_slice())
                            .unwrap();
                        txn.commit().unwrap();
                        receipts
                    }
                    Err(e) => panic!("{e}"),
                };
                assert!(receipts.iter().all(|r| matches!(r.outcome, Outcome::Applied { .. })));
            }
            l
        };
        // The ledger applies no block whose seal is not good, and changes nothing.
        let refusing = Ledger::create(&dir.path().join("r.redb"), chain.genesis.clone()).unwrap();
        let before = view(&refusing);
        let bad = by(&chain, &block_1, 2, &second);
        let err = refusing.apply_sealed_block(&bad, &[true, true], b"marker").unwrap_err();
        assert!(
            matches!(&err, LedgerError::InvalidBlock(BlockError::Seal { height: 1, reason })
                if reason.contains("node 2, which the ledger never admitted")),
            "{err}"
        );
        assert_eq!(view(&refusing), before);
        let honest = [
            by(&chain, &block_1, 1, &chain.node),
            by(&chain, &block_2, 2, &second),
            by(&chain, &block_3, 1, &chain.node),
        ];
        // Node 2 sealed block 2, after its admission: taken.
        let target = Ledger::create(&dir.path().join("t.redb"), chain.genesis.clone()).unwrap();
        target.import_snapshot(&export(&ledger("a.redb", &honest[..2]))[..], b"marker").unwrap();
        assert_eq!(target.seal(2).unwrap(), Some(honest[1].seal));
        // Node 2 sealing block 1, which admits it: refused.
        let early = ledger("b.redb", &[by(&chain, &block_1, 2, &second)]);
        let fresh = Ledger::create(&dir.path().join("f.redb"), chain.genesis.clone()).unwrap();
        let err = fresh.import_snapshot(&export(&early)[..], b"marker").unwrap_err();
        assert!(
            mismatch("its block 1: it is sealed by node 2, which the ledger never")(&err),
            "{err}"
        );
        // Node 2 sealing block 4, after its suspension: refused, target unchanged.
        let late = [honest.to_vec(), vec![by(&chain, &block_4, 2, &second)]].concat();
        let before = view(&target);
        let err = target.import_snapshot(&export(&ledger("c.redb", &late))[..], b"marker");
        let err = err.unwrap_err();
        assert!(mismatch("its block 4: its proposer node 2 is suspended")(&err), "{err}");
        assert_eq!(view(&target), before);
        // A sender's other seal on a block the target holds is not taken.
        let resealed = [honest[0].clone(), by(&chain, &block_2, 1, &chain.node), honest[2].clone()];
        target.import_snapshot(&export(&ledger("d.redb", &resealed))[..], b"marker").unwrap();
        assert_eq!(target.seal(2).unwrap(), Some(honest[1].seal));
        assert_eq!(target.seal(3).unwrap(), Some(honest[2].seal));
    }

    #[test]
    fn a_snapshot_of_another_chain_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let source = Chain::new("snap").ledger(&dir.path().join("a.redb"), 2);
        // Same chain id, another genesis (another regulator), and another chain id.
        for chain_id in ["snap", "other"] {
            let target =
                Chain::new(chain_id).ledger(&dir.path().join(format!("{chain_id}.redb")), 1);
            let before = view(&target);
            let err = target.import_snapshot(&export(&source)[..], b"marker").unwrap_err();
            assert!(matches!(err, SnapshotError::OtherChain { .. }), "{err}");
            assert_eq!(view(&target), before);
        }
    }
}
