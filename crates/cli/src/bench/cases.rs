//! `medledger bench cases`: builds a case of `--entries` entries on a running node and measures
//! its export and its offline verification. With the regulator's wallet it sets up a hospital,
//! a doctor and a patient (in memory, never written to disk); the doctor opens a case, seals
//! and uploads every entry (concurrently), appends them one by one (each append names the
//! head the previous one produced, so a case takes at most one entry per block: this part is
//! not a throughput figure), and seals the case. Then it measures:
//!
//! - fetching the export (`GET /v1/cases/{id}/export`, the node builds every inclusion proof
//!   and signs the export) and writing it to a file;
//! - `case verify` of that file: reading and decoding it, then every check of
//!   [`medledger_client::cases::verify_export`], `--runs` times (median and fastest reported).

use std::{path::PathBuf, time::Instant};

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use medledger_client::{
    cases::{
        self, CaseDescription, CaseNote, case_context, read_export, verify_export, write_export,
    },
    envelope::{self, DataKey},
    records,
};
use medledger_core::{
    Hash,
    block::{Created, Outcome},
    encoding,
    keys::PublicKey,
    tx::{
        CaseTx, TxBody,
        cases::OpenCase,
        consent::{AccessTx, Action, Purpose, Resource},
        records::KeyRef,
    },
};
use serde::Serialize;

use super::setup::{Actor, Clinic, ClinicPlan, clinic, say, scratch_dir};
use crate::common::{Session, WalletArgs};

/// Options of `medledger bench cases`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The regulator's wallet (to admit the benchmark's hospital) and the node.
    #[command(flatten)]
    wallet: WalletArgs,
    /// Entries in the case.
    #[arg(long, default_value_t = 10_000)]
    entries: usize,
    /// How many times to verify the export.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Keep the export in this file (default: a temporary file, removed afterwards).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    case: String,
    entries: usize,
    append_s: f64,
    export_ms: f64,
    export_bytes: u64,
    verify_runs: usize,
    verify_median_ms: f64,
    verify_min_ms: f64,
}

/// The case's head after an applied open, append or seal.
fn head_of(outcome: &Outcome) -> Result<Hash> {
    match outcome {
        Outcome::Applied { created: Some(Created::Case { head, .. }) }
        | Outcome::Applied { created: Some(Created::CaseEntry { head, .. }) } => Ok(*head),
        other => bail!("unexpected outcome {other:?}"),
    }
}

pub async fn run(args: Args) -> Result<()> {
    if args.entries == 0 || args.runs == 0 {
        bail!("--entries and --runs must be at least 1");
    }
    let session = Session::open(&args.wallet).await?;
    let chain = session.chain_id.clone();
    let trusted = session.anchor.node_key;
    say(args.json, "setting up a hospital, a doctor and a patient...");
    let plan = ClinicPlan {
        tag: "CASE",
        name: "Bench Cases Hospital",
        specialisation: "benchmarking",
        doctors: 1,
        patients: 1,
    };
    let Clinic { mut doctors, mut patients, .. } = clinic(&session, plan).await?;
    let (mut doctor, mut patient) = (doctors.remove(0), patients.remove(0));
    let (case, head, key, ctx) = open(&chain, &mut doctor, &patient).await?;
    say(args.json, &format!("sealing and uploading {} entries...", args.entries));
    let entries = upload_entries(&doctor, &key, &ctx, args.entries).await?;
    say(args.json, &format!("appending {} entries, one per block...", args.entries));
    let started = Instant::now();
    let head = append(&args, &chain, &mut doctor, &case, head, &entries).await?;
    let append_s = started.elapsed().as_secs_f64();
    let seal = doctor.tx(&chain, TxBody::Cases(CaseTx::Seal { case: case.clone(), head }));
    doctor.client.submit(&seal).await?;

    say(args.json, "exporting...");
    let tmp = scratch_dir("bench")?;
    let path = args.out.clone().unwrap_or_else(|| tmp.join("case.export"));
    let started = Instant::now();
    let access = patient.tx(
        &chain,
        TxBody::Access(AccessTx {
            resource: Resource {
                patient: patient.account,
                category: None,
                record: None,
                case: Some(case.clone()),
            },
            action: Action::Read,
            purpose: Purpose::Treatment,
        }),
    );
    let export = patient.client.read_case(&case, &access).await?.export;
    write_export(&path, &export)?;
    let export_ms = started.elapsed().as_secs_f64() * 1000.0;
    let export_bytes = std::fs::metadata(&path)?.len();
    drop(export);

    say(args.json, &format!("verifying the export {} times...", args.runs));
    let times = verify(&args, &path, &trusted)?;
    if args.out.is_none() {
        std::fs::remove_file(&path)?;
    }
    let _ = std::fs::remove_dir(&tmp);
    let report = Report {
        case,
        entries: args.entries,
        append_s,
        export_ms,
        export_bytes,
        verify_runs: args.runs,
        verify_median_ms: times[times.len() / 2],
        verify_min_ms: times[0],
    };
    print(&args, &report)
}

