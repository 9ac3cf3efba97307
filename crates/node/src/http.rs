//! The HTTP API (axum). Transaction submission admits a transaction (decode with limits,
//! strict signature check, envelope precheck against committed state), queues it for the
//! next block and answers with its receipt once the block is durable. Everything else reads
//! committed state.

use std::{sync::Arc, time::Instant};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use medledger_api::{
    AccountKeyProof, AccountView, BatchItem, BlobStored, ConsistencyQuery, ConsistencyResponse,
    DoctorView, ErrorBody, Health, HospitalView, PatientView, Simulation, TxProofResponse, paths,
};
use medledger_core::{
    Hash,
    block::{MAX_BLOCK_TXS, Outcome, Receipt, SignedCheckpoint},
    encoding,
    ids::{AccountId, PatientId},
    keys::SigningKey,
    tx::{MAX_TX_BYTES, SignedTransaction},
};
use medledger_ledger::{Ledger, LedgerError};
use medledger_vault::{BlobStore, FsVault, MAX_BLOB_BYTES, VaultError};
use rayon::prelude::*;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::{auth::Signed, metrics::Metrics, producer::Submission};

/// Largest accepted batch submission, in bytes.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Committed state.
    pub ledger: Arc<Ledger>,
    /// The block producer's queue.
    pub queue: mpsc::Sender<Submission>,
    /// Signs checkpoints.
    pub node_key: Arc<SigningKey>,
    /// Sealed blobs.
    pub vault: Arc<FsVault>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Nonces of signed requests seen recently.
    pub replay_guard: Arc<crate::auth::ReplayGuard>,
    /// Rate-limited log of refused requests.
    pub denials: Arc<crate::auth::DenialLog>,
    /// Per-signer limits of admission.
    pub limits: Arc<crate::admission::Limits>,
    /// Key changes admitted and not yet committed.
    pub pending_keys: Arc<crate::admission::PendingKeys>,
    /// The height of the last applied block, updated as blocks are applied.
    pub applied: tokio::sync::watch::Receiver<u64>,
    /// Turns true when the node begins to stop; event streams end on it.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Open event streams per account.
    pub event_streams: Arc<crate::limits::EventStreams>,
    /// Turns for batch and blob bodies.
    pub large_bodies: Arc<crate::limits::BodyGate>,
    /// Turns for the other buffered bodies.
    pub small_bodies: Arc<crate::limits::BodyGate>,
    /// Free space of the data directory's file system: writes are refused below the reserve.
    pub disk: Arc<crate::storage::DiskGuard>,
    /// A storage fault that stops the node, once there is one.
    pub fault: Arc<crate::storage::StorageFault>,
}

/// An error response: a status and a JSON body.
#[derive(Debug)]
pub struct ApiError(StatusCode, ErrorBody);

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.0
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self(status, ErrorBody { code: code.into(), message: message.into(), outcome: None })
    }
    pub(crate) fn set_message(&mut self, message: String) {
        self.1.message = message;
    }
    pub(crate) fn refused(outcome: Outcome) -> Self {
        let message = match &outcome {
            Outcome::Refused { reason } => format!("refused: {reason}"),
            Outcome::Applied { .. } => "applied".into(),
        };
        Self(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorBody { code: "refused".into(), message, outcome: Some(outcome) },
        )
    }
    fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed", message)
    }
}

impl From<crate::storage::DiskFull> for ApiError {
    fn from(e: crate::storage::DiskFull) -> Self {
        ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", e.to_string())
    }
}

/// The refusal of every write after a storage fault, while the node stops.
pub(crate) fn storage_fault(reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_fault",
        format!("the node hit a storage fault and is stopping: {reason}"),
    )
}

/// Whether the node may take a write of about `incoming` bytes (a transaction or part of an
/// upload): not after a storage fault, and not below the free-space reserve. Reads do not ask.
pub(crate) fn writable(state: &AppState, incoming: u64) -> Result<(), ApiError> {
    if let Some(reason) = state.fault.reason() {
        return Err(storage_fault(&reason));
    }
    state.disk.admit(incoming).map_err(ApiError::from)
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::BadQuery(m) => ApiError::bad_request(m),
            other => {
                tracing::error!(error = %other, "ledger failure");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", other.to_string())
            }
        }
    }
}

/// The `code` of an error response, kept in its extensions for the log of refusals.
#[derive(Clone, Debug)]
pub(crate) struct ErrorCode(pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = ErrorCode(self.1.code.clone());
        let mut response = (self.0, Json(self.1)).into_response();
        response.extensions_mut().insert(code);
        response
    }
}

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;

