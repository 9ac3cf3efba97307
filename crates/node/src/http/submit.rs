//! Submission: the one way a transaction enters the node. [`submit_checked`] checks whether
//! the node may take a write, admits the transaction ([`crate::admission`]), queues it for the
//! next block and waits for its durable receipt; the routes `POST /v1/transactions`,
//! `/v1/transactions/batch` and `/v1/transactions/simulate` and every audited read go through
//! it. Each receipt is counted in the metrics and, when notable, logged.
//!
//! In a cluster only the leader orders: a follower forwards a submission (and a batch) to the
//! leader it knows and, once it has applied that block itself, returns the receipt from its
//! own ledger (the leader's answer only names the height to wait for: it crossed the network
//! unsigned), so that a read on the same node sees the write; not applied within a short
//! while: 503 `not_yet`. With
//! no known or reachable leader, or a leader that has lost its quorum, the answer is 503
//! `no_quorum`; a forwarded submission is never forwarded again. (A fault test's rules,
//! `crate::raft::faults`, may cut, lose or delay a forwarded submission like any message to
//! another node.)

use std::time::{Duration, Instant};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use medledger_api::{BatchItem, ErrorBody, ErrorCode, Simulation, paths};
use medledger_core::{
    block::{MAX_BLOCK_TXS, Outcome, Receipt},
    encoding,
    ids::AccountId,
    tx::{MAX_TX_BYTES, SignedTransaction},
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    app::AppState,
    http::error::{ApiError, ApiResult, bad_request, no_quorum, storage_fault},
    limits::{MAX_BATCH_BYTES, large_body, signed_body},
    producer::Submission,
    raft::faults::Message,
};

/// The submission routes.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    // Bodies a little over the limit still reach the decoder, which explains the limit in
    // JSON; far larger ones are cut off by the server before they are read.
    Router::new()
        .route(paths::TRANSACTIONS, signed_body(state, post(submit)))
        .route(paths::TRANSACTIONS_BATCH, large_body(state, post(submit_batch), MAX_BATCH_BYTES))
        .route(paths::TRANSACTIONS_SIMULATE, signed_body(state, post(simulate)))
}

/// Whether the node may take a write of about `incoming` bytes (a transaction or part of an
/// upload): not after a storage fault, and not below the free-space reserve. Reads do not ask.
pub(crate) fn writable(state: &AppState, incoming: u64) -> Result<(), ApiError> {
    if let Some(reason) = state.fault.reason() {
        return Err(storage_fault(&reason));
    }
    state.disk.admit(incoming).map_err(ApiError::from)
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
            ErrorCode::Busy,
            "the node's queue is full; retry shortly",
        ),
        mpsc::error::TrySendError::Closed(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
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
            status = error.status().as_u16(),
            code = %error.body().code,
            message = %error.body().message,
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
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ShuttingDown,
                "the node stopped",
            )
        })?
        .map_err(|e| match state.fault.reason() {
            Some(reason) => storage_fault(&reason),
            None => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotOrdered, e.to_string())
            }
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

async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Receipt>, ApiError> {
    let tx = SignedTransaction::decode(&body).map_err(|e| {
        state.metrics.rejected.inc();
        bad_request(e.to_string())
    })?;
    let ok = crate::admission::signature_ok(&state.ledger, &tx);
    submit_from(&state, tx, ok, is_forwarded(&headers).then(|| forwarder(&headers))).await.map(Json)
}

/// How long a leader in a cluster waits for a block to commit before answering `no_quorum`.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a follower waits for the leader's answer to a forwarded submission.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// A leader that has heard from no quorum for this long takes no writes.
pub const QUORUM_STALE_MS: u64 = 3_000;
/// How long a follower waits to apply the block of a forwarded receipt itself.
const APPLY_WAIT: Duration = Duration::from_secs(2);

fn commit_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + COMMIT_TIMEOUT
}

fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(paths::FORWARDED_HEADER)
}

/// The node that forwarded a submission here, as its header says (a hint only: it names the
/// first peer asked for the submission's blobs, which are checked against their hashes).
fn forwarder(headers: &HeaderMap) -> Option<u64> {
    headers.get(paths::FORWARDED_HEADER)?.to_str().ok()?.parse().ok()
}

