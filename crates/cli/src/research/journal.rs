//! The research exports a member's wallet has committed, kept beside the wallet
//! (`<wallet>.research-exports.json`, the member's alone, sealed to the wallet's own
//! encryption key: it names the patients of a project): an export run again within the day
//! (after a failure, or once the patient has released the keys of what it named) names the
//! events already in the patients' trails, while their listings are open, instead of adding a
//! second event to each trail and spending the patient's daily allowance of exports.
//!
//! The file decides nothing the ledger does not confirm: an entry is used only if the ledger
//! still lists its event to this member with the plan the cohort gives now
//! ([`super::checked_listing`]); otherwise the patient is exported afresh. A damaged file is
//! set aside with a warning, and a journal that cannot be written is warned of: neither is a
//! reason not to export.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use medledger_client::Identity;
use medledger_core::{
    Hash, ids::AccountId, keys::EncryptionKey, tx::consent::RESEARCH_READ_WINDOW_MS,
};
use serde::{Deserialize, Serialize};

/// The file's format.
const VERSION: u32 = 1;
/// How the file begins (then the sealed JSON, hex).
const SEALED: &str = "sealed:";
/// What the file is called in messages.
const WHAT: &str = "the journal of research exports";
/// Largest journal read (a day of exports of a large cohort).
const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// A research export this wallet saw committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Committed {
    /// The network.
    pub chain_id: String,
    /// The member that signed it.
    pub member: AccountId,
    /// The project.
    pub project: String,
    /// The rule set.
    pub rule_set: String,
    /// The patient.
    pub patient: AccountId,
    /// The plan digest the event commits to.
    pub plan: Hash,
    /// The export's audit event.
    pub event: u64,
    /// The block that holds it.
    pub height: u64,
    /// When this wallet saw it committed, ms since the Unix epoch by its own clock: an entry
    /// a day old is dropped (its listing has closed).
    pub seen_ms: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalFile {
    version: u32,
    exports: Vec<Committed>,
}

/// The journal of one wallet ([`Journal::beside`]).
pub(crate) struct Journal {
    path: PathBuf,
    /// The wallet's own encryption key, which the file is sealed to.
    owner: EncryptionKey,
    exports: Vec<Committed>,
}

/// What an export is, as far as the journal tells one from another.
pub(crate) struct Key<'a> {
    /// The network.
    pub chain_id: &'a str,
    /// The member.
    pub member: AccountId,
    /// The project.
    pub project: &'a str,
    /// The rule set.
    pub rule_set: &'a str,
}

impl Journal {
    /// The journal of the wallet at `wallet`.
    pub(crate) fn beside(wallet: &Path) -> PathBuf {
        let mut p = wallet.to_path_buf().into_os_string();
        p.push(".research-exports.json");
        PathBuf::from(p)
    }

    /// The journal at `path`, opened with `identity`: empty when there is none; a file that
    /// cannot be read as one (damaged, another wallet's, readable by others) is moved aside
    /// (`.damaged`), with a warning, and the journal starts empty.
    pub(crate) fn load(path: &Path, identity: &Identity) -> Journal {
        let owner = identity.decryption.public_key();
        let empty = Journal { path: path.to_owned(), owner, exports: Vec::new() };
        if !path.exists() {
            return empty;
        }
        let read = super::read_own_file(path, MAX_BYTES, WHAT).and_then(|text| {
            let not_one = || format!("{} is not {WHAT} of this wallet", path.display());
            let sealed = text.trim().strip_prefix(SEALED).with_context(not_one)?;
            let sealed = hex::decode(sealed).ok().with_context(not_one)?;
            let json = medledger_client::seal::open(&sealed, &identity.decryption)
                .ok()
                .with_context(not_one)?;
            let file: JournalFile = serde_json::from_slice(&json).ok().with_context(not_one)?;
            anyhow::ensure!(
                file.version == VERSION,
                "{} is of format {}, not {VERSION}",
                path.display(),
                file.version
            );
            Ok(file.exports)
        });
        match read {
            Ok(exports) => Journal { exports, ..empty },
            Err(e) => {
                let aside = path.with_extension("json.damaged");
                let moved = std::fs::rename(path, &aside).is_ok();
                eprintln!(
                    "warning: {e:#}; {} and exporting as if no export had been made today \
                     (each patient's trail shows a second export)",
                    if moved {
                        format!("moved it to {}", aside.display())
                    } else {
                        "ignoring it".to_owned()
                    }
                );
                empty
            }
        }
    }

    /// The export of `patient` under `key` with `plan` this wallet saw committed less than a
    /// day before `now_ms`, if any (the latest).
    pub(crate) fn reusable(
        &self,
        key: &Key<'_>,
        patient: &AccountId,
        plan: &Hash,
        now_ms: u64,
    ) -> Option<&Committed> {
        self.exports.iter().rev().find(|c| {
            c.chain_id == key.chain_id
                && c.member == key.member
                && c.project == key.project
                && c.rule_set == key.rule_set
                && c.patient == *patient
                && c.plan == *plan
                && fresh(c, now_ms)
        })
    }

