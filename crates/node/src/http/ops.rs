//! Operations routes, unsigned: `GET /health` and `GET /metrics` (Prometheus).

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use medledger_api::{Health, paths};

use crate::app::AppState;

/// The operations routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route(paths::HEALTH, get(health)).route(paths::METRICS, get(metrics))
}

/// `GET /health`: 200 `ok`; 200 `disk_full` with the reason while writes are refused for lack
/// of space (the node serves reads and resumes by itself: restarting it would not help); 503
/// `storage_fault` with the reason once the node is stopping after a storage fault, 503
/// `protocol_fault` once it is stopping after refusing the leader's block or membership entry.
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let tip = state.ledger.tip();
    let (code, status, reason) = match (state.fault.reason(), state.disk.full_now()) {
        (Some(reason), _) if state.fault.is_protocol() => {
            (StatusCode::SERVICE_UNAVAILABLE, "protocol_fault", Some(reason))
        }
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
        time_ms: crate::admission::now_ms(),
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
