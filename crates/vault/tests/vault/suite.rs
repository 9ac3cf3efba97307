//! The conformance suite: what every `BlobStore` backend must do, written once against the
//! trait. A backend implements [`Backend`] (how to make a fresh store and how to damage it
//! behind its back) and instantiates the suite with `blob_store_conformance!(MyBackend);`, which
//! generates one `#[test]` per check.

use std::{
    io::{Read, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use medledger_core::{Cid, Hash, ids::AccountId};
use medledger_vault::{
    BlobError, BlobStore, Clock, GcReport, MAX_BLOB_BYTES, SYSTEM_UPLOADER, VaultConfig, VaultError,
};

/// A backend under test.
pub trait Backend: Sized {
    /// The store.
    type Store: BlobStore;
    /// A fresh, empty store with `config`.
    fn new(config: VaultConfig) -> Self;
    /// The store.
    fn store(&self) -> &Self::Store;
    /// Flips one bit of the stored bytes of `hash`, behind the store's back (disk damage).
    fn damage(&self, hash: &Hash);
    /// How many unfinished uploads still occupy storage (e.g. temporary files).
    fn partial_uploads(&self) -> usize;
}

/// Generates one `#[test]` per conformance check for `$backend`.
#[macro_export]
macro_rules! blob_store_conformance {
    ($backend:ty) => {
        $crate::blob_store_conformance!(
            $backend:
            streamed_round_trip,
            small_blobs_and_put_get,
            cid_mismatch_is_refused,
            dropped_upload_leaves_nothing,
            damaged_blob_is_never_served,
            reupload_repairs_damage,
            too_large_is_refused,
            quota_exceeded_is_refused,
            concurrent_uploads_share_the_quota,
            reupload_is_not_charged_twice,
            delete_refunds_quota,
            garbage_collection,
        );
    };
    ($backend:ty: $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::suite::$check::<$backend>();
            }
        )+
    };
}

const ALICE: AccountId = AccountId([0xa1; 20]);
const BOB: AccountId = AccountId([0xb0; 20]);
const MIB: u64 = 1024 * 1024;

/// `len` deterministic pseudo-random bytes (xorshift), different for each `seed`.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Uploads `data` for `uploader` in chunks of `chunk` bytes.
fn upload<S: BlobStore>(
    store: &S,
    uploader: AccountId,
    expected: Option<Cid>,
    data: &[u8],
    chunk: usize,
) -> Result<medledger_vault::StoredBlob, BlobError> {
    let mut up = store.begin_upload(uploader, expected)?;
    for piece in data.chunks(chunk) {
        up.write_chunk(piece)?;
    }
    up.finish()
}

/// Reads a verified blob through small reads.
fn read_all<S: BlobStore>(store: &S, hash: &Hash) -> Option<Vec<u8>> {
    let mut blob = store.open_verified(hash).unwrap()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 3000];
    loop {
        let n = blob.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out.len() as u64, blob.len());
    Some(out)
}

/// Asserts that nothing is visible under `hash` and no partial upload remains.
fn assert_absent<B: Backend>(b: &B, hash: &Hash) {
    let store = b.store();
    assert!(!store.contains(hash).unwrap());
    assert_eq!(store.len(hash).unwrap(), None);
    assert!(store.open_verified(hash).unwrap().is_none());
    assert_eq!(b.partial_uploads(), 0, "a partial upload was left behind");
}

