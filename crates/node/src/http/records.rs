//! Record routes: token queries (to those who may see a token: `Ledger::record_visible_to`),
//! the signer's own wrapped key and key shares, and the audited read.
//!
//! The audited read ([`crate::audited`]): the reader signs an access transaction naming the
//! record; only after an allowed, durable receipt does the node stream the reader's wrapped
//! key, the sealed metadata and the ciphertext, each checked against its hash first.

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use medledger_api::{ErrorCode, OwnKey, ReadPreamble, RecordView, ShareBlob, paths};
use medledger_core::{
    encoding,
    ids::AccountId,
    tx::consent::{Basis, Decision},
};
use medledger_ledger::state::RecordEntry;
use medledger_vault::BlobStore;
use serde::Deserialize;

use crate::{
    app::AppState,
    audited::AccessRead,
    auth::Signed,
    http::{
        error::{
            ApiError, ApiResult, bad_request, blob_error, forbidden, joined, not_found,
            not_in_vault, parse_account, vault_error,
        },
        views,
    },
    limits::signed_body,
};

/// The record routes.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(paths::RECORDS, get(list))
        .route(&format!("{}/{{pmr}}", paths::RECORDS), get(token))
        .route(&format!("{}/{{pmr}}/history", paths::RECORDS), get(history))
        .route(&format!("{}/{{pmr}}/shares", paths::RECORDS), get(shares))
        .route(&format!("{}/{{pmr}}/key", paths::RECORDS), get(own_key))
        .route(&format!("{}/{{pmr}}/read", paths::RECORDS), signed_body(state, post(read)))
}

fn no_record(pmr: &str) -> ApiError {
    not_found(format!("no record {pmr}"))
}

/// The token `pmr` if `requester` may see it; otherwise the same answer as for a record that
/// does not exist: no probing for PMR-IDs.
fn visible(state: &AppState, requester: &AccountId, pmr: &str) -> Result<RecordEntry, ApiError> {
    let now = crate::admission::now_ms();
    state.ledger.record_visible_to(requester, pmr, now)?.ok_or_else(|| no_record(pmr))
}

/// `GET /v1/records/{pmr}`.
async fn token(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(pmr): Path<String>,
) -> ApiResult<RecordView> {
    let r = visible(&state, &requester, &pmr)?;
    Ok(Json(shown(&state, &requester, pmr, r, crate::admission::now_ms())?))
}

/// Token `pmr` (`r`) as `requester`, who may see it, is shown it: its links to other versions
/// (`supersedes`, `superseded_by`) only where they may see that version too, since a PMR-ID
/// carries the Patient-ID and a visit date.
fn shown(
    state: &AppState,
    requester: &AccountId,
    pmr: String,
    r: RecordEntry,
    now: u64,
) -> Result<RecordView, ApiError> {
    let mut view = views::record(pmr, r);
    for link in [&mut view.supersedes, &mut view.superseded_by] {
        if let Some(id) = link.as_deref()
            && state.ledger.record_visible_to(requester, id, now)?.is_none()
        {
            *link = None;
        }
    }
    Ok(view)
}

/// `GET /v1/records/{pmr}/history`: the versions of a record the requester may see, each
/// judged by itself (seeing one version is not seeing the others: a grant of one record, or a
/// research export's read of one, shows neither the amendments made since nor an erased
/// earlier version).
async fn history(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(pmr): Path<String>,
) -> ApiResult<Vec<RecordView>> {
    visible(&state, &requester, &pmr)?;
    let now = crate::admission::now_ms();
    // One visibility judgement per version (and per link): on a blocking thread.
    let worker = state.clone();
    let versions = tokio::task::spawn_blocking(move || {
        let mut versions = Vec::new();
        for (id, r) in worker.ledger.record_history(&pmr)? {
            if worker.ledger.record_entry_visible_to(&requester, &id, &r, now)? {
                versions.push(shown(&worker, &requester, id, r, now)?);
            }
        }
        Ok::<_, ApiError>(versions)
    })
    .await
    .map_err(crate::http::error::joined)??;
    Ok(Json(versions))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    owner: Option<String>,
    patient: Option<String>,
}

