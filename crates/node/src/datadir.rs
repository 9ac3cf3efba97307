//! The node's data directory: where each file lives, first-run initialisation (genesis, node
//! key), and loading them.

use std::{
    fs,
    path::{Path, PathBuf},
};

use medledger_core::{block::Genesis, keys::SigningKey};
use medledger_ledger::Ledger;

use crate::NodeError;

/// A node's data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The directory at `root` (not checked).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// Root path.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The ledger database.
    pub fn ledger(&self) -> PathBuf {
        self.root.join("ledger.redb")
    }
    /// The Raft log database.
    pub fn raft_log(&self) -> PathBuf {
        self.root.join("raft-log.redb")
    }
    /// The node's checkpoint-signing key.
    pub fn node_key_path(&self) -> PathBuf {
        self.root.join("node.key")
    }
    /// Genesis, as JSON for people and other nodes.
    pub fn genesis_path(&self) -> PathBuf {
        self.root.join("genesis.json")
    }
    /// The vault janitor's cursor: the last block whose erasures it carried out.
    pub fn janitor_cursor(&self) -> PathBuf {
        self.root.join("vault-janitor.height")
    }

    /// The blob vault.
    pub fn vault(&self) -> PathBuf {
        self.root.join("vault")
    }

    /// Whether the directory holds an initialised ledger.
    pub fn is_initialised(&self) -> bool {
        self.ledger().exists()
    }

    /// Creates the node key (if absent) and reads its public half, for building genesis.
    pub fn ensure_node_key(&self) -> Result<SigningKey, NodeError> {
        fs::create_dir_all(&self.root)
            .map_err(|e| NodeError::DataDir(format!("{}: {e}", self.root.display())))?;
        if !self.node_key_path().exists() {
            let key = SigningKey::generate();
            write_private(&self.node_key_path(), hex::encode(key.expose_secret()).as_bytes())?;
        }
        self.node_key()
    }

    /// Loads the node key.
    pub fn node_key(&self) -> Result<SigningKey, NodeError> {
        let path = self.node_key_path();
        let text = fs::read_to_string(&path)
            .map_err(|e| NodeError::DataDir(format!("{}: {e}", path.display())))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed)
            .map_err(|_| NodeError::DataDir(format!("{} is not a node key", path.display())))?;
        Ok(SigningKey::from_seed(seed))
    }

    /// Creates the ledger from `genesis` and writes genesis.json. Refuses an initialised
    /// directory.
    pub fn initialise(&self, genesis: &Genesis) -> Result<(), NodeError> {
        if self.is_initialised() {
            return Err(NodeError::DataDir(format!(
                "{} already holds a ledger",
                self.root.display()
            )));
        }
        fs::create_dir_all(&self.root).map_err(|e| NodeError::DataDir(e.to_string()))?;
        let json =
            serde_json::to_vec_pretty(genesis).map_err(|e| NodeError::DataDir(e.to_string()))?;
        fs::write(self.genesis_path(), json).map_err(|e| NodeError::DataDir(e.to_string()))?;
        Ledger::create(&self.ledger(), genesis.clone())?;
        Ok(())
    }
}

/// Writes a file readable only by its owner.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f =
        options.open(path).map_err(|e| NodeError::DataDir(format!("{}: {e}", path.display())))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| NodeError::DataDir(e.to_string()))
}