/// A multi-MiB blob streamed in small, uneven chunks reads back identical, through the
/// verified reader; its CID, length and uploader are recorded.
pub fn streamed_round_trip<B: Backend>() {
    let b = B::new(VaultConfig::default());
    let store = b.store();
    let data = bytes(1, 6 * MIB as usize + 12_345);
    let cid = Cid::of(&data);
    let mut up = store.begin_upload(ALICE, Some(cid)).unwrap();
    let mut rest = &data[..];
    let mut step = 1;
    while !rest.is_empty() {
        // 1, 4, 16 ... 4096 bytes, then again: uneven chunks, as from a network.
        let (piece, tail) = rest.split_at(step.min(rest.len()));
        up.write_all(piece).unwrap();
        rest = tail;
        step = if step >= 4096 { 1 } else { step * 4 };
    }
    assert_eq!(up.written(), data.len() as u64);
    let stored = up.finish().unwrap();
    assert_eq!(stored.cid, cid);
    assert_eq!(stored.len, data.len() as u64);
    assert!(!stored.already_present);
    assert!(store.contains(&cid.hash()).unwrap());
    assert_eq!(store.len(&cid.hash()).unwrap(), Some(data.len() as u64));
    let info = store.info(&cid.hash()).unwrap().unwrap();
    assert_eq!(info.uploader, ALICE);
    assert_eq!(store.usage(ALICE).unwrap(), data.len() as u64);
    let blob = store.open_verified(&cid.hash()).unwrap().unwrap();
    assert_eq!(blob.cid(), cid);
    assert_eq!(blob.len(), data.len() as u64);
    assert!(read_all(store, &cid.hash()).unwrap() == data, "the bytes read back differ");
    assert_eq!(b.partial_uploads(), 0);
}

/// Small blobs (including the empty one) round-trip through uploads and through the one-call
/// `put`/`get`; a missing blob is `None`.
pub fn small_blobs_and_put_get<B: Backend>() {
    let b = B::new(VaultConfig::default());
    let store = b.store();
    let empty: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".parse().unwrap();
    let stored = upload(store, ALICE, Some(empty), b"", 1).unwrap();
    assert_eq!((stored.cid, stored.len), (empty, 0));
    assert_eq!(read_all(store, &empty.hash()).unwrap(), b"");

    let h = store.put(b"sealed bytes").unwrap();
    assert_eq!(h, Hash::of(b"sealed bytes"));
    assert_eq!(store.put(b"sealed bytes").unwrap(), h);
    assert_eq!(store.get(&h).unwrap().as_deref(), Some(&b"sealed bytes"[..]));
    assert_eq!(store.info(&h).unwrap().unwrap().uploader, SYSTEM_UPLOADER);
    assert!(store.get(&Hash::of(b"never stored")).unwrap().is_none());
    assert!(store.open_verified(&Hash::of(b"never stored")).unwrap().is_none());
    assert!(matches!(store.put(&vec![0u8; MAX_BLOB_BYTES + 1]), Err(VaultError::TooLarge { .. })));
    // `get` refuses to load a large blob into memory.
    let big = bytes(2, MAX_BLOB_BYTES + 1);
    let big_cid = upload(store, ALICE, None, &big, 64 * 1024).unwrap().cid;
    assert!(matches!(store.get(&big_cid.hash()), Err(VaultError::TooLarge { .. })));
    assert_eq!(b.partial_uploads(), 0);
}

/// Bytes that do not hash to the announced CID are refused and nothing is stored or charged.
pub fn cid_mismatch_is_refused<B: Backend>() {
    let b = B::new(VaultConfig::default());
    let store = b.store();
    let data = bytes(3, 100_000);
    let announced = Cid::of(b"what the client said it would send");
    match upload(store, ALICE, Some(announced), &data, 4096) {
        Err(BlobError::CidMismatch { expected, actual }) => {
            assert_eq!(expected, announced);
            assert_eq!(actual, Cid::of(&data));
        }
        other => panic!("expected CidMismatch, got {other:?}"),
    }
    assert_absent(&b, &Cid::of(&data).hash());
    assert_absent(&b, &announced.hash());
    assert_eq!(store.usage(ALICE).unwrap(), 0);
}

/// An upload dropped before `finish` (a truncated upload) leaves nothing visible, nothing
/// charged and no partial data.
pub fn dropped_upload_leaves_nothing<B: Backend>() {
    let b = B::new(VaultConfig::default());
    let store = b.store();
    let data = bytes(4, 2 * MIB as usize);
    let cid = Cid::of(&data);
    let mut up = store.begin_upload(ALICE, Some(cid)).unwrap();
    up.write_chunk(&data[..MIB as usize]).unwrap();
    // Nothing is visible while the upload is open, either.
    assert!(!store.contains(&cid.hash()).unwrap());
    assert!(store.open_verified(&cid.hash()).unwrap().is_none());
    drop(up);
    assert_absent(&b, &cid.hash());
    assert_eq!(store.usage(ALICE).unwrap(), 0);
}

