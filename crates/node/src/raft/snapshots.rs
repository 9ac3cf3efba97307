//! The data directory's `snapshots/`: the newest Raft snapshot of the ledger, as one file
//! written by [`medledger_ledger::snapshot`] (its header carries the Raft log id and membership
//! it covers), named `snapshot-<last log index>-<term>.snap`.
//!
//! A snapshot is written to a temporary file, fsynced, renamed into place and the directory
//! fsynced; then older snapshots are deleted, so that a crash leaves the old snapshot or the
//! new one, never a partial one under a snapshot's name. Temporary files a crash left behind
//! are deleted at open.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use medledger_ledger::SnapshotHeader;
use openraft::{LogId, SnapshotMeta};

use super::state_machine::Marker;

const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
const TEMP_SUFFIX: &str = ".tmp";

/// The snapshot directory. Cheap to clone: clones share the lock that orders publications.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotDir {
    dir: PathBuf,
    /// Held while a snapshot is published, so that two (a build and an install) never race
    /// over which is kept.
    publishing: Arc<Mutex<()>>,
    /// Makes temporary names unique within the process.
    counter: Arc<AtomicU64>,
}

/// A published snapshot: its file and what it covers.
#[derive(Clone, Debug)]
pub(crate) struct Published {
    pub(crate) path: PathBuf,
    pub(crate) meta: SnapshotMeta<u64, openraft::BasicNode>,
}

impl SnapshotDir {
    /// Opens (creating, owner-only) the directory `dir` and deletes temporary files left by a
    /// crash.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(Self { dir: dir.to_owned(), publishing: Arc::default(), counter: Arc::default() })
    }

    /// A new temporary file (owner-only) in the directory, for a snapshot being built
    /// (`what` = "building") or received ("receiving").
    pub(crate) fn create_temp(&self, what: &str) -> io::Result<(PathBuf, fs::File)> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{what}-{}-{n}{TEMP_SUFFIX}", std::process::id()));
        let mut options = fs::OpenOptions::new();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        Ok((path.clone(), options.open(&path)?))
    }

    /// Makes the fsynced temporary file `temp` the snapshot covering `last`, unless a newer
    /// one is already published (then `temp` is deleted); deletes older ones. Returns the
    /// newest snapshot's path.
    pub(crate) fn publish(&self, temp: &Path, last: LogId<u64>) -> io::Result<PathBuf> {
        let _publishing = self.publishing.lock().expect("snapshot publication lock poisoned");
        let name = format!("{PREFIX}{:020}-{}{SUFFIX}", last.index, last.leader_id.term);
        let path = self.dir.join(name);
        let existing = self.list()?;
        if let Some((index, newer)) = existing.last()
            && *index > last.index
        {
            fs::remove_file(temp)?;
            return Ok(newer.clone());
        }
        fs::rename(temp, &path)?;
        fs::File::open(&self.dir)?.sync_all()?;
        for (_, old) in existing {
            if old != path {
                fs::remove_file(old)?;
            }
        }
        Ok(path)
    }

    /// The newest published snapshot, if any, and the file opened while no publication can
    /// delete it: a newer snapshot deletes it once published, and the open file stays readable
    /// (opening it by path after the lock is released lost that race, and the Raft core
    /// stopped on the missing file; found by the simulation, `raft/sim`).
    pub(crate) fn open_newest(&self) -> io::Result<Option<(Published, fs::File)>> {
        let _publishing = self.publishing.lock().expect("snapshot publication lock poisoned");
        let Some((_, path)) = self.list()?.pop() else {
            return Ok(None);
        };
        let file = fs::File::open(&path)?;
        let header = SnapshotHeader::read_from(&mut io::BufReader::new(fs::File::open(&path)?))
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        let meta = meta_of(&header, &path)?;
        Ok(Some((Published { path, meta }, file)))
    }

    /// Removes the published snapshots written in another format version (by an older
    /// medledger, before an upgrade): their headers no longer read, so a node that kept them
    /// could neither start (openraft asks for the current snapshot at start) nor serve one.
    /// Returns how many it removed.
    pub(crate) fn remove_outdated(&self) -> io::Result<usize> {
        let _publishing = self.publishing.lock().expect("snapshot publication lock poisoned");
        let mut removed = 0;
        for (_, path) in self.list()? {
            let mut magic = [0u8; 16];
            let mut file = match fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let read = io::Read::read(&mut file, &mut magic)?;
            let ours = medledger_ledger::snapshot::MAGIC;
            if read == magic.len() && magic.starts_with(b"medledger-snap") && &magic != ours {
                tracing::warn!(path = %path.display(), "removing a snapshot of an older format");
                fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Published snapshots by last log index, oldest first.
    fn list(&self) -> io::Result<Vec<(u64, PathBuf)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let index = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.strip_suffix(SUFFIX))
                .and_then(|rest| rest.split('-').next())
                .and_then(|index| index.parse::<u64>().ok());
            if let Some(index) = index {
                out.push((index, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The Raft snapshot meta of a snapshot whose header is `header`, stored at `path` (its id is
/// the file's name).
pub(crate) fn meta_of(
    header: &SnapshotHeader,
    path: &Path,
) -> io::Result<SnapshotMeta<u64, openraft::BasicNode>> {
    let (last_log_id, last_membership) = marker_of(header)?;
    let snapshot_id =
        path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(SnapshotMeta { last_log_id, last_membership, snapshot_id })
}

/// The Raft log id and membership a snapshot's header says it covers.
pub(crate) fn marker_of(header: &SnapshotHeader) -> io::Result<Marker> {
    super::state_machine::decode_marker(&header.marker)
        .map(|(m, _)| m)
        .map_err(|e| io::Error::other(format!("the snapshot's Raft log id does not decode: {e}")))
}
