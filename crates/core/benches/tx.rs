//! Benchmarks of the per-transaction work: canonical encoding, hashing, signing and strict
//! verification.

use criterion::{Criterion, criterion_group, criterion_main};
use medledger_core::{
    Hash,
    ids::AccountId,
    keys::{DecryptionKey, SigningKey},
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
    c.bench_function("tx/verify_strict", |b| {
        b.iter(|| std::hint::black_box(&signed).verify_signature())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