    /// Adds `committed` and writes the journal durably, dropping what is a day old.
    pub(crate) fn record(&mut self, committed: Vec<Committed>, now_ms: u64) -> Result<()> {
        if committed.is_empty() {
            return Ok(());
        }
        self.exports.retain(|c| fresh(c, now_ms));
        self.exports.extend(committed);
        let file = JournalFile { version: VERSION, exports: self.exports.clone() };
        let sealed = medledger_client::seal::seal(&serde_json::to_vec(&file)?, &[self.owner])?;
        let text = format!("{SEALED}{}\n", hex::encode(sealed));
        medledger_client::fs::write_private(&self.path, text.as_bytes())
            .with_context(|| format!("cannot write {WHAT} {}", self.path.display()))
    }
}

/// Whether `c` was seen committed less than a day before `now_ms` (a clock set back keeps it).
fn fresh(c: &Committed, now_ms: u64) -> bool {
    now_ms.saturating_sub(c.seen_ms) < RESEARCH_READ_WINDOW_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(patient: u8, plan: u8, seen_ms: u64) -> Committed {
        Committed {
            chain_id: "c".into(),
            member: AccountId([1; 20]),
            project: "p".into(),
            rule_set: "safe-harbor-1".into(),
            patient: AccountId([patient; 20]),
            plan: Hash([plan; 32]),
            event: u64::from(patient) * 100 + u64::from(plan),
            height: 7,
            seen_ms,
        }
    }

    const KEY: Key<'static> =
        Key { chain_id: "c", member: AccountId([1; 20]), project: "p", rule_set: "safe-harbor-1" };

    /// An entry is reused only for the same network, member, project, rule set, patient and
    /// plan, within a day of being seen; it survives a reload; a day-old entry is dropped when
    /// the journal is next written.
    #[test]
    fn an_export_is_reused_only_as_committed_and_within_the_day() {
        let dir = tempfile::tempdir().unwrap();
        let path = Journal::beside(&dir.path().join("member.wallet.json"));
        let me = Identity::generate("ana");
        let mut j = Journal::load(&path, &me);
        let day = RESEARCH_READ_WINDOW_MS;
        j.record(vec![committed(2, 3, 1_000)], 1_000).unwrap();
        let j = Journal::load(&path, &me);
        // Sealed: no patient account in the file as it is stored.
        let stored = std::fs::read_to_string(&path).unwrap();
        assert!(!stored.contains(&AccountId([2; 20]).to_string()), "{stored}");
        let found = |j: &Journal, key: &Key<'_>, patient: u8, plan: u8, now: u64| {
            j.reusable(key, &AccountId([patient; 20]), &Hash([plan; 32]), now).map(|c| c.event)
        };
        assert_eq!(found(&j, &KEY, 2, 3, 2_000), Some(203));
        assert_eq!(found(&j, &KEY, 2, 3, 1_000 + day - 1), Some(203));
        assert_eq!(found(&j, &KEY, 2, 3, 1_000 + day), None, "a day old");
        assert_eq!(found(&j, &KEY, 2, 4, 2_000), None, "another plan");
        assert_eq!(found(&j, &KEY, 5, 3, 2_000), None, "another patient");
        for other in [
            Key { chain_id: "d", ..KEY },
            Key { member: AccountId([9; 20]), ..KEY },
            Key { project: "q", ..KEY },
            Key { rule_set: "safe-harbor-2", ..KEY },
        ] {
            assert_eq!(found(&j, &other, 2, 3, 2_000), None);
        }
        let mut j = j;
        j.record(vec![committed(4, 4, 1_000 + day)], 1_000 + day).unwrap();
        let j = Journal::load(&path, &me);
        assert_eq!(j.exports, [committed(4, 4, 1_000 + day)], "the day-old entry is dropped");
    }

    /// A damaged journal, or another wallet's, is moved aside and the export goes on without
    /// it.
    #[test]
    fn a_damaged_or_foreign_journal_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.json");
        let (me, eve) = (Identity::generate("ana"), Identity::generate("eve"));
        let mut theirs = Journal::load(&path, &eve);
        theirs.record(vec![committed(2, 3, 1_000)], 1_000).unwrap();
        let damaged = b"sealed:00ff".to_vec();
        for (what, bytes) in
            [("another wallet's", std::fs::read(&path).unwrap()), ("damaged", damaged)]
        {
            medledger_client::fs::write_private(&path, &bytes).unwrap();
            let _ = std::fs::remove_file(path.with_extension("json.damaged"));
            let j = Journal::load(&path, &me);
            assert!(j.exports.is_empty(), "{what}");
            assert!(!path.exists() && path.with_extension("json.damaged").exists(), "{what}");
        }
    }
}
