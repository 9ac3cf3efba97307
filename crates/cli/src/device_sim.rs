//! `medledger device simulate`: a device streaming realistic readings, and the ingestion load
//! generator.
//!
//! **One device** (the wallet is the device's own): readings of each metric the device's kind
//! measures, in turn, at `--rate` per second, follow mean-reverting random walks around
//! healthy adult values (heart rate about 72 bpm, SpO2 97.5 %, 118/76 mmHg, glucose 5.6 mmol/L,
//! 36.8 °C); anomalies (tachycardia, desaturation, hypertensive crisis, hypo- or
//! hyperglycaemia, fever) are injected at random (`--anomaly-rate`) or at given readings
//! (`--anomaly-at`). The device's gateway ([`medledger_client::gateway`]) classifies each
//! reading, sends an alert at once for an abnormal one and a batch digest every `--batch-ms`;
//! everything it signs goes through its outbox in `--state-dir`, so a restart after a crash
//! delivers what was left first. It prints each reading, alert and batch as it goes.
//!
//! **Benchmark** (`--bench-devices N`, the wallet is the regulator's): sets up a hospital, a
//! doctor, N patients each with a vital-signs monitor, a grant, thresholds and an open session
//! (in memory; outboxes in a temporary directory), then runs N gateways at `--rate` readings
//! per second each for `--duration` seconds, with the doctor and the hospital following their
//! event streams. It reports the readings committed per second after a warm-up; for batches
//! their latency; for alerts the time from the reading to the committed receipt and from the
//! submission to it, the block each landed in against the tip known at its submission (the
//! node's `/health`, sampled every 20 ms, and every receipt), the time from the reading to the
//! event on the doctor's and the hospital's streams; and the blocks and transactions per block
//! (from the node's metrics: far below a block's limit means no transaction waited for more
//! than the next block proposed).
//!
//! Fault injection for crash tests: with `MEDLEDGER_DEVICE_FAULT=stall-before-submit` (or
//! `stall-after-commit`) the first alert stops the gateway once it is durable in the outbox
//! and not yet sent (or once the ledger committed it and the outbox still holds it); a line
//! `fault: stalled ...` is printed so that a test can SIGKILL the process at exactly that
//! point. Without the variable nothing changes.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use medledger_api::BatchItem;
use medledger_client::{
    Identity, NodeClient, Signer,
    devices::{self, Reading, ThresholdSet},
    gateway::{Delivery, EntryKind, FaultHook, FaultPoint, Gateway, Progress},
    records, seal,
};
use medledger_core::{
    Hash,
    audit::AuditKind,
    block::{Created, Outcome, Receipt},
    encoding,
    ids::{AccountId, PatientId},
    keys::{DecryptionKey, SigningKey},
    tx::{
        AdmitHospital, ConsentTx, DeviceTx, OnboardDoctor, RegisterPatient, RegistryTx, SealedRef,
        SignedTransaction, Transaction, TxBody,
        consent::{Purpose, RecordCategory, Scope, Validity},
        devices::{DeviceKind, Metric, RegisterDevice, SetThresholds, Severity, StartSession},
        records::KeyRef,
    },
};
use serde::Serialize;

use crate::common::{Session, WalletArgs};

/// Options of `medledger device simulate`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The device's wallet (or, with --bench-devices, the regulator's) and the node.
    #[command(flatten)]
    wallet: WalletArgs,
    /// The session to send to (default: the device's open session).
    #[arg(long)]
    session: Option<Hash>,
    /// Readings per second (per device).
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Stop after this many readings (per device).
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Probability that a reading is an injected anomaly.
    #[arg(long, default_value_t = 0.01)]
    anomaly_rate: f64,
    /// Make these readings of this run (1 = the first) anomalies, comma-separated.
    #[arg(long, value_delimiter = ',')]
    anomaly_at: Vec<u64>,
    /// Send a batch of normal readings at least this often, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    batch_ms: u64,
    /// Where the gateway keeps its outbox (default: beside the wallet, `<wallet>.device-state`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Seed of the random walks (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Do not print normal readings (alerts, batches and problems only).
    #[arg(long)]
    quiet: bool,
    /// Benchmark: set up this many simulated devices (the wallet must be the regulator's) and
    /// measure ingestion.
    #[arg(long)]
    bench_devices: Option<usize>,
}

