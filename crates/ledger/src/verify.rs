//! Offline verification of a stored ledger: the checks a node runs at start ([`check_chain`],
//! [`state_digest`]) and the full audit ([`verify_ledger`]) that also checks every signature and
//! replays every block into a fresh state, comparing receipts and state with what is stored.

use std::path::Path;

use medledger_core::{
    Hash,
    block::{Block, BlockHeader, Genesis, Outcome, Tip},
    encoding,
    merkle::{self, ChunkedLog},
    tx::SignedTransaction,
};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle};

use crate::{Ledger, LedgerError, state::*};

/// Walks every stored block: checks the hash chain, each header against its transactions, that
/// no transaction lies outside a block, and that the stored root of every full chunk of the log
/// (`log_chunks`) is the root of its transactions (a ledger from before that table may lack
/// them all). Returns the tip and the log. `progress(done, total)` is called as blocks are
/// checked.
pub fn check_chain(
    read: &redb::ReadTransaction,
    genesis: &Genesis,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Tip, ChunkedLog), LedgerError> {
    check_chain_until(read, genesis, progress, &|| false)
}

/// [`check_chain`], giving up with [`LedgerError::Stopped`] once `stop()` says so (asked
/// before each block).
pub(crate) fn check_chain_until(
    read: &redb::ReadTransaction,
    genesis: &Genesis,
    progress: &mut dyn FnMut(u64, u64),
    stop: &Stop<'_>,
) -> Result<(Tip, ChunkedLog), LedgerError> {
    let blocks = read.open_table(BLOCKS)?;
    let txs = read.open_table(TXS)?;
    let chunks_filled = read.open_table(META)?.get(META_LOG_CHUNKS_FILLED)?.is_some();
    let stored_chunks = match read.open_table(LOG_CHUNKS) {
        Ok(table) => Some(table),
        Err(redb::TableError::TableDoesNotExist(_)) if !chunks_filled => None,
        Err(e) => return Err(e.into()),
    };
    let total = blocks.len()?;
    let mut tip = Tip::genesis(genesis);
    let mut log = ChunkedLog::new(LOG_CHUNK_SHIFT);
    let mut leaves = Vec::new();
    let mut tx_rows = txs.iter()?;
    for row in blocks.iter()? {
        if stop() {
            return Err(LedgerError::Stopped);
        }
        let (height, bytes) = row?;
        let header: BlockHeader = encoding::decode("block header", bytes.value(), 1024)
            .map_err(|e| LedgerError::Corrupt(format!("block {}: {e}", height.value())))?;
        if header.height != height.value() {
            return Err(LedgerError::Corrupt(format!(
                "block stored at height {} says it is block {}",
                height.value(),
                header.height
            )));
        }
        leaves.clear();
        for _ in 0..header.tx_count {
            let (index, tx) = tx_rows.next().transpose()?.ok_or_else(|| {
                LedgerError::Corrupt(format!("block {}: transactions missing", header.height))
            })?;
            let expected = log.len() + leaves.len() as u64;
            if index.value() != expected {
                return Err(LedgerError::Corrupt(format!(
                    "block {}: expected transaction {expected} but found {}",
                    header.height,
                    index.value()
                )));
            }
            leaves.push(merkle::leaf_hash(tx.value()));
        }
        tip.check_and_advance(&header, &leaves).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
        for leaf in &leaves {
            let chunk = log.chunks();
            let Some(root) = log.push(*leaf) else { continue };
            let stored = match &stored_chunks {
                Some(table) => table.get(chunk)?.map(|r| *r.value()),
                None => None,
            };
            let why = match stored {
                Some(s) if s != root.0 => "is not the root of its transactions",
                None if chunks_filled => "is missing",
                _ => continue,
            };
            return Err(LedgerError::Corrupt(format!(
                "the stored root of log chunk {chunk} {why}"
            )));
        }
        progress(header.height, total);
    }
    if let Some(extra) = tx_rows.next().transpose()? {
        return Err(LedgerError::Corrupt(format!(
            "transaction {} is stored outside any block",
            extra.0.value()
        )));
    }
    if let Some(table) = &stored_chunks
        && let Some(last) = table.last()?
        && last.0.value() >= log.chunks()
    {
        return Err(LedgerError::Corrupt(format!(
            "a root is stored for log chunk {}, beyond the log's {} full chunks",
            last.0.value(),
            log.chunks()
        )));
    }
    Ok((tip, log))
}

