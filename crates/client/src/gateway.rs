//! A device gateway: what runs with the device (on it, or on the patient's phone or hub) and
//! turns its measurements into ledger transactions signed with the device's key.
//!
//! Each measurement gets the session's next sequence number and is classified against the
//! doctor's thresholds (sealed to the device; the built-in defaults for metrics they do not
//! cover, see [`crate::devices`] for the trust model). A normal reading joins the pending
//! batch; [`Gateway::flush`] seals the batch to the session key, and its digest goes to the
//! ledger in one transaction. An abnormal reading is sealed alone and its alert sent at once,
//! without waiting for the batch.
//!
//! **Nothing signed is lost.** Every transaction is written to the [`outbox`] (with the blob
//! it names, fsynced) before it is sent, and removed only when the ledger has it. Entries are
//! delivered strictly in nonce order, one at a time, so the ledger sees them in the order they
//! were made. After a crash (or while the node is unreachable) the entries wait; the next
//! [`Gateway::open`] delivers them first. An entry that may have been committed before the
//! crash is looked up by its hash rather than assumed lost: the ledger refuses a second copy
//! (as a stale nonce or a duplicate) and its sequence numbers as replayed, so a resubmitted
//! alert lands exactly once. Readings still pending in memory (not yet batched) are lost in a
//! crash; their numbers stay unused on the ledger (a visible gap).

pub mod outbox;

use std::{path::Path, sync::Arc};

use medledger_api::DeviceView;
use medledger_core::{
    Hash,
    block::{Outcome, Receipt, Refusal},
    ids::AccountId,
    keys::EncryptionKey,
    tx::{
        DeviceTx, SignedTransaction, TxBody,
        devices::{Alert, DeviceKind, MAX_BATCH_BYTES, Metric, ReadingBatch, Severity},
    },
};

use crate::{
    Identity, NodeClient,
    devices::{Reading, ThresholdSet, open_thresholds, seal_readings},
    error::{ClientError, DeviceError, HttpError},
};
pub use outbox::{EntryKind, Outbox, OutboxEntry};

/// Most readings the gateway puts in one batch (its sealed form stays well under the
/// ledger's size limit).
pub const MAX_GATEWAY_BATCH: usize = 8192;

/// A point in the alert path where a crash test may stop the gateway (see
/// [`Gateway::set_fault_hook`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    /// The alert is durable in the outbox and not yet sent.
    AlertQueued {
        /// Its sequence number.
        seq: u64,
    },
    /// The ledger committed the alert and the outbox still holds it.
    AlertCommitted {
        /// Its sequence number.
        seq: u64,
    },
}

/// Called at each [`FaultPoint`]; returning true stops the gateway there for good (it awaits
/// forever), so that a test can kill the process at exactly that point.
pub type FaultHook = Arc<dyn Fn(FaultPoint) -> bool + Send + Sync>;

/// A transaction the ledger now has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// What it was.
    pub kind: EntryKind,
    /// Its receipt.
    pub receipt: Receipt,
    /// Whether it had been committed already (sent before a crash) and was found by its hash.
    pub already: bool,
    /// When its transaction was submitted (after its blob was in the vault).
    pub submitted_at: std::time::Instant,
}

/// What a call that sends did: the transactions delivered, and whether delivery stopped on a
/// passing failure (the node unreachable or busy), in which case the rest stay queued in the
/// outbox for the next call.
#[derive(Debug, Default)]
pub struct Progress {
    /// Delivered, in order.
    pub delivered: Vec<Delivery>,
    /// The failure that stopped delivery, if any.
    pub stalled: Option<ClientError>,
}

/// Whether a failure may pass by itself (retry later) rather than being final.
pub fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::Http(HttpError::Unreachable { .. }) => true,
        ClientError::Http(HttpError::Refused { status, outcome: None, .. }) => {
            *status >= 500 || *status == 429
        }
        _ => false,
    }
}

