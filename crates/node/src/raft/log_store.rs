//! The Raft log in its own redb file. One writer thread owns all writes, in arrival order;
//! appends that queue up while it is syncing are committed together (group commit) and each
//! is acknowledged to Raft only after its fsync.
//!
//! A failed write or fsync is a storage fault (see [`crate::storage`]): it is reported, and
//! the writer fails every later command without touching the file again. A failed fsync is
//! never retried (the kernel may have dropped the dirty pages it could not write); the node
//! stops, and after a restart Raft recovers from what the file really holds.

use std::{
    fmt::Debug,
    ops::RangeBounds,
    path::Path,
    sync::{Arc, mpsc},
    thread,
};

use openraft::{
    Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote,
    storage::{LogFlushed, RaftLogStorage},
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::TypeConfig;
use crate::storage::StorageFault;

pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const VOTE: &str = "vote";
pub(super) const PURGED: &str = "last_purged";
const COMMITTED: &str = "committed";

/// Largest encoded Raft entry we will decode (a full block and change).
pub(super) const MAX_ENTRY_BYTES: usize = medledger_core::block::MAX_BLOCK_BYTES + 64 * 1024;

/// redb cache for the Raft log.
const LOG_CACHE_BYTES: usize = 64 * 1024 * 1024;

type Reply = oneshot::Sender<Result<(), String>>;

enum Command {
    Append(Vec<(u64, Vec<u8>)>, LogFlushed<TypeConfig>),
    /// Delete entries with index >= the given one.
    Truncate(u64, Reply),
    /// Delete entries up to and including the log id, remembering it.
    Purge(LogId<u64>, Reply),
    PutMeta(&'static str, Vec<u8>, Reply),
}

/// The Raft log store. Cheap to clone: clones share the database and the writer.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<LogDb>,
    writer: mpsc::Sender<Command>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStore")
    }
}

fn io_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::<u64>::write_logs(openraft::AnyError::error(e.to_string())).into()
}
fn read_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::<u64>::read_logs(openraft::AnyError::error(e.to_string())).into()
}