/// `GET /v1/records?owner=` (the owner or a delegate of theirs) or `?patient=` (the patient
/// and delegates see all; anyone else only the tokens they may see).
async fn list(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Query(q): Query<ListQuery>,
) -> ApiResult<Vec<RecordView>> {
    match (q.owner, q.patient) {
        (Some(owner), None) => {
            let owner = parse_account(&owner)?;
            if !state.ledger.acts_for(&requester, &owner)? {
                return Err(forbidden("only the owner or a delegate of theirs lists their tokens"));
            }
            let list = state.ledger.records_owned_by(&owner)?;
            Ok(Json(list.into_iter().map(|(id, r)| views::record(id, r)).collect()))
        }
        (None, Some(patient)) => {
            let patient = parse_account(&patient)?;
            let now = crate::admission::now_ms();
            let list = state.ledger.records_of_patient_visible_to(&requester, &patient, now)?;
            let views = list.into_iter().map(|(id, r)| shown(&state, &requester, id, r, now));
            Ok(Json(views.collect::<Result<_, _>>()?))
        }
        _ => Err(bad_request("give exactly one of ?owner= and ?patient=")),
    }
}

/// `POST /v1/records/{pmr}/read`: the audited read ([`crate::audited`]). The body is the
/// reader's access transaction for the record.
async fn read(
    State(state): State<AppState>,
    Path(pmr): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let read = AccessRead::open(&state, &body)?;
    let reader = read.reader();
    // What the body names is checked before the record is looked up: a body that is never
    // submitted must not tell which records exist.
    read.access_naming(&format!("record {pmr} with its category, and no case"), |r| {
        r.record.as_deref() == Some(pmr.as_str()) && r.category.is_some() && r.case.is_none()
    })?;
    let record = state.ledger.record(&pmr)?.ok_or_else(|| read.missing(&state, no_record(&pmr)))?;
    // L5: an access that names the record with another patient or category (to borrow a
    // grant) is likely denied as a false declaration: nothing is read from the vault, and the
    // denial is committed to the trail of the record's real patient (charged at admission to
    // the reader's allowance of denied reads), whether or not the record was erased. An
    // erased record is said to be erased only to a reader the ledger would let read it; to
    // any other, named as it is, it is answered as a missing one (charged alike).
    let likely = read.likely(&state)?;
    if record.erased_at.is_some()
        && !likely.is_allowed()
        && !matches!(likely, Decision::Deny(medledger_core::tx::consent::Denial::NotAsNamed))
    {
        return Err(read.missing(&state, no_record(&pmr)));
    }
    if let Some(height) = record.erased_at
        && likely.is_allowed()
    {
        return Err(ApiError::new(
            StatusCode::GONE,
            ErrorCode::Erased,
            format!(
                "record {pmr} was erased at block {height}: its content and keys are destroyed"
            ),
        ));
    }
    let released =
        read.serve(&state, likely, |likely| prepare(&state, &pmr, &record, reader, likely)).await?;
    let Prepared { key_holder, wrapped_key, metadata, shares, blob } = released.value;
    let preamble = ReadPreamble {
        pmr,
        event: released.event,
        height: released.height,
        key_holder,
        wrapped_key,
        metadata,
        content: record.content,
        size: blob.len(),
        shares,
    };
    Ok(stream(&preamble, blob))
}

/// What an allowed record read serves, read and hash-checked before the access is committed.
struct Prepared {
    key_holder: AccountId,
    wrapped_key: Vec<u8>,
    metadata: Vec<u8>,
    shares: Vec<(u8, Vec<u8>)>,
    blob: medledger_vault::VerifiedBlob,
}

