//! Vault quotas by role, and who may store sealed registration details
//! (`PUT /v1/blobs`): security review M8. A device stores nothing but what its gateway
//! uploads for its readings, so its quota is tiny; patients and doctors get a moderate one;
//! hospitals, which keep their patients' and custodians' material, a larger one. Every
//! figure is set on `medledger up`.

use std::sync::Arc;

use medledger_core::{ids::AccountId, tx::Role};
use medledger_ledger::Ledger;

use crate::storage::MIB;

/// Bytes each account may keep in the vault at once, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaultQuotas {
    /// A device (default 16 MiB).
    pub device: u64,
    /// A patient (default 256 MiB).
    pub patient: u64,
    /// A doctor, who uploads the records they write (default 4 GiB).
    pub doctor: u64,
    /// A hospital (default 16 GiB).
    pub hospital: u64,
    /// The regulator, which stores hospitals' sealed contact details (default 64 MiB).
    pub regulator: u64,
    /// A researcher's or insurer's organisation (default 64 MiB).
    pub organisation: u64,
}

impl Default for VaultQuotas {
    fn default() -> Self {
        VaultQuotas {
            device: 16 * MIB,
            patient: 256 * MIB,
            doctor: 4096 * MIB,
            hospital: 16384 * MIB,
            regulator: 64 * MIB,
            organisation: 64 * MIB,
        }
    }
}

impl VaultQuotas {
    /// The quota of an account of `role`; nothing for an account not on the ledger.
    pub fn of_role(&self, role: Option<&Role>) -> u64 {
        match role {
            None => 0,
            Some(Role::Device) => self.device,
            Some(Role::Patient) => self.patient,
            Some(Role::Doctor) => self.doctor,
            Some(Role::Hospital) => self.hospital,
            Some(Role::Regulator) => self.regulator,
            Some(Role::Organisation(_) | Role::Member) => self.organisation,
        }
    }

    /// The vault's per-account quotas, by each account's role in committed state.
    pub fn for_ledger(self, ledger: Arc<Ledger>) -> medledger_vault::Quotas {
        medledger_vault::Quotas::new(move |account: &AccountId| {
            let role = ledger.account(account).ok().flatten().map(|a| a.role);
            self.of_role(role.as_ref())
        })
    }
}

/// Whether an account of `role` may store sealed registration details with
/// `PUT /v1/blobs`: those who register people, devices or thresholds (the regulator admits
/// hospitals, hospitals onboard doctors and register patients and devices, patients register
/// their devices, doctors seal device thresholds). A device, an organisation (whose members
/// have no sealed details) or a member registers nobody.
pub fn may_store_details(role: &Role) -> bool {
    match role {
        Role::Regulator | Role::Hospital | Role::Doctor | Role::Patient => true,
        Role::Device | Role::Organisation(_) | Role::Member => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_far_below_the_old_50_gib_and_smallest_for_devices() {
        let q = VaultQuotas::default();
        let all = [q.device, q.patient, q.doctor, q.hospital, q.regulator, q.organisation];
        assert!(all.iter().all(|&b| b < 50 << 30), "{q:?}");
        assert!(all.iter().all(|&b| b >= q.device), "{q:?}");
        assert_eq!(q.of_role(None), 0, "an unknown account stores nothing");
        assert!(!may_store_details(&Role::Device));
        assert!(may_store_details(&Role::Patient));
    }
}