/// The API's routes.
pub fn router(state: AppState) -> Router {
    use axum::middleware::from_fn_with_state;
    // Buffered bodies wait for a turn and must arrive within a deadline (crate::limits).
    let large = || from_fn_with_state(state.large_bodies.clone(), crate::limits::gate_body);
    let small = || from_fn_with_state(state.small_bodies.clone(), crate::limits::gate_body);
    Router::new()
        // Bodies a little over the limit still reach the decoder, which explains the limit in
        // JSON; far larger ones are cut off by the server before they are read.
        .route(
            paths::TRANSACTIONS,
            post(submit).layer(DefaultBodyLimit::max(4 * MAX_TX_BYTES)).layer(small()),
        )
        .route(
            paths::TRANSACTIONS_BATCH,
            post(submit_batch).layer(DefaultBodyLimit::max(MAX_BATCH_BYTES)).layer(large()),
        )
        .route(
            paths::TRANSACTIONS_SIMULATE,
            post(simulate).layer(DefaultBodyLimit::max(4 * MAX_TX_BYTES)).layer(small()),
        )
        .route(&format!("{}/{{hash}}", paths::TRANSACTIONS), get(transaction))
        .route(paths::CHECKPOINT, get(checkpoint))
        .route(paths::CONSISTENCY, get(consistency))
        .route(paths::GENESIS, get(genesis))
        .route(paths::HOSPITALS, get(hospitals))
        .route(paths::DOCTORS, get(doctors))
        .route(&format!("{}/{{id}}", paths::ACCOUNTS), get(account))
        .route(&format!("{}/{{id}}/{}", paths::ACCOUNTS, paths::ENCRYPTION_KEY), get(account_key))
        .route(&format!("{}/{{id}}", paths::PATIENTS), get(patient))
        .route(
            paths::BLOBS,
            put(put_blob).layer(DefaultBodyLimit::max(2 * MAX_BLOB_BYTES)).layer(large()),
        )
        .route(&format!("{}/{{hash}}", paths::BLOBS), get(get_blob))
        .route(&format!("{}/{{patient}}", paths::WHO_CAN_SEE), get(who_can_see))
        .route(paths::GRANTS, get(grants))
        .route(&format!("{}/{{id}}", paths::REQUESTS), get(access_request))
        .route(&format!("{}/{{patient}}", paths::AUDIT), get(audit_trail))
        .route(paths::AUDIT_COUNTS, get(audit_counts))
        .route(&format!("{}/{{account}}", paths::EVENTS), get(events))
        .route(paths::VAULT, post(crate::records::upload).layer(DefaultBodyLimit::disable()))
        .route(
            &format!("{}/{{pmr}}/read", paths::RECORDS),
            post(crate::records::read)
                .layer(DefaultBodyLimit::max(4 * MAX_TX_BYTES))
                .layer(small()),
        )
        .route(paths::RECORDS, get(crate::records::list))
        .route(&format!("{}/reviews", paths::EMERGENCY), get(crate::emergency::reviews))
        .route(
            &format!("{}/break-glass/{{id}}", paths::EMERGENCY),
            get(crate::emergency::break_glass),
        )
        .route(&format!("{}/{{patient}}", paths::EMERGENCY), get(crate::emergency::profile))
        .route(
            &format!("{}/{{patient}}/read", paths::EMERGENCY),
            post(crate::emergency::read)
                .layer(DefaultBodyLimit::max(4 * MAX_TX_BYTES))
                .layer(small()),
        )
        .route(
            &format!("{}/{{patient}}/overview", paths::EMERGENCY),
            post(crate::emergency::overview)
                .layer(DefaultBodyLimit::max(4 * MAX_TX_BYTES))
                .layer(small()),
        )
        .route(&format!("{}/{{patient}}/escrow", paths::EMERGENCY), get(crate::emergency::escrow))
        .route(
            &format!("{}/{{patient}}/{}", paths::EMERGENCY, paths::EMERGENCY_KEY_PROOF),
            get(crate::emergency::key_proof),
        )
        .route(&format!("{}/{{pmr}}", paths::RECORDS), get(crate::records::get))
        .route(&format!("{}/{{pmr}}/history", paths::RECORDS), get(crate::records::history))
        .route(&format!("{}/{{pmr}}/shares", paths::RECORDS), get(crate::records::shares))
        .route(&format!("{}/{{pmr}}/key", paths::RECORDS), get(crate::records::own_key))
        .route(paths::CASES, get(crate::cases::list))
        .route(&format!("{}/{{id}}", paths::CASES), get(crate::cases::get))
        .route(&format!("{}/{{id}}/key", paths::CASES), get(crate::cases::own_key))
        .route(
            &format!("{}/{{id}}/read", paths::CASES),
            post(crate::cases::read).layer(DefaultBodyLimit::max(4 * MAX_TX_BYTES)).layer(small()),
        )
        .route(paths::DEVICES, get(crate::devices::list))
        .route(&format!("{}/{{id}}", paths::DEVICES), get(crate::devices::get))
        .route(&format!("{}/{{id}}/sessions", paths::DEVICES), get(crate::devices::sessions))
        .route(&format!("{}/{{id}}", paths::DEVICE_SESSIONS), get(crate::devices::session))
        .route(
            &format!("{}/{{id}}/readings", paths::DEVICE_SESSIONS),
            get(crate::devices::readings),
        )
        .route(
            &format!("{}/{{id}}/read", paths::DEVICE_SESSIONS),
            post(crate::devices::read)
                .layer(DefaultBodyLimit::max(4 * MAX_TX_BYTES))
                .layer(small()),
        )
        .route(paths::HEALTH, get(health))
        .route(paths::METRICS, get(metrics))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::log_denials))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::count_requests,
        ))
        .with_state(state)
}

