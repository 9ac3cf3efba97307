//! A doctor mints a record token for a patient they treat; an amendment mints a new version
//! that supersedes the old one.

use medledger_core::{
    block::{Created, Refusal},
    ids::AccountId,
    tx::{
        Role,
        consent::{Action, Resource},
        records::{MAX_MINT_KEYS, MintRecord, pmr_id},
    },
};

use crate::{
    LedgerError,
    handler::{DoctorForPatient, HandlerResult, doctor_for_patient, refuse_on},
    state::{Account, RecordEntry, StateTxn},
};

/// Most records one patient may get for one visit date (the PMR-ID suffix runs to this).
const MAX_RECORDS_PER_DAY: u32 = 999;

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    m: &MintRecord,
) -> HandlerResult {
    let DoctorForPatient { doctor, patient, patient_id } = refuse_on!(doctor_for_patient(
        state,
        signer,
        signer_account,
        &m.patient,
        "create a record"
    )?);
    refuse_on!(check_fields(signer, m));
    // No key of a new record goes to a researcher: no research export has named it yet, and
    // only what one names reaches a researcher (`share.rs`, M2).
    for k in &m.keys {
        if super::share::is_researcher(state, &k.recipient)? {
            return Ok(Err(Refusal::Unauthorised {
                reason: format!(
                    "{} is a researcher: a new record's key is wrapped to no researcher (the \
                     patient releases a key after a research export names the record)",
                    k.recipient
                ),
            }));
        }
    }
    // The ledger has no clock: a visit date after the block's date is in the future.
    if m.visit_date.is_after(state.time_ms) {
        return Ok(Err(Refusal::Invalid {
            reason: format!(
                "the visit date {} is in the future (the block's date is {})",
                m.visit_date,
                medledger_core::tx::records::VisitDate::of_unix_ms(state.time_ms)
            ),
        }));
    }
    let resource =
        Resource { patient: m.patient, category: Some(m.category), record: None, case: None };
    refuse_on!(crate::consent::require_treating(
        state,
        signer,
        doctor.hospital,
        &patient,
        &resource,
        Action::Read,
        &format!("{:?}", m.category),
    )?);
    let sharing = match &m.sharing {
        None => None,
        Some(sh) => Some(refuse_on!(check_sharing(state, m, sh)?)),
    };
    let version = match &m.supersedes {
        None => 1,
        Some(old_id) => {
            let old = refuse_on!(super::existing(state, old_id)?);
            // Only one who may see a record amends it (else it is answered as missing: an
            // applied amendment would tell that it exists), and as what it is: a version of
            // a record of another category would relabel it.
            let (height, time_ms) = (state.height, state.time_ms);
            if !crate::visibility::record_seen_by(state, signer, old_id, &old, height, time_ms)? {
                return Ok(Err(super::missing(old_id)));
            }
            if old.patient != m.patient {
                return Ok(Err(Refusal::Invalid {
                    reason: format!("record {old_id} belongs to another patient"),
                }));
            }
            if old.category != m.category {
                return Ok(Err(Refusal::Invalid {
                    reason: format!(
                        "record {old_id} is a {:?}: its new version must be one too",
                        old.category
                    ),
                }));
            }
            refuse_on!(super::require_not_erased(old_id, &old));
            if let Some(newer) = &old.superseded_by {
                return Ok(Err(Refusal::Invalid {
                    reason: format!("record {old_id} was already amended by {newer}"),
                }));
            }
            old.version + 1
        }
    };
    let mut pmr = None;
    for n in 1..=MAX_RECORDS_PER_DAY {
        let id = pmr_id(patient_id.0, &m.visit_date, n);
        if state.record(&id)?.is_none() {
            pmr = Some(id);
            break;
        }
    }
    let Some(pmr) = pmr else {
        return Ok(Err(Refusal::Invalid {
            reason: format!(
                "patient {patient_id} already has {MAX_RECORDS_PER_DAY} records that day"
            ),
        }));
    };
    if let Some(old_id) = &m.supersedes {
        let mut old = refuse_on!(super::existing(state, old_id)?);
        old.superseded_by = Some(pmr.clone());
        state.put_record(old_id, &old)?;
    }
    let entry = RecordEntry {
        patient: m.patient,
        owner: m.patient,
        author: *signer,
        hospital: doctor.hospital,
        category: m.category,
        visit_date: m.visit_date,
        content: m.content,
        size: m.size,
        metadata: m.metadata,
        version,
        supersedes: m.supersedes.clone(),
        superseded_by: None,
        approved: None,
        minted_at: state.height,
        minted_time_ms: state.time_ms,
        mint_tx: state.tx_hash,
        erased_at: None,
        sharing,
    };
    state.put_record(&pmr, &entry)?;
    state.add_blob_ref(&m.content, &pmr)?;
    state.add_blob_ref(&m.metadata, &pmr)?;
    for k in &m.keys {
        state.put_record_key(&pmr, &k.recipient, &k.blob)?;
    }
    // A share's index is `i + 1` in a `u8`: `check_sharing` allows at most MAX_CUSTODIANS.
    const _: () = assert!(medledger_core::tx::records::MAX_CUSTODIANS < u8::MAX as usize);
    for (i, share) in m.sharing.iter().flat_map(|sh| sh.shares.iter()).enumerate() {
        state.put_record_share(&pmr, &share.recipient, (i + 1) as u8, &share.blob)?;
    }
    crate::audit::record_event(
        state,
        signer,
        &m.patient,
        &[*signer],
        crate::audit::AuditKind::RecordMinted {
            record: pmr.clone(),
            category: m.category,
            hospital: doctor.hospital,
            supersedes: m.supersedes.clone(),
        },
    )?;
    Ok(Ok(Some(Created::Record { pmr })))
}

