//! Device transactions: medical devices (IoMT) registered to a patient, measurement sessions
//! with a temporary X25519 key, per-metric thresholds set by a doctor, digests of batches of
//! normal readings, and alerts for abnormal ones.
//!
//! A device is an account of its own (role [`crate::tx::Role::Device`]): its Ed25519 key signs
//! its readings and alerts, so they are authenticated and carry the device's nonce. Reading
//! values never appear here: a batch is named by the SHA-256 of its ciphertext (HPKE-sealed to
//! the session's temporary key) in the custodian's vault, and an alert names the metric and the
//! severity, and the hash of the sealed abnormal reading. Thresholds are sealed too; only the
//! metrics they cover are plain (category-level, like a record's category).
//!
//! Every reading of a session has a sequence number (from 1). A batch covers a range of them
//! and an alert one; the ledger refuses a batch that does not start after the last committed
//! batch, and an alert for a number already alerted or already covered by a batch, so that
//! replayed readings are refused whoever resubmits them.

use serde::{Deserialize, Serialize};

use crate::{
    Hash,
    ids::AccountId,
    keys::{EncryptionKey, PublicKey},
    tx::{SealedRef, records::KeyRef},
};

/// Most readings one batch may hold.
pub const MAX_BATCH_READINGS: u32 = 20_000;
/// Largest sealed batch, in bytes: a node serves it from memory in one piece.
pub const MAX_BATCH_BYTES: u64 = 1024 * 1024;
/// Most wrapped copies of a session's secret key (the patient's, the doctor's).
pub const MAX_SESSION_KEYS: usize = 2;

/// A vital sign a device measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Heart rate, beats per minute.
    HeartRate,
    /// Peripheral oxygen saturation, percent.
    Spo2,
    /// Systolic blood pressure, mmHg.
    SystolicPressure,
    /// Diastolic blood pressure, mmHg.
    DiastolicPressure,
    /// Blood glucose, mmol/L.
    Glucose,
    /// Body temperature, degrees Celsius.
    Temperature,
}

impl Metric {
    /// Every metric, in a fixed order.
    pub const ALL: [Metric; 6] = [
        Metric::HeartRate,
        Metric::Spo2,
        Metric::SystolicPressure,
        Metric::DiastolicPressure,
        Metric::Glucose,
        Metric::Temperature,
    ];

    /// The unit its values are in.
    pub fn unit(&self) -> &'static str {
        match self {
            Metric::HeartRate => "bpm",
            Metric::Spo2 => "%",
            Metric::SystolicPressure | Metric::DiastolicPressure => "mmHg",
            Metric::Glucose => "mmol/L",
            Metric::Temperature => "°C",
        }
    }

    /// The name used on the command line and in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Metric::HeartRate => "heart_rate",
            Metric::Spo2 => "spo2",
            Metric::SystolicPressure => "systolic_pressure",
            Metric::DiastolicPressure => "diastolic_pressure",
            Metric::Glucose => "glucose",
            Metric::Temperature => "temperature",
        }
    }
}

/// What kind of device it is, which decides the metrics it may report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Heart rate and SpO2.
    PulseOximeter,
    /// Systolic and diastolic pressure, and heart rate.
    BloodPressureMonitor,
    /// Blood glucose.
    GlucoseMeter,
    /// Body temperature.
    Thermometer,
    /// A bedside or wearable monitor: every metric.
    VitalSignsMonitor,
}

impl DeviceKind {
    /// The metrics a device of this kind measures.
    pub fn metrics(&self) -> &'static [Metric] {
        match self {
            DeviceKind::PulseOximeter => &[Metric::HeartRate, Metric::Spo2],
            DeviceKind::BloodPressureMonitor => {
                &[Metric::HeartRate, Metric::SystolicPressure, Metric::DiastolicPressure]
            }
            DeviceKind::GlucoseMeter => &[Metric::Glucose],
            DeviceKind::Thermometer => &[Metric::Temperature],
            DeviceKind::VitalSignsMonitor => &Metric::ALL,
        }
    }

    /// Whether a device of this kind measures `metric`.
    pub fn measures(&self, metric: Metric) -> bool {
        self.metrics().contains(&metric)
    }
}

/// How far outside the thresholds an abnormal reading is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Outside the normal band.
    Warning,
    /// Outside the critical band.
    Critical,
}

