//! Emergency access's stored entries (break-glass declarations) and the accessors of
//! emergency profiles, break-glass and its indexes, escrow releases and the network's
//! break-glass window.

use medledger_core::{Hash, ids::AccountId, tx::emergency::EmergencyProfile};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{StateTxn, get_entry, keys};
use crate::LedgerError;

/// The break-glass window parameter, milliseconds (u64, big-endian).
pub(crate) const NET_EMERGENCY_WINDOW_MS: &str = "emergency_window_ms";

/// The break-glass window from its stored parameter (the default when unset).
pub(crate) fn window_ms(stored: Option<&[u8]>) -> Result<u64, LedgerError> {
    let Some(v) = stored else { return Ok(medledger_core::tx::emergency::DEFAULT_WINDOW_MS) };
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| LedgerError::Corrupt("the emergency window parameter is malformed".into()))?;
    Ok(u64::from_be_bytes(b))
}

/// A break-glass declaration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassEntry {
    /// Whose records.
    pub patient: AccountId,
    /// The doctor who declared it.
    pub doctor: AccountId,
    /// The doctor's hospital (which must review it).
    pub hospital: AccountId,
    /// Why, from the list.
    pub code: medledger_core::tx::emergency::ReasonCode,
    /// Why, sealed to the patient, the doctor's hospital and the regulator.
    pub reason: Vec<u8>,
    /// Height of the declaration.
    pub started_at: u64,
    /// Block time of the declaration.
    pub started_ms: u64,
    /// When the window closes, block time.
    pub until_ms: u64,
    /// Height at which it was ended early; it stops working from the next block.
    pub ended_at: Option<u64>,
    /// The hospital's review, once filed: the finding (sealed like the reason) and its height.
    pub review: Option<(Vec<u8>, u64)>,
}

impl BreakGlassEntry {
    /// Whether it is open at a block of `height` and `time_ms`.
    pub fn open_at(&self, height: u64, time_ms: u64) -> bool {
        self.ended_at.is_none_or(|e| height <= e) && time_ms < self.until_ms
    }
}

impl StateTxn<'_, '_> {
    /// A patient's emergency profile.
    pub fn emergency_profile(
        &self,
        patient: &AccountId,
    ) -> Result<Option<EmergencyProfile>, LedgerError> {
        get_entry(&self.tables.emergency_profiles, &patient.0, "emergency profile")
    }

    /// Sets a patient's emergency profile.
    pub fn put_emergency_profile(
        &mut self,
        patient: &AccountId,
        p: &EmergencyProfile,
    ) -> Result<(), LedgerError> {
        self.write().emergency_profiles().put_entry(&patient.0, p)?;
        // The transaction being applied is the one that set it.
        let tx = self.tx_hash.0;
        self.write().emergency_profile_txs().put(&patient.0, &tx)?;
        Ok(())
    }

    /// A break-glass declaration.
    pub fn break_glass(&self, id: &Hash) -> Result<Option<BreakGlassEntry>, LedgerError> {
        get_entry(&self.tables.break_glass, &id.0, "break-glass")
    }

    /// Writes a break-glass declaration and keeps its indexes (open reviews) current.
    pub fn put_break_glass(&mut self, id: &Hash, b: &BreakGlassEntry) -> Result<(), LedgerError> {
        self.write().break_glass().put_entry(&id.0, b)?;
        let pair = keys::account_pair_hash(&b.doctor, &b.patient, id);
        self.write().break_glass_by_pair().put(&pair, ())?;
        let review = keys::account_hash(&b.hospital, id);
        self.write().open_reviews().set(&review, b.review.is_none())?;
        Ok(())
    }

    /// The escrow piece `custodian` released for break-glass `id`, if it did.
    pub fn escrow_release(
        &self,
        id: &Hash,
        custodian: &AccountId,
    ) -> Result<Option<Hash>, LedgerError> {
        let key = keys::hash_account(id, custodian);
        Ok(self.tables.escrow_releases.get(key.as_slice())?.map(|v| Hash(*v.value())))
    }

    /// Records an escrow piece released to a break-glass doctor.
    pub fn put_escrow_release(
        &mut self,
        id: &Hash,
        custodian: &AccountId,
        piece: &Hash,
        owner: &str,
    ) -> Result<(), LedgerError> {
        let key = keys::hash_account(id, custodian);
        self.write().escrow_releases().put(key.as_slice(), &piece.0)?;
        self.add_blob_ref(piece, owner)
    }

    /// The network's break-glass window, milliseconds.
    pub fn emergency_window_ms(&self) -> Result<u64, LedgerError> {
        window_ms(self.tables.network.get(NET_EMERGENCY_WINDOW_MS)?.as_ref().map(|v| v.value()))
    }

    /// Sets the network's break-glass window.
    pub fn set_emergency_window_ms(&mut self, ms: u64) -> Result<(), LedgerError> {
        self.write().network().put(NET_EMERGENCY_WINDOW_MS, ms.to_be_bytes().as_slice())?;
        Ok(())
    }
}
