//! The regulator admits a hospital: a new account with a public directory entry and sealed
//! contact details.

use medledger_core::{
    block::Created,
    ids::AccountId,
    tx::{AdmitHospital, Role},
};

use crate::handler::{HandlerResult, check_text, refuse_on, require_new_account, require_role};
use crate::state::{Account, HospitalEntry, StateTxn};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    regulator: &AccountId,
    signer: &Account,
    t: &AdmitHospital,
) -> HandlerResult {
    refuse_on!(require_role(signer, Role::Regulator, "admit a hospital"));
    refuse_on!(check_text("registration id", &t.registration_id));
    refuse_on!(check_text("name", &t.name));
    refuse_on!(check_text("city", &t.city));
    refuse_on!(check_text("specialisation", &t.specialisation));
    let id = AccountId::from_initial_key(&t.key);
    refuse_on!(require_new_account(state, &id)?);
    state.put_account(
        &id,
        &Account {
            role: Role::Hospital,
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
    state.put_hospital(
        &id,
        &HospitalEntry {
            registration_id: t.registration_id.clone(),
            name: t.name.clone(),
            city: t.city.clone(),
            specialisation: t.specialisation.clone(),
            contact: t.contact,
            admitted_at: state.height,
        },
    )?;
    Ok(Ok(Some(Created::Account { account: id })))
}
