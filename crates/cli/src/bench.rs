//! `medledger bench`: a load generator. It admits a set of hospitals with the regulator's
//! wallet, pre-signs a mixed registry workload from those hospitals (patient registrations,
//! doctor onboardings, key rotations), then drives the node over HTTP with a fixed number of
//! concurrent clients and reports committed tx/s and commit latency percentiles.
//!
//! Each hospital's transactions are sent in nonce order by exactly one client, one request at
//! a time, so that no transaction is refused for arriving out of order.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use indicatif::{ProgressBar, ProgressStyle};
use medledger_api::BatchItem;
use medledger_client::http::NodeClient;
use medledger_core::{
    Hash,
    block::Outcome,
    ids::AccountId,
    keys::{DecryptionKey, SigningKey},
    tx::{
        AdmitHospital, OnboardDoctor, RegisterPatient, RegistryTx, SealedRef, SignedTransaction,
        Transaction, TxBody,
    },
};
use rayon::prelude::*;
use serde::Serialize;

use crate::common::{Session, WalletArgs};

/// Options of `medledger bench`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The regulator's wallet (to admit the benchmark's hospitals) and the node.
    #[command(flatten)]
    wallet: WalletArgs,
    /// Transactions to send in the measured phase.
    #[arg(long, default_value_t = 100_000)]
    txs: usize,
    /// Hospitals (signing identities) to spread the workload over.
    #[arg(long, default_value_t = 256)]
    hospitals: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Transactions per request (1 uses the single-transaction endpoint).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Offered load in tx/s (0: as fast as the node goes).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    tx_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    committed: u64,
    refused: u64,
    errors: u64,
    elapsed_s: f64,
    txs: usize,
    batch: usize,
    concurrency: usize,
    offered_rate: u64,
}

struct BenchHospital {
    account: AccountId,
    key: SigningKey,
}

pub async fn run(args: Args) -> Result<()> {
    if args.hospitals == 0 || args.concurrency == 0 || args.batch == 0 {
        bail!("--hospitals, --concurrency and --batch must be at least 1");
    }
    let session = Session::open(&args.wallet).await?;
    let chain = session.chain_id.clone();
    let quiet = args.json;

    // Setup: admit the hospitals (not measured).
    let regulator = session.wallet.account();
    let start_nonce = session
        .client
        .account(&regulator)
        .await?
        .context("the regulator is not on the ledger")?
        .nonce;
    let hospitals: Vec<BenchHospital> = (0..args.hospitals)
        .map(|_| {
            let key = SigningKey::generate();
            BenchHospital { account: AccountId::from_initial_key(&key.public_key()), key }
        })
        .collect();
    let admits: Vec<SignedTransaction> = hospitals
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let body = TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
                key: h.key.public_key(),
                encryption_key: DecryptionKey::generate().public_key(),
                registration_id: format!("BENCH-{i}"),
                name: format!("Bench Hospital {i}"),
                city: "Loopback".into(),
                specialisation: "benchmarking".into(),
                contact: random_ref(),
            }));
            Transaction {
                chain_id: chain.clone(),
                signer: regulator,
                nonce: start_nonce + 1 + i as u64,
                body,
            }
            .sign(&session.identity.signing)
        })
        .collect();
    for chunk in admits.chunks(1024) {
        for item in session.client.submit_batch(chunk).await? {
            if !matches!(item, BatchItem::Receipt(ref r) if matches!(r.outcome, Outcome::Applied { .. }))
            {
                bail!("setup failed: a hospital admission was not applied: {item:?}");
            }
        }
    }

    // Pre-sign the measured workload, on all cores.
    let per_hospital = args.txs.div_ceil(args.hospitals);
    let bar = progress(quiet, (args.hospitals * per_hospital) as u64, "pre-signing");
    let streams: Vec<Vec<SignedTransaction>> = hospitals
        .par_iter()
        .map(|h| {
            let mut key = h.key.clone();
            let mut out = Vec::with_capacity(per_hospital);
            for n in 0..per_hospital {
                let nonce = n as u64 + 1;
                let roll = Hash::of_parts(&[&h.account.0, &nonce.to_le_bytes()]).0[0];
                let (body, next_key) = match roll % 20 {
                    0 => {
                        let next = SigningKey::generate();
                        (
                            TxBody::Registry(RegistryTx::RotateKey { new_key: next.public_key() }),
                            Some(next),
                        )
                    }
                    1..=6 => (
                        TxBody::Registry(RegistryTx::OnboardDoctor(OnboardDoctor {
                            key: SigningKey::generate().public_key(),
                            encryption_key: DecryptionKey::generate().public_key(),
                            registration_number: format!("REG-{nonce}"),
                            name: format!("Dr. Bench {nonce}"),
                            specialisation: "general".into(),
                        })),
                        None,
                    ),
                    _ => (
                        TxBody::Registry(RegistryTx::RegisterPatient(RegisterPatient {
                            key: SigningKey::generate().public_key(),
                            encryption_key: DecryptionKey::generate().public_key(),
                            details: random_ref(),
                            attendant: random_ref(),
                        })),
                        None,
                    ),
                };
                out.push(
                    Transaction { chain_id: chain.clone(), signer: h.account, nonce, body }
                        .sign(&key),
                );
                if let Some(next) = next_key {
                    key = next;
                }
                bar.inc(1);
            }
            out
        })
        .collect();
    bar.finish_and_clear();

    // Assign each hospital's stream to one client, interleaved so batches mix identities.
    let mut lanes: Vec<Vec<SignedTransaction>> = vec![Vec::new(); args.concurrency];
    for (lane, group) in streams.chunks(args.hospitals.div_ceil(args.concurrency)).enumerate() {
        for i in 0..per_hospital {
            for s in group {
                if let Some(tx) = s.get(i) {
                    lanes[lane % args.concurrency].push(tx.clone());
                }
            }
        }
    }
    let total: usize = lanes.iter().map(Vec::len).sum();
    let bar = Arc::new(progress(quiet, total as u64, "committing"));
    let interval = (args.rate > 0).then(|| {
        Duration::from_secs_f64(args.batch as f64 * args.concurrency as f64 / args.rate as f64)
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    let lanes_count = lanes.len() as u32;
    for (i, lane) in lanes.into_iter().enumerate() {
        let client = NodeClient::new(session.client.base_url())?;
        let bar = bar.clone();
        let batch = args.batch;
        // Stagger the paced clients over one interval so that the offered load is smooth, not
        // a burst from every client at once.
        let start = started + interval.map_or(Duration::ZERO, |d| d * i as u32 / lanes_count);
        tasks.push(tokio::spawn(
            async move { drive(client, lane, batch, interval, start, bar).await },
        ));
    }
    let (mut latencies, mut committed, mut refused, mut errors) =
        (Vec::with_capacity(total), 0u64, 0u64, 0u64);
    for t in tasks {
        let r = t.await?;
        latencies.extend(r.latencies_ms);
        committed += r.committed;
        refused += r.refused;
        errors += r.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0)
    };
    let report = Report {
        tx_per_s: committed as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        committed,
        refused,
        errors,
        elapsed_s: elapsed,
        txs: total,
        batch: args.batch,
        concurrency: args.concurrency,
        offered_rate: args.rate,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} transactions in {:.2} s: {:.0} committed tx/s; commit latency p50 {:.1} ms, p99 {:.1} ms; {} refused, {} errors (batch {}, {} clients{})",
            report.txs,
            report.elapsed_s,
            report.tx_per_s,
            report.p50_ms,
            report.p99_ms,
            report.refused,
            report.errors,
            report.batch,
            report.concurrency,
            if args.rate > 0 { format!(", offered {} tx/s", args.rate) } else { String::new() }
        );
    }
    if errors > 0 || refused > 0 {
        bail!(
            "{refused} transactions were refused and {errors} failed: the workload should apply cleanly"
        );
    }
    Ok(())
}

