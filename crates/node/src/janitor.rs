//! The vault's janitor: keeps this node's replica of every committed blob, carries out
//! erasures and collects garbage.
//!
//! Replication: in a network of several nodes, as blocks are applied the janitor first
//! carries out their erasures, then pulls every blob their applied transactions reference
//! that this vault lacks from a peer ([`crate::raft::replicas`]), less the blobs those
//! blocks erased; the next blocks' erasures run after these pulls, so a blob erased later is
//! deleted after it arrived, never left behind. A blob no peer
//! delivered is kept in a list and asked for again every [`RETRY_EVERY`] until it arrives
//! or is erased; at start and every [`REPAIR_EVERY`] a repair pass pulls every blob
//! committed state references that this vault lacks (what a crash or a long outage left
//! behind).
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
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use medledger_core::{
    Hash,
    block::{Created, Outcome},
    tx::{BlobRef, SignedTransaction},
};
use medledger_ledger::Ledger;
use medledger_vault::{BlobStore, FsVault};
use tokio::sync::watch;

use crate::raft::replicas::{PullError, Puller};

/// How often unreferenced blobs are collected.
pub const GC_EVERY: Duration = Duration::from_secs(3600);
/// How long an unreferenced blob is kept: the time a client has between uploading a record and
/// minting its token.
pub const GC_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How often blobs no peer delivered are asked for again.
pub const RETRY_EVERY: Duration = Duration::from_secs(10);
/// How often (and at start) every blob committed state references is checked for.
pub const REPAIR_EVERY: Duration = Duration::from_secs(600);
/// The least time between two repair passes asked for (`POST /v1/vault/repair`).
pub const REPAIR_SPACING: Duration = Duration::from_secs(30);

