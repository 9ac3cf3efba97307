//! Benchmarks of the Merkle log at a million leaves: proof generation and verification, and the
//! bulk rebuild done at node restart.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use medledger_core::Hash;
use medledger_core::merkle::{ConsistencyProof, InclusionProof, MerkleLog, leaf_hash};

const N: u64 = 1_000_000;

/// A fixed pseudo-random sequence (xorshift64), so that benchmarks do not hit one cached path.
fn pseudo_random(count: usize) -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
}

fn bench_merkle(c: &mut Criterion) {
    let leaves = leaves(N);
    let log = MerkleLog::from_leaf_hashes(leaves.clone());
    let randoms = pseudo_random(1024);
    let mut group = c.benchmark_group("merkle");

    for (name, size) in [("inclusion_proof_gen_1M", N), ("inclusion_proof_gen_999999", N - 1)] {
        let indices: Vec<u64> = randoms.iter().map(|r| r % size).collect();
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % indices.len();
                black_box(log.inclusion_proof(black_box(indices[i]), black_box(size)))
            })
        });
    }

    let root = log.root();
    let proofs: Vec<(InclusionProof, Hash)> = randoms
        .iter()
        .map(|r| r % N)
        .map(|index| (log.inclusion_proof(index, N).unwrap(), leaves[index as usize]))
        .collect();
    let mut i = 0;
    group.bench_function("inclusion_proof_verify_1M", |b| {
        b.iter(|| {
            i = (i + 1) % proofs.len();
            let (proof, leaf) = &proofs[i];
            black_box(proof.verify(black_box(leaf), black_box(&root))).unwrap();
        })
    });

    let old_sizes: Vec<u64> = randoms.iter().map(|r| 1 + r % (N - 1)).collect();
    let mut i = 0;
    group.bench_function("consistency_proof_gen_1M", |b| {
        b.iter(|| {
            i = (i + 1) % old_sizes.len();
            black_box(log.consistency_proof(black_box(old_sizes[i]), black_box(N)))
        })
    });

    let proofs: Vec<(ConsistencyProof, Hash)> = old_sizes
        .iter()
        .map(|&old| (log.consistency_proof(old, N).unwrap(), log.root_at(old).unwrap()))
        .collect();
    let mut i = 0;
    group.bench_function("consistency_proof_verify_1M", |b| {
        b.iter(|| {
            i = (i + 1) % proofs.len();
            let (proof, old_root) = &proofs[i];
            black_box(proof.verify(black_box(old_root), black_box(&root))).unwrap();
        })
    });

    let mut i = 0;
    group.bench_function("root_at_random_size_1M", |b| {
        b.iter(|| {
            i = (i + 1) % old_sizes.len();
            black_box(log.root_at(black_box(old_sizes[i])))
        })
    });

    group.sample_size(10);
    group.bench_function("from_leaf_hashes_1M", |b| {
        b.iter_batched(|| leaves.clone(), MerkleLog::from_leaf_hashes, BatchSize::LargeInput)
    });
    group.finish();
}

criterion_group!(benches, bench_merkle);
criterion_main!(benches);