/// Before admission in a network of several nodes: pulls the blobs `tx` references that this
/// node lacks (a client uploads to the node it talks to, which may not be the leader) from
/// the peers, `first` (the forwarding node) first. What no peer delivers is left to
/// admission, which refuses the transaction `blob_missing`.
async fn pull_blobs_of(state: &AppState, tx: &SignedTransaction, ok: bool, first: Option<u64>) {
    // Nothing is asked of the peers for a submission whose signer is not who it claims (or
    // not registered, or a replay): admission refuses it without looking at blobs.
    if !state.cluster.is_multi_node() || crate::admission::envelope(state, tx, ok).is_err() {
        return;
    }
    let wanted = tx.tx.body.blobs().into_iter().filter(|b| b.role.required_at_admission());
    for e in state.replicas.ensure_all(wanted.map(|b| b.hash), first).await {
        tracing::info!(error = %e, tx = %tx.hash(), "a blob of a submission is on no peer asked");
    }
}

/// Where a write goes: `None` when this node orders it (it leads, or runs alone), or the
/// leader's id and base URL. `forwarded`: the write was forwarded here by another node, and is
/// not forwarded again.
fn leader_elsewhere(state: &AppState, forwarded: bool) -> Result<Option<(u64, String)>, ApiError> {
    let cluster = &state.cluster;
    let multi = cluster.is_multi_node();
    let m = cluster.raft.metrics();
    let m = m.borrow();
    if m.current_leader == Some(cluster.id) {
        if multi && m.millis_since_quorum_ack.is_none_or(|ms| ms > QUORUM_STALE_MS) {
            return Err(no_quorum("this node leads but has not heard from a quorum recently"));
        }
        return Ok(None);
    }
    if forwarded {
        return Err(no_quorum("this node is not the leader (the leader changed); retry"));
    }
    let leader = m.current_leader.and_then(|l| {
        let node = m.membership_config.membership().get_node(&l)?;
        Some((l, crate::raft::network::base_url(&node.addr)))
    });
    match leader {
        Some(leader) => Ok(Some(leader)),
        None => Err(no_quorum("no leader is known; retry shortly")),
    }
}

/// Posts `body` to `path` on the leader (its id and base URL), marked as forwarded, and
/// returns its answer: the body on success, its error otherwise.
async fn forward(
    state: &AppState,
    (leader_id, leader): &(u64, String),
    path: &str,
    body: Vec<u8>,
) -> Result<Bytes, ApiError> {
    let faults = state.cluster.faults.as_deref();
    let timeout =
        crate::raft::faults::before_send(faults, *leader_id, Message::Forward, FORWARD_TIMEOUT)
            .await
            .map_err(|e| no_quorum(format!("the leader at {leader} did not answer: {e}")))?;
    let response = state
        .cluster
        .http
        .post(format!("{leader}{path}"))
        .header(paths::FORWARDED_HEADER, state.cluster.id.to_string())
        .timeout(timeout)
        .body(body)
        .send()
        .await
        .map_err(|e| no_quorum(format!("the leader at {leader} did not answer: {e}")))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| no_quorum(format!("the leader at {leader} did not answer: {e}")))?;
    if status.is_success() {
        return Ok(bytes);
    }
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body: ErrorBody = serde_json::from_slice(&bytes).map_err(|_| {
        no_quorum(format!("the leader at {leader} answered HTTP {status} without an error body"))
    })?;
    Err(ApiError::from_body(status, body))
}

/// The receipt of the forwarded transaction `hash` from this node's own ledger. The leader's
/// answer travelled over the network unsigned: it only names the height to wait for
/// (`claimed`); what this node tells its client is what it applied itself. Not applied here
/// (yet, or ever): 503 `not_yet` with this node's height, and the client asks again (a
/// resubmission of a committed transaction is answered with its receipt).
pub(crate) fn receipt_here(
    ledger: &medledger_ledger::Ledger,
    hash: &medledger_core::Hash,
    claimed: u64,
) -> Result<Receipt, ApiError> {
    if let Some(record) = ledger.transaction(hash)? {
        return Ok(record.receipt);
    }
    let height = ledger.tip().height;
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::NotYet,
        format!(
            "not yet: the leader reports transaction {hash} committed at height {claimed}; this \
             node has applied height {height} and does not hold it yet; ask again shortly"
        ),
    ))
}

