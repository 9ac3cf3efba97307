//! The regulator suspends a hospital (its own and its doctors' signatures are refused while
//! suspended) and reinstates it.

use medledger_core::{block::Refusal, ids::AccountId, tx::Role};

use crate::handler::{HandlerResult, check_text, refuse_on, require_role};
use crate::state::{Account, StateTxn};

fn set_suspended(
    state: &mut StateTxn<'_, '_>,
    signer: &Account,
    hospital: &AccountId,
    suspended: bool,
) -> HandlerResult {
    let action = if suspended { "suspend a hospital" } else { "reinstate a hospital" };
    refuse_on!(require_role(signer, Role::Regulator, action));
    let Some(mut account) = state.account(hospital)? else {
        return Ok(Err(Refusal::NotFound { what: format!("hospital {hospital}") }));
    };
    if account.role != Role::Hospital {
        return Ok(Err(Refusal::Invalid { reason: format!("{hospital} is not a hospital") }));
    }
    if account.suspended == suspended {
        let state_word = if suspended { "suspended" } else { "not suspended" };
        return Ok(Err(Refusal::Invalid {
            reason: format!("hospital {hospital} is already {state_word}"),
        }));
    }
    account.suspended = suspended;
    state.put_account(hospital, &account)?;
    Ok(Ok(None))
}

pub(crate) fn suspend(
    state: &mut StateTxn<'_, '_>,
    signer: &Account,
    hospital: &AccountId,
    reason: &str,
) -> HandlerResult {
    refuse_on!(check_text("reason", reason));
    set_suspended(state, signer, hospital, true)
}

pub(crate) fn reinstate(
    state: &mut StateTxn<'_, '_>,
    signer: &Account,
    hospital: &AccountId,
) -> HandlerResult {
    set_suspended(state, signer, hospital, false)
}
