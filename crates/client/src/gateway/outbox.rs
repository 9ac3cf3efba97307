//! The gateway's outbox: every transaction the device signs is written here, with the blob it
//! names, and fsynced, before it is sent; it is removed only once the ledger has it. One file
//! per transaction, named by its nonce, written to a temporary name, fsynced and renamed (and
//! the directory fsynced), so a crash leaves either the whole entry or none of it.

use std::{
    fs,
    path::{Path, PathBuf},
};

use medledger_core::{
    encoding,
    tx::devices::{Metric, Severity},
};
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, DeviceError};

/// Largest outbox entry read back (a transaction and a sealed batch).
const MAX_ENTRY_BYTES: usize = 2 * 1024 * 1024;

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A batch of normal readings.
    Batch {
        /// First sequence number covered.
        first_seq: u64,
        /// Last sequence number covered.
        last_seq: u64,
        /// Readings in it.
        count: u32,
    },
    /// An alert.
    Alert {
        /// The reading's sequence number.
        seq: u64,
        /// Which vital sign.
        metric: Metric,
        /// How abnormal.
        severity: Severity,
    },
}

impl EntryKind {
    /// The highest sequence number the entry covers.
    pub fn last_seq(&self) -> u64 {
        match self {
            EntryKind::Batch { last_seq, .. } => *last_seq,
            EntryKind::Alert { seq, .. } => *seq,
        }
    }
}

/// One signed transaction waiting to be on the ledger, and the blob to upload first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// What it is.
    pub kind: EntryKind,
    /// The signed transaction, canonically encoded.
    pub tx: Vec<u8>,
    /// The sealed blob it names.
    pub blob: Vec<u8>,
}

/// A directory of entries.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// Opens (creating) the outbox in `dir`, removing temporary files a crash left behind.
    pub fn open(dir: &Path) -> Result<Self, ClientError> {
        fs::create_dir_all(dir).map_err(|e| ClientError::io("create", dir, e))?;
        for entry in fs::read_dir(dir).map_err(|e| ClientError::io("read", dir, e))? {
            let path = entry.map_err(|e| ClientError::io("read", dir, e))?.path();
            if path.extension().is_some_and(|x| x == "tmp") {
                fs::remove_file(&path).map_err(|e| ClientError::io("remove", &path, e))?;
            }
        }
        Ok(Self { dir: dir.to_owned() })
    }

    fn path(&self, nonce: u64) -> PathBuf {
        self.dir.join(format!("{nonce:020}.entry"))
    }

    /// Writes the entry of the transaction with `nonce`, durably.
    pub fn put(&self, nonce: u64, entry: &OutboxEntry) -> Result<(), ClientError> {
        let path = self.path(nonce);
        crate::fs::replace_fsynced(&path, &encoding::encode(entry))
    }

    /// Removes the entry of `nonce` (the ledger has it).
    pub fn remove(&self, nonce: u64) -> Result<(), ClientError> {
        let path = self.path(nonce);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ClientError::io("remove", &path, e)),
        }
    }

    fn sync_dir(&self) -> Result<(), ClientError> {
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ClientError::io("fsync", &self.dir, e))
    }

    /// Every entry, by nonce.
    pub fn entries(&self) -> Result<Vec<(u64, OutboxEntry)>, ClientError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| ClientError::io("read", &self.dir, e))? {
            let path = entry.map_err(|e| ClientError::io("read", &self.dir, e))?.path();
            if path.extension().is_none_or(|x| x != "entry") {
                continue;
            }
            let bad = |reason: String| {
                ClientError::Device(DeviceError::Gateway {
                    reason: format!("outbox entry {} is unusable: {reason}", path.display()),
                })
            };
            let nonce: u64 = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("its name is not a nonce".into()))?;
            let bytes = fs::read(&path).map_err(|e| ClientError::io("read", &path, e))?;
            let entry: OutboxEntry = encoding::decode("outbox entry", &bytes, MAX_ENTRY_BYTES)
                .map_err(|e| bad(e.to_string()))?;
            out.push((nonce, entry));
        }
        out.sort_by_key(|(n, _)| *n);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopening_in_nonce_order_and_temporaries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let e = |seq| OutboxEntry {
            kind: EntryKind::Alert { seq, metric: Metric::Spo2, severity: Severity::Critical },
            tx: vec![1, 2, 3],
            blob: vec![seq as u8],
        };
        outbox.put(12, &e(2)).unwrap();
        outbox.put(3, &e(1)).unwrap();
        std::fs::write(dir.path().join("00000000000000000013.tmp"), b"half").unwrap();
        let reopened = Outbox::open(dir.path()).unwrap();
        let got = reopened.entries().unwrap();
        assert_eq!(got, vec![(3, e(1)), (12, e(2))]);
        assert!(!dir.path().join("00000000000000000013.tmp").exists());
        reopened.remove(3).unwrap();
        reopened.remove(3).unwrap();
        assert_eq!(reopened.entries().unwrap(), vec![(12, e(2))]);
        std::fs::write(dir.path().join("00000000000000000014.entry"), b"garbage").unwrap();
        assert!(matches!(
            reopened.entries(),
            Err(ClientError::Device(DeviceError::Gateway { .. }))
        ));
    }
}