/// A device gateway for one session. See the module doc.
pub struct Gateway {
    client: NodeClient,
    identity: Identity,
    device: AccountId,
    chain_id: String,
    kind: DeviceKind,
    nonce: u64,
    session: Hash,
    session_key: EncryptionKey,
    thresholds: Option<Hash>,
    doctor_set: ThresholdSet,
    defaults: ThresholdSet,
    outbox: Outbox,
    queued: Vec<(u64, OutboxEntry)>,
    pending: Vec<Reading>,
    next_seq: u64,
    fault: Option<FaultHook>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("device", &self.device)
            .field("session", &self.session)
            .field("nonce", &self.nonce)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

fn gateway_error(reason: impl Into<String>) -> ClientError {
    ClientError::Device(DeviceError::Gateway { reason: reason.into() })
}

impl Gateway {
    /// Opens the gateway of `device` (whose keys `identity` holds; `client` signs as the
    /// device) on `session`, or on the device's open session, keeping its outbox in
    /// `state_dir`. Delivers what the outbox holds first, and continues the session's numbering
    /// after the last number committed or queued. Readings are sealed only to the session key
    /// the session's start put on the ledger, proven under `anchor`.
    pub async fn open(
        client: NodeClient,
        identity: Identity,
        device: AccountId,
        anchor: &crate::proof::TrustAnchor,
        session: Option<Hash>,
        state_dir: &Path,
    ) -> Result<(Self, Progress), ClientError> {
        let chain_id = anchor.chain_id.clone();
        let view = client.device(&device).await?.ok_or_else(|| {
            gateway_error(format!("{device} is not a registered device (or not visible to it)"))
        })?;
        if let Some(h) = view.retired_at {
            return Err(gateway_error(format!("device {device} was retired at block {h}")));
        }
        let session = session.or(view.session).ok_or_else(|| {
            gateway_error(format!(
                "device {device} has no open session: the patient starts one (medledger device session start)"
            ))
        })?;
        let s = client
            .device_session(&session)
            .await?
            .ok_or_else(|| gateway_error(format!("no session {session}")))?;
        if s.device != device {
            return Err(gateway_error(format!("session {session} is not device {device}'s")));
        }
        let session_key = client.proven_session_key(&session, &device, anchor).await?;
        let outbox = Outbox::open(&state_dir.join(session.to_hex()))?;
        let queued = outbox.entries()?;
        let nonce = queued.iter().map(|(n, _)| *n).max().unwrap_or(0).max(view.nonce);
        let next_seq =
            queued.iter().map(|(_, e)| e.kind.last_seq()).max().unwrap_or(0).max(s.last_seq) + 1;
        let mut g = Gateway {
            client,
            identity,
            device,
            chain_id,
            kind: view.kind,
            nonce,
            session,
            session_key,
            thresholds: None,
            doctor_set: ThresholdSet { thresholds: Vec::new() },
            defaults: ThresholdSet::defaults_for(view.kind),
            outbox,
            queued,
            pending: Vec::new(),
            next_seq,
            fault: None,
        };
        g.load_thresholds(&view).await?;
        if !s.open && g.queued.is_empty() {
            return Err(gateway_error(format!(
                "session {session} takes no more readings (ended or expired)"
            )));
        }
        let progress = g.drain().await?;
        Ok((g, progress))
    }

    /// Installs a crash-test hook (see [`FaultHook`]).
    pub fn set_fault_hook(&mut self, hook: FaultHook) {
        self.fault = Some(hook);
    }

    /// The device.
    pub fn device(&self) -> AccountId {
        self.device
    }

    /// The session.
    pub fn session(&self) -> Hash {
        self.session
    }

    /// The device's kind.
    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// The doctor's thresholds in force (their id), if any.
    pub fn thresholds(&self) -> Option<Hash> {
        self.thresholds
    }

