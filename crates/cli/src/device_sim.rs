//! `medledger device simulate`: a device streaming realistic readings.
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
//! The ingestion benchmark (`medledger bench devices`, [`crate::bench`]) runs many of these
//! devices, with the same random walks ([`Vitals`]).
//!
//! Fault injection for crash tests: with `MEDLEDGER_DEVICE_FAULT=stall-before-submit` (or
//! `stall-after-commit`) the first alert stops the gateway once it is durable in the outbox
//! and not yet sent (or once the ledger committed it and the outbox still holds it); a line
//! `fault: stalled ...` is printed so that a test can SIGKILL the process at exactly that
//! point. Without the variable nothing changes.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use medledger_client::{
    devices::Reading,
    gateway::{Delivery, EntryKind, FaultHook, FaultPoint, Gateway, Progress},
};
use medledger_core::{
    Hash,
    tx::devices::{Metric, Severity},
};

use crate::common::{Session, WalletArgs, now_ms};

/// Options of `medledger device simulate`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The device's wallet and the node.
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
}

/// xorshift64*: a fast, non-cryptographic generator for the simulated vital signs.
pub(crate) struct Rng(u64);

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
    pub(crate) fn uniform(&mut self) -> f64 {
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
pub(crate) struct Vitals {
    pub(crate) rng: Rng,
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
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Vitals { rng: Rng::new(seed), state: Metric::ALL.map(|m| walk_params(m).0) }
    }

    /// The next normal value of `m`.
    pub(crate) fn normal(&mut self, m: Metric) -> f64 {
        let (mu, sigma, theta, lo, hi) = walk_params(m);
        let x = &mut self.state[index(m)];
        *x += theta * (mu - *x) + sigma * self.rng.gauss();
        *x = x.clamp(lo, hi);
        let v = *x;
        if m == Metric::Glucose { (v * 100.0).round() / 100.0 } else { round1(v) }
    }

    /// An abnormal value of `m`: a clinically alarming excursion.
    pub(crate) fn anomaly(&mut self, m: Metric) -> f64 {
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
