//! Registry transactions, one file per kind. Each handler checks authority and input, then
//! writes; a handler that returns a [`Refusal`] has written nothing (checks come first).

mod admit_hospital;
mod amend_patient;
mod onboard_doctor;
mod register_patient;
mod revoke_key;
mod rotate_key;
mod suspend_hospital;

use medledger_core::{
    block::{Created, Refusal},
    ids::AccountId,
    tx::{MAX_TEXT_LEN, RegistryTx, Role},
};

use crate::{
    LedgerError,
    state::{Account, StateTxn},
};

/// Outcome of a handler: `Ok(Ok(created))` applied, `Ok(Err(refusal))` refused with nothing
/// written, `Err(_)` the storage failed.
pub(crate) type HandlerResult = Result<Result<Option<Created>, Refusal>, LedgerError>;

/// Applies one registry transaction for an authenticated `signer`.
pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    tx: &RegistryTx,
) -> HandlerResult {
    match tx {
        RegistryTx::AdmitHospital(t) => admit_hospital::apply(state, signer, signer_account, t),
        RegistryTx::SuspendHospital { hospital, reason } => {
            suspend_hospital::suspend(state, signer_account, hospital, reason)
        }
        RegistryTx::ReinstateHospital { hospital } => {
            suspend_hospital::reinstate(state, signer_account, hospital)
        }
        RegistryTx::OnboardDoctor(t) => onboard_doctor::apply(state, signer, signer_account, t),
        RegistryTx::RegisterPatient(t) => register_patient::apply(state, signer, signer_account, t),
        RegistryTx::RotateKey { new_key } => {
            rotate_key::apply(state, signer, signer_account, new_key)
        }
        RegistryTx::RevokeKey { account, replacement } => {
            revoke_key::apply(state, signer, signer_account, account, replacement.as_ref())
        }
        RegistryTx::AmendPatient(t) => amend_patient::apply(state, signer, signer_account, t),
    }
}

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

/// Refuses empty or over-long directory text.
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
