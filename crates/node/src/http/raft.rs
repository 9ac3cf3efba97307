//! Raft RPCs between nodes: `POST /v1/raft/{append,vote,snapshot}`, each a signed envelope
//! (`raft/transport.rs`) whose checks run before the Raft core sees the body; the answer is an
//! envelope signed by this node. A refused envelope gets a typed error code (403
//! `wrong_chain`, `wrong_recipient`, `not_member`, `not_admitted`, `bad_signature`,
//! `clock_skew`, `wrong_sender`; 400 `malformed`).

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
    // The member ids are copied out first: the metrics lock is not held while a large body is
    // decoded and its signature checked (that would stall the Raft core's metrics updates).
    let (initialised, members): (bool, std::collections::BTreeSet<u64>) = {
        let metrics = cluster.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        (membership.voter_ids().next().is_some(), membership.nodes().map(|(id, _)| *id).collect())
    };
    let is_member = |id: u64| members.contains(&id);
    let envelope =
        cluster.transport.open_request(bytes, kind, initialised.then_some(&is_member as _))?;
    let body = encoding::decode("raft request", &envelope.body, kind.limit())
        .map_err(|e| ApiError::from(EnvelopeError::Malformed(e.to_string())))?;
    Ok((envelope, body))
}

/// Refuses a request whose vote speaks for another node than the one that signed it: a
/// leader's append or snapshot, or a candidate's vote, comes from that leader or candidate.
fn speaks_for_its_sender(envelope: &Envelope, vote: &openraft::Vote<u64>) -> Result<(), ApiError> {
    let claimed = vote.leader_id().voted_for();
    if claimed != Some(envelope.from) {
        return Err(EnvelopeError::WrongSender { from: envelope.from, claimed }.into());
    }
    Ok(())
}

/// The signed answer to `request`.
fn answer(state: &AppState, request: &Envelope, body: Vec<u8>) -> Response {
    let reply = state.cluster.transport.reply(request, body);
    ([(header::CONTENT_TYPE, BINARY_MEDIA_TYPE)], reply.encode()).into_response()
}

async fn append(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let (envelope, rpc): (_, AppendEntriesRequest<TypeConfig>) =
        open(&state, &body, RpcKind::Append)?;
    speaks_for_its_sender(&envelope, &rpc.vote)?;
    let result = Answer::of(state.cluster.raft.append_entries(rpc).await);
    Ok(answer(&state, &envelope, encoding::encode(&result)))
}

async fn vote(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let (envelope, rpc): (_, VoteRequest<u64>) = open(&state, &body, RpcKind::Vote)?;
    speaks_for_its_sender(&envelope, &rpc.vote)?;
    let result = Answer::of(state.cluster.raft.vote(rpc).await);
    Ok(answer(&state, &envelope, encoding::encode(&result)))
}

async fn snapshot(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let (envelope, rpc): (_, InstallSnapshotRequest<TypeConfig>) =
        open(&state, &body, RpcKind::Snapshot)?;
    speaks_for_its_sender(&envelope, &rpc.vote)?;
    let result = Answer::of_snapshot(state.cluster.raft.install_snapshot(rpc).await);
    Ok(answer(&state, &envelope, encoding::encode(&result)))
}
