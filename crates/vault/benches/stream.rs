//! Throughput of the filesystem vault with a 256 MiB blob in a temporary directory: a
//! streamed upload in 64 KiB chunks (hash, write, fsync, rename, index commit) and a verified
//! read (hash the whole file, then serve it again while re-hashing). The file is usually in
//! the page cache for the read, so the read figure is CPU-bound (two SHA-256 passes and
//! copies), not disk-bound.
//!
//! `cargo bench -p medledger-vault --bench stream -- --warm-up-time 1 --measurement-time 5`

use std::{
    hint::black_box,
    io::Read,
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use medledger_core::{Hash, ids::AccountId};
use medledger_vault::{BlobStore, FsVault, VaultConfig};

const BLOB_BYTES: usize = 256 << 20;
const CHUNK_BYTES: usize = 64 << 10;
const UPLOADER: AccountId = AccountId([7; 20]);

/// One MiB of pseudo-random bytes, repeated to make up a blob.
fn pattern() -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Streams a 256 MiB blob whose first bytes are `tag`; returns its hash.
fn upload(vault: &FsVault, pattern: &[u8], tag: u64) -> Hash {
    let mut up = vault.begin_upload(UPLOADER, None).unwrap();
    let mut first = pattern[..CHUNK_BYTES].to_vec();
    first[..8].copy_from_slice(&tag.to_le_bytes());
    up.write_chunk(&first).unwrap();
    let mut sent = CHUNK_BYTES;
    while sent < BLOB_BYTES {
        let at = sent % pattern.len();
        up.write_chunk(&pattern[at..at + CHUNK_BYTES]).unwrap();
        sent += CHUNK_BYTES;
    }
    up.finish().unwrap().cid.hash()
}

fn stream(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let vault = FsVault::open_with(dir.path(), VaultConfig::default()).unwrap();
    let pattern = pattern();
    let mut group = c.benchmark_group("vault_256MiB");
    group.throughput(Throughput::Bytes(BLOB_BYTES as u64)).sample_size(10);

    let mut tag = 0u64;
    group.bench_function("streamed_upload", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                tag += 1;
                let start = Instant::now();
                let hash = upload(&vault, &pattern, tag);
                total += start.elapsed();
                // A fresh blob each time (not an idempotent re-upload); cleanup is not timed.
                vault.delete(&hash).unwrap();
            }
            total
        });
    });

    let hash = upload(&vault, &pattern, 0);
    let mut buf = vec![0u8; 1 << 20];
    group.bench_function("verified_read", |b| {
        b.iter(|| {
            let mut blob = vault.open_verified(&hash).unwrap().unwrap();
            let mut read = 0;
            loop {
                let n = blob.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                read += n;
                black_box(&buf[..n]);
            }
            assert_eq!(read, BLOB_BYTES);
        });
    });
    group.finish();
}

criterion_group!(benches, stream);
criterion_main!(benches);
