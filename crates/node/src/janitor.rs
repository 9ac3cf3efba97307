//! The vault's janitor: carries out erasures and collects garbage.
//!
//! Erasure: when a block erases a record, its receipt lists the blobs to destroy (ciphertext,
//! metadata, every wrapped key); the janitor deletes them from this node's vault. It keeps a
//! cursor (the last height it handled) in the data directory, written after the deletions,
//! so a crash in between only repeats deletions, which are idempotent.
//!
//! Garbage: every [`GC_EVERY`], blobs that committed state does not reference
//! (`Ledger::blobs_in_use`: registrations, records, cases, emergency profiles and escrow,
//! device sessions) and that were stored more than [`GC_GRACE`] ago (uploads never minted, or
//! abandoned) are deleted.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use medledger_core::block::{Created, Outcome};
use medledger_ledger::Ledger;
use medledger_vault::{BlobStore, FsVault};
use tokio::sync::watch;

/// How often unreferenced blobs are collected.
pub const GC_EVERY: Duration = Duration::from_secs(3600);
/// How long an unreferenced blob is kept: the time a client has between uploading a record and
/// minting its token.
pub const GC_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Runs until the task is aborted.
pub async fn run(
    ledger: Arc<Ledger>,
    vault: FsVault,
    mut applied: watch::Receiver<u64>,
    cursor_path: PathBuf,
) {
    let mut done = read_cursor(&cursor_path);
    let mut gc = tokio::time::interval(GC_EVERY);
    gc.tick().await; // the first tick is immediate; collect an hour after start
    loop {
        let tip = *applied.borrow_and_update();
        if tip > done {
            let (ledger, vault, path) = (ledger.clone(), vault.clone(), cursor_path.clone());
            match tokio::task::spawn_blocking(move || {
                erase_through(&ledger, &vault, done, tip, &path)
            })
            .await
            {
                Ok(Ok(())) => done = tip,
                Ok(Err(e)) => tracing::error!(error = %e, "erasure: will retry at the next block"),
                Err(e) => tracing::error!(error = %e, "erasure task failed"),
            }
        }
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = gc.tick() => {
                let (ledger, vault) = (ledger.clone(), vault.clone());
                match tokio::task::spawn_blocking(move || collect(&ledger, &vault)).await {
                    Ok(Ok(report)) => tracing::info!(
                        deleted = report.deleted,
                        bytes_freed = report.bytes_freed,
                        "vault garbage collected"
                    ),
                    Ok(Err(e)) => tracing::error!(error = %e, "vault garbage collection failed"),
                    Err(e) => tracing::error!(error = %e, "vault garbage collection task failed"),
                }
            }
        }
    }
}

fn read_cursor(path: &Path) -> u64 {
    std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Deletes the blobs of every erasure in blocks `after + 1 ..= tip`, then records `tip`.
pub fn erase_through(
    ledger: &Ledger,
    vault: &FsVault,
    after: u64,
    tip: u64,
    cursor_path: &Path,
) -> Result<(), String> {
    for height in after + 1..=tip {
        for outcome in ledger.outcomes_at(height).map_err(|e| e.to_string())? {
            if let Outcome::Applied { created: Some(Created::Erased { pmr, blobs }) } = outcome {
                for blob in &blobs {
                    vault.delete(blob).map_err(|e| e.to_string())?;
                }
                tracing::info!(record = %pmr, blobs = blobs.len(), height, "record erased from the vault");
            }
        }
    }
    crate::durable::replace_fsynced(cursor_path, tip.to_string().as_bytes()).map_err(|e| {
        format!("cannot record the janitor's cursor at {}: {e}", cursor_path.display())
    })
}

/// One garbage collection: keeps every blob committed state references
/// (`Ledger::blobs_in_use`, one snapshot); on any error, nothing is deleted.
pub fn collect(ledger: &Ledger, vault: &FsVault) -> Result<medledger_vault::GcReport, String> {
    let in_use = ledger.blobs_in_use().map_err(|e| e.to_string())?;
    vault
        .collect_garbage(&|h| in_use.contains(h), GC_GRACE, SystemTime::now())
        .map_err(|e| e.to_string())
}
