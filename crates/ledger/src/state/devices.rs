//! Devices, measurement sessions, thresholds, batches and alerts (stored entries), and their
//! accessors, with the patient and device indexes and the device blobs the vault must keep.

use medledger_core::{
    Hash,
    ids::AccountId,
    keys::EncryptionKey,
    tx::{
        SealedRef,
        devices::{DeviceKind, Metric, Severity},
    },
};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{StateTxn, get_entry, keys};
use crate::LedgerError;

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEntry {
    /// The patient it serves.
    pub patient: AccountId,
    /// What kind of device.
    pub kind: DeviceKind,
    /// Sealed serial number, model and manufacturer.
    pub details: SealedRef,
    /// Who registered it: the patient, a delegate, or a hospital.
    pub registered_by: AccountId,
    /// Height of registration.
    pub registered_at: u64,
    /// Height of retirement; from then on nothing it signs is applied.
    pub retired_at: Option<u64>,
    /// The thresholds in force (the id of the transaction that set them).
    pub thresholds: Option<Hash>,
    /// The session started last and not ended (it may have expired).
    pub session: Option<Hash>,
}

/// A measurement session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEntry {
    /// The device.
    pub device: AccountId,
    /// The patient.
    pub patient: AccountId,
    /// The session's temporary public key: readings are sealed to it.
    pub public_key: EncryptionKey,
    /// Who started it (the patient or a delegate).
    pub started_by: AccountId,
    /// Height of the start.
    pub started_at: u64,
    /// Block time of the start.
    pub started_time_ms: u64,
    /// Block time from which it takes no readings.
    pub expires_at_ms: Option<u64>,
    /// The responsible doctor, if one was named.
    pub doctor: Option<AccountId>,
    /// Height of its end.
    pub ended_at: Option<u64>,
    /// The last sequence number of the last committed batch (0 before the first).
    pub batch_high: u64,
    /// The highest alerted sequence number (0 before the first alert).
    pub alert_high: u64,
    /// Readings committed in batches.
    pub readings: u64,
    /// Batches committed.
    pub batches: u64,
    /// Alerts committed.
    pub alerts: u64,
}

impl SessionEntry {
    /// Why the session takes no readings at a block of `time_ms`, or `None` if it does.
    pub fn closed_reason(&self, time_ms: u64) -> Option<String> {
        if let Some(h) = self.ended_at {
            return Some(format!("it ended at block {h}"));
        }
        match self.expires_at_ms {
            Some(e) if time_ms >= e => {
                Some(format!("it expired at {e} ms (block time {time_ms} ms)"))
            }
            _ => None,
        }
    }

    /// The highest sequence number committed (batch or alert).
    pub fn last_seq(&self) -> u64 {
        self.batch_high.max(self.alert_high)
    }
}

/// A doctor's thresholds for a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdsEntry {
    /// The device.
    pub device: AccountId,
    /// The doctor who set them.
    pub doctor: AccountId,
    /// The metrics they cover.
    pub metrics: Vec<Metric>,
    /// The sealed values (sealed to the device, the patient and the doctor).
    pub sealed: SealedRef,
    /// Height at which they were set.
    pub set_at: u64,
    /// Block time at which they were set.
    pub set_time_ms: u64,
}

/// A committed batch of normal readings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchEntry {
    /// First sequence number covered.
    pub first_seq: u64,
    /// Last sequence number covered.
    pub last_seq: u64,
    /// Readings it holds.
    pub count: u32,
    /// SHA-256 of the ciphertext in the vault.
    pub blob: Hash,
    /// Its length.
    pub size: u64,
    /// The digest transaction.
    pub tx: Hash,
    /// Height.
    pub height: u64,
    /// Block time.
    pub time_ms: u64,
}

/// A committed alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEntry {
    /// The reading's sequence number.
    pub seq: u64,
    /// Which vital sign.
    pub metric: Metric,
    /// How abnormal.
    pub severity: Severity,
    /// SHA-256 of the sealed reading in the vault.
    pub reading: Hash,
    /// The thresholds it was classified by (`None`: the device's built-in defaults).
    pub thresholds: Option<Hash>,
    /// The alert transaction.
    pub tx: Hash,
    /// Height.
    pub height: u64,
    /// Block time.
    pub time_ms: u64,
    /// Its audit event.
    pub event: u64,
}

