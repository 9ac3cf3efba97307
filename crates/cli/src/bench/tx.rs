//! `medledger bench tx` (and `medledger bench` without a subcommand): a load generator. It admits a set of hospitals with the regulator's
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
        AdmitHospital, ConsentTx, OnboardDoctor, RegisterPatient, RegistryTx, SignedTransaction,
        Transaction, TxBody,
        consent::{AccessTx, Action, Purpose, RecordCategory, Resource, Scope, Validity},
    },
};
use rayon::prelude::*;
use serde::Serialize;

use super::setup::{all_applied, sealed_ref};
use crate::common::{Session, WalletArgs};

/// Options of `medledger bench tx`. `--node` may list several nodes of one network, separated
/// by commas (`--node http://127.0.0.1:7300,http://127.0.0.1:7301`): the set-up goes to the
/// first, and the measured load is spread over all of them, client by client.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The regulator's wallet (to admit the benchmark's hospitals) and the node(s).
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
    /// Add consent to the workload: each hospital also registers patients and onboards a
    /// doctor during set-up; a third of the measured transactions are then grants and
    /// revocations by those patients, and a third access events by the doctors.
    #[arg(long)]
    consent: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Patients per hospital registered in set-up for the consent workload.
const CONSENT_PATIENTS: usize = 4;

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
    consent: bool,
    /// The nodes the load was spread over.
    nodes: Vec<String>,
    /// The longest time between two commits of the measured phase (ms): in a steady run, about
    /// one batch's latency; across a leader's failure, the failover as clients see it.
    longest_gap_ms: f64,
    /// When that gap began, in seconds since the measured phase started.
    longest_gap_at_s: f64,
}

struct BenchHospital {
    account: AccountId,
    key: SigningKey,
    /// Transactions it signed in set-up (its measured stream starts after them).
    setup_nonce: u64,
    /// Its patients and doctor, for the consent workload.
    patients: Vec<(AccountId, SigningKey)>,
    doctor: Option<(AccountId, SigningKey)>,
    /// A patient whose grant to the doctor stands through the run: the doctor's reads are of
    /// this patient's records, so they are allowed (a stream of denied reads would be
    /// throttled by the node's denial limit, ten a minute per signer).
    standing: Option<AccountId>,
}

fn identity() -> (AccountId, SigningKey) {
    let key = SigningKey::generate();
    (AccountId::from_initial_key(&key.public_key()), key)
}

pub async fn run(args: Args) -> Result<()> {
    if args.hospitals == 0 || args.concurrency == 0 || args.batch == 0 {
        bail!("--hospitals, --concurrency and --batch must be at least 1");
    }
    let listed: Vec<String> = args
        .wallet
        .node
        .as_deref()
        .map(|n| n.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let first = WalletArgs { node: listed.first().cloned(), ..args.wallet.clone() };
    let session = Session::open(&first).await?;
    let nodes = if listed.is_empty() { vec![session.client.base_url().to_owned()] } else { listed };
    for url in &nodes[1..] {
        let genesis = NodeClient::new(url)?.genesis().await?;
        if genesis.hash() != session.anchor.genesis {
            bail!("{url} serves another network than {} (chain {:?})", nodes[0], session.chain_id);
        }
    }
    let mut hospitals = admit_hospitals(&session, args.hospitals).await?;
    if args.consent {
        consent_setup(&session, &mut hospitals).await?;
    }
    let lanes = presign(&args, &session.chain_id, &hospitals);
    let report = measure(&args, &nodes, lanes).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} transactions in {:.2} s: {:.0} committed tx/s; commit latency p50 {:.1} ms, p99 {:.1} ms; longest gap between commits {:.0} ms (from {:.1} s); {} refused, {} errors (batch {}, {} clients{})",
            report.txs,
            report.elapsed_s,
            report.tx_per_s,
            report.p50_ms,
            report.p99_ms,
            report.longest_gap_ms,
            report.longest_gap_at_s,
            report.refused,
            report.errors,
            report.batch,
            report.concurrency,
            if args.rate > 0 { format!(", offered {} tx/s", args.rate) } else { String::new() }
        );
    }
    if report.errors > 0 || report.refused > 0 {
        bail!(
            "{} transactions were refused and {} failed: the workload should apply cleanly",
            report.refused,
            report.errors
        );
    }
    Ok(())
}

