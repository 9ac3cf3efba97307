//! The offline check of a vault directory that no process holds open (`medledger verify`):
//! the index is there and opens, and every blob someone references has its file, whose bytes
//! hash to its name, and its index entry. It reads only: nothing is repaired or created (the
//! node's open does the repairs).

use std::{collections::HashSet, path::Path};

use medledger_core::Hash;

use super::{INDEX_FILE, index, read};
use crate::BlobError;

/// What [`check_offline`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VaultCheck {
    /// Why the index could not be read (missing, unreadable, needing crash recovery); `None`
    /// when it was read.
    pub index_problem: Option<String>,
    /// Entries in the index.
    pub indexed: u64,
    /// Referenced blobs whose file is present and hashes to its name.
    pub whole: u64,
    /// Referenced blobs with no file.
    pub missing: Vec<Hash>,
    /// Blobs referenced without having been required (see [`check_offline`]) that neither
    /// the files nor the index know: never stored in this vault, rather than lost from it.
    pub never_stored: Vec<Hash>,
    /// Referenced blobs whose file does not hash to its name (or could not be read): the
    /// blob and what went wrong.
    pub corrupt: Vec<(Hash, String)>,
    /// Referenced blobs present on disk but not in the index (a readable index only).
    pub unindexed: Vec<Hash>,
}

impl VaultCheck {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.index_problem.is_none()
            && self.missing.is_empty()
            && self.corrupt.is_empty()
            && self.unindexed.is_empty()
    }
}

/// Checks the vault in `dir` against the blobs in `referenced`, hashing each referenced blob's
/// whole file. `optional` says of a blob that it was referenced without the vault being
/// required to hold it (a registration's sealed details, uploaded by the wallet before it
/// signs): with no file and no index entry it is counted as never stored, not as missing.
/// Writes nothing.
pub fn check_offline(
    dir: &Path,
    referenced: impl IntoIterator<Item = Hash>,
    optional: impl Fn(&Hash) -> bool,
) -> VaultCheck {
    let mut check = VaultCheck::default();
    let indexed: Option<HashSet<Hash>> = match index::read_offline(&dir.join(INDEX_FILE)) {
        Ok(hashes) => {
            check.indexed = hashes.len() as u64;
            Some(hashes)
        }
        Err(problem) => {
            check.index_problem = Some(problem);
            None
        }
    };
    for hash in referenced {
        match read::open_verified(&dir.join(hash.to_hex()), &hash) {
            Ok(None) if optional(&hash) && indexed.as_ref().is_some_and(|i| !i.contains(&hash)) => {
                check.never_stored.push(hash);
            }
            Ok(None) => check.missing.push(hash),
            Ok(Some(_)) => {
                check.whole += 1;
                if indexed.as_ref().is_some_and(|i| !i.contains(&hash)) {
                    check.unindexed.push(hash);
                }
            }
            Err(BlobError::Corrupt { actual, .. }) => {
                check.corrupt.push((hash, format!("its bytes hash to {actual}")));
            }
            Err(e) => check.corrupt.push((hash, e.to_string())),
        }
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlobStore, FsVault};

    #[test]
    fn a_blob_never_stored_is_told_apart_from_a_lost_one_only_when_it_was_optional() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, lost) = {
            let vault = FsVault::open(dir.path()).unwrap();
            (vault.put(b"kept").unwrap(), vault.put(b"lost").unwrap())
        };
        std::fs::remove_file(dir.path().join(lost.to_hex())).unwrap();
        let never = Hash::of(b"never uploaded");
        let optional = |h: &Hash| *h != kept;

        let c = check_offline(dir.path(), [kept, lost, never], optional);
        assert_eq!((c.whole, c.indexed), (1, 2), "{c:?}");
        assert_eq!(c.missing, [lost], "indexed but gone: lost, even if optional");
        assert_eq!(c.never_stored, [never]);
        assert!(!c.is_ok());

        let c = check_offline(dir.path(), [kept, never], |_| false);
        assert_eq!(c.missing, [never], "a required blob is missing however it came to be");
        let c = check_offline(dir.path(), [kept, never], optional);
        assert!(c.is_ok(), "{c:?}");
    }
}
