//! The regulator suspends a hospital (its own and its doctors' signatures are refused while
//! suspended) and reinstates it.

use medledger_core::{block::Refusal, ids::AccountId, tx::Role};

use crate::handler::{HandlerResult, check_text, refuse_on, require_role};
use crate::state::{Account, StateTxn};

/// Sets or lifts the suspension of `id`, which must be a `what` (an account whose role
/// `is_kind` accepts): the regulator's one rule for hospitals and organisations.
pub(super) fn set_suspended(
    state: &mut StateTxn<'_, '_>,
    signer: &Account,
    id: &AccountId,
    suspended: bool,
    what: &str,
    is_kind: fn(Role) -> bool,
) -> HandlerResult {
    let action =
        if suspended { format!("suspend a {what}") } else { format!("reinstate a {what}") };
    refuse_on!(require_role(signer, Role::Regulator, &action));
    let Some(mut account) = state.account(id)? else {
        return Ok(Err(Refusal::NotFound { what: format!("{what} {id}") }));
    };
    if !is_kind(account.role) {
        return Ok(Err(Refusal::Invalid { reason: format!("{id} is not a {what}") }));
    }
    if account.suspended == suspended {
        let state_word = if suspended { "suspended" } else { "not suspended" };
        return Ok(Err(Refusal::Invalid {
            reason: format!("{what} {id} is already {state_word}"),
        }));
    }
    account.suspended = suspended;
    state.put_account(id, &account)?;
    Ok(Ok(None))
}

fn is_hospital(role: Role) -> bool {
    role == Role::Hospital
}

pub(crate) fn suspend(
    state: &mut StateTxn<'_, '_>,
    signer: &Account,
    hospital: &AccountId,
    reason: &str,
) -> HandlerResult {
    refuse_on!(check_text("reason", reason));
    set_suspended(state, signer, hospital, true, "hospital", is_hospital)
}

pub(crate) fn reinstate(
    state: &mut StateTxn<'_, '_>,
    signer: &Account,
    hospital: &AccountId,
) -> HandlerResult {
    set_suspended(state, signer, hospital, false, "hospital", is_hospital)
}
