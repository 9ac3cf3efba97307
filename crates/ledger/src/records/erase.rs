//! Erasure (GDPR Art. 17) by crypto-shredding: the ledger drops its references to the
//! record's ciphertext, metadata and wrapped keys, so custodians delete them from their
//! vaults; the token stays, marked erased, with its hashes, so every proof still verifies.

use medledger_core::ids::AccountId;

use crate::{
    handler::{HandlerResult, refuse_on},
    state::StateTxn,
};

pub(crate) fn apply(state: &mut StateTxn<'_, '_>, signer: &AccountId, pmr: &str) -> HandlerResult {
    let mut r = refuse_on!(super::existing(state, pmr)?);
    refuse_on!(super::require_patient_or_delegate_in_office(state, signer, pmr, &r)?);
    refuse_on!(super::require_not_erased(pmr, &r));
    // Only the blobs this record holds are erased (a removal never takes another owner's).
    let mut blobs = state.remove_record_keys(pmr)?;
    for blob in [r.content, r.metadata] {
        if state.remove_blob_ref(&blob, pmr)? {
            blobs.push(blob);
        }
    }
    for blob in &blobs {
        state.mark_erased(blob)?;
    }
    r.erased_at = Some(state.height);
    r.approved = None;
    state.put_record(pmr, &r)?;
    crate::audit::record_event(
        state,
        signer,
        &r.patient,
        &[r.author],
        crate::audit::AuditKind::RecordErased { record: pmr.to_owned() },
    )?;
    Ok(Ok(Some(medledger_core::block::Created::Erased { pmr: pmr.to_owned(), blobs })))
}
