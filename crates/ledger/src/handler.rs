//! The handler contract: what every transaction kind's handler returns, how it refuses, and the
//! checks that several kinds share.
//!
//! A handler is a function `apply(state, signer, signer_account, body) -> HandlerResult` in the
//! file of its kind (`registry/`, `consent/`, `access.rs`, `records/`, `emergency/`, `cases/`,
//! `devices/`), called by `apply.rs` after the envelope checks. It gets the block's state
//! ([`StateTxn`], with the block's height, time and the transaction's hash), the authenticated
//! signer and, where it needs it, the signer's account. It checks authority and input first and writes after, so that a
//! refusal has written nothing. It returns `Ok(Ok(created))` when applied, `Ok(Err(refusal))`
//! when refused (a receipt, not an error: [`refuse_on!`] turns a check's `Err(refusal)` into
//! that outcome), and `Err(_)` only when the storage failed or the stored state is corrupt.
//!
//! Refusal reasons are stored in receipts, which are part of the state digest and of what
//! `verify` replays: a shared check must word its refusal exactly as the checks it replaced.

use medledger_core::{
    block::{Created, Refusal},
    ids::{AccountId, PatientId},
    tx::{MAX_TEXT_LEN, Role},
};

use crate::{
    LedgerError,
    state::{Account, DoctorEntry, StateTxn},
};

/// Outcome of a handler: `Ok(Ok(created))` applied, `Ok(Err(refusal))` refused with nothing
/// written, `Err(_)` the storage failed.
pub(crate) type HandlerResult = Result<Result<Option<Created>, Refusal>, LedgerError>;

/// Unwraps a `Result<_, Refusal>` inside a handler, returning the refusal as the outcome.
macro_rules! refuse_on {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(refusal) => return Ok(Err(refusal)),
        }
    };
}
pub(crate) use refuse_on;

/// Refuses unless the signer has `role`.
pub(crate) fn require_role(signer: &Account, role: Role, action: &str) -> Result<(), Refusal> {
    if signer.role == role {
        Ok(())
    } else {
        Err(Refusal::Unauthorised {
            reason: format!("only a {role:?} may {action}; the signer is a {:?}", signer.role),
        })
    }
}

/// Refuses if an account with this id exists.
pub(crate) fn require_new_account(
    state: &StateTxn<'_, '_>,
    id: &AccountId,
) -> Result<Result<(), Refusal>, LedgerError> {
    Ok(match state.account(id)? {
        Some(_) => Err(Refusal::AlreadyExists { what: format!("account {id}") }),
        None => Ok(()),
    })
}

/// Refuses an account that cannot take part: unknown, revoked or suspended.
pub(crate) fn require_active(
    state: &StateTxn<'_, '_>,
    id: &AccountId,
    what: &str,
) -> Result<Result<Account, Refusal>, LedgerError> {
    let Some(a) = state.account(id)? else {
        return Ok(Err(Refusal::NotFound { what: format!("{what} {id}") }));
    };
    if a.key.is_none() {
        return Ok(Err(Refusal::Invalid { reason: format!("{what} {id} has a revoked key") }));
    }
    if a.suspended {
        return Ok(Err(Refusal::Suspended { account: *id }));
    }
    Ok(Ok(a))
}

/// The one check of plain text the ledger stores (directory entries, a suspension's reason):
/// refuses it empty (after trimming), over [`MAX_TEXT_LEN`] bytes, or with control characters
/// (which would let a name rewrite a terminal or a log line). Free text about patients never
/// reaches the ledger in plain: break-glass reasons, review findings, case notes and profiles
/// are sealed blobs or ciphertext, checked by size where they are handled.
pub(crate) fn check_text(field: &str, value: &str) -> Result<(), Refusal> {
    if value.trim().is_empty() {
        return Err(Refusal::Invalid { reason: format!("{field} is empty") });
    }
    if value.len() > MAX_TEXT_LEN {
        return Err(Refusal::Invalid {
            reason: format!("{field} is {} bytes, more than {MAX_TEXT_LEN}", value.len()),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(Refusal::Invalid { reason: format!("{field} contains control characters") });
    }
    Ok(())
}

/// A doctor acting for a registered patient: what minting a record and opening a case start
/// from, before the treating-doctor rule (`consent::require_treating`) decides.
pub(crate) struct DoctorForPatient {
    /// The signer's doctor entry (its hospital decides whether it treats the patient).
    pub(crate) doctor: DoctorEntry,
    /// The patient's account.
    pub(crate) patient: Account,
    /// The patient's Patient-ID, from which record and case ids are derived.
    pub(crate) patient_id: PatientId,
}

/// Refuses unless the signer is a doctor with a doctor entry and `patient` is a registered
/// patient; `action` completes "only a doctor may ...". A patient account without a
/// Patient-ID is corrupt state, not a refusal.
pub(crate) fn doctor_for_patient(
    state: &StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    patient: &AccountId,
    action: &str,
) -> Result<Result<DoctorForPatient, Refusal>, LedgerError> {
    if signer_account.role != Role::Doctor {
        return Ok(Err(Refusal::Unauthorised { reason: format!("only a doctor may {action}") }));
    }
    let Some(doctor) = state.doctor(signer)? else {
        return Ok(Err(Refusal::NotFound { what: format!("doctor entry of {signer}") }));
    };
    let account = match state.account(patient)? {
        Some(p) if p.role == Role::Patient => p,
        _ => return Ok(Err(Refusal::NotFound { what: format!("patient {patient}") })),
    };
    let Some(patient_id) = account.patient_id else {
        return Err(LedgerError::Corrupt(format!("patient {patient} has no Patient-ID")));
    };
    Ok(Ok(DoctorForPatient { doctor, patient: account, patient_id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Directory text with a control character is refused (an ANSI escape in a hospital's
    /// name would rewrite the terminal of whoever lists the directory).
    #[test]
    fn check_text_refuses_control_characters() {
        for bad in ["St\u{1b}[2J Mary", "line\nbreak", "tab\there", "nul\0"] {
            assert!(
                matches!(check_text("name", bad), Err(Refusal::Invalid { reason }) if reason.contains("control")),
                "{bad:?} was accepted"
            );
        }
        assert_eq!(check_text("name", "Hôpital Saint-Louis"), Ok(()));
    }

    #[test]
    fn check_text_refuses_empty_and_over_long_text() {
        assert!(matches!(check_text("name", "   "), Err(Refusal::Invalid { .. })));
        assert!(matches!(
            check_text("name", &"a".repeat(MAX_TEXT_LEN + 1)),
            Err(Refusal::Invalid { .. })
        ));
        assert_eq!(check_text("name", &"a".repeat(MAX_TEXT_LEN)), Ok(()));
    }
}
