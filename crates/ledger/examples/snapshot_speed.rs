//! Measures how fast a ledger's snapshot is built and installed (docs/benchmarks.md):
//! `cargo run -p medledger-ledger --example snapshot_speed -- LEDGER.redb WORK_DIR`.
//! Opens the (stopped node's) ledger, exports a snapshot of it into WORK_DIR/ledger.snap, imports
//! that into a fresh ledger of the same genesis in WORK_DIR, and prints both speeds as
//! transactions' worth of state per second.
//! `... --example snapshot_speed -- --install SNAPSHOT WORK_DIR` only installs SNAPSHOT into a
//! fresh ledger (its own process: the memory it reports is the import's alone).
//! `... --example snapshot_speed -- --generate N WORK_DIR` writes WORK_DIR/source.redb, a
//! ledger of about N patient registrations from 64 hospitals (the apply benchmark's workload,
//! blocks of 1,024, applied as a node applies them), and prints the rate it applied them at:
//! the install replays blocks with that same code, so the two rates compare.

use std::{path::PathBuf, time::Instant};

use medledger_ledger::{Ledger, verify_signatures};

#[allow(dead_code)] // reason: the example uses part of the benchmarks' workload
#[path = "../benches/support/workload.rs"]
mod workload;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--generate") {
        let (Some(n), Some(work)) = (args.nth(1), args.next()) else {
            return Err("usage: snapshot_speed --generate N WORK_DIR".into());
        };
        let n: usize = n.parse()?;
        std::fs::create_dir_all(&work)?;
        let path = PathBuf::from(work).join("source.redb");
        let _ = std::fs::remove_file(&path);
        let ledger = Ledger::create(&path, workload::genesis())?;
        let (mut tip, hospitals) = workload::admit_hospitals(&ledger);
        let rounds = n.div_ceil(workload::BLOCK) as u64;
        let (mut verify, mut apply) = (0.0, 0.0);
        for round in 0..rounds {
            let block = tip.propose(round + 2, workload::registrations(&hospitals, round));
            let started = Instant::now();
            let ok = verify_signatures(&block.txs, |_| false);
            let verified = Instant::now();
            ledger.apply_sealed_block(&workload::seal(&block), &ok, &[])?;
            verify += (verified - started).as_secs_f64();
            apply += verified.elapsed().as_secs_f64();
        }
        let txs = ledger.log_size() as f64;
        println!(
            "generated {txs} transactions: verify {verify:.2} s, apply {apply:.2} s = {:.0} tx/s \
             verified and applied",
            txs / (verify + apply)
        );
        return Ok(());
    }
    if args.peek().map(String::as_str) == Some("--install") {
        let (Some(snap), Some(work)) = (args.nth(1), args.next()) else {
            return Err("usage: snapshot_speed --install SNAPSHOT WORK_DIR".into());
        };
        let header = medledger_ledger::SnapshotHeader::read_from(&mut std::fs::File::open(&snap)?)?;
        let target_path = PathBuf::from(work).join("installed.redb");
        let _ = std::fs::remove_file(&target_path);
        let target = Ledger::create(&target_path, header.genesis.clone())?;
        let started = Instant::now();
        target.import_snapshot(std::fs::File::open(&snap)?, &header.marker)?;
        let install = started.elapsed().as_secs_f64();
        println!("install {install:.2} s = {:.0} tx/s", header.log_size as f64 / install);
        return Ok(());
    }
    let (Some(ledger), Some(work)) = (args.next(), args.next()) else {
        return Err("usage: snapshot_speed LEDGER.redb WORK_DIR".into());
    };
    let work = PathBuf::from(work);
    std::fs::create_dir_all(&work)?;
    let source = Ledger::open(ledger.as_ref())?;
    let txs = source.log_size();
    let snap = work.join("ledger.snap");

    let started = Instant::now();
    let file = std::fs::File::create(&snap)?;
    let header = source.export_snapshot_to(&file)?;
    file.sync_all()?;
    let build = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&snap)?.len();

    let target_path = work.join("imported.redb");
    let _ = std::fs::remove_file(&target_path);
    let target = Ledger::create(&target_path, source.genesis().clone())?;
    let started = Instant::now();
    target.import_snapshot(std::fs::File::open(&snap)?, &header.marker)?;
    let install = started.elapsed().as_secs_f64();
    assert_eq!(target.tip().hash, source.tip().hash);

    println!(
        "height {} transactions {txs} rows {} snapshot {:.1} MB\nbuild   {build:.2} s = {:.0} tx/s\ninstall {install:.2} s = {:.0} tx/s",
        header.height,
        header.rows,
        bytes as f64 / 1e6,
        txs as f64 / build,
        txs as f64 / install,
    );
    Ok(())
}
