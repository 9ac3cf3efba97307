//! Vault integration tests: the conformance suite (`suite.rs`) that any `BlobStore` backend
//! must pass, run against `FsVault`, and the checks only the filesystem backend has: crash
//! leftovers cleaned on open, the index reconciled with files changed behind its back, and the
//! lock against a second opener; and an upload that runs out of space (`enospc.rs`).

mod enospc;
mod suite;

use std::{fs, io::Read, path::Path, time::Duration};

use medledger_core::{Cid, Hash, ids::AccountId};
use medledger_vault::{
    BlobError, BlobStore, FsVault, GcReport, IN_MEMORY_READ_BYTES, Reconciliation, SYSTEM_UPLOADER,
    VaultConfig,
};
use suite::{Backend, bytes};
use tempfile::TempDir;

/// `FsVault` in a fresh temporary directory.
struct Fs {
    /// Declared before `dir`, so the vault closes before the directory is removed.
    vault: FsVault,
    dir: TempDir,
}

impl Backend for Fs {
    type Store = FsVault;

    fn new(config: VaultConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let vault = FsVault::open_with(dir.path(), config).unwrap();
        Self { vault, dir }
    }

    fn store(&self) -> &FsVault {
        &self.vault
    }

    fn damage(&self, hash: &Hash) {
        flip_bit(&self.vault.blob_path(hash));
    }

    fn partial_uploads(&self) -> usize {
        temp_files(self.dir.path())
    }
}

blob_store_conformance!(Fs);

const ALICE: AccountId = AccountId([0xa1; 20]);

/// A blob up to `IN_MEMORY_READ_BYTES` is handed on as the very bytes that were checked (a
/// server sends them without copying them again), from where reading stopped; a larger one
/// only as a reader, served in its second, rechecked pass.
#[test]
fn a_small_blob_is_handed_on_as_the_bytes_checked_and_a_large_one_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let vault = FsVault::open(dir.path()).unwrap();
    let small = bytes(3, 1024 * 1024);
    let hash = store(&vault, ALICE, &small);
    let mut blob = vault.open_verified(&hash).unwrap().unwrap();
    let mut head = [0u8; 10];
    blob.read_exact(&mut head).unwrap();
    assert_eq!(head, small[..10]);
    let rest = blob.into_bytes().expect("a small blob is held in memory");
    assert!(rest == small[10..], "the bytes handed on differ from the rest of the blob");

    let large = bytes(4, IN_MEMORY_READ_BYTES as usize + 1);
    let hash = store(&vault, ALICE, &large);
    let blob = vault.open_verified(&hash).unwrap().unwrap();
    let Err(mut blob) = blob.into_bytes() else { panic!("a large blob is not held in memory") };
    let mut read = Vec::new();
    blob.read_to_end(&mut read).unwrap();
    assert!(read == large, "the large blob read back differs");
    // A chunk at a time, as a node serves it: the same bytes, then an empty chunk.
    let mut blob = vault.open_verified(&hash).unwrap().unwrap();
    let mut read = Vec::new();
    loop {
        let chunk = blob.read_chunk(1 << 20).unwrap();
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() <= 1 << 20, "a chunk of {} bytes", chunk.len());
        read.extend_from_slice(&chunk);
    }
    assert!(read == large, "the large blob read in chunks differs");
}

/// Flips one bit in the middle of the file at `path`.
fn flip_bit(path: &Path) {
    let mut data = fs::read(path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x10;
    fs::write(path, data).unwrap();
}

/// Temporary upload files in `dir`.
fn temp_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".tmp"))
        .count()
}

fn store(vault: &FsVault, who: AccountId, data: &[u8]) -> Hash {
    let mut up = vault.begin_upload(who, None).unwrap();
    up.write_chunk(data).unwrap();
    up.finish().unwrap().cid.hash()
}

#[test]
fn upload_in_progress_is_a_temp_file_and_drop_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let vault = FsVault::open(dir.path()).unwrap();
    let mut up = vault.begin_upload(ALICE, None).unwrap();
    up.write_chunk(&bytes(1, 1 << 20)).unwrap();
    assert_eq!(temp_files(dir.path()), 1);
    drop(up);
    assert_eq!(temp_files(dir.path()), 0);
}

#[test]
fn stale_temp_files_of_a_killed_process_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let kept = {
        let vault = FsVault::open(dir.path()).unwrap();
        store(&vault, ALICE, b"finished before the crash")
    };
    // What a process killed mid-upload leaves: a temporary file, never renamed.
    fs::write(dir.path().join(".tmp-00112233deadbeef"), bytes(2, 100_000)).unwrap();
    fs::write(dir.path().join(".tmp-8899aabbccddeeff"), b"").unwrap();
    let vault = FsVault::open(dir.path()).unwrap();
    assert_eq!(temp_files(dir.path()), 0);
    assert_eq!(
        vault.reconciliation(),
        Reconciliation { temp_files_removed: 2, adopted: 0, dropped: 0 }
    );
    assert!(vault.contains(&kept).unwrap());
    assert_eq!(vault.get(&kept).unwrap().unwrap(), b"finished before the crash");
}

