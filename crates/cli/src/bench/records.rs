//! `medledger bench records`: measures the record paths of a running node. With the
//! regulator's wallet it sets up a hospital, a doctor, a patient and a number of reader
//! doctors (in memory, never written to disk), then measures:
//!
//! - encrypt + upload of one large file, and the audited read + decrypt of it back, in bytes
//!   per second (the file is generated in a temporary directory, the download discarded);
//! - audited reads of a small record by concurrent readers, each holding a grant and the
//!   record's key: reads per second and latency percentiles (sign, order the access event,
//!   stream and decrypt);
//! - reading the patient's audit trail of `--trail-events` events over HTTP (a signed GET);
//! - with `--pull-reads N --read-node URL`: N records of `--small-kib` added through the
//!   wallet's node, each then read once by the patient through another node, one at a time
//!   (with `--before-reads` damaging that node's copies first, every read must fetch its blob
//!   from a peer: `scripts/bench-pull-read.sh`);
//! - peak resident memory of this process and of the node (from its metrics).

use std::{
    io::Write,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use medledger_client::{
    envelope::{self, DataKey, RecordMetadata},
    records,
};
use medledger_core::{
    Hash,
    block::{Created, Outcome},
    encoding,
    ids::AccountId,
    keys::EncryptionKey,
    tx::{
        RecordTx, SignedTransaction, TxBody,
        consent::{AccessTx, Action, Purpose, RecordCategory, Resource},
        records::{KeyRef, MintRecord, VisitDate},
    },
};
use serde::Serialize;

use super::setup::{
    Actor, Clinic, ClinicPlan, all_applied, clinic, node_metric, own_peak_rss_mib, say, scratch_dir,
};
use crate::common::{Session, WalletArgs};

/// Options of `medledger bench records`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The regulator's wallet (to admit the benchmark's hospital) and the node.
    #[command(flatten)]
    wallet: WalletArgs,
    /// Size of the large file, in MiB (0 skips the large transfer).
    #[arg(long, default_value_t = 1024)]
    large_mib: u64,
    /// Size of the record read repeatedly, in KiB.
    #[arg(long, default_value_t = 1024)]
    small_kib: u64,
    /// Audited reads of the small record (0 skips them).
    #[arg(long, default_value_t = 2000)]
    reads: usize,
    /// Concurrent readers (each a doctor with a grant).
    #[arg(long, default_value_t = 16)]
    readers: usize,
    /// Access events to put in the patient's audit trail before reading it back over HTTP
    /// (0 skips this).
    #[arg(long, default_value_t = 10_000)]
    trail_events: usize,
    /// Records of `--small-kib` to add through the wallet's node and then read once each, one
    /// at a time, through `--read-node` (0: none).
    #[arg(long, default_value_t = 0)]
    pull_reads: usize,
    /// The node the `--pull-reads` reads go through.
    #[arg(long, requires = "pull_reads")]
    read_node: Option<String>,
    /// A shell command run once the `--pull-reads` records are on `--read-node` and before they
    /// are read; MEDLEDGER_BENCH_BLOBS names a file of their content hashes, one per line (a
    /// script that damages the read node's copies, so that each read must fetch from a peer).
    /// The bench stops if it fails.
    #[arg(long, requires = "pull_reads")]
    before_reads: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    large_bytes: u64,
    upload_mb_per_s: f64,
    download_mb_per_s: f64,
    small_bytes: u64,
    reads: usize,
    readers: usize,
    reads_per_s: f64,
    read_p50_ms: f64,
    read_p99_ms: f64,
    trail_events: usize,
    trail_p50_ms: f64,
    trail_max_ms: f64,
    pull_reads: usize,
    pull_read_p50_ms: f64,
    pull_read_p99_ms: f64,
    client_peak_rss_mib: f64,
    node_peak_rss_mib: Option<f64>,
}

