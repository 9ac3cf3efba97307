//! Raft RPCs between nodes: `POST /v1/raft/{append,vote,snapshot}`, each a signed envelope
//! (`raft/transport.rs`) whose checks run before the Raft core sees the body; the answer is an
//! envelope signed by this node. A refused envelope gets a typed error code (403
//! `wrong_chain`, `wrong_recipient`, `not_member`, `not_admitted`, `bad_signature`,
//! `clock_skew`, `wrong_sender`; 400 `malformed`). `GET /v1/raft/blobs/{hash}` serves a vault
//! blob to another member pulling a replica (`raft/replicas.rs`), on the same checks of the
//! signed request in its `x-medledger-node-request` header; `POST /v1/raft/blobs` answers
//! which of up to 1,024 blobs this node holds (an envelope both ways, like the Raft RPCs).

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
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
    server::{Arrival, TlsPeer},
};

/// The Raft routes, each with its body limit, in turns of the cluster's own gate; over TLS a
/// client that proved no node key is refused before it gets a turn.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    let gate = |route: axum::routing::MethodRouter<AppState>, kind: RpcKind| {
        route
            .layer(axum::extract::DefaultBodyLimit::max(kind.limit()))
            .layer(axum::middleware::from_fn_with_state(
                state.cluster.bodies.clone(),
                crate::limits::gate_body,
            ))
            .layer(axum::middleware::from_fn(nodes_only))
    };
    Router::new()
        .route(paths::RAFT_APPEND, gate(post(append), RpcKind::Append))
        .route(paths::RAFT_VOTE, gate(post(vote), RpcKind::Vote))
        .route(paths::RAFT_SNAPSHOT, gate(post(snapshot), RpcKind::Snapshot))
        .route(
            &format!("{}/{{hash}}", paths::RAFT_BLOBS),
            get(blob).layer(axum::middleware::from_fn(nodes_only)),
        )
        .route(paths::RAFT_BLOBS, gate(post(blobs_held), RpcKind::BlobsHeld))
}

/// Over TLS, refuses (403 `wrong_sender`) a request to a node-to-node route whose connection
/// proved no node key (a wallet's, or a stranger's without a certificate), before its body is
/// read: only another node's connection may hold one of the gate's turns. (A certificate of a
/// key that is no active node never gets this far: its handshake fails.)
async fn nodes_only(
    arrival: Arrival,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(TlsPeer(None)) = arrival.0 {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::WrongSender,
            "over TLS, node-to-node routes serve only a connection whose client certificate \
             proved an active node's key, and this connection proved no node key",
        )
        .into_response();
    }
    next.run(request).await
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
    arrival: &Arrival,
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
    // Over TLS, the connection proved a node key: the envelope must be that node's.
    cluster.transport.check_connection(&envelope, arrival.0.as_ref().map(|p| p.0))?;
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

async fn append(
    State(state): State<AppState>,
    arrival: Arrival,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (envelope, rpc): (_, AppendEntriesRequest<TypeConfig>) =
        open(&state, &arrival, &body, RpcKind::Append)?;
    speaks_for_its_sender(&envelope, &rpc.vote)?;
    let applied = *state.applied.borrow();
    crate::raft::blocks::check_signatures_ahead(
        &state.ledger,
        &state.cluster.preverified,
        applied,
        &rpc.entries,
    );
    let result = Answer::of(state.cluster.raft.append_entries(rpc).await);
    Ok(answer(&state, &envelope, encoding::encode(&result)))
}

async fn vote(
    State(state): State<AppState>,
    arrival: Arrival,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (envelope, rpc): (_, VoteRequest<u64>) = open(&state, &arrival, &body, RpcKind::Vote)?;
    speaks_for_its_sender(&envelope, &rpc.vote)?;
    let result = Answer::of(state.cluster.raft.vote(rpc).await);
    Ok(answer(&state, &envelope, encoding::encode(&result)))
}

