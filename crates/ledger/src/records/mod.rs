//! Records: medical records as tokens with ERC-721 semantics (one file per transaction kind).
//!
//! Who may mint: an active doctor of an admitted, unsuspended hospital, for a patient they
//! treat. "Treat" means one of: the patient was registered at the doctor's hospital, or the
//! patient (or a delegate) granted the doctor access for treatment covering the record's
//! category, in force at the block. Anyone else's mint is refused.
//!
//! Ownership: the patient owns each new token. The owner, the account the owner approved for
//! that token, or an operator the owner named may transfer it, but only to the patient or to
//! a delegate the patient named (a guardian), so a medical record cannot be handed to a third
//! party; the patient may always take a record back from whoever holds it. Sharing a record's
//! key and erasing it are the patient's or a delegate's in office, never the holder's by
//! holding. Transfers and approvals are logged in the patient's audit trail (the ERC-721
//! Transfer and Approval events).
//!
//! Key splitting (optional per record): the key is the essential share (wrapped to the patient
//! and author like any key) combined with `threshold` of the custodians' shares. A custodian
//! releases its share to a reader with a transaction that runs `authorize` for the reader at
//! its block; the decision is audited and only an allowed release is kept.
//!
//! Amendment mints a new version that supersedes the old; nothing is deleted. Erasure
//! destroys the content and every wrapped key in the custodian's vault, and keeps the token,
//! marked erased, with its hashes: every proof still verifies.

mod erase;
mod mint;
mod ownership;
mod read;
mod release;
mod share;

use medledger_core::{block::Refusal, ids::AccountId, tx::RecordTx};

use crate::{
    LedgerError,
    handler::HandlerResult,
    state::{Account, RecordEntry, StateTxn},
};

/// Applies one record transaction for an authenticated signer. A refused transaction that
/// names a record which does not exist, or which its signer may not see ([`unseen`]), is
/// refused as naming a missing record, whichever check refused it: what a signed GET does not
/// tell a stranger, a refusal (or a simulation) does not tell either.
pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    tx: &RecordTx,
) -> HandlerResult {
    let outcome = apply_seen(state, signer, signer_account, tx)?;
    let named = match tx {
        RecordTx::Mint(m) => m.supersedes.as_deref(),
        RecordTx::Approve { record, .. }
        | RecordTx::Transfer { record, .. }
        | RecordTx::ShareKey { record, .. }
        | RecordTx::Erase { record }
        | RecordTx::ReleaseShare { record, .. } => Some(record.as_str()),
        RecordTx::SetApprovalForAll { .. } => None,
    };
    Ok(match (outcome, named) {
        (Err(refusal), Some(pmr)) => Err(unseen(state, signer, pmr)?.unwrap_or(refusal)),
        (outcome, _) => outcome,
    })
}

/// The refusal of a missing record, if record `pmr` does not exist, or `signer` may not see
/// it ([`crate::visibility::record_seen_by`] at this block) and is not approved by its owner
/// to act on it (for that token or all the owner's).
fn unseen(
    state: &StateTxn<'_, '_>,
    signer: &AccountId,
    pmr: &str,
) -> Result<Option<Refusal>, LedgerError> {
    let Some(r) = state.record(pmr)? else { return Ok(Some(missing(pmr))) };
    let seen = r.approved == Some(*signer)
        || state.is_operator(&r.owner, signer)?
        || crate::visibility::record_seen_by(state, signer, pmr, &r, state.height, state.time_ms)?;
    Ok((!seen).then(|| missing(pmr)))
}

/// The refusal for a record that does not exist (or that the signer may not see).
pub(crate) fn missing(pmr: &str) -> Refusal {
    Refusal::NotFound { what: format!("record {pmr}") }
}

fn apply_seen(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    tx: &RecordTx,
) -> HandlerResult {
    match tx {
        RecordTx::Mint(m) => mint::apply(state, signer, signer_account, m),
        RecordTx::Approve { record, approved } => {
            ownership::approve(state, signer, record, approved.as_ref())
        }
        RecordTx::SetApprovalForAll { operator, approved } => {
            ownership::set_approval_for_all(state, signer, operator, *approved)
        }
        RecordTx::Transfer { record, to } => ownership::transfer(state, signer, record, to),
        RecordTx::ShareKey { record, key } => share::apply(state, signer, record, key),
        RecordTx::Erase { record } => erase::apply(state, signer, record),
        RecordTx::ReleaseShare { record, reader, purpose, share } => {
            release::apply(state, signer, record, reader, *purpose, share)
        }
    }
}

/// The record named `pmr`, or a refusal saying it does not exist.
pub(crate) fn existing(
    state: &StateTxn<'_, '_>,
    pmr: &str,
) -> Result<Result<RecordEntry, Refusal>, LedgerError> {
    Ok(state.record(pmr)?.ok_or_else(|| missing(pmr)))
}

/// Whether an access names record `r` as it is: with its patient and its category. An access
/// naming it otherwise is a false declaration (it could borrow a grant for another category
/// or patient): the ledger denies it ([`crate::consent::Denial::NotAsNamed`]) and records the
/// denial in the trail of the record's real patient.
pub fn named_as_it_is(r: &RecordEntry, resource: &crate::consent::Resource) -> bool {
    resource.patient == r.patient && resource.category == Some(r.category)
}

/// Refuses unless `signer` is the record's patient or a delegate the patient names now with
/// the records power: those who decide about a record's keys and its existence. A delegate the
/// patient removed may
/// still hold the token, and decides nothing by it.
pub(crate) fn require_patient_or_delegate_in_office(
    state: &StateTxn<'_, '_>,
    signer: &AccountId,
    pmr: &str,
    r: &RecordEntry,
) -> Result<Result<(), Refusal>, LedgerError> {
    let records = medledger_core::tx::DelegatePowers::RECORDS;
    if *signer == r.patient || state.delegate_may(&r.patient, signer, records)? {
        return Ok(Ok(()));
    }
    if state.is_delegate(&r.patient, signer)? {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "{signer} is a delegate of the patient of record {pmr} without the records power"
            ),
        }));
    }
    Ok(Err(Refusal::Unauthorised {
        reason: format!(
            "only the patient of record {pmr}, or a delegate they name now, may do this (holding the token is not enough)"
        ),
    }))
}

/// Refuses an erased record.
pub(crate) fn require_not_erased(pmr: &str, r: &RecordEntry) -> Result<(), Refusal> {
    match r.erased_at {
        Some(h) => {
            Err(Refusal::Invalid { reason: format!("record {pmr} was erased at block {h}") })
        }
        None => Ok(()),
    }
}