/// The state and index digests recomputed from the stored state tables: one pass over every
/// registered table ([`TABLES`]), each into the digest that covers it, the tables spread over
/// all cores (all read in `read`, so all from one state).
pub fn state_digest(read: &redb::ReadTransaction) -> Result<Digests, LedgerError> {
    state_digest_until(read, &|| false)
}

/// [`state_digest`], giving up with [`LedgerError::Stopped`] once `stop()` says so.
pub(crate) fn state_digest_until(
    read: &redb::ReadTransaction,
    stop: &Stop<'_>,
) -> Result<Digests, LedgerError> {
    use rayon::prelude::*;
    let parts: Vec<_> = TABLES
        .par_iter()
        .map(|table| -> Result<_, LedgerError> { Ok((table.cover, table.digest(read, stop)?)) })
        .collect::<Result<_, _>>()?;
    let mut digests = Digests::default();
    for (cover, digest) in parts {
        xor_into(digests.slot(cover), &digest);
    }
    Ok(digests)
}

/// What a full verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The network.
    pub chain_id: String,
    /// Blocks checked.
    pub blocks: u64,
    /// Of which stored with a seal, each checked against the nodes admitted before its block
    /// (the rest were applied outside a network: tests, tools).
    pub sealed: u64,
    /// Transactions checked (all signatures verified).
    pub transactions: u64,
    /// Of which applied.
    pub applied: u64,
    /// Of which refused.
    pub refused: u64,
    /// The log root at the tip.
    pub log_root: Hash,
}

/// Which stage of [`verify_ledger`] is running, for progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Hash chain and Merkle roots.
    Chain,
    /// Signatures and replay.
    Replay,
}