/// What the producer answers for a queued transaction.
type ProduceResult = Result<Receipt, crate::producer::ProduceError>;

async fn enqueue(
    state: &AppState,
    tx: SignedTransaction,
) -> Result<oneshot::Receiver<ProduceResult>, ApiError> {
    let (reply, rx) = oneshot::channel();
    state.queue.try_send(Submission { tx, reply }).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the node's queue is full; retry shortly",
        ),
        mpsc::error::TrySendError::Closed(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the node is shutting down",
        ),
    })?;
    state.metrics.admitted.inc();
    Ok(rx)
}

/// What the operator's log says of a transaction once it has its receipt: its kind and signer
/// (for a refusal), and for a break-glass or a device alert, what happened.
#[derive(Debug)]
pub(crate) struct LogNote {
    kind: &'static str,
    signer: AccountId,
    event: Option<Notable>,
}

/// Transactions an operator wants to see applied in the log.
#[derive(Debug)]
enum Notable {
    BreakGlass { patient: AccountId, code: medledger_core::tx::emergency::ReasonCode },
    Alert { metric: &'static str, severity: medledger_core::tx::devices::Severity, seq: u64 },
}

impl LogNote {
    pub(crate) fn of(tx: &SignedTransaction) -> Self {
        use medledger_core::tx::{DeviceTx, EmergencyTx, TxBody};
        let event = match &tx.tx.body {
            TxBody::Emergency(EmergencyTx::BreakGlass { patient, code, .. }) => {
                Some(Notable::BreakGlass { patient: *patient, code: *code })
            }
            TxBody::Devices(DeviceTx::Alert(a)) => {
                Some(Notable::Alert { metric: a.metric.name(), severity: a.severity, seq: a.seq })
            }
            _ => None,
        };
        Self { kind: tx.tx.body.kind(), signer: tx.tx.signer, event }
    }

    /// Logs a committed receipt at info: a refusal with its reason, an applied break-glass or
    /// device alert with what it says.
    fn log(&self, receipt: &Receipt) {
        match (&receipt.outcome, &self.event) {
            (Outcome::Refused { reason }, _) => tracing::info!(
                kind = self.kind,
                signer = %self.signer,
                tx = %receipt.tx_hash,
                height = receipt.height,
                %reason,
                "transaction refused by the ledger"
            ),
            (Outcome::Applied { .. }, Some(Notable::BreakGlass { patient, code })) => {
                tracing::info!(
                    doctor = %self.signer,
                    %patient,
                    %code,
                    tx = %receipt.tx_hash,
                    height = receipt.height,
                    "BREAK-GLASS declared"
                )
            }
            (Outcome::Applied { .. }, Some(Notable::Alert { metric, severity, seq })) => {
                tracing::info!(
                    device = %self.signer,
                    metric,
                    severity = ?severity,
                    seq,
                    tx = %receipt.tx_hash,
                    height = receipt.height,
                    "device alert"
                )
            }
            (Outcome::Applied { .. }, None) => {}
        }
    }
}

/// Logs, at info, a transaction turned away at admission (rate-limited with the request
/// denials, so that a flood of bad transactions cannot flood the log).
fn log_rejected(state: &AppState, note: &LogNote, what: &str, error: &ApiError) {
    if let Some(suppressed) = state.denials.admit_now() {
        tracing::info!(
            kind = note.kind,
            claimed_signer = %note.signer,
            status = error.0.as_u16(),
            code = %error.1.code,
            message = %error.1.message,
            suppressed_since_last_second = suppressed,
            "{what}"
        );
    }
}

/// Waits for a queued transaction's receipt (applied or refused) and records it in the metrics
/// and the log.
fn receipt_of(
    state: &AppState,
    note: &LogNote,
    started: Instant,
    r: Result<ProduceResult, oneshot::error::RecvError>,
) -> Result<Receipt, ApiError> {
    let signer = &note.signer;
    let receipt = r
        .map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the node stopped")
        })?
        .map_err(|e| match state.fault.reason() {
            Some(reason) => storage_fault(&reason),
            None => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ordered", e.to_string()),
        })?;
    state.metrics.commit_latency.observe(started.elapsed().as_secs_f64());
    state.metrics.height.set(receipt.height as i64);
    crate::admission::note_outcome(state, signer, &receipt);
    note.log(&receipt);
    match receipt.outcome {
        Outcome::Applied { .. } => state.metrics.applied.inc(),
        Outcome::Refused { .. } => state.metrics.refused.inc(),
    };
    Ok(receipt)
}

