//! The owner, patient or a delegate gives another account a record's data key, wrapped to
//! that account (done in the patient's wallet when granting access to the record). Access
//! itself still needs a grant in force: a key without a grant opens nothing the node serves.
//! A researcher organisation or its member gets a key only for a read `authorize` allows it
//! now for research (what a research export of the member's own named: M2).
//!
//! The recipient may also be the patient's emergency pseudo-account
//! (`AccountId::emergency_of`), once the patient has an emergency profile: the patient's wallet
//! wraps the keys of records minted before the profile (or before it was replaced with a new
//! emergency key) to the emergency key, so that an open break-glass opens every record when
//! the patient allowed it. A mint already wraps new records to it.

use medledger_core::{block::Refusal, ids::AccountId, tx::records::KeyRef};

use crate::{
    handler::{HandlerResult, refuse_on},
    state::StateTxn,
};

/// A researcher organisation, or a member of one, gets a record's key only for a read the
/// ledger would allow it now for research (`authorize`: what a research export of the
/// member's own named for its content, within the day, under a grant still in force, the
/// member and its organisation active): so no wallet, whatever a node told it, hands a
/// researcher a key outside an export, after a revocation or during a suspension (M2).
fn researcher_may_read(
    state: &StateTxn<'_, '_>,
    pmr: &str,
    r: &crate::state::RecordEntry,
    recipient: &AccountId,
) -> Result<Result<(), Refusal>, crate::LedgerError> {
    use medledger_core::tx::consent::{Purpose, Resource};
    if !is_researcher(state, recipient)? {
        return Ok(Ok(()));
    }
    let resource = Resource {
        patient: r.patient,
        category: Some(r.category),
        record: Some(pmr.to_owned()),
        case: None,
    };
    let decision = crate::consent::authorize(
        state,
        recipient,
        crate::consent::Action::Read,
        &resource,
        Purpose::Research,
        state.height,
        state.time_ms,
    )?;
    if decision.is_allowed() {
        return Ok(Ok(()));
    }
    Ok(Err(Refusal::Unauthorised {
        reason: format!(
            "{recipient} is a researcher: it gets a record's key only for a read a research \
             export of its own allows now ({decision})"
        ),
    }))
}

/// Whether `account` is a researcher organisation or a member of one.
pub(super) fn is_researcher(
    state: &StateTxn<'_, '_>,
    account: &AccountId,
) -> Result<bool, crate::LedgerError> {
    use medledger_core::tx::{OrganisationKind, Role};
    let researcher = Role::Organisation(OrganisationKind::Researcher);
    let Some(a) = state.account(account)? else { return Ok(false) };
    let organisation = match a.role {
        Role::Member => a.authority.map(|o| state.account(&o)).transpose()?.flatten(),
        _ => None,
    };
    Ok(a.role == researcher || organisation.is_some_and(|o| o.role == researcher))
}

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    pmr: &str,
    key: &KeyRef,
) -> HandlerResult {
    let r = refuse_on!(super::existing(state, pmr)?);
    refuse_on!(super::require_patient_or_delegate_in_office(state, signer, pmr, &r)?);
    refuse_on!(super::require_not_erased(pmr, &r));
    let to_emergency_key = key.recipient == AccountId::emergency_of(&r.patient);
    if to_emergency_key {
        if state.emergency_profile(&r.patient)?.is_none() {
            return Ok(Err(Refusal::Invalid {
                reason: format!(
                    "patient {} has no emergency profile: there is no emergency key to wrap to",
                    r.patient
                ),
            }));
        }
    } else {
        refuse_on!(crate::handler::require_active(state, &key.recipient, "recipient")?);
        refuse_on!(researcher_may_read(state, pmr, &r, &key.recipient)?);
    }
    if key.blob == r.content || key.blob == r.metadata {
        return Ok(Err(Refusal::Invalid { reason: "a wrapped key must be its own blob".into() }));
    }
    state.put_record_key(pmr, &key.recipient, &key.blob)?;
    crate::audit::record_event(
        state,
        signer,
        &r.patient,
        // Nobody signs as the emergency pseudo-account: no trail to index it under.
        if to_emergency_key { &[] } else { std::slice::from_ref(&key.recipient) },
        crate::audit::AuditKind::RecordKeyShared { record: pmr.to_owned(), grantee: key.recipient },
    )?;
    Ok(Ok(None))
}