/// Set-up (not measured): the regulator admits `count` hospitals.
async fn admit_hospitals(session: &Session, count: usize) -> Result<Vec<BenchHospital>> {
    let regulator = session.wallet.account();
    let start_nonce = session
        .client
        .account(&regulator)
        .await?
        .context("the regulator is not on the ledger")?
        .nonce
        .context("the node did not tell the regulator its nonce")?;
    let hospitals: Vec<BenchHospital> = (0..count)
        .map(|_| {
            let (account, key) = identity();
            BenchHospital {
                account,
                key,
                setup_nonce: 0,
                patients: Vec::new(),
                doctor: None,
                standing: None,
            }
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
                contact: sealed_ref(),
            }));
            Transaction {
                chain_id: session.chain_id.clone(),
                signer: regulator,
                nonce: start_nonce + 1 + i as u64,
                body,
            }
            .sign(&session.identity.signing)
        })
        .collect();
    all_applied(&session.client, &admits).await.context("admitting the hospitals")?;
    Ok(hospitals)
}

/// Set-up for consent (not measured): patients and a doctor per hospital.
async fn consent_setup(session: &Session, hospitals: &mut [BenchHospital]) -> Result<()> {
    let mut setup = Vec::new();
    let mut standing_grants = Vec::with_capacity(hospitals.len());
    for h in hospitals {
        let mut next = |h: &mut BenchHospital, body: RegistryTx| {
            h.setup_nonce += 1;
            let tx = Transaction {
                chain_id: session.chain_id.clone(),
                signer: h.account,
                nonce: h.setup_nonce,
                body: TxBody::Registry(body),
            };
            setup.push(tx.sign(&h.key));
        };
        let doctor = identity();
        next(
            h,
            RegistryTx::OnboardDoctor(OnboardDoctor {
                key: doctor.1.public_key(),
                encryption_key: DecryptionKey::generate().public_key(),
                // One number per doctor: the registry refuses a number twice.
                registration_number: format!("BENCH-{}", doctor.0),
                name: "Dr. Bench".into(),
                specialisation: "general".into(),
            }),
        );
        let doctor_account = doctor.0;
        h.doctor = Some(doctor);
        let standing = identity();
        next(
            h,
            RegistryTx::RegisterPatient(RegisterPatient {
                key: standing.1.public_key(),
                encryption_key: DecryptionKey::generate().public_key(),
                details: sealed_ref(),
                attendant: sealed_ref(),
            }),
        );
        h.standing = Some(standing.0);
        standing_grants.push(
            Transaction {
                chain_id: session.chain_id.clone(),
                signer: standing.0,
                nonce: 1,
                body: TxBody::Consent(ConsentTx::Grant {
                    patient: standing.0,
                    grantee: doctor_account,
                    scope: Scope::All,
                    purpose: Purpose::Treatment,
                    validity: Validity { not_before_ms: 0, expires_at_ms: u64::MAX },
                }),
            }
            .sign(&standing.1),
        );
        for _ in 0..CONSENT_PATIENTS {
            let patient = identity();
            next(
                h,
                RegistryTx::RegisterPatient(RegisterPatient {
                    key: patient.1.public_key(),
                    encryption_key: DecryptionKey::generate().public_key(),
                    details: sealed_ref(),
                    attendant: sealed_ref(),
                }),
            );
            h.patients.push(patient);
        }
    }
    all_applied(&session.client, &setup).await.context("registering patients and doctors")?;
    all_applied(&session.client, &standing_grants).await.context("the standing grants")?;
    Ok(())
}