async fn submit(State(state): State<AppState>, body: Bytes) -> Result<Json<Receipt>, ApiError> {
    let tx = SignedTransaction::decode(&body).map_err(|e| {
        state.metrics.rejected.inc();
        ApiError::bad_request(e.to_string())
    })?;
    submit_and_wait(&state, tx).await.map(Json)
}

/// Runs a transaction as the next block would, writing nothing (see
/// [`crate::admission::simulate`]): would apply, or the refusal a submission would get.
async fn simulate(State(state): State<AppState>, body: Bytes) -> ApiResult<Simulation> {
    let tx = SignedTransaction::decode(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let ok = tx.verify_signature().is_ok();
    let note = LogNote::of(&tx);
    // The write transaction waits for a block being applied: off the async workers.
    let worker = state.clone();
    let simulated =
        tokio::task::spawn_blocking(move || crate::admission::simulate(&worker, &tx, ok))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
    // An operator helping a user sees why their command was turned down, though nothing
    // was ordered.
    let answer = simulated.and_then(|simulated| match simulated.outcome {
        Outcome::Applied { .. } => Ok(Simulation {
            tx_hash: simulated.tx_hash,
            height: simulated.height,
            time_ms: simulated.time_ms,
            outcome: simulated.outcome,
        }),
        Outcome::Refused { .. } => Err(ApiError::refused(simulated.outcome)),
    });
    answer
        .map(Json)
        .inspect_err(|e| log_rejected(&state, &note, "transaction refused in simulation", e))
}

/// Checks, admits and orders one transaction, and waits for its durable receipt; a refused
/// transaction is an error carrying its outcome.
pub(crate) async fn submit_and_wait(
    state: &AppState,
    tx: SignedTransaction,
) -> Result<Receipt, ApiError> {
    let ok = tx.verify_signature().is_ok();
    submit_checked(state, tx, ok).await
}

/// [`submit_and_wait`] for a transaction whose signature was checked already (`ok`).
pub(crate) async fn submit_checked(
    state: &AppState,
    tx: SignedTransaction,
    ok: bool,
) -> Result<Receipt, ApiError> {
    let started = Instant::now();
    let note = LogNote::of(&tx);
    // Every transaction is a write, the access transaction of an audited read included: a
    // read whose access cannot be committed is not served.
    writable(state, tx.encode().len() as u64)?;
    crate::admission::admit(state, &tx, ok).inspect_err(|e| {
        state.metrics.rejected.inc();
        log_rejected(state, &note, "transaction rejected at admission", e);
    })?;
    let rx = enqueue(state, tx).await?;
    let receipt = receipt_of(state, &note, started, rx.await)?;
    match receipt.outcome {
        Outcome::Applied { .. } => Ok(receipt),
        Outcome::Refused { .. } => Err(ApiError::refused(receipt.outcome)),
    }
}

async fn submit_batch(State(state): State<AppState>, body: Bytes) -> ApiResult<Vec<BatchItem>> {
    let started = Instant::now();
    let txs: Vec<SignedTransaction> = encoding::decode("transaction batch", &body, MAX_BATCH_BYTES)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    // The whole batch is refused when the disk is full: none of it is ordered.
    writable(&state, body.len() as u64)?;
    if txs.len() > MAX_BLOCK_TXS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BLOCK_TXS} transactions per batch"
        )));
    }
    if let Some(big) = txs.iter().find(|t| t.encode().len() > MAX_TX_BYTES) {
        return Err(ApiError::bad_request(format!(
            "transaction {} exceeds {MAX_TX_BYTES} bytes",
            big.hash()
        )));
    }
    // Strict verification of the whole batch, on all cores, off the async workers.
    let (txs, ok) = tokio::task::spawn_blocking(move || {
        let ok: Vec<bool> = txs.par_iter().map(|t| t.verify_signature().is_ok()).collect();
        (txs, ok)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    enum Pending {
        Ordered(LogNote, oneshot::Receiver<ProduceResult>),
        Done(BatchItem),
    }
    let mut pending = Vec::with_capacity(txs.len());
    for (tx, ok) in txs.into_iter().zip(ok) {
        let note = LogNote::of(&tx);
        pending.push(match crate::admission::admit(&state, &tx, ok) {
            Ok(()) => match enqueue(&state, tx).await {
                Ok(rx) => Pending::Ordered(note, rx),
                Err(ApiError(_, body)) => Pending::Done(BatchItem::Error(body)),
            },
            Err(e) => {
                state.metrics.rejected.inc();
                log_rejected(&state, &note, "transaction rejected at admission", &e);
                Pending::Done(BatchItem::Error(e.1))
            }
        });
    }
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        let item = match p {
            // Ordered transactions get their receipt, applied or refused.
            Pending::Ordered(note, rx) => match receipt_of(&state, &note, started, rx.await) {
                Ok(r) => BatchItem::Receipt(r),
                Err(ApiError(_, body)) => BatchItem::Error(body),
            },
            Pending::Done(item) => item,
        };
        out.push(item);
    }
    Ok(Json(out))
}

