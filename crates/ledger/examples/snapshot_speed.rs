//! Measures how fast a ledger's snapshot is built and installed (docs/benchmarks.md):
//! `cargo run -p medledger-ledger --example snapshot_speed -- LEDGER.redb WORK_DIR`.
//! Opens the (stopped node's) ledger, exports a snapshot of it into WORK_DIR/ledger.snap, imports
//! that into a fresh ledger of the same genesis in WORK_DIR, and prints both speeds as
//! transactions' worth of state per second.
//! `... --example snapshot_speed -- --install SNAPSHOT WORK_DIR` only installs SNAPSHOT into a
//! fresh ledger (its own process: the memory it reports is the import's alone).

use std::{path::PathBuf, time::Instant};

use medledger_ledger::Ledger;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
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