/// A file of `len` pseudo-random bytes (xorshift: incompressible, cheap to make).
fn make_file(path: &std::path::Path, len: u64) -> Result<()> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for b in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// Encrypts and uploads `path` as `doctor`, minting a record for `patient`; returns the PMR-ID,
/// the content hash and the seconds the encrypt + upload took.
async fn add(
    chain: &str,
    doctor: &mut Actor,
    patient: (AccountId, EncryptionKey),
    path: &std::path::Path,
) -> Result<(String, Hash, f64, DataKey)> {
    let key = DataKey::generate()?;
    let started = Instant::now();
    let summary =
        records::upload_encrypted(&doctor.client, &key, std::fs::File::open(path)?, |_| {}).await?;
    let upload_s = started.elapsed().as_secs_f64();
    let ctx = records::context(&summary.ciphertext_sha256);
    let meta = RecordMetadata {
        title: "benchmark".into(),
        content_type: "application/octet-stream".into(),
        date: "2026-01-01".into(),
        notes: String::new(),
        file_name: None,
    };
    let metadata =
        records::upload_small(&doctor.client, envelope::seal_metadata(&key, &meta, &ctx)?).await?;
    let mut keys = Vec::new();
    for (recipient, enc) in [patient, (doctor.account, doctor.enc.public_key())] {
        let wrapped = envelope::wrap_key(&key, &enc, &ctx)?;
        let blob = records::upload_small(&doctor.client, encoding::encode(&wrapped)).await?;
        keys.push(KeyRef { recipient, blob });
    }
    let mint = doctor.tx(
        chain,
        TxBody::Records(RecordTx::Mint(MintRecord {
            patient: patient.0,
            visit_date: VisitDate { year: 2026, month: 1, day: 1 },
            category: RecordCategory::Imaging,
            content: summary.ciphertext_sha256,
            size: summary.ciphertext_len,
            metadata,
            keys,
            supersedes: None,
            sharing: None,
        })),
    );
    let receipt = doctor.client.submit(&mint).await?;
    let Outcome::Applied { created: Some(Created::Record { pmr }) } = receipt.outcome else {
        bail!("the mint created no record");
    };
    Ok((pmr, summary.ciphertext_sha256, upload_s, key))
}

/// One audited read by `reader`, decrypted and discarded; returns the plaintext length.
async fn read(
    chain: &str,
    reader: &mut Actor,
    patient: AccountId,
    pmr: &str,
    content: &Hash,
) -> Result<u64> {
    let access = reader.tx(
        chain,
        TxBody::Access(AccessTx {
            resource: Resource {
                patient,
                category: Some(RecordCategory::Imaging),
                record: Some(pmr.to_owned()),
                case: None,
            },
            action: Action::Read,
            purpose: Purpose::Treatment,
        }),
    );
    let stream = reader.client.read_record(pmr, &access).await?;
    let wrapped: medledger_client::seal::WrappedKey =
        encoding::decode("wrapped key", &stream.preamble.wrapped_key, 4096)?;
    let key = envelope::unwrap_key(&wrapped, &reader.enc, &records::context(content))?;
    Ok(records::download_decrypted(stream, &key, content, std::io::sink(), |_| {}).await?)
}

pub async fn run(args: Args) -> Result<()> {
    if args.reads > 0 && args.readers == 0 {
        bail!("--readers must be at least 1");
    }
    let session = Session::open(&args.wallet).await?;
    let chain = session.chain_id.clone();
    let base = session.client.base_url().to_owned();
    say(args.json, "setting up a hospital, doctors and a patient...");
    let plan = ClinicPlan {
        tag: "REC",
        name: "Bench Records Hospital",
        specialisation: "benchmarking",
        doctors: 1 + args.readers,
        patients: 1,
    };
    let Clinic { mut doctors, mut patients, .. } = clinic(&session, plan).await?;
    let (mut doctor, mut patient) = (doctors.remove(0), patients.remove(0));
    let dir = scratch_dir("bench")?;
    let mut report = Report::default();
    if args.trail_events > 0 {
        trail(&args, &chain, &mut doctor, &mut patient, &mut report).await?;
    }
    if args.large_mib > 0 {
        large(&args, &chain, &dir, &mut doctor, &mut patient, &mut report).await?;
    }
    if args.pull_reads > 0 {
        pull_reads(&args, &chain, &dir, &mut doctor, &mut patient, &mut report).await?;
    }
    if args.reads > 0 {
        let record = small_record(&args, &chain, &dir, &mut doctor, &mut patient, &doctors).await?;
        reads(&args, &chain, record, patient.account, doctors, &mut report).await?;
    }
    report.client_peak_rss_mib = own_peak_rss_mib();
    report.node_peak_rss_mib = node_metric(&base, "medledger_process_peak_resident_bytes")
        .await
        .map(|b| b / (1024.0 * 1024.0));
    let _ = std::fs::remove_dir_all(&dir);
    print(&args, &report)
}

/// Fills the patient's audit trail with `--trail-events` access events (not measured), then
/// reads it back 20 times over HTTP.
async fn trail(
    args: &Args,
    chain: &str,
    doctor: &mut Actor,
    patient: &mut Actor,
    report: &mut Report,
) -> Result<()> {
    say(
        args.json,
        &format!("filling the patient's audit trail with {} access events...", args.trail_events),
    );
    // Allowed accesses: a run of denied ones would be throttled by the node's denial limit.
    let grant = patient.grant_for_a_day(chain, doctor.account);
    all_applied(&patient.client, &[grant]).await?;
    let accesses: Vec<SignedTransaction> = (0..args.trail_events)
        .map(|_| {
            doctor.tx(
                chain,
                TxBody::Access(AccessTx {
                    resource: Resource {
                        patient: patient.account,
                        category: Some(RecordCategory::LabReport),
                        record: None,
                        case: None,
                    },
                    action: Action::Read,
                    purpose: Purpose::Treatment,
                }),
            )
        })
        .collect();
    all_applied(&doctor.client, &accesses).await?;
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let trail = patient.client.audit_trail(&patient.account, None).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        report.trail_events = trail.len();
    }
    times.sort_by(f64::total_cmp);
    report.trail_p50_ms = times[times.len() / 2];
    report.trail_max_ms = times[times.len() - 1];
    Ok(())
}