fn parse_hash(s: &str) -> Result<Hash, ApiError> {
    Hash::from_hex(s)
        .map_err(|_| ApiError::bad_request(format!("{s:?} is not a 64-character hex hash")))
}

pub(crate) fn signed_checkpoint(state: &AppState) -> SignedCheckpoint {
    state.ledger.checkpoint().sign(&state.node_key)
}

/// A committed transaction with its receipt and inclusion proof, only to its parties
/// (`Ledger::may_see_transaction`: the signer, the accounts it names, the patient it concerns
/// and their delegates and hospital, the regulator); anyone else gets the answer of a hash
/// that is not in the ledger (security review M7).
async fn transaction(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(hash): Path<String>,
) -> ApiResult<TxProofResponse> {
    let hash = parse_hash(&hash)?;
    let missing = || ApiError::not_found(format!("no transaction {hash}"));
    let record = state.ledger.transaction(&hash)?.ok_or_else(missing)?;
    if !state.ledger.may_see_transaction(&requester, &record.tx, &record.receipt)? {
        return Err(missing());
    }
    let checkpoint = signed_checkpoint(&state);
    let inclusion =
        state.ledger.inclusion_proof(record.receipt.log_index, checkpoint.checkpoint.log_size)?;
    Ok(Json(TxProofResponse {
        tx_hex: hex::encode(record.tx.encode()),
        receipt: record.receipt,
        header: record.header,
        checkpoint,
        inclusion,
    }))
}

async fn checkpoint(State(state): State<AppState>, _: Signed) -> Json<SignedCheckpoint> {
    Json(signed_checkpoint(&state))
}

