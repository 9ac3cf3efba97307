//! The audit trail: every access decision (allowed or denied), grant, revocation, request,
//! answer, deny rule and delegate change concerning a patient, in ledger order. Each event is
//! written by the transaction that caused it ([`record_event`], which every feature's
//! handlers call), so it is as tamper-evident as the Merkle log that holds that transaction.
//! The patient and their delegates read it in full; the regulator sees only counts.

use std::collections::BTreeMap;

use medledger_core::ids::AccountId;
use redb::{ReadableDatabase, ReadableTable};

use crate::{Ledger, LedgerError, state::*};

pub use medledger_core::audit::{AuditEvent, AuditKind};

/// Records an audit event caused by the transaction being applied. It concerns the patient,
/// the `others` named, and the hospital of each doctor among them (a hospital answers for its
/// doctors' accesses, so it is told of them too).
pub(crate) fn record_event(
    state: &mut StateTxn<'_, '_>,
    actor: &AccountId,
    patient: &AccountId,
    others: &[AccountId],
    kind: AuditKind,
) -> Result<u64, LedgerError> {
    let mut accounts = vec![*patient];
    for other in others {
        if other == patient || accounts.contains(other) {
            continue;
        }
        accounts.push(*other);
        let hospital = state.doctor(other)?.map(|d| d.hospital);
        if let Some(hospital) = hospital.filter(|h| !accounts.contains(h)) {
            accounts.push(hospital);
        }
    }
    let (height, time_ms, tx_hash) = (state.height, state.time_ms, state.tx_hash);
    state.record_audit(&accounts, |seq| AuditEvent {
        seq,
        height,
        time_ms,
        tx_hash,
        actor: *actor,
        patient: *patient,
        kind,
    })
}

impl Ledger {
    /// The events concerning `account` (a patient, or the other party of an event) with
    /// numbers after `after` (all when `None`), oldest first, at most `limit`.
    pub fn audit_trail(
        &self,
        account: &AccountId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, LedgerError> {
        let read = self.db.begin_read()?;
        let index = read.open_table(AUDIT_BY_ACCOUNT)?;
        let events = read.open_table(AUDIT)?;
        let lo = keys::account_seq(account, after.map_or(0, |a| a.saturating_add(1)));
        let hi = keys::account_seq(account, u64::MAX);
        let mut out = Vec::new();
        if after == Some(u64::MAX) {
            return Ok(out);
        }
        for row in index.range::<&[u8; 28]>(&lo..=&hi)? {
            if out.len() >= limit {
                break;
            }
            let (k, _) = row?;
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&k.value()[20..]);
            let seq = u64::from_be_bytes(seq);
            let v = events
                .get(seq)?
                .ok_or_else(|| LedgerError::Corrupt(format!("audit event {seq} missing")))?;
            out.push(decode_entry("audit event", v.value())?);
        }
        Ok(out)
    }

    /// How many events of each kind the ledger holds: what the regulator may see.
    pub fn audit_counts(&self) -> Result<BTreeMap<String, u64>, LedgerError> {
        let read = self.db.begin_read()?;
        let events = read.open_table(AUDIT)?;
        let mut counts = BTreeMap::new();
        for row in events.iter()? {
            let (_, v) = row?;
            let e: AuditEvent = decode_entry("audit event", v.value())?;
            *counts.entry(e.kind.name().to_owned()).or_insert(0) += 1;
        }
        Ok(counts)
    }
}
