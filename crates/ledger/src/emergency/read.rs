//! Queries over committed emergency state.

use medledger_core::{Hash, ids::AccountId, tx::emergency::EmergencyProfile};
use redb::ReadableDatabase;

use crate::{
    Ledger, LedgerError,
    state::{BreakGlassEntry, keys, *},
};

/// A break-glass awaiting its hospital's review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReview {
    /// Its id.
    pub id: Hash,
    /// The declaration.
    pub entry: BreakGlassEntry,
}

impl Ledger {
    /// A patient's emergency profile.
    pub fn emergency_profile(
        &self,
        patient: &AccountId,
    ) -> Result<Option<EmergencyProfile>, LedgerError> {
        let read = self.db.begin_read()?;
        let t = read.open_table(EMERGENCY_PROFILES)?;
        let v = t.get(&patient.0)?;
        v.map(|v| decode_entry("emergency profile", v.value())).transpose()
    }

    /// The transaction that set a patient's emergency profile now in force.
    pub fn emergency_profile_tx(&self, patient: &AccountId) -> Result<Option<Hash>, LedgerError> {
        let read = self.db.begin_read()?;
        let t = read.open_table(EMERGENCY_PROFILE_TXS)?;
        Ok(t.get(&patient.0)?.map(|v| Hash(*v.value())))
    }

    /// A break-glass declaration.
    pub fn break_glass(&self, id: &Hash) -> Result<Option<BreakGlassEntry>, LedgerError> {
        let read = self.db.begin_read()?;
        let t = read.open_table(BREAK_GLASS)?;
        let v = t.get(&id.0)?;
        v.map(|v| decode_entry("break-glass", v.value())).transpose()
    }

    /// The break-glass declarations of `hospital`'s doctors still awaiting its review.
    pub fn open_reviews(&self, hospital: &AccountId) -> Result<Vec<OpenReview>, LedgerError> {
        let read = self.db.begin_read()?;
        let index = read.open_table(OPEN_REVIEWS)?;
        let table = read.open_table(BREAK_GLASS)?;
        let lo = keys::account_hash(hospital, &Hash([0; 32]));
        let hi = keys::account_hash(hospital, &Hash([0xff; 32]));
        let mut out = Vec::new();
        for row in index.range::<&[u8; 52]>(&lo..=&hi)? {
            let (k, _) = row?;
            let mut id = [0u8; 32];
            id.copy_from_slice(&k.value()[20..]);
            let v = table.get(&id)?.ok_or_else(|| {
                LedgerError::Corrupt("an open review names no break-glass".into())
            })?;
            out.push(OpenReview { id: Hash(id), entry: decode_entry("break-glass", v.value())? });
        }
        Ok(out)
    }

    /// The escrow pieces released for a break-glass, by custodian.
    pub fn escrow_releases(&self, id: &Hash) -> Result<Vec<(AccountId, Hash)>, LedgerError> {
        let read = self.db.begin_read()?;
        let t = read.open_table(ESCROW_RELEASES)?;
        let lo = id.0.to_vec();
        let hi = [&id.0[..], &[0xff; 21][..]].concat();
        let mut out = Vec::new();
        for row in t.range(lo.as_slice()..hi.as_slice())? {
            let (k, v) = row?;
            let mut c = [0u8; 20];
            c.copy_from_slice(&k.value()[32..]);
            out.push((AccountId(c), Hash(*v.value())));
        }
        Ok(out)
    }

    /// The network's break-glass window, milliseconds.
    pub fn emergency_window_ms(&self) -> Result<u64, LedgerError> {
        let read = self.db.begin_read()?;
        let t = read.open_table(NETWORK)?;
        window_ms(t.get(NET_EMERGENCY_WINDOW_MS)?.as_ref().map(|v| v.value()))
    }
}
