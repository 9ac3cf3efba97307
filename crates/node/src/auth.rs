//! Authentication of signed read requests: the signature over method, path, body, time and
//! nonce; the key being the account's active key; the timestamp inside the window; the nonce
//! not seen before within the window.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use medledger_core::{
    ids::AccountId,
    request::{HEADER, MAX_SKEW_MS, RequestAuth},
};
use medledger_ledger::Ledger;

use crate::http::ApiError;

/// Most remembered nonces; beyond this, new requests are refused until old ones age out
/// (a flood cannot grow memory without bound).
const MAX_REMEMBERED: usize = 1_000_000;

/// Nonces seen within the window.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<(AccountId, [u8; 16]), u64>>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn unauthenticated(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
}

impl ReplayGuard {
    /// Records `nonce` for `account`; false if it was seen within the window.
    fn first_use(&self, account: AccountId, nonce: [u8; 16], now: u64) -> Result<bool, ApiError> {
        let mut seen = self.seen.lock().map_err(|_| ApiError::internal("replay guard poisoned"))?;
        if seen.len() >= MAX_REMEMBERED / 2 {
            seen.retain(|_, t| now.saturating_sub(*t) <= 2 * MAX_SKEW_MS);
        }
        if seen.len() >= MAX_REMEMBERED {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many signed requests; retry shortly",
            ));
        }
        Ok(seen.insert((account, nonce), now).is_none())
    }
}

/// Authenticates a signed request with an empty body; returns the requester.
pub fn authenticate(
    ledger: &Ledger,
    guard: &ReplayGuard,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
) -> Result<AccountId, ApiError> {
    let value = headers
        .get(HEADER)
        .ok_or_else(|| unauthenticated(format!("this request must be signed (header {HEADER})")))?
        .to_str()
        .map_err(|_| unauthenticated("the signature header is not text"))?;
    let auth = RequestAuth::from_header(value).map_err(|e| unauthenticated(e.to_string()))?;
    let now = now_ms();
    if auth.timestamp_ms.abs_diff(now) > MAX_SKEW_MS {
        return Err(unauthenticated(format!(
            "stale request: its timestamp is {} ms from the node's clock (at most {MAX_SKEW_MS} allowed)",
            auth.timestamp_ms.abs_diff(now)
        )));
    }
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    auth.verify(method.as_str(), path, b"")
        .map_err(|_| unauthenticated("the request signature does not verify"))?;
    let account = ledger
        .account(&auth.account)
        .map_err(ApiError::from)?
        .ok_or_else(|| unauthenticated(format!("unknown account {}", auth.account)))?;
    if account.key != Some(auth.key) {
        return Err(unauthenticated(format!(
            "key {} is not the active key of {}",
            auth.key, auth.account
        )));
    }
    if !guard.first_use(auth.account, auth.nonce, now)? {
        return Err(unauthenticated("replayed request: this nonce was already used"));
    }
    Ok(auth.account)
}

/// The requester of a signed request, as an extractor: a handler that takes `Signed` serves
/// only requests that pass [`authenticate`].
#[derive(Debug, Clone, Copy)]
pub struct Signed(pub AccountId);

impl axum::extract::FromRequestParts<crate::http::AppState> for Signed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &crate::http::AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(&state.ledger, &state.replay_guard, &parts.headers, &parts.method, &parts.uri)
            .map(Signed)
    }
}