async fn prepare(
    state: &AppState,
    pmr: &str,
    record: &RecordEntry,
    reader: AccountId,
    likely: Decision,
) -> Result<Prepared, ApiError> {
    // The reader's own wrapped key when there is one (an author, a grantee the patient
    // shared the key with). Under break-glass without one, the key wrapped to the patient's
    // emergency key, which opens with the escrow the custodians released to the reader.
    // The preamble says which, so the client unwraps with the matching key.
    let emergency = AccountId::emergency_of(&record.patient);
    let (key_holder, own) = match state.ledger.record_key(pmr, &reader)? {
        Some(own) => (reader, Some(own)),
        None if matches!(likely, Decision::Allow(Basis::BreakGlass { .. })) => {
            (emergency, state.ledger.record_key(pmr, &emergency)?)
        }
        None => (reader, None),
    };
    let key_blob = own.ok_or_else(|| {
        let hint = if key_holder == emergency {
            "it was not wrapped to the patient's emergency key: ask the patient to run `medledger emergency wrap-records` (saving the profile with --open-records does it too)"
        } else {
            "ask the patient to share it (medledger record share)"
        };
        ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NoKey,
            format!("record {pmr} has no data key wrapped to {key_holder}: {hint}; nothing was logged"),
        )
    })?;
    let vault = state.vault.clone();
    let (content, metadata) = (record.content, record.metadata);
    let share_blobs = state.ledger.record_shares(pmr, &reader)?;
    // What this node lacks is pulled from a peer first (hash-checked as it is stored), before
    // the access is committed; what no peer has is answered `not_in_vault` below.
    let mut wanted = vec![key_blob, metadata, content];
    wanted.extend(share_blobs.iter().map(|(_, h)| *h));
    state.replicas.ensure_present(wanted).await;
    // A damaged copy is never served: it is replaced with a peer's once, then read again.
    let mut replaced = false;
    loop {
        let (vault, share_blobs) = (vault.clone(), share_blobs.clone());
        let read = tokio::task::spawn_blocking(move || {
            read_record(&vault, key_holder, key_blob, metadata, content, share_blobs)
        })
        .await
        .map_err(joined)?;
        match read {
            Ok(prepared) => return Ok(prepared),
            Err(Unread::Damaged(hash, e)) if !replaced && state.replicas.has_peers() => {
                replaced = true;
                if let Err(failed) = state.replicas.replace_damaged(&hash).await {
                    tracing::error!(error = %failed, "a damaged replica could not be replaced");
                    return Err(*e);
                }
            }
            Err(Unread::Damaged(_, e) | Unread::Other(e)) => return Err(*e),
        }
    }
}

/// Why a record was not read from the vault: a blob's copy here is damaged (its hash), or
/// anything else.
enum Unread {
    Damaged(medledger_core::Hash, Box<ApiError>),
    Other(Box<ApiError>),
}

/// Reads the record's blobs from this node's vault, each hash-checked.
fn read_record(
    vault: &medledger_vault::FsVault,
    key_holder: AccountId,
    key_blob: medledger_core::Hash,
    metadata: medledger_core::Hash,
    content: medledger_core::Hash,
    share_blobs: Vec<(u8, medledger_core::Hash)>,
) -> Result<Prepared, Unread> {
    let get = |h: &medledger_core::Hash| match vault.get(h) {
        Ok(bytes) => Ok(bytes),
        Err(e @ medledger_vault::VaultError::Corrupt { .. }) => {
            Err(Unread::Damaged(*h, Box::new(vault_error(e))))
        }
        Err(e) => Err(Unread::Other(Box::new(vault_error(e)))),
    };
    let key = get(&key_blob)?;
    let meta = get(&metadata)?;
    let mut shares = Vec::with_capacity(share_blobs.len());
    for (index, h) in share_blobs {
        let bytes = get(&h)?.ok_or_else(|| {
            Unread::Other(Box::new(not_in_vault(format!(
                "key share {index} is not in this node's vault"
            ))))
        })?;
        shares.push((index, bytes));
    }
    let blob = match vault.open_verified(&content) {
        Ok(blob) => blob,
        Err(e @ medledger_vault::BlobError::Corrupt { .. }) => {
            return Err(Unread::Damaged(content, Box::new(blob_error(e))));
        }
        Err(e) => return Err(Unread::Other(Box::new(blob_error(e)))),
    };
    match (key, meta, blob) {
        (Some(wrapped_key), Some(metadata), Some(blob)) => {
            Ok(Prepared { key_holder, wrapped_key, metadata, shares, blob })
        }
        _ => Err(Unread::Other(Box::new(not_in_vault(format!(
            "this node's vault does not hold all of record {content}"
        ))))),
    }
}