    /// The sequence number the next reading gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Readings waiting for the next batch.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Transactions signed and not yet on the ledger.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    async fn load_thresholds(&mut self, view: &DeviceView) -> Result<(), ClientError> {
        match &view.thresholds {
            Some(t) if Some(t.id) != self.thresholds => {
                let sealed = self.client.get_blob(&t.sealed.blob).await?;
                self.doctor_set =
                    open_thresholds(&sealed, &self.identity.decryption, &t.sealed.commitment)?;
                self.thresholds = Some(t.id);
            }
            Some(_) => {}
            None => {
                self.doctor_set = ThresholdSet { thresholds: Vec::new() };
                self.thresholds = None;
            }
        }
        Ok(())
    }

    /// Fetches the device's thresholds again; true if they changed.
    pub async fn refresh_thresholds(&mut self) -> Result<bool, ClientError> {
        let before = self.thresholds;
        let view =
            self.client.device(&self.device).await?.ok_or_else(|| {
                gateway_error(format!("device {} is no longer visible", self.device))
            })?;
        self.load_thresholds(&view).await?;
        Ok(self.thresholds != before)
    }

    /// Whether a value is abnormal, and by which thresholds (`None`: the built-in defaults).
    pub fn classify(&self, metric: Metric, value: f64) -> Option<(Severity, Option<Hash>)> {
        if self.doctor_set.metrics().contains(&metric) {
            return self.doctor_set.classify(metric, value).map(|s| (s, self.thresholds));
        }
        self.defaults.classify(metric, value).map(|s| (s, None))
    }

    /// Numbers a measurement taken at `time_ms`.
    pub fn reading(&mut self, metric: Metric, value: f64, time_ms: u64) -> Reading {
        let seq = self.next_seq;
        self.next_seq += 1;
        Reading { seq, time_ms, metric, value }
    }

    /// Takes one reading: a normal one joins the pending batch (and a full batch is flushed);
    /// an abnormal one is sealed, its alert made durable in the outbox and sent at once.
    /// Returns its severity if abnormal, and what was delivered.
    pub async fn record(
        &mut self,
        reading: Reading,
    ) -> Result<(Option<Severity>, Progress), ClientError> {
        if !self.kind.measures(reading.metric) {
            return Err(gateway_error(format!(
                "a {:?} does not measure {}",
                self.kind,
                reading.metric.name()
            )));
        }
        let Some((severity, thresholds)) = self.classify(reading.metric, reading.value) else {
            self.pending.push(reading);
            if self.pending.len() >= MAX_GATEWAY_BATCH {
                return Ok((None, self.flush().await?));
            }
            return Ok((None, Progress::default()));
        };
        let blob = seal_readings(&self.session_key, &self.session, &[reading])?;
        let alert = Alert {
            session: self.session,
            seq: reading.seq,
            metric: reading.metric,
            severity,
            reading: Hash::of(&blob),
            thresholds,
        };
        let kind = EntryKind::Alert { seq: reading.seq, metric: reading.metric, severity };
        self.queue(kind, DeviceTx::Alert(alert), blob)?;
        if let Some(hook) = &self.fault
            && hook(FaultPoint::AlertQueued { seq: reading.seq })
        {
            std::future::pending::<()>().await;
        }
        Ok((Some(severity), self.drain().await?))
    }

    /// Seals the pending readings into a batch, queues its digest, and delivers what is
    /// queued.
    pub async fn flush(&mut self) -> Result<Progress, ClientError> {
        if !self.pending.is_empty() {
            let readings = std::mem::take(&mut self.pending);
            let blob = seal_readings(&self.session_key, &self.session, &readings)?;
            if blob.len() as u64 > MAX_BATCH_BYTES {
                return Err(gateway_error("a sealed batch exceeds the ledger's size limit"));
            }
            let (first_seq, last_seq) = (readings[0].seq, readings[readings.len() - 1].seq);
            let count = readings.len() as u32;
            let batch = ReadingBatch {
                session: self.session,
                first_seq,
                last_seq,
                count,
                blob: Hash::of(&blob),
                size: blob.len() as u64,
            };
            self.queue(
                EntryKind::Batch { first_seq, last_seq, count },
                DeviceTx::Readings(batch),
                blob,
            )?;
        }
        self.drain().await
    }