/// Fully verifies the ledger file at `path`, which no running node may hold open: the chain
/// and roots, every signature (on all cores), canonical encoding of every transaction, and a
/// replay of every block into a fresh in-memory state whose receipts and state must equal the
/// stored ones. Returns a precise error for the first discrepancy.
pub fn verify_ledger(
    path: &Path,
    progress: &mut dyn FnMut(Stage, u64, u64),
) -> Result<VerifyReport, LedgerError> {
    let db = open_read_only(path)?;
    let read = db.begin_read()?;
    let genesis: Genesis = {
        let meta = read.open_table(META)?;
        let g = meta.get(META_GENESIS)?.ok_or_else(|| LedgerError::Corrupt("no genesis".into()))?;
        decode_entry("genesis", g.value())?
    };
    let (tip, _) = check_chain(&read, &genesis, &mut |d, t| progress(Stage::Chain, d, t))?;
    let stored_tip: (u64, Hash, u64) = {
        let meta = read.open_table(META)?;
        let t = meta.get(META_TIP)?.ok_or_else(|| LedgerError::Corrupt("no tip".into()))?;
        decode_entry("tip", t.value())?
    };
    if stored_tip != (tip.height, tip.hash, tip.time_ms) {
        return Err(LedgerError::Corrupt("the stored tip does not match the block chain".into()));
    }

    let replica = Ledger::in_memory(genesis.clone())?;
    let blocks = read.open_table(BLOCKS)?;
    let txs = read.open_table(TXS)?;
    let receipts = read.open_table(RECEIPTS)?;
    let seals = match read.open_table(SEALS) {
        Ok(t) => Some(t),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let mut report = VerifyReport {
        chain_id: genesis.chain_id.clone(),
        blocks: 0,
        sealed: 0,
        transactions: 0,
        applied: 0,
        refused: 0,
        log_root: tip.log.root(),
    };
    for row in blocks.iter()? {
        let (_, bytes) = row?;
        let header: BlockHeader = encoding::decode("block header", bytes.value(), 1024)?;
        let first = header.log_size - u64::from(header.tx_count);
        let mut block = Block { header, txs: Vec::with_capacity(header.tx_count as usize) };
        for tx in txs.range(first..header.log_size)? {
            let (index, tx) = tx?;
            let decoded = SignedTransaction::decode(tx.value()).map_err(|e| {
                LedgerError::Corrupt(format!(
                    "transaction {} in block {}: {e}",
                    index.value(),
                    header.height
                ))
            })?;
            if decoded.encode() != tx.value() {
                return Err(LedgerError::Corrupt(format!(
                    "transaction {} in block {} is not canonically encoded",
                    index.value(),
                    header.height
                )));
            }
            block.txs.push(decoded);
        }
        // The seal, judged by the nodes the replayed state had admitted before the block.
        let seal = seals.as_ref().map(|t| t.get(header.height)).transpose()?.flatten();
        let seal = seal.map(|s| crate::nodes::seals::decode_seal(s.value())).transpose()?;
        // Blocks applied outside a network have none; once a network seals them, every
        // later block has one (a removed seal hides who proposed a block).
        if seal.is_none() && report.sealed > 0 {
            return Err(LedgerError::Corrupt(format!(
                "stored table {:?}: block {} has no seal, though {} blocks before it have one",
                SEALS.name(),
                header.height,
                report.sealed
            )));
        }
        if let Some(seal) = &seal {
            let previous = match &seals {
                Some(t) => crate::nodes::seals::stored_term(t, header.height - 1)?,
                None => None,
            };
            crate::judge_seal(&genesis.chain_id, &header, seal, previous, |id| {
                replica.node_member(id)
            })?
            .map_err(|fault| {
                LedgerError::Corrupt(format!(
                    "stored table {:?}: block {}: {fault}",
                    SEALS.name(),
                    header.height
                ))
            })?;
            report.sealed += 1;
        }
        let signature_ok = crate::verify_signatures(&block.txs, |_| false);
        let replayed = replica.apply_block_with_seal(&block, seal.as_ref(), &signature_ok, &[])?;
        for r in replayed {
            let in_receipts = |e: String| {
                LedgerError::Corrupt(format!("stored table {:?}: {e}", RECEIPTS.name()))
            };
            let stored = receipts
                .get(r.log_index)?
                .ok_or_else(|| in_receipts(format!("no receipt {}", r.log_index)))?;
            let stored: Outcome = decode_entry("receipt", stored.value()).map_err(|e| match e {
                LedgerError::Corrupt(e) => in_receipts(e),
                other => other,
            })?;
            if stored != r.outcome {
                return Err(LedgerError::Corrupt(format!(
                    "stored table {:?}: the receipt of transaction {} (block {}) says {:?}, but \
                     replay gives {:?}",
                    RECEIPTS.name(),
                    r.log_index,
                    header.height,
                    stored,
                    r.outcome
                )));
            }
            match r.outcome {
                Outcome::Applied { .. } => report.applied += 1,
                Outcome::Refused { .. } => report.refused += 1,
            }
            report.transactions += 1;
        }
        report.blocks += 1;
        progress(Stage::Replay, header.height, tip.height);
    }
    let stored_seals = seals.as_ref().map(|t| t.len()).transpose()?.unwrap_or(0);
    if stored_seals != report.sealed {
        return Err(LedgerError::Corrupt(format!(
            "stored table {:?} holds {stored_seals} seals, {} of them of blocks the ledger holds",
            SEALS.name(),
            report.sealed
        )));
    }
    compare_state(&read, &replica)?;
    Ok(report)
}

/// Opens the ledger file at `path` for reading only. Neither a running node nor an unclean
/// stop makes a ledger wrong: they are [`LedgerError::Setup`] errors that say what to do.
fn open_read_only(path: &Path) -> Result<redb::ReadOnlyDatabase, LedgerError> {
    if !path.exists() {
        return Err(LedgerError::Setup(format!("no ledger at {}", path.display())));
    }
    redb::ReadOnlyDatabase::open(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::Setup(format!(
            "the node is running (its data directory is in use: {}); stop it first",
            path.display()
        )),
        redb::DatabaseError::RepairAborted => LedgerError::Setup(format!(
            "{} was not closed cleanly: the database needs the node's crash recovery: start and stop the node once (medledger up --data-dir ...)",
            path.display()
        )),
        other => LedgerError::Storage(other.to_string()),
    })
}

