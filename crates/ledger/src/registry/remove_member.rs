//! An organisation removes one of its members: the membership ends and the member's key is
//! revoked for good (a removed member signs nothing and reads nothing; a returning person is
//! added again with a new key).

use medledger_core::{block::Refusal, ids::AccountId};

use crate::handler::HandlerResult;
use crate::state::StateTxn;

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    organisation: &AccountId,
    member: &AccountId,
) -> HandlerResult {
    let Some(mut entry) = state.member(member)? else {
        return Ok(Err(Refusal::NotFound { what: format!("member {member}") }));
    };
    if entry.organisation != *organisation {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "{member} is a member of {}; only that organisation removes it",
                entry.organisation
            ),
        }));
    }
    if let Some(at) = entry.removed_at {
        return Ok(Err(Refusal::Invalid {
            reason: format!("member {member} was already removed at block {at}"),
        }));
    }
    let mut account = state
        .account(member)?
        .ok_or_else(|| crate::LedgerError::Corrupt(format!("member {member} has no account")))?;
    account.key = None;
    state.put_account(member, &account)?;
    entry.removed_at = Some(state.height);
    state.put_member(member, &entry)?;
    state.remove_research_reads(member)?;
    Ok(Ok(None))
}