/// The doctor opens a case for the patient, its key wrapped to both: the case id, its first
/// head, its data key and the context its blobs are sealed under.
async fn open(
    chain: &str,
    doctor: &mut Actor,
    patient: &Actor,
) -> Result<(String, Hash, DataKey, Vec<u8>)> {
    let key = DataKey::generate()?;
    let description = CaseDescription { title: "Benchmark case".into(), notes: String::new() };
    let sealed = cases::seal_description(&key, &description, &patient.account)?;
    let description_hash = records::upload_small(&doctor.client, sealed).await?;
    let ctx = case_context(&description_hash);
    let mut keys = Vec::new();
    for (recipient, enc) in
        [(patient.account, patient.enc.public_key()), (doctor.account, doctor.enc.public_key())]
    {
        let wrapped = envelope::wrap_key(&key, &enc, &ctx)?;
        let blob = records::upload_small(&doctor.client, encoding::encode(&wrapped)).await?;
        keys.push(KeyRef { recipient, blob });
    }
    let open = doctor.tx(
        chain,
        TxBody::Cases(CaseTx::Open(OpenCase {
            patient: patient.account,
            description: description_hash,
            keys,
            follow_up_of: None,
        })),
    );
    let receipt = doctor.client.submit(&open).await?;
    let head = head_of(&receipt.outcome)?;
    let Outcome::Applied { created: Some(Created::Case { case, .. }) } = receipt.outcome else {
        bail!("the open created no case");
    };
    Ok((case, head, key, ctx))
}

/// Seals and uploads `count` entries, 64 at a time; their hashes in order.
async fn upload_entries(
    doctor: &Actor,
    key: &DataKey,
    ctx: &[u8],
    count: usize,
) -> Result<Vec<Hash>> {
    let mut entries = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(64) {
        let mut tasks = tokio::task::JoinSet::new();
        for &i in chunk {
            let note = CaseNote {
                text: format!(
                    "Entry {i}: observations, medication given, vital signs within range."
                ),
            };
            let sealed = cases::seal_note(key, &note, ctx)?;
            let client = doctor.client.clone();
            tasks.spawn(async move { (i, records::upload_small(&client, sealed).await) });
        }
        let mut done = Vec::with_capacity(chunk.len());
        while let Some(r) = tasks.join_next().await {
            let (i, hash) = r?;
            done.push((i, hash?));
        }
        done.sort_by_key(|(i, _)| *i);
        entries.extend(done.into_iter().map(|(_, h)| h));
    }
    Ok(entries)
}

/// Appends the entries one by one (each names the head the previous one produced); the
/// case's head after the last.
async fn append(
    args: &Args,
    chain: &str,
    doctor: &mut Actor,
    case: &str,
    mut head: Hash,
    entries: &[Hash],
) -> Result<Hash> {
    for (i, entry) in entries.iter().enumerate() {
        let tx = doctor.tx(
            chain,
            TxBody::Cases(CaseTx::Append { case: case.to_owned(), prev: head, entry: *entry }),
        );
        head = head_of(&doctor.client.submit(&tx).await?.outcome)?;
        if !args.json && (i + 1) % 1000 == 0 {
            eprintln!("  {} entries", i + 1);
        }
    }
    Ok(head)
}

/// Reads, decodes and verifies the export `--runs` times; the times in ms, sorted.
fn verify(args: &Args, path: &std::path::Path, trusted: &PublicKey) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let started = Instant::now();
        let export = read_export(path)?;
        let report = verify_export(&export, trusted)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if report.entries.len() != args.entries || report.sealed.is_none() {
            bail!(
                "the export verified with {} entries, sealed: {}",
                report.entries.len(),
                report.sealed.is_some()
            );
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

fn print(args: &Args, report: &Report) -> Result<()> {
    if args.json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("case {} with {} entries", report.case, report.entries);
        println!("  appended one per block in {:.1} s", report.append_s);
        println!(
            "  export: {:.0} ms ({:.1} MB)",
            report.export_ms,
            report.export_bytes as f64 / 1e6
        );
        println!(
            "  case verify (read, decode, check everything): median {:.0} ms, fastest {:.0} ms over {} runs",
            report.verify_median_ms, report.verify_min_ms, report.verify_runs
        );
    }
    Ok(())
}