async fn consistency(
    State(state): State<AppState>,
    _: Signed,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult<ConsistencyResponse> {
    let proof = state.ledger.consistency_proof(q.old, q.new)?;
    let old_root = state.ledger.root_at(q.old)?;
    Ok(Json(ConsistencyResponse { proof, old_root }))
}

async fn genesis(State(state): State<AppState>) -> Json<medledger_core::block::Genesis> {
    Json(state.ledger.genesis().clone())
}

async fn hospitals(State(state): State<AppState>, _: Signed) -> ApiResult<Vec<HospitalView>> {
    let list = state.ledger.hospitals()?;
    Ok(Json(
        list.into_iter()
            .map(|(account, e, suspended)| HospitalView {
                account,
                registration_id: e.registration_id,
                name: e.name,
                city: e.city,
                specialisation: e.specialisation,
                suspended,
                admitted_at: e.admitted_at,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
struct DoctorQuery {
    hospital: Option<String>,
}

pub(crate) fn parse_account(s: &str) -> Result<AccountId, ApiError> {
    s.parse().map_err(|e: medledger_core::ids::BadAccountId| ApiError::bad_request(e.to_string()))
}

async fn doctors(
    State(state): State<AppState>,
    _: Signed,
    Query(q): Query<DoctorQuery>,
) -> ApiResult<Vec<DoctorView>> {
    let hospital = q.hospital.as_deref().map(parse_account).transpose()?;
    let list = state.ledger.doctors(hospital.as_ref())?;
    Ok(Json(
        list.into_iter()
            .map(|(account, e)| DoctorView {
                account,
                hospital: e.hospital,
                registration_number: e.registration_number,
                name: e.name,
                specialisation: e.specialisation,
                onboarded_at: e.onboarded_at,
            })
            .collect(),
    ))
}

/// An account's public entry. Its nonce (how many transactions it has committed, an activity
/// count) goes only to the account itself, which needs it to sign its next transaction; a
/// patient's Patient-ID only to those who may look the patient up.
async fn account(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<AccountView> {
    let id = parse_account(&id)?;
    let a = state
        .ledger
        .account(&id)?
        .ok_or_else(|| ApiError::not_found(format!("no account {id}")))?;
    // A patient's Patient-ID only to those who may look the patient up (M4).
    let patient_id = match a.patient_id {
        Some(pid) => match state.ledger.patient(pid)? {
            Some(p) if sees_patient(&state, &requester, &p, None)? => Some(pid),
            _ => None,
        },
        None => None,
    };
    Ok(Json(AccountView {
        account: id,
        role: a.role,
        key: a.key,
        encryption_key: a.encryption_key,
        nonce: (requester == id).then_some(a.nonce),
        suspended: a.suspended,
        patient_id,
    }))
}

/// An account's encryption key with the registration that set it, proven against a checkpoint
/// signed now: what a wallet checks before wrapping a key or sealing details to the account.
async fn account_key(
    State(state): State<AppState>,
    _: Signed,
    Path(id): Path<String>,
) -> ApiResult<AccountKeyProof> {
    let id = parse_account(&id)?;
    let a = state
        .ledger
        .account(&id)?
        .ok_or_else(|| ApiError::not_found(format!("no account {id}")))?;
    let registration = match state.ledger.registration_of(&id)? {
        None => None,
        Some(record) => {
            let checkpoint = signed_checkpoint(&state);
            let inclusion = state
                .ledger
                .inclusion_proof(record.receipt.log_index, checkpoint.checkpoint.log_size)?;
            Some(TxProofResponse {
                tx_hex: hex::encode(record.tx.encode()),
                receipt: record.receipt,
                header: record.header,
                checkpoint,
                inclusion,
            })
        }
    };
    Ok(Json(AccountKeyProof { account: id, encryption_key: a.encryption_key, registration }))
}

#[derive(Debug, Deserialize)]
struct PatientQuery {
    /// The key check of the patient's emergency profile, derived from the code on their card:
    /// whoever holds the card may look the patient up.
    card: Option<String>,
}

/// A patient's registration by Patient-ID, only to those the ledger can tell have a reason
/// (`Ledger::may_look_up_patient`) or who hold the patient's card code. Everyone else gets
/// the answer of a Patient-ID that does not exist, and each such miss spends their allowance
/// of denials, so that Patient-IDs cannot be enumerated (security review M4).
async fn patient(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
    Query(q): Query<PatientQuery>,
) -> ApiResult<PatientView> {
    let pid = PatientId(
        id.parse().map_err(|_| ApiError::bad_request(format!("{id:?} is not a Patient-ID")))?,
    );
    let card = q.card.as_deref().map(parse_hash).transpose()?;
    let visible = match state.ledger.patient(pid)? {
        Some(p) if sees_patient(&state, &requester, &p, card.as_ref())? => Some(p),
        _ => None,
    };
    let Some(p) = visible else {
        if let Some(spent) = crate::admission::probe_refused(&state, &requester) {
            return Err(spent);
        }
        return Err(ApiError::not_found(format!("no patient {pid}")));
    };
    Ok(Json(PatientView {
        patient_id: pid,
        account: p.account,
        hospital: p.hospital,
        details: p.details,
        attendant: p.attendant,
        registered_at: p.registered_at,
    }))
}

/// Whether `requester` may map this patient's Patient-ID to their account: a relationship the
/// ledger can check, or the key check of the patient's emergency profile (the card's code).
fn sees_patient(
    state: &AppState,
    requester: &AccountId,
    p: &medledger_ledger::state::PatientEntry,
    card: Option<&Hash>,
) -> Result<bool, ApiError> {
    if state.ledger.may_look_up_patient(requester, p, crate::admission::now_ms())? {
        return Ok(true);
    }
    let Some(card) = card else { return Ok(false) };
    Ok(state.ledger.emergency_profile(&p.account)?.is_some_and(|e| e.key_check == *card))
}

pub(crate) fn vault_error(e: VaultError) -> ApiError {
    match e {
        VaultError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
        }
        VaultError::Corrupt { .. } => {
            tracing::error!(error = %e, "vault corruption");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", e.to_string())
        }
        VaultError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            disk_full_now(e)
        }
        VaultError::Io { .. } => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        }
    }
}

/// The refusal of a write that ran out of space (`ENOSPC` slipped past the reserve), in the
/// words of the reserve's refusal when the figures are at hand.
pub(crate) fn disk_full_now(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "a vault write ran out of space; nothing was stored");
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "disk_full",
        format!("the node's disk is full ({e}); nothing was stored"),
    )
}

async fn put_blob(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    method: axum::http::Method,
    uri: axum::http::Uri,
    body: Bytes,
) -> ApiResult<BlobStored> {
    let uploader = crate::auth::authenticate(
        &state.ledger,
        &state.replay_guard,
        &headers,
        &method,
        &uri,
        &body,
    )?;
    // Only those who register people, devices or thresholds store sealed details (M8).
    let role = state.ledger.account(&uploader)?.map(|a| a.role);
    if !role.as_ref().is_some_and(crate::quotas::may_store_details) {
        return Err(forbidden(
            "only the regulator, hospitals, doctors and patients store sealed registration details",
        ));
    }
    let size = body.len() as u64;
    if body.len() > MAX_BLOB_BYTES {
        return Err(vault_error(VaultError::TooLarge { len: body.len() }));
    }
    writable(&state, size)?;
    let vault = state.vault.clone();
    // Charged to the signer, within its role's quota: no registered identity fills the disk
    // for free; over it, 507 `quota_exceeded` and nothing is stored.
    let hash = tokio::task::spawn_blocking(move || {
        let mut upload = vault.begin_upload(uploader, None)?;
        upload.write_chunk(&body)?;
        upload.finish().map(|stored| stored.cid.hash())
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(crate::records::blob_error)?;
    Ok(Json(BlobStored { hash, size }))
}

async fn get_blob(
    State(state): State<AppState>,
    _: Signed,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    let hash = parse_hash(&hash)?;
    let missing = || ApiError::not_found(format!("no blob {hash}"));
    // Only sealed registration details that the ledger names are served here, decided from
    // committed state and never from the vault's index (a lost or rebuilt index must not make
    // anything public). Record, case and device blobs leave the vault only through the
    // audited reads, whoever knows their hash.
    let ledger = state.ledger.clone();
    let registered = tokio::task::spawn_blocking(move || ledger.registration_blobs())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    if !registered.contains(&hash) {
        return Err(missing());
    }
    let bytes = state.vault.get(&hash).map_err(vault_error)?.ok_or_else(missing)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// `GET /health`: 200 `ok`; 200 `disk_full` with the reason while writes are refused for lack
/// of space (the node serves reads and resumes by itself: restarting it would not help); 503
/// `storage_fault` with the reason once the node is stopping after a storage fault.
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let tip = state.ledger.tip();
    let (code, status, reason) = match (state.fault.reason(), state.disk.full_now()) {
        (Some(reason), _) => (StatusCode::SERVICE_UNAVAILABLE, "storage_fault", Some(reason)),
        (None, Some(full)) => (StatusCode::OK, "disk_full", Some(full.to_string())),
        (None, None) => (StatusCode::OK, "ok", None),
    };
    let health = Health {
        status: status.into(),
        chain_id: state.ledger.chain_id().to_owned(),
        height: tip.height,
        log_size: tip.log.len(),
        reason,
    };
    (code, Json(health))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let vault = state.vault.clone();
    match tokio::task::spawn_blocking(move || vault.total_bytes()).await {
        Ok(Ok(bytes)) => state.metrics.set_vault_bytes(bytes),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the vault's size for /metrics"),
        Err(e) => tracing::warn!(error = %e, "cannot read the vault's size for /metrics"),
    }
    state.metrics.set_storage(
        state.disk.free_now(),
        state.disk.reserve(),
        state.fault.reason().is_some(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn grant_view(id: Hash, g: medledger_ledger::state::GrantEntry) -> medledger_api::GrantView {
    medledger_api::GrantView {
        id,
        patient: g.patient,
        grantee: g.grantee,
        scope: g.scope,
        purpose: g.purpose,
        validity: g.validity,
        granted_by: g.granted_by,
        granted_at: g.granted_at,
        revoked_at: g.revoked_at,
    }
}

/// Whether `who` is the patient or one of their delegates.
fn acts_for(state: &AppState, who: &AccountId, patient: &AccountId) -> Result<bool, ApiError> {
    Ok(who == patient || state.ledger.is_delegate(patient, who)?)
}

async fn who_can_see(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(patient): Path<String>,
) -> ApiResult<medledger_api::WhoCanSeeView> {
    let patient = parse_account(&patient)?;
    if !acts_for(&state, &requester, &patient)? {
        return Err(forbidden(
            "only the patient or a delegate they named may see who can see their records",
        ));
    }
    let height = state.ledger.tip().height;
    let w = state.ledger.who_can_see(&patient, Some(height))?;
    let mut case_key_holders = Vec::new();
    for (case, _) in state.ledger.cases_of_patient(&patient)? {
        for (holder, _) in state.ledger.case_keys(&case)? {
            if holder != patient {
                case_key_holders
                    .push(medledger_api::CaseKeyHolderView { case: case.clone(), holder });
            }
        }
    }
    Ok(Json(medledger_api::WhoCanSeeView {
        case_key_holders,
        patient,
        height,
        delegates: w.delegates,
        delegate_powers: w
            .delegate_powers
            .iter()
            .map(|p| p.names().into_iter().map(str::to_owned).collect())
            .collect(),
        grants: w.grants.into_iter().map(|(id, g)| grant_view(id, g)).collect(),
        deny_rules: w
            .deny_rules
            .into_iter()
            .map(|(id, d)| medledger_api::DenyView { id, rule: d.rule, added_at: d.added_at })
            .collect(),
    }))
}

#[derive(Debug, Deserialize)]
struct GrantsQuery {
    patient: String,
}

async fn grants(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Query(q): Query<GrantsQuery>,
) -> ApiResult<Vec<medledger_api::GrantView>> {
    let patient = parse_account(&q.patient)?;
    let list =
        state.ledger.grants_in_force_now(&requester, &patient, crate::admission::now_ms())?;
    Ok(Json(list.into_iter().map(|(id, g)| grant_view(id, g)).collect()))
}

async fn access_request(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<medledger_api::RequestView> {
    let id = parse_hash(&id)?;
    let r = state
        .ledger
        .access_request(&id)?
        .ok_or_else(|| ApiError::not_found(format!("no request {id}")))?;
    if requester != r.requester && !acts_for(&state, &requester, &r.patient)? {
        return Err(forbidden("only the patient, a delegate or the requester may see a request"));
    }
    let status = match r.status {
        medledger_ledger::state::RequestStatus::Pending => "pending".to_owned(),
        medledger_ledger::state::RequestStatus::Declined => "declined".to_owned(),
        medledger_ledger::state::RequestStatus::Approved(g) => format!("approved:{g}"),
    };
    Ok(Json(medledger_api::RequestView {
        id,
        patient: r.patient,
        requester: r.requester,
        scope: r.scope,
        purpose: r.purpose,
        requested_at: r.requested_at,
        status,
    }))
}

/// Most audit events returned by one request.
const MAX_AUDIT_PAGE: usize = 10_000;

#[derive(Debug, Deserialize)]
struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn audit_trail(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(patient): Path<String>,
    Query(q): Query<AuditQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let patient = parse_account(&patient)?;
    if !acts_for(&state, &requester, &patient)? {
        return Err(forbidden(
            "only the patient or a delegate they named may read their audit trail",
        ));
    }
    let limit = q.limit.unwrap_or(MAX_AUDIT_PAGE).min(MAX_AUDIT_PAGE);
    let events = state.ledger.audit_trail(&patient, q.after, limit)?;
    // The index also lists events where the patient is the other party (their own requests
    // as a grantee, say); a patient's trail is the events about their records.
    let events: Vec<_> = events.into_iter().filter(|e| e.patient == patient).collect();
    let binary = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(medledger_api::BINARY_MEDIA_TYPE));
    if binary {
        let body = encoding::encode(&events);
        return Ok(
            ([(header::CONTENT_TYPE, medledger_api::BINARY_MEDIA_TYPE)], body).into_response()
        );
    }
    Ok(Json(events).into_response())
}

async fn audit_counts(
    State(state): State<AppState>,
    Signed(requester): Signed,
) -> ApiResult<std::collections::BTreeMap<String, u64>> {
    if requester != state.ledger.genesis().regulator() {
        return Err(forbidden("only the regulator may read audit counts"));
    }
    Ok(Json(state.ledger.audit_counts()?))
}

/// A server-sent event stream of the audit events concerning one account (its own records, or
/// requests and grants where it is the other party), from a cursor: `?after=N` or the
/// `Last-Event-ID` header of a reconnecting client, so that a watcher resumes without missing
/// or repeating events. The subscription is a signed request by that account.
async fn events(
    State(state): State<AppState>,
    Signed(requester): Signed,
    headers: axum::http::HeaderMap,
    Path(account): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Result<
    axum::response::sse::Sse<
        impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    let account = parse_account(&account)?;
    if requester != account {
        return Err(forbidden("an event subscription is signed by the account it is for"));
    }
    // Held by the stream: the slot is given back when the client goes away.
    let slot = state.event_streams.open(account)?;
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let cursor = last_id.or(q.after);
    let stream = futures_util::stream::unfold(
        (state, account, cursor, std::collections::VecDeque::new(), slot),
        |(mut state, account, mut cursor, mut pending, slot)| async move {
            loop {
                // A stopping node ends every stream at once, so that shutdown need not wait.
                if *state.stopping.borrow() {
                    return None;
                }
                if let Some(e) = pending.pop_front() {
                    let e: medledger_core::audit::AuditEvent = e;
                    cursor = Some(e.seq);
                    let event = axum::response::sse::Event::default()
                        .id(e.seq.to_string())
                        .event(e.kind.name())
                        .json_data(&e)
                        .unwrap_or_else(|_| {
                            axum::response::sse::Event::default().comment("unencodable event")
                        });
                    return Some((Ok(event), (state, account, cursor, pending, slot)));
                }
                // Mark the current height seen before looking, so that a block applied while
                // we look wakes the wait below.
                state.applied.borrow_and_update();
                match state.ledger.audit_trail(&account, cursor, 1000) {
                    Ok(found) if !found.is_empty() => pending.extend(found),
                    Ok(_) => {
                        // Nothing new: wait for the next applied block (or a while, then look
                        // again anyway), or for the node to stop.
                        let mut stopping = state.stopping.clone();
                        let wait = state.applied.changed();
                        tokio::select! {
                            _ = tokio::time::timeout(std::time::Duration::from_secs(5), wait) => {}
                            () = crate::server::stopped(&mut stopping) => return None,
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "event stream stopped");
                        return None;
                    }
                }
            }
        },
    );
    Ok(axum::response::sse::Sse::new(stream).keep_alive(axum::response::sse::KeepAlive::default()))
}
