//! The portal's gate, in front of every route: what a local web UI must refuse.
//!
//! - **Host** must be this portal's own name: a random name under `localhost` with the port
//!   (`http://<32 hex>.localhost:PORT`, which browsers resolve to the loopback address), so
//!   a page on another site that rebinds its DNS name to 127.0.0.1 sends its own name and is
//!   refused (DNS rebinding), and the session cookie, kept by the browser for that name
//!   alone, never goes to another server on 127.0.0.1 (cookies do not tell ports apart).
//! - **Fetch metadata**: a request whose `Sec-Fetch-Site` says another site's page made it
//!   (`cross-site`, or `same-site`: every `*.localhost` page) is refused.
//! - **Origin**, when sent, must be this portal's; every POST must send it (browsers do),
//!   so no other site's page can submit a form here, even blind.
//! - **Session token**: the random token printed once (as a login URL) and kept in a file
//!   only the user can read. `/login?token=…` checks it and sets it as an HttpOnly,
//!   SameSite=Strict cookie; every other route needs that cookie. Compared in constant time.
//! - **CSRF token** on every POST: the form's `csrf` field, or the `x-csrf-token` header of
//!   the page's own script (uploads). A new one with each unlock.
//! - **Lock**: after `lock_after` without a request, or on `POST /lock`, the unlocked wallet
//!   is dropped (its keys zeroised) and the passphrase is needed again (HIPAA automatic
//!   logoff). A locked portal answers every page with the unlock form.
//! - **Headers** on every answer: a strict Content-Security-Policy (nothing but this origin's
//!   own script and style; no inline script, no frames, forms only to this origin), no
//!   caching, no referrer to other sites (`same-origin`: with `no-referrer` a browser sends
//!   `Origin: null` on its own forms), no sniffing. No CORS header is ever sent.

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use subtle::ConstantTimeEq;

use super::Portal;

/// The session cookie's name, before the port.
pub const COOKIE: &str = "medledger_portal";
/// The CSRF header the portal's own script sends.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The largest URL-encoded form the gate reads to find its CSRF token.
const FORM_LIMIT: usize = 64 * 1024;

/// The Content-Security-Policy of every page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// A refusal: a short plain-text page with the status.
pub fn refuse(status: StatusCode, why: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{why}\n"))
        .into_response()
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The gate (see the module's documentation).
pub async fn gate(State(portal): State<Portal>, request: Request, next: Next) -> Response {
    let mut response = check(&portal, request, next).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
        (header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn check(portal: &Portal, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !host.eq_ignore_ascii_case(&portal.host) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "refused: this portal answers only at the address it printed (open its login \
             address, also in its token file)",
        );
    }
    // Fetch metadata: a request another site's page made (an image, a form, a script),
    // whatever it carries. Every *.localhost page is "same-site" to this one.
    let fetched_from = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(fetched_from, Some("cross-site" | "same-site")) {
        return refuse(StatusCode::FORBIDDEN, "refused: a request made by another site's page");
    }
    let origin = headers.get(header::ORIGIN).map(|o| o.to_str().unwrap_or("(not text)"));
    match origin {
        Some(o) if o != portal.origin => {
            return refuse(StatusCode::FORBIDDEN, "refused: a request from another origin");
        }
        None if request.method() == Method::POST => {
            return refuse(StatusCode::FORBIDDEN, "refused: a form sent without its origin");
        }
        _ => {}
    }
    let path = request.uri().path();
    if path == "/login" {
        return login(portal, request.uri().query().unwrap_or(""));
    }
    if path.starts_with("/static/") {
        return next.run(request).await;
    }
    let token_ok =
        cookie(request.headers(), &portal.cookie).is_some_and(|t| equal(t, &portal.token));
    if !token_ok {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "refused: no session; open the login address `medledger portal` printed (it is \
             also in its token file)",
        );
    }
    let request = if request.method() == Method::POST {
        match csrf_checked(portal, request).await {
            Ok(request) => request,
            Err(response) => return response,
        }
    } else if request.method() == Method::GET {
        request
    } else {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "refused: only GET and POST");
    };
    let path = request.uri().path().to_owned();
    // The notification stream is not the user at work: it does not hold the lock off.
    if path != "/unlock" && !portal.touch(path != "/events") {
        return match *request.method() {
            Method::GET => Redirect::to("/unlock").into_response(),
            _ => refuse(StatusCode::LOCKED, "refused: the portal is locked; unlock it first"),
        };
    }
    next.run(request).await
}

/// `/login?token=…`: the printed token, set as the session cookie.
fn login(portal: &Portal, query: &str) -> Response {
    let token = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v)
        .unwrap_or("");
    if !equal(token, &portal.token) {
        return refuse(StatusCode::FORBIDDEN, "refused: not this portal's token");
    }
    let cookie = format!("{}={}; HttpOnly; SameSite=Strict; Path=/", portal.cookie, portal.token);
    let mut response = Redirect::to("/").into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            response.headers_mut().insert(header::SET_COOKIE, v);
            response
        }
        Err(_) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "cannot set the session cookie"),
    }
}

/// A POST whose CSRF token (header, or the URL-encoded form's `csrf` field) is this
/// session's; the request rebuilt with the body the gate read.
async fn csrf_checked(portal: &Portal, request: Request) -> Result<Request, Response> {
    let expected = portal.csrf();
    let refused = || refuse(StatusCode::FORBIDDEN, "refused: a form without this session's token");
    if let Some(sent) = request.headers().get(CSRF_HEADER) {
        return match sent.to_str() {
            Ok(sent) if equal(sent, &expected) => Ok(request),
            _ => Err(refused()),
        };
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(refused());
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_LIMIT)
        .await
        .map_err(|_| refuse(StatusCode::PAYLOAD_TOO_LARGE, "refused: the form is too large"))?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, &format!("refused: a malformed form: {e}")))?;
    let sent = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str());
    match sent {
        Some(sent) if equal(sent, &expected) => Ok(Request::from_parts(parts, Body::from(bytes))),
        _ => Err(refused()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_found_among_others_and_names_must_match_exactly() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; medledger_portal_x=2"));
        h.append(header::COOKIE, HeaderValue::from_static("medledger_portal=abc; b=3"));
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("3"));
        assert_eq!(cookie(&h, "medledger"), None);
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(equal("abc", "abc"));
        assert!(!equal("abc", "abd"));
        assert!(!equal("abc", "abcd"));
        assert!(!equal("", "a"));
    }
}
