//! Node calls: the network's nodes as the ledger knows them (public, never signed).

use medledger_api::{NodeAdmission, NodeView, paths};

use super::NodeClient;
use crate::error::ClientError;

impl NodeClient {
    /// Every node of the network, the genesis node (1) first, removed ones too.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        self.get_public(paths::NODES).await
    }

    /// The node `id`, or `None` if the ledger never assigned that id (a 404 `not_found`; any
    /// other answer, such as the bare 404 of a node without this route, is an error).
    pub async fn node(&self, id: u64) -> Result<Option<NodeView>, ClientError> {
        self.get_public_optional(&format!("{}/{id}", paths::NODES)).await
    }

    /// The node `id` with the transaction that admitted it, unchecked (see
    /// [`crate::checkpoints::verify_node_admission`]), or `None` for an id the ledger never
    /// assigned.
    pub async fn node_admission(&self, id: u64) -> Result<Option<NodeAdmission>, ClientError> {
        let path = format!("{}/{id}/{}", paths::NODES, paths::NODE_ADMISSION);
        self.get_public_optional(&path).await
    }
}
