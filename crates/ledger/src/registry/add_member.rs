//! An organisation adds a member: a new account (role `Member`, the organisation its
//! authority) with its own signing and encryption keys. The member's key must have accepted
//! this membership (`AddMember::acceptance`), so that no organisation enrols a key it does not
//! hold; and the key must name no account yet (a doctor, a patient, another organisation's
//! member), so that one account is one role.

use medledger_core::{
    block::{Created, Refusal},
    ids::AccountId,
    tx::{AddMember, Role},
};

use crate::handler::{HandlerResult, check_text, refuse_on, require_new_account};
use crate::state::{Account, MemberEntry, StateTxn};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    organisation: &AccountId,
    signer: &Account,
    t: &AddMember,
) -> HandlerResult {
    if !matches!(signer.role, Role::Organisation(_)) {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "only an organisation may add a member; the signer is a {:?}",
                signer.role
            ),
        }));
    }
    refuse_on!(check_text("name", &t.name));
    if t.verify_acceptance(organisation).is_err() {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "the member key {} did not accept membership of {organisation}: its acceptance does not verify",
                t.key
            ),
        }));
    }
    let id = AccountId::from_initial_key(&t.key);
    refuse_on!(require_new_account(state, &id)?);
    state.put_account(
        &id,
        &Account {
            role: Role::Member,
            key: Some(t.key),
            encryption_key: t.encryption_key,
            nonce: 0,
            authority: Some(*organisation),
            hospital: None,
            suspended: false,
            patient_id: None,
            created_at: state.height,
        },
    )?;
    state.put_member(
        &id,
        &MemberEntry {
            organisation: *organisation,
            name: t.name.clone(),
            added_at: state.height,
            removed_at: None,
        },
    )?;
    Ok(Ok(Some(Created::Account { account: id })))
}