/// The Raft log's database, which says when it has been closed. redb marks its file cleanly
/// closed in `Database::drop`, and an `Arc`'s strong count reaches zero *before* that drop
/// runs: waiting on the count let the process exit while the file was still being closed,
/// leaving a log `verify` could not open without repair.
struct LogDb {
    db: Option<Database>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl std::ops::Deref for LogDb {
    type Target = Database;
    fn deref(&self) -> &Database {
        self.db.as_ref().expect("the database is taken only in drop")
    }
}

impl Drop for LogDb {
    fn drop(&mut self) {
        drop(self.db.take());
        self.closed.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Waits for the Raft log's database to be closed: every handle dropped (the writer thread's
/// is the last, and it is a detached thread) and redb's close finished.
#[derive(Debug)]
pub struct LogClosed(Arc<std::sync::atomic::AtomicBool>);

impl LogClosed {
    /// Polls until the database is closed or `limit` passes; whether it closed.
    pub async fn wait(self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while !self.0.load(std::sync::atomic::Ordering::Acquire) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        true
    }
}

impl LogStore {
    /// A handle that waits for this log's database to be closed (after Raft shut down).
    pub fn closed(&self) -> LogClosed {
        LogClosed(self.db.closed.clone())
    }

    /// Opens or creates the log at `path` and starts its writer thread, which reports a failed
    /// write or fsync to `fault`.
    pub fn open(path: &Path, fault: Arc<StorageFault>) -> Result<Self, redb::Error> {
        // The log is written far more than it is read: a small cache is enough.
        let mut builder = Database::builder();
        builder.set_cache_size(LOG_CACHE_BYTES);
        let db = Arc::new(LogDb {
            db: Some(if path.exists() { builder.open(path)? } else { builder.create(path)? }),
            closed: Arc::default(),
        });
        {
            let txn = db.begin_write()?;
            txn.open_table(LOG)?;
            txn.open_table(META)?;
            txn.commit()?;
        }
        let (writer, rx) = mpsc::channel();
        let wdb = db.clone();
        thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(&wdb, &rx, &fault))
            .map_err(redb::Error::Io)?;
        Ok(Self { db, writer })
    }

    /// Deletes, before Raft starts, the entries after `applied` (the ledger's applied log id)
    /// of an earlier term than it: uncommitted leftovers of an old leader that a snapshot
    /// imported on receipt has overtaken, left behind when the node stopped before Raft was
    /// handed that snapshot (`receive.rs`). Terms never decrease along a log, so none of them
    /// can be committed; kept, they would sit after entries a new leader appends by index and
    /// make a later start read the log's end wrong. Returns how many were deleted.
    pub fn drop_stale_after(&self, applied: LogId<u64>) -> Result<u64, redb::Error> {
        let txn = self.db.begin_write()?;
        let doomed = {
            let mut log = txn.open_table(LOG)?;
            let mut doomed = Vec::new();
            for row in log.range(applied.index + 1..)? {
                let (k, v) = row?;
                let entry: Entry<TypeConfig> =
                    medledger_core::encoding::decode("raft entry", v.value(), MAX_ENTRY_BYTES)
                        .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
                if entry.log_id.leader_id.term < applied.leader_id.term {
                    doomed.push(k.value());
                }
            }
            for k in &doomed {
                log.remove(*k)?;
            }
            doomed.len() as u64
        };
        txn.commit()?;
        Ok(doomed)
    }

    fn meta<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError<u64>> {
        let read = self.db.begin_read().map_err(read_err)?;
        let table = read.open_table(META).map_err(read_err)?;
        let v = table.get(key).map_err(read_err)?;
        v.map(|v| {
            medledger_core::encoding::decode("raft metadata", v.value(), 4096).map_err(read_err)
        })
        .transpose()
    }

    async fn send(&self, make: impl FnOnce(Reply) -> Command) -> Result<(), StorageError<u64>> {
        let (tx, rx) = oneshot::channel();
        self.writer.send(make(tx)).map_err(io_err)?;
        rx.await.map_err(io_err)?.map_err(io_err)
    }
}

fn writer_loop(db: &Database, rx: &mpsc::Receiver<Command>, fault: &StorageFault) {
    // Set by the first failed write: from then on nothing is written (or fsynced) again.
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = match &failed {
            Some(reason) => Err(format!(
                "the Raft log stopped after a storage fault ({reason}); restart the node"
            )),
            None => write_batch(db, &batch).map_err(|e| {
                let reason = format!("writing or fsyncing the Raft log failed: {e}");
                fault.report(reason.clone());
                failed = Some(reason.clone());
                reason
            }),
        };
        for cmd in batch {
            let r = result.clone();
            match cmd {
                Command::Append(_, callback) => {
                    callback.log_io_completed(r.map_err(std::io::Error::other));
                }
                Command::Truncate(_, reply)
                | Command::Purge(_, reply)
                | Command::PutMeta(_, _, reply) => {
                    let _ = reply.send(r);
                }
            }
        }
    }
}

/// Writes one group of commands in one redb transaction and commits it (with its fsync).
fn write_batch(db: &Database, batch: &[Command]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(META)?;
        for cmd in batch {
            match cmd {
                Command::Append(entries, _) => {
                    for (index, bytes) in entries {
                        log.insert(*index, bytes.as_slice())?;
                    }
                }
                Command::Truncate(from, _) => {
                    let doomed: Vec<u64> = log
                        .range(*from..)?
                        .map(|r| r.map(|(k, _)| k.value()))
                        .collect::<Result<_, _>>()?;
                    for k in doomed {
                        log.remove(k)?;
                    }
                }
                Command::Purge(log_id, _) => {
                    // Raft never purges backwards; a stale purge must not move the marker back.
                    let purged: Option<LogId<u64>> = meta
                        .get(PURGED)?
                        .map(|v| medledger_core::encoding::decode("purged log id", v.value(), 4096))
                        .transpose()
                        .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
                    if purged.is_some_and(|p| p.index >= log_id.index) {
                        continue;
                    }
                    log.retain_in(..=log_id.index, |_, _| false)?;
                    meta.insert(PURGED, medledger_core::encoding::encode(log_id).as_slice())?;
                }
                Command::PutMeta(key, value, _) => {
                    meta.insert(*key, value.as_slice())?;
                }
            }
        }
    }
    // The fault tests inject a failed write (nothing reaches the file) here...
    #[cfg(feature = "failpoints")]
    fail::fail_point!("raft-log-write", |_| Err(injected("write")));
    txn.commit()?;
    // ...and a failed fsync here: the bytes may or may not be durable, and Raft is told the
    // append failed, as when the kernel reports an fsync error after writing some pages.
    #[cfg(feature = "failpoints")]
    fail::fail_point!("raft-log-fsync", |_| Err(injected("fsync")));
    Ok(())
}

