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

    /// The lock file a running node holds for as long as it runs.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("node.lock")
    }

    /// Takes the directory's lock for as long as the returned guard lives; refused while
    /// another node holds it. The operating system drops the lock when the process ends, even
    /// after `kill -9`.
    pub fn lock(&self) -> Result<DirLock, NodeError> {
        let path = self.lock_path();
        let mut options = fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options
            .open(&path)
            .map_err(|e| NodeError::DataDir(format!("{}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(NodeError::DataDir(format!(
                "{} is in use by another process (is a node already running on this data directory?)",
                self.root.display()
            ))),
            Err(fs::TryLockError::Error(e)) => {
                Err(NodeError::DataDir(format!("{}: {e}", path.display())))
            }
        }
    }

    /// Whether a running node holds this directory's lock.
    pub fn in_use(&self) -> bool {
        fs::File::open(self.lock_path())
            .is_ok_and(|f| matches!(f.try_lock_shared(), Err(fs::TryLockError::WouldBlock)))
    }

    /// Makes the directory and every directory in it 0700 and every file 0600 (L6: the
    /// ledger, the Raft log and the vault are nobody else's to read), returning what was
    /// wider. Symbolic links are left alone.
    pub fn secure(&self) -> Result<Vec<PathBuf>, NodeError> {
        let mut widened = Vec::new();
        #[cfg(unix)]
        tighten(&self.root, &mut widened)
            .map_err(|e| NodeError::DataDir(format!("{}: {e}", self.root.display())))?;
        Ok(widened)
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

/// The lock on a data directory held by a running node (see [`DataDir::lock`]).
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
}

/// Sets `path` (and, for a directory, everything under it) to owner-only modes, noting each
/// path whose mode was wider.
#[cfg(unix)]
fn tighten(path: &Path, widened: &mut Vec<PathBuf>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let want = if meta.is_dir() { 0o700 } else { 0o600 };
    let mode = meta.permissions().mode() & 0o777;
    if mode & !want != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & want))?;
        widened.push(path.to_owned());
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            tighten(&entry?.path(), widened)?;
        }
    }
    Ok(())
}

/// Writes a file readable only by its owner, fsynced with its directory.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    crate::durable::create_private_fsynced(path, bytes)
        .map_err(|e| NodeError::DataDir(format!("{}: {e}", path.display())))
}