/// Pre-signs the measured workload on all cores, and assigns each signer's stream to one
/// client lane, interleaved so that batches mix identities. With consent, each hospital's
/// share is split three ways: its registry stream, its patients' grants and revocations, and
/// its doctor's access events.
fn presign(args: &Args, chain: &str, hospitals: &[BenchHospital]) -> Vec<Vec<SignedTransaction>> {
    let per_hospital = args.txs.div_ceil(args.hospitals);
    let (registry_share, consent_share) =
        if args.consent { (per_hospital.div_ceil(3), per_hospital / 3) } else { (per_hospital, 0) };
    let bar = progress(args.json, args.txs as u64, "pre-signing");
    let streams: Vec<Vec<SignedTransaction>> = hospitals
        .par_iter()
        .flat_map(|h| {
            let mut streams = vec![registry_stream(h, chain, registry_share, &bar)];
            if args.consent {
                streams.extend(consent_streams(h, chain, consent_share, &bar));
            }
            streams
        })
        .collect();
    bar.finish_and_clear();
    let streams: Vec<Vec<SignedTransaction>> =
        streams.into_iter().filter(|s| !s.is_empty()).collect();
    let longest = streams.iter().map(Vec::len).max().unwrap_or(0);
    let mut lanes: Vec<Vec<SignedTransaction>> = vec![Vec::new(); args.concurrency];
    for (lane, group) in streams.chunks(streams.len().div_ceil(args.concurrency)).enumerate() {
        for i in 0..longest {
            for s in group {
                if let Some(tx) = s.get(i) {
                    lanes[lane % args.concurrency].push(tx.clone());
                }
            }
        }
    }
    lanes
}