struct LaneResult {
    latencies_ms: Vec<f64>,
    committed: u64,
    refused: u64,
    errors: u64,
}

async fn drive(
    client: NodeClient,
    lane: Vec<SignedTransaction>,
    batch: usize,
    interval: Option<Duration>,
    start: Instant,
    bar: Arc<ProgressBar>,
) -> LaneResult {
    let mut r = LaneResult {
        latencies_ms: Vec::with_capacity(lane.len()),
        committed: 0,
        refused: 0,
        errors: 0,
    };
    let mut next = start;
    for chunk in lane.chunks(batch) {
        if let Some(i) = interval {
            tokio::time::sleep_until(next.into()).await;
            next += i;
        }
        let sent = Instant::now();
        if batch == 1 {
            match client.submit(&chunk[0]).await {
                Ok(_) => r.committed += 1,
                Err(medledger_client::ClientError::Refused { outcome: Some(_), .. }) => {
                    r.refused += 1
                }
                Err(_) => r.errors += 1,
            }
        } else {
            match client.submit_batch(chunk).await {
                Ok(items) => {
                    for item in items {
                        match item {
                            BatchItem::Receipt(rc)
                                if matches!(rc.outcome, Outcome::Applied { .. }) =>
                            {
                                r.committed += 1
                            }
                            BatchItem::Receipt(_) => r.refused += 1,
                            BatchItem::Error(e) if e.outcome.is_some() => r.refused += 1,
                            BatchItem::Error(_) => r.errors += 1,
                        }
                    }
                }
                Err(_) => r.errors += chunk.len() as u64,
            }
        }
        let ms = sent.elapsed().as_secs_f64() * 1000.0;
        r.latencies_ms.extend(std::iter::repeat_n(ms, chunk.len()));
        bar.inc(chunk.len() as u64);
    }
    r
}

fn random_ref() -> SealedRef {
    let mut salt = [0u8; 32];
    salt.copy_from_slice(SigningKey::generate().public_key().0.as_slice());
    SealedRef { blob: Hash::of(&salt), commitment: Hash::of_parts(&[&salt, b"commitment"]) }
}

fn progress(hidden: bool, len: u64, msg: &'static str) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(msg);
    bar
}