/// Runs until the task is aborted. `puller`: this node's replica puller (`None` on a node
/// that replicates nothing, as in tests of erasure alone).
pub async fn run(
    ledger: Arc<Ledger>,
    vault: FsVault,
    mut applied: watch::Receiver<u64>,
    cursor_path: PathBuf,
    puller: Option<Puller>,
) {
    let mut done = read_cursor(&cursor_path);
    let mut gc = tokio::time::interval(GC_EVERY);
    gc.tick().await; // the first tick is immediate; collect an hour after start
    let mut retry = tokio::time::interval(RETRY_EVERY);
    let mut repair = tokio::time::interval(REPAIR_EVERY);
    // Blobs committed state needs that no peer has delivered yet, asked for again every
    // RETRY_EVERY: each with whether a node admits its transaction only once it holds it
    // (asked for until delivered) or not (asked for while a peer fails to answer for it; once
    // every peer says it holds none, it is left to the repair pass: it may never have been
    // uploaded).
    let mut missing: BTreeMap<Hash, bool> = BTreeMap::new();
    let mut last_pass: Option<tokio::time::Instant> = None;
    loop {
        let tip = *applied.borrow_and_update();
        if tip > done {
            // Erasures first, then the blocks' blobs less what they erased: a blob erased in
            // these blocks is never pulled back.
            let mut erased_now = None;
            let (l, vault, path) = (ledger.clone(), vault.clone(), cursor_path.clone());
            match tokio::task::spawn_blocking(move || erase_through(&l, &vault, done, tip, &path))
                .await
            {
                Ok(Ok(erased)) => {
                    let from = done;
                    done = tip;
                    for hash in &erased {
                        missing.remove(hash);
                    }
                    erased_now = Some((from, erased));
                }
                Ok(Err(e)) => tracing::error!(error = %e, "erasure: will retry at the next block"),
                Err(e) => tracing::error!(error = %e, "erasure task failed"),
            }
            if let Some((from, erased)) = erased_now
                && let Some(puller) = puller.as_ref().filter(|p| p.has_peers())
            {
                match blocking(&ledger, move |l| blobs_applied_in(l, from, tip)).await {
                    Ok(wanted) => {
                        // Details a transaction names without requiring them may never have
                        // been uploaded: those are left to the repair pass, not asked for
                        // again every 10 s.
                        let required: BTreeSet<Hash> = wanted
                            .iter()
                            .filter(|b| b.role.required_at_admission())
                            .map(|b| b.hash)
                            .collect();
                        // Erased in these blocks: never pulled back.
                        let hashes: Vec<Hash> =
                            wanted.iter().map(|b| b.hash).filter(|h| !erased.contains(h)).collect();
                        for e in puller.ensure_all(hashes, None).await {
                            let required = required.contains(&e.hash());
                            if ask_again(&e, required) {
                                missing.insert(e.hash(), required);
                                tracing::warn!(error = %e, "replication: will ask again");
                            }
                        }
                        puller.record_retrying(missing.len());
                    }
                    Err(e) => tracing::error!(error = %e, "replication: cannot read the blocks"),
                }
            }
        }
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = retry.tick(), if !missing.is_empty() => {
                if let Some(puller) = &puller {
                    let asked = std::mem::take(&mut missing);
                    for e in puller.ensure_all(asked.keys().copied(), None).await {
                        let required = asked.get(&e.hash()).copied().unwrap_or(false);
                        if ask_again(&e, required) {
                            missing.insert(e.hash(), required);
                        }
                    }
                    puller.record_retrying(missing.len());
                }
            }
            _ = repair.tick() => {
                if let Some(puller) = &puller {
                    for hash in repair_pass(&ledger, puller).await {
                        missing.entry(hash).or_insert(false);
                    }
                    puller.record_retrying(missing.len());
                    last_pass = Some(tokio::time::Instant::now());
                }
            }
            () = requested(puller.as_ref()) => {
                // At most one pass per REPAIR_SPACING: a request soon after one is run then.
                match last_pass {
                    Some(at) if at.elapsed() < REPAIR_SPACING => repair.reset_at(at + REPAIR_SPACING),
                    _ => repair.reset_immediately(),
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

/// Waits for a repair request to `puller` (forever without one).
async fn requested(puller: Option<&Puller>) {
    match puller {
        Some(puller) => puller.repair_requested().await,
        None => std::future::pending().await,
    }
}

/// Whether a blob that was not pulled is asked for again in RETRY_EVERY: one a transaction
/// required at admission until it is delivered, any other while a peer fails to answer for
/// it; never an erased one.
fn ask_again(e: &PullError, required: bool) -> bool {
    e.retriable() && (required || e.transient())
}

/// One repair pass: pulls every blob committed state references that this vault lacks, and
/// records what is still missing in the puller's status. Nothing on a node without peers.
/// Returns the missing blobs some peer failed to answer for: worth asking for again soon.
async fn repair_pass(ledger: &Arc<Ledger>, puller: &Puller) -> Vec<Hash> {
    if !puller.has_peers() {
        return Vec::new();
    }
    match blocking(ledger, |l| l.blobs_in_use().map_err(|e| e.to_string())).await {
        Ok(in_use) => {
            let referenced = in_use.len();
            let failed = puller.ensure_all(in_use, None).await;
            let missing: Vec<Hash> =
                failed.iter().filter(|e| e.retriable()).map(PullError::hash).collect();
            if let Some(first) = failed.first() {
                tracing::warn!(
                    blobs = failed.len(),
                    first = %first,
                    "repair pass: blobs committed state references are missing here and on every peer asked"
                );
            }
            puller.record_pass(referenced, &missing);
            tracing::info!(referenced, missing = missing.len(), "repair pass done");
            failed.iter().filter(|e| e.transient()).map(PullError::hash).collect()
        }
        Err(e) => {
            tracing::error!(error = %e, "repair pass: cannot read state");
            Vec::new()
        }
    }
}

/// Runs `f` on the ledger off the async workers.
async fn blocking<T: Send + 'static>(
    ledger: &Arc<Ledger>,
    f: impl FnOnce(&Ledger) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || f(&ledger)).await.map_err(|e| e.to_string())?
}

/// Every blob the applied transactions of blocks `after + 1 ..= tip` reference.
pub fn blobs_applied_in(ledger: &Ledger, after: u64, tip: u64) -> Result<Vec<BlobRef>, String> {
    let mut out = Vec::new();
    for height in after + 1..=tip {
        let Some(header) = ledger.header(height).map_err(|e| e.to_string())? else { continue };
        let txs = ledger.block_transactions(&header).map_err(|e| e.to_string())?;
        let outcomes = ledger.outcomes_at(height).map_err(|e| e.to_string())?;
        for (bytes, outcome) in txs.iter().zip(&outcomes) {
            if !matches!(outcome, Outcome::Applied { .. }) {
                continue;
            }
            let tx = SignedTransaction::decode(bytes).map_err(|e| e.to_string())?;
            out.extend(tx.tx.body.blobs());
        }
    }
    Ok(out)
}

fn read_cursor(path: &Path) -> u64 {
    std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Deletes the blobs of every erasure in blocks `after + 1 ..= tip`, then records `tip`;
/// the blobs erased.
pub fn erase_through(
    ledger: &Ledger,
    vault: &FsVault,
    after: u64,
    tip: u64,
    cursor_path: &Path,
) -> Result<Vec<Hash>, String> {
    let mut erased = Vec::new();
    for height in after + 1..=tip {
        for outcome in ledger.outcomes_at(height).map_err(|e| e.to_string())? {
            if let Outcome::Applied { created: Some(Created::Erased { pmr, blobs }) } = outcome {
                for blob in &blobs {
                    vault.delete(blob).map_err(|e| e.to_string())?;
                }
                tracing::info!(record = %pmr, blobs = blobs.len(), height, "record erased from the vault");
                erased.extend(blobs);
            }
        }
    }
    crate::durable::replace_fsynced(cursor_path, tip.to_string().as_bytes()).map_err(|e| {
        format!("cannot record the janitor's cursor at {}: {e}", cursor_path.display())
    })?;
    Ok(erased)
}

/// One garbage collection: keeps every blob committed state references
/// (`Ledger::blobs_in_use`, one snapshot); on any error, nothing is deleted.
pub fn collect(ledger: &Ledger, vault: &FsVault) -> Result<medledger_vault::GcReport, String> {
    let in_use = ledger.blobs_in_use().map_err(|e| e.to_string())?;
    vault
        .collect_garbage(&|h| in_use.contains(h), GC_GRACE, SystemTime::now())
        .map_err(|e| e.to_string())
}
