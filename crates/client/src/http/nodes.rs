//! Node calls: the network's nodes as the ledger knows them (public, never signed).

use medledger_api::{ErrorCode, NodeView, paths};

use super::NodeClient;
use crate::error::{ClientError, HttpError};

impl NodeClient {
    /// Every node of the network, the genesis node (1) first, removed ones too.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        self.get_public(paths::NODES).await
    }

    /// The node `id`, or `None` if the ledger never assigned that id (a 404 `not_found`; any
    /// other answer, such as the bare 404 of a node without this route, is an error).
    pub async fn node(&self, id: u64) -> Result<Option<NodeView>, ClientError> {
        match self.get_public(&format!("{}/{id}", paths::NODES)).await {
            Ok(node) => Ok(Some(node)),
            Err(ClientError::Http(HttpError::Refused {
                status: 404,
                code: ErrorCode::NotFound,
                ..
            })) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
