//! The Merkle log kept as chunk roots (`log_chunks`) and the last chunk's leaves: proofs of
//! entries in every chunk, at every size, before and after a restart, are those of the whole
//! log; a stored chunk root that was altered, deleted or added is refused at open and by
//! `verify`; a ledger written before the table existed gets it at its first open.

use medledger_core::merkle::{MerkleLog, leaf_hash};
use medledger_ledger::{Integrity, LedgerError, verify::verify_ledger};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::*;

const LOG_CHUNKS: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("log_chunks");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Entries in a chunk (the ledger's `LOG_CHUNK_SHIFT`).
const CHUNK: u64 = 256;

/// A ledger at `path` holding 3 full chunks and part of a fourth (patients registered in
/// blocks of uneven sizes, so that blocks straddle chunk boundaries).
fn build(path: &std::path::Path) -> u64 {
    let mut net = Net::with(|g| Ledger::create(path, g).unwrap());
    let mut hospital = Actor::new();
    applied(&net.admit(&hospital));
    let mut sizes = [97usize, 160, 1, 255, 90].into_iter().cycle();
    while net.ledger.log_size() < 3 * CHUNK + 100 {
        let txs =
            (0..sizes.next().unwrap()).map(|_| register(&mut hospital, &Actor::new())).collect();
        for r in net.block(txs) {
            applied(&r);
        }
    }
    net.ledger.log_size()
}

/// Every entry's leaf, read from the ledger.
fn leaves(ledger: &Ledger) -> Vec<Hash> {
    (0..ledger.log_size())
        .map(|i| leaf_hash(&ledger.transaction_at(i).unwrap().unwrap().tx.encode()))
        .collect()
}

/// The ledger's proofs and roots are the whole log's, for entries and sizes in and across
/// every chunk (the edges of chunks, and sizes that end inside a full chunk).
fn same_as_the_whole_log(ledger: &Ledger) {
    let leaves = leaves(ledger);
    let whole = MerkleLog::from_leaf_hashes(leaves.clone());
    let n = whole.len();
    assert_eq!(ledger.checkpoint().log_root, whole.root());
    let points = [1, 2, 255, 256, 257, 300, 511, 512, 513, 700, 767, 768, 769, n - 1, n];
    for &size in &points {
        assert_eq!(ledger.root_at(size).unwrap(), whole.root_at(size).unwrap(), "root at {size}");
        for &index in points.iter().filter(|&&i| i < size) {
            let proof = ledger.inclusion_proof(index, size).unwrap();
            assert_eq!(proof, whole.inclusion_proof(index, size).unwrap());
            proof.verify(&leaves[index as usize], &whole.root_at(size).unwrap()).unwrap();
        }
        for &old in points.iter().filter(|&&o| o <= size) {
            assert_eq!(
                ledger.consistency_proof(old, size).unwrap(),
                whole.consistency_proof(old, size).unwrap()
            );
        }
    }
    match ledger.inclusion_proof(n, n + 1) {
        Err(LedgerError::BadQuery(_)) => {}
        other => panic!("a proof beyond the log: {other:?}"),
    }
}

fn chunk_rows(path: &std::path::Path) -> Vec<(u64, [u8; 32])> {
    let db = redb::Database::open(path).unwrap();
    let read = db.begin_read().unwrap();
    let table = read.open_table(LOG_CHUNKS).unwrap();
    table.iter().unwrap().map(|r| r.unwrap()).map(|(k, v)| (k.value(), *v.value())).collect()
}

#[test]
fn the_log_keeps_its_chunk_roots_and_proves_every_entry_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let n = build(&path);
    let rows = chunk_rows(&path);
    assert_eq!(rows.len() as u64, n / CHUNK, "one stored root per full chunk");
    let ledger = Ledger::open(&path).unwrap();
    let whole = MerkleLog::from_leaf_hashes(leaves(&ledger));
    for (chunk, root) in &rows {
        let first = (chunk * CHUNK) as usize;
        let part =
            MerkleLog::from_leaf_hashes(leaves(&ledger)[first..first + CHUNK as usize].to_vec());
        assert_eq!(*root, part.root().0, "chunk {chunk}'s stored root");
    }
    assert_eq!(ledger.checkpoint().log_root, whole.root());
    same_as_the_whole_log(&ledger);
    drop(ledger);
    verify_ledger(&path, &mut |_, _, _| {}).unwrap();
}

