//! A hospital onboards a doctor: a new account with a public directory entry.

use medledger_core::{
    block::Created,
    ids::AccountId,
    tx::{OnboardDoctor, Role},
};

use super::{HandlerResult, check_text, refuse_on, require_new_account, require_role};
use crate::state::{Account, DoctorEntry, StateTxn};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    hospital: &AccountId,
    signer: &Account,
    t: &OnboardDoctor,
) -> HandlerResult {
    refuse_on!(require_role(signer, Role::Hospital, "onboard a doctor"));
    refuse_on!(check_text("registration number", &t.registration_number));
    refuse_on!(check_text("name", &t.name));
    refuse_on!(check_text("specialisation", &t.specialisation));
    let id = AccountId::from_initial_key(&t.key);
    refuse_on!(require_new_account(state, &id)?);
    state.put_account(
        &id,
        &Account {
            role: Role::Doctor,
            key: Some(t.key),
            encryption_key: t.encryption_key,
            nonce: 0,
            authority: Some(*hospital),
            hospital: Some(*hospital),
            suspended: false,
            patient_id: None,
            created_at: state.height,
        },
    )?;
    state.put_doctor(
        &id,
        &DoctorEntry {
            hospital: *hospital,
            registration_number: t.registration_number.clone(),
            name: t.name.clone(),
            specialisation: t.specialisation.clone(),
            onboarded_at: state.height,
        },
    )?;
    Ok(Ok(Some(Created::Account { account: id })))
}
