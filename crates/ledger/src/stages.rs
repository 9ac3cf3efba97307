//! Where a ledger's time goes, stage by stage, for the node's metrics
//! (`medledger_block_stage_seconds_total{stage}`): checking signatures, executing the
//! transactions of a block against state, committing the block (without an fsync, or with
//! one every `durable_every` blocks), and extending the in-memory Merkle log. Cumulative
//! seconds, so that a scraper's `rate()` gives the seconds per second each stage takes.
//! `verify` runs beside the others (at admission, per request or batch; ahead of apply, per
//! block), so the stages do not add up to wall time.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

/// A stage of taking a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Signature checks: of a block this node did not propose, or at admission.
    Verify,
    /// Running each transaction of a block against state (the redb write transaction's work).
    Execute,
    /// Committing a block's write transaction without an fsync.
    Commit,
    /// Committing a block's write transaction with an fsync.
    DurableCommit,
    /// Appending a block's leaves to the in-memory Merkle log.
    Merkle,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 5] =
        [Stage::Verify, Stage::Execute, Stage::Commit, Stage::DurableCommit, Stage::Merkle];

    /// The stage's label value.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Verify => "verify",
            Stage::Execute => "execute",
            Stage::Commit => "commit",
            Stage::DurableCommit => "durable_commit",
            Stage::Merkle => "merkle",
        }
    }
}

/// Cumulative nanoseconds per stage, and how many times each ran.
#[derive(Debug, Default)]
pub struct StageTimes {
    nanos: [AtomicU64; 5],
    runs: [AtomicU64; 5],
}

impl StageTimes {
    /// Adds one run of `stage` that took `took`.
    pub fn add(&self, stage: Stage, took: Duration) {
        let i = stage as usize;
        self.nanos[i].fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        self.runs[i].fetch_add(1, Relaxed);
    }

    /// Total seconds spent in `stage`.
    pub fn seconds(&self, stage: Stage) -> f64 {
        self.nanos[stage as usize].load(Relaxed) as f64 / 1e9
    }

    /// How many times `stage` ran.
    pub fn runs(&self, stage: Stage) -> u64 {
        self.runs[stage as usize].load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_add_up_separately() {
        let t = StageTimes::default();
        t.add(Stage::Execute, Duration::from_millis(3));
        t.add(Stage::Execute, Duration::from_millis(2));
        t.add(Stage::DurableCommit, Duration::from_millis(7));
        assert!((t.seconds(Stage::Execute) - 0.005).abs() < 1e-9);
        assert_eq!(t.runs(Stage::Execute), 2);
        assert!((t.seconds(Stage::DurableCommit) - 0.007).abs() < 1e-9);
        assert_eq!(t.runs(Stage::Commit), 0);
        assert_eq!(t.seconds(Stage::Verify), 0.0);
    }
}