/// One flipped bit in a stored blob, small (read into memory) or large (read twice): the read
/// is refused with `Corrupt` and no reader is returned.
pub fn damaged_blob_is_never_served<B: Backend>() {
    let b = B::new(VaultConfig::default());
    let store = b.store();
    for (seed, len) in [(5, 10_000), (6, 5 * MIB as usize)] {
        let data = bytes(seed, len);
        let cid = upload(store, ALICE, None, &data, 64 * 1024).unwrap().cid;
        b.damage(&cid.hash());
        match store.open_verified(&cid.hash()) {
            Err(BlobError::Corrupt { hash, actual }) => {
                assert_eq!(hash, cid.hash());
                assert_ne!(actual, hash);
            }
            Err(e) => panic!("expected Corrupt for a {len}-byte blob, got {e}"),
            Ok(Some(_)) => panic!("a damaged {len}-byte blob was served"),
            Ok(None) => panic!("a damaged {len}-byte blob vanished"),
        }
        if len <= MAX_BLOB_BYTES {
            assert!(matches!(store.get(&cid.hash()), Err(VaultError::Corrupt { .. })));
        }
    }
}

/// Uploading the right bytes again over a damaged blob repairs it, without charging again.
pub fn reupload_repairs_damage<B: Backend>() {
    let b = B::new(VaultConfig::default());
    let store = b.store();
    let data = bytes(7, 50_000);
    let cid = upload(store, ALICE, None, &data, 4096).unwrap().cid;
    b.damage(&cid.hash());
    assert!(store.open_verified(&cid.hash()).is_err());
    let again = upload(store, BOB, Some(cid), &data, 4096).unwrap();
    assert!(again.already_present);
    assert_eq!(read_all(store, &cid.hash()).unwrap(), data);
    assert_eq!(store.usage(ALICE).unwrap(), data.len() as u64);
    assert_eq!(store.usage(BOB).unwrap(), 0);
}

/// A blob over the size limit is refused while it is being written; nothing is stored.
pub fn too_large_is_refused<B: Backend>() {
    let limit = MIB;
    let b = B::new(VaultConfig { max_blob_bytes: limit, ..VaultConfig::default() });
    let store = b.store();
    // Exactly the limit is fine.
    let fits = bytes(8, limit as usize);
    upload(store, ALICE, None, &fits, 10_000).unwrap();
    let data = bytes(9, limit as usize + 1);
    let mut up = store.begin_upload(ALICE, None).unwrap();
    up.write_chunk(&data[..limit as usize]).unwrap();
    match up.write_chunk(&data[limit as usize..]) {
        Err(BlobError::TooLarge { len, limit: l }) => assert_eq!((len, l), (limit + 1, limit)),
        other => panic!("expected TooLarge while writing, got {other:?}"),
    }
    assert!(matches!(up.write_chunk(b"more"), Err(BlobError::UploadDiscarded)));
    assert!(matches!(up.finish(), Err(BlobError::UploadDiscarded)));
    assert_absent(&b, &Cid::of(&data).hash());
    assert_eq!(store.usage(ALICE).unwrap(), limit);
    // Through `Write`, the vault error is inside the io::Error.
    let mut up = store.begin_upload(ALICE, None).unwrap();
    let e = up.write_all(&data).unwrap_err();
    assert!(matches!(BlobError::from_io(&e), Some(BlobError::TooLarge { .. })));
}