/// The answers to a forwarded batch `txs` from this node's own ledger, one per transaction
/// in order (the leader's answer travelled unsigned, see [`receipt_here`]): a transaction this
/// node holds is answered with its own receipt, whatever the leader said; a receipt the leader
/// claims for one it does not hold yet is `not_yet`; a refusal by the leader for one it does
/// not hold passes through. An answer with another number of items than the batch is refused
/// as a whole: which transaction an item belongs to would be a guess.
pub(crate) fn batch_here(
    ledger: &medledger_ledger::Ledger,
    claimed: Vec<BatchItem>,
    txs: &[SignedTransaction],
) -> Result<Vec<BatchItem>, ApiError> {
    if claimed.len() != txs.len() {
        return Err(no_quorum(format!(
            "the leader answered {} items for a batch of {}",
            claimed.len(),
            txs.len()
        )));
    }
    let mut out = Vec::with_capacity(txs.len());
    for (item, tx) in claimed.into_iter().zip(txs) {
        out.push(match item {
            BatchItem::Receipt(claimed) => match receipt_here(ledger, &tx.hash(), claimed.height) {
                Ok(receipt) => BatchItem::Receipt(receipt),
                Err(e) => BatchItem::Error(e.into_body()),
            },
            BatchItem::Error(refusal) => match ledger.transaction(&tx.hash())? {
                Some(record) => BatchItem::Receipt(record.receipt),
                None => BatchItem::Error(refusal),
            },
        });
    }
    Ok(out)
}

/// Waits (at most [`APPLY_WAIT`]) until this node has applied `height`.
async fn applied_here(state: &AppState, height: u64) {
    let mut applied = state.applied.clone();
    let _ = tokio::time::timeout(APPLY_WAIT, applied.wait_for(|h| *h >= height)).await;
}

/// Waits for a queued transaction's receipt; in a cluster, until `deadline` at most, or until
/// this node stops leading or hears from no quorum for [`QUORUM_STALE_MS`] (a write that
/// cannot commit is answered in about 3 s, not after the whole [`COMMIT_TIMEOUT`]).
async fn wait_receipt(
    state: &AppState,
    rx: oneshot::Receiver<ProduceResult>,
    deadline: tokio::time::Instant,
) -> Result<Result<ProduceResult, oneshot::error::RecvError>, ApiError> {
    if !state.cluster.is_multi_node() {
        return Ok(rx.await);
    }
    let id = state.cluster.id;
    let mut metrics = state.cluster.raft.metrics();
    let lost = async move {
        let lost = metrics.wait_for(|m| {
            m.current_leader != Some(id)
                || m.millis_since_quorum_ack.is_none_or(|ms| ms > QUORUM_STALE_MS)
        });
        match lost.await {
            Ok(m) if m.current_leader != Some(id) => "this node stopped leading",
            _ => "this node has heard from no quorum for 3 s",
        }
    };
    let maybe_later = "the transaction may still commit later (its nonce keeps it from applying \
                       twice): ask again with the same transaction";
    tokio::select! {
        r = rx => Ok(r),
        why = lost => Err(no_quorum(format!("not committed: {why}; {maybe_later}"))),
        () = tokio::time::sleep_until(deadline) => Err(no_quorum(format!(
            "not committed within {} s: the cluster has no quorum; {maybe_later}",
            COMMIT_TIMEOUT.as_secs()
        ))),
    }
}