/// The body of an allowed record read: the length-prefixed preamble, then the ciphertext,
/// streamed from the vault.
fn stream(preamble: &ReadPreamble, blob: medledger_vault::VerifiedBlob) -> Response {
    let head = encoding::encode(preamble);
    let mut first = Vec::with_capacity(4 + head.len());
    first.extend_from_slice(&(head.len() as u32).to_be_bytes());
    first.extend_from_slice(&head);
    stream_blob(first, blob)
}

/// A response streaming `first` (if not empty), then `blob` from the vault. A blob the vault
/// checked in memory is handed on as it is (no second copy, no reading thread).
pub(crate) fn stream_blob(first: Vec<u8>, blob: medledger_vault::VerifiedBlob) -> Response {
    let blob = match blob.into_bytes() {
        Ok(bytes) => {
            let chunks = [first, bytes]
                .into_iter()
                .filter(|chunk| !chunk.is_empty())
                .map(|chunk| Ok::<_, std::io::Error>(Bytes::from(chunk)));
            return (
                [(header::CONTENT_TYPE, "application/octet-stream")],
                Body::from_stream(futures_util::stream::iter(chunks)),
            )
                .into_response();
        }
        Err(blob) => blob,
    };
    let (tx_chunks, rx_chunks) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    // The channel is empty and holds 8: the first chunk always fits.
    if !first.is_empty() {
        let _ = tx_chunks.try_send(Ok(Bytes::from(first)));
    }
    tokio::task::spawn_blocking(move || {
        let mut blob = blob;
        loop {
            match blob.read_chunk(READ_CHUNK) {
                Ok(chunk) if chunk.is_empty() => break,
                Ok(chunk) => {
                    if tx_chunks.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                        break; // the reader hung up
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "stopped serving a record: the vault read failed");
                    let _ = tx_chunks.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx_chunks, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    ([(header::CONTENT_TYPE, "application/octet-stream")], Body::from_stream(stream))
        .into_response()
}

/// How much of a record is read from the vault at a time while serving it.
const READ_CHUNK: usize = 1024 * 1024;

/// `GET /v1/records/{pmr}/key`: the data key (or essential share) wrapped to the requester.
/// Useless without the ciphertext, which only the audited read releases; the patient's
/// wallet uses it to re-wrap the key for someone they grant access to.
async fn own_key(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(pmr): Path<String>,
) -> ApiResult<OwnKey> {
    let no_key = || not_found(format!("no key of record {pmr} is wrapped to {requester}"));
    let blob = state.ledger.record_key(&pmr, &requester)?.ok_or_else(no_key)?;
    state.replicas.ensure_present([blob]).await;
    let bytes = state.vault.get(&blob).map_err(vault_error)?.ok_or_else(no_key)?;
    Ok(Json(OwnKey { wrapped_hex: hex::encode(bytes), tx: None }))
}

/// `GET /v1/records/{pmr}/shares`: the key shares the requester holds (a custodian its own;
/// a reader those released to it). Each is wrapped to the requester, so serving them reveals
/// nothing to anyone else.
async fn shares(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(pmr): Path<String>,
) -> ApiResult<Vec<ShareBlob>> {
    let held = state.ledger.record_shares(&pmr, &requester)?;
    state.replicas.ensure_present(held.iter().map(|(_, h)| *h).collect::<Vec<_>>()).await;
    let vault = state.vault.clone();
    let out = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let mut out = Vec::with_capacity(held.len());
        for (index, h) in held {
            if let Some(bytes) = vault.get(&h).map_err(vault_error)? {
                out.push(ShareBlob { index, wrapped_hex: hex::encode(bytes) });
            }
        }
        Ok(out)
    })
    .await
    .map_err(joined)??;
    Ok(Json(out))
}
