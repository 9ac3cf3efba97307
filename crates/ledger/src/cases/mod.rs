//! Cases: case-wise treatment logs as hash chains of encrypted entries (one file per
//! transaction kind; queries in `read.rs`).
//!
//! Who may open: an active doctor of an admitted, unsuspended hospital, for a patient they
//! treat: the patient was registered at the doctor's hospital, or the patient (or a delegate)
//! granted the doctor treatment access in force at the block to all their records, or to the
//! sealed case the new one follows up. The ledger names the case `C<Patient-ID>-<n>` (the
//! patient's `n`th case) and computes its first head from the case id, patient, opener,
//! description and block.
//!
//! Who may append: the opener, or a doctor that [`crate::consent::authorize`] allows to write
//! `Resource { patient, case: Some(id) }` for treatment at the append's block through a grant
//! (a `Scope::Case(id)` grant, or one for all the patient's records). Patients and delegates do
//! not write entries; a deny rule of the patient that names the doctor, their role or the
//! purpose stops every doctor but the opener (cases have no category); an open
//! break-glass lets a doctor read a case (as it does records), not write in it.
//!
//! The chain: an append names the head its author saw, and is refused unless that is still
//! the case's head, so at most one entry per case lands in a block and concurrent authors
//! cannot fork the chain (the later one reads the case again and re-appends). The new head is
//! `appended_head(prev, entry, author, height, time)`: block time stamps each entry.
//!
//! Sealing: the opener, the patient or a delegate seals the case at its current head; after
//! that, appends and further seals are refused. A correction is a new case whose
//! `follow_up_of` names the sealed one.
//!
//! Keys: the case data key is wrapped to the patient and the opener at open; the patient, a
//! delegate or the opener wraps it to further doctors (`ShareKey`). Every blob a case names
//! (description, entries, wrapped keys) must be one no record or case references yet, so that
//! erasing a record can never delete a case's blob, and the vault keeps each while it is
//! referenced.
//!
//! Each open, append, seal and key share is an audit event in the patient's trail, so the
//! patient is notified as entries are written.

mod append;
mod open;
mod read;
mod seal;
mod share;

pub use read::CaseTransactions;

use medledger_core::{
    Hash,
    block::Refusal,
    ids::AccountId,
    tx::{
        CaseTx, Role,
        consent::{Action, Basis, Decision, MAX_ID_LEN, Purpose, Resource},
    },
};

use crate::{
    LedgerError,
    handler::HandlerResult,
    state::{Account, CaseLog, StateTxn},
};

/// Applies one case transaction for an authenticated signer. A refused transaction that names
/// a case which does not exist, or which its signer may not see
/// ([`crate::visibility::case_sight_in`] at this block: Case-IDs carry the Patient-ID and a
/// count, so they can be guessed), is refused as naming a missing case, whichever check
/// refused it: a refusal (or a simulation) tells a stranger no more than a signed GET.
pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    tx: &CaseTx,
) -> HandlerResult {
    let outcome = apply_seen(state, signer, signer_account, tx)?;
    let named = match tx {
        CaseTx::Open(o) => o.follow_up_of.as_deref(),
        CaseTx::Append { case, .. } | CaseTx::Seal { case, .. } | CaseTx::ShareKey { case, .. } => {
            Some(case.as_str())
        }
    };
    let Err(refusal) = outcome else { return Ok(outcome) };
    // (A malformed id keeps its own refusal.)
    let Some(id) = named.filter(|id| !id.is_empty() && id.len() <= MAX_ID_LEN) else {
        return Ok(Err(refusal));
    };
    let hidden = match state.case(id)? {
        None => true,
        Some(c) => {
            crate::visibility::case_sight_in(state, signer, id, &c, state.height, state.time_ms)?
                == crate::visibility::CaseSight::Hidden
        }
    };
    Ok(Err(if hidden { missing(id) } else { refusal }))
}

/// The refusal for a case that does not exist (or that the signer may not see).
pub(crate) fn missing(id: &str) -> Refusal {
    Refusal::NotFound { what: format!("case {id}") }
}

fn apply_seen(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    tx: &CaseTx,
) -> HandlerResult {
    match tx {
        CaseTx::Open(o) => open::apply(state, signer, signer_account, o),
        CaseTx::Append { case, prev, entry } => {
            append::apply(state, signer, signer_account, case, prev, entry)
        }
        CaseTx::Seal { case, head } => seal::apply(state, signer, case, head),
        CaseTx::ShareKey { case, key } => share::apply(state, signer, case, key),
    }
}

/// The case named `id`, or a refusal saying it does not exist.
pub(crate) fn existing(
    state: &StateTxn<'_, '_>,
    id: &str,
) -> Result<Result<CaseLog, Refusal>, LedgerError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Ok(Err(Refusal::Invalid {
            reason: format!("a case id is 1 to {MAX_ID_LEN} bytes"),
        }));
    }
    Ok(state.case(id)?.ok_or_else(|| missing(id)))
}

/// Refuses a sealed case.
pub(crate) fn require_unsealed(id: &str, c: &CaseLog) -> Result<(), Refusal> {
    match &c.sealed {
        Some(seal) => Err(Refusal::CaseSealed { case: id.to_owned(), height: seal.height }),
        None => Ok(()),
    }
}

/// Refuses unless `got` is the case's current head.
pub(crate) fn require_head(id: &str, c: &CaseLog, got: &Hash) -> Result<(), Refusal> {
    if *got == c.head {
        return Ok(());
    }
    Err(Refusal::StaleHead { case: id.to_owned(), head: c.head })
}

/// Refuses unless `signer` may append to the case: its opener, or a doctor that `authorize`
/// allows to write the case for treatment through a grant in force at this block.
pub(crate) fn may_write(
    state: &StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    id: &str,
    c: &CaseLog,
) -> Result<Result<(), Refusal>, LedgerError> {
    if *signer == c.opener {
        return Ok(Ok(()));
    }
    if signer_account.role != Role::Doctor {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!("only doctors write entries in case {id}"),
        }));
    }
    let resource =
        Resource { patient: c.patient, category: None, record: None, case: Some(id.to_owned()) };
    let decision = crate::consent::authorize(
        state,
        signer,
        Action::Write,
        &resource,
        Purpose::Treatment,
        state.height,
        state.time_ms,
    )?;
    if matches!(decision, Decision::Allow(Basis::Grant { .. })) {
        return Ok(Ok(()));
    }
    let why = match decision {
        Decision::Deny(denial) => denial.to_string(),
        Decision::Allow(basis) => format!("{basis} lets a doctor read the case, not write in it"),
    };
    Ok(Err(Refusal::Unauthorised {
        reason: format!(
            "doctor {signer} may not write in case {id} of patient {}: {why}; a treatment grant for this case (or all records) is needed",
            c.patient
        ),
    }))
}

/// Refuses unless `signer` is the case's opener, its patient or a delegate of the patient with
/// the records power.
pub(crate) fn require_opener_or_patient(
    state: &StateTxn<'_, '_>,
    signer: &AccountId,
    id: &str,
    c: &CaseLog,
    action: &str,
) -> Result<Result<(), Refusal>, LedgerError> {
    if *signer == c.opener
        || *signer == c.patient
        || state.delegate_may(&c.patient, signer, medledger_core::tx::DelegatePowers::RECORDS)?
    {
        return Ok(Ok(()));
    }
    Ok(Err(Refusal::Unauthorised {
        reason: format!(
            "only the doctor who opened case {id}, its patient or a delegate with the records power may {action}"
        ),
    }))
}