/// Runs a transaction as the next block would, writing nothing (see
/// [`crate::admission::simulate`]): would apply, or the refusal a submission would get.
async fn simulate(State(state): State<AppState>, body: Bytes) -> ApiResult<Simulation> {
    let tx = SignedTransaction::decode(&body).map_err(|e| bad_request(e.to_string()))?;
    let ok = crate::admission::signature_ok(&state.ledger, &tx);
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

/// Checks, admits and orders one transaction whose signature was checked already (`ok`), and
/// waits for its durable receipt; a refused transaction is an error carrying its outcome.
pub(crate) async fn submit_checked(
    state: &AppState,
    tx: SignedTransaction,
    ok: bool,
) -> Result<Receipt, ApiError> {
    submit_from(state, tx, ok, None).await
}

/// [`submit_checked`], for a submission another node `forwarded` here (`Some`, with the
/// forwarding node's id if its header names one) or not.
async fn submit_from(
    state: &AppState,
    tx: SignedTransaction,
    ok: bool,
    forwarded: Option<Option<u64>>,
) -> Result<Receipt, ApiError> {
    if let Some(leader) = leader_elsewhere(state, forwarded.is_some())? {
        let bytes = forward(state, &leader, paths::TRANSACTIONS, tx.encode()).await?;
        let claimed: Receipt = serde_json::from_slice(&bytes)
            .map_err(|e| no_quorum(format!("the leader's receipt does not decode: {e}")))?;
        applied_here(state, claimed.height).await;
        let receipt = receipt_here(&state.ledger, &tx.hash(), claimed.height)?;
        return match receipt.outcome {
            Outcome::Applied { .. } => Ok(receipt),
            Outcome::Refused { .. } => Err(ApiError::refused(receipt.outcome)),
        };
    }
    let started = Instant::now();
    let note = LogNote::of(&tx);
    // Every transaction is a write, the access transaction of an audited read included: a
    // read whose access cannot be committed is not served.
    writable(state, tx.encode().len() as u64)?;
    pull_blobs_of(state, &tx, ok, forwarded.flatten()).await;
    crate::admission::admit(state, &tx, ok).inspect_err(|e| {
        state.metrics.rejected.inc();
        log_rejected(state, &note, "transaction rejected at admission", e);
    })?;
    let rx = enqueue(state, tx).await?;
    let receipt =
        receipt_of(state, &note, started, wait_receipt(state, rx, commit_deadline()).await?)?;
    match receipt.outcome {
        Outcome::Applied { .. } => Ok(receipt),
        Outcome::Refused { .. } => Err(ApiError::refused(receipt.outcome)),
    }
}

async fn submit_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Vec<BatchItem>> {
    let started = Instant::now();
    // Decoded first: a malformed batch is refused here, not carried to the leader.
    let txs: Vec<SignedTransaction> = encoding::decode("transaction batch", &body, MAX_BATCH_BYTES)
        .map_err(|e| bad_request(e.to_string()))?;
    if let Some(leader) = leader_elsewhere(&state, is_forwarded(&headers))? {
        let bytes = forward(&state, &leader, paths::TRANSACTIONS_BATCH, body.to_vec()).await?;
        let claimed: Vec<BatchItem> = serde_json::from_slice(&bytes)
            .map_err(|e| no_quorum(format!("the leader's receipts do not decode: {e}")))?;
        let top = claimed
            .iter()
            .filter_map(|i| match i {
                BatchItem::Receipt(r) => Some(r.height),
                BatchItem::Error(_) => None,
            })
            .max();
        if let Some(height) = top {
            applied_here(&state, height).await;
        }
        return batch_here(&state.ledger, claimed, &txs).map(Json);
    }
    // The whole batch is refused when the disk is full: none of it is ordered.
    writable(&state, body.len() as u64)?;
    if txs.len() > MAX_BLOCK_TXS {
        return Err(bad_request(format!("at most {MAX_BLOCK_TXS} transactions per batch")));
    }
    if let Some(big) = txs.iter().find(|t| t.encode().len() > MAX_TX_BYTES) {
        return Err(bad_request(format!(
            "transaction {} exceeds {MAX_TX_BYTES} bytes",
            big.hash()
        )));
    }
    // Batch verification of the whole batch, on all cores, off the async workers.
    let ledger = state.ledger.clone();
    let (txs, ok) = tokio::task::spawn_blocking(move || {
        let ok = crate::admission::signatures_ok(&ledger, &txs);
        (txs, ok)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    enum Pending {
        Ordered(LogNote, oneshot::Receiver<ProduceResult>),
        Done(BatchItem),
    }
    let mut pending = Vec::with_capacity(txs.len());
    let first = forwarder(&headers);
    for (tx, ok) in txs.into_iter().zip(ok) {
        let note = LogNote::of(&tx);
        pull_blobs_of(&state, &tx, ok, first).await;
        pending.push(match crate::admission::admit(&state, &tx, ok) {
            Ok(()) => match enqueue(&state, tx).await {
                Ok(rx) => Pending::Ordered(note, rx),
                Err(e) => Pending::Done(BatchItem::Error(e.into_body())),
            },
            Err(e) => {
                state.metrics.rejected.inc();
                log_rejected(&state, &note, "transaction rejected at admission", &e);
                Pending::Done(BatchItem::Error(e.into_body()))
            }
        });
    }
    let mut out = Vec::with_capacity(pending.len());
    let deadline = commit_deadline();
    for p in pending {
        let item = match p {
            // Ordered transactions get their receipt, applied or refused.
            Pending::Ordered(note, rx) => match wait_receipt(&state, rx, deadline).await {
                Ok(r) => match receipt_of(&state, &note, started, r) {
                    Ok(r) => BatchItem::Receipt(r),
                    Err(e) => BatchItem::Error(e.into_body()),
                },
                Err(e) => BatchItem::Error(e.into_body()),
            },
            Pending::Done(item) => item,
        };
        out.push(item);
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use medledger_core::{
        Hash,
        block::{Genesis, Tip},
        ids::AccountId,
        keys::{DecryptionKey, SigningKey},
        tx::{NodeTx, Transaction, TxBody},
    };
    use medledger_ledger::Ledger;

    use super::*;

    /// A ledger holding one applied transaction (returned with its receipt), and a second
    /// signed transaction it does not hold.
    struct Fixture {
        _dir: tempfile::TempDir,
        ledger: Ledger,
        held: SignedTransaction,
        applied: Receipt,
        not_held: SignedTransaction,
    }

    fn fixture() -> Fixture {
        let regulator = SigningKey::generate();
        let genesis = Genesis {
            chain_id: "forward-test".into(),
            time_ms: 1,
            regulator_key: regulator.public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: SigningKey::generate().public_key(),
        };
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::create(&dir.path().join("l.redb"), genesis.clone()).unwrap();
        let suspend = |nonce| {
            Transaction {
                chain_id: "forward-test".into(),
                signer: AccountId::from_initial_key(&regulator.public_key()),
                nonce,
                body: TxBody::Nodes(NodeTx::Suspend {
                    node_key: SigningKey::generate().public_key(),
                }),
            }
            .sign(&regulator)
        };
        let held = suspend(1);
        let block = Tip::genesis(&genesis).propose(10, vec![held.clone()]);
        let applied = ledger.apply_block(&block, &[true], b"").unwrap().remove(0);
        Fixture { _dir: dir, ledger, held, applied, not_held: suspend(2) }
    }

    #[test]
    fn a_forwarded_receipt_is_what_this_node_applied_never_what_the_leader_claims() {
        let Fixture { ledger, held, applied, .. } = fixture();

        // The leader's answer names another height (or outcome): this node answers with its own.
        let here = receipt_here(&ledger, &held.hash(), 7).unwrap();
        assert_eq!(here, applied);
        assert_eq!(here.height, 1);

        // A receipt for a transaction this node does not hold: not yet, with its height.
        let err = receipt_here(&ledger, &Hash::of(b"never submitted"), 2).unwrap_err();
        assert_eq!(err.body().code, ErrorCode::NotYet);
        assert!(err.body().message.contains("has applied height 1"), "{}", err.body().message);
    }

    #[test]
    fn a_forwarded_batch_is_answered_from_this_nodes_ledger_item_by_item_or_refused_whole() {
        let Fixture { ledger, held, applied, not_held, .. } = fixture();
        let forged = |height| {
            let mut r = applied.clone();
            r.height = height;
            BatchItem::Receipt(r)
        };
        let refusal = || {
            BatchItem::Error(
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Busy, "forged refusal")
                    .into_body(),
            )
        };
        let txs = [held.clone(), not_held.clone(), not_held.clone(), held.clone()];
        let items =
            batch_here(&ledger, vec![forged(9), forged(9), refusal(), refusal()], &txs).unwrap();
        let codes: Vec<String> = items
            .iter()
            .map(|i| match i {
                BatchItem::Receipt(r) => format!("receipt at {}", r.height),
                BatchItem::Error(e) => format!("{:?}", e.code),
            })
            .collect();
        assert_eq!(
            codes,
            [
                // Held here: this node's receipt, not the leader's height...
                "receipt at 1".to_owned(),
                // ...a claimed receipt for one not held yet: ask again...
                format!("{:?}", ErrorCode::NotYet),
                // ...the leader's refusal of one not held passes...
                format!("{:?}", ErrorCode::Busy),
                // ...and a refusal of one this node holds is answered with its receipt.
                "receipt at 1".to_owned(),
            ]
        );
        assert!(matches!(&items[0], BatchItem::Receipt(r) if *r == applied));

        // One item too few or too many: which transaction an item is for would be a guess.
        for claimed in [vec![forged(1)], vec![forged(1), forged(1), refusal()]] {
            let n = claimed.len();
            let err = batch_here(&ledger, claimed, &[held.clone(), not_held.clone()]).unwrap_err();
            assert_eq!(err.body().code, ErrorCode::NoQuorum);
            assert!(
                err.body().message.contains(&format!("answered {n} items for a batch of 2")),
                "{}",
                err.body().message
            );
        }
    }
}
