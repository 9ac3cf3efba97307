//! The vault on a file system that runs out of space: a real, small tmpfs (the tests run as
//! root, as in CI). An upload that hits `ENOSPC` is refused as out of space and leaves no blob,
//! no temporary file and no index entry behind; the vault keeps working once space is there.

use std::{fs, path::Path, process::Command};

use medledger_vault::{BlobStore, FsVault};

use crate::{ALICE, suite::bytes, temp_files};

/// A tmpfs mounted on a fresh directory, unmounted when dropped (also when a test panics).
pub struct SmallFs {
    /// The mount point; removed after the unmount.
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts a tmpfs of `mib` MiB. Panics with the reason if mounting is not permitted: the
    /// test must not pass without the file system it is about.
    pub fn mount(mib: u64) -> Self {
        let dir = tempfile::Builder::new().prefix("medledger-smallfs-").tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "this test mounts a {mib} MiB tmpfs and must run as root (CI does): mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazy: a file still open (a vault not yet dropped) does not keep the mount around.
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Entries of `dir` other than the index.
fn blob_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "index.redb")
        .collect()
}

#[test]
fn an_upload_that_runs_out_of_space_leaves_nothing_behind() {
    let fs = SmallFs::mount(16);
    let dir = fs.path().join("vault");
    let vault = FsVault::open(&dir).unwrap();
    // 24 MiB into 16: the write fails with ENOSPC part-way (or the fsync at the end does).
    let chunk = bytes(7, 64 * 1024);
    let mut upload = vault.begin_upload(ALICE, None).unwrap();
    let mut failure = None;
    for _ in 0..(24 * 16) {
        if let Err(e) = upload.write_chunk(&chunk) {
            failure = Some(e);
            break;
        }
    }
    let failure = match failure {
        Some(e) => e,
        None => upload.finish().expect_err("24 MiB cannot fit in a 16 MiB file system"),
    };
    assert!(failure.is_out_of_space(), "not reported as out of space: {failure}");
    assert!(!failure.is_refusal(), "out of space is the operator's problem: {failure}");
    // Nothing is left: no temporary file, no blob file, no index entry, no quota charged.
    assert_eq!(temp_files(&dir), 0);
    assert_eq!(blob_files(&dir), Vec::<String>::new());
    assert_eq!(vault.usage(ALICE).unwrap(), 0);

    // The space came back with the temporary file: the vault takes the next upload.
    let mut upload = vault.begin_upload(ALICE, None).unwrap();
    upload.write_chunk(b"small enough").unwrap();
    let stored = upload.finish().unwrap();
    assert_eq!(vault.get(&stored.cid.hash()).unwrap().unwrap(), b"small enough");
    assert_eq!(blob_files(&dir), vec![stored.cid.hash().to_hex()]);
}
