//! Benchmark of `Ledger::apply_block` on the registry workload: blocks of patient
//! registrations from many hospitals, applied to an in-memory redb (the storage engine's
//! work without the fsync, which the node benchmark measures), signatures pre-verified as on
//! the proposing node; and parallel signature verification of a block.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use medledger_ledger::verify_signatures;

#[path = "support/workload.rs"]
mod workload;
use workload::{BLOCK, registrations, setup};

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
