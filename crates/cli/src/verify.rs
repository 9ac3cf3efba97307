//! `medledger verify`: offline audit of a stopped node's data directory, part by part: the
//! ledger (hash chain, roots, signatures, a full replay), the Raft log (it opens, its entries
//! decode, it holds every block the ledger applied) and the vault (its index, and every blob
//! the ledger references, present and hash-checked). One line per part; non-zero exit if any
//! part fails; `--json` for scripts.

use std::{fmt::Write as _, path::Path};

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use medledger_ledger::{
    LedgerError,
    verify::{Stage, StoredFacts, stored_facts, verify_ledger},
};
use medledger_node::DataDir;
use serde::Serialize;

/// The verdict on one part of the data directory.
#[derive(Debug, Serialize)]
struct Part {
    /// `ledger`, `raft log` or `vault`.
    part: &'static str,
    ok: bool,
    /// One line for a person.
    message: String,
    /// Each problem found, in a sentence.
    problems: Vec<String>,
}

impl Part {
    fn ok(part: &'static str, message: String) -> Self {
        Part { part, ok: true, message, problems: Vec::new() }
    }
    fn failed(part: &'static str, message: String, problems: Vec<String>) -> Self {
        Part { part, ok: false, message, problems }
    }
}

/// "1 blob", "3 blobs".
fn blobs(n: usize) -> String {
    if n == 1 { "1 blob".into() } else { format!("{n} blobs") }
}

/// Most blobs named in a message; the rest are counted.
const NAMED: usize = 5;

pub fn run(data_dir: &Path, json: bool) -> Result<()> {
    let dir = DataDir::new(data_dir);
    if dir.in_use() {
        bail!(
            "the node is running (its data directory {} is in use); stop it first",
            data_dir.display()
        );
    }
    let ledger = match check_ledger(&dir, json) {
        Ok(part) => part,
        // Not a verdict on the ledger: a running node, an unclean stop, no ledger at all.
        Err(LedgerError::Setup(message)) => bail!("{message}"),
        Err(e) => Part::failed(
            "ledger",
            format!("ledger: FAILED for {}: {e}", dir.ledger().display()),
            vec![e.to_string()],
        ),
    };
    let facts = stored_facts(&dir.ledger());
    let parts = match &facts {
        Ok(facts) => vec![ledger, check_raft_log(&dir, facts), check_vault(&dir, facts)],
        Err(e) => {
            let unread = |part| {
                Part::failed(
                    part,
                    format!("{part}: not checked: the ledger cannot be read ({e})"),
                    vec![format!("the ledger cannot be read: {e}")],
                )
            };
            vec![ledger, unread("raft log"), unread("vault")]
        }
    };
    if json {
        let ok = parts.iter().all(|p| p.ok);
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "ok": ok, "parts": parts }))?
        );
    } else {
        for part in &parts {
            println!("{}", part.message);
        }
    }
    let failed: Vec<&str> = parts.iter().filter(|p| !p.ok).map(|p| p.part).collect();
    if !failed.is_empty() {
        bail!("verification FAILED: {}", failed.join(", "));
    }
    Ok(())
}

fn check_ledger(dir: &DataDir, quiet: bool) -> Result<Part, LedgerError> {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template("{msg:>22} [{bar:40}] {pos}/{len} blocks ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut current = None;
    let result = verify_ledger(&dir.ledger(), &mut |stage, done, total| {
        if current != Some(stage) {
            current = Some(stage);
            bar.set_length(total);
            bar.set_message(match stage {
                Stage::Chain => "hash chain and roots",
                Stage::Replay => "signatures and replay",
            });
        }
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let report = result?;
    Ok(Part::ok(
        "ledger",
        format!(
            "ledger OK: chain {:?}, {} blocks ({} sealed by a node admitted and active before it), {} transactions ({} applied, {} refused), every signature valid, replay matches stored state, log root {}",
            report.chain_id,
            report.blocks,
            report.sealed,
            report.transactions,
            report.applied,
            report.refused,
            report.log_root
        ),
    ))
}

fn check_raft_log(dir: &DataDir, facts: &StoredFacts) -> Part {
    let check = medledger_node::raft::check_log_offline(
        &dir.raft_log(),
        &facts.block_hashes,
        facts.applied_marker.as_deref(),
    );
    if !check.is_ok() {
        return Part::failed(
            "raft log",
            format!("raft log: FAILED: {}", check.problems.join("; ")),
            check.problems,
        );
    }
    let mut message = match (check.range, check.purged_through) {
        (Some((first, last)), None) => format!(
            "raft log: OK ({} entries, indexes {first} to {last}, all decode; the ledger's {} blocks are in it, same headers and transactions)",
            check.entries, check.blocks_matched
        ),
        (Some((first, last)), Some(purged)) => format!(
            "raft log: OK ({} entries, indexes {first} to {last}, all decode; entries up to {purged} purged behind a snapshot; the ledger's {} blocks since are in it, same headers and transactions)",
            check.entries, check.blocks_matched
        ),
        (None, Some(purged)) => {
            format!("raft log: OK (empty: every entry up to {purged} purged behind a snapshot)")
        }
        (None, None) => "raft log: OK (empty: no block applied yet)".to_owned(),
    };
    if check.blocks_ahead > 0 {
        let _ = write!(
            message,
            "; {} committed blocks are not in the ledger file yet (the node applies them when it starts)",
            check.blocks_ahead
        );
    }
    Part::ok("raft log", message)
}

fn check_vault(dir: &DataDir, facts: &StoredFacts) -> Part {
    let check = medledger_vault::check_offline(
        &dir.vault(),
        facts.blobs.keys().copied(),
        |h: &medledger_core::Hash| facts.unchecked_at_admission.contains(h),
    );
    let named = |blobs: &mut dyn Iterator<Item = (String, &medledger_core::Hash)>, n: usize| {
        let mut list: Vec<String> = blobs
            .take(NAMED)
            .map(|(detail, h)| {
                let by = facts.blobs.get(h).map_or("", String::as_str);
                format!("{h} ({by}{detail})")
            })
            .collect();
        if n > NAMED {
            list.push(format!("and {} more", n - NAMED));
        }
        list.join(", ")
    };
    let mut problems = Vec::new();
    if let Some(p) = &check.index_problem {
        problems.push(p.clone());
    }
    if !check.missing.is_empty() {
        let n = check.missing.len();
        let list = named(&mut check.missing.iter().map(|h| (String::new(), h)), n);
        problems.push(format!("{} missing: {list}", blobs(n)));
    }
    if !check.corrupt.is_empty() {
        let n = check.corrupt.len();
        let list = named(&mut check.corrupt.iter().map(|(h, why)| (format!(": {why}"), h)), n);
        problems.push(format!("{} corrupt: {list}", blobs(n)));
    }
    if !check.unindexed.is_empty() {
        let n = check.unindexed.len();
        let list = named(&mut check.unindexed.iter().map(|h| (String::new(), h)), n);
        problems.push(format!("{} not in the index: {list}", blobs(n)));
    }
    if !problems.is_empty() {
        return Part::failed("vault", format!("vault: {}", problems.join("; ")), problems);
    }
    let mut message = format!(
        "vault: OK ({} referenced blobs present and hash-checked; index of {} blobs)",
        check.whole, check.indexed
    );
    if !check.never_stored.is_empty() {
        let _ = write!(
            message,
            "; {} of registrations never stored on this node (the registry does not require them)",
            blobs(check.never_stored.len())
        );
    }
    Part::ok("vault", message)
}
