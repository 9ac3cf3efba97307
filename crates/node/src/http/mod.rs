//! The HTTP API (axum): only the router. Each area registers its own routes (one file per
//! area), over the kernel: the application state ([`crate::app`]), the error type
//! ([`error`]), submission ([`submit`]), the audited read ([`crate::audited`]), signed
//! requests ([`crate::auth`]), admission ([`crate::admission`]) and the entry-to-view
//! conversions ([`views`]). Arrows point one way: router → area routes → kernel.
//!
//! Transaction submission admits a transaction (decode with limits, strict signature check,
//! envelope precheck against committed state), queues it for the next block and answers with
//! its receipt once the block is durable. Everything else reads committed state.

mod audit;
mod blobs;
mod cases;
mod cluster;
mod consent;
mod devices;
mod directory;
mod emergency;
pub mod error;
mod events;
mod nodes;
mod ops;
mod raft;
mod records;
pub(crate) mod submit;
pub(crate) mod views;

use axum::{Router, extract::DefaultBodyLimit, middleware::from_fn_with_state};

pub use crate::app::AppState;
use crate::limits::MAX_DEFAULT_BODY_BYTES;

/// The API's routes, with the body limit, the log of refused requests and the per-route
/// metrics around them.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(submit::routes(&state))
        .merge(directory::routes())
        .merge(consent::routes())
        .merge(audit::routes())
        .merge(events::routes())
        .merge(blobs::routes(&state))
        .merge(records::routes(&state))
        .merge(cases::routes(&state))
        .merge(devices::routes(&state))
        .merge(emergency::routes(&state))
        .merge(nodes::routes())
        .merge(ops::routes())
        .merge(cluster::routes())
        .merge(raft::routes(&state))
        .layer(from_fn_with_state(state.clone(), cluster::min_height))
        .layer(DefaultBodyLimit::max(MAX_DEFAULT_BODY_BYTES))
        .layer(from_fn_with_state(state.clone(), crate::auth::log_denials))
        .layer(from_fn_with_state(state.metrics.clone(), crate::metrics::count_requests))
        .with_state(state)
}
