//! Record routes: token queries, the streamed upload into the vault, and the audited read.
//!
//! The audited read ([`crate::audited`]): the reader signs an access transaction naming the
//! record; only after an allowed, durable receipt does the node stream the reader's wrapped
//! key, the sealed metadata and the ciphertext, each checked against its hash first.

use std::io::Read;

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use medledger_api::{BlobStored, ReadPreamble, RecordView};
use medledger_core::{
    Hash,
    cid::Cid,
    encoding,
    ids::AccountId,
    tx::consent::{Basis, Decision, Denial, Resource},
};
use medledger_ledger::state::RecordEntry;
use medledger_vault::{BlobError, BlobStore};
use serde::Deserialize;

use crate::{
    audited::AccessRead,
    auth::Signed,
    http::{ApiError, ApiResult, AppState, forbidden, parse_account},
};

/// The API view of a token.
pub(crate) fn view(pmr: String, r: RecordEntry) -> RecordView {
    RecordView {
        cid: Cid::from_hash(r.content).to_string(),
        pmr,
        patient: r.patient,
        owner: r.owner,
        author: r.author,
        hospital: r.hospital,
        category: r.category,
        visit_date: r.visit_date,
        content: r.content,
        size: r.size,
        metadata: r.metadata,
        version: r.version,
        supersedes: r.supersedes,
        superseded_by: r.superseded_by,
        approved: r.approved,
        minted_at: r.minted_at,
        minted_time_ms: r.minted_time_ms,
        mint_tx: r.mint_tx,
        erased_at: r.erased_at,
        sharing: r.sharing.map(|sh| medledger_api::SharingView {
            threshold: sh.threshold,
            custodians: sh.custodians,
        }),
    }
}

/// Whether `who` may see that a token exists (not its content): its patient, owner, a
/// delegate, its author or the author's hospital, a custodian of its key, or anyone
/// `authorize` would let read it now for some purpose on a basis other than an open
/// break-glass ([`crate::audited::readable_now`]): under break-glass alone the token is
/// answered as missing, listed or named by its id; the audited overview lists it (M6).
fn may_see_token(
    state: &AppState,
    who: &AccountId,
    pmr: &str,
    r: &RecordEntry,
) -> Result<bool, ApiError> {
    if [r.patient, r.owner, r.author, r.hospital].contains(who)
        || r.sharing.as_ref().is_some_and(|sh| sh.custodians.contains(who))
        || state.ledger.is_delegate(&r.patient, who)?
    {
        return Ok(true);
    }
    let resource = Resource {
        patient: r.patient,
        category: Some(r.category),
        record: Some(pmr.to_owned()),
        case: None,
    };
    crate::audited::readable_now(state, who, &resource)
}

fn not_found(pmr: &str) -> ApiError {
    ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", format!("no record {pmr}"))
}

/// `GET /v1/records/{pmr}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(pmr): Path<String>,
) -> ApiResult<RecordView> {
    let r = state.ledger.record(&pmr)?.ok_or_else(|| not_found(&pmr))?;
    if !may_see_token(&state, &requester, &pmr, &r)? {
        // The same answer as for a record that does not exist: no probing for PMR-IDs.
        return Err(not_found(&pmr));
    }
    Ok(Json(view(pmr, r)))
}

/// `GET /v1/records/{pmr}/history`.
pub(crate) async fn history(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(pmr): Path<String>,
) -> ApiResult<Vec<RecordView>> {
    let r = state.ledger.record(&pmr)?.ok_or_else(|| not_found(&pmr))?;
    if !may_see_token(&state, &requester, &pmr, &r)? {
        return Err(not_found(&pmr));
    }
    let versions = state.ledger.record_history(&pmr)?;
    Ok(Json(versions.into_iter().map(|(id, r)| view(id, r)).collect()))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    owner: Option<String>,
    patient: Option<String>,
}