/// Checks what needs no state: a real date, distinct blobs, the patient's and the author's
/// keys present once each.
fn check_fields(signer: &AccountId, m: &MintRecord) -> Result<(), Refusal> {
    let bad = |reason: String| Err(Refusal::Invalid { reason });
    if !m.visit_date.is_valid() {
        return bad(format!("{} is not a valid visit date", m.visit_date));
    }
    if m.size == 0 {
        return bad("a record has content (size 0 given)".into());
    }
    if m.content == m.metadata {
        return bad("the content and metadata blobs must differ".into());
    }
    if m.keys.is_empty() || m.keys.len() > MAX_MINT_KEYS {
        return bad(format!("a record carries 1 to {MAX_MINT_KEYS} wrapped keys"));
    }
    let mut recipients: Vec<_> = m.keys.iter().map(|k| k.recipient).collect();
    recipients.sort();
    recipients.dedup();
    if recipients.len() != m.keys.len() {
        return bad("a recipient appears twice among the wrapped keys".into());
    }
    if m.keys.iter().any(|k| k.blob == m.content || k.blob == m.metadata) {
        return bad("a wrapped key must be its own blob".into());
    }
    for (who, what) in [(&m.patient, "the patient"), (signer, "the author")] {
        if !recipients.contains(who) {
            return bad(format!("the data key must be wrapped to {what}"));
        }
    }
    if m.supersedes
        .as_ref()
        .is_some_and(|s| s.is_empty() || s.len() > medledger_core::tx::records::MAX_PMR_ID_LEN)
    {
        return bad("the superseded PMR-ID is malformed".into());
    }
    Ok(())
}

/// Checks a key split: a sensible threshold, distinct active hospitals as custodians, and a
/// blob of its own for every share.
fn check_sharing(
    state: &StateTxn<'_, '_>,
    m: &MintRecord,
    sh: &medledger_core::tx::records::KeySharing,
) -> Result<Result<crate::state::SharingEntry, Refusal>, LedgerError> {
    use medledger_core::tx::records::MAX_CUSTODIANS;
    let bad = |reason: String| Ok(Err(Refusal::Invalid { reason }));
    let n = sh.shares.len();
    if n == 0 || n > MAX_CUSTODIANS {
        return bad(format!("a key is split among 1 to {MAX_CUSTODIANS} custodians"));
    }
    if sh.threshold == 0 || usize::from(sh.threshold) > n {
        return bad(format!("the threshold must be 1 to {n} (the number of custodians)"));
    }
    let mut custodians: Vec<AccountId> = sh.shares.iter().map(|s| s.recipient).collect();
    let mut blobs: Vec<_> = sh.shares.iter().map(|s| s.blob).collect();
    blobs.extend([m.content, m.metadata]);
    blobs.extend(m.keys.iter().map(|k| k.blob));
    let total = blobs.len();
    blobs.sort();
    blobs.dedup();
    if blobs.len() != total {
        return bad("every share must be a blob of its own".into());
    }
    for c in &custodians {
        match state.account(c)? {
            Some(a) if a.role == Role::Hospital && !a.suspended && a.key.is_some() => {}
            _ => return bad(format!("custodian {c} is not an active hospital")),
        }
    }
    let order = custodians.clone();
    custodians.sort();
    custodians.dedup();
    if custodians.len() != n {
        return bad("a custodian appears twice".into());
    }
    Ok(Ok(crate::state::SharingEntry { threshold: sh.threshold, custodians: order }))
}
