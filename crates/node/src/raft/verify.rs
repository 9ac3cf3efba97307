//! The offline check of a stopped node's Raft log (`medledger verify`): the file opens, its
//! entries are contiguous and decode, it reaches the entry the ledger last applied, every
//! block the ledger holds is in it with the same header, and every block's transactions hash
//! to its header's root. It reads only: a log that needs crash recovery is reported as such.

use std::{collections::BTreeMap, path::Path};

use medledger_core::{Hash, encoding, merkle, seal::SealedBlock};
use openraft::{Entry, EntryPayload, LogId};
use redb::{ReadableDatabase, ReadableTable};

use super::{
    TypeConfig,
    log_store::{LOG, MAX_ENTRY_BYTES, META, PURGED},
};

/// Most problems listed one by one; the rest are counted.
const MAX_LISTED: usize = 10;

/// What [`check_log_offline`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftLogCheck {
    /// Entries read.
    pub entries: u64,
    /// The first and last index present.
    pub range: Option<(u64, u64)>,
    /// The last entry purged from the log behind a snapshot, if any: the ledger's blocks up
    /// to it are not looked for in the log.
    pub purged_through: Option<u64>,
    /// Blocks of the ledger found in the log with the same header.
    pub blocks_matched: u64,
    /// Blocks in the log past the ledger's tip: committed, and applied by the node at its
    /// next start (the ledger file is fsynced only every few blocks).
    pub blocks_ahead: u64,
    /// What is wrong, each in a sentence (at most [`MAX_LISTED`], then a count).
    pub problems: Vec<String>,
}

impl RaftLogCheck {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, found: &mut usize, p: String) {
        *found += 1;
        if *found <= MAX_LISTED {
            self.problems.push(p);
        }
    }
}

/// Checks the Raft log at `path` against the ledger's block hashes (`block_hashes[0]` is
/// block 1's) and the marker stored with its last applied block. Writes nothing.
pub fn check_log_offline(
    path: &Path,
    block_hashes: &[Hash],
    applied_marker: Option<&[u8]>,
) -> RaftLogCheck {
    let mut check = RaftLogCheck::default();
    let mut found = 0usize;
    if let Err(e) = read_log(path, block_hashes, applied_marker, &mut check, &mut found) {
        check.problem(&mut found, e);
    }
    if found > MAX_LISTED {
        check.problems.push(format!("and {} more problems", found - MAX_LISTED));
    }
    check
}

