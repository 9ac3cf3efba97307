//! Registry transactions, one file per kind. Each handler checks authority and input, then
//! writes; a handler that returns a refusal has written nothing (checks come first).

mod add_member;
mod admit_hospital;
mod admit_organisation;
mod amend_patient;
mod onboard_doctor;
mod register_patient;
mod remove_member;
mod revoke_key;
mod rotate_key;
mod suspend_hospital;
mod suspend_organisation;

use medledger_core::{ids::AccountId, tx::RegistryTx};

use crate::{
    handler::HandlerResult,
    state::{Account, StateTxn},
};

/// Applies one registry transaction for an authenticated `signer`.
pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    tx: &RegistryTx,
) -> HandlerResult {
    match tx {
        RegistryTx::AdmitHospital(t) => admit_hospital::apply(state, signer, signer_account, t),
        RegistryTx::SuspendHospital { hospital, reason } => {
            suspend_hospital::suspend(state, signer_account, hospital, reason)
        }
        RegistryTx::ReinstateHospital { hospital } => {
            suspend_hospital::reinstate(state, signer_account, hospital)
        }
        RegistryTx::OnboardDoctor(t) => onboard_doctor::apply(state, signer, signer_account, t),
        RegistryTx::RegisterPatient(t) => register_patient::apply(state, signer, signer_account, t),
        RegistryTx::RotateKey { new_key } => {
            rotate_key::apply(state, signer, signer_account, new_key)
        }
        RegistryTx::RevokeKey { account, replacement } => {
            revoke_key::apply(state, signer, signer_account, account, replacement.as_ref())
        }
        RegistryTx::AmendPatient(t) => amend_patient::apply(state, signer, signer_account, t),
        RegistryTx::AdmitOrganisation(t) => {
            admit_organisation::apply(state, signer, signer_account, t)
        }
        RegistryTx::SuspendOrganisation { organisation, reason } => {
            suspend_organisation::suspend(state, signer_account, organisation, reason)
        }
        RegistryTx::ReinstateOrganisation { organisation } => {
            suspend_organisation::reinstate(state, signer_account, organisation)
        }
        RegistryTx::AddMember(t) => add_member::apply(state, signer, signer_account, t),
        RegistryTx::RemoveMember { member } => remove_member::apply(state, signer, member),
    }
}
