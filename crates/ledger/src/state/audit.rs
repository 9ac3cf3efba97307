//! The audit trail's writer: events numbered in ledger order, indexed by every account they
//! concern.

use medledger_core::ids::AccountId;
use redb::ReadableTable;

use super::{StateTxn, keys};
use crate::LedgerError;

impl StateTxn<'_, '_> {
    /// Appends an audit event concerning `accounts` (the patient first); returns its number.
    pub fn record_audit(
        &mut self,
        accounts: &[AccountId],
        make: impl FnOnce(u64) -> crate::audit::AuditEvent,
    ) -> Result<u64, LedgerError> {
        let seq = match self.tables.audit.last()? {
            Some((k, _)) => k.value() + 1,
            None => 0,
        };
        self.write().audit().put_entry(seq, &make(seq))?;
        for a in accounts {
            self.write().audit_by_account().put(&keys::account_seq(a, seq), ())?;
        }
        Ok(seq)
    }
}