fn read_log(
    path: &Path,
    block_hashes: &[Hash],
    applied_marker: Option<&[u8]>,
    check: &mut RaftLogCheck,
    found: &mut usize,
) -> Result<(), String> {
    let applied: Option<LogId<u64>> = match applied_marker.filter(|m| !m.is_empty()) {
        Some(bytes) => {
            let (m, _) = super::state_machine::decode_marker(bytes)
                .map_err(|e| format!("the ledger's applied Raft log id does not decode: {e}"))?;
            m.0
        }
        None => None,
    };
    if !path.exists() {
        return match (applied, block_hashes.len()) {
            (None, 0) => Ok(()),
            _ => Err(format!(
                "{} is missing, but the ledger has applied {} blocks from it",
                path.display(),
                block_hashes.len()
            )),
        };
    }
    let db = redb::ReadOnlyDatabase::open(path).map_err(|e| match e {
        redb::DatabaseError::RepairAborted => format!(
            "{} cannot be opened without repair: it was truncated or damaged (or the node did not stop cleanly: then start and stop it once)",
            path.display()
        ),
        e => format!("{} cannot be opened: {e}", path.display()),
    })?;
    let unreadable = |e: redb::Error| format!("{} cannot be read: {e}", path.display());
    let read = db.begin_read().map_err(|e| unreadable(e.into()))?;
    let purged: Option<LogId<u64>> = {
        let meta = read.open_table(META).map_err(|e| unreadable(e.into()))?;
        let v = meta.get(PURGED).map_err(|e| unreadable(e.into()))?;
        v.map(|v| encoding::decode("purged log id", v.value(), 4096))
            .transpose()
            .map_err(|e| format!("its purge marker does not decode: {e}"))?
    };
    check.purged_through = purged.map(|p| p.index);
    let log = read.open_table(LOG).map_err(|e| unreadable(e.into()))?;
    // Header hashes of the blocks in the log, by height (a block rejected as not following
    // the tip shares a height with the one applied).
    let mut blocks: BTreeMap<u64, Vec<Hash>> = BTreeMap::new();
    let mut applied_found = false;
    // The height of the first block (in log order) that is the ledger's block at its height.
    let mut first_of_ledger: Option<u64> = None;
    let mut next = purged.map(|p| p.index + 1);
    for row in log.iter().map_err(|e| unreadable(e.into()))? {
        let (index, bytes) = row.map_err(|e| unreadable(e.into()))?;
        let index = index.value();
        check.entries += 1;
        check.range = Some((check.range.map_or(index, |r| r.0), index));
        if let Some(expected) = next
            && index != expected
        {
            check.problem(found, format!("entries {expected} to {} are missing", index - 1));
        }
        next = Some(index + 1);
        let entry: Entry<TypeConfig> =
            match encoding::decode("raft entry", bytes.value(), MAX_ENTRY_BYTES) {
                Ok(e) => e,
                Err(e) => {
                    check.problem(found, format!("entry {index} does not decode: {e}"));
                    continue;
                }
            };
        if entry.log_id.index != index {
            check.problem(
                found,
                format!("entry stored at {index} says it is entry {}", entry.log_id.index),
            );
        }
        if applied == Some(entry.log_id) {
            applied_found = true;
        }
        if let EntryPayload::Normal(SealedBlock { block, .. }) = entry.payload {
            let mut root = merkle::Frontier::new();
            for tx in &block.txs {
                root.push(merkle::leaf_hash(&tx.encode()));
            }
            if root.root() != block.header.tx_root || root.len() != u64::from(block.header.tx_count)
            {
                check.problem(
                    found,
                    format!(
                        "entry {index}: the transactions of block {} do not match its header",
                        block.header.height
                    ),
                );
            }
            let (height, hash) = (block.header.height, block.header.hash());
            if first_of_ledger.is_none()
                && height
                    .checked_sub(1)
                    .and_then(|i| block_hashes.get(i as usize))
                    .is_some_and(|h| *h == hash)
            {
                first_of_ledger = Some(height);
            }
            blocks.entry(height).or_default().push(hash);
        }
    }
    if let Some(applied) = applied
        && !applied_found
        && purged.is_none_or(|p| p.index < applied.index)
    {
        check.problem(
            found,
            format!(
                "the ledger applied entry {} (term {}), which the log does not hold: the log is truncated or was replaced",
                applied.index, applied.leader_id.term
            ),
        );
    }
    // Every block of the ledger must be in the log, unless purged behind a snapshot: those
    // below the first of the ledger's blocks the log holds. (Not below the lowest height in
    // the log: a block rejected as not following the tip, after the one applied at its height
    // was purged, may come first; the simulation found this, `raft/sim`.)
    let first_logged = first_of_ledger;
    let mut absent = Vec::new();
    for (i, hash) in block_hashes.iter().enumerate() {
        let height = i as u64 + 1;
        if purged.is_some() && first_logged.is_none_or(|first| height < first) {
            continue;
        }
        match blocks.get(&height) {
            Some(hashes) if hashes.contains(hash) => check.blocks_matched += 1,
            Some(_) => check.problem(
                found,
                format!("block {height} in the log differs from the ledger's block {height}"),
            ),
            None => absent.push(height),
        }
    }
    if let (Some(first), Some(last)) = (absent.first(), absent.last()) {
        check.problem(
            found,
            format!(
                "{} of the ledger's blocks are not in the log (heights {first} to {last})",
                absent.len()
            ),
        );
    }
    check.blocks_ahead = blocks.range(block_hashes.len() as u64 + 1..).count() as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use medledger_core::{
        block::{Block, Genesis, Tip},
        keys::{DecryptionKey, SigningKey},
    };
    use openraft::{CommittedLeaderId, StoredMembership};
    use redb::Database;

    use super::*;

    fn log_id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> (u64, Vec<u8>) {
        (index, encoding::encode(&Entry::<TypeConfig> { log_id: log_id(index), payload }))
    }

    /// Three empty blocks following a fresh genesis.
    fn blocks() -> Vec<Block> {
        n_blocks(3)
    }

    /// `n` empty blocks following a fresh genesis.
    fn n_blocks(n: u64) -> Vec<Block> {
        let genesis = Genesis {
            chain_id: "raft-verify-test".into(),
            time_ms: 1,
            regulator_key: SigningKey::generate().public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: SigningKey::generate().public_key(),
        };
        let mut tip = Tip::genesis(&genesis);
        (0..n).map(|i| tip.propose(10 + i, Vec::new())).collect()
    }

    /// A log file holding `entries`, and what the check says of it against `ledger` (the
    /// blocks the ledger applied, the last from entry `applied`).
    fn check(entries: &[(u64, Vec<u8>)], ledger: &[Block], applied: u64) -> RaftLogCheck {
        check_purged(entries, ledger, applied, None)
    }

    /// The same, for a log purged up to entry `purged` (as the log store records it).
    fn check_purged(
        entries: &[(u64, Vec<u8>)],
        ledger: &[Block],
        applied: u64,
        purged: Option<u64>,
    ) -> RaftLogCheck {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-log.redb");
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            if let Some(purged) = purged {
                meta.insert(PURGED, encoding::encode(&log_id(purged)).as_slice()).unwrap();
            }
            let mut log = txn.open_table(LOG).unwrap();
            for (index, bytes) in entries {
                log.insert(*index, bytes.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        drop(db);
        let hashes: Vec<Hash> = ledger.iter().map(|b| b.header.hash()).collect();
        let marker: crate::raft::state_machine::Marker =
            (Some(log_id(applied)), StoredMembership::default());
        check_log_offline(&path, &hashes, Some(&encoding::encode(&marker)))
    }

    /// `b` as a Raft entry carries it (the seal is not what this check looks at).
    fn sealed(b: &Block) -> SealedBlock {
        SealedBlock::seal(b.clone(), "raft-verify-test", 1, 1, &SigningKey::generate())
    }

    fn log_of(blocks: &[Block]) -> Vec<(u64, Vec<u8>)> {
        let mut entries = vec![entry(0, EntryPayload::Blank)];
        for (i, b) in blocks.iter().enumerate() {
            entries.push(entry(i as u64 + 1, EntryPayload::Normal(sealed(b))));
        }
        entries
    }

    fn says(check: &RaftLogCheck, words: &str) -> bool {
        check.problems.iter().any(|p| p.contains(words))
    }

    #[test]
    fn an_intact_log_passes_and_blocks_not_yet_in_the_ledger_are_counted() {
        let blocks = blocks();
        let c = check(&log_of(&blocks), &blocks[..2], 2);
        assert!(c.is_ok(), "{c:?}");
        assert_eq!((c.entries, c.range, c.blocks_matched, c.blocks_ahead), (4, Some((0, 3)), 2, 1));
    }

    #[test]
    fn undecodable_missing_and_altered_entries_are_named() {
        let blocks = blocks();
        let mut entries = log_of(&blocks);
        entries[1].1 = b"not an entry".to_vec();
        let c = check(&entries, &blocks, 3);
        assert!(says(&c, "entry 1 does not decode"), "{c:?}");
        assert!(says(&c, "1 of the ledger's blocks are not in the log (heights 1 to 1)"), "{c:?}");

        let mut entries = log_of(&blocks);
        entries.remove(2);
        let c = check(&entries, &blocks, 3);
        assert!(says(&c, "entries 2 to 2 are missing"), "{c:?}");

        let mut altered = blocks[2].clone();
        altered.header.tx_count = 1;
        let mut entries = log_of(&blocks);
        entries[3] = entry(3, EntryPayload::Normal(sealed(&altered)));
        let c = check(&entries, &blocks, 3);
        assert!(says(&c, "the transactions of block 3 do not match its header"), "{c:?}");
        assert!(says(&c, "block 3 in the log differs from the ledger's block 3"), "{c:?}");
    }

    #[test]
    fn a_log_shorter_than_what_the_ledger_applied_is_named() {
        let blocks = blocks();
        let c = check(&log_of(&blocks[..2]), &blocks, 3);
        assert!(says(&c, "the ledger applied entry 3"), "{c:?}");
        assert!(says(&c, "1 of the ledger's blocks are not in the log (heights 3 to 3)"), "{c:?}");
    }

    #[test]
    fn a_purged_prefix_passes_but_a_gap_or_an_altered_entry_after_it_is_named() {
        let blocks = n_blocks(8);
        // Purged up to entry 4 (block 4), as after a snapshot: entries 5 to 8 remain.
        let purged = |entries: Vec<(u64, Vec<u8>)>| -> Vec<(u64, Vec<u8>)> {
            entries.into_iter().filter(|(i, _)| *i > 4).collect()
        };
        let c = check_purged(&purged(log_of(&blocks)), &blocks, 8, Some(4));
        assert!(c.is_ok(), "{c:?}");
        assert_eq!((c.entries, c.range, c.blocks_matched), (4, Some((5, 8)), 4));
        assert_eq!(c.purged_through, Some(4));
        // Purged up to the last entry: nothing left, nothing wrong.
        let c = check_purged(&[], &blocks, 8, Some(8));
        assert!(c.is_ok(), "{c:?}");

        for missing in [5, 7] {
            let mut entries = purged(log_of(&blocks));
            entries.retain(|(i, _)| *i != missing);
            let c = check_purged(&entries, &blocks, 8, Some(4));
            assert!(says(&c, &format!("entries {missing} to {missing} are missing")), "{c:?}");
        }

        let mut altered = blocks[5].clone();
        altered.header.tx_count = 1;
        let mut entries = purged(log_of(&blocks));
        entries[1] = entry(6, EntryPayload::Normal(sealed(&altered)));
        let c = check_purged(&entries, &blocks, 8, Some(4));
        assert!(says(&c, "the transactions of block 6 do not match its header"), "{c:?}");
        assert!(says(&c, "block 6 in the log differs from the ledger's block 6"), "{c:?}");

        // Blocks rejected as not following the tip (a deposed leader's, or proposed on a stale
        // view of it) may come right after the purge point, at heights whose applied blocks
        // were purged: they are not the ledger's blocks, and nothing is wrong.
        let stale = n_blocks(2);
        let mut entries = vec![
            entry(5, EntryPayload::Normal(sealed(&stale[0]))),
            entry(6, EntryPayload::Normal(sealed(&stale[1]))),
        ];
        entries.extend(
            log_of(&blocks)
                .into_iter()
                .filter(|(i, _)| *i > 4)
                .map(|(i, _)| entry(i + 2, EntryPayload::Normal(sealed(&blocks[i as usize - 1])))),
        );
        let c = check_purged(&entries, &blocks, 10, Some(4));
        assert!(c.is_ok(), "{c:?}");
        assert_eq!((c.entries, c.range, c.blocks_matched), (6, Some((5, 10)), 4));
        // But a block of the ledger after the first one the log holds is still looked for.
        entries.retain(|(i, _)| *i != 9);
        let c = check_purged(&entries, &blocks, 10, Some(4));
        assert!(says(&c, "1 of the ledger's blocks are not in the log (heights 7 to 7)"), "{c:?}");

        // A log the ledger is ahead of, purged or not, is still named.
        let c = check_purged(&purged(log_of(&blocks[..6])), &blocks, 8, Some(4));
        assert!(says(&c, "the ledger applied entry 8"), "{c:?}");
    }

    #[test]
    fn a_missing_log_is_named_once_the_ledger_has_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-log.redb");
        assert!(check_log_offline(&path, &[], None).is_ok(), "a node that never ran");
        let c = check_log_offline(&path, &[Hash::of(b"block 1")], None);
        assert!(says(&c, "is missing"), "{c:?}");
    }
}
