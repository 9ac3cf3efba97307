//! A hospital onboards a doctor: a new account with a public directory entry.
//!
//! A registration number (public, in the directory) names one doctor: it is refused while the
//! doctor onboarded with it keeps an active key, whichever hospital onboarded them. A doctor
//! whose key was revoked (who left, say) can be onboarded again, by another hospital too. The
//! number is compared letters and digits only, case-folded (`state::registration_key`).

use medledger_core::{
    block::{Created, Refusal},
    ids::AccountId,
    tx::{OnboardDoctor, Role},
};

use crate::handler::{HandlerResult, check_text, refuse_on, require_new_account, require_role};
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
    if crate::state::registration_key(&t.registration_number).is_empty() {
        return Ok(Err(Refusal::Invalid {
            reason: "a registration number has letters or digits".into(),
        }));
    }
    if let Some(holder) = state.doctor_by_registration(&t.registration_number)?
        && state.account(&holder)?.is_some_and(|a| a.key.is_some())
    {
        return Ok(Err(Refusal::AlreadyExists {
            what: format!(
                "doctor registration number {:?} (doctor {holder}; their key must be revoked before the number is onboarded again)",
                t.registration_number
            ),
        }));
    }
    state.put_doctor_registration(&t.registration_number, &id)?;
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