async fn snapshot(
    State(state): State<AppState>,
    arrival: Arrival,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (envelope, rpc): (_, InstallSnapshotRequest<TypeConfig>) =
        open(&state, &arrival, &body, RpcKind::Snapshot)?;
    speaks_for_its_sender(&envelope, &rpc.vote)?;
    // A chunk is written to the data directory: not after a storage fault, nor below the
    // free-space reserve (507 `disk_full`; the leader retries, and the Raft log and the
    // ledger keep the room the reserve holds for them).
    super::submit::writable(&state, rpc.data.len() as u64)?;
    let cluster = &state.cluster;
    let result = Answer::of_snapshot(cluster.snapshots.receive(&cluster.raft, rpc).await);
    Ok(answer(&state, &envelope, encoding::encode(&result)))
}

/// Which of the blobs a member names this node holds (one flag per hash, in order), in a
/// signed answer: the member then pulls each from a node that has it.
async fn blobs_held(
    State(state): State<AppState>,
    arrival: Arrival,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (envelope, asked): (_, Vec<medledger_core::Hash>) =
        open(&state, &arrival, &body, RpcKind::BlobsHeld)?;
    if asked.len() > crate::raft::transport::MAX_HELD_QUERY {
        return Err(EnvelopeError::Malformed(format!(
            "{} hashes asked for; at most {}",
            asked.len(),
            crate::raft::transport::MAX_HELD_QUERY
        ))
        .into());
    }
    let (vault, ledger) = (state.vault.clone(), state.ledger.clone());
    // A copy of an erased blob (the janitor has not reached its erasure yet) is not offered.
    let held: Vec<bool> = tokio::task::spawn_blocking(move || {
        asked
            .iter()
            .map(|h| {
                Ok::<_, ApiError>(
                    medledger_vault::BlobStore::contains(&*vault, h)
                        .map_err(crate::http::error::blob_error)?
                        && ledger.erased_at(h)?.is_none(),
                )
            })
            .collect::<Result<_, _>>()
    })
    .await
    .map_err(crate::http::error::joined)??;
    Ok(answer(&state, &envelope, encoding::encode(&held)))
}

/// A vault blob for a member pulling a replica: the signed request (kind `Blob`, body the
/// hash in the path) passes every envelope check before the vault is looked at; the blob is
/// streamed after its hash was checked (a damaged copy is never served: 500 `corrupt`).
async fn blob(
    State(state): State<AppState>,
    arrival: Arrival,
    axum::extract::Path(hash): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let hash = crate::http::error::parse_hash(&hash)?;
    let signed = headers
        .get(paths::NODE_REQUEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| hex::decode(v).ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthenticated,
                format!(
                    "a blob is served to another node only on its signed request (the hex \
                     envelope in {})",
                    paths::NODE_REQUEST_HEADER
                ),
            )
        })?;
    // The body: the hash, and the puller's nonce (so that each pull is signed anew).
    let (envelope, (asked, _nonce)): (_, (medledger_core::Hash, [u8; 16])) =
        open(&state, &arrival, &signed, RpcKind::Blob)?;
    if asked != hash {
        return Err(EnvelopeError::Malformed(format!(
            "the signed request asks for blob {asked}, the path for {hash}"
        ))
        .into());
    }
    use crate::raft::transport::{Use, now_ms};
    match state.cluster.served_pulls.first_use(&envelope, now_ms()) {
        Use::First => {}
        Use::Replay => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthenticated,
                "this signed blob request was served already: a node signs each pull anew",
            ));
        }
        Use::TooMany => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Busy,
                "too many blob requests remembered; retry shortly",
            ));
        }
    }
    crate::http::error::refuse_erased(&state.ledger, &hash)?;
    let vault = state.vault.clone();
    let blob = tokio::task::spawn_blocking(move || {
        medledger_vault::BlobStore::open_verified(&*vault, &hash)
    })
    .await
    .map_err(crate::http::error::joined)?
    .map_err(crate::http::error::blob_error)?
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotInVault,
            format!("blob {hash} is not in this node's vault"),
        )
    })?;
    let len = blob.len();
    let mut response = crate::http::records::stream_blob(Vec::new(), blob);
    response.headers_mut().insert(header::CONTENT_LENGTH, len.into());
    Ok(response)
}