/// `GET /v1/records?owner=` (the owner or a delegate of theirs) or `?patient=` (the patient
/// and delegates see all; anyone else only the tokens they may see).
pub(crate) async fn list(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Query(q): Query<ListQuery>,
) -> ApiResult<Vec<RecordView>> {
    match (q.owner, q.patient) {
        (Some(owner), None) => {
            let owner = parse_account(&owner)?;
            if owner != requester && !state.ledger.is_delegate(&owner, &requester)? {
                return Err(forbidden("only the owner or a delegate of theirs lists their tokens"));
            }
            let list = state.ledger.records_owned_by(&owner)?;
            Ok(Json(list.into_iter().map(|(id, r)| view(id, r)).collect()))
        }
        (None, Some(patient)) => {
            let patient = parse_account(&patient)?;
            let mut out = Vec::new();
            for (id, r) in state.ledger.records_of_patient(&patient)? {
                if may_see_token(&state, &requester, &id, &r)? {
                    out.push(view(id, r));
                }
            }
            Ok(Json(out))
        }
        _ => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "malformed",
            "give exactly one of ?owner= and ?patient=",
        )),
    }
}

/// An error from the vault, as an API error: refusals are the client's (4xx), the rest are
/// the operator's, and corruption is logged loudly.
pub(crate) fn blob_error(e: BlobError) -> ApiError {
    if e.is_out_of_space() {
        return crate::http::disk_full_now(e);
    }
    let status = match &e {
        BlobError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BlobError::QuotaExceeded { .. } => StatusCode::INSUFFICIENT_STORAGE,
        BlobError::CidMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        _ if e.is_refusal() => StatusCode::BAD_REQUEST,
        BlobError::Corrupt { .. } => {
            tracing::error!(error = %e, "vault corruption: a damaged blob was not served");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => {
            tracing::error!(error = %e, "vault failure");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let code = match &e {
        BlobError::TooLarge { .. } => "too_large",
        BlobError::QuotaExceeded { .. } => "quota_exceeded",
        BlobError::CidMismatch { .. } => "cid_mismatch",
        BlobError::Corrupt { .. } => "corrupt",
        _ if e.is_refusal() => "refused",
        _ => "internal",
    };
    ApiError::new(status, code, e.to_string())
}

fn joined(e: tokio::task::JoinError) -> ApiError {
    ApiError::internal(format!("a vault task failed: {e}"))
}

#[derive(Debug, Deserialize)]
pub(crate) struct UploadQuery {
    /// The SHA-256 (hex) the client expects the bytes to have.
    sha256: Option<String>,
}

/// `POST /v1/vault`: streams the body into the vault for the signer's quota. The signature
/// covers the method, path and query but no body (a streaming client cannot know it up front):
/// the content address binds the bytes instead, and a truncated or altered upload never
/// becomes visible.
pub(crate) async fn upload(
    state: State<AppState>,
    uploader: Signed,
    q: Query<UploadQuery>,
    body: Body,
) -> Response {
    match receive(state, uploader, q, body).await {
        Ok(stored) => stored.into_response(),
        // A refusal may come before the body is read to its end: the connection cannot carry
        // another request, so the client must not reuse it (it would find it closed).
        Err(e) => {
            let mut response = e.into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            response
        }
    }
}

async fn receive(
    State(state): State<AppState>,
    Signed(uploader): Signed,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> ApiResult<BlobStored> {
    let expected = q
        .sha256
        .as_deref()
        .map(|h| {
            Hash::from_hex(h).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    format!("{h:?} is not a SHA-256"),
                )
            })
        })
        .transpose()?;
    crate::http::writable(&state, 0)?;
    let vault = state.vault.clone();
    let mut upload = tokio::task::spawn_blocking(move || {
        vault.begin_upload(uploader, expected.map(Cid::from_hash))
    })
    .await
    .map_err(joined)?
    .map_err(blob_error)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "upload_interrupted",
                format!("the upload was interrupted ({e}); nothing was stored"),
            )
        })?;
        // Each chunk counts against the free-space reserve: an upload that would eat into it
        // is refused, and dropping `upload` deletes its temporary file.
        crate::http::writable(&state, chunk.len() as u64)?;
        // A write lands in the page cache; hashing 64 KiB takes tens of microseconds.
        tokio::task::block_in_place(|| upload.write_chunk(&chunk)).map_err(blob_error)?;
    }
    let stored = tokio::task::spawn_blocking(move || upload.finish())
        .await
        .map_err(joined)?
        .map_err(blob_error)?;
    Ok(Json(BlobStored { hash: stored.cid.hash(), size: stored.len }))
}