/// Encrypt + upload of a `--large-mib` file, and its audited read + decrypt by the patient.
async fn large(
    args: &Args,
    chain: &str,
    dir: &std::path::Path,
    doctor: &mut Actor,
    patient: &mut Actor,
    report: &mut Report,
) -> Result<()> {
    let path = dir.join("large.bin");
    let len = args.large_mib * 1024 * 1024;
    say(args.json, &format!("writing a {} MiB test file...", args.large_mib));
    make_file(&path, len)?;
    say(args.json, "encrypting and uploading it...");
    let patient_keys = (patient.account, patient.enc.public_key());
    let (pmr, content, upload_s, _) = add(chain, doctor, patient_keys, &path).await?;
    std::fs::remove_file(&path)?;
    say(args.json, "reading it back (audited) and decrypting...");
    let started = Instant::now();
    let me = patient.account;
    let n = read(chain, patient, me, &pmr, &content).await?;
    let download_s = started.elapsed().as_secs_f64();
    if n != len {
        bail!("read back {n} bytes of {len}");
    }
    report.large_bytes = len;
    report.upload_mb_per_s = len as f64 / upload_s / 1e6;
    report.download_mb_per_s = len as f64 / download_s / 1e6;
    Ok(())
}

/// The small record every reader reads: its PMR-ID and content hash.
struct SmallRecord {
    pmr: String,
    content: Hash,
    len: u64,
}

/// Adds the `--small-kib` record, grants every reader access and wraps its key to each (not
/// measured).
async fn small_record(
    args: &Args,
    chain: &str,
    dir: &std::path::Path,
    doctor: &mut Actor,
    patient: &mut Actor,
    readers: &[Actor],
) -> Result<SmallRecord> {
    let path = dir.join("small.bin");
    let len = args.small_kib * 1024;
    make_file(&path, len)?;
    let patient_keys = (patient.account, patient.enc.public_key());
    let (pmr, content, _, key) = add(chain, doctor, patient_keys, &path).await?;
    say(args.json, "granting the readers access...");
    let ctx = records::context(&content);
    let mut txs = Vec::new();
    for r in readers {
        let wrapped = envelope::wrap_key(&key, &r.enc.public_key(), &ctx)?;
        let blob = records::upload_small(&patient.client, encoding::encode(&wrapped)).await?;
        txs.push(patient.grant_for_a_day(chain, r.account));
        txs.push(patient.tx(
            chain,
            TxBody::Records(RecordTx::ShareKey {
                record: pmr.clone(),
                key: KeyRef { recipient: r.account, blob },
            }),
        ));
    }
    all_applied(&patient.client, &txs).await?;
    Ok(SmallRecord { pmr, content, len })
}

