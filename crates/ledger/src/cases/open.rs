//! A treating doctor opens a case for a patient: the ledger assigns its id and first head,
//! and records the wrapped case keys and the sealed description.

use medledger_core::{
    block::{Created, Refusal},
    ids::AccountId,
    tx::{
        cases::{MAX_CASE_KEYS, OpenCase, case_id, opened_head},
        consent::{Action, MAX_ID_LEN, Resource},
    },
};

use crate::{
    LedgerError,
    handler::{DoctorForPatient, HandlerResult, doctor_for_patient, refuse_on},
    state::{Account, CaseLog, StateTxn},
};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    o: &OpenCase,
) -> HandlerResult {
    let DoctorForPatient { doctor, patient, patient_id } =
        refuse_on!(doctor_for_patient(state, signer, signer_account, &o.patient, "open a case")?);
    refuse_on!(check_fields(signer, o));
    if let Some(prior) = &o.follow_up_of {
        let old = refuse_on!(super::existing(state, prior)?);
        // Only one who may see a case follows it up (else it is answered as missing: an
        // applied follow-up would tell that it exists and is sealed).
        let (height, time_ms) = (state.height, state.time_ms);
        if crate::visibility::case_sight_in(state, signer, prior, &old, height, time_ms)?
            == crate::visibility::CaseSight::Hidden
        {
            return Ok(Err(super::missing(prior)));
        }
        if old.patient != o.patient {
            return Ok(Err(Refusal::Invalid {
                reason: format!("case {prior} is a case of another patient"),
            }));
        }
        if old.sealed.is_none() {
            return Ok(Err(Refusal::Invalid {
                reason: format!(
                    "case {prior} is still open: append to it, or seal it before opening a follow-up"
                ),
            }));
        }
    }
    let resource =
        Resource { patient: o.patient, category: None, record: None, case: o.follow_up_of.clone() };
    refuse_on!(crate::consent::require_treating(
        state,
        signer,
        doctor.hospital,
        &patient,
        &resource,
        Action::Write,
        "a new case for them",
    )?);
    let id = case_id(patient_id.0, state.case_count(&o.patient)? + 1);
    if state.case(&id)?.is_some() {
        return Err(LedgerError::Corrupt(format!(
            "case {id} exists but is not indexed under its patient"
        )));
    }
    let head = opened_head(&id, &o.patient, signer, &o.description, state.height, state.time_ms);
    let log = CaseLog {
        patient: o.patient,
        opener: *signer,
        hospital: doctor.hospital,
        description: o.description,
        follow_up_of: o.follow_up_of.clone(),
        opened_at: state.height,
        opened_time_ms: state.time_ms,
        open_tx: state.tx_hash,
        first_head: head,
        head,
        entries: 0,
        authors: Vec::new(),
        sealed: None,
    };
    state.put_case(&id, &log)?;
    state.add_blob_ref(&o.description, &id)?;
    for k in &o.keys {
        state.put_case_key(&id, &k.recipient, &k.blob)?;
    }
    crate::audit::record_event(
        state,
        signer,
        &o.patient,
        &[*signer],
        crate::audit::AuditKind::CaseOpened {
            case: id.clone(),
            hospital: doctor.hospital,
            follow_up_of: o.follow_up_of.clone(),
        },
    )?;
    Ok(Ok(Some(Created::Case { case: id, head })))
}

/// Checks what needs no state: the patient's and the opener's keys present once each, every
/// blob distinct, a well-formed follow-up id.
fn check_fields(signer: &AccountId, o: &OpenCase) -> Result<(), Refusal> {
    let bad = |reason: String| Err(Refusal::Invalid { reason });
    if o.keys.is_empty() || o.keys.len() > MAX_CASE_KEYS {
        return bad(format!("a case carries 1 to {MAX_CASE_KEYS} wrapped keys"));
    }
    let mut recipients: Vec<_> = o.keys.iter().map(|k| k.recipient).collect();
    recipients.sort();
    recipients.dedup();
    if recipients.len() != o.keys.len() {
        return bad("a recipient appears twice among the wrapped keys".into());
    }
    let mut blobs: Vec<_> = o.keys.iter().map(|k| k.blob).chain([o.description]).collect();
    blobs.sort();
    blobs.dedup();
    if blobs.len() != o.keys.len() + 1 {
        return bad("the description and every wrapped key must be blobs of their own".into());
    }
    for (who, what) in [(&o.patient, "the patient"), (signer, "the opener")] {
        if !recipients.contains(who) {
            return bad(format!("the case key must be wrapped to {what}"));
        }
    }
    if o.follow_up_of.as_ref().is_some_and(|s| s.is_empty() || s.len() > MAX_ID_LEN) {
        return bad(format!("a case id is 1 to {MAX_ID_LEN} bytes"));
    }
    Ok(())
}