#[test]
fn index_drops_blobs_removed_behind_its_back() {
    let dir = tempfile::tempdir().unwrap();
    let (gone, stays) = {
        let vault = FsVault::open(dir.path()).unwrap();
        let gone = store(&vault, ALICE, &bytes(3, 5000));
        let stays = store(&vault, ALICE, &bytes(4, 7000));
        fs::remove_file(vault.blob_path(&gone)).unwrap();
        (gone, stays)
    };
    let vault = FsVault::open(dir.path()).unwrap();
    assert_eq!(
        vault.reconciliation(),
        Reconciliation { temp_files_removed: 0, adopted: 0, dropped: 1 }
    );
    assert!(!vault.contains(&gone).unwrap());
    assert!(vault.contains(&stays).unwrap());
    assert_eq!(vault.usage(ALICE).unwrap(), 7000, "the removed blob is still charged");
}

#[test]
fn index_adopts_blobs_added_behind_its_back_and_gc_collects_them() {
    let dir = tempfile::tempdir().unwrap();
    drop(FsVault::open(dir.path()).unwrap());
    // A blob file with no index entry: copied in by an operator, or renamed into place just
    // before a crash that lost the index commit.
    let data = bytes(5, 12_345);
    let hash = Hash::of(&data);
    fs::write(dir.path().join(hash.to_hex()), &data).unwrap();
    // Files that are not blobs are left alone.
    fs::write(dir.path().join("README"), b"not a blob").unwrap();
    fs::write(dir.path().join(Hash::of(b"x").to_hex().to_uppercase()), b"x").unwrap();

    let vault = FsVault::open(dir.path()).unwrap();
    assert_eq!(
        vault.reconciliation(),
        Reconciliation { temp_files_removed: 0, adopted: 1, dropped: 0 }
    );
    let info = vault.info(&hash).unwrap().unwrap();
    assert_eq!((info.len, info.uploader), (12_345, SYSTEM_UPLOADER));
    assert_eq!(vault.usage(SYSTEM_UPLOADER).unwrap(), 12_345);
    let mut served = Vec::new();
    std::io::Read::read_to_end(&mut vault.open_verified(&hash).unwrap().unwrap(), &mut served)
        .unwrap();
    assert_eq!(served, data);
    // Unreferenced, it is collected once the grace period has passed.
    let later = info.stored_at + Duration::from_secs(2 * 3600);
    let report = vault.collect_garbage(&|_| false, Duration::from_secs(3600), later).unwrap();
    assert_eq!(report, GcReport { deleted: 1, bytes_freed: 12_345 });
    assert!(!dir.path().join(hash.to_hex()).exists());
    assert!(dir.path().join("README").exists());
}

#[test]
fn usage_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let hash = {
        let vault = FsVault::open(dir.path()).unwrap();
        store(&vault, ALICE, &bytes(6, 4321))
    };
    let vault = FsVault::open(dir.path()).unwrap();
    assert_eq!(vault.reconciliation(), Reconciliation::default());
    assert_eq!(vault.usage(ALICE).unwrap(), 4321);
    assert_eq!(vault.info(&hash).unwrap().unwrap().uploader, ALICE);
}

#[test]
fn a_second_opener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _vault = FsVault::open(dir.path()).unwrap();
    match FsVault::open(dir.path()) {
        Err(e @ BlobError::InUse { .. }) => assert!(e.to_string().contains("in use")),
        other => panic!("expected InUse, got {other:?}"),
    }
}

#[test]
fn a_blob_changed_between_check_and_serving_ends_in_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let vault = FsVault::open(dir.path()).unwrap();
    let data = bytes(7, 6 << 20);
    let hash = store(&vault, ALICE, &data);
    let mut blob = vault.open_verified(&hash).unwrap().unwrap();
    let mut chunked = vault.open_verified(&hash).unwrap().unwrap();
    // Damage the same file (in place) after the check, before it is served.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::OpenOptions::new().write(true).open(vault.blob_path(&hash)).unwrap();
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(&[!data[3 << 20]]).unwrap();
    }
    let mut served = Vec::new();
    let e = std::io::Read::read_to_end(&mut blob, &mut served).unwrap_err();
    assert!(matches!(BlobError::from_io(&e), Some(BlobError::Corrupt { .. })));
    assert!(served.len() < data.len(), "a complete but altered blob was served");
    // Read a chunk at a time (as a node serves it), the last chunk is withheld likewise.
    let mut served = 0;
    let e = loop {
        match chunked.read_chunk(1 << 20) {
            Ok(chunk) if chunk.is_empty() => panic!("the altered blob was served to its end"),
            Ok(chunk) => served += chunk.len(),
            Err(e) => break e,
        }
    };
    assert!(matches!(BlobError::from_io(&e), Some(BlobError::Corrupt { .. })));
    assert!(served < data.len(), "a complete but altered blob was served");
}

#[test]
fn cid_text_names_the_blob_file() {
    let dir = tempfile::tempdir().unwrap();
    let vault = FsVault::open(dir.path()).unwrap();
    let hash = store(&vault, ALICE, b"hello world");
    let cid: Cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e".parse().unwrap();
    assert_eq!(cid.hash(), hash);
    assert!(vault.blob_path(&hash).ends_with(hash.to_hex()));
    assert!(vault.contains(&cid.hash()).unwrap());
}
