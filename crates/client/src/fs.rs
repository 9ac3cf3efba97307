//! The client's durable file writes (wallets, the gateway's outbox, case exports): through a
//! temporary file in the same directory, created 0600 (unix), fsynced, moved into place, and
//! the directory fsynced, so that a crash leaves either the old file or all of the new one.

use std::{
    fs::{self, OpenOptions},
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
};

use crate::{error::ClientError, rand::random_fill};

/// What [`write_fsynced`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// `path` now holds the new bytes, durably.
    Done,
    /// Not overwriting, and a file was already at `path`: nothing was changed.
    AlreadyExists,
}

/// Writes `bytes` to `path` durably. With `overwrite` false an existing file is never replaced,
/// even one that appears while this runs (the temporary file is hard-linked into place, which
/// never replaces; where hard links are missing, checked and then renamed).
pub(crate) fn write_fsynced(
    path: &Path,
    bytes: &[u8],
    overwrite: bool,
) -> Result<Written, ClientError> {
    let file_name = path.file_name().ok_or_else(|| ClientError::InvalidInput {
        what: "path",
        reason: format!("{} does not name a file", path.display()),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut tag = [0u8; 8];
    random_fill(&mut tag)?;
    let tmp = dir.join(format!(".{}.{}.tmp", file_name.to_string_lossy(), hex::encode(tag)));
    let result = write_then_move(&tmp, path, bytes, overwrite);
    if !matches!(result, Ok(Written::Done)) {
        // Best effort: the temporary file may not exist, or may already have been moved.
        let _ = fs::remove_file(&tmp);
    }
    if let Ok(Written::Done) = result {
        sync_dir(&dir)?;
    }
    result
}

/// Writes a file only its owner may read (0600 on unix; an export holding plaintext),
/// durably, replacing any file at `path` ([`write_fsynced`]).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    replace_fsynced(path, bytes)
}

/// Creates `path` (0600 on unix) holding `bytes`, durably, unless a file is already there,
/// even one that appears while this runs ([`write_fsynced`], not overwriting): whether it
/// was created. Two processes creating one file at once: one creates it, the other keeps it.
pub fn create_private(path: &Path, bytes: &[u8]) -> Result<bool, ClientError> {
    Ok(write_fsynced(path, bytes, false)? == Written::Done)
}

/// Replaces `path` with `bytes` durably ([`write_fsynced`], overwriting).
pub(crate) fn replace_fsynced(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    write_fsynced(path, bytes, true).map(|_| ())
}

fn write_then_move(
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
    overwrite: bool,
) -> Result<Written, ClientError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(tmp).map_err(|e| ClientError::io("create", tmp, e))?;
    file.write_all(bytes).map_err(|e| ClientError::io("write", tmp, e))?;
    file.sync_all().map_err(|e| ClientError::io("fsync", tmp, e))?;
    drop(file);
    if overwrite {
        fs::rename(tmp, path).map_err(|e| ClientError::io("rename into place", path, e))?;
        return Ok(Written::Done);
    }
    match fs::hard_link(tmp, path) {
        Ok(()) => {
            fs::remove_file(tmp).map_err(|e| ClientError::io("remove", tmp, e))?;
            Ok(Written::Done)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(Written::AlreadyExists),
        // File systems without hard links: check, then rename.
        Err(_) => {
            if fs::symlink_metadata(path).is_ok() {
                return Ok(Written::AlreadyExists);
            }
            fs::rename(tmp, path).map_err(|e| ClientError::io("rename into place", path, e))?;
            Ok(Written::Done)
        }
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), ClientError> {
    let d = fs::File::open(dir).map_err(|e| ClientError::io("open directory", dir, e))?;
    d.sync_all().map_err(|e| ClientError::io("fsync directory", dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), ClientError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_leaves_only_the_new_content_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        replace_fsynced(&path, b"old").unwrap();
        replace_fsynced(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_private_creates_once_and_keeps_what_is_there() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        assert!(create_private(&path, b"first").unwrap());
        assert!(!create_private(&path, b"second").unwrap(), "created over an existing file");
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary file was left");
    }

    #[test]
    fn not_overwriting_keeps_an_existing_file_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet");
        assert_eq!(write_fsynced(&path, b"first", false).unwrap(), Written::Done);
        assert_eq!(write_fsynced(&path, b"second", false).unwrap(), Written::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
