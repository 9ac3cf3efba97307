//! A custodian releases its share of a record's key to a reader. The ledger runs `authorize`
//! for the reader at this block and records the decision in the patient's trail, allowed or
//! denied; only an allowed release is stored, so a custodian's share never reaches a reader
//! the ledger has not authorised.

use medledger_core::{
    Hash,
    block::{Created, Refusal},
    ids::AccountId,
    tx::consent::{Action, Purpose, Resource},
};

use crate::{
    handler::{HandlerResult, refuse_on},
    state::StateTxn,
};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    pmr: &str,
    reader: &AccountId,
    purpose: Purpose,
    share: &Hash,
) -> HandlerResult {
    let r = refuse_on!(super::existing(state, pmr)?);
    refuse_on!(super::require_not_erased(pmr, &r));
    let Some(sharing) = &r.sharing else {
        return Ok(Err(Refusal::Invalid { reason: format!("record {pmr}'s key is not split") }));
    };
    let Some(index) = sharing.custodians.iter().position(|c| c == signer) else {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!("only a custodian of record {pmr} may release a share of its key"),
        }));
    };
    if state.account(reader)?.is_none() {
        return Ok(Err(Refusal::NotFound { what: format!("reader {reader}") }));
    }
    if *share == r.content || *share == r.metadata {
        return Ok(Err(Refusal::Invalid { reason: "a share must be a blob of its own".into() }));
    }
    let resource = Resource {
        patient: r.patient,
        category: Some(r.category),
        record: Some(pmr.to_owned()),
        case: None,
    };
    let decision = crate::consent::authorize(
        &*state,
        reader,
        Action::Read,
        &resource,
        purpose,
        state.height,
        state.time_ms,
    )?;
    let event = crate::audit::record_event(
        state,
        signer,
        &r.patient,
        &[*reader],
        crate::audit::AuditKind::ShareReleased {
            record: pmr.to_owned(),
            custodian: *signer,
            reader: *reader,
            purpose,
            decision: decision.clone(),
        },
    )?;
    if decision.is_allowed() {
        // `index` is a position among the record's custodians, at most MAX_CUSTODIANS at mint.
        const _: () = assert!(medledger_core::tx::records::MAX_CUSTODIANS < u8::MAX as usize);
        state.put_record_share(pmr, reader, (index + 1) as u8, share)?;
    }
    Ok(Ok(Some(Created::ShareRelease { decision, event })))
}
