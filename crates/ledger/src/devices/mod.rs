//! Devices: medical devices registered to a patient, measurement sessions, thresholds, batches
//! of normal readings and alerts (one file per transaction kind; queries in `read.rs`).
//!
//! **Registration.** A device is an account of its own (role `Device`), created from the
//! signing key it holds. The patient or a delegate may register a device for the patient. A
//! hospital may register one for a patient who was registered at its desk, or for any patient
//! who granted it treatment access covering device data (a grant in force at the block, found
//! by `authorize`); any other hospital is refused, as is anyone else (doctors register no
//! devices). The device's account has the patient as its authority, so the patient can revoke
//! its key. Retirement (by the patient, a delegate or the registering hospital) ends the open
//! session; a retired device's readings and alerts are refused.
//!
//! **What a device may sign.** Only device transactions and its own key rotation (checked in
//! `apply`), and of those only readings, alerts and the end of its own sessions.
//!
//! **Sessions.** The patient (or a delegate) starts a session on a device with the public half
//! of a temporary X25519 key that the patient's wallet derived for it, optionally an expiry
//! (block time) and a responsible doctor. The secret half is wrapped to the patient, and to the
//! doctor when one is named (both wrapped copies are required then, and no one else's is
//! accepted): the wallet can recover it, and the doctor can read the session. A device has at
//! most one open session. The patient, a delegate or the device ends it; a session that ended
//! or expired takes no more readings.
//!
//! **Sequence numbers and replays.** Each reading of a session carries a number from 1. A batch
//! digest covers `first_seq..=last_seq` with `count` readings in it; an alert covers one
//! number. The ledger keeps the end of the last committed batch (`batch_high`) and every
//! alerted number: a batch must start after `batch_high`; an alert's number must be above
//! `batch_high` and not alerted before; and a batch's count plus the alerts inside its range
//! cannot exceed the range. So a replayed batch or alert, re-signed or not, is refused, while a
//! gateway may raise an alert at once and commit the batch around it later. Numbers that are
//! never committed (readings lost in a crash of the gateway before they were batched) are
//! gaps, visible as such.
//!
//! **Thresholds.** A doctor sets a device's thresholds if a grant from the patient covering
//! device data for treatment is in force (being the patient's hospital's doctor is not
//! enough: device data is the patient's stream, shared by consent). Only the metrics covered
//! are plain; the values are sealed to the device, the patient and the doctor. The device's
//! gateway classifies readings by them (see `medledger_client::devices` for the trust model).
//!
//! **Alerts** name the session, the number, the metric, the severity, the sealed reading's
//! hash and the thresholds used (which must be this device's and cover the metric). The alert's
//! audit event concerns the patient, the session's doctor, the author of the thresholds, their
//! hospitals and the hospital that registered the device: each sees it on its event stream.
//! Batches are not audited (they are in the log, and listed per session); reading their content
//! goes through an audited access like any record.

mod alert;
mod read;
mod readings;
mod register;
mod session;
mod thresholds;

pub use read::DeviceReadings;

use medledger_core::{block::Refusal, ids::AccountId, tx::DeviceTx};

use crate::{
    LedgerError,
    handler::HandlerResult,
    state::{Account, DeviceEntry, StateTxn},
};

/// Applies one device transaction for an authenticated signer.
pub(crate) fn apply(
    state: &mut StateTxn<'_, '_>,
    signer: &AccountId,
    signer_account: &Account,
    tx: &DeviceTx,
) -> HandlerResult {
    match tx {
        DeviceTx::Register(r) => register::register(state, signer, signer_account, r),
        DeviceTx::Retire { device } => register::retire(state, signer, device),
        DeviceTx::StartSession(s) => session::start(state, signer, s),
        DeviceTx::EndSession { session } => session::end(state, signer, session),
        DeviceTx::SetThresholds(t) => thresholds::set(state, signer, signer_account, t),
        DeviceTx::Readings(b) => readings::apply(state, signer, b),
        DeviceTx::Alert(a) => alert::apply(state, signer, a),
    }
}

/// The device named `id`, or a refusal saying it is not registered.
pub(crate) fn existing(
    state: &StateTxn<'_, '_>,
    id: &AccountId,
) -> Result<Result<DeviceEntry, Refusal>, LedgerError> {
    Ok(state.device(id)?.ok_or_else(|| Refusal::NotFound { what: format!("device {id}") }))
}

/// Refuses a retired device.
pub(crate) fn require_active(id: &AccountId, d: &DeviceEntry) -> Result<(), Refusal> {
    match d.retired_at {
        Some(h) => Err(Refusal::Unauthorised {
            reason: format!("device {id} was retired at block {h}: it is no longer registered"),
        }),
        None => Ok(()),
    }
}

/// Whether `signer` is the device's patient or a delegate of theirs.
pub(crate) fn is_patient_or_delegate(
    state: &StateTxn<'_, '_>,
    signer: &AccountId,
    d: &DeviceEntry,
) -> Result<bool, LedgerError> {
    Ok(*signer == d.patient || state.is_delegate(&d.patient, signer)?)
}
