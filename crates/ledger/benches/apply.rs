//! Benchmark of `Ledger::apply_block` on the registry workload: blocks of patient
//! registrations from many hospitals, applied to an in-memory redb (the storage engine's
//! work without the fsync, which the node benchmark measures), signatures pre-verified as on
//! the proposing node; and parallel signature verification of a block.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use medledger_core::{
    Hash,
    block::{Genesis, Tip},
    ids::AccountId,
    keys::{DecryptionKey, SigningKey},
    tx::{
        AdmitHospital, RegisterPatient, RegistryTx, SealedRef, SignedTransaction, Transaction,
        TxBody,
    },
};
use medledger_ledger::{Ledger, verify_signatures};

const BLOCK: usize = 1024;
const HOSPITALS: usize = 64;

/// Sealed details with a blob of their own (each blob belongs to one owner: the ledger
/// refuses a registration naming another's).
fn sealed() -> SealedRef {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    SealedRef { blob: Hash::of(&n.to_be_bytes()), commitment: Hash::of(b"c") }
}

fn tx(key: &SigningKey, nonce: u64, body: RegistryTx) -> SignedTransaction {
    Transaction {
        chain_id: "bench".into(),
        signer: AccountId::from_initial_key(&key.public_key()),
        nonce,
        body: TxBody::Registry(body),
    }
    .sign(key)
}

/// A ledger with the hospitals admitted, its tip, and the hospitals' keys.
fn setup() -> (Ledger, Tip, Vec<SigningKey>) {
    let regulator = SigningKey::from_seed([1; 32]);
    let genesis = Genesis {
        chain_id: "bench".into(),
        time_ms: 0,
        regulator_key: regulator.public_key(),
        regulator_encryption_key: DecryptionKey::from_bytes([2; 32]).public_key(),
        node_key: SigningKey::from_seed([3; 32]).public_key(),
    };
    let ledger = Ledger::in_memory(genesis.clone()).unwrap();
    let mut tip = Tip::genesis(&genesis);
    let hospitals: Vec<SigningKey> = (0..HOSPITALS).map(|_| SigningKey::generate()).collect();
    let admits: Vec<_> = hospitals
        .iter()
        .enumerate()
        .map(|(i, h)| {
            tx(
                &regulator,
                i as u64 + 1,
                RegistryTx::AdmitHospital(AdmitHospital {
                    key: h.public_key(),
                    encryption_key: DecryptionKey::generate().public_key(),
                    registration_id: format!("R{i}"),
                    name: format!("H{i}"),
                    city: "C".into(),
                    specialisation: "S".into(),
                    contact: sealed(),
                }),
            )
        })
        .collect();
    let block = tip.propose(1, admits);
    ledger.apply_block(&block, &vec![true; block.txs.len()], &[]).unwrap();
    (ledger, tip, hospitals)
}

fn registrations(hospitals: &[SigningKey], round: u64) -> Vec<SignedTransaction> {
    (0..BLOCK)
        .map(|i| {
            let h = &hospitals[i % hospitals.len()];
            let nonce = round * (BLOCK / hospitals.len()) as u64 + (i / hospitals.len()) as u64 + 1;
            tx(
                h,
                nonce,
                RegistryTx::RegisterPatient(RegisterPatient {
                    key: SigningKey::generate().public_key(),
                    encryption_key: DecryptionKey::generate().public_key(),
                    details: sealed(),
                    attendant: sealed(),
                }),
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ledger");
    g.throughput(Throughput::Elements(BLOCK as u64));
    g.sample_size(10);
    let (ledger, mut tip, hospitals) = setup();
    let mut round = 0;
    g.bench_function("apply_block_1024_registrations", |b| {
        b.iter_batched(
            || {
                let block = tip.propose(round + 2, registrations(&hospitals, round));
                round += 1;
                block
            },
            |block| ledger.apply_block(&block, &[true; BLOCK], &[]).unwrap(),
            BatchSize::PerIteration,
        )
    });
    let txs = registrations(&hospitals, 0);
    g.bench_function("verify_signatures_1024_parallel", |b| {
        b.iter(|| verify_signatures(&txs, |_| false))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
