//! Raft RPCs between nodes: `POST /v1/raft/{append,vote,snapshot}`, each a signed envelope
//! (`raft/transport.rs`) whose checks run before the Raft core sees the body; the answer is an
//! envelope signed by this node. A refused envelope gets a typed error code (403
//! `wrong_chain`, `wrong_recipient`, `not_member`, `not_admitted`, `bad_signature`,
//! `clock_skew`; 400 `malformed`).

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use medledger_api::{BINARY_MEDIA_TYPE, ErrorCode, paths};
use medledger_core::encoding;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use crate::{
    app::AppState,
    http::error::ApiError,
    raft::{
        TypeConfig,
        network::Answer,
        transport::{Envelope, EnvelopeError, RpcKind},
    },
};

/// The Raft routes, each with its body limit, in turns of the cluster's own gate.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    let gate = |route: axum::routing::MethodRouter<AppState>, kind: RpcKind| {
        route.layer(axum::extract::DefaultBodyLimit::max(kind.limit())).layer(
            axum::middleware::from_fn_with_state(
                state.cluster.bodies.clone(),
                crate::limits::gate_body,
            ),
        )
    };
    Router::new()
        .route(paths::RAFT_APPEND, gate(post(append), RpcKind::Append))
        .route(paths::RAFT_VOTE, gate(post(vote), RpcKind::Vote))
        .route(paths::RAFT_SNAPSHOT, gate(post(snapshot), RpcKind::Snapshot))
}

impl From<EnvelopeError> for ApiError {
    fn from(e: EnvelopeError) -> Self {
        let status = match e.code() {
            ErrorCode::Malformed => StatusCode::BAD_REQUEST,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::FORBIDDEN,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// Opens a request envelope of `kind` with every check, and decodes its body.
fn open<T: serde::Serialize + serde::de::DeserializeOwned>(
    state: &AppState,
    bytes: &[u8],
    kind: RpcKind,
) -> Result<(Envelope, T), ApiError> {
    let cluster = &state.cluster;
    let envelope = {
        let metrics = cluster.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let initialised = membership.voter_ids().next().is_some();
        let is_member = |id: u64| membership.get_node(&id).is_some();
        cluster.transport.open_request(bytes, kind, initialised.then_some(&is_member as _))?
    };
    let body = encoding::decode("raft request", &envelope.body, kind.limit())
        .map_err(|e| ApiError::from(EnvelopeError::Malformed(e.to_string())))?;
    Ok((envelope, body))
}

/// The signed answer to `request`.
fn answer(state: &AppState, request: &Envelope, body: Vec<u8>) -> Response {
    let reply = state.cluster.transport.reply(request, body);
    ([(header::CONTENT_TYPE, BINARY_MEDIA_TYPE)], reply.encode()).into_response()
}

async fn append(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let (envelope, rpc): (_, AppendEntriesRequest<TypeConfig>) =
        open(&state, &body, RpcKind::Append)?;
    let result = Answer::of(state.cluster.raft.append_entries(rpc).await);
    Ok(answer(&state, &envelope, encoding::encode(&result)))
}

async fn vote(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let (envelope, rpc): (_, VoteRequest<u64>) = open(&state, &body, RpcKind::Vote)?;
    let result = Answer::of(state.cluster.raft.vote(rpc).await);
    Ok(answer(&state, &envelope, encoding::encode(&result)))
}

async fn snapshot(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let (envelope, rpc): (_, InstallSnapshotRequest<TypeConfig>) =
        open(&state, &body, RpcKind::Snapshot)?;
    let result = Answer::of_snapshot(state.cluster.raft.install_snapshot(rpc).await);
    Ok(answer(&state, &envelope, encoding::encode(&result)))
}
