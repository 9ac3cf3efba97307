//! The audit trail: every access decision (allowed or denied), grant, revocation, request,
//! answer, deny rule and delegate change concerning a patient, in ledger order. Each event is
//! written by the transaction that caused it, so it is as tamper-evident as the Merkle log
//! that holds that transaction. The patient and their delegates read it in full; the
//! regulator sees only counts.

use std::collections::BTreeMap;

use medledger_core::ids::AccountId;
use redb::{ReadableDatabase, ReadableTable};

use crate::{Ledger, LedgerError, state::*};

pub use medledger_core::audit::{AuditEvent, AuditKind};

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
