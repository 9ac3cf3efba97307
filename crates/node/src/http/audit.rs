//! Audit routes: a patient's trail (to the patient and delegates; JSON, or the binary encoding
//! when asked for with `Accept`), and the counts by kind (to the regulator only).

use std::collections::BTreeMap;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::get,
};
use medledger_api::{BINARY_MEDIA_TYPE, paths};
use medledger_core::encoding;
use serde::Deserialize;

use crate::{
    app::AppState,
    auth::Signed,
    http::error::{ApiError, ApiResult, forbidden, parse_account},
};

/// Most audit events returned by one request.
const MAX_AUDIT_PAGE: usize = medledger_api::MAX_AUDIT_PAGE;

/// The audit routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(&format!("{}/{{patient}}", paths::AUDIT), get(audit_trail))
        .route(paths::AUDIT_COUNTS, get(audit_counts))
}

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
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let patient = parse_account(&patient)?;
    if !state.ledger.acts_for(&requester, &patient)? {
        return Err(forbidden(
            "only the patient or a delegate they named may read their audit trail",
        ));
    }
    let limit = q.limit.unwrap_or(MAX_AUDIT_PAGE).clamp(1, MAX_AUDIT_PAGE);
    // The index also lists events where the patient is the other party (their own requests
    // as a grantee, say); a patient's trail is the events about their records. Filtered
    // page by page until the page is full or the index ends, so that a page shorter than the
    // limit means the trail ends there (a client pages on with `after` until then).
    // Read in batches of a full page whatever the limit (not one transaction per event),
    // on a blocking thread.
    let ledger = state.ledger.clone();
    let after = q.after;
    let events = tokio::task::spawn_blocking(move || {
        let mut events = Vec::new();
        let mut cursor = after;
        loop {
            let page = ledger.audit_trail(&patient, cursor, MAX_AUDIT_PAGE)?;
            let fetched = page.len();
            cursor = page.last().map(|e| e.seq).or(cursor);
            events.extend(page.into_iter().filter(|e| e.patient == patient));
            if fetched < MAX_AUDIT_PAGE || events.len() >= limit {
                break;
            }
        }
        events.truncate(limit);
        Ok::<_, medledger_ledger::LedgerError>(events)
    })
    .await
    .map_err(crate::http::error::joined)??;
    let binary = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(BINARY_MEDIA_TYPE));
    if binary {
        let body = encoding::encode(&events);
        return Ok(([(header::CONTENT_TYPE, BINARY_MEDIA_TYPE)], body).into_response());
    }
    Ok(Json(events).into_response())
}

async fn audit_counts(
    State(state): State<AppState>,
    Signed(requester): Signed,
) -> ApiResult<BTreeMap<String, u64>> {
    if requester != state.ledger.genesis().regulator() {
        return Err(forbidden("only the regulator may read audit counts"));
    }
    Ok(Json(state.ledger.audit_counts()?))
}
