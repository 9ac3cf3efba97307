//! The cluster as one node sees it, `GET /v1/cluster` (unsigned: consortium infrastructure,
//! not patient data), and reads "at least height H": the [`min_height`] middleware answers a
//! read that asks for a height this node has not applied yet with 503 `not_yet` and the
//! node's height, instead of a stale answer.

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use medledger_api::{ClusterMember, ClusterView, ErrorCode, paths};

use crate::{
    app::AppState,
    http::error::{ApiError, bad_request},
    raft::network::base_url,
};

/// The cluster route.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route(paths::CLUSTER, get(cluster))
}

async fn cluster(State(state): State<AppState>) -> Json<ClusterView> {
    let tip = state.ledger.tip();
    let m = state.cluster.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let last = m.last_log_index.unwrap_or(0);
    let mut members = Vec::new();
    for (role, ids) in [
        ("voter", membership.voter_ids().collect::<Vec<_>>()),
        ("learner", membership.learner_ids().collect()),
    ] {
        for id in ids {
            let url = membership.get_node(&id).map(|n| base_url(&n.addr)).unwrap_or_default();
            let matched =
                m.replication.as_ref().and_then(|r| r.get(&id)).map(|l| l.map_or(0, |l| l.index));
            members.push(ClusterMember {
                id,
                url,
                role: role.into(),
                matched,
                lag: matched.map(|x| last.saturating_sub(x)),
            });
        }
    }
    Json(ClusterView {
        node_id: state.cluster.id,
        role: crate::raft::role_name(m.state).into(),
        term: m.current_term,
        leader: m.current_leader,
        applied: m.last_applied.map_or(0, |l| l.index),
        height: tip.height,
        log_root: tip.log.root().to_string(),
        members,
    })
}

/// The height a read asks for at least: the `x-medledger-min-height` header or the
/// `min_height` query parameter.
fn wanted_height(request: &Request) -> Result<Option<u64>, ApiError> {
    let parse = |v: &str| {
        v.parse::<u64>().map_err(|_| bad_request(format!("min height {v:?} is not a number")))
    };
    if let Some(v) = request.headers().get(paths::MIN_HEIGHT_HEADER) {
        let v = v.to_str().map_err(|_| bad_request("min height is not a number"))?;
        return parse(v).map(Some);
    }
    let query = request.uri().query().unwrap_or("");
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("min_height=") {
            return parse(v).map(Some);
        }
    }
    Ok(None)
}

/// Middleware: a read (GET) that asks for at least height H is answered only once this node
/// has applied H; before that, 503 `not_yet` with the node's height (in the message and the
/// `x-medledger-height` header) and `retry-after: 1`.
pub async fn min_height(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::GET {
        return next.run(request).await;
    }
    let wanted = match wanted_height(&request) {
        Ok(Some(h)) => h,
        Ok(None) => return next.run(request).await,
        Err(e) => return e.into_response(),
    };
    let height = state.ledger.tip().height;
    if height >= wanted {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::NotYet,
        format!(
            "not yet: this node has applied height {height}, the read asks for at least \
             {wanted}; retry shortly or ask another node"
        ),
    )
    .into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(paths::HEIGHT_HEADER, HeaderValue::from(height));
    response
}