/// An upload that would take its uploader past the quota is refused while being written,
/// nothing is stored, and the refused bytes do not count; other accounts are unaffected.
pub fn quota_exceeded_is_refused<B: Backend>() {
    let quota = MIB;
    let b = B::new(VaultConfig { quota_bytes: quota, ..VaultConfig::default() });
    let store = b.store();
    let first = bytes(10, 600 * 1024);
    upload(store, ALICE, None, &first, 8192).unwrap();
    let second = bytes(11, 600 * 1024);
    let mut up = store.begin_upload(ALICE, Some(Cid::of(&second))).unwrap();
    let mut refused = None;
    for piece in second.chunks(8192) {
        if let Err(e) = up.write_chunk(piece) {
            refused = Some(e);
            break;
        }
    }
    match refused {
        Some(BlobError::QuotaExceeded { uploader, used, quota: q, .. }) => {
            assert_eq!((uploader, used, q), (ALICE, first.len() as u64, quota));
        }
        other => panic!("expected QuotaExceeded while writing, got {other:?}"),
    }
    assert!(matches!(up.finish(), Err(BlobError::UploadDiscarded)));
    assert_absent(&b, &Cid::of(&second).hash());
    assert_eq!(store.usage(ALICE).unwrap(), first.len() as u64);
    // What is left of the quota can still be used, and Bob has his own.
    let rest = bytes(12, (quota - first.len() as u64) as usize);
    upload(store, ALICE, None, &rest, 8192).unwrap();
    assert_eq!(store.usage(ALICE).unwrap(), quota);
    upload(store, BOB, None, &second, 8192).unwrap();
    assert_eq!(store.usage(BOB).unwrap(), second.len() as u64);
    // The node's own blobs are not limited.
    store.put(&bytes(13, 1000)).unwrap();
}

/// Two unfinished uploads by one account cannot together exceed its quota.
pub fn concurrent_uploads_share_the_quota<B: Backend>() {
    let quota = MIB;
    let b = B::new(VaultConfig { quota_bytes: quota, ..VaultConfig::default() });
    let store = b.store();
    let (one, two) = (bytes(14, 600 * 1024), bytes(15, 600 * 1024));
    let mut up1 = store.begin_upload(ALICE, None).unwrap();
    let mut up2 = store.begin_upload(ALICE, None).unwrap();
    up1.write_chunk(&one).unwrap();
    assert!(matches!(up2.write_chunk(&two), Err(BlobError::QuotaExceeded { .. })));
    up1.finish().unwrap();
    assert_eq!(store.usage(ALICE).unwrap(), one.len() as u64);
    // A dropped upload gives its share back.
    let mut up3 = store.begin_upload(ALICE, None).unwrap();
    up3.write_chunk(&two[..300 * 1024]).unwrap();
    drop(up3);
    upload(store, ALICE, None, &two[..400 * 1024], 8192).unwrap();
    assert_eq!(b.partial_uploads(), 0);

    // An upload begun before another one finished is still held to the quota, at the latest
    // when it finishes.
    let (three, four) = (bytes(24, 600 * 1024), bytes(25, 600 * 1024));
    let mut early = store.begin_upload(BOB, None).unwrap();
    upload(store, BOB, None, &three, 8192).unwrap();
    let refused = early.write_chunk(&four).err().or_else(|| early.finish().err());
    assert!(matches!(refused, Some(BlobError::QuotaExceeded { .. })), "got {refused:?}");
    assert!(!store.contains(&Hash::of(&four)).unwrap());
    assert_eq!(store.usage(BOB).unwrap(), three.len() as u64);
    assert_eq!(b.partial_uploads(), 0);
}

/// Storing bytes already present succeeds, is reported as such, and charges nobody again: the
/// first uploader pays.
pub fn reupload_is_not_charged_twice<B: Backend>() {
    let b = B::new(VaultConfig { quota_bytes: MIB, ..VaultConfig::default() });
    let store = b.store();
    let data = bytes(16, 700 * 1024);
    let first = upload(store, ALICE, None, &data, 8192).unwrap();
    assert!(!first.already_present);
    // Alice again, announcing the CID: under a 1 MiB quota, counting the bytes again (while
    // writing or at the end) would refuse it.
    let again = upload(store, ALICE, Some(first.cid), &data, 8192).unwrap();
    assert!(again.already_present);
    assert_eq!(again.cid, first.cid);
    assert_eq!(store.usage(ALICE).unwrap(), data.len() as u64);
    // Bob stores the same bytes without announcing them: not charged, Alice still pays.
    assert!(upload(store, BOB, None, &data, 8192).unwrap().already_present);
    assert_eq!(store.usage(BOB).unwrap(), 0);
    assert_eq!(store.info(&first.cid.hash()).unwrap().unwrap().uploader, ALICE);
    // Alice's remaining quota is intact.
    upload(store, ALICE, None, &bytes(23, 300 * 1024), 8192).unwrap();
    assert_eq!(read_all(store, &first.cid.hash()).unwrap(), data);
    assert_eq!(b.partial_uploads(), 0);
}

