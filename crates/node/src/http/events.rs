//! The event stream: `GET /v1/events/{account}`, server-sent events of the audit events
//! concerning one account (its own records, or requests and grants where it is the other
//! party), from a cursor: `?after=N` or the `Last-Event-ID` header of a reconnecting client,
//! so that a watcher resumes without missing or repeating events. The subscription is a signed
//! request by that account; the stream is woken by every applied block and ends when the node
//! stops.

use std::{collections::VecDeque, convert::Infallible, time::Duration};

use axum::{
    Router,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
    routing::get,
};
use futures_util::Stream;
use medledger_api::paths;
use medledger_core::audit::AuditEvent;
use serde::Deserialize;

use crate::{
    app::AppState,
    auth::Signed,
    http::error::{ApiError, forbidden, parse_account},
};

/// Most events read from the ledger at a time for one stream.
const EVENT_PAGE: usize = 1000;
/// How long a stream with nothing new waits for an applied block before it looks again.
const IDLE_RECHECK: Duration = Duration::from_secs(5);

/// The event routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route(&format!("{}/{{account}}", paths::EVENTS), get(events))
}

#[derive(Debug, Deserialize)]
struct Cursor {
    after: Option<u64>,
}

async fn events(
    State(state): State<AppState>,
    Signed(requester): Signed,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(q): Query<Cursor>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let account = parse_account(&account)?;
    if requester != account {
        return Err(forbidden("an event subscription is signed by the account it is for"));
    }
    // Held by the stream: the slot is given back when the client goes away.
    let slot = state.event_streams.open(account)?;
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let cursor = last_id.or(q.after);
    // The stream's own view of the applied height (it marks what it has seen).
    let applied = state.applied.clone();
    let stream = futures_util::stream::unfold(
        (state, applied, account, cursor, VecDeque::new(), slot),
        |(state, mut applied, account, mut cursor, mut pending, slot)| async move {
            loop {
                // A stopping node ends every stream at once, so that shutdown need not wait.
                if *state.stopping.borrow() {
                    return None;
                }
                if let Some(e) = pending.pop_front() {
                    let e: AuditEvent = e;
                    cursor = Some(e.seq);
                    let event = Event::default()
                        .id(e.seq.to_string())
                        .event(e.kind.name())
                        .json_data(&e)
                        .unwrap_or_else(|_| Event::default().comment("unencodable event"));
                    return Some((Ok(event), (state, applied, account, cursor, pending, slot)));
                }
                // Mark the current height seen before looking, so that a block applied while
                // we look wakes the wait below.
                applied.borrow_and_update();
                match state.ledger.audit_trail(&account, cursor, EVENT_PAGE) {
                    Ok(found) if !found.is_empty() => pending.extend(found),
                    Ok(_) => {
                        // Nothing new: wait for the next applied block (or a while, then look
                        // again anyway), or for the node to stop.
                        let mut stopping = state.stopping.clone();
                        let wait = applied.changed();
                        tokio::select! {
                            _ = tokio::time::timeout(IDLE_RECHECK, wait) => {}
                            () = crate::server::stopped(&mut stopping) => return None,
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "event stream stopped");
                        return None;
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
