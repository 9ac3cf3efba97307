//! Conformance tests any `BlobStore` backend must pass, run here against `FsVault`.

use medledger_core::Hash;
use medledger_vault::{BlobStore, FsVault, MAX_BLOB_BYTES, VaultError};

fn suite(store: &dyn BlobStore, corrupt: &dyn Fn(&Hash)) {
    // Round trip, idempotent put, missing blob.
    let h = store.put(b"sealed bytes").unwrap();
    assert_eq!(h, Hash::of(b"sealed bytes"));
    assert_eq!(store.put(b"sealed bytes").unwrap(), h);
    assert_eq!(store.get(&h).unwrap().as_deref(), Some(&b"sealed bytes"[..]));
    assert!(store.get(&Hash::of(b"never stored")).unwrap().is_none());
    // Oversize refused.
    assert!(matches!(store.put(&vec![0u8; MAX_BLOB_BYTES + 1]), Err(VaultError::TooLarge { .. })));
    // Corruption is reported, never served.
    corrupt(&h);
    assert!(matches!(store.get(&h), Err(VaultError::Corrupt { .. })));
}

#[test]
fn fs_vault_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let vault = FsVault::open(dir.path()).unwrap();
    suite(&vault, &|h| {
        let path = dir.path().join(h.to_hex());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, bytes).unwrap();
    });
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}
