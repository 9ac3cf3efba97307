//! Queries over committed device state: a device, a patient's devices, a device's sessions, a
//! session and the wrapped copies of its secret key, thresholds, a session's batches and
//! alerts (paged by sequence number), and whether a vault blob belongs to a device session.

use medledger_core::{Hash, ids::AccountId};
use redb::ReadableDatabase;

use crate::{
    Ledger, LedgerError,
    state::{keys, *},
};

/// One page of a session's committed readings: batch digests and alerts, by sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceReadings {
    /// Batches whose first sequence number is after the cursor, in order.
    pub batches: Vec<BatchEntry>,
    /// Alerts after the cursor up to the end of the last batch returned (to the end of the
    /// session on the last page), in order.
    pub alerts: Vec<AlertEntry>,
    /// The cursor for the next page, if there may be one.
    pub next_after: Option<u64>,
}

/// Most alerts returned in one page.
const MAX_ALERTS_PER_PAGE: usize = 10_000;

impl Ledger {
    /// A device.
    pub fn device(&self, id: &AccountId) -> Result<Option<DeviceEntry>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(DEVICES)?;
        let v = table.get(&id.0)?;
        v.map(|v| decode_entry("device", v.value())).transpose()
    }

    /// Every device registered for `patient` (retired ones too).
    pub fn devices_of_patient(
        &self,
        patient: &AccountId,
    ) -> Result<Vec<(AccountId, DeviceEntry)>, LedgerError> {
        let read = self.db.begin_read()?;
        let index = read.open_table(DEVICES_BY_PATIENT)?;
        let devices = read.open_table(DEVICES)?;
        let lo = keys::account_pair(patient, &AccountId([0; 20]));
        let hi = keys::account_pair(patient, &AccountId([0xff; 20]));
        let mut out = Vec::new();
        for row in index.range::<&[u8; 40]>(&lo..=&hi)? {
            let (k, _) = row?;
            let mut id = [0u8; 20];
            id.copy_from_slice(&k.value()[20..]);
            let v = devices.get(&id)?.ok_or_else(|| {
                LedgerError::Corrupt(format!("indexed device {} missing", AccountId(id)))
            })?;
            out.push((AccountId(id), decode_entry("device", v.value())?));
        }
        Ok(out)
    }

    /// A measurement session.
    pub fn device_session(&self, id: &Hash) -> Result<Option<SessionEntry>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(DEVICE_SESSIONS)?;
        let v = table.get(&id.0)?;
        v.map(|v| decode_entry("device session", v.value())).transpose()
    }

    /// A device's sessions, oldest first.
    pub fn sessions_of_device(
        &self,
        device: &AccountId,
    ) -> Result<Vec<(Hash, SessionEntry)>, LedgerError> {
        let read = self.db.begin_read()?;
        let index = read.open_table(SESSIONS_BY_DEVICE)?;
        let sessions = read.open_table(DEVICE_SESSIONS)?;
        let lo = keys::account_seq_hash(device, 0, &Hash([0; 32]));
        let hi = keys::account_seq_hash(device, u64::MAX, &Hash([0xff; 32]));
        let mut out = Vec::new();
        for row in index.range::<&[u8; 60]>(&lo..=&hi)? {
            let (k, _) = row?;
            let mut id = [0u8; 32];
            id.copy_from_slice(&k.value()[28..]);
            let v = sessions.get(&id)?.ok_or_else(|| {
                LedgerError::Corrupt(format!("indexed session {} missing", Hash(id)))
            })?;
            out.push((Hash(id), decode_entry("device session", v.value())?));
        }
        Ok(out)
    }

    /// The blob holding `session`'s secret key wrapped to `recipient`, if there is one.
    pub fn session_key(
        &self,
        session: &Hash,
        recipient: &AccountId,
    ) -> Result<Option<Hash>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(SESSION_KEYS)?;
        Ok(table.get(&keys::hash_account(session, recipient))?.map(|v| Hash(*v.value())))
    }

    /// Thresholds by id.
    pub fn thresholds(&self, id: &Hash) -> Result<Option<ThresholdsEntry>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(DEVICE_THRESHOLDS)?;
        let v = table.get(&id.0)?;
        v.map(|v| decode_entry("thresholds", v.value())).transpose()
    }

    /// A page of `session`'s committed batches (at most `limit`, whose first sequence number is
    /// after `after`) and the alerts among and before them.
    pub fn session_readings(
        &self,
        session: &Hash,
        after: u64,
        limit: usize,
    ) -> Result<DeviceReadings, LedgerError> {
        let limit = limit.max(1);
        let read = self.db.begin_read()?;
        let batches_table = read.open_table(DEVICE_BATCHES)?;
        let alerts_table = read.open_table(DEVICE_ALERTS)?;
        let mut batches: Vec<BatchEntry> = Vec::new();
        if after < u64::MAX {
            let lo = keys::hash_seq(session, after + 1);
            let hi = keys::hash_seq(session, u64::MAX);
            for row in batches_table.range::<&[u8; 40]>(&lo..=&hi)? {
                if batches.len() >= limit {
                    break;
                }
                batches.push(decode_entry("batch", row?.1.value())?);
            }
        }
        let full = batches.len() >= limit;
        let boundary =
            if full { batches.last().map_or(u64::MAX, |b| b.last_seq) } else { u64::MAX };
        let mut alerts: Vec<AlertEntry> = Vec::new();
        if after < u64::MAX {
            let lo = keys::hash_seq(session, after + 1);
            let hi = keys::hash_seq(session, boundary);
            for row in alerts_table.range::<&[u8; 40]>(&lo..=&hi)? {
                if alerts.len() >= MAX_ALERTS_PER_PAGE {
                    break;
                }
                alerts.push(decode_entry("alert", row?.1.value())?);
            }
        }
        let next_after = match alerts.last() {
            // Too many alerts for one page: stop at the last one returned.
            Some(last) if alerts.len() >= MAX_ALERTS_PER_PAGE => {
                let cut = last.seq;
                batches.retain(|b| b.first_seq <= cut);
                Some(cut)
            }
            _ if full => Some(boundary),
            _ => None,
        };
        Ok(DeviceReadings { batches, alerts, next_after })
    }

    /// The session a vault blob belongs to (a batch, a sealed alert reading, a wrapped session
    /// key), if the ledger references it.
    pub fn device_blob(&self, blob: &Hash) -> Result<Option<Hash>, LedgerError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(DEVICE_BLOBS)?;
        Ok(table.get(&blob.0)?.map(|v| Hash(*v.value())))
    }
}
