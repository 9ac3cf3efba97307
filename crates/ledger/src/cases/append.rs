//! A doctor authorised for a case appends an entry: the entry chains to the head its author
//! saw, which must still be the case's head.

use medledger_core::{
    Hash,
    block::{Created, Refusal},
    ids::AccountId,
    tx::cases::{MAX_CASE_AUTHORS, appended_head},
};

use crate::{
    handler::{HandlerResult, refuse_on},
    state::{Account, CaseLogEntry, StateTxn},
};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    case: &str,
    prev: &Hash,
    entry: &Hash,
) -> HandlerResult {
    let mut log = refuse_on!(super::existing(state, case)?);
    refuse_on!(super::may_write(state, signer, signer_account, case, &log)?);
    refuse_on!(super::require_unsealed(case, &log));
    refuse_on!(super::require_head(case, &log, prev));
    if !log.authors.contains(signer) {
        if log.authors.len() >= MAX_CASE_AUTHORS {
            return Ok(Err(Refusal::Invalid {
                reason: format!(
                    "case {case} already has {MAX_CASE_AUTHORS} authors: open a follow-up case"
                ),
            }));
        }
        log.authors.push(*signer);
    }
    let seq = log.entries + 1;
    let head = appended_head(prev, entry, signer, state.height, state.time_ms);
    state.put_case_entry(
        case,
        seq,
        &CaseLogEntry {
            author: *signer,
            height: state.height,
            time_ms: state.time_ms,
            entry: *entry,
            prev: *prev,
            head,
            tx: state.tx_hash,
        },
    )?;
    state.add_blob_ref(entry, case)?;
    log.head = head;
    log.entries = seq;
    state.put_case(case, &log)?;
    // The stored case ends where the chain says it must: one more entry, the new head.
    debug_assert!(
        state.case(case)?.is_some_and(|c| c.entries == seq
            && c.head == appended_head(prev, entry, signer, state.height, state.time_ms)),
        "case {case}: the stored head is not the next head of its chain"
    );
    crate::audit::record_event(
        state,
        signer,
        &log.patient,
        &[*signer, log.opener],
        crate::audit::AuditKind::CaseEntryAppended { case: case.to_owned(), seq, head },
    )?;
    Ok(Ok(Some(Created::CaseEntry { seq, head })))
}