impl StateTxn<'_, '_> {
    /// Reads a device.
    pub fn device(&self, id: &AccountId) -> Result<Option<DeviceEntry>, LedgerError> {
        get_entry(&self.tables.devices, &id.0, "device")
    }

    /// Writes a device (and, when new, its patient index entry).
    pub fn put_device(&mut self, id: &AccountId, d: &DeviceEntry) -> Result<(), LedgerError> {
        let old = match self.write().devices().put_entry(&id.0, d)? {
            Some(bytes) => {
                let old: DeviceEntry = super::decode_entry("device", &bytes)?;
                super::blobs::of_device(id, &old).to_vec()
            }
            None => {
                self.write().devices_by_patient().put(&keys::account_pair(&d.patient, id), ())?;
                vec![]
            }
        };
        self.index_registration(&old, &super::blobs::of_device(id, d))
    }

    /// Reads a session.
    pub fn device_session(&self, id: &Hash) -> Result<Option<SessionEntry>, LedgerError> {
        get_entry(&self.tables.device_sessions, &id.0, "device session")
    }

    /// Writes a session (and, when new, its device index entry).
    pub fn put_device_session(&mut self, id: &Hash, s: &SessionEntry) -> Result<(), LedgerError> {
        if self.write().device_sessions().put_entry(&id.0, s)?.is_none() {
            let key = keys::account_seq_hash(&s.device, s.started_at, id);
            self.write().sessions_by_device().put(&key, ())?;
        }
        Ok(())
    }

    /// Records that `recipient` can unwrap `session`'s secret key from `blob`.
    pub fn put_session_key(
        &mut self,
        session: &Hash,
        recipient: &AccountId,
        blob: &Hash,
    ) -> Result<(), LedgerError> {
        self.write().session_keys().put(&keys::hash_account(session, recipient), &blob.0)?;
        self.add_device_blob(blob, session)
    }

    /// Reads thresholds.
    pub fn thresholds(&self, id: &Hash) -> Result<Option<ThresholdsEntry>, LedgerError> {
        get_entry(&self.tables.device_thresholds, &id.0, "thresholds")
    }

    /// Writes thresholds.
    pub fn put_thresholds(&mut self, id: &Hash, t: &ThresholdsEntry) -> Result<(), LedgerError> {
        let old = match self.write().device_thresholds().put_entry(&id.0, t)? {
            Some(bytes) => {
                let old: ThresholdsEntry = super::decode_entry("thresholds", &bytes)?;
                vec![(old.sealed.blob, super::blobs::owner::thresholds(id))]
            }
            None => vec![],
        };
        self.index_registration(&old, &[(t.sealed.blob, super::blobs::owner::thresholds(id))])
    }

    /// Writes a batch of a session.
    pub fn put_batch(&mut self, session: &Hash, b: &BatchEntry) -> Result<(), LedgerError> {
        self.write().device_batches().put_entry(&keys::hash_seq(session, b.first_seq), b)?;
        self.add_device_blob(&b.blob, session)
    }

    /// Reads the alert of `session` at `seq`, if there is one.
    pub fn alert(&self, session: &Hash, seq: u64) -> Result<Option<AlertEntry>, LedgerError> {
        get_entry(&self.tables.device_alerts, &keys::hash_seq(session, seq), "alert")
    }

    /// How many alerts `session` has with sequence numbers in `first..=last`.
    pub fn alerts_in(&self, session: &Hash, first: u64, last: u64) -> Result<u64, LedgerError> {
        let lo = keys::hash_seq(session, first);
        let hi = keys::hash_seq(session, last);
        let mut n = 0;
        for row in self.tables.device_alerts.range::<&[u8; 40]>(&lo..=&hi)? {
            row?;
            n += 1;
        }
        Ok(n)
    }

    /// Writes an alert of a session.
    pub fn put_alert(&mut self, session: &Hash, a: &AlertEntry) -> Result<(), LedgerError> {
        self.write().device_alerts().put_entry(&keys::hash_seq(session, a.seq), a)?;
        self.add_device_blob(&a.reading, session)
    }

    /// Marks `blob` as referenced by `session`.
    fn add_device_blob(&mut self, blob: &Hash, session: &Hash) -> Result<(), LedgerError> {
        self.write().device_blobs().put(&blob.0, &session.0)?;
        Ok(())
    }
}
