//! The digest of a batch of normal readings, signed by the session's device: one transaction
//! per batch, naming the ciphertext in the vault, the count and the sequence range.

use medledger_core::{
    Hash,
    block::Refusal,
    ids::AccountId,
    tx::devices::{MAX_BATCH_BYTES, MAX_BATCH_READINGS, ReadingBatch},
};

use crate::{
    LedgerError,
    handler::{HandlerResult, refuse_on},
    state::{BatchEntry, DeviceEntry, SessionEntry, StateTxn},
};

pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    b: &ReadingBatch,
) -> HandlerResult {
    let (mut s, _) = refuse_on!(open_session_of(state, signer, &b.session)?);
    let bad = |reason: String| Ok(Err(Refusal::Invalid { reason }));
    if b.first_seq == 0 || b.first_seq > b.last_seq {
        return bad(format!(
            "a batch covers sequence numbers from 1 up, first to last ({}..={} given)",
            b.first_seq, b.last_seq
        ));
    }
    if b.count == 0 || b.count > MAX_BATCH_READINGS {
        return bad(format!(
            "a batch holds 1 to {MAX_BATCH_READINGS} readings ({} given)",
            b.count
        ));
    }
    if b.size == 0 || b.size > MAX_BATCH_BYTES {
        return bad(format!("a sealed batch is 1 to {MAX_BATCH_BYTES} bytes ({} given)", b.size));
    }
    if b.first_seq <= s.batch_high {
        return Ok(Err(Refusal::ReplayedReading {
            session: b.session,
            last: s.batch_high,
            got: b.first_seq,
        }));
    }
    let span = b.last_seq - b.first_seq + 1;
    let alerted = state.alerts_in(&b.session, b.first_seq, b.last_seq)?;
    if u64::from(b.count) + alerted > span {
        return bad(format!(
            "{} readings and {alerted} alerts cannot fit in sequence numbers {}..={}",
            b.count, b.first_seq, b.last_seq
        ));
    }
    state.put_batch(
        &b.session,
        &BatchEntry {
            first_seq: b.first_seq,
            last_seq: b.last_seq,
            count: b.count,
            blob: b.blob,
            size: b.size,
            tx: state.tx_hash,
            height: state.height,
            time_ms: state.time_ms,
        },
    )?;
    s.batch_high = b.last_seq;
    s.readings += u64::from(b.count);
    s.batches += 1;
    state.put_device_session(&b.session, &s)?;
    Ok(Ok(None))
}

/// The session `id` if `signer` is its device, the device is registered, and the session takes
/// readings at this block.
pub(crate) fn open_session_of(
    state: &StateTxn<'_, '_>,
    signer: &AccountId,
    id: &Hash,
) -> Result<Result<(SessionEntry, DeviceEntry), Refusal>, LedgerError> {
    let Some(s) = state.device_session(id)? else {
        return Ok(Err(Refusal::NotFound { what: format!("device session {id}") }));
    };
    if s.device != *signer {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!("session {id} belongs to device {}, not to {signer}", s.device),
        }));
    }
    let Some(d) = state.device(signer)? else {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!("{signer} is not a registered device"),
        }));
    };
    if let Err(refusal) = super::require_active(signer, &d) {
        return Ok(Err(refusal));
    }
    if let Some(reason) = s.closed_reason(state.time_ms) {
        return Ok(Err(Refusal::SessionNotOpen { session: *id, reason }));
    }
    Ok(Ok((s, d)))
}
