//! Device routes: device and session queries, a session's digests and alerts, and the audited
//! read of a session's sealed readings.
//!
//! Who sees a device, its sessions and their digests: the patient and their delegates, the
//! device itself, the party that registered it, the session's doctor and the thresholds'
//! author, and anyone `authorize` would let read the patient's device data now on a basis
//! other than an open break-glass (M6: under break-glass alone, the audited overview lists
//! them; `Ledger::device_visible_to`). Everyone else
//! gets "not found", as for a device that does not exist. Reading the content (the sealed
//! readings) goes through an audited access like a record read: the reader's access
//! transaction for the patient's device data is committed, allowed or denied, before any blob
//! leaves the vault.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use medledger_api::{
    DeviceView, ErrorCode, SessionDataRead, SessionReadingsView, SessionView, paths,
};
use medledger_core::{
    Hash, encoding,
    ids::AccountId,
    tx::consent::{RecordCategory, Resource},
};
use medledger_ledger::state::{DeviceEntry, SessionEntry};
use medledger_vault::BlobStore;
use serde::Deserialize;

use crate::{
    app::AppState,
    audited::AccessRead,
    auth::Signed,
    http::{
        error::{
            ApiError, ApiResult, not_found, not_in_vault, parse_account, parse_hash, vault_error,
        },
        views,
    },
    limits::signed_body,
};

/// Most batches one audited read returns (each up to a few MiB of readings).
const MAX_READ_BATCHES: usize = 64;
/// Most batches one digest listing returns.
const MAX_LIST_BATCHES: usize = 1000;

/// The device routes.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(paths::DEVICES, get(list))
        .route(&format!("{}/{{id}}", paths::DEVICES), get(device))
        .route(&format!("{}/{{id}}/sessions", paths::DEVICES), get(sessions))
        .route(&format!("{}/{{id}}", paths::DEVICE_SESSIONS), get(session))
        .route(&format!("{}/{{id}}/readings", paths::DEVICE_SESSIONS), get(readings))
        .route(&format!("{}/{{id}}/read", paths::DEVICE_SESSIONS), signed_body(state, post(read)))
}

fn device_data(patient: AccountId) -> Resource {
    Resource { patient, category: Some(RecordCategory::DeviceData), record: None, case: None }
}

fn no_session(id: &Hash) -> ApiError {
    not_found(format!("no device session {id}"))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    patient: String,
}

/// `GET /v1/devices?patient=ID`: the devices of a patient the signer may see (not those only
/// an open break-glass opens: the audited overview lists those).
async fn list(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Query(q): Query<ListQuery>,
) -> ApiResult<Vec<DeviceView>> {
    let patient = parse_account(&q.patient)?;
    let now = crate::admission::now_ms();
    let list = state.ledger.devices_of_patient_visible_to(&requester, &patient, now)?;
    let views = list.into_iter().map(|(id, d)| views::device(&state.ledger, id, d));
    Ok(Json(views.collect::<Result<_, _>>()?))
}

/// The device `id` if the requester may see it (`Ledger::device_visible_to`); otherwise the
/// answer for a device that does not exist.
fn visible_device(
    state: &AppState,
    requester: &AccountId,
    id: &str,
) -> Result<(AccountId, DeviceEntry), ApiError> {
    let account = parse_account(id)?;
    let now = crate::admission::now_ms();
    let d = state.ledger.device_visible_to(requester, &account, now)?;
    Ok((account, d.ok_or_else(|| not_found(format!("no device {account}")))?))
}

