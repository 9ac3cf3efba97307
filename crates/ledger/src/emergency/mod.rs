//! Emergency access (the rules are in `medledger_core::tx::emergency`): the profile and its
//! logged reads (`profile.rs`), break-glass declarations, their end and the network window
//! (`break_glass.rs`), custodians' escrow releases (`escrow.rs`), hospital reviews
//! (`review.rs`), and queries (`read.rs`).
//!
//! Break-glass opens records through `authorize` itself: after deny rules and grants, an open
//! break-glass by the requester for the patient allows the access (`Basis::BreakGlass`) if the
//! patient's profile allowed it in advance. The window is decided by block time, like expiry.

mod break_glass;
mod escrow;
mod profile;
mod read;
mod review;

use medledger_core::{ids::AccountId, tx::EmergencyTx};

use crate::{
    LedgerError,
    handler::HandlerResult,
    state::{Account, StateTxn},
};

pub use read::OpenReview;

/// Applies one emergency transaction for an authenticated signer.
pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    tx: &EmergencyTx,
) -> HandlerResult {
    match tx {
        EmergencyTx::SetProfile { patient, profile } => {
            profile::set(state, signer, patient, profile)
        }
        EmergencyTx::ReadProfile { patient } => {
            profile::read(state, signer, signer_account, patient)
        }
        EmergencyTx::BreakGlass { patient, code, reason } => {
            break_glass::start(state, signer, signer_account, patient, *code, reason)
        }
        EmergencyTx::End { break_glass } => break_glass::end(state, signer, break_glass),
        EmergencyTx::SetWindow { minutes } => {
            break_glass::set_window(state, signer_account, *minutes)
        }
        EmergencyTx::ReleaseEscrow { break_glass, piece } => {
            escrow::release(state, signer, break_glass, piece)
        }
        EmergencyTx::FileReview { break_glass, finding } => {
            review::file(state, signer, break_glass, finding)
        }
    }
}

/// The accounts besides the patient that hear of an emergency event: the doctor (and through
/// the audit index, their hospital) and the patient's delegates.
fn notified(
    state: &StateTxn<'_, '_>,
    patient: &AccountId,
    doctor: &AccountId,
) -> Result<Vec<AccountId>, LedgerError> {
    let mut others = vec![*doctor];
    others.extend(state.delegates_of(patient)?);
    Ok(others)
}

/// Refuses a reason or finding that is empty (after trimming) or too long.
fn check_sealed(
    what: &str,
    sealed: &[u8],
    min: usize,
) -> Result<(), medledger_core::block::Refusal> {
    use medledger_core::tx::emergency::MAX_SEALED_TEXT_BYTES;
    if sealed.is_empty() {
        return Err(medledger_core::block::Refusal::Invalid {
            reason: format!("a {what} is mandatory"),
        });
    }
    if sealed.len() < min {
        return Err(medledger_core::block::Refusal::Invalid {
            reason: format!(
                "a sealed {what} of {} bytes is too short to hold a real one (at least {min})",
                sealed.len()
            ),
        });
    }
    if sealed.len() > MAX_SEALED_TEXT_BYTES {
        return Err(medledger_core::block::Refusal::Invalid {
            reason: format!("a sealed {what} is at most {MAX_SEALED_TEXT_BYTES} bytes"),
        });
    }
    Ok(())
}
