//! Case transactions: a case-wise treatment log (a cardiovascular operation, a course of
//! radiotherapy) as a hash chain of encrypted entries on the ledger.
//!
//! A treating doctor opens a case for a patient with an encrypted description; the ledger
//! assigns its id ([`case_id`]: `C`, the Patient-ID, `-`, the patient's case number) and its
//! first head ([`opened_head`]). Each entry is a sealed blob in the custodian's vault, appended
//! by a doctor authorised for the case and signed by them; the append names the head its
//! author saw, and the ledger refuses it unless that is still the case's head, so concurrent
//! authors cannot fork the chain. The new head ([`appended_head`]) binds the previous head, the
//! entry, its author and the block (height and time) that stamped it. Sealing commits the last
//! head; nothing can be appended after it. A correction is a follow-up case that names the
//! sealed one.
//!
//! The ledger holds only ids, hashes and wrapped-key references: the description and entries
//! are encrypted under a case data key that is wrapped (HPKE) to the patient and to each doctor
//! who may read or write the case.

use serde::{Deserialize, Serialize};

use crate::{Hash, encoding, ids::AccountId, tx::records::KeyRef};

/// Most wrapped-key references an open may carry.
pub const MAX_CASE_KEYS: usize = 8;
/// Most distinct doctors that may write entries in one case.
pub const MAX_CASE_AUTHORS: usize = 256;

/// Domain of the first head of a case.
const DOMAIN_OPENED: &str = "medledger/v1/case/opened";
/// Domain of the head after an entry.
const DOMAIN_APPENDED: &str = "medledger/v1/case/appended";

/// The id the ledger gives the `n`th case (from 1) of the patient with this Patient-ID:
/// patient 85437's first case is `C85437-1`.
pub fn case_id(patient_id: u64, n: u64) -> String {
    format!("C{patient_id}-{n}")
}

/// The head of a case before any entry: binds the case id, the patient, the opener, the sealed
/// description and the block that opened it, so that no two cases share a chain.
pub fn opened_head(
    case: &str,
    patient: &AccountId,
    opener: &AccountId,
    description: &Hash,
    height: u64,
    time_ms: u64,
) -> Hash {
    Hash::of(&encoding::encode(&(
        DOMAIN_OPENED,
        case,
        patient,
        opener,
        description,
        height,
        time_ms,
    )))
}

/// The head after an entry: binds the head its author saw (`prev`), the sealed entry's hash,
/// the author, and the height and time of the block that applied it.
pub fn appended_head(
    prev: &Hash,
    entry: &Hash,
    author: &AccountId,
    height: u64,
    time_ms: u64,
) -> Hash {
    Hash::of(&encoding::encode(&(DOMAIN_APPENDED, prev, entry, author, height, time_ms)))
}

/// A new case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenCase {
    /// Whose case.
    pub patient: AccountId,
    /// SHA-256 (the vault name) of the sealed description (title, notes).
    pub description: Hash,
    /// The case data key wrapped to the patient and to the opener (at least those two).
    pub keys: Vec<KeyRef>,
    /// The sealed case this one follows up (corrects or continues), of the same patient.
    pub follow_up_of: Option<String>,
}

/// A case transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaseTx {
    /// A treating doctor opens a case for a patient.
    Open(OpenCase),
    /// A doctor authorised for the case appends an entry.
    Append {
        /// The case.
        case: String,
        /// The head the author saw: must still be the case's head.
        prev: Hash,
        /// SHA-256 (the vault name) of the sealed entry.
        entry: Hash,
    },
    /// The opener or the patient (or a delegate) seals the case at its current head.
    Seal {
        /// The case.
        case: String,
        /// The head being sealed: must be the case's head.
        head: Hash,
    },
    /// The patient, a delegate or the opener wraps the case key to another account (a doctor
    /// the patient authorised for the case). Writing and reading still need authorisation.
    ShareKey {
        /// The case.
        case: String,
        /// The wrapped key.
        key: KeyRef,
    },
}

impl CaseTx {
    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CaseTx::Open(_) => "open_case",
            CaseTx::Append { .. } => "append_case_entry",
            CaseTx::Seal { .. } => "seal_case",
            CaseTx::ShareKey { .. } => "share_case_key",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_ids_are_readable() {
        assert_eq!(case_id(85437, 1), "C85437-1");
        assert_eq!(case_id(85437, 12), "C85437-12");
    }

    #[test]
    fn every_bound_field_changes_the_head() {
        let (a, b) = (AccountId([1; 20]), AccountId([2; 20]));
        let (h, e) = (Hash::of(b"prev"), Hash::of(b"entry"));
        let base = appended_head(&h, &e, &a, 5, 50);
        for other in [
            appended_head(&e, &e, &a, 5, 50),
            appended_head(&h, &h, &a, 5, 50),
            appended_head(&h, &e, &b, 5, 50),
            appended_head(&h, &e, &a, 6, 50),
            appended_head(&h, &e, &a, 5, 51),
        ] {
            assert_ne!(base, other);
        }
        let open = opened_head("C1-1", &a, &b, &e, 1, 10);
        assert_ne!(open, opened_head("C1-2", &a, &b, &e, 1, 10));
        assert_ne!(open, opened_head("C1-1", &b, &a, &e, 1, 10));
    }
}
