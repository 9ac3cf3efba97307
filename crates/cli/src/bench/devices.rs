//! `medledger bench devices`: the device ingestion load generator (the wallet is the
//! regulator's). It sets up a hospital, a doctor, `--devices` patients each with a vital-signs
//! monitor, a grant, thresholds and an open session (in memory; outboxes in a temporary
//! directory), then runs one gateway per device at `--rate` readings per second each for
//! `--duration` seconds, the readings from [`crate::device_sim`]'s random walks, with the
//! doctor and the hospital following their event streams. It reports the readings committed
//! per second after a warm-up; for batches their latency; for alerts the time from the reading
//! to the committed receipt and from the submission to it, the block each landed in against
//! the tip known at its submission (the node's `/health`, sampled every 20 ms, and every
//! receipt), the time from the reading to the event on the doctor's and the hospital's
//! streams; and the blocks and transactions per block (from the node's metrics: far below a
//! block's limit means no transaction waited for more than the next block proposed).
//!
//! In four phases: [`set_up`], [`drive`] (the devices and the watchers run), [`collect`] (what
//! they saw), [`summarise`] and [`print`].

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use medledger_client::{
    NodeClient, Signer,
    devices::{self, ThresholdSet},
    gateway::{EntryKind, Gateway, Progress},
    records, seal,
};
use medledger_core::{
    Hash,
    audit::AuditKind,
    encoding,
    ids::AccountId,
    tx::{
        ConsentTx, DeviceTx, SealedRef, TxBody,
        consent::{Purpose, RecordCategory, Scope, Validity},
        devices::{DeviceKind, RegisterDevice, SetThresholds, StartSession},
        records::KeyRef,
    },
};
use serde::Serialize;

use super::setup::{
    Actor, Clinic, ClinicPlan, DAY_MS, all_applied, clinic, node_metric, now_ms, say, scratch_dir,
};
use crate::{
    common::{Session, WalletArgs},
    device_sim::Vitals,
};

/// Options of `medledger bench devices`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The regulator's wallet (to admit the benchmark's hospital) and the node.
    #[command(flatten)]
    wallet: WalletArgs,
    /// Simulated devices, one patient each.
    #[arg(long, alias = "bench-devices")]
    devices: usize,
    /// Readings per second, per device.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// How long the devices run, in seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Probability that a reading is an injected anomaly.
    #[arg(long, default_value_t = 0.01)]
    anomaly_rate: f64,
    /// Each device sends a batch of normal readings at least this often, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    batch_ms: u64,
    /// Seed of the random walks (device i uses seed + i; default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// How often the node's tip is sampled during the run.
const TIP_SAMPLE: Duration = Duration::from_millis(20);
/// How long the event streams get after the run for the last alerts.
const STREAM_GRACE: Duration = Duration::from_secs(2);

/// One delivery seen by a simulated device.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// When its receipt arrived.
    arrived: Instant,
    /// When its transaction was submitted.
    submitted: Instant,
    /// Its block.
    height: u64,
    /// Readings it committed.
    readings: u64,
    /// Whether it was an alert.
    alert: bool,
    /// For an alert: when its reading was due.
    alert_of: Option<Instant>,
}

/// What one simulated device measured.
#[derive(Debug, Default)]
struct DeviceStats {
    generated: u64,
    /// (device, sequence number, when the reading was due) of every abnormal reading.
    abnormal: Vec<(AccountId, u64, Instant)>,
    seen: Vec<Seen>,
    batch_ms: Vec<f64>,
    stalls: u64,
}

