//! Measures what an inclusion proof costs now that the log keeps only chunk roots in memory
//! (docs/benchmarks.md): `cargo run --release -p medledger-ledger --example proof_speed --
//! LEDGER.redb [N]` opens the (stopped node's) ledger and times N proofs (default 2,000) of
//! entries spread over the whole log against its current size, each verified, then N proofs of
//! entries of the last full chunks (the ones recent reads ask for).

use std::time::Instant;

use medledger_core::merkle::leaf_hash;
use medledger_ledger::Ledger;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: proof_speed LEDGER.redb [N]")?;
    let n: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2_000);
    let ledger = Ledger::open_checking_in_background(path.as_ref())?;
    let checkpoint = ledger.checkpoint();
    let size = checkpoint.log_size;
    // Entries spread evenly (a large odd stride), then within the last 4,096 entries.
    let spread: Vec<u64> = (0..n).map(|i| (i * 7_919_993) % size).collect();
    let recent: Vec<u64> = (0..n).map(|i| size - 1 - (i * 31) % 4_096.min(size)).collect();
    for (name, indexes) in [("spread over the log", spread), ("among the last 4,096", recent)] {
        let started = Instant::now();
        for &i in &indexes {
            let proof = ledger.inclusion_proof(i, size)?;
            let tx = ledger.transaction_at(i)?.ok_or("no transaction")?;
            proof.verify(&leaf_hash(&tx.tx.encode()), &checkpoint.log_root)?;
        }
        let each = started.elapsed().as_secs_f64() / n as f64;
        println!(
            "{n} proofs of entries {name} ({size} entries): {:.3} ms each, reading the entry too",
            each * 1e3
        );
    }
    Ok(())
}
