//! Consent's stored entries (grants, access requests, deny rules) and the accessors of
//! grants, requests, deny rules, delegates and their powers, with their indexes.

use medledger_core::{
    Hash,
    ids::AccountId,
    tx::{
        DelegatePowers,
        consent::{ConsentId, DenyRule, Purpose, Scope, Validity},
    },
};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{StateTxn, get_entry, keys};
use crate::LedgerError;

/// A grant of access to a patient's records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantEntry {
    /// Whose records.
    pub patient: AccountId,
    /// Who may access them.
    pub grantee: AccountId,
    /// Which records.
    pub scope: Scope,
    /// For what.
    pub purpose: Purpose,
    /// When.
    pub validity: Validity,
    /// Who signed it (the patient or a delegate).
    pub granted_by: AccountId,
    /// Height of the grant.
    pub granted_at: u64,
    /// The request it answers, if any.
    pub request: Option<ConsentId>,
    /// Height of revocation; it stops working from the next block on.
    pub revoked_at: Option<u64>,
}

impl GrantEntry {
    /// Whether the grant is in force at a block of `height` and `time_ms`.
    pub fn in_force(&self, height: u64, time_ms: u64) -> bool {
        self.revoked_at.is_none_or(|r| height <= r) && self.validity.contains(time_ms)
    }

    /// Whether the grant's scope covers `resource`.
    pub fn covers(&self, resource: &crate::consent::Resource) -> bool {
        self.scope.covers(resource)
    }
}

/// The state of an access request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for the patient.
    Pending,
    /// Approved; the grant it created.
    Approved(ConsentId),
    /// Declined.
    Declined,
}

/// An access request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEntry {
    /// Whose records.
    pub patient: AccountId,
    /// Who asks.
    pub requester: AccountId,
    /// Which records.
    pub scope: Scope,
    /// For what.
    pub purpose: Purpose,
    /// Height of the request.
    pub requested_at: u64,
    /// Its state.
    pub status: RequestStatus,
}

/// A deny rule and whose records it protects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyEntry {
    /// Whose records.
    pub patient: AccountId,
    /// The rule.
    pub rule: DenyRule,
    /// Height at which it was added.
    pub added_at: u64,
}

impl StateTxn<'_, '_> {
    /// Reads a grant.
    pub fn grant(&self, id: &Hash) -> Result<Option<GrantEntry>, LedgerError> {
        get_entry(&self.tables.grants, &id.0, "grant")
    }

    /// Writes a grant and its indexes.
    pub fn put_grant(&mut self, id: &Hash, g: &GrantEntry) -> Result<(), LedgerError> {
        self.write().grants().put_entry(&id.0, g)?;
        self.write()
            .grants_by_grantee()
            .put(&keys::account_pair_hash(&g.grantee, &g.patient, id), ())?;
        self.write().grants_by_patient().put(&keys::account_hash(&g.patient, id), ())?;
        Ok(())
    }

    /// Reads an access request.
    pub fn request(&self, id: &Hash) -> Result<Option<RequestEntry>, LedgerError> {
        get_entry(&self.tables.requests, &id.0, "request")
    }

    /// Writes an access request.
    pub fn put_request(&mut self, id: &Hash, r: &RequestEntry) -> Result<(), LedgerError> {
        self.write().requests().put_entry(&id.0, r)?;
        Ok(())
    }

    /// Reads a deny rule.
    pub fn deny_rule(&self, id: &Hash) -> Result<Option<DenyEntry>, LedgerError> {
        get_entry(&self.tables.deny_rules, &id.0, "deny rule")
    }

    /// Adds a deny rule.
    pub fn put_deny_rule(&mut self, id: &Hash, d: &DenyEntry) -> Result<(), LedgerError> {
        self.write().deny_rules().put_entry(&id.0, d)?;
        self.write().deny_by_patient().put(&keys::account_hash(&d.patient, id), ())?;
        Ok(())
    }

    /// Removes a deny rule.
    pub fn remove_deny_rule(&mut self, id: &Hash, d: &DenyEntry) -> Result<(), LedgerError> {
        self.write().deny_rules().remove(&id.0)?;
        self.write().deny_by_patient().remove(&keys::account_hash(&d.patient, id))?;
        Ok(())
    }

    /// Whether `delegate` may act on consent for `patient`.
    pub fn is_delegate(
        &self,
        patient: &AccountId,
        delegate: &AccountId,
    ) -> Result<bool, LedgerError> {
        Ok(self.tables.delegates.get(&keys::account_pair(patient, delegate))?.is_some())
    }

    /// The delegates a patient named.
    pub fn delegates_of(&self, patient: &AccountId) -> Result<Vec<AccountId>, LedgerError> {
        let lo = keys::account_pair(patient, &AccountId([0; 20]));
        let hi = keys::account_pair(patient, &AccountId([0xff; 20]));
        let mut out = Vec::new();
        for row in self.tables.delegates.range::<&[u8; 40]>(&lo..=&hi)? {
            let (k, _) = row?;
            let mut d = [0u8; 20];
            d.copy_from_slice(&k.value()[20..]);
            out.push(AccountId(d));
        }
        Ok(out)
    }

    /// Names or removes a delegate.
    pub fn set_delegate(
        &mut self,
        patient: &AccountId,
        delegate: &AccountId,
        on: bool,
    ) -> Result<(), LedgerError> {
        self.write().delegates().set(&keys::account_pair(patient, delegate), on)?;
        // Named or removed, a delegate starts from every power (a scope is set after).
        self.set_delegate_powers(patient, delegate, DelegatePowers::ALL)
    }

    /// What a delegate may do; `None` when `delegate` is not a delegate of `patient`.
    pub fn delegate_powers(
        &self,
        patient: &AccountId,
        delegate: &AccountId,
    ) -> Result<Option<DelegatePowers>, LedgerError> {
        let key = keys::account_pair(patient, delegate);
        if self.tables.delegates.get(&key)?.is_none() {
            return Ok(None);
        }
        let bits = self.tables.delegate_powers.get(&key)?.map(|v| v.value());
        Ok(Some(bits.map_or(DelegatePowers::ALL, DelegatePowers)))
    }

    /// Whether `delegate` is a delegate of `patient` holding every power in `power`.
    pub fn delegate_may(
        &self,
        patient: &AccountId,
        delegate: &AccountId,
        power: DelegatePowers,
    ) -> Result<bool, LedgerError> {
        Ok(self.delegate_powers(patient, delegate)?.is_some_and(|p| p.contains(power)))
    }

    /// Sets a delegate's powers (every power is stored as no row).
    pub fn set_delegate_powers(
        &mut self,
        patient: &AccountId,
        delegate: &AccountId,
        powers: DelegatePowers,
    ) -> Result<(), LedgerError> {
        let key = keys::account_pair(patient, delegate);
        if powers == DelegatePowers::ALL {
            self.write().delegate_powers().remove(&key)?;
        } else {
            self.write().delegate_powers().put(&key, powers.0)?;
        }
        Ok(())
    }
}