/// Deleting a blob removes it, refunds whoever was charged, and is idempotent.
pub fn delete_refunds_quota<B: Backend>() {
    let b = B::new(VaultConfig::default());
    let store = b.store();
    let (x, y) = (bytes(17, 30_000), bytes(18, 5 * MIB as usize));
    let x_cid = upload(store, ALICE, None, &x, 8192).unwrap().cid;
    let y_cid = upload(store, ALICE, None, &y, 65536).unwrap().cid;
    assert_eq!(store.usage(ALICE).unwrap(), (x.len() + y.len()) as u64);
    assert!(store.delete(&x_cid.hash()).unwrap());
    assert_absent(&b, &x_cid.hash());
    assert_eq!(store.usage(ALICE).unwrap(), y.len() as u64);
    assert!(!store.delete(&x_cid.hash()).unwrap(), "a second delete found something");
    assert!(store.delete(&y_cid.hash()).unwrap());
    assert_eq!(store.usage(ALICE).unwrap(), 0);
    // Stored again later, it is charged again, to the new uploader.
    assert!(!upload(store, BOB, None, &x, 8192).unwrap().already_present);
    assert_eq!(store.usage(BOB).unwrap(), x.len() as u64);
}

/// A clock the test moves by hand.
fn fake_clock(start: SystemTime) -> (Clock, Arc<AtomicU64>) {
    let ms = Arc::new(AtomicU64::new(start.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64));
    let read = ms.clone();
    (Clock::new(move || UNIX_EPOCH + Duration::from_millis(read.load(Ordering::SeqCst))), ms)
}

/// Garbage collection removes blobs that nothing references once older than the grace period,
/// keeps referenced ones and young ones, refunds quota, and counts what it freed; a re-upload
/// restarts the grace period.
pub fn garbage_collection<B: Backend>() {
    const HOUR: Duration = Duration::from_secs(3600);
    let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let (clock, ms) = fake_clock(t0);
    let b = B::new(VaultConfig { clock, ..VaultConfig::default() });
    let store = b.store();
    let advance = |d: Duration| ms.fetch_add(d.as_millis() as u64, Ordering::SeqCst);

    let old_unreferenced = bytes(19, 10_000);
    let old_referenced = bytes(20, 20_000);
    let refreshed = bytes(21, 30_000);
    let old_u = upload(store, ALICE, None, &old_unreferenced, 4096).unwrap().cid.hash();
    let old_r = upload(store, ALICE, None, &old_referenced, 4096).unwrap().cid.hash();
    let refr = upload(store, ALICE, None, &refreshed, 4096).unwrap().cid.hash();
    advance(2 * HOUR);
    let young = upload(store, BOB, None, &bytes(22, 40_000), 4096).unwrap().cid.hash();
    // Stored again (by anyone): its grace period restarts.
    upload(store, BOB, None, &refreshed, 4096).unwrap();
    advance(Duration::from_secs(60));
    let now = t0 + 2 * HOUR + Duration::from_secs(60);

    let referenced = |h: &Hash| *h == old_r;
    let report = store.collect_garbage(&referenced, HOUR, now).unwrap();
    assert_eq!(report, GcReport { deleted: 1, bytes_freed: old_unreferenced.len() as u64 });
    assert!(!store.contains(&old_u).unwrap());
    assert!(store.open_verified(&old_u).unwrap().is_none());
    for kept in [old_r, refr, young] {
        assert!(store.contains(&kept).unwrap());
        assert!(store.open_verified(&kept).unwrap().is_some());
    }
    assert_eq!(store.usage(ALICE).unwrap(), (old_referenced.len() + refreshed.len()) as u64);
    // Nothing left to collect now; an hour later the young ones go too.
    assert_eq!(store.collect_garbage(&referenced, HOUR, now).unwrap(), GcReport::default());
    let later = now + HOUR;
    let report = store.collect_garbage(&referenced, HOUR, later).unwrap();
    assert_eq!(report.deleted, 2);
    assert!(store.contains(&old_r).unwrap());
    assert_eq!(store.usage(BOB).unwrap(), 0);
    assert_eq!(store.usage(ALICE).unwrap(), old_referenced.len() as u64);
}
