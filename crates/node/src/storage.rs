//! The data directory's storage seen from the node: the free-space reserve below which the node
//! refuses writes ([`DiskGuard`], HTTP 507 `disk_full`, lifted by itself when space returns),
//! and the storage fault it cannot recover from in place ([`StorageFault`]: a failed write or
//! fsync of the Raft log or the ledger), which turns `/health` unhealthy and stops the node.
//!
//! Why a reserve: redb and openraft treat a failed write as fatal, and a failed fsync must
//! never be retried (the page cache may have dropped the dirty pages: PostgreSQL's lesson),
//! so the node must refuse work while there is still room for the blocks already in flight.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

/// The default free-space reserve of the data directory's file system: room for the blocks in
/// flight (a few MiB each) and the Raft log's and ledger's metadata pages, with a wide margin.
pub const DEFAULT_DISK_RESERVE_BYTES: u64 = 64 * MIB;

/// One MiB; the "MB" of messages and of `medledger up --disk-reserve-mb`.
pub const MIB: u64 = 1024 * 1024;

/// A reading of free space is reused for at most this long.
const RECHECK_EVERY: Duration = Duration::from_millis(250);

/// At most one low-space warning in the log per this period.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The refusal of a write because free space is below the reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node's disk is full: {} MB free, {} MB reserved", free / MIB, reserve / MIB)]
pub struct DiskFull {
    /// Bytes free on the data directory's file system (estimated since the last reading).
    pub free: u64,
    /// The reserve.
    pub reserve: u64,
}

/// The last reading of free space and what was written since.
#[derive(Debug)]
struct Reading {
    /// Bytes available (to unprivileged users: `f_bavail`) at the last `statvfs`.
    free: u64,
    /// When it was taken.
    at: Instant,
    /// Bytes admitted since (transactions and uploads), subtracted from `free` until the next
    /// reading so that a burst cannot overshoot the reserve between two readings.
    admitted_since: u64,
}

/// Watches free space on the data directory's file system and refuses writes below the
/// reserve. Readings are cached for [`RECHECK_EVERY`] or until a quarter of the reserve has
/// been admitted since, so the hot path is not one `statvfs` per transaction.
#[derive(Debug)]
pub struct DiskGuard {
    /// The data directory (any path on the file system to watch).
    dir: PathBuf,
    /// Writes are refused while free space is below this.
    reserve: u64,
    /// The cached reading.
    reading: Mutex<Reading>,
    /// When free space below twice the reserve was last logged.
    warned: Mutex<Option<Instant>>,
}

/// Bytes available to unprivileged writers on the file system holding `path`.
fn available_bytes(path: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(path)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

impl DiskGuard {
    /// Watches the file system of `dir`, keeping `reserve` bytes free. Fails if `dir` cannot be
    /// examined.
    pub fn new(dir: &Path, reserve: u64) -> std::io::Result<Self> {
        let free = available_bytes(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            reserve,
            reading: Mutex::new(Reading { free, at: Instant::now(), admitted_since: 0 }),
            warned: Mutex::new(None),
        })
    }

    /// The reserve, in bytes.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Free bytes now (a fresh reading), for `/metrics` and `/health`.
    pub fn free_now(&self) -> u64 {
        let mut r = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        self.reread(&mut r);
        r.free
    }

    fn reread(&self, r: &mut Reading) {
        match available_bytes(&self.dir) {
            Ok(free) => {
                *r = Reading { free, at: Instant::now(), admitted_since: 0 };
                self.maybe_warn(free);
            }
            // Keep the last reading: a transient failure of statvfs says nothing about space.
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read free space")
            }
        }
    }

    fn maybe_warn(&self, free: u64) {
        if free >= self.reserve.saturating_mul(2) {
            return;
        }
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *warned = Some(Instant::now());
            tracing::warn!(
                dir = %self.dir.display(),
                free_mb = free / MIB,
                reserve_mb = self.reserve / MIB,
                "the data directory's file system is nearly full: below twice the reserve, the node refuses writes below the reserve"
            );
        }
    }

    /// Admits a write of about `incoming` bytes, or refuses it if free space (less what was
    /// admitted since the last reading, less `incoming`) would be below the reserve.
    pub fn admit(&self, incoming: u64) -> Result<(), DiskFull> {
        if self.reserve == 0 {
            // No reserve (`--disk-reserve-mb 0`): nothing to keep, no reading to take.
            return Ok(());
        }
        let mut r = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        if r.at.elapsed() >= RECHECK_EVERY || r.admitted_since >= self.reserve / 4 {
            self.reread(&mut r);
        }
        let free = r.free.saturating_sub(r.admitted_since);
        if free.saturating_sub(incoming) < self.reserve {
            // Below the reserve, look again at the next attempt: space may come back at once.
            if r.admitted_since > 0 || r.at.elapsed() >= RECHECK_EVERY / 4 {
                self.reread(&mut r);
            }
            let free = r.free.saturating_sub(r.admitted_since);
            if free.saturating_sub(incoming) < self.reserve {
                return Err(DiskFull { free, reserve: self.reserve });
            }
        }
        r.admitted_since = r.admitted_since.saturating_add(incoming);
        Ok(())
    }

    /// Whether free space is below the reserve now (a fresh reading), and by how much.
    pub fn full_now(&self) -> Option<DiskFull> {
        let free = self.free_now();
        (free < self.reserve).then_some(DiskFull { free, reserve: self.reserve })
    }
}

