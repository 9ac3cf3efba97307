//! Throughput of record encryption and decryption (AES-256-GCM STREAM plus the SHA-256 of the
//! ciphertext that names it in the vault): 64 MiB in memory, through the `Read`/`Write`
//! functions (`encrypt` hashes on a second thread) and through the push-style `Encryptor` (one
//! thread), so the figures include segment buffering and copying.
//!
//! `cargo bench -p medledger-client --bench envelope -- --warm-up-time 1 --measurement-time 5`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use medledger_client::envelope::{self, DataKey, Encryptor};

const LEN: usize = 64 * 1024 * 1024;

fn bench(c: &mut Criterion) {
    let key = DataKey::generate().unwrap();
    let plaintext: Vec<u8> = (0..LEN).map(|i| (i * 31 + i / 4093) as u8).collect();
    let mut ciphertext = Vec::with_capacity(LEN + LEN / 1024 + 64);
    envelope::encrypt(&key, plaintext.as_slice(), &mut ciphertext, &mut |_| {}).unwrap();

    let mut group = c.benchmark_group("envelope_64MiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(LEN as u64));
    let mut out = Vec::with_capacity(ciphertext.len());
    group.bench_function("encrypt_and_hash", |b| {
        b.iter(|| {
            out.clear();
            envelope::encrypt(&key, plaintext.as_slice(), &mut out, &mut |_| {}).unwrap()
        })
    });
    group.bench_function("encryptor_push_one_thread", |b| {
        b.iter(|| {
            out.clear();
            let mut enc = Encryptor::new(&key).unwrap();
            for chunk in plaintext.chunks(256 * 1024) {
                enc.update(chunk, &mut out).unwrap();
            }
            enc.finish(&mut out).unwrap()
        })
    });
    group.bench_function("decrypt", |b| {
        b.iter(|| {
            out.clear();
            envelope::decrypt(&key, ciphertext.as_slice(), &mut out, &mut |_| {}).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