/// xorshift64*: a fast, non-cryptographic generator for the simulated vital signs.
struct Rng(u64);

impl Rng {
    fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            let mut b = [0u8; 8];
            // A fixed seed if the OS cannot give one: this drives a simulation, not a key.
            let _ = getrandom::fill(&mut b);
            u64::from_le_bytes(b)
        });
        Rng(seed | 1)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    fn gauss(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Mean-reverting random walks of every vital sign.
struct Vitals {
    rng: Rng,
    state: [f64; 6],
}

/// (mean, step deviation, reversion per step, lowest, highest, decimals)
fn walk_params(m: Metric) -> (f64, f64, f64, f64, f64) {
    match m {
        Metric::HeartRate => (72.0, 1.2, 0.05, 30.0, 220.0),
        Metric::Spo2 => (97.5, 0.3, 0.1, 70.0, 100.0),
        Metric::SystolicPressure => (118.0, 1.5, 0.05, 60.0, 250.0),
        Metric::DiastolicPressure => (76.0, 1.0, 0.05, 30.0, 150.0),
        Metric::Glucose => (5.6, 0.08, 0.05, 1.5, 30.0),
        Metric::Temperature => (36.8, 0.03, 0.05, 33.0, 42.0),
    }
}

fn index(m: Metric) -> usize {
    Metric::ALL.iter().position(|x| *x == m).unwrap_or(0)
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

impl Vitals {
    fn new(seed: Option<u64>) -> Self {
        Vitals { rng: Rng::new(seed), state: Metric::ALL.map(|m| walk_params(m).0) }
    }

    /// The next normal value of `m`.
    fn normal(&mut self, m: Metric) -> f64 {
        let (mu, sigma, theta, lo, hi) = walk_params(m);
        let x = &mut self.state[index(m)];
        *x += theta * (mu - *x) + sigma * self.rng.gauss();
        *x = x.clamp(lo, hi);
        let v = *x;
        if m == Metric::Glucose { (v * 100.0).round() / 100.0 } else { round1(v) }
    }

    /// An abnormal value of `m`: a clinically alarming excursion.
    fn anomaly(&mut self, m: Metric) -> f64 {
        let low = self.rng.uniform() < 0.3;
        let g = self.rng.gauss();
        round1(match m {
            Metric::HeartRate if low => 34.0 + 2.0 * g.abs(),
            Metric::HeartRate => 155.0 + 8.0 * g,
            Metric::Spo2 => 84.0 + 1.5 * g,
            Metric::SystolicPressure => 195.0 + 8.0 * g,
            Metric::DiastolicPressure => 118.0 + 4.0 * g,
            Metric::Glucose if low => 2.6 + 0.2 * g,
            Metric::Glucose => 16.5 + 1.5 * g,
            Metric::Temperature => 39.8 + 0.3 * g,
        })
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The crash-test hook from `MEDLEDGER_DEVICE_FAULT`, printing where it stalls.
fn fault_hook(json: bool) -> Result<Option<FaultHook>> {
    let Ok(v) = std::env::var("MEDLEDGER_DEVICE_FAULT") else { return Ok(None) };
    let before = match v.as_str() {
        "stall-before-submit" => true,
        "stall-after-commit" => false,
        other => bail!(
            "MEDLEDGER_DEVICE_FAULT={other:?}: expected stall-before-submit or stall-after-commit"
        ),
    };
    Ok(Some(Arc::new(move |p: FaultPoint| {
        let (hit, what, seq) = match p {
            FaultPoint::AlertQueued { seq } => (before, "alert_queued", seq),
            FaultPoint::AlertCommitted { seq } => (!before, "alert_committed", seq),
        };
        if hit {
            if json {
                println!("{}", serde_json::json!({ "type": "fault", "point": what, "seq": seq }));
            } else {
                println!("fault: stalled at {what} for reading #{seq} (kill me now)");
            }
        }
        hit
    })))
}

/// What the simulator prints.
struct Printer {
    json: bool,
    quiet: bool,
}

impl Printer {
    fn reading(&self, r: &Reading, severity: Option<Severity>, queued: bool) {
        if self.json {
            if severity.is_some() || !self.quiet {
                println!(
                    "{}",
                    serde_json::json!({
                        "type": "reading", "seq": r.seq, "time_ms": r.time_ms,
                        "metric": r.metric, "value": r.value, "severity": severity,
                    })
                );
            }
            return;
        }
        match severity {
            Some(s) => println!(
                "#{:<7} {:<20} {:>7.1} {:<6} ABNORMAL ({s:?}): alert {}",
                r.seq,
                r.metric.name(),
                r.value,
                r.metric.unit(),
                if queued { "queued (node unreachable)" } else { "sent" }
            ),
            None if !self.quiet => println!(
                "#{:<7} {:<20} {:>7.1} {}",
                r.seq,
                r.metric.name(),
                r.value,
                r.metric.unit()
            ),
            None => {}
        }
    }

    fn delivered(&self, d: &Delivery) {
        let r = &d.receipt;
        if self.json {
            let mut v = match &d.kind {
                EntryKind::Batch { first_seq, last_seq, count } => serde_json::json!({
                    "type": "batch", "first_seq": first_seq, "last_seq": last_seq, "count": count,
                }),
                EntryKind::Alert { seq, metric, severity } => serde_json::json!({
                    "type": "alert", "seq": seq, "metric": metric, "severity": severity,
                }),
            };
            v["height"] = r.height.into();
            v["tx"] = r.tx_hash.to_hex().into();
            v["already"] = d.already.into();
            println!("{v}");
            return;
        }
        let already =
            if d.already { " (already on the ledger: sent before a restart)" } else { "" };
        match &d.kind {
            EntryKind::Batch { first_seq, last_seq, count } => println!(
                "batch    #{first_seq}..#{last_seq} ({count} readings) committed in block {} (tx {}){already}",
                r.height, r.tx_hash
            ),
            EntryKind::Alert { seq, metric, severity } => println!(
                "ALERT    #{seq} {} {severity:?} committed in block {} (tx {}){already}",
                metric.name(),
                r.height,
                r.tx_hash
            ),
        }
    }

    fn progress(&self, p: &Progress, queued: usize) {
        for d in &p.delivered {
            self.delivered(d);
        }
        if let Some(e) = &p.stalled {
            if self.json {
                println!(
                    "{}",
                    serde_json::json!({ "type": "stalled", "queued": queued, "error": e.to_string() })
                );
            } else {
                println!("stalled: {e}; {queued} transactions wait in the outbox");
            }
        }
    }
}

pub async fn run(args: Args) -> Result<()> {
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number");
    }
    if !(0.0..=1.0).contains(&args.anomaly_rate) {
        bail!("--anomaly-rate is a probability, 0 to 1");
    }
    if let Some(n) = args.bench_devices {
        return bench(args, n).await;
    }
    let s = Session::open(&args.wallet).await?;
    let state_dir = args.state_dir.clone().unwrap_or_else(|| s.path.with_extension("device-state"));
    let printer = Printer { json: args.json, quiet: args.quiet };
    let (mut g, recovered) = Gateway::open(
        s.client.clone(),
        s.identity.clone(),
        s.wallet.account(),
        &s.anchor,
        args.session,
        &state_dir,
    )
    .await?;
    if let Some(hook) = fault_hook(args.json)? {
        g.set_fault_hook(hook);
    }
    if !args.json {
        println!(
            "device {} ({:?}) session {}; thresholds {}; next reading #{}",
            s.wallet.account(),
            g.kind(),
            g.session(),
            g.thresholds().map_or("built-in defaults".to_owned(), |t| t.to_string()),
            g.next_seq()
        );
    }
    printer.progress(&recovered, g.queued());
    let metrics = g.kind().metrics();
    let mut vitals = Vitals::new(args.seed);
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + Duration::from_secs_f64(d));
    let mut last_flush = Instant::now();
    let mut last_refresh = Instant::now();
    let mut n: u64 = 0;
    loop {
        if args.count.is_some_and(|c| n >= c) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let due = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        n += 1;
        let metric = metrics[(n as usize - 1) % metrics.len()];
        let abnormal = args.anomaly_at.contains(&n) || vitals.rng.uniform() < args.anomaly_rate;
        let value = if abnormal { vitals.anomaly(metric) } else { vitals.normal(metric) };
        let reading = g.reading(metric, value, now_ms());
        let (severity, progress) = g.record(reading).await?;
        printer.reading(&reading, severity, progress.stalled.is_some());
        printer.progress(&progress, g.queued());
        if last_flush.elapsed() >= Duration::from_millis(args.batch_ms) {
            last_flush = Instant::now();
            let p = g.flush().await?;
            printer.progress(&p, g.queued());
        }
        if last_refresh.elapsed() >= Duration::from_secs(10) {
            last_refresh = Instant::now();
            if g.refresh_thresholds().await.unwrap_or(false) && !args.json {
                println!(
                    "thresholds changed: now {}",
                    g.thresholds().map_or("defaults".into(), |t| t.to_string())
                );
            }
        }
    }
    // Send the last batch, and wait (a while) for a node that is away.
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let p = g.flush().await?;
        let stalled = p.stalled.is_some();
        printer.progress(&p, g.queued());
        if g.queued() == 0 {
            break;
        }
        if Instant::now() >= give_up {
            bail!(
                "{} transactions are still in the outbox {} (the node is unreachable); run again to deliver them",
                g.queued(),
                state_dir.display()
            );
        }
        if stalled {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    if !args.json {
        println!("sent {n} readings; everything signed is on the ledger");
    }
    Ok(())
}

/// An identity that exists only for the benchmark.
struct Actor {
    key: SigningKey,
    enc: DecryptionKey,
    account: AccountId,
    nonce: u64,
}

impl Actor {
    fn new() -> Self {
        let key = SigningKey::generate();
        let account = AccountId::from_initial_key(&key.public_key());
        Actor { key, enc: DecryptionKey::generate(), account, nonce: 0 }
    }

    fn tx(&mut self, chain: &str, body: TxBody) -> SignedTransaction {
        self.nonce += 1;
        Transaction { chain_id: chain.to_owned(), signer: self.account, nonce: self.nonce, body }
            .sign(&self.key)
    }

    fn client(&self, base: &str) -> Result<NodeClient> {
        Ok(NodeClient::new(base)?.signed_by(Signer::new(self.key.clone(), self.account)))
    }
}

/// Submits `txs` in batches and fails unless every one is applied; returns the receipts.
async fn all_applied(client: &NodeClient, txs: &[SignedTransaction]) -> Result<Vec<Receipt>> {
    let mut out = Vec::with_capacity(txs.len());
    for chunk in txs.chunks(256) {
        for item in client.submit_batch(chunk).await? {
            match item {
                BatchItem::Receipt(r) if matches!(r.outcome, Outcome::Applied { .. }) => {
                    out.push(r)
                }
                other => bail!("set-up failed: {other:?}"),
            }
        }
    }
    Ok(out)
}

fn sealed_ref(client_blob: Hash, commitment: Hash) -> SealedRef {
    SealedRef { blob: client_blob, commitment }
}

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

async fn bench(args: Args, n: usize) -> Result<()> {
    if n == 0 {
        bail!("--bench-devices must be at least 1");
    }
    let duration = args.duration.unwrap_or(30.0);
    let session = Session::open(&args.wallet).await?;
    let chain = session.chain_id.clone();
    let base = session.client.base_url().to_owned();
    let say = |s: &str| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    say(&format!("setting up a hospital, a doctor and {n} patients with a device each..."));
    let mut hospital = Actor::new();
    session
        .submit(TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
            key: hospital.key.public_key(),
            encryption_key: hospital.enc.public_key(),
            registration_id: format!("BENCH-DEV-{}", hospital.account),
            name: "Bench Devices Hospital".into(),
            city: "Loopback".into(),
            specialisation: "telemetry".into(),
            contact: sealed_ref(Hash::of(hospital.account.0.as_slice()), Hash::of(b"c")),
        })))
        .await?;
    let hospital_client = hospital.client(&base)?;
    let mut doctor = Actor::new();
    let mut patients: Vec<Actor> = (0..n).map(|_| Actor::new()).collect();
    let devices: Vec<Actor> = (0..n).map(|_| Actor::new()).collect();
    let mut setup = vec![hospital.tx(
        &chain,
        TxBody::Registry(RegistryTx::OnboardDoctor(OnboardDoctor {
            key: doctor.key.public_key(),
            encryption_key: doctor.enc.public_key(),
            registration_number: format!("BENCH-DOC-{}", doctor.account),
            name: "Dr. Telemetry".into(),
            specialisation: "cardiology".into(),
        })),
    )];
    for p in &patients {
        let sealed = seal::seal(b"{}", &[p.enc.public_key()])?;
        let blob = hospital_client.put_blob(sealed).await?.hash;
        setup.push(hospital.tx(
            &chain,
            TxBody::Registry(RegistryTx::RegisterPatient(RegisterPatient {
                key: p.key.public_key(),
                encryption_key: p.enc.public_key(),
                details: sealed_ref(blob, Hash::of(b"d")),
                attendant: sealed_ref(blob, Hash::of(b"a")),
            })),
        ));
    }
    let receipts = all_applied(&hospital_client, &setup).await?;
    let patient_ids: Vec<PatientId> = receipts[1..]
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Applied { created: Some(Created::Patient { patient_id, .. }) } => {
                Ok(*patient_id)
            }
            other => bail!("no Patient-ID: {other:?}"),
        })
        .collect::<Result<_>>()?;
    // Each patient grants the doctor device data and registers a monitor.
    let now = now_ms();
    let mut txs = Vec::new();
    for (p, d) in patients.iter_mut().zip(&devices) {
        let client = p.client(&base)?;
        let sealed = seal::seal(br#"{"serial":"BENCH"}"#, &[p.enc.public_key()])?;
        let blob = client.put_blob(sealed).await?.hash;
        txs.push(p.tx(
            &chain,
            TxBody::Consent(ConsentTx::Grant {
                patient: p.account,
                grantee: doctor.account,
                scope: Scope::Categories(vec![RecordCategory::DeviceData]),
                purpose: Purpose::Treatment,
                validity: Validity { not_before_ms: 0, expires_at_ms: now + 86_400_000 },
            }),
        ));
        txs.push(p.tx(
            &chain,
            TxBody::Devices(DeviceTx::Register(RegisterDevice {
                key: d.key.public_key(),
                encryption_key: d.enc.public_key(),
                patient: p.account,
                kind: DeviceKind::VitalSignsMonitor,
                details: sealed_ref(blob, Hash::of(b"serial")),
            })),
        ));
    }
    all_applied(&hospital_client, &txs).await?;
    // The doctor's thresholds for every device; the patients' sessions, naming the doctor.
    let set = ThresholdSet::defaults();
    let doctor_client = doctor.client(&base)?;
    let mut txs = Vec::new();
    for (p, d) in patients.iter().zip(&devices) {
        let (sealed, commitment) = devices::seal_thresholds(
            &set,
            &[d.enc.public_key(), p.enc.public_key(), doctor.enc.public_key()],
        )?;
        let blob = doctor_client.put_blob(sealed).await?.hash;
        txs.push(doctor.tx(
            &chain,
            TxBody::Devices(DeviceTx::SetThresholds(SetThresholds {
                device: d.account,
                metrics: set.metrics(),
                sealed: SealedRef { blob, commitment },
            })),
        ));
    }
    for ((p, d), pid) in patients.iter_mut().zip(&devices).zip(&patient_ids) {
        let client = p.client(&base)?;
        let secret = devices::new_session_key(*pid)?;
        let mut keys = Vec::new();
        for (recipient, enc) in
            [(p.account, p.enc.public_key()), (doctor.account, doctor.enc.public_key())]
        {
            let wrapped = devices::wrap_session_key(&secret, &enc, &d.account)?;
            let blob = records::upload_small(&client, encoding::encode(&wrapped)).await?;
            keys.push(KeyRef { recipient, blob });
        }
        txs.push(p.tx(
            &chain,
            TxBody::Devices(DeviceTx::StartSession(StartSession {
                device: d.account,
                public_key: secret.public_key(),
                expires_at_ms: None,
                doctor: Some(doctor.account),
                keys,
            })),
        ));
    }
    all_applied(&hospital_client, &txs).await?;

    let state = tempfile_dir()?;
    let mut gateways = Vec::with_capacity(n);
    for (i, d) in devices.iter().enumerate() {
        let identity = Identity {
            name: format!("bench device {i}"),
            signing: d.key.clone(),
            decryption: DecryptionKey::from_bytes(*d.enc.expose_secret()),
        };
        let (g, _) = Gateway::open(
            d.client(&base)?,
            identity,
            d.account,
            &session.anchor,
            None,
            &state.join(i.to_string()),
        )
        .await?;
        gateways.push(g);
    }
    say(&format!(
        "{n} devices at {} readings/s each ({} readings/s in all) for {duration} s, anomaly rate {}...",
        args.rate,
        args.rate * n as f64,
        args.anomaly_rate
    ));
    let applied_at_start = node_counter(&base, "medledger_tx_applied_total").await;
    let height_at_start = session.client.health().await?.height;
    let started = Instant::now() + Duration::from_millis(200);
    let end = started + Duration::from_secs_f64(duration);
    // The tip as the node reports it, sampled every 20 ms, to place each alert's submission.
    let tips = Arc::new(std::sync::Mutex::new(Vec::<(Instant, u64)>::new()));
    let poller = {
        let (client, tips) = (NodeClient::new(&base)?, tips.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(h) = client.health().await
                    && let Ok(mut t) = tips.lock()
                {
                    t.push((Instant::now(), h.height));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // The doctor and the hospital follow their event streams: when does each alert reach them?
    let mut watchers = Vec::new();
    for who in [&doctor, &hospital] {
        let identity = Identity {
            name: "bench watcher".into(),
            signing: who.key.clone(),
            decryption: DecryptionKey::from_bytes(*who.enc.expose_secret()),
        };
        let client = NodeClient::new(&base)?.signed_by(Signer::new(identity.signing, who.account));
        let account = who.account;
        let heard = Arc::new(std::sync::Mutex::new(Vec::<(AccountId, u64, Instant)>::new()));
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
        watchers.push((task, heard));
    }
    let mut tasks = Vec::new();
    for (i, mut g) in gateways.into_iter().enumerate() {
        let (rate, anomaly_rate, batch_ms) = (args.rate, args.anomaly_rate, args.batch_ms);
        let seed = args.seed.map(|s| s.wrapping_add(i as u64));
        tasks.push(tokio::spawn(async move {
            let mut stats = DeviceStats::default();
            let mut vitals = Vitals::new(seed);
            let metrics = g.kind().metrics();
            // Stagger the devices' batches over the batch interval.
            let mut last_flush = started + Duration::from_millis(batch_ms * i as u64 / n as u64);
            let mut due_at: VecDeque<(u64, Instant)> = VecDeque::new();
            let note =
                |p: Progress, stats: &mut DeviceStats, due_at: &mut VecDeque<(u64, Instant)>| {
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
                };
            tokio::time::sleep_until(started.into()).await;
            let per = Duration::from_secs_f64(1.0 / rate);
            let mut k: u64 = 0;
            while Instant::now() < end {
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                while k < due {
                    let scheduled = started + per.mul_f64(k as f64);
                    k += 1;
                    let metric = metrics[(k as usize - 1) % metrics.len()];
                    let abnormal = vitals.rng.uniform() < anomaly_rate;
                    let value =
                        if abnormal { vitals.anomaly(metric) } else { vitals.normal(metric) };
                    let r = g.reading(metric, value, now_ms());
                    stats.generated += 1;
                    if g.classify(metric, value).is_some() {
                        due_at.push_back((r.seq, scheduled));
                        stats.abnormal.push((g.device(), r.seq, scheduled));
                    }
                    let (_, p) = g.record(r).await?;
                    note(p, &mut stats, &mut due_at);
                }
                if last_flush.elapsed() >= Duration::from_millis(batch_ms) {
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
            anyhow::Ok(stats)
        }));
    }
    let mut all = DeviceStats::default();
    for t in tasks {
        let s = t.await.context("a device task failed")??;
        all.generated += s.generated;
        all.abnormal.extend(s.abnormal);
        all.seen.extend(s.seen);
        all.batch_ms.extend(s.batch_ms);
        all.stalls += s.stalls;
    }
    poller.abort();
    // Give the streams a moment for the last alerts, then compare.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let due: std::collections::HashMap<(AccountId, u64), Instant> =
        all.abnormal.iter().map(|(d, s, t)| ((*d, *s), *t)).collect();
    let mut stream_lags = Vec::new();
    for (task, heard) in watchers {
        task.abort();
        let heard = heard.lock().map(|h| h.clone()).unwrap_or_default();
        let mut lags: Vec<f64> = heard
            .iter()
            .filter_map(|(d, s, at)| {
                due.get(&(*d, *s)).map(|t| at.duration_since(*t).as_secs_f64() * 1000.0)
            })
            .collect();
        let received = lags.len() as u64;
        stream_lags.push((
            received,
            pct(&mut lags, 0.5),
            pct(&mut lags, 0.99),
            pct(&mut lags, 1.0),
        ));
    }
    let height_at_end = session.client.health().await?.height;
    let applied_at_end = node_counter(&base, "medledger_tx_applied_total").await;
    let _ = std::fs::remove_dir_all(&state);

    // Readings committed per second after a warm-up, up to the end of the run.
    let warmup = (duration / 4.0).min(2.0);
    let (from, to) = (started + Duration::from_secs_f64(warmup), end);
    let steady: u64 =
        all.seen.iter().filter(|s| s.arrived > from && s.arrived <= to).map(|s| s.readings).sum();
    // The tip known at each alert's submission: the newest height reported by any receipt
    // or health sample before it.
    let mut timeline: Vec<(Instant, u64)> =
        all.seen.iter().map(|s| (s.arrived, s.height)).collect();
    timeline.extend(tips.lock().map(|t| t.clone()).unwrap_or_default());
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
        if i == 0 { height_at_start } else { timeline[i - 1].1 }
    };
    let alerts: Vec<&Seen> = all.seen.iter().filter(|s| s.alert).collect();
    let mut e2e: Vec<f64> = alerts
        .iter()
        .filter_map(|s| s.alert_of.map(|due| s.arrived.duration_since(due).as_secs_f64() * 1000.0))
        .collect();
    let mut commit: Vec<f64> = alerts
        .iter()
        .map(|s| s.arrived.duration_since(s.submitted).as_secs_f64() * 1000.0)
        .collect();
    let mut hist = std::collections::BTreeMap::new();
    for s in &alerts {
        *hist.entry(s.height.saturating_sub(tip_before(s.submitted))).or_insert(0u64) += 1;
    }
    let blocks = height_at_end.saturating_sub(height_at_start);
    let txs = applied_at_end.zip(applied_at_start).map_or(0.0, |(e, s)| e - s);
    let report = BenchReport {
        devices: n,
        rate_per_device: args.rate,
        target_readings_per_s: args.rate * n as f64,
        duration_s: duration,
        warmup_s: warmup,
        generated: all.generated,
        committed_in_run: all.seen.iter().map(|s| s.readings).sum(),
        committed_readings_per_s: steady as f64 / (duration - warmup),
        batches: all.seen.iter().filter(|s| !s.alert).count() as u64,
        alerts: alerts.len() as u64,
        alert_latency_p50_ms: pct(&mut e2e, 0.50),
        alert_latency_p99_ms: pct(&mut e2e, 0.99),
        alert_latency_max_ms: pct(&mut e2e, 1.0),
        alert_commit_p50_ms: pct(&mut commit, 0.50),
        alert_commit_p99_ms: pct(&mut commit, 0.99),
        alert_commit_max_ms: pct(&mut commit, 1.0),
        alert_blocks_after_tip_max: hist.keys().copied().max().unwrap_or(0),
        alert_blocks_after_tip_hist: hist.into_iter().collect(),
        doctor_stream: stream_lags.first().copied().unwrap_or_default(),
        hospital_stream: stream_lags.get(1).copied().unwrap_or_default(),
        batch_latency_p50_ms: pct(&mut all.batch_ms, 0.50),
        batch_latency_p99_ms: pct(&mut all.batch_ms, 0.99),
        blocks,
        block_interval_ms: if blocks > 0 { duration * 1000.0 / blocks as f64 } else { 0.0 },
        txs_per_block: if blocks > 0 { txs / blocks as f64 } else { 0.0 },
        stalls: all.stalls,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
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

/// A counter from the node's metrics, if it can be read.
async fn node_counter(base: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics")).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// A fresh directory under the system's temporary directory for the outboxes.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("medledger-device-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