    /// Signs `body` with the next nonce and writes it durably to the outbox.
    fn queue(
        &mut self,
        kind: EntryKind,
        body: DeviceTx,
        blob: Vec<u8>,
    ) -> Result<u64, ClientError> {
        self.nonce += 1;
        let tx = crate::tx::build(
            &self.identity,
            self.device,
            &self.chain_id,
            self.nonce,
            TxBody::Devices(body),
        );
        let entry = OutboxEntry { kind, tx: tx.encode(), blob };
        self.outbox.put(self.nonce, &entry)?;
        self.queued.push((self.nonce, entry));
        Ok(self.nonce)
    }

    /// Delivers the queued transactions in order. Stops at a passing failure (reported in
    /// [`Progress::stalled`]); fails on a final one (the ledger refused an entry, which is then
    /// dropped from the outbox).
    pub async fn drain(&mut self) -> Result<Progress, ClientError> {
        let mut progress = Progress::default();
        while let Some((nonce, entry)) = self.queued.first().cloned() {
            match self.deliver(&entry).await {
                Ok(delivery) => {
                    if let (EntryKind::Alert { seq, .. }, Some(hook)) = (&entry.kind, &self.fault)
                        && hook(FaultPoint::AlertCommitted { seq: *seq })
                    {
                        std::future::pending::<()>().await;
                    }
                    self.outbox.remove(nonce)?;
                    self.queued.remove(0);
                    progress.delivered.push(delivery);
                }
                Err(e) if is_transient(&e) => {
                    progress.stalled = Some(e);
                    return Ok(progress);
                }
                Err(e) => {
                    self.outbox.remove(nonce)?;
                    self.queued.remove(0);
                    return Err(gateway_error(format!(
                        "{} was not accepted and is dropped: {e}",
                        describe(&entry.kind)
                    )));
                }
            }
        }
        Ok(progress)
    }

    /// Uploads the entry's blob (idempotent: the vault names it by its hash), submits its
    /// transaction, and if the ledger says the nonce is used, finds out whether by this very
    /// transaction (sent before a crash).
    async fn deliver(&self, entry: &OutboxEntry) -> Result<Delivery, ClientError> {
        let tx = SignedTransaction::decode(&entry.tx)
            .map_err(|e| gateway_error(format!("an outbox transaction does not decode: {e}")))?;
        let hash = Hash::of(&entry.blob);
        self.client.upload(reqwest::Body::from(entry.blob.clone()), Some(&hash)).await?;
        let submitted_at = std::time::Instant::now();
        match self.client.submit(&tx).await {
            Ok(receipt) => {
                Ok(Delivery { kind: entry.kind.clone(), receipt, already: false, submitted_at })
            }
            Err(ClientError::Http(HttpError::Refused {
                outcome:
                    Some(Outcome::Refused {
                        reason: Refusal::StaleNonce { .. } | Refusal::Duplicate { .. },
                    }),
                ..
            })) => {
                let found = self.client.transaction(&tx.hash()).await.map_err(|e| match e {
                    ClientError::Http(HttpError::Refused { status: 404, .. }) => gateway_error(format!(
                        "nonce {} of device {} was used by another transaction: this outbox is out of step with the ledger",
                        tx.tx.nonce, self.device
                    )),
                    other => other,
                })?;
                match found.receipt.outcome {
                    Outcome::Applied { .. } => Ok(Delivery {
                        kind: entry.kind.clone(),
                        receipt: found.receipt,
                        already: true,
                        submitted_at,
                    }),
                    Outcome::Refused { reason } => Err(gateway_error(format!("refused: {reason}"))),
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// A short description of an outbox entry, for messages.
pub fn describe(kind: &EntryKind) -> String {
    match kind {
        EntryKind::Batch { first_seq, last_seq, count } => {
            format!("the batch of {count} readings {first_seq}..={last_seq}")
        }
        EntryKind::Alert { seq, metric, severity } => {
            format!("the {severity:?} alert for reading {seq} ({})", metric.name())
        }
    }
}
