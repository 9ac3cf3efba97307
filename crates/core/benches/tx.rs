//! Benchmarks of the per-transaction work: canonical encoding, hashing, signing, and signature
//! verification alone and in batches (the rule of `keys`), beside `verify_strict` (the rule
//! before 2026-12-01) for a ratio measured in one run.

use criterion::{Criterion, criterion_group, criterion_main};
use medledger_core::{
    Hash, encoding,
    ids::AccountId,
    keys::{DecryptionKey, SigningKey, namespace},
    tx::{RegisterPatient, RegistryTx, SealedRef, SignedTransaction, Transaction, TxBody},
};

fn sample(key: &SigningKey) -> Transaction {
    Transaction {
        chain_id: "bench".into(),
        signer: AccountId::from_initial_key(&key.public_key()),
        nonce: 42,
        body: TxBody::Registry(RegistryTx::RegisterPatient(RegisterPatient {
            key: SigningKey::from_seed([7; 32]).public_key(),
            encryption_key: DecryptionKey::from_bytes([8; 32]).public_key(),
            details: SealedRef { blob: Hash::of(b"d"), commitment: Hash::of(b"dc") },
            attendant: SealedRef { blob: Hash::of(b"a"), commitment: Hash::of(b"ac") },
        })),
    }
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_seed([1; 32]);
    let tx = sample(&key);
    let signed = tx.clone().sign(&key);
    let bytes = signed.encode();
    c.bench_function("tx/encode", |b| b.iter(|| std::hint::black_box(&signed).encode()));
    c.bench_function("tx/decode", |b| {
        b.iter(|| SignedTransaction::decode(std::hint::black_box(&bytes)))
    });
    c.bench_function("tx/hash", |b| b.iter(|| std::hint::black_box(&signed).hash()));
    c.bench_function("tx/sign", |b| b.iter(|| std::hint::black_box(&tx).clone().sign(&key)));
    c.bench_function("tx/verify", |b| b.iter(|| std::hint::black_box(&signed).verify_signature()));
    // The key's part of a check: decoding it and refusing small order (rule 1).
    c.bench_function("tx/verifier", |b| {
        b.iter(|| std::hint::black_box(&signed.public_key).verifier())
    });
    let message = {
        let mut m = vec![u8::try_from(namespace::TRANSACTION.len()).unwrap()];
        m.extend_from_slice(namespace::TRANSACTION);
        m.extend_from_slice(&encoding::encode(&signed.tx));
        m
    };
    let strict_key = ed25519_dalek::VerifyingKey::from_bytes(&signed.public_key.0).unwrap();
    let strict_sig = ed25519_dalek::Signature::from_bytes(&signed.signature.0);
    assert!(strict_key.verify_strict(&message, &strict_sig).is_ok());
    c.bench_function("tx/verify_strict_before", |b| {
        b.iter(|| {
            let key = ed25519_dalek::VerifyingKey::from_bytes(&signed.public_key.0).unwrap();
            key.verify_strict(std::hint::black_box(&message), &strict_sig)
        })
    });
    // Batches of distinct signers (the worst case for batching: no key repeats), one core.
    let mut group = c.benchmark_group("tx/verify_batch");
    for size in [64usize, 256, 1024] {
        let txs: Vec<SignedTransaction> = (0..size)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
                let k = SigningKey::from_seed(seed);
                sample(&k).sign(&k)
            })
            .collect();
        let refs: Vec<&SignedTransaction> = txs.iter().collect();
        assert!(SignedTransaction::verify_signatures(&refs).iter().all(|ok| *ok));
        group.throughput(criterion::Throughput::Elements(size as u64));
        group.bench_function(format!("{size}"), |b| {
            b.iter(|| SignedTransaction::verify_signatures(std::hint::black_box(&refs)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
