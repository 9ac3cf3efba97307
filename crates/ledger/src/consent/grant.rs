//! A patient (or delegate) grants access; approving a request creates a grant the same way.

use medledger_core::tx::DelegatePowers;
use medledger_core::{
    block::{Created, Refusal},
    ids::AccountId,
    tx::{
        Role,
        consent::{ConsentId, Purpose, Scope, Validity},
    },
};

use super::{check_scope, check_validity, require_patient_or_delegate};
use crate::{
    handler::{HandlerResult, refuse_on, require_active},
    state::{GrantEntry, StateTxn},
};

#[allow(clippy::too_many_arguments)] // reason: the fields of a grant, each needed
pub(crate) fn grant(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    patient: &AccountId,
    grantee: &AccountId,
    scope: &Scope,
    purpose: Purpose,
    validity: &Validity,
    request: Option<ConsentId>,
) -> HandlerResult {
    refuse_on!(require_patient_or_delegate(state, signer, patient, DelegatePowers::CONSENT)?);
    if grantee == patient {
        return Ok(Err(Refusal::Invalid {
            reason: "a patient needs no grant to their own records".into(),
        }));
    }
    let grantee_account = refuse_on!(require_active(state, grantee, "grantee")?);
    if grantee_account.role == Role::Member {
        return Ok(Err(Refusal::Invalid {
            reason: format!(
                "{grantee} is a member of an organisation: grant to the organisation ({}), under whose grants its members act",
                grantee_account.authority.map_or_else(|| "unknown".to_owned(), |o| o.to_string())
            ),
        }));
    }
    refuse_on!(super::check_organisation_purpose(grantee_account.role, purpose));
    refuse_on!(check_scope(scope));
    refuse_on!(super::check_organisation_scope(grantee_account.role, scope));
    refuse_on!(check_validity(validity, state.time_ms));
    let id = state.tx_hash;
    crate::audit::record_event(
        state,
        signer,
        patient,
        &[*grantee],
        crate::audit::AuditKind::Granted {
            grant: id,
            grantee: *grantee,
            scope: scope.clone(),
            purpose,
            validity: *validity,
        },
    )?;
    state.put_grant(
        &id,
        &GrantEntry {
            patient: *patient,
            grantee: *grantee,
            scope: scope.clone(),
            purpose,
            validity: *validity,
            granted_by: *signer,
            granted_at: state.height,
            request,
            revoked_at: None,
        },
    )?;
    Ok(Ok(Some(Created::Consent { id })))
}
