//! An account replaces its own signing key. Signed with the current key; from the next block
//! on only the new key is accepted.

use medledger_core::{block::Refusal, ids::AccountId, keys::PublicKey};

use crate::handler::HandlerResult;
use crate::state::{Account, StateTxn};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    account: &Account,
    new_key: &PublicKey,
) -> HandlerResult {
    if account.key.as_ref() == Some(new_key) {
        return Ok(Err(Refusal::Invalid { reason: "the new key is the current key".into() }));
    }
    let mut updated = state.account(signer)?.unwrap_or_else(|| account.clone());
    updated.key = Some(*new_key);
    state.put_account(signer, &updated)?;
    Ok(Ok(None))
}