#[derive(Debug, Serialize)]
struct BenchReport {
    devices: usize,
    rate_per_device: f64,
    target_readings_per_s: f64,
    duration_s: f64,
    warmup_s: f64,
    generated: u64,
    committed_in_run: u64,
    committed_readings_per_s: f64,
    batches: u64,
    alerts: u64,
    alert_latency_p50_ms: f64,
    alert_latency_p99_ms: f64,
    alert_latency_max_ms: f64,
    alert_commit_p50_ms: f64,
    alert_commit_p99_ms: f64,
    alert_commit_max_ms: f64,
    alert_blocks_after_tip_hist: Vec<(u64, u64)>,
    alert_blocks_after_tip_max: u64,
    /// (events received, p50, p99, max ms from the reading being due) on the doctor's stream.
    doctor_stream: (u64, f64, f64, f64),
    /// The same on the hospital's stream.
    hospital_stream: (u64, f64, f64, f64),
    batch_latency_p50_ms: f64,
    batch_latency_p99_ms: f64,
    blocks: u64,
    block_interval_ms: f64,
    txs_per_block: f64,
    stalls: u64,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub async fn run(args: Args) -> Result<()> {
    if args.devices == 0 {
        bail!("--devices must be at least 1");
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number");
    }
    if !(0.0..=1.0).contains(&args.anomaly_rate) {
        bail!("--anomaly-rate is a probability, 0 to 1");
    }
    let session = Session::open(&args.wallet).await?;
    let fleet = set_up(&session, &args).await?;
    let running = drive(&session, &args, fleet).await?;
    let collected = collect(&session, running).await?;
    print(&args, &summarise(&args, collected))
}

/// Everything set up before the run.
struct Fleet {
    clinic: Clinic,
    gateways: Vec<Gateway>,
    /// The gateways' outboxes.
    state: PathBuf,
}

/// Set-up (not measured): the clinic, each patient's grant to the doctor and monitor, the
/// doctor's thresholds, each patient's session naming the doctor, and one gateway per device.
async fn set_up(session: &Session, args: &Args) -> Result<Fleet> {
    let n = args.devices;
    say(
        args.json,
        &format!("setting up a hospital, a doctor and {n} patients with a device each..."),
    );
    let plan = ClinicPlan {
        tag: "DEV",
        name: "Bench Devices Hospital",
        specialisation: "telemetry",
        doctors: 1,
        patients: n,
    };
    let mut clinic = clinic(session, plan).await?;
    let devices: Vec<Actor> = (0..n).map(|_| Actor::new(&session.client)).collect();
    register_devices(&session.chain_id, &mut clinic, &devices).await?;
    start_sessions(&session.chain_id, &mut clinic, &devices).await?;
    let state = scratch_dir("device-bench")?;
    let mut gateways = Vec::with_capacity(n);
    for (i, d) in devices.iter().enumerate() {
        let (g, _) = Gateway::open(
            d.client.clone(),
            d.identity(&format!("bench device {i}")),
            d.account,
            &session.anchor,
            None,
            &state.join(i.to_string()),
        )
        .await?;
        gateways.push(g);
    }
    Ok(Fleet { clinic, gateways, state })
}

/// Each patient grants the doctor device data and registers a monitor.
async fn register_devices(chain: &str, clinic: &mut Clinic, devices: &[Actor]) -> Result<()> {
    let doctor = clinic.doctors[0].account;
    let mut txs = Vec::new();
    for (p, d) in clinic.patients.iter_mut().zip(devices) {
        let sealed = seal::seal(br#"{"serial":"BENCH"}"#, &[p.enc.public_key()])?;
        let blob = p.client.put_blob(sealed).await?.hash;
        txs.push(p.tx(
            chain,
            TxBody::Consent(ConsentTx::Grant {
                patient: p.account,
                grantee: doctor,
                scope: Scope::Categories(vec![RecordCategory::DeviceData]),
                purpose: Purpose::Treatment,
                validity: Validity { not_before_ms: 0, expires_at_ms: now_ms() + DAY_MS },
            }),
        ));
        txs.push(p.tx(
            chain,
            TxBody::Devices(DeviceTx::Register(RegisterDevice {
                key: d.key.public_key(),
                encryption_key: d.enc.public_key(),
                patient: p.account,
                kind: DeviceKind::VitalSignsMonitor,
                details: SealedRef { blob, commitment: Hash::of(b"serial") },
            })),
        ));
    }
    all_applied(&clinic.hospital.client, &txs).await?;
    Ok(())
}

/// The doctor's thresholds for every device; the patients' sessions, naming the doctor.
async fn start_sessions(chain: &str, clinic: &mut Clinic, devices: &[Actor]) -> Result<()> {
    let set = ThresholdSet::defaults();
    let doctor = &mut clinic.doctors[0];
    let mut txs = Vec::new();
    for (p, d) in clinic.patients.iter().zip(devices) {
        let (sealed, commitment) = devices::seal_thresholds(
            &set,
            &[d.enc.public_key(), p.enc.public_key(), doctor.enc.public_key()],
        )?;
        let blob = doctor.client.put_blob(sealed).await?.hash;
        txs.push(doctor.tx(
            chain,
            TxBody::Devices(DeviceTx::SetThresholds(SetThresholds {
                device: d.account,
                metrics: set.metrics(),
                sealed: SealedRef { blob, commitment },
            })),
        ));
    }
    let patients = clinic.patients.iter_mut().zip(&clinic.patient_ids);
    for ((p, pid), d) in patients.zip(devices) {
        let secret = devices::new_session_key(*pid)?;
        let mut keys = Vec::new();
        for (recipient, enc) in
            [(p.account, p.enc.public_key()), (doctor.account, doctor.enc.public_key())]
        {
            let wrapped = devices::wrap_session_key(&secret, &enc, &d.account)?;
            let blob = records::upload_small(&p.client, encoding::encode(&wrapped)).await?;
            keys.push(KeyRef { recipient, blob });
        }
        txs.push(p.tx(
            chain,
            TxBody::Devices(DeviceTx::StartSession(StartSession {
                device: d.account,
                public_key: secret.public_key(),
                expires_at_ms: None,
                doctor: Some(doctor.account),
                keys,
            })),
        ));
    }
    all_applied(&clinic.hospital.client, &txs).await?;
    Ok(())
}

/// Alerts heard on one account's event stream: (device, sequence number, when).
type Heard = Arc<Mutex<Vec<(AccountId, u64, Instant)>>>;

/// The run under way: what each task will report.
struct Running {
    devices: Vec<tokio::task::JoinHandle<Result<DeviceStats>>>,
    poller: tokio::task::JoinHandle<()>,
    tips: Arc<Mutex<Vec<(Instant, u64)>>>,
    watchers: Vec<(tokio::task::JoinHandle<()>, Heard)>,
    state: PathBuf,
    started: Instant,
    end: Instant,
    height_at_start: u64,
    applied_at_start: Option<f64>,
}

/// Starts the run: the tip poller, the doctor's and the hospital's event streams, and one
/// task per device.
async fn drive(session: &Session, args: &Args, fleet: Fleet) -> Result<Running> {
    let n = args.devices;
    say(
        args.json,
        &format!(
            "{n} devices at {} readings/s each ({} readings/s in all) for {} s, anomaly rate {}...",
            args.rate,
            args.rate * n as f64,
            args.duration,
            args.anomaly_rate
        ),
    );
    let base = session.client.base_url();
    let applied_at_start = node_metric(base, "medledger_tx_applied_total").await;
    let height_at_start = session.client.health().await?.height;
    let started = Instant::now() + Duration::from_millis(200);
    let end = started + Duration::from_secs_f64(args.duration);
    let tips = Arc::new(Mutex::new(Vec::new()));
    let poller = spawn_tip_poller(NodeClient::new(base)?, tips.clone());
    let mut watchers = Vec::new();
    for who in [&fleet.clinic.doctors[0], &fleet.clinic.hospital] {
        watchers.push(spawn_watcher(base, who)?);
    }
    let devices = fleet
        .gateways
        .into_iter()
        .enumerate()
        .map(|(i, g)| tokio::spawn(simulate(g, i, args.device_plan(started, end))))
        .collect();
    Ok(Running {
        devices,
        poller,
        tips,
        watchers,
        state: fleet.state,
        started,
        end,
        height_at_start,
        applied_at_start,
    })
}

/// Samples the node's tip every [`TIP_SAMPLE`], to place each alert's submission.
fn spawn_tip_poller(
    client: NodeClient,
    tips: Arc<Mutex<Vec<(Instant, u64)>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(h) = client.health().await
                && let Ok(mut t) = tips.lock()
            {
                t.push((Instant::now(), h.height));
            }
            tokio::time::sleep(TIP_SAMPLE).await;
        }
    })
}