/// `POST /v1/records/{pmr}/read`: the audited read ([`crate::audited`]). The body is the
/// reader's access transaction for the record.
pub(crate) async fn read(
    State(state): State<AppState>,
    Path(pmr): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let read = AccessRead::open(&state, &body)?;
    let reader = read.reader();
    let record = state.ledger.record(&pmr)?.ok_or_else(|| read.missing(&state, not_found(&pmr)))?;
    read.access_naming(&format!("record {pmr}"), |r| r.record.as_deref() == Some(pmr.as_str()))?;
    // L5: an access that names the record with another patient or category (to borrow a
    // grant) is likely denied as a false declaration: nothing is read from the vault, and the
    // denial is committed to the trail of the record's real patient (charged at admission to
    // the reader's allowance of denied reads), whether or not the record was erased.
    let likely = read.likely(&state)?;
    if let Some(height) = record.erased_at
        && !matches!(likely, Decision::Deny(Denial::NotAsNamed))
    {
        return Err(ApiError::new(
            StatusCode::GONE,
            "erased",
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
            "no_key",
            format!("record {pmr} has no data key wrapped to {key_holder}: {hint}; nothing was logged"),
        )
    })?;
    let vault = state.vault.clone();
    let (content, metadata) = (record.content, record.metadata);
    let share_blobs = state.ledger.record_shares(pmr, &reader)?;
    tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let key = vault.get(&key_blob).map_err(crate::http::vault_error)?;
        let meta = vault.get(&metadata).map_err(crate::http::vault_error)?;
        let mut shares = Vec::with_capacity(share_blobs.len());
        for (index, h) in share_blobs {
            let bytes = vault.get(&h).map_err(crate::http::vault_error)?.ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_in_vault",
                    format!("key share {index} is not in this node's vault"),
                )
            })?;
            shares.push((index, bytes));
        }
        let blob = vault.open_verified(&content).map_err(blob_error)?;
        match (key, meta, blob) {
            (Some(wrapped_key), Some(metadata), Some(blob)) => {
                Ok(Prepared { key_holder, wrapped_key, metadata, shares, blob })
            }
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_in_vault",
                format!("this node's vault does not hold all of record {content}"),
            )),
        }
    })
    .await
    .map_err(joined)?
}

/// The body of an allowed record read: the length-prefixed preamble, then the ciphertext,
/// streamed from the vault.
fn stream(preamble: &ReadPreamble, blob: medledger_vault::VerifiedBlob) -> Response {
    let head = encoding::encode(preamble);
    let mut first = Vec::with_capacity(4 + head.len());
    first.extend_from_slice(&(head.len() as u32).to_be_bytes());
    first.extend_from_slice(&head);
    let (tx_chunks, rx_chunks) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    // The channel is empty and holds 8: the first chunk always fits.
    let _ = tx_chunks.try_send(Ok(Bytes::from(first)));
    tokio::task::spawn_blocking(move || {
        let mut reader = blob.into_reader();
        loop {
            // `take` + `read_to_end` fills uninitialised capacity: no zeroing of each buffer.
            let mut buf = Vec::with_capacity(READ_CHUNK);
            match (&mut reader).take(READ_CHUNK as u64).read_to_end(&mut buf) {
                Ok(0) => break,
                Ok(_) => {
                    if tx_chunks.blocking_send(Ok(Bytes::from(buf))).is_err() {
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
pub(crate) async fn own_key(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(pmr): Path<String>,
) -> ApiResult<medledger_api::OwnKey> {
    let no_key = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no key of record {pmr} is wrapped to {requester}"),
        )
    };
    let blob = state.ledger.record_key(&pmr, &requester)?.ok_or_else(no_key)?;
    let bytes = state.vault.get(&blob).map_err(crate::http::vault_error)?.ok_or_else(no_key)?;
    Ok(Json(medledger_api::OwnKey { wrapped_hex: hex::encode(bytes) }))
}

/// `GET /v1/records/{pmr}/shares`: the key shares the requester holds (a custodian its own;
/// a reader those released to it). Each is wrapped to the requester, so serving them reveals
/// nothing to anyone else.
pub(crate) async fn shares(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(pmr): Path<String>,
) -> ApiResult<Vec<medledger_api::ShareBlob>> {
    let held = state.ledger.record_shares(&pmr, &requester)?;
    let vault = state.vault.clone();
    let out = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let mut out = Vec::with_capacity(held.len());
        for (index, h) in held {
            if let Some(bytes) = vault.get(&h).map_err(crate::http::vault_error)? {
                out.push(medledger_api::ShareBlob { index, wrapped_hex: hex::encode(bytes) });
            }
        }
        Ok(out)
    })
    .await
    .map_err(joined)??;
    Ok(Json(out))
}
