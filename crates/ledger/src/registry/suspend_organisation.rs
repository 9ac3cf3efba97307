//! The regulator suspends an organisation (its own and its members' signatures are refused,
//! and `authorize` lets no member act under its grants, while suspended; what research
//! exports let its members read is removed for good) and reinstates it.

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
    let outcome =
        set_suspended(state, signer, organisation, true, "organisation", is_organisation)?;
    if outcome.is_ok() {
        // What research exports let its members read goes with the suspension: a
        // reinstatement within the read window gives none of it back.
        for member in state.members_of(organisation)? {
            state.remove_research_reads(&member)?;
        }
    }
    Ok(outcome)
}

pub(crate) fn reinstate(
    state: &mut StateTxn<'_, '_>,
    signer: &Account,
    organisation: &AccountId,
) -> HandlerResult {
    set_suspended(state, signer, organisation, false, "organisation", is_organisation)
}