/// The measured phase: one client per lane (lane i to node i mod n), paced at `--rate` when
/// given.
async fn measure(
    args: &Args,
    nodes: &[String],
    lanes: Vec<Vec<SignedTransaction>>,
) -> Result<Report> {
    let total: usize = lanes.iter().map(Vec::len).sum();
    let bar = Arc::new(progress(args.json, total as u64, "committing"));
    let interval = (args.rate > 0).then(|| {
        Duration::from_secs_f64(args.batch as f64 * args.concurrency as f64 / args.rate as f64)
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    let lanes_count = lanes.len() as u32;
    for (i, lane) in lanes.into_iter().enumerate() {
        let client = NodeClient::new(&nodes[i % nodes.len()])?;
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
    let mut acks = Vec::with_capacity(total);
    for t in tasks {
        let r = t.await?;
        latencies.extend(r.latencies_ms);
        acks.extend(r.acks);
        committed += r.committed;
        refused += r.refused;
        errors += r.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    latencies.sort_by(f64::total_cmp);
    let (longest_gap_ms, longest_gap_at_s) = longest_gap(started, acks);
    let pct = |p: f64| {
        latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0)
    };
    Ok(Report {
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
        consent: args.consent,
        nodes: nodes.to_vec(),
        longest_gap_ms,
        longest_gap_at_s,
    })
}

/// The longest time between two consecutive commits (of all clients, from the start of the
/// measured phase), in ms, and when it began (s since `started`).
fn longest_gap(started: Instant, mut acks: Vec<Instant>) -> (f64, f64) {
    acks.sort();
    let mut previous = started;
    let (mut gap, mut at) = (Duration::ZERO, Duration::ZERO);
    for ack in acks {
        if ack - previous > gap {
            (gap, at) = (ack - previous, previous - started);
        }
        previous = ack;
    }
    (gap.as_secs_f64() * 1000.0, at.as_secs_f64())
}

struct LaneResult {
    latencies_ms: Vec<f64>,
    /// When each commit was acknowledged.
    acks: Vec<Instant>,
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
        acks: Vec::with_capacity(lane.len()),
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
        let committed_before = r.committed;
        if batch == 1 {
            match client.submit(&chunk[0]).await {
                Ok(_) => r.committed += 1,
                Err(medledger_client::ClientError::Http(
                    medledger_client::error::HttpError::Refused { outcome: Some(_), .. },
                )) => r.refused += 1,
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
        let acked = Instant::now();
        r.acks.extend(std::iter::repeat_n(acked, (r.committed - committed_before) as usize));
        let ms = (acked - sent).as_secs_f64() * 1000.0;
        r.latencies_ms.extend(std::iter::repeat_n(ms, chunk.len()));
        bar.inc(chunk.len() as u64);
    }
    r
}

/// A hospital's registry stream: patient registrations, doctor onboardings and key rotations,
/// in nonce order after its set-up transactions.
fn registry_stream(
    h: &BenchHospital,
    chain: &str,
    count: usize,
    bar: &ProgressBar,
) -> Vec<SignedTransaction> {
    let chain = chain.to_owned();
    let mut key = h.key.clone();
    let mut out = Vec::with_capacity(count);
    for n in 0..count {
        let nonce = h.setup_nonce + n as u64 + 1;
        let roll = Hash::of_parts(&[&h.account.0, &nonce.to_le_bytes()]).0[0];
        let (body, next_key) = match roll % 20 {
            0 => {
                let next = SigningKey::generate();
                (TxBody::Registry(RegistryTx::RotateKey { new_key: next.public_key() }), Some(next))
            }
            1..=6 => (
                TxBody::Registry(RegistryTx::OnboardDoctor(OnboardDoctor {
                    key: SigningKey::generate().public_key(),
                    encryption_key: DecryptionKey::generate().public_key(),
                    registration_number: format!("REG-{}-{nonce}", h.account),
                    name: format!("Dr. Bench {nonce}"),
                    specialisation: "general".into(),
                })),
                None,
            ),
            _ => (
                TxBody::Registry(RegistryTx::RegisterPatient(RegisterPatient {
                    key: SigningKey::generate().public_key(),
                    encryption_key: DecryptionKey::generate().public_key(),
                    details: sealed_ref(),
                    attendant: sealed_ref(),
                })),
                None,
            ),
        };
        out.push(
            Transaction { chain_id: chain.clone(), signer: h.account, nonce, body }.sign(&key),
        );
        if let Some(next) = next_key {
            key = next;
        }
        bar.inc(1);
    }
    out
}

/// A hospital's consent streams: each patient alternately grants its doctor access and
/// revokes that grant; the doctor declares reads of the standing patient's records (allowed,
/// applied and audited).
fn consent_streams(
    h: &BenchHospital,
    chain: &str,
    count: usize,
    bar: &ProgressBar,
) -> Vec<Vec<SignedTransaction>> {
    let Some((doctor, doctor_key)) = &h.doctor else { return Vec::new() };
    let grants_total = count.div_ceil(2);
    let per_patient = grants_total.div_ceil(h.patients.len().max(1));
    let mut streams = Vec::new();
    for (patient, key) in &h.patients {
        let mut out = Vec::with_capacity(per_patient);
        let mut last_grant = None;
        for n in 0..per_patient {
            let body = match last_grant.take() {
                Some(grant) => TxBody::Consent(ConsentTx::Revoke { grant }),
                None => TxBody::Consent(ConsentTx::Grant {
                    patient: *patient,
                    grantee: *doctor,
                    scope: Scope::All,
                    purpose: Purpose::Treatment,
                    validity: Validity { not_before_ms: 0, expires_at_ms: u64::MAX },
                }),
            };
            let is_grant = matches!(body, TxBody::Consent(ConsentTx::Grant { .. }));
            let tx = Transaction {
                chain_id: chain.to_owned(),
                signer: *patient,
                nonce: n as u64 + 1,
                body,
            }
            .sign(key);
            if is_grant {
                last_grant = Some(tx.hash());
            }
            out.push(tx);
            bar.inc(1);
        }
        streams.push(out);
    }
    let Some(standing) = h.standing else { return streams };
    let mut reads = Vec::with_capacity(count / 2);
    for n in 0..count / 2 {
        reads.push(
            Transaction {
                chain_id: chain.to_owned(),
                signer: *doctor,
                nonce: n as u64 + 1,
                body: TxBody::Access(AccessTx {
                    resource: Resource {
                        patient: standing,
                        category: Some(RecordCategory::LabReport),
                        record: None,
                        case: None,
                    },
                    action: Action::Read,
                    purpose: Purpose::Treatment,
                }),
            }
            .sign(doctor_key),
        );
        bar.inc(1);
    }
    streams.push(reads);
    streams
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_is_between_consecutive_commits_of_any_client_and_says_when() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        // Two clients' acknowledgements, out of order: 10, 20, 520, 530 ms.
        let (gap, from) = longest_gap(start, vec![at(520), at(10), at(530), at(20)]);
        assert!((gap - 500.0).abs() < 1e-6, "{gap}");
        assert!((from - 0.020).abs() < 1e-9, "{from}");
        // The wait for the first commit counts too; no commit at all is no gap.
        assert!((longest_gap(start, vec![at(700), at(750)]).0 - 700.0).abs() < 1e-6);
        assert_eq!(longest_gap(start, Vec::new()), (0.0, 0.0));
    }
}
