//! Device routes: device and session queries, a session's digests and alerts, the audited read
//! of a session's sealed readings, and the admission check that the blobs a device transaction
//! names are in this node's vault.
//!
//! Who sees a device, its sessions and their digests: the patient and their delegates, the
//! device itself, the party that registered it, the session's doctor and the thresholds'
//! author, and anyone `authorize` would let read the patient's device data now on a basis
//! other than an open break-glass (M6: under break-glass alone, the audited overview lists
//! them; [`crate::audited::readable_now`]). Everyone else
//! gets "not found", as for a device that does not exist. Reading the content (the sealed
//! readings) goes through an audited access like a record read: the reader's access
//! transaction for the patient's device data is committed, allowed or denied, before any blob
//! leaves the vault.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use medledger_api::{
    AlertView, BatchView, DeviceView, SessionDataRead, SessionReadingsView, SessionView,
    ThresholdsView,
};
use medledger_core::{
    Hash, encoding,
    ids::AccountId,
    tx::consent::{RecordCategory, Resource},
};
use medledger_ledger::state::{AlertEntry, BatchEntry, DeviceEntry, SessionEntry};
use medledger_vault::BlobStore;
use serde::Deserialize;

use crate::{
    audited::AccessRead,
    auth::Signed,
    http::{ApiError, ApiResult, AppState, parse_account},
};

/// Most batches one audited read returns (each up to a few MiB of readings).
const MAX_READ_BATCHES: usize = 64;
/// Most batches one digest listing returns.
const MAX_LIST_BATCHES: usize = 1000;

fn not_found(what: String) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
}

fn parse_hash(s: &str) -> Result<Hash, ApiError> {
    Hash::from_hex(s).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("{s:?} is not a 64-character hex id"),
        )
    })
}

fn device_data(patient: AccountId) -> Resource {
    Resource { patient, category: Some(RecordCategory::DeviceData), record: None, case: None }
}

/// Whether `who` may see that the device (and its sessions) exist: see the module doc.
fn may_see(
    state: &AppState,
    who: &AccountId,
    device: &AccountId,
    d: &DeviceEntry,
    session: Option<&SessionEntry>,
) -> Result<bool, ApiError> {
    if [d.patient, *device, d.registered_by].contains(who)
        || session.is_some_and(|s| s.doctor.as_ref() == Some(who))
        || state.ledger.is_delegate(&d.patient, who)?
    {
        return Ok(true);
    }
    if let Some(t) = d.thresholds
        && state.ledger.thresholds(&t)?.is_some_and(|t| t.doctor == *who)
    {
        return Ok(true);
    }
    crate::audited::readable_now(state, who, &device_data(d.patient))
}

pub(crate) fn device_view(
    state: &AppState,
    account: AccountId,
    d: DeviceEntry,
) -> Result<DeviceView, ApiError> {
    let thresholds = match d.thresholds {
        Some(id) => state.ledger.thresholds(&id)?.map(|t| ThresholdsView {
            id,
            device: t.device,
            doctor: t.doctor,
            metrics: t.metrics,
            sealed: t.sealed,
            set_at: t.set_at,
        }),
        None => None,
    };
    let nonce = state.ledger.account(&account)?.map_or(0, |a| a.nonce);
    Ok(DeviceView {
        account,
        patient: d.patient,
        kind: d.kind,
        details: d.details,
        registered_by: d.registered_by,
        registered_at: d.registered_at,
        retired_at: d.retired_at,
        thresholds,
        session: d.session,
        nonce,
    })
}

pub(crate) fn session_view(state: &AppState, id: Hash, s: SessionEntry) -> SessionView {
    let time_ms = state.ledger.tip().time_ms;
    SessionView {
        id,
        open: s.closed_reason(time_ms).is_none(),
        last_seq: s.last_seq(),
        device: s.device,
        patient: s.patient,
        public_key: s.public_key,
        started_by: s.started_by,
        started_at: s.started_at,
        started_time_ms: s.started_time_ms,
        expires_at_ms: s.expires_at_ms,
        doctor: s.doctor,
        ended_at: s.ended_at,
        batch_high: s.batch_high,
        readings: s.readings,
        batches: s.batches,
        alerts: s.alerts,
    }
}

fn batch_view(b: BatchEntry) -> BatchView {
    BatchView {
        first_seq: b.first_seq,
        last_seq: b.last_seq,
        count: b.count,
        blob: b.blob,
        size: b.size,
        tx: b.tx,
        height: b.height,
        time_ms: b.time_ms,
    }
}