/// A fault the node cannot recover from in place: a storage fault, or a protocol fault (the
/// leader sent a block or membership entry that does not check out). The first one reported
/// is kept; reporting it logs it, turns `/health` unhealthy and makes [`crate::serve`] stop
/// with it.
#[derive(Debug)]
pub struct StorageFault {
    /// The reason, once there is one.
    reason: tokio::sync::watch::Sender<Option<String>>,
    /// Whether the first fault was a protocol fault.
    protocol: std::sync::atomic::AtomicBool,
}

impl Default for StorageFault {
    fn default() -> Self {
        Self { reason: tokio::sync::watch::channel(None).0, protocol: false.into() }
    }
}

impl StorageFault {
    /// Records a storage fault (the first fault wins) and logs it.
    pub fn report(&self, reason: impl Into<String>) {
        if self.first(reason.into(), false) {
            tracing::error!(
                reason = self.reason().unwrap_or_default(),
                "storage fault: the node stops writing and shuts down; restart it once the storage is repaired (it recovers from its Raft log)"
            );
        }
    }

    /// Records a protocol fault (the first fault wins) and logs it: the node stops rather
    /// than follow a leader whose block or membership entry does not check out.
    pub fn report_protocol(&self, reason: impl Into<String>) {
        if self.first(reason.into(), true) {
            tracing::error!(
                reason = self.reason().unwrap_or_default(),
                "protocol fault: the node stops rather than diverge; keep its data directory as evidence and tell the consortium before restarting it"
            );
        }
    }

    fn first(&self, reason: String, protocol: bool) -> bool {
        self.reason.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            self.protocol.store(protocol, std::sync::atomic::Ordering::SeqCst);
            *r = Some(reason);
            true
        })
    }

    /// Whether the fault reported is a protocol fault.
    pub fn is_protocol(&self) -> bool {
        self.reason().is_some() && self.protocol.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The fault, if one was reported.
    pub fn reason(&self) -> Option<String> {
        self.reason.borrow().clone()
    }

    /// Completes once a fault is reported.
    pub async fn reported(&self) {
        let mut rx = self.reason.subscribe();
        // The sender lives as long as `self`, so this only ends with a fault.
        let _ = rx.wait_for(Option::is_some).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_below_the_reserve_and_counts_what_it_admitted() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_bytes(dir.path()).unwrap();
        // A reserve well below what is free: a small write passes, one larger than the file
        // system is refused with the figures.
        let gap = 256 * MIB;
        assert!(free > 2 * gap, "the test needs {} MB free in the temp dir", 2 * gap / MIB);
        let guard = DiskGuard::new(dir.path(), free - gap).unwrap();
        guard.admit(MIB).unwrap();
        let refused = guard.admit(u64::MAX).unwrap_err();
        assert_eq!(refused.reserve, free - gap);
        assert!(refused.to_string().starts_with("the node's disk is full: "), "{refused}");
        // A reserve above what the file system has refuses everything.
        let guard = DiskGuard::new(dir.path(), free.saturating_add(MIB)).unwrap();
        assert!(guard.admit(0).is_err());
        assert!(guard.full_now().is_some());
    }

    #[tokio::test]
    async fn the_first_fault_is_kept_and_wakes_the_waiter() {
        let fault = std::sync::Arc::new(StorageFault::default());
        assert_eq!(fault.reason(), None);
        let waiter = tokio::spawn({
            let fault = fault.clone();
            async move { fault.reported().await }
        });
        fault.report("first");
        fault.report("second");
        tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
        assert_eq!(fault.reason().as_deref(), Some("first"));
    }
}
