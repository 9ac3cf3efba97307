//! The opener, the patient or a delegate seals a case at its current head: the seal commits
//! the chain, and nothing can be appended afterwards.

use medledger_core::{Hash, block::Created, ids::AccountId};

use crate::{
    handler::{HandlerResult, refuse_on},
    state::{CaseSeal, StateTxn},
};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    case: &str,
    head: &Hash,
) -> HandlerResult {
    let mut log = refuse_on!(super::existing(state, case)?);
    refuse_on!(super::require_opener_or_patient(state, signer, case, &log, "seal it")?);
    refuse_on!(super::require_unsealed(case, &log));
    refuse_on!(super::require_head(case, &log, head));
    log.sealed = Some(CaseSeal {
        height: state.height,
        time_ms: state.time_ms,
        by: *signer,
        tx: state.tx_hash,
    });
    state.put_case(case, &log)?;
    let mut others = vec![log.opener];
    others.extend(log.authors.iter().copied());
    crate::audit::record_event(
        state,
        signer,
        &log.patient,
        &others,
        crate::audit::AuditKind::CaseSealed {
            case: case.to_owned(),
            entries: log.entries,
            head: log.head,
        },
    )?;
    Ok(Ok(Some(Created::CaseSealed { entries: log.entries, head: log.head })))
}