/// Follows `who`'s event stream: when does each alert reach them?
/// (A client of its own, so the stream does not hold one of the load's connections.)
fn spawn_watcher(base: &str, who: &Actor) -> Result<(tokio::task::JoinHandle<()>, Heard)> {
    let account = who.account;
    let client = NodeClient::new(base)?.signed_by(Signer::new(who.key.clone(), account));
    let heard: Heard = Arc::default();
    let sink = heard.clone();
    let task = tokio::spawn(async move {
        let _ = client
            .watch(account, None, |e| {
                if let AuditKind::DeviceAlert { device, seq, .. } = e.kind
                    && let Ok(mut h) = sink.lock()
                {
                    h.push((device, seq, Instant::now()));
                }
                true
            })
            .await;
    });
    Ok((task, heard))
}

/// What one device's task needs to know of the run.
#[derive(Clone, Copy)]
struct DevicePlan {
    rate: f64,
    anomaly_rate: f64,
    batch_ms: u64,
    seed: Option<u64>,
    devices: usize,
    started: Instant,
    end: Instant,
}

impl Args {
    fn device_plan(&self, started: Instant, end: Instant) -> DevicePlan {
        DevicePlan {
            rate: self.rate,
            anomaly_rate: self.anomaly_rate,
            batch_ms: self.batch_ms,
            seed: self.seed,
            devices: self.devices,
            started,
            end,
        }
    }
}