#[test]
fn an_altered_deleted_or_added_chunk_root_is_refused_at_open_and_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let built = dir.path().join("built.redb");
    build(&built);
    let case = dir.path().join("case.redb");
    type Change = fn(&mut redb::Table<u64, &[u8; 32]>);
    let changes: [(&str, Change); 4] = [
        ("altered", |t| {
            let mut root = *t.get(1).unwrap().unwrap().value();
            root[7] ^= 1;
            t.insert(1, &root).unwrap();
        }),
        ("deleted", |t| {
            t.remove(1).unwrap().unwrap();
        }),
        ("deleted last", |t| {
            t.pop_last().unwrap().unwrap();
        }),
        ("added", |t| {
            let root = *t.get(0).unwrap().unwrap().value();
            t.insert(3, &root).unwrap();
        }),
    ];
    for (what, change) in changes {
        std::fs::copy(&built, &case).unwrap();
        {
            let db = redb::Database::open(&case).unwrap();
            let txn = db.begin_write().unwrap();
            change(&mut txn.open_table(LOG_CHUNKS).unwrap());
            txn.commit().unwrap();
        }
        match Ledger::open(&case) {
            Err(LedgerError::Corrupt(e)) => assert!(e.contains("log chunk"), "{what}: {e}"),
            other => panic!("{what}: the start-up check let it through: {other:?}"),
        }
        match verify_ledger(&case, &mut |_, _, _| {}) {
            Err(LedgerError::Corrupt(e)) => assert!(e.contains("log chunk"), "{what}: {e}"),
            other => panic!("{what}: verify let it through: {other:?}"),
        }
    }
}

#[test]
fn a_ledger_written_before_chunk_roots_were_stored_gets_them_at_its_first_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    build(&path);
    let before = chunk_rows(&path);
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(LOG_CHUNKS).unwrap());
        txn.open_table(META).unwrap().remove("log_chunks_filled").unwrap().unwrap();
        txn.commit().unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    same_as_the_whole_log(&ledger);
    drop(ledger);
    assert_eq!(chunk_rows(&path), before, "the first open recorded every chunk's root");
    // Once recorded, a missing root is refused like any other change.
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(LOG_CHUNKS).unwrap().remove(0).unwrap().unwrap();
        txn.commit().unwrap();
    }
    assert!(matches!(Ledger::open(&path), Err(LedgerError::Corrupt(_))));
}

#[test]
fn a_ledger_started_from_its_last_block_serves_the_same_log_and_is_verified_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    build(&path);
    let checked = Ledger::open(&path).unwrap();
    let (tip, checkpoint) = (checked.tip(), checked.checkpoint());
    drop(checked);
    let ledger = Ledger::open_checking_in_background(&path).unwrap();
    assert_eq!((ledger.tip().height, ledger.tip().hash), (tip.height, tip.hash));
    assert_eq!(ledger.tip().log, tip.log, "the frontier of the log");
    assert_eq!(ledger.checkpoint(), checkpoint);
    same_as_the_whole_log(&ledger);
    assert_eq!(tamper::settled(&ledger), Integrity::Verified);
    // It goes on as a ledger opened after every check: the next block applies, and the
    // ledger it leaves passes every check.
    tamper::next_empty_block(&ledger).unwrap();
    drop(ledger);
    Ledger::open(&path).unwrap();
    verify_ledger(&path, &mut |_, _, _| {}).unwrap();
}

/// Changes `path`'s database in one write transaction.
fn change(path: &std::path::Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
}

const TXS: TableDefinition<u64, &[u8]> = TableDefinition::new("txs");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");

