//! The node's durable file writes, named by what they fsync. Everything else the node stores
//! durably goes through redb (the ledger, the Raft log) or the vault.

use std::{
    fs,
    io::{self, Write},
    path::Path,
};

/// Creates `path` (it must not exist) readable only by its owner, writes `bytes`, and fsyncs the
/// file and its directory, so that once this returns the file survives a crash.
pub fn create_private_fsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    sync_parent(path)
}

/// Replaces `path` with `bytes` atomically: a crash leaves either the old or the new content.
/// The new content is written to a temporary file beside it and fsynced, renamed over `path`,
/// and the directory is fsynced so the rename itself is durable.
pub fn replace_fsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Fsyncs the directory holding `path` (a no-op where directories cannot be opened for it).
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        #[cfg(unix)]
        Some(dir) if !dir.as_os_str().is_empty() => fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_holds_the_new_content_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor");
        replace_fsynced(&path, b"1").unwrap();
        replace_fsynced(&path, b"22").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"22");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_private_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        create_private_fsynced(&path, b"secret").unwrap();
        let again = create_private_fsynced(&path, b"other").unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