/// `GET /v1/devices/{id}`.
async fn device(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<DeviceView> {
    let (account, d) = visible_device(&state, &requester, &id)?;
    Ok(Json(views::device(&state.ledger, account, d)?))
}

/// `GET /v1/devices/{id}/sessions`: the device's sessions, oldest first.
async fn sessions(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<Vec<SessionView>> {
    let (account, _) = visible_device(&state, &requester, &id)?;
    let list = state.ledger.sessions_of_device(&account)?;
    Ok(Json(list.into_iter().map(|(id, s)| views::session(&state.ledger, id, s)).collect()))
}

/// The session `id` if the requester may see it (`Ledger::session_visible_to`); otherwise the
/// answer for a session that does not exist.
fn visible_session(
    state: &AppState,
    requester: &AccountId,
    id: &str,
) -> Result<(Hash, SessionEntry), ApiError> {
    let id = parse_hash(id)?;
    let now = crate::admission::now_ms();
    let s = state.ledger.session_visible_to(requester, &id, now)?;
    Ok((id, s.ok_or_else(|| no_session(&id))?))
}

/// `GET /v1/device-sessions/{id}`.
async fn session(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<SessionView> {
    let (id, s) = visible_session(&state, &requester, &id)?;
    Ok(Json(views::session(&state.ledger, id, s)))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/device-sessions/{id}/readings?after=N&limit=M`: digests and alerts (no content).
async fn readings(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<SessionReadingsView> {
    let (id, _) = visible_session(&state, &requester, &id)?;
    let limit = q.limit.unwrap_or(MAX_LIST_BATCHES).clamp(1, MAX_LIST_BATCHES);
    let page = state.ledger.session_readings(&id, q.after.unwrap_or(0), limit)?;
    Ok(Json(SessionReadingsView {
        session: id,
        batches: page.batches.into_iter().map(views::batch).collect(),
        alerts: page.alerts.into_iter().map(views::alert).collect(),
        next_after: page.next_after,
    }))
}

/// `POST /v1/device-sessions/{id}/read?after=N&limit=M`: the audited read
/// ([`crate::audited`]). The body is the reader's access transaction for the patient's device
/// data; once it is committed and allowed, the answer carries the reader's wrapped session key
/// and the sealed readings of one page, each checked against its hash first.
async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_hash(&id)?;
    let read = AccessRead::open(&state, &body)?;
    let reader = read.reader();
    // As for a case: the body's shape first, then a session of another patient than the body
    // names is answered as a missing one (charged alike), so an unsubmitted body tells
    // nothing of whose sessions exist.
    let named = read.access_naming("the device data of the session's patient", |r| {
        *r == device_data(r.patient)
    })?;
    let named_patient = named.resource.patient;
    if state.ledger.device_session(&id)?.is_none_or(|s| s.patient != named_patient) {
        return Err(read.missing(&state, no_session(&id)));
    }
    let likely = read.likely(&state)?;
    let released = read
        .serve(&state, likely, |_| async {
            let key_blob = state.ledger.session_key(&id, &reader)?.ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::NoKey,
                    format!(
                        "session {id}'s key is not wrapped to {reader}: only the patient and the session's doctor hold it; nothing was logged"
                    ),
                )
            })?;
            let limit = q.limit.unwrap_or(MAX_READ_BATCHES).clamp(1, MAX_READ_BATCHES);
            let page = state.ledger.session_readings(&id, q.after.unwrap_or(0), limit)?;
            let mut wanted = vec![key_blob];
            wanted.extend(page.batches.iter().map(|b| b.blob));
            wanted.extend(page.alerts.iter().map(|a| a.reading));
            state.replicas.ensure_present(wanted).await;
            let vault = state.vault.clone();
            tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
                let get = |h: &Hash| -> Result<Vec<u8>, ApiError> {
                    vault.get(h).map_err(vault_error)?.ok_or_else(|| {
                        not_in_vault(format!("blob {h} is not in this node's vault"))
                    })
                };
                let key = get(&key_blob)?;
                let batches = page
                    .batches
                    .into_iter()
                    .map(|b| {
                        let bytes = get(&b.blob)?;
                        Ok((views::batch(b), bytes))
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                let alerts = page
                    .alerts
                    .into_iter()
                    .map(|a| {
                        let bytes = get(&a.reading)?;
                        Ok((views::alert(a), bytes))
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                Ok((key, batches, alerts, page.next_after))
            })
            .await
            .map_err(|e| ApiError::internal(format!("a vault task failed: {e}")))?
        })
        .await?;
    let (wrapped_key, batches, alerts, next_after) = released.value;
    let body = SessionDataRead {
        session: id,
        event: released.event,
        height: released.height,
        wrapped_key,
        batches,
        alerts,
        next_after,
    };
    Ok(([(header::CONTENT_TYPE, medledger_api::BINARY_MEDIA_TYPE)], encoding::encode(&body))
        .into_response())
}
