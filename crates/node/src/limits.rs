//! Limits inside a request: buffered bodies take a turn from a small pool and must arrive
//! within a deadline (so half-sent bodies cannot pile up in memory), and each account may hold
//! only a few event streams.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body_util::BodyExt;
use medledger_core::ids::AccountId;
use tokio::sync::Semaphore;

use crate::{app::AppState, http::error::ApiError};
use medledger_api::ErrorCode;

/// Largest body of a route that takes one signed transaction (a submission, a simulation, an
/// audited read's access): a little over [`medledger_core::tx::MAX_TX_BYTES`], so that a
/// transaction over the limit still reaches the decoder, which explains the limit in JSON.
pub const MAX_SIGNED_BODY_BYTES: usize = 4 * medledger_core::tx::MAX_TX_BYTES;
/// Largest accepted batch submission, in bytes.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Largest body of `PUT /v1/blobs` (sealed registration details): twice the vault's limit,
/// so that a blob over it reaches the handler, which explains the limit.
pub const MAX_BLOB_BODY_BYTES: usize = 2 * medledger_vault::MAX_BLOB_BYTES;
/// Largest body of every other route (most take none).
pub const MAX_DEFAULT_BODY_BYTES: usize = 64 * 1024;

/// `route` taking a signed transaction as its body: at most [`MAX_SIGNED_BODY_BYTES`],
/// buffered in a turn of the small bodies' gate.
pub(crate) fn signed_body(
    state: &AppState,
    route: axum::routing::MethodRouter<AppState>,
) -> axum::routing::MethodRouter<AppState> {
    route
        .layer(axum::extract::DefaultBodyLimit::max(MAX_SIGNED_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.small_bodies.clone(), gate_body))
}

/// `route` taking a large buffered body (a batch, a blob) of at most `max_bytes`, in a turn of
/// the large bodies' gate.
pub(crate) fn large_body(
    state: &AppState,
    route: axum::routing::MethodRouter<AppState>,
    max_bytes: usize,
) -> axum::routing::MethodRouter<AppState> {
    route
        .layer(axum::extract::DefaultBodyLimit::max(max_bytes))
        .layer(axum::middleware::from_fn_with_state(state.large_bodies.clone(), gate_body))
}

/// A pool of turns for receiving and handling buffered bodies of one size class.
#[derive(Debug)]
pub struct BodyGate {
    /// Bodies being received or handled now.
    turns: Arc<Semaphore>,
    /// Largest body accepted, in bytes.
    max_bytes: usize,
    /// How long a request may wait for a turn, and then for its whole body.
    deadline: Duration,
}

impl BodyGate {
    /// A pool of `turns` bodies of at most `max_bytes`, each waiting and arriving within
    /// `deadline`.
    pub fn new(turns: usize, max_bytes: usize, deadline: Duration) -> Arc<Self> {
        Arc::new(Self { turns: Arc::new(Semaphore::new(turns.max(1))), max_bytes, deadline })
    }
}

/// A refusal that also closes the connection (its unread body is not worth draining).
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Middleware: waits for a turn of `gate`, reads the whole body within the deadline (413 if it
/// is larger than the gate allows, 408 if it is too slow), and keeps the turn until the
/// response is ready.
pub async fn gate_body(
    State(gate): State<Arc<BodyGate>>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > gate.max_bytes as u64) {
        return closing(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("the body is larger than the {} bytes this route accepts", gate.max_bytes),
        ));
    }
    let secs = gate.deadline.as_secs();
    let Ok(Ok(turn)) =
        tokio::time::timeout(gate.deadline, gate.turns.clone().acquire_owned()).await
    else {
        return closing(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Busy,
            format!("too many uploads in progress for {secs} s; retry shortly"),
        ));
    };
    let (parts, body) = request.into_parts();
    let capacity = declared.map_or(0, |n| n as usize).min(gate.max_bytes);
    let bytes = match tokio::time::timeout(gate.deadline, read_body(body, capacity, gate.max_bytes))
        .await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(BodyError::TooLarge)) => {
            return closing(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                format!("the body is larger than the {} bytes this route accepts", gate.max_bytes),
            ));
        }
        Ok(Err(BodyError::Read(e))) => {
            return closing(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Malformed,
                format!("the body could not be read: {e}"),
            ));
        }
        Err(_) => {
            return closing(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::TooSlow,
                format!("the body did not arrive within {secs} s"),
            ));
        }
    };
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    drop(turn);
    response
}

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Reads a body into one buffer of `capacity` (its declared length), copying each piece as it
/// arrives so that no piece outlives the read: one allocation per body, given back whole when
/// the request ends, rather than many small ones scattered over the allocator's arenas.
async fn read_body(body: Body, capacity: usize, max: usize) -> Result<Bytes, BodyError> {
    let mut body = body;
    let mut buf = Vec::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// Open event streams per account.
#[derive(Debug)]
pub struct EventStreams {
    open: Mutex<HashMap<AccountId, usize>>,
    /// Most streams one account may hold.
    cap: usize,
    /// Streams open now, all accounts together (exported in `/metrics`).
    gauge: prometheus_client::metrics::gauge::Gauge,
}

/// One open stream of an account, given back when the stream is dropped.
#[derive(Debug)]
pub struct StreamSlot {
    streams: Arc<EventStreams>,
    account: AccountId,
}

impl EventStreams {
    /// At most `cap` streams per account; `gauge` counts the streams open now.
    pub fn new(cap: usize, gauge: prometheus_client::metrics::gauge::Gauge) -> Arc<Self> {
        Arc::new(Self { open: Mutex::default(), cap, gauge })
    }

    /// A slot for one more stream of `account`, or 429 if it holds `cap` already.
    pub fn open(self: &Arc<Self>, account: AccountId) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(account).or_default();
        if *n >= self.cap {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyStreams,
                format!(
                    "account {account} already has {} open event streams (at most {} per account); close one first",
                    *n, self.cap
                ),
            ));
        }
        *n += 1;
        self.gauge.inc();
        Ok(StreamSlot { streams: self.clone(), account })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|p| p.into_inner());
        self.streams.gauge.dec();
        if let Some(n) = open.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_beyond_the_cap_are_refused_until_one_closes() {
        let gauge = prometheus_client::metrics::gauge::Gauge::default();
        let streams = EventStreams::new(2, gauge.clone());
        let a =
            AccountId::from_initial_key(&medledger_core::keys::SigningKey::generate().public_key());
        let first = streams.open(a).unwrap();
        let _second = streams.open(a).unwrap();
        let refused = streams.open(a).unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(gauge.get(), 2, "a refused stream is not counted as open");
        drop(first);
        assert_eq!(gauge.get(), 1);
        assert!(streams.open(a).is_ok(), "a closed stream gives its slot back");
    }
}