#[cfg(feature = "failpoints")]
fn injected(what: &str) -> redb::Error {
    redb::Error::Io(std::io::Error::other(format!(
        "injected I/O error at the Raft log's {what} (failpoint raft-log-{what})"
    )))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let read = self.db.begin_read().map_err(read_err)?;
        let log = read.open_table(LOG).map_err(read_err)?;
        let mut out = Vec::new();
        for row in log.range(range).map_err(read_err)? {
            let (_, v) = row.map_err(read_err)?;
            out.push(
                medledger_core::encoding::decode("raft entry", v.value(), MAX_ENTRY_BYTES)
                    .map_err(read_err)?,
            );
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last_purged: Option<LogId<u64>> = self.meta(PURGED)?;
        let last = {
            let read = self.db.begin_read().map_err(read_err)?;
            let log = read.open_table(LOG).map_err(read_err)?;
            match log.last().map_err(read_err)? {
                Some((_, v)) => {
                    let e: Entry<TypeConfig> =
                        medledger_core::encoding::decode("raft entry", v.value(), MAX_ENTRY_BYTES)
                            .map_err(read_err)?;
                    Some(e.log_id)
                }
                None => None,
            }
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.or(last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let bytes = medledger_core::encoding::encode(vote);
        self.send(|r| Command::PutMeta(VOTE, bytes, r)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.meta(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = medledger_core::encoding::encode(&committed);
        self.send(|r| Command::PutMeta(COMMITTED, bytes, r)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.meta::<Option<LogId<u64>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, medledger_core::encoding::encode(&e)))
            .collect();
        self.writer.send(Command::Append(encoded, callback)).map_err(io_err)
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.send(|r| Command::Truncate(log_id.index, r)).await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.send(|r| Command::Purge(log_id, r)).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::{CommittedLeaderId, RaftLogReader, Vote, storage::RaftLogStorage};

    use super::*;

    /// Entries after the applied log id of an earlier term are uncommitted leftovers and go;
    /// those up to it, and later ones of its term or after, stay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_of_an_older_term_past_the_applied_point_are_dropped_and_no_others() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(&dir.path().join("raft-log.redb"), Arc::default()).unwrap();
        let id = |term, index| LogId::new(CommittedLeaderId::new(term, 1), index);
        {
            let txn = store.db.begin_write().unwrap();
            {
                let mut log = txn.open_table(LOG).unwrap();
                let terms = (1..=15).map(|i| (1, i)).chain((16..=18).map(|i| (3, i)));
                for (term, index) in terms {
                    let entry = Entry::<TypeConfig> {
                        log_id: id(term, index),
                        payload: openraft::EntryPayload::Blank,
                    };
                    log.insert(index, medledger_core::encoding::encode(&entry).as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        assert_eq!(store.drop_stale_after(id(2, 11)).unwrap(), 4);
        let left: Vec<_> = store
            .try_get_log_entries(0..100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.log_id)
            .collect();
        let expected: Vec<_> =
            (1..=11).map(|i| id(1, i)).chain((16..=18).map(|i| id(3, i))).collect();
        assert_eq!(left, expected);
        // Nothing of an older term past the applied point: nothing goes.
        assert_eq!(store.drop_stale_after(id(1, 11)).unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn once_closed_is_reported_the_file_opens_without_repair_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-log.redb");
        for round in 0..20u64 {
            let mut store = LogStore::open(&path, Arc::default()).unwrap();
            store.save_vote(&Vote::new(round + 1, 1)).await.unwrap();
            let committed = LogId::new(CommittedLeaderId::new(round + 1, 1), round);
            store.save_committed(Some(committed)).await.unwrap();
            let closed = store.closed();
            let reader = store.clone();
            drop(store);
            // A handle is still open: the wait must not say the file is closed.
            assert!(!closed.wait(Duration::from_millis(50)).await, "round {round}: still open");
            let closed = reader.closed();
            drop(reader);
            assert!(closed.wait(Duration::from_secs(10)).await, "round {round}: never closed");
            // Exactly what `verify` does: a file left mid-close needs repair and is refused.
            let db = redb::ReadOnlyDatabase::open(&path)
                .unwrap_or_else(|e| panic!("round {round}: reported closed, yet {e}"));
            drop(db);
        }
    }
}