/// What the other stores of a data directory (the Raft log, the vault) are checked against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredFacts {
    /// The header hash of every stored block, in order (the first is block 1's).
    pub block_hashes: Vec<Hash>,
    /// The marker stored with the last applied block (the node's Raft log id).
    pub applied_marker: Option<Vec<u8>>,
    /// Every blob the ledger references and a vault must keep, with what references it: the
    /// blobs of records and cases (their content, metadata and wrapped keys), registrations
    /// (patients', hospitals' and devices' sealed details, thresholds) and device sessions.
    pub blobs: std::collections::BTreeMap<Hash, String>,
    /// Of those, the sealed details of patients' and hospitals' registrations, which a node
    /// admits without holding them (the wallet uploads them before it signs).
    pub unchecked_at_admission: std::collections::BTreeSet<Hash>,
}

/// Reads the [`StoredFacts`] of the ledger file at `path` (which no running node may hold
/// open), without checking the ledger itself ([`verify_ledger`] does).
pub fn stored_facts(path: &Path) -> Result<StoredFacts, LedgerError> {
    use crate::state::blobs::owner;
    let db = open_read_only(path)?;
    let read = db.begin_read()?;
    let mut facts = StoredFacts::default();
    for row in read.open_table(BLOCKS)?.iter()? {
        let (_, bytes) = row?;
        let header: BlockHeader = encoding::decode("block header", bytes.value(), 1024)?;
        facts.block_hashes.push(header.hash());
    }
    facts.applied_marker =
        read.open_table(META)?.get(META_APPLIED_MARKER)?.map(|v| v.value().to_vec());
    let blobs = &mut facts.blobs;
    for row in read.open_table(BLOB_REFS)?.iter()? {
        let (blob, by) = row?;
        blobs.insert(Hash(*blob.value()), by.value().to_owned());
    }
    for row in read.open_table(DEVICE_BLOBS)?.iter()? {
        let (blob, session) = row?;
        blobs.insert(Hash(*blob.value()), owner::device_session(&Hash(*session.value())));
    }
    for row in read.open_table(PATIENTS)?.iter()? {
        let (id, v) = row?;
        let p: PatientEntry = decode_entry("patient", v.value())?;
        let id = medledger_core::ids::PatientId(id.value());
        blobs.insert(p.details.blob, owner::patient_details(id));
        blobs.insert(p.attendant.blob, owner::attendant(id));
        facts.unchecked_at_admission.extend([p.details.blob, p.attendant.blob]);
    }
    for row in read.open_table(HOSPITALS)?.iter()? {
        let (id, v) = row?;
        let h: HospitalEntry = decode_entry("hospital", v.value())?;
        let id = medledger_core::ids::AccountId(*id.value());
        blobs.insert(h.contact.blob, owner::hospital_contact(&id));
        facts.unchecked_at_admission.insert(h.contact.blob);
    }
    for row in read.open_table(ORGANISATIONS)?.iter()? {
        let (id, v) = row?;
        let o: crate::state::OrganisationEntry = decode_entry("organisation", v.value())?;
        let id = medledger_core::ids::AccountId(*id.value());
        blobs.insert(o.contact.blob, owner::organisation_contact(&id));
        facts.unchecked_at_admission.insert(o.contact.blob);
    }
    for row in read.open_table(DEVICES)?.iter()? {
        let (id, v) = row?;
        let d: DeviceEntry = decode_entry("device", v.value())?;
        let id = medledger_core::ids::AccountId(*id.value());
        blobs.insert(d.details.blob, owner::device_details(&id));
    }
    for row in read.open_table(DEVICE_THRESHOLDS)?.iter()? {
        let (id, v) = row?;
        let t: ThresholdsEntry = decode_entry("thresholds", v.value())?;
        blobs.insert(t.sealed.blob, owner::thresholds(&Hash(*id.value())));
    }
    Ok(facts)
}

