//! Revocation of an account's signing key, by the account itself or by its authority (the
//! onboarding hospital for doctors and patients, the regulator for hospitals and organisations,
//! the organisation for its members; the regulator
//! may revoke any key). A replacement key may be installed at the same time, e.g. when a
//! patient lost their phone and the desk re-issues a wallet.

use medledger_core::{block::Refusal, ids::AccountId, keys::PublicKey, tx::Role};

use crate::handler::HandlerResult;
use crate::state::{Account, StateTxn};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    target: &AccountId,
    replacement: Option<&PublicKey>,
) -> HandlerResult {
    let Some(mut account) = state.account(target)? else {
        return Ok(Err(Refusal::NotFound { what: format!("account {target}") }));
    };
    let allowed = signer == target
        || account.authority.as_ref() == Some(signer)
        || signer_account.role == Role::Regulator;
    if !allowed {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "only {target} itself, its authority or the regulator may revoke its key"
            ),
        }));
    }
    if account.key.is_none() && replacement.is_none() {
        return Ok(Err(Refusal::Invalid {
            reason: format!("{target} has no active key to revoke"),
        }));
    }
    // A removed member's key stays revoked: removal ends the membership for good.
    if replacement.is_some()
        && account.role == Role::Member
        && let Some(at) = state.member(target)?.and_then(|m| m.removed_at)
    {
        return Ok(Err(Refusal::Invalid {
            reason: format!(
                "member {target} was removed at block {at}: its key is not replaced (add a new member)"
            ),
        }));
    }
    // A member's key is the one that accepted the membership: nobody but the member puts
    // another in its place (its organisation would otherwise act as that person; it removes
    // the member and adds a new one, who accepts anew).
    if replacement.is_some() && account.role == Role::Member && signer != target {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "only member {target} itself replaces its key; its organisation removes it and \
                 adds a new member"
            ),
        }));
    }
    account.key = replacement.copied();
    state.put_account(target, &account)?;
    Ok(Ok(None))
}
