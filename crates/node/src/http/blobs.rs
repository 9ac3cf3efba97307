//! Blob routes: the streamed upload into the vault (`POST /v1/vault`, record, case and device
//! blobs, for the signer's quota), sealed registration details (`PUT /v1/blobs`, for those who
//! register people, devices or thresholds), and the signed read of registration details that
//! the ledger names (`GET /v1/blobs/{hash}`). Record, case and device blobs leave the vault only
//! through the audited reads. `GET /v1/vault/status` and `POST /v1/vault/repair` report and
//! repair this node's replicas (`raft/replicas.rs`).

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use futures_util::StreamExt;
use medledger_api::{BlobStored, ErrorCode, paths};
use medledger_core::{Hash, cid::Cid};
use medledger_vault::{BlobStore, MAX_BLOB_BYTES, VaultError};
use serde::Deserialize;

use crate::{
    app::AppState,
    auth::Signed,
    http::{
        error::{
            ApiError, ApiResult, bad_request, blob_error, forbidden, joined, not_found, parse_hash,
            refuse_erased, vault_error,
        },
        submit::writable,
    },
    limits::{MAX_BLOB_BODY_BYTES, large_body},
};

/// The blob routes.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(paths::BLOBS, large_body(state, put(put_blob), MAX_BLOB_BODY_BYTES))
        .route(&format!("{}/{{hash}}", paths::BLOBS), get(get_blob))
        .route(paths::VAULT, post(upload).layer(DefaultBodyLimit::disable()))
        .route(paths::VAULT_STATUS, get(vault_status))
        .route(paths::VAULT_REPAIR, post(vault_repair))
}

/// `GET /v1/vault/status`: this node's replicas as of its last repair pass (unsigned:
/// consortium infrastructure; counts and blob names, nothing of their content).
async fn vault_status(State(state): State<AppState>) -> Json<medledger_api::VaultStatus> {
    Json(state.replicas.status())
}

/// `POST /v1/vault/repair`: asks for a repair pass (unsigned and cheap to ask: passes are at
/// least 30 s apart, and requests in between are folded into the next); the status as it
/// stands, with `repair_pending` set. 409 `refused` on a node without peers, which has
/// nothing to repair from.
async fn vault_repair(
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<medledger_api::VaultStatus>), ApiError> {
    if !state.replicas.has_peers() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Refused,
            "this node has no peers: a one-node network keeps the only copy of each blob and has nothing to repair from",
        ));
    }
    state.replicas.request_repair();
    Ok((StatusCode::ACCEPTED, Json(state.replicas.status())))
}

async fn put_blob(
    State(state): State<AppState>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
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
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(blob_error)?;
    forget_if_erased(&state, &hash)?;
    Ok(Json(BlobStored { hash, size }))
}

async fn get_blob(
    State(state): State<AppState>,
    _: Signed,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    let hash = parse_hash(&hash)?;
    let missing = || not_found(format!("no blob {hash}"));
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
    state.replicas.ensure_present([hash]).await;
    let bytes = state.vault.get(&hash).map_err(vault_error)?.ok_or_else(missing)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    /// The SHA-256 (hex) the client expects the bytes to have.
    sha256: Option<String>,
}

/// `POST /v1/vault`: streams the body into the vault for the signer's quota. The signature
/// covers the method, path and query but no body (a streaming client cannot know it up front):
/// the content address binds the bytes instead, and a truncated or altered upload never
/// becomes visible.
async fn upload(
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
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
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
        .map(|h| Hash::from_hex(h).map_err(|_| bad_request(format!("{h:?} is not a SHA-256"))))
        .transpose()?;
    writable(&state, 0)?;
    if let Some(hash) = &expected {
        refuse_erased(&state.ledger, hash)?;
    }
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
                ErrorCode::UploadInterrupted,
                format!("the upload was interrupted ({e}); nothing was stored"),
            )
        })?;
        // Each chunk counts against the free-space reserve: an upload that would eat into it
        // is refused, and dropping `upload` deletes its temporary file.
        writable(&state, chunk.len() as u64)?;
        // A write lands in the page cache; hashing 64 KiB takes tens of microseconds.
        tokio::task::block_in_place(|| upload.write_chunk(&chunk)).map_err(blob_error)?;
    }
    let stored = tokio::task::spawn_blocking(move || upload.finish())
        .await
        .map_err(joined)?
        .map_err(blob_error)?;
    let hash = stored.cid.hash();
    forget_if_erased(&state, &hash)?;
    Ok(Json(BlobStored { hash, size: stored.len }))
}

/// After an upload: if its bytes are an erased blob's, deletes them again (no such blob is
/// kept, and none could be in use) and refuses with 410 `erased`.
fn forget_if_erased(state: &AppState, hash: &Hash) -> Result<(), ApiError> {
    refuse_erased(&state.ledger, hash).inspect_err(|_| {
        if let Err(e) = state.vault.delete(hash) {
            tracing::error!(blob = %hash, error = %e, "cannot delete an upload of an erased blob");
        }
    })
}