#[test]
fn what_the_quick_start_reads_is_checked_there_and_the_rest_behind() {
    let dir = tempfile::tempdir().unwrap();
    let built = dir.path().join("built.redb");
    let n = build(&built);
    let case = dir.path().join("case.redb");
    let flip = |bytes: &[u8]| {
        let mut b = bytes.to_vec();
        let mid = b.len() / 2;
        b[mid] ^= 0x10;
        b
    };

    // Refused at once: what the start reads does not give the last block's log or tip.
    type Change = Box<dyn Fn(&redb::WriteTransaction)>;
    let at_start: Vec<(&str, Change)> = vec![
        (
            "a chunk root altered",
            Box::new(|txn| {
                let mut t = txn.open_table(LOG_CHUNKS).unwrap();
                let mut root = *t.get(2).unwrap().unwrap().value();
                root[0] ^= 1;
                t.insert(2, &root).unwrap();
            }),
        ),
        (
            "a chunk root deleted",
            Box::new(|txn| {
                txn.open_table(LOG_CHUNKS).unwrap().remove(0).unwrap().unwrap();
            }),
        ),
        (
            "a transaction of the last chunk altered",
            Box::new(move |txn| {
                let mut t = txn.open_table(TXS).unwrap();
                let tx = flip(t.get(n - 1).unwrap().unwrap().value());
                t.insert(n - 1, tx.as_slice()).unwrap();
            }),
        ),
        (
            "a transaction added after the log",
            Box::new(move |txn| {
                let mut t = txn.open_table(TXS).unwrap();
                let tx = t.get(n - 1).unwrap().unwrap().value().to_vec();
                t.insert(n, tx.as_slice()).unwrap();
            }),
        ),
        (
            "the last block removed",
            Box::new(|txn| {
                txn.open_table(BLOCKS).unwrap().pop_last().unwrap().unwrap();
            }),
        ),
    ];
    for (what, f) in at_start {
        std::fs::copy(&built, &case).unwrap();
        change(&case, f);
        match Ledger::open_checking_in_background(&case) {
            Err(LedgerError::Corrupt(_)) => {}
            other => panic!("{what}: the quick start let it through: {other:?}"),
        }
    }

    // Found behind: a transaction of a full chunk (which the start does not read) altered.
    std::fs::copy(&built, &case).unwrap();
    change(&case, |txn| {
        let mut t = txn.open_table(TXS).unwrap();
        let tx = flip(t.get(300).unwrap().unwrap().value());
        t.insert(300, tx.as_slice()).unwrap();
    });
    let ledger = Ledger::open_checking_in_background(&case).unwrap();
    match tamper::settled(&ledger) {
        Integrity::Corrupt(e) => assert!(e.contains("block"), "{e}"),
        other => panic!("the background check let it through: {other:?}"),
    }
    assert!(matches!(tamper::next_empty_block(&ledger), Err(LedgerError::Corrupt(_))));
    // Nor does it record a Raft position past a block it skipped.
    assert!(matches!(ledger.set_applied_marker(b"skipped"), Err(LedgerError::Corrupt(_))));
    // A proof through that chunk is refused rather than given from the altered entry.
    match ledger.inclusion_proof(300, n) {
        Err(LedgerError::Corrupt(e)) => assert!(e.contains("chunk 1"), "{e}"),
        other => panic!("a proof through an altered chunk: {other:?}"),
    }
    drop(ledger);

    // A ledger from an earlier version is opened with every check first.
    std::fs::copy(&built, &case).unwrap();
    change(&case, |txn| {
        txn.open_table(META).unwrap().remove("log_chunks_filled").unwrap().unwrap();
    });
    let ledger = Ledger::open_checking_in_background(&case).unwrap();
    assert_eq!(ledger.integrity(), Integrity::Verified, "checked before it was served");
}

#[test]
fn a_ledger_closed_while_its_check_runs_gives_it_up_and_can_be_opened_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    build(&path);
    for _ in 0..3 {
        let ledger = Ledger::open_checking_in_background(&path).unwrap();
        drop(ledger);
        // The check's read of the database is gone with the ledger: not "in use".
        let again = Ledger::open_checking_in_background(&path).unwrap();
        assert_eq!(tamper::settled(&again), Integrity::Verified);
    }
}
