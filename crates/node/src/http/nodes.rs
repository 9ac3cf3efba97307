//! Node routes: the network's nodes as the ledger knows them (id, key, address, hospital,
//! status), and the transaction that admitted one with its inclusion proof, public and
//! unsigned: consortium infrastructure, not patient data. What changes them is a
//! regulator-signed transaction (`medledger_core::tx::NodeTx`), submitted like any other.

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::get,
};
use medledger_api::{NodeAdmission, NodeView, paths};

use crate::{
    app::AppState,
    http::{
        error::{ApiResult, bad_request, not_found},
        views,
    },
};

/// The node routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::NODES, get(nodes))
        .route(&format!("{}/{{id}}", paths::NODES), get(node))
        .route(&format!("{}/{{id}}/{}", paths::NODES, paths::NODE_ADMISSION), get(admission))
}

/// Every node, the genesis node (1) first, removed ones too.
async fn nodes(State(state): State<AppState>) -> ApiResult<Vec<NodeView>> {
    Ok(Json(state.ledger.node_members()?.into_iter().map(views::node).collect()))
}

/// One node by id: 404 `not_found` for an id the ledger never assigned.
async fn node(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<NodeView> {
    let id = parse_node_id(&id)?;
    let node = state.ledger.node_member(id)?.ok_or_else(|| not_found(format!("no node {id}")))?;
    Ok(Json(views::node(node)))
}

/// One node with the regulator's transaction that admitted it, proven against this node's
/// checkpoint (none for the genesis node): 404 `not_found` for an id the ledger never assigned.
async fn admission(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<NodeAdmission> {
    let id = parse_node_id(&id)?;
    let node = state.ledger.node_member(id)?.ok_or_else(|| not_found(format!("no node {id}")))?;
    let admission = match state.ledger.node_admission(id)? {
        Some(record) => Some(views::tx_proof(&state, record)?),
        None => None,
    };
    Ok(Json(NodeAdmission { node: views::node(node), admission }))
}

fn parse_node_id(id: &str) -> Result<u64, crate::http::error::ApiError> {
    id.parse().map_err(|_| bad_request(format!("{id:?} is not a node id (a number from 1)")))
}
