//! The regulator admits a researcher or insurer organisation: a new account with a public
//! directory entry (kind, name) and sealed contact details, as for a hospital.

use medledger_core::{
    block::Created,
    ids::AccountId,
    tx::{AdmitOrganisation, Role},
};

use crate::handler::{HandlerResult, check_text, refuse_on, require_new_account, require_role};
use crate::state::{Account, OrganisationEntry, StateTxn};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    regulator: &AccountId,
    signer: &Account,
    t: &AdmitOrganisation,
) -> HandlerResult {
    refuse_on!(require_role(signer, Role::Regulator, "admit an organisation"));
    refuse_on!(check_text("name", &t.name));
    let id = AccountId::from_initial_key(&t.key);
    refuse_on!(require_new_account(state, &id)?);
    state.put_account(
        &id,
        &Account {
            role: Role::Organisation(t.kind),
            key: Some(t.key),
            encryption_key: t.encryption_key,
            nonce: 0,
            authority: Some(*regulator),
            hospital: None,
            suspended: false,
            patient_id: None,
            created_at: state.height,
        },
    )?;
    state.put_organisation(
        &id,
        &OrganisationEntry {
            kind: t.kind,
            name: t.name.clone(),
            contact: t.contact,
            admitted_at: state.height,
        },
    )?;
    Ok(Ok(Some(Created::Account { account: id })))
}