/// `--reads` audited reads of the small record by the concurrent readers.
async fn reads(
    args: &Args,
    chain: &str,
    record: SmallRecord,
    patient: AccountId,
    readers: Vec<Actor>,
    report: &mut Report,
) -> Result<()> {
    say(args.json, &format!("{} audited reads by {} readers...", args.reads, args.readers));
    let per = args.reads.div_ceil(args.readers);
    let started = Instant::now();
    let pmr = Arc::new(record.pmr);
    let content = record.content;
    let mut tasks = Vec::new();
    for mut r in readers {
        let (chain, pmr) = (chain.to_owned(), pmr.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                read(&chain, &mut r, patient, &pmr, &content).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat: Vec<Duration> = Vec::new();
    for t in tasks {
        lat.extend(t.await.context("a reader task failed")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    report.small_bytes = record.len;
    report.reads = lat.len();
    report.readers = args.readers;
    report.reads_per_s = lat.len() as f64 / elapsed;
    report.read_p50_ms = percentile_ms(&lat, 0.50);
    report.read_p99_ms = percentile_ms(&lat, 0.99);
    Ok(())
}

/// The latency at percentile `p` of sorted `lat`, in milliseconds.
fn percentile_ms(lat: &[Duration], p: f64) -> f64 {
    lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// `--pull-reads` records of `--small-kib` added through the wallet's node (not measured),
/// then, once `--read-node` has applied them and `--before-reads` ran, each read once by the
/// patient through `--read-node`, one at a time.
async fn pull_reads(
    args: &Args,
    chain: &str,
    dir: &std::path::Path,
    doctor: &mut Actor,
    patient: &mut Actor,
    report: &mut Report,
) -> Result<()> {
    let read_node = args.read_node.as_deref().unwrap_or(patient.client.base_url()).to_owned();
    let path = dir.join("pull.bin");
    let len = args.small_kib * 1024;
    make_file(&path, len)?;
    say(args.json, &format!("adding {} records of {} KiB...", args.pull_reads, args.small_kib));
    let patient_keys = (patient.account, patient.enc.public_key());
    let mut records = Vec::with_capacity(args.pull_reads);
    for _ in 0..args.pull_reads {
        let (pmr, content, _, _) = add(chain, doctor, patient_keys, &path).await?;
        records.push((pmr, content));
    }
    std::fs::remove_file(&path)?;
    // The read node must hold the records' transactions before anything is done to its copies.
    let signer = medledger_client::http::Signer::new(patient.key.clone(), patient.account);
    let reader = medledger_client::http::NodeClient::new(&read_node)?.signed_by(signer);
    let height = patient.client.health().await?.height;
    let deadline = Instant::now() + Duration::from_secs(60);
    while reader.health().await?.height < height {
        if Instant::now() > deadline {
            bail!("{read_node} did not reach height {height} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(command) = &args.before_reads {
        let list = dir.join("pull-blobs.txt");
        let hashes: Vec<String> = records.iter().map(|(_, h)| h.to_string()).collect();
        std::fs::write(&list, hashes.join("\n") + "\n")?;
        say(args.json, &format!("running the --before-reads command: {command}"));
        let mut run = std::process::Command::new("sh");
        run.arg("-c").arg(command).env("MEDLEDGER_BENCH_BLOBS", &list);
        run.stdout(std::process::Stdio::null());
        let status = tokio::task::spawn_blocking(move || run.status())
            .await?
            .context("cannot run the --before-reads command")?;
        if !status.success() {
            bail!("the --before-reads command failed ({status})");
        }
    }
    say(args.json, &format!("reading each once through {read_node}..."));
    let home = std::mem::replace(&mut patient.client, reader);
    let me = patient.account;
    let mut lat = Vec::with_capacity(records.len());
    let mut failed = None;
    for (pmr, content) in &records {
        let started = Instant::now();
        match read(chain, patient, me, pmr, content).await {
            Ok(n) if n == len => lat.push(started.elapsed()),
            Ok(n) => failed = Some(anyhow::anyhow!("record {pmr}: read back {n} bytes of {len}")),
            Err(e) => failed = Some(e.context(format!("reading record {pmr}"))),
        }
        if failed.is_some() {
            break;
        }
    }
    patient.client = home;
    if let Some(e) = failed {
        return Err(e);
    }
    lat.sort();
    report.pull_reads = lat.len();
    report.pull_read_p50_ms = percentile_ms(&lat, 0.50);
    report.pull_read_p99_ms = percentile_ms(&lat, 0.99);
    report.small_bytes = len;
    Ok(())
}

fn print(args: &Args, report: &Report) -> Result<()> {
    if args.json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    if report.large_bytes > 0 {
        println!(
            "large record, {} MiB: encrypt + upload {:.0} MB/s; audited read + decrypt {:.0} MB/s",
            report.large_bytes >> 20,
            report.upload_mb_per_s,
            report.download_mb_per_s
        );
    }
    if report.reads > 0 {
        println!(
            "audited reads of a {} KiB record: {} reads by {} readers, {:.0} reads/s; latency p50 {:.1} ms, p99 {:.1} ms",
            report.small_bytes >> 10,
            report.reads,
            report.readers,
            report.reads_per_s,
            report.read_p50_ms,
            report.read_p99_ms
        );
    }
    if report.pull_reads > 0 {
        println!(
            "single audited reads of {} KiB records through {}: {} reads; latency p50 {:.1} ms, p99 {:.1} ms",
            report.small_bytes >> 10,
            args.read_node.as_deref().unwrap_or("the wallet's node"),
            report.pull_reads,
            report.pull_read_p50_ms,
            report.pull_read_p99_ms
        );
    }
    if report.trail_events > 0 {
        println!(
            "audit trail of {} events over HTTP (signed GET, binary encoding): p50 {:.1} ms, max {:.1} ms (20 reads)",
            report.trail_events, report.trail_p50_ms, report.trail_max_ms
        );
    }
    println!(
        "peak resident memory: this client {:.0} MiB, node {}",
        report.client_peak_rss_mib,
        report.node_peak_rss_mib.map_or("unknown".into(), |m| format!("{m:.0} MiB"))
    );
    Ok(())
}