fn alert_view(a: AlertEntry) -> AlertView {
    AlertView {
        seq: a.seq,
        metric: a.metric,
        severity: a.severity,
        reading: a.reading,
        thresholds: a.thresholds,
        tx: a.tx,
        height: a.height,
        time_ms: a.time_ms,
        event: a.event,
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    patient: String,
}

/// `GET /v1/devices?patient=ID`: the devices of a patient the signer may see (not those only
/// an open break-glass opens: the audited overview lists those).
pub(crate) async fn list(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Query(q): Query<ListQuery>,
) -> ApiResult<Vec<DeviceView>> {
    let patient = parse_account(&q.patient)?;
    let mut out = Vec::new();
    for (id, d) in state.ledger.devices_of_patient(&patient)? {
        let session = d.session.map(|s| state.ledger.device_session(&s)).transpose()?.flatten();
        if may_see(&state, &requester, &id, &d, session.as_ref())? {
            out.push(device_view(&state, id, d)?);
        }
    }
    Ok(Json(out))
}

/// The device `id` if the requester may see it.
fn visible_device(
    state: &AppState,
    requester: &AccountId,
    id: &str,
) -> Result<(AccountId, DeviceEntry), ApiError> {
    let account = parse_account(id)?;
    let missing = || not_found(format!("no device {account}"));
    let d = state.ledger.device(&account)?.ok_or_else(missing)?;
    let session = d.session.map(|s| state.ledger.device_session(&s)).transpose()?.flatten();
    if !may_see(state, requester, &account, &d, session.as_ref())? {
        return Err(missing());
    }
    Ok((account, d))
}

/// `GET /v1/devices/{id}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<DeviceView> {
    let (account, d) = visible_device(&state, &requester, &id)?;
    Ok(Json(device_view(&state, account, d)?))
}

/// `GET /v1/devices/{id}/sessions`: the device's sessions, oldest first.
pub(crate) async fn sessions(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<Vec<SessionView>> {
    let (account, _) = visible_device(&state, &requester, &id)?;
    let list = state.ledger.sessions_of_device(&account)?;
    Ok(Json(list.into_iter().map(|(id, s)| session_view(&state, id, s)).collect()))
}

/// The session `id` if the requester may see it.
fn visible_session(
    state: &AppState,
    requester: &AccountId,
    id: &str,
) -> Result<(Hash, SessionEntry), ApiError> {
    let id = parse_hash(id)?;
    let missing = || not_found(format!("no device session {id}"));
    let s = state.ledger.device_session(&id)?.ok_or_else(missing)?;
    let d = state
        .ledger
        .device(&s.device)?
        .ok_or_else(|| ApiError::internal(format!("session {id} names no device")))?;
    if !may_see(state, requester, &s.device, &d, Some(&s))? {
        return Err(missing());
    }
    Ok((id, s))
}

/// `GET /v1/device-sessions/{id}`.
pub(crate) async fn session(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<SessionView> {
    let (id, s) = visible_session(&state, &requester, &id)?;
    Ok(Json(session_view(&state, id, s)))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/device-sessions/{id}/readings?after=N&limit=M`: digests and alerts (no content).
pub(crate) async fn readings(
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
        batches: page.batches.into_iter().map(batch_view).collect(),
        alerts: page.alerts.into_iter().map(alert_view).collect(),
        next_after: page.next_after,
    }))
}

/// `POST /v1/device-sessions/{id}/read?after=N&limit=M`: the audited read
/// ([`crate::audited`]). The body is the reader's access transaction for the patient's device
/// data; once it is committed and allowed, the answer carries the reader's wrapped session key
/// and the sealed readings of one page, each checked against its hash first.
pub(crate) async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_hash(&id)?;
    let read = AccessRead::open(&state, &body)?;
    let reader = read.reader();
    let session = state
        .ledger
        .device_session(&id)?
        .ok_or_else(|| read.missing(&state, not_found(format!("no device session {id}"))))?;
    let data = device_data(session.patient);
    read.access_naming(&format!("the device data of patient {}", session.patient), |r| *r == data)?;
    let likely = read.likely(&state)?;
    let released = read
        .serve(&state, likely, |_| async {
            let key_blob = state.ledger.session_key(&id, &reader)?.ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "no_key",
                    format!(
                        "session {id}'s key is not wrapped to {reader}: only the patient and the session's doctor hold it; nothing was logged"
                    ),
                )
            })?;
            let limit = q.limit.unwrap_or(MAX_READ_BATCHES).clamp(1, MAX_READ_BATCHES);
            let page = state.ledger.session_readings(&id, q.after.unwrap_or(0), limit)?;
            let vault = state.vault.clone();
            tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
                let get = |h: &Hash| -> Result<Vec<u8>, ApiError> {
                    vault.get(h).map_err(crate::http::vault_error)?.ok_or_else(|| {
                        ApiError::new(
                            StatusCode::NOT_FOUND,
                            "not_in_vault",
                            format!("blob {h} is not in this node's vault"),
                        )
                    })
                };
                let key = get(&key_blob)?;
                let batches = page
                    .batches
                    .into_iter()
                    .map(|b| {
                        let bytes = get(&b.blob)?;
                        Ok((batch_view(b), bytes))
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                let alerts = page
                    .alerts
                    .into_iter()
                    .map(|a| {
                        let bytes = get(&a.reading)?;
                        Ok((alert_view(a), bytes))
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