/// Registration of a device for a patient, by the patient (or a delegate) or by a hospital.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterDevice {
    /// The device's signing key: its account id derives from it, and it signs the device's
    /// readings and alerts.
    pub key: PublicKey,
    /// The device's encryption key: the thresholds it classifies readings by are sealed to it.
    pub encryption_key: EncryptionKey,
    /// The patient the device serves.
    pub patient: AccountId,
    /// What kind of device.
    pub kind: DeviceKind,
    /// Serial number, model and manufacturer, sealed off-ledger to the patient and the
    /// registering party (a serial number would link the pseudonymous patient to a purchase).
    pub details: SealedRef,
}

/// The start of a measurement session: the public half of a temporary X25519 key pair the
/// patient's wallet derived for it, to which the device encrypts its readings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartSession {
    /// The device.
    pub device: AccountId,
    /// The session's public key.
    pub public_key: EncryptionKey,
    /// Block time from which the session no longer accepts readings, if any.
    pub expires_at_ms: Option<u64>,
    /// The responsible doctor, if the patient names one: told of alerts, and given a copy of
    /// the session's secret key.
    pub doctor: Option<AccountId>,
    /// The session's secret key wrapped to the patient, and to the doctor if one is named.
    pub keys: Vec<KeyRef>,
}

/// A doctor's thresholds for a device: the values are sealed to the device (which classifies
/// readings by them), the patient and the doctor; the ledger holds which metrics they cover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetThresholds {
    /// The device.
    pub device: AccountId,
    /// The metrics the thresholds cover.
    pub metrics: Vec<Metric>,
    /// The sealed thresholds.
    pub sealed: SealedRef,
}

/// The digest of a batch of normal readings whose ciphertext is in the vault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadingBatch {
    /// The session.
    pub session: Hash,
    /// The first sequence number the batch covers.
    pub first_seq: u64,
    /// The last sequence number it covers.
    pub last_seq: u64,
    /// How many readings it holds (numbers in the range that were alerted, or lost, are not in
    /// it).
    pub count: u32,
    /// SHA-256 of the batch's ciphertext in the vault.
    pub blob: Hash,
    /// Its length in bytes.
    pub size: u64,
}

/// An abnormal reading: raised at once, before the batch it would have been part of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The session.
    pub session: Hash,
    /// The reading's sequence number.
    pub seq: u64,
    /// Which vital sign.
    pub metric: Metric,
    /// How abnormal.
    pub severity: Severity,
    /// SHA-256 of the sealed reading in the vault (the value is not on the ledger).
    pub reading: Hash,
    /// The thresholds the device classified it by (the id of their transaction), or `None`
    /// for the device software's built-in defaults when no doctor has set any.
    pub thresholds: Option<Hash>,
}

/// A device transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceTx {
    /// Register a device for a patient.
    Register(RegisterDevice),
    /// Retire a device (the patient, a delegate, or the hospital that registered it): it is no
    /// longer registered, and everything it signs is refused.
    Retire {
        /// The device.
        device: AccountId,
    },
    /// Start a measurement session (the patient or a delegate).
    StartSession(StartSession),
    /// End a session (the patient, a delegate, or the device): later readings are refused.
    EndSession {
        /// The session (the id of the transaction that started it).
        session: Hash,
    },
    /// Set a device's thresholds (a doctor with a grant covering the patient's device data).
    SetThresholds(SetThresholds),
    /// A batch of normal readings (signed by the device).
    Readings(ReadingBatch),
    /// An abnormal reading (signed by the device).
    Alert(Alert),
}

impl DeviceTx {
    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceTx::Register(_) => "register_device",
            DeviceTx::Retire { .. } => "retire_device",
            DeviceTx::StartSession(_) => "start_device_session",
            DeviceTx::EndSession { .. } => "end_device_session",
            DeviceTx::SetThresholds(_) => "set_device_thresholds",
            DeviceTx::Readings(_) => "device_readings",
            DeviceTx::Alert(_) => "device_alert",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_measures_something_and_the_monitor_everything() {
        for kind in [
            DeviceKind::PulseOximeter,
            DeviceKind::BloodPressureMonitor,
            DeviceKind::GlucoseMeter,
            DeviceKind::Thermometer,
        ] {
            assert!(!kind.metrics().is_empty());
            assert!(kind.metrics().iter().all(|m| kind.measures(*m)));
        }
        assert!(Metric::ALL.iter().all(|m| DeviceKind::VitalSignsMonitor.measures(*m)));
        assert!(!DeviceKind::Thermometer.measures(Metric::HeartRate));
    }
}
