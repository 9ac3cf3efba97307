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

use crate::http::error::ApiError;
use medledger_api::ErrorCode;

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
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, message)
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
                ErrorCode::Busy,
                "too many signed requests; retry shortly",
            ));
        }
        Ok(seen.insert((account, nonce), now).is_none())
    }
}

/// Authenticates a signed request whose body is `body`; returns the requester.
pub fn authenticate(
    ledger: &Ledger,
    guard: &ReplayGuard,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    body: &[u8],
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
    auth.verify(method.as_str(), path, body)
        .map_err(|_| unauthenticated("the request signature does not verify"))?;
    // One answer whether the account does not exist or the key is not its active key, so that
    // a stranger cannot tell which accounts exist.
    let not_active = || {
        unauthenticated(format!(
            "the signing key is not the active key of account {}",
            auth.account
        ))
    };
    let account = ledger.account(&auth.account).map_err(ApiError::from)?.ok_or_else(not_active)?;
    if account.key != Some(auth.key) {
        return Err(not_active());
    }
    if !guard.first_use(auth.account, auth.nonce, now)? {
        return Err(unauthenticated("replayed request: this nonce was already used"));
    }
    // A suspended hospital or organisation, and its doctors or members, read nothing, as they
    // write nothing.
    if let Some(suspended) = ledger.suspension_of(&auth.account, &account)? {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Suspended,
            format!("{suspended} is suspended by the regulator: its signed requests are refused"),
        ));
    }
    Ok(auth.account)
}

/// The requester of a signed request, as an extractor: a handler that takes `Signed` serves
/// only requests that pass [`authenticate`].
#[derive(Debug, Clone, Copy)]
pub struct Signed(pub AccountId);

impl axum::extract::FromRequestParts<crate::app::AppState> for Signed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &crate::app::AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(
            &state.ledger,
            &state.replay_guard,
            &parts.headers,
            &parts.method,
            &parts.uri,
            b"",
        )
        .map(Signed)
    }
}

tokio::task_local! {
    /// The requester of the request being handled, as far as it is known (see
    /// [`note_requester`]), for the log of refused requests.
    static REQUESTER: std::cell::Cell<Option<AccountId>>;
}

/// Notes who (claims to) make the request being handled, for the log of refusals: an audited
/// read carries its requester in the signed transaction of its body, not in a header.
pub(crate) fn note_requester(account: AccountId) {
    let _ = REQUESTER.try_with(|r| r.set(Some(account)));
}

/// Most refusals written to the log per second; the rest are counted and summarised, so a
/// flood of bad requests cannot flood the log.
const DENIALS_LOGGED_PER_SECOND: u32 = 20;

/// Rate-limited logging of refused requests.
#[derive(Debug, Default)]
pub struct DenialLog {
    /// The current second, how many were logged in it, how many were not.
    window: Mutex<(u64, u32, u64)>,
}

impl DenialLog {
    /// [`DenialLog::admit`] at the current time.
    pub(crate) fn admit_now(&self) -> Option<u64> {
        self.admit(now_ms())
    }

    /// Whether to log this refusal, and how many earlier ones went unlogged (to report).
    fn admit(&self, now_ms: u64) -> Option<u64> {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let second = now_ms / 1000;
        if w.0 != second {
            let suppressed = w.2;
            *w = (second, 1, 0);
            return Some(suppressed);
        }
        if w.1 < DENIALS_LOGGED_PER_SECOND {
            w.1 += 1;
            Some(0)
        } else {
            w.2 += 1;
            None
        }
    }
}

/// Middleware: every request refused as unauthenticated or forbidden is counted in the
/// metrics and logged (rate-limited) with who claimed to ask, for what.
pub async fn log_denials(
    axum::extract::State(state): axum::extract::State<crate::app::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let claimed = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| RequestAuth::from_header(v).ok())
        .map(|a| a.account);
    // A read signed inside its body (an audited read's access transaction) names its requester
    // only once the handler has decoded it: the handler notes it here.
    let (response, noted) = REQUESTER
        .scope(std::cell::Cell::new(None), async {
            let response = next.run(request).await;
            (response, REQUESTER.with(std::cell::Cell::get))
        })
        .await;
    let claimed = claimed.or(noted);
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        state.metrics.denied_requests.inc();
        if let Some(suppressed) = state.denials.admit(now_ms()) {
            let claimed = claimed.map_or_else(|| "nobody (unsigned)".to_owned(), |a| a.to_string());
            let code = response.extensions().get::<ErrorCode>().map_or("", |c| c.as_str());
            tracing::info!(
                %method,
                %path,
                status = status.as_u16(),
                claimed_requester = %claimed,
                %code,
                suppressed_since_last_second = suppressed,
                "request denied"
            );
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_log_is_rate_limited_per_second() {
        let log = DenialLog::default();
        let logged = (0..100).filter(|_| log.admit(5_000).is_some()).count();
        assert_eq!(logged, DENIALS_LOGGED_PER_SECOND as usize);
        // The next second logs again and reports how many went unlogged.
        assert_eq!(log.admit(6_000), Some(100 - u64::from(DENIALS_LOGGED_PER_SECOND)));
        assert_eq!(log.admit(6_001), Some(0));
    }
}
