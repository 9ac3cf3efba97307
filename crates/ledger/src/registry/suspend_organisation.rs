//! The regulator suspends an organisation (its own and its members' signatures are refused,
//! and `authorize` lets no member act under its grants, while suspended) and reinstates it.

use medledger_core::{ids::AccountId, tx::Role};

use super::suspend_hospital::set_suspended;
use crate::handler::{HandlerResult, check_text, refuse_on};
use crate::state::{Account, StateTxn};

fn is_organisation(role: Role) -> bool {
    matches!(role, Role::Organisation(_))
}

pub(crate) fn suspend(
    state: &mut StateTxn<'_, '_>,
    signer: &Account,
    organisation: &AccountId,
    reason: &str,
) -> HandlerResult {
    refuse_on!(check_text("reason", reason));
    set_suspended(state, signer, organisation, true, "organisation", is_organisation)
}

pub(crate) fn reinstate(
    state: &mut StateTxn<'_, '_>,
    signer: &Account,
    organisation: &AccountId,
) -> HandlerResult {
    set_suspended(state, signer, organisation, false, "organisation", is_organisation)
}
