//! The research export: a member of a researcher organisation declares, for one patient, a
//! de-identified export for a research project. The ledger decides it with `authorize` under
//! purpose research for every category it names (the organisation's grant must cover each) and
//! records it, once, in the patient's audit trail with the project, the rule set and the
//! digest of the export plan.
//!
//! The order problem: the export's files exist only after the data is read, but the access
//! must be committed before anything is read. So the transaction commits to the *plan*, which
//! is computable from the ledger alone before any content is read: the project, the rule set,
//! the patient, the categories and every record (PMR-ID, category, CID of its ciphertext) of
//! those categories that the export covers ([`plan_digest`]). The ledger recomputes it from
//! the patient's records at the export's block and refuses a different one, so the patient (or
//! an auditor) can too; the researcher's manifest names the digest of the plans it was made
//! from.

use serde::{Deserialize, Serialize};

use crate::{Hash, encoding, ids::AccountId, tx::consent::RecordCategory};

/// Longest accepted project id or rule set version.
pub const MAX_PROJECT_LEN: usize = 64;

/// Domain separation of [`plan_digest`].
const PLAN_DOMAIN: &[u8] = b"medledger/v1/research-plan";

/// One patient's research export, signed by a member of a researcher organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResearchExportTx {
    /// Whose records.
    pub patient: AccountId,
    /// The categories exported, strictly increasing (each must be covered by a research grant
    /// in force to the signer's organisation).
    pub categories: Vec<RecordCategory>,
    /// The research project (letters, digits, `.`, `_`, `-`).
    pub project: String,
    /// The de-identification rule set and its version (`safe-harbor-1`).
    pub rule_set: String,
    /// [`plan_digest`] of what is exported for this patient.
    pub plan: Hash,
}

/// One record in an export plan.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlannedRecord {
    /// Its PMR-ID.
    pub pmr: String,
    /// Its category.
    pub category: RecordCategory,
    /// SHA-256 of its ciphertext (the digest of its CID).
    pub content: Hash,
}

/// The digest of one patient's export plan: SHA-256 over a domain tag and the canonical
/// encoding of (project, rule set, patient, categories, records sorted by PMR-ID).
pub fn plan_digest(
    project: &str,
    rule_set: &str,
    patient: &AccountId,
    categories: &[RecordCategory],
    records: &[PlannedRecord],
) -> Hash {
    let mut sorted = records.to_vec();
    sorted.sort();
    let body = encoding::encode(&(project, rule_set, patient, categories, &sorted));
    Hash::of_parts(&[PLAN_DOMAIN, &body])
}

/// The de-identification rule sets an export may name: `safe-harbor-1`, HIPAA Safe Harbor as
/// `medledger_fhir::research` implements it. A new rule set is added here with its
/// implementation, so a patient's trail never names one that does not exist.
pub const RULE_SETS: &[&str] = &["safe-harbor-1"];

/// The categories whose *content* `rule_set` exports (de-identified), and so the only records
/// an export under it lets its member read (`authorize`): for `safe-harbor-1`, imaging, whose
/// DICOM content the DICOM PS3.15 Basic Profile de-identifies; every other category leaves as
/// its code and year only. Empty for a rule set this ledger does not know.
pub fn content_categories(rule_set: &str) -> &'static [RecordCategory] {
    match rule_set {
        "safe-harbor-1" => &[RecordCategory::Imaging],
        _ => &[],
    }
}

/// Why a research export body is malformed (checked before any state is read).
pub fn check_shape(tx: &ResearchExportTx) -> Result<(), String> {
    check_project(&tx.project, &tx.rule_set)?;
    if tx.categories.is_empty() {
        return Err("a research export names at least one category".into());
    }
    if !tx.categories.windows(2).all(|w| w[0] < w[1]) {
        return Err("the categories of a research export must be strictly increasing".into());
    }
    Ok(())
}

/// Why a project name or a rule set cannot be an export's: the rule set must be one this
/// release implements, and both short words of letters, digits, '.', '_' and '-'.
pub fn check_project(project: &str, rule_set: &str) -> Result<(), String> {
    // The patient's trail names the rule set: only one this release implements.
    if !RULE_SETS.contains(&rule_set) {
        return Err(format!(
            "{rule_set:?} is no de-identification rule set this ledger knows (it knows {})",
            RULE_SETS.join(", ")
        ));
    }
    for (field, value) in [("project", project), ("rule set", rule_set)] {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if value.is_empty() || value.len() > MAX_PROJECT_LEN {
            return Err(format!("the {field} must be 1 to {MAX_PROJECT_LEN} characters"));
        }
        if !value.chars().all(ok_char) {
            return Err(format!(
                "the {field} {value:?} may hold only letters, digits, '.', '_' and '-'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx() -> ResearchExportTx {
        ResearchExportTx {
            patient: AccountId([7; 20]),
            categories: vec![RecordCategory::LabReport, RecordCategory::Imaging],
            project: "cardio-2026".into(),
            rule_set: "safe-harbor-1".into(),
            plan: Hash([0; 32]),
        }
    }

    #[test]
    fn shapes_are_checked() {
        let mut ok = tx();
        ok.categories.sort();
        assert_eq!(check_shape(&ok), Ok(()));
        let bad: [fn(&mut ResearchExportTx); 7] = [
            |t| t.project.clear(),
            |t| t.project = "a b".into(),
            |t| t.rule_set = "x".repeat(MAX_PROJECT_LEN + 1),
            |t| t.rule_set = "safe-harbor-2".into(),
            |t| t.categories.clear(),
            |t| t.categories.reverse(),
            |t| t.categories.push(t.categories[1]),
        ];
        for change in bad {
            let mut t = ok.clone();
            change(&mut t);
            assert!(check_shape(&t).is_err(), "{t:?} accepted");
        }
    }

    #[test]
    fn every_known_rule_set_names_the_content_it_exports_and_an_unknown_one_none() {
        assert_eq!(content_categories("safe-harbor-1"), &[RecordCategory::Imaging]);
        assert!(content_categories("safe-harbor-2").is_empty());
        for known in RULE_SETS {
            assert!(!content_categories(known).is_empty(), "{known}");
        }
    }

    #[test]
    fn the_plan_digest_binds_every_part_and_ignores_record_order() {
        let p = AccountId([1; 20]);
        let r = |n: u8| PlannedRecord {
            pmr: format!("PMR-{n}"),
            category: RecordCategory::LabReport,
            content: Hash([n; 32]),
        };
        let cats = [RecordCategory::LabReport];
        let base = plan_digest("p", "safe-harbor-1", &p, &cats, &[r(1), r(2)]);
        assert_eq!(base, plan_digest("p", "safe-harbor-1", &p, &cats, &[r(2), r(1)]));
        for other in [
            plan_digest("q", "safe-harbor-1", &p, &cats, &[r(1), r(2)]),
            plan_digest("p", "safe-harbor-2", &p, &cats, &[r(1), r(2)]),
            plan_digest("p", "safe-harbor-1", &AccountId([2; 20]), &cats, &[r(1), r(2)]),
            plan_digest("p", "safe-harbor-1", &p, &[RecordCategory::Imaging], &[r(1), r(2)]),
            plan_digest("p", "safe-harbor-1", &p, &cats, &[r(1)]),
        ] {
            assert_ne!(base, other);
        }
    }
}