/// Device `i`: readings at the planned rate until the end, a batch every `batch_ms`
/// (staggered over the devices), and a last flush.
async fn simulate(mut g: Gateway, i: usize, plan: DevicePlan) -> Result<DeviceStats> {
    let mut stats = DeviceStats::default();
    let mut vitals = Vitals::new(plan.seed.map(|s| s.wrapping_add(i as u64)));
    let metrics = g.kind().metrics();
    let batch = Duration::from_millis(plan.batch_ms);
    let mut last_flush =
        plan.started + Duration::from_millis(plan.batch_ms * i as u64 / plan.devices as u64);
    let mut due_at: VecDeque<(u64, Instant)> = VecDeque::new();
    tokio::time::sleep_until(plan.started.into()).await;
    let per = Duration::from_secs_f64(1.0 / plan.rate);
    let mut k: u64 = 0;
    while Instant::now() < plan.end {
        let due = (plan.started.elapsed().as_secs_f64() * plan.rate) as u64;
        while k < due {
            let scheduled = plan.started + per.mul_f64(k as f64);
            k += 1;
            let metric = metrics[(k as usize - 1) % metrics.len()];
            let abnormal = vitals.rng.uniform() < plan.anomaly_rate;
            let value = if abnormal { vitals.anomaly(metric) } else { vitals.normal(metric) };
            let r = g.reading(metric, value, now_ms());
            stats.generated += 1;
            if g.classify(metric, value).is_some() {
                due_at.push_back((r.seq, scheduled));
                stats.abnormal.push((g.device(), r.seq, scheduled));
            }
            let (_, p) = g.record(r).await?;
            note(p, &mut stats, &mut due_at);
        }
        if last_flush.elapsed() >= batch {
            last_flush = Instant::now();
            let t = Instant::now();
            let p = g.flush().await?;
            if !p.delivered.is_empty() {
                stats.batch_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            note(p, &mut stats, &mut due_at);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let p = g.flush().await?;
    note(p, &mut stats, &mut due_at);
    Ok(stats)
}

/// Notes what a gateway delivered (matching each alert to when its reading was due).
fn note(p: Progress, stats: &mut DeviceStats, due_at: &mut VecDeque<(u64, Instant)>) {
    for d in p.delivered {
        let arrived = Instant::now();
        let (readings, alert, alert_of) = match d.kind {
            EntryKind::Batch { count, .. } => (u64::from(count), false, None),
            EntryKind::Alert { seq, .. } => {
                let pos = due_at.iter().position(|(s, _)| *s == seq);
                (1, true, pos.and_then(|p| due_at.remove(p)).map(|(_, t)| t))
            }
        };
        stats.seen.push(Seen {
            arrived,
            submitted: d.submitted_at,
            height: d.receipt.height,
            readings,
            alert,
            alert_of,
        });
    }
    if p.stalled.is_some() {
        stats.stalls += 1;
    }
}

/// What the run saw, once it is over.
struct Collected {
    all: DeviceStats,
    tips: Vec<(Instant, u64)>,
    /// (events received, p50, p99, max ms) on the doctor's and the hospital's streams.
    stream_lags: Vec<(u64, f64, f64, f64)>,
    started: Instant,
    end: Instant,
    height_at_start: u64,
    height_at_end: u64,
    applied: (Option<f64>, Option<f64>),
}

/// Waits for every device, gives the streams [`STREAM_GRACE`] for the last alerts, and
/// measures how late each alert reached each stream.
async fn collect(session: &Session, running: Running) -> Result<Collected> {
    let mut all = DeviceStats::default();
    for t in running.devices {
        let s = t.await.context("a device task failed")??;
        all.generated += s.generated;
        all.abnormal.extend(s.abnormal);
        all.seen.extend(s.seen);
        all.batch_ms.extend(s.batch_ms);
        all.stalls += s.stalls;
    }
    running.poller.abort();
    tokio::time::sleep(STREAM_GRACE).await;
    let due: HashMap<(AccountId, u64), Instant> =
        all.abnormal.iter().map(|(d, s, t)| ((*d, *s), *t)).collect();
    let mut stream_lags = Vec::new();
    for (task, heard) in running.watchers {
        task.abort();
        let heard = heard.lock().map(|h| h.clone()).unwrap_or_default();
        let mut lags: Vec<f64> = heard
            .iter()
            .filter_map(|(d, s, at)| {
                due.get(&(*d, *s)).map(|t| at.duration_since(*t).as_secs_f64() * 1000.0)
            })
            .collect();
        let received = lags.len() as u64;
        let (p50, p99, max) = (pct(&mut lags, 0.5), pct(&mut lags, 0.99), pct(&mut lags, 1.0));
        stream_lags.push((received, p50, p99, max));
    }
    let base = session.client.base_url();
    let height_at_end = session.client.health().await?.height;
    let applied_at_end = node_metric(base, "medledger_tx_applied_total").await;
    let _ = std::fs::remove_dir_all(&running.state);
    Ok(Collected {
        all,
        tips: running.tips.lock().map(|t| t.clone()).unwrap_or_default(),
        stream_lags,
        started: running.started,
        end: running.end,
        height_at_start: running.height_at_start,
        height_at_end,
        applied: (running.applied_at_start, applied_at_end),
    })
}

/// For each alert, its block minus the tip known at its submission (the newest height
/// reported by any receipt or tip sample before it): how many alerts landed how many blocks
/// after the tip.
fn blocks_after_tip(c: &Collected, alerts: &[&Seen]) -> BTreeMap<u64, u64> {
    let mut timeline: Vec<(Instant, u64)> =
        c.all.seen.iter().map(|s| (s.arrived, s.height)).collect();
    timeline.extend(c.tips.iter().copied());
    timeline.sort_by_key(|(t, _)| *t);
    let mut best = 0;
    let timeline: Vec<(Instant, u64)> = timeline
        .into_iter()
        .map(|(t, h)| {
            best = best.max(h);
            (t, best)
        })
        .collect();
    let tip_before = |at: Instant| -> u64 {
        let i = timeline.partition_point(|(t, _)| *t < at);
        if i == 0 { c.height_at_start } else { timeline[i - 1].1 }
    };
    let mut hist = BTreeMap::new();
    for s in alerts {
        *hist.entry(s.height.saturating_sub(tip_before(s.submitted))).or_insert(0u64) += 1;
    }
    hist
}

/// The report: readings committed per second after a warm-up, up to the end of the run; the
/// alerts' latencies; the batches'; blocks and transactions per block.
fn summarise(args: &Args, mut c: Collected) -> BenchReport {
    let duration = args.duration;
    let warmup = (duration / 4.0).min(2.0);
    let (from, to) = (c.started + Duration::from_secs_f64(warmup), c.end);
    let seen = &c.all.seen;
    let steady: u64 =
        seen.iter().filter(|s| s.arrived > from && s.arrived <= to).map(|s| s.readings).sum();
    let alerts: Vec<&Seen> = seen.iter().filter(|s| s.alert).collect();
    let mut e2e: Vec<f64> = alerts
        .iter()
        .filter_map(|s| s.alert_of.map(|due| s.arrived.duration_since(due).as_secs_f64() * 1000.0))
        .collect();
    let mut commit: Vec<f64> = alerts
        .iter()
        .map(|s| s.arrived.duration_since(s.submitted).as_secs_f64() * 1000.0)
        .collect();
    let hist = blocks_after_tip(&c, &alerts);
    let blocks = c.height_at_end.saturating_sub(c.height_at_start);
    let txs = c.applied.1.zip(c.applied.0).map_or(0.0, |(e, s)| e - s);
    BenchReport {
        devices: args.devices,
        rate_per_device: args.rate,
        target_readings_per_s: args.rate * args.devices as f64,
        duration_s: duration,
        warmup_s: warmup,
        generated: c.all.generated,
        committed_in_run: seen.iter().map(|s| s.readings).sum(),
        committed_readings_per_s: steady as f64 / (duration - warmup),
        batches: seen.iter().filter(|s| !s.alert).count() as u64,
        alerts: alerts.len() as u64,
        alert_latency_p50_ms: pct(&mut e2e, 0.50),
        alert_latency_p99_ms: pct(&mut e2e, 0.99),
        alert_latency_max_ms: pct(&mut e2e, 1.0),
        alert_commit_p50_ms: pct(&mut commit, 0.50),
        alert_commit_p99_ms: pct(&mut commit, 0.99),
        alert_commit_max_ms: pct(&mut commit, 1.0),
        alert_blocks_after_tip_max: hist.keys().copied().max().unwrap_or(0),
        alert_blocks_after_tip_hist: hist.into_iter().collect(),
        doctor_stream: c.stream_lags.first().copied().unwrap_or_default(),
        hospital_stream: c.stream_lags.get(1).copied().unwrap_or_default(),
        batch_latency_p50_ms: pct(&mut c.all.batch_ms, 0.50),
        batch_latency_p99_ms: pct(&mut c.all.batch_ms, 0.99),
        blocks,
        block_interval_ms: if blocks > 0 { duration * 1000.0 / blocks as f64 } else { 0.0 },
        txs_per_block: if blocks > 0 { txs / blocks as f64 } else { 0.0 },
        stalls: c.all.stalls,
    }
}

fn print(args: &Args, report: &BenchReport) -> Result<()> {
    if args.json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    println!(
        "{} devices at {} readings/s each for {} s: {} readings generated, {} committed; {:.0} readings/s committed after a {} s warm-up (target {:.0})",
        report.devices,
        report.rate_per_device,
        report.duration_s,
        report.generated,
        report.committed_in_run,
        report.committed_readings_per_s,
        report.warmup_s,
        report.target_readings_per_s
    );
    println!(
        "batches {} (seal, outbox, upload, commit: p50 {:.1} ms, p99 {:.1} ms); {} blocks, one every {:.1} ms, {:.2} transactions per block",
        report.batches,
        report.batch_latency_p50_ms,
        report.batch_latency_p99_ms,
        report.blocks,
        report.block_interval_ms,
        report.txs_per_block
    );
    println!(
        "alerts {}: reading to committed receipt p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; submission to committed receipt p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        report.alerts,
        report.alert_latency_p50_ms,
        report.alert_latency_p99_ms,
        report.alert_latency_max_ms,
        report.alert_commit_p50_ms,
        report.alert_commit_p99_ms,
        report.alert_commit_max_ms
    );
    println!(
        "alert block minus the tip known at its submission (blocks: alerts): {:?}",
        report.alert_blocks_after_tip_hist
    );
    for (who, (n, p50, p99, max)) in
        [("doctor", report.doctor_stream), ("hospital", report.hospital_stream)]
    {
        println!(
            "{who}'s event stream: {n} of {} alerts, reading to event p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
            report.alerts
        );
    }
    if report.stalls > 0 {
        println!(
            "{} deliveries stalled (node busy or unreachable) and were retried",
            report.stalls
        );
    }
    Ok(())
}