/// Compares every state table of the stored ledger with the replayed one, naming the first
/// table that differs.
fn compare_state(stored: &redb::ReadTransaction, replica: &Ledger) -> Result<(), LedgerError> {
    let theirs = replica.db.begin_read()?;
    for table in TABLES {
        if !table.same(stored, &theirs)? {
            return Err(LedgerError::Corrupt(format!(
                "stored table {:?} differs from the state that replaying the blocks gives",
                table.name
            )));
        }
    }
    let digest = state_digest(stored)?;
    let meta = stored.open_table(META)?;
    if meta.get(META_STATE_DIGEST)?.map(|d| d.value().to_vec()).as_deref()
        != Some(digest.state.as_slice())
    {
        return Err(LedgerError::Corrupt(
            "the stored state digest does not match the state".into(),
        ));
    }
    // A ledger written before the index digest existed has none (its first open records it).
    if let Some(stored) = meta.get(META_INDEX_DIGEST)?
        && stored.value() != digest.index.as_slice()
    {
        return Err(LedgerError::Corrupt(
            "the stored index digest does not match the indexes".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Tampering with any stored table is caught at open and by the full verification.

    use medledger_core::{
        Hash,
        block::{Genesis, Tip},
        ids::AccountId,
        keys::{DecryptionKey, SigningKey},
        seal::{BlockSeal, SealedBlock},
        tx::{AdmitHospital, RegistryTx, SealedRef, Transaction, TxBody},
    };
    use redb::{ReadableTable, TableDefinition};

    use super::*;
    use crate::nodes::seals::decode_seal;

    /// A ledger of three blocks, each sealed by the genesis node as a network's are.
    fn build(path: &Path) {
        let (regulator, node) = (SigningKey::generate(), SigningKey::generate());
        let genesis = Genesis {
            chain_id: "tamper".into(),
            time_ms: 1,
            regulator_key: regulator.public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: node.public_key(),
        };
        let ledger = Ledger::create(path, genesis.clone()).unwrap();
        let mut tip = Tip::genesis(&genesis);
        let signer = AccountId::from_initial_key(&regulator.public_key());
        for n in 1..=3u64 {
            let h = SigningKey::generate();
            let tx = Transaction {
                chain_id: "tamper".into(),
                signer,
                nonce: n,
                body: TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
                    key: h.public_key(),
                    encryption_key: DecryptionKey::generate().public_key(),
                    registration_id: format!("GOV-{n}"),
                    name: format!("Hospital {n}"),
                    city: "Leeds".into(),
                    specialisation: "general".into(),
                    contact: SealedRef {
                        blob: Hash::of(&n.to_be_bytes()),
                        commitment: Hash::of(b"c"),
                    },
                })),
            }
            .sign(&regulator);
            let block = tip.propose(n * 10, vec![tx]);
            let sealed = SealedBlock::seal(block, "tamper", 1, 1, &node);
            let receipts = ledger.apply_sealed_block(&sealed, &[true], &[]).unwrap();
            assert!(matches!(receipts[0].outcome, Outcome::Applied { .. }));
        }
    }

    /// Flips one bit in the middle of the first value of a table keyed by height or index, as
    /// a disk fault or an editor would.
    fn flip_first(path: &Path, table: TableDefinition<u64, &[u8]>) {
        let db = redb::Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            let (key, mut value) = {
                let (k, v) = t.first().unwrap().unwrap();
                (k.value(), v.value().to_vec())
            };
            let mid = value.len() / 2;
            value[mid] ^= 0x04;
            t.insert(key, value.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    /// The same for a table keyed by account.
    fn flip_first_account(path: &Path, table: TableDefinition<&[u8; 20], &[u8]>) {
        let db = redb::Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            let (key, mut value) = {
                let (k, v) = t.first().unwrap().unwrap();
                (*k.value(), v.value().to_vec())
            };
            let mid = value.len() / 2;
            value[mid] ^= 0x04;
            t.insert(&key, value.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    fn assert_detected(path: &Path) {
        let open = Ledger::open(path).unwrap_err();
        assert!(matches!(open, LedgerError::Corrupt(_)), "open: {open}");
        let full = verify_ledger(path, &mut |_, _, _| {}).unwrap_err();
        assert!(matches!(full, LedgerError::Corrupt(_)), "verify: {full}");
    }

    #[test]
    fn an_untouched_ledger_verifies_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.redb");
        build(&path);
        let report = verify_ledger(&path, &mut |_, _, _| {}).unwrap();
        assert_eq!(
            (report.blocks, report.sealed, report.transactions, report.applied),
            (3, 3, 3, 3)
        );
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.tip().height, 3);
        assert_eq!(ledger.hospitals().unwrap().len(), 3);
    }

    #[test]
    fn a_flipped_transaction_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.redb");
        build(&path);
        flip_first(&path, TXS);
        assert_detected(&path);
    }

    /// A block's stored seal made by another key, naming a node never admitted, or sealing
    /// another block, and a seal of no block: each is named by `verify`. (Seals are not state:
    /// the start-up digests do not cover them; their signatures do.)
    #[test]
    fn a_seal_that_is_not_its_proposers_is_detected() {
        /// From the stored seals: the height and seal to store instead.
        type Edit = fn(&redb::Table<u64, &[u8]>) -> (u64, BlockSeal);
        let edits: [(&str, Edit); 4] = [
            ("does not verify under node 1's key", |t| {
                let seal = decode_seal(t.get(2).unwrap().unwrap().value()).unwrap();
                (
                    2,
                    BlockSeal {
                        signature: SigningKey::generate()
                            .sign(medledger_core::keys::namespace::BLOCK_SEAL, b"x"),
                        ..seal
                    },
                )
            }),
            ("never admitted", |t| {
                let seal = decode_seal(t.get(2).unwrap().unwrap().value()).unwrap();
                (2, BlockSeal { proposer: 7, ..seal })
            }),
            ("does not verify under node 1's key", |t| {
                (2, decode_seal(t.get(3).unwrap().unwrap().value()).unwrap())
            }),
            ("holds 4 seals, 3 of them", |t| {
                (9, decode_seal(t.get(3).unwrap().unwrap().value()).unwrap())
            }),
        ];
        for (expected, edit) in edits {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("l.redb");
            build(&path);
            let db = redb::Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(SEALS).unwrap();
                let (height, seal) = edit(&t);
                t.insert(height, crate::nodes::seals::encode_seal(&seal).as_slice()).unwrap();
            }
            txn.commit().unwrap();
            drop(db);
            let err = verify_ledger(&path, &mut |_, _, _| {}).unwrap_err();
            assert!(
                matches!(&err, LedgerError::Corrupt(m) if m.contains(expected) && m.contains("seals")),
                "{expected}: {err}"
            );
        }
    }

    /// A seal removed from a block after sealed ones is named too.
    #[test]
    fn a_removed_seal_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.redb");
        build(&path);
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(SEALS).unwrap().remove(3).unwrap().expect("block 3 was sealed");
        txn.commit().unwrap();
        drop(db);
        let err = verify_ledger(&path, &mut |_, _, _| {}).unwrap_err();
        assert!(
            matches!(&err, LedgerError::Corrupt(m) if m.contains("block 3 has no seal, though 2")),
            "{err}"
        );
    }

    #[test]
    fn a_flipped_block_header_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.redb");
        build(&path);
        flip_first(&path, BLOCKS);
        assert_detected(&path);
    }

    #[test]
    fn a_flipped_state_byte_is_detected() {
        for table in [HOSPITALS, ACCOUNTS] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("l.redb");
            build(&path);
            flip_first_account(&path, table);
            assert_detected(&path);
        }
    }

    #[test]
    fn a_ledger_without_an_index_digest_records_one_at_open_and_checks_it_from_then_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.redb");
        build(&path);
        let index_digest = |path: &Path| {
            let db = redb::Database::open(path).unwrap();
            let read = db.begin_read().unwrap();
            let meta = read.open_table(META).unwrap();
            meta.get(META_INDEX_DIGEST).unwrap().map(|d| d.value().to_vec())
        };
        let recorded = index_digest(&path).expect("written with every block");
        // As a version before the index digest left the file.
        {
            let db = redb::Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().remove(META_INDEX_DIGEST).unwrap();
            txn.commit().unwrap();
        }
        verify_ledger(&path, &mut |_, _, _| {}).unwrap();
        drop(Ledger::open(&path).unwrap());
        assert_eq!(index_digest(&path), Some(recorded));
        // From then on an index row deleted is caught at open.
        {
            let db = redb::Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(TX_INDEX).unwrap();
                let key = *t.first().unwrap().unwrap().0.value();
                t.remove(&key).unwrap();
            }
            txn.commit().unwrap();
        }
        assert_detected(&path);
    }

    #[test]
    fn a_flipped_receipt_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.redb");
        build(&path);
        flip_first(&path, RECEIPTS);
        assert_detected(&path);
    }
}
