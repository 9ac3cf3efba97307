//! `medledger device`: medical devices and their readings.
//!
//! `register` (the patient, or a hospital) creates the device's account from the identity card
//! of the device's own wallet, with its serial number sealed to the patient and the registering
//! party. `session start` (the patient) derives the session's temporary X25519 key pair in this
//! wallet, wraps the secret half to the patient (and the responsible doctor, if named) into the
//! vault, and registers the public half on the ledger; the device fetches it from there.
//! `thresholds set` (a doctor the patient consented to) seals the bands to the device, the
//! patient and the doctor. `readings` makes the audited read of a session and decrypts it here.
//! `simulate` (in `device_sim.rs`) is the device side.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use medledger_api::{DeviceView, SessionView};
use medledger_client::{
    devices::{self, Reading, Threshold, ThresholdSet},
    keystore::parse_public_identity,
    records,
    seal::{self, WrappedKey},
};
use medledger_core::{
    Hash,
    block::{Created, Outcome, Receipt},
    encoding,
    ids::AccountId,
    tx::{
        DeviceTx, SealedRef, TxBody,
        consent::{AccessTx, Action, Purpose, RecordCategory, Resource},
        devices::{DeviceKind, Metric, RegisterDevice, SetThresholds, Severity, StartSession},
        records::KeyRef,
    },
};
use serde::Serialize;

use crate::{
    common::{Session, WalletArgs, now_ms, print_json},
    record::{parse_purpose, resolve_patient},
    registry::{SealedDetails, print_receipt, seal_details},
};

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a device for a patient (the patient, a delegate, or a hospital where the
    /// patient is registered or which holds a treatment grant covering device data).
    Register {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The device wallet's identity card (`medledger wallet show --identity-only`).
        #[arg(long)]
        identity: String,
        /// What kind of device.
        #[arg(long, value_parser = parse_kind)]
        kind: DeviceKind,
        /// Its serial number (sealed off the ledger).
        #[arg(long)]
        serial: String,
        /// Its model (sealed off the ledger).
        #[arg(long, default_value = "")]
        model: String,
        /// The patient it serves: a Patient-ID or an account id (default: the wallet's own
        /// account, for a patient registering their device).
        #[arg(long)]
        patient: Option<String>,
        /// Print JSON: `device` (its account), `patient`, `tx_hash`, `height`, `log_index`.
        #[arg(long)]
        json: bool,
    },
    /// List a patient's devices (those you may see), with their thresholds and sessions.
    List {
        #[command(flatten)]
        wallet: WalletArgs,
        /// A Patient-ID or account id (default: your own account).
        #[arg(long)]
        patient: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Retire a device (the patient, a delegate, or the registering hospital).
    Retire {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The device's account id.
        device: AccountId,
    },
    /// Measurement sessions: start (the patient), end.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Thresholds (a doctor with the patient's consent for device data).
    #[command(subcommand)]
    Thresholds(ThresholdsCommand),
    /// Read a session's readings and alerts: an audited access, then decrypted here.
    Readings {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The session id.
        #[arg(long)]
        session: Hash,
        /// Why you read them (recorded in the patient's audit trail).
        #[arg(long, default_value = "treatment", value_parser = parse_purpose)]
        purpose: Purpose,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Act as a device: stream realistic readings with injected anomalies to the ledger (the
    /// ingestion benchmark is `medledger bench devices`).
    Simulate(crate::device_sim::Args),
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Start a session on a device: derives a temporary key pair here, registers its public
    /// half, keeps the secret half wrapped to you (and the doctor, with --doctor).
    Start {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The device's account id.
        #[arg(long)]
        device: AccountId,
        /// The responsible doctor: told of alerts, and given the session key.
        #[arg(long)]
        doctor: Option<AccountId>,
        /// End the session by itself after this many hours.
        #[arg(long)]
        hours: Option<u64>,
        /// Print JSON: `session`, `public_key`, `tx_hash`, `height`, `log_index`.
        #[arg(long)]
        json: bool,
    },
    /// End a session (the patient, a delegate, or the device).
    End {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The session id.
        session: Hash,
    },
    /// List a device's sessions.
    List {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The device's account id.
        #[arg(long)]
        device: AccountId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Bands per metric: `LOW..HIGH` (normal), optionally `,CRIT_LOW..CRIT_HIGH` (critical).
#[derive(Debug, Args)]
pub struct Bands {
    /// Heart rate, bpm (e.g. 50..110,40..140).
    #[arg(long)]
    pub(crate) heart_rate: Option<String>,
    /// SpO2, % (e.g. 92..100,88..100).
    #[arg(long)]
    pub(crate) spo2: Option<String>,
    /// Systolic pressure, mmHg.
    #[arg(long)]
    pub(crate) systolic: Option<String>,
    /// Diastolic pressure, mmHg.
    #[arg(long)]
    pub(crate) diastolic: Option<String>,
    /// Glucose, mmol/L.
    #[arg(long)]
    pub(crate) glucose: Option<String>,
    /// Temperature, °C.
    #[arg(long)]
    pub(crate) temperature: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ThresholdsCommand {
    /// Set a device's thresholds: each metric's normal band and optional critical band.
    Set {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The device's account id.
        #[arg(long)]
        device: AccountId,
        #[command(flatten)]
        bands: Bands,
    },
    /// Show a device's thresholds (opened here if they are sealed to this wallet).
    Show {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The device's account id.
        #[arg(long)]
        device: AccountId,
    },
}

pub(crate) fn parse_kind(s: &str) -> Result<DeviceKind, String> {
    serde_json::from_value(serde_json::Value::String(s.replace('-', "_"))).map_err(|_| {
        "one of: pulse-oximeter, blood-pressure-monitor, glucose-meter, thermometer, vital-signs-monitor"
            .to_owned()
    })
}

fn parse_band(s: &str) -> Result<(f64, f64)> {
    let (lo, hi) = s.split_once("..").with_context(|| format!("{s:?} is not a band LOW..HIGH"))?;
    let parse = |v: &str| {
        v.trim().parse::<f64>().with_context(|| format!("{v:?} in {s:?} is not a number"))
    };
    Ok((parse(lo)?, parse(hi)?))
}

fn parse_threshold(metric: Metric, s: &str) -> Result<Threshold> {
    let (normal, critical) = match s.split_once(',') {
        Some((n, c)) => (n, Some(parse_band(c)?)),
        None => (s, None),
    };
    let (low, high) = parse_band(normal)?;
    Ok(Threshold { metric, low, high, critical })
}

impl Bands {
    pub(crate) fn to_set(&self) -> Result<ThresholdSet> {
        let mut thresholds = Vec::new();
        for (metric, band) in [
            (Metric::HeartRate, &self.heart_rate),
            (Metric::Spo2, &self.spo2),
            (Metric::SystolicPressure, &self.systolic),
            (Metric::DiastolicPressure, &self.diastolic),
            (Metric::Glucose, &self.glucose),
            (Metric::Temperature, &self.temperature),
        ] {
            if let Some(b) = band {
                thresholds.push(
                    parse_threshold(metric, b).with_context(|| format!("--{}", metric.name()))?,
                );
            }
        }
        if thresholds.is_empty() {
            bail!("give at least one metric's band, e.g. --heart-rate 50..110,40..140");
        }
        let set = ThresholdSet { thresholds };
        set.validate()?;
        Ok(set)
    }
}

fn created(r: &Receipt) -> Option<&Created> {
    match &r.outcome {
        Outcome::Applied { created } => created.as_ref(),
        Outcome::Refused { .. } => None,
    }
}

/// Registers a device for `patient` (a Patient-ID or an account id; the wallet's own account
/// when `None`) from the identity card of the device's wallet, its serial number and model
/// sealed to the patient and the registering party. The receipt, the device's account and the
/// patient's.
pub(crate) async fn register_device(
    s: &Session,
    identity: &str,
    kind: DeviceKind,
    serial: &str,
    model: &str,
    patient: Option<&str>,
) -> Result<(Receipt, AccountId, AccountId)> {
    let (key, encryption_key) = parse_public_identity(identity)?;
    let patient = match patient {
        Some(p) => resolve_patient(s, p).await?,
        None => s.wallet.account(),
    };
    let patient_key =
        s.encryption_key_of(&patient).await.with_context(|| format!("patient {patient}"))?;
    let mut recipients = vec![patient_key];
    if s.wallet.encryption_key() != patient_key {
        recipients.push(s.wallet.encryption_key());
    }
    let details = seal_details(
        &s.client,
        serde_json::json!({ "serial": serial, "model": model }),
        &recipients,
    )
    .await?;
    let receipt = s
        .submit(TxBody::Devices(DeviceTx::Register(RegisterDevice {
            key,
            encryption_key,
            patient,
            kind,
            details,
        })))
        .await?;
    let Some(Created::Account { account }) = created(&receipt) else {
        bail!("the ledger created no device: {:?}", receipt.outcome);
    };
    let account = *account;
    Ok((receipt, account, patient))
}

/// The patient of device `d` as the device's registration on the ledger names them, proven,
/// if the node's view `d` names the same one: the only patient the wallet seals anything of
/// the device to (a session's secret, thresholds).
async fn proven_patient_of(s: &Session, d: &DeviceView) -> Result<AccountId> {
    let device = d.account;
    match s.client.proven_registration(&device, &s.anchor).await? {
        Some(medledger_client::proof::Registered::DeviceOf(p)) if p == d.patient => Ok(p),
        Some(medledger_client::proof::Registered::DeviceOf(p)) => bail!(
            "the node says device {device} is patient {}'s, but its registration on the ledger \
             names patient {p}",
            d.patient
        ),
        other => {
            bail!("the ledger proves no device registration of {device} (it proves {other:?})")
        }
    }
}

/// Sets a device's thresholds (a doctor the patient consented to): the bands sealed to the
/// device, the patient its registration proves and this wallet. The receipt and the
/// thresholds' id.
pub(crate) async fn set_thresholds(
    s: &Session,
    device: AccountId,
    set: &ThresholdSet,
) -> Result<(Receipt, Hash)> {
    let d = s
        .client
        .device(&device)
        .await?
        .with_context(|| format!("no device {device} (or you may not see it: a grant from its patient covering device data is needed)"))?;
    if let Some(m) = set.metrics().iter().find(|m| !d.kind.measures(**m)) {
        bail!("a {:?} does not measure {}", d.kind, m.name());
    }
    let patient = proven_patient_of(s, &d).await.context("no thresholds were set")?;
    let mut recipients = Vec::new();
    for a in [device, patient] {
        recipients.push(s.encryption_key_of(&a).await?);
    }
    recipients.push(s.wallet.encryption_key());
    let (sealed, commitment) = devices::seal_thresholds(set, &recipients)?;
    let stored = s.client.put_blob(sealed).await?;
    let receipt = s
        .submit(TxBody::Devices(DeviceTx::SetThresholds(SetThresholds {
            device,
            metrics: set.metrics(),
            sealed: SealedRef { blob: stored.hash, commitment },
        })))
        .await?;
    let Some(Created::Thresholds { id }) = created(&receipt) else {
        bail!("the ledger set no thresholds: {:?}", receipt.outcome);
    };
    let id = *id;
    Ok((receipt, id))
}

/// Starts a session on `device` (the patient or a delegate): derives the session's temporary
/// key pair here, wraps the secret half to the patient (and `doctor`, if named) into the vault
/// and registers the public half, ending by itself after `hours` if given. The receipt, the
/// session's id and its public key.
pub(crate) async fn start_session(
    s: &Session,
    device: AccountId,
    doctor: Option<AccountId>,
    hours: Option<u64>,
) -> Result<(Receipt, Hash, medledger_core::keys::EncryptionKey)> {
    let d = s
        .client
        .device(&device)
        .await?
        .with_context(|| format!("no device {device} (or you may not see it)"))?;
    // The session secret is wrapped to the device's patient: never to whom a node's device
    // view names.
    proven_patient_of(s, &d).await.context("no session was started")?;
    let patient = s
        .client
        .account(&d.patient)
        .await?
        .with_context(|| format!("patient {} is not on the ledger", d.patient))?;
    let patient_id =
        patient.patient_id.with_context(|| format!("{} has no Patient-ID", d.patient))?;
    let expires_at_ms = match hours {
        Some(h) => Some(
            h.checked_mul(3_600_000)
                .and_then(|ms| ms.checked_add(now_ms()))
                .with_context(|| format!("{h} hours is too long a session"))?,
        ),
        None => None,
    };
    // The seeds' TempKeyPairGen: HKDF over 256 fresh random bits and the Patient-ID.
    let secret = devices::new_session_key(patient_id)?;
    let public_key = secret.public_key();
    let mut keys = Vec::new();
    let patient_key =
        s.encryption_key_of(&d.patient).await.with_context(|| format!("patient {}", d.patient))?;
    let mut recipients = vec![(d.patient, patient_key)];
    if let Some(doc) = doctor {
        let key = s.encryption_key_of(&doc).await.with_context(|| format!("doctor {doc}"))?;
        recipients.push((doc, key));
    }
    for (recipient, enc) in recipients {
        let wrapped = devices::wrap_session_key(&secret, &enc, &device)?;
        let blob = records::upload_small(&s.client, encoding::encode(&wrapped)).await?;
        keys.push(KeyRef { recipient, blob });
    }
    drop(secret);
    let receipt = s
        .submit(TxBody::Devices(DeviceTx::StartSession(StartSession {
            device,
            public_key,
            expires_at_ms,
            doctor,
            keys,
        })))
        .await?;
    let Some(Created::DeviceSession { id }) = created(&receipt) else {
        bail!("the ledger started no session: {:?}", receipt.outcome);
    };
    let id = *id;
    Ok((receipt, id, public_key))
}

pub async fn run(command: DeviceCommand) -> Result<()> {
    match command {
        DeviceCommand::Register { wallet, identity, kind, serial, model, patient, json } => {
            let s = Session::open(&wallet).await?;
            let (receipt, account, patient) =
                register_device(&s, &identity, kind, &serial, &model, patient.as_deref()).await?;
            if json {
                return crate::common::print_created(
                    &receipt,
                    serde_json::json!({ "device": account, "patient": patient }),
                );
            }
            print_receipt("device registered", &receipt);
            println!("device: account {account}");
            println!("patient: {patient}");
            Ok(())
        }
        DeviceCommand::List { wallet, patient, json } => {
            let s = Session::open(&wallet).await?;
            let patient = match patient {
                Some(p) => resolve_patient(&s, &p).await?,
                None => s.wallet.account(),
            };
            let list = s.client.devices_of_patient(&patient).await?;
            if json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("no devices of {patient} that you may see");
            }
            for d in &list {
                print_device(&s, d).await?;
            }
            Ok(())
        }
        DeviceCommand::Retire { wallet, device } => {
            let s = Session::open(&wallet).await?;
            let receipt = s.submit(TxBody::Devices(DeviceTx::Retire { device })).await?;
            print_receipt("device retired", &receipt);
            Ok(())
        }
        DeviceCommand::Session(c) => session(c).await,
        DeviceCommand::Thresholds(c) => thresholds(c).await,
        DeviceCommand::Readings { wallet, session, purpose, json } => {
            readings(&wallet, session, purpose, json).await
        }
        DeviceCommand::Simulate(args) => crate::device_sim::run(args).await,
    }
}

/// Opens the sealed details of a device if they are sealed to this wallet.
pub(crate) async fn open_details(s: &Session, details: &SealedRef) -> Option<serde_json::Value> {
    let blob = s.client.get_blob(&details.blob).await.ok()?;
    let inner = seal::open(&blob, &s.identity.decryption).ok()?;
    let sealed: SealedDetails = serde_json::from_slice(&inner).ok()?;
    let mut salt = [0u8; 32];
    hex::decode_to_slice(&sealed.salt, &mut salt).ok()?;
    let plain = serde_json::to_vec(&sealed.details).ok()?;
    seal::verify_commitment(&plain, &salt, &details.commitment).then_some(sealed.details)
}

async fn print_device(s: &Session, d: &DeviceView) -> Result<()> {
    let kind = serde_json::to_value(d.kind)?;
    println!("device {} ({})", d.account, kind.as_str().unwrap_or("?"));
    match open_details(s, &d.details).await {
        Some(v) => println!("  details      {v}"),
        None => {
            println!("  details      sealed (the patient and the registering party can open them)")
        }
    }
    println!("  registered   block {} by {}", d.registered_at, d.registered_by);
    if let Some(h) = d.retired_at {
        println!("  RETIRED      at block {h}");
    }
    match &d.thresholds {
        Some(t) => println!(
            "  thresholds   {} by doctor {} (block {}): {}",
            t.id,
            t.doctor,
            t.set_at,
            t.metrics.iter().map(Metric::name).collect::<Vec<_>>().join(", ")
        ),
        None => println!("  thresholds   none set (the device uses its built-in defaults)"),
    }
    match d.session {
        Some(id) => println!("  session      {id}"),
        None => println!("  session      none open"),
    }
    Ok(())
}

fn print_session(v: &SessionView) {
    println!(
        "session {} {} started block {} by {}{}",
        v.id,
        if v.open { "OPEN" } else { "closed" },
        v.started_at,
        v.started_by,
        v.ended_at.map_or(String::new(), |h| format!(", ended block {h}"))
    );
    println!(
        "  {} readings in {} batches, {} alerts; last sequence number {}{}",
        v.readings,
        v.batches,
        v.alerts,
        v.last_seq,
        v.doctor.map_or(String::new(), |d| format!("; doctor {d}"))
    );
}

async fn session(command: SessionCommand) -> Result<()> {
    match command {
        SessionCommand::Start { wallet, device, doctor, hours, json } => {
            let s = Session::open(&wallet).await?;
            let (receipt, id, public_key) = start_session(&s, device, doctor, hours).await?;
            if json {
                return crate::common::print_created(
                    &receipt,
                    serde_json::json!({ "session": id, "public_key": public_key }),
                );
            }
            print_receipt("session started", &receipt);
            println!("session: {id}");
            println!("session public key: {public_key}");
            println!(
                "The device encrypts its readings to this key: medledger device simulate --wallet <device wallet> --session {id}"
            );
            Ok(())
        }
        SessionCommand::End { wallet, session } => {
            let s = Session::open(&wallet).await?;
            let receipt = s.submit(TxBody::Devices(DeviceTx::EndSession { session })).await?;
            print_receipt("session ended", &receipt);
            Ok(())
        }
        SessionCommand::List { wallet, device, json } => {
            let s = Session::open(&wallet).await?;
            let list = s.client.device_sessions(&device).await?;
            if json {
                return print_json(&list);
            }
            for v in &list {
                print_session(v);
            }
            Ok(())
        }
    }
}

async fn thresholds(command: ThresholdsCommand) -> Result<()> {
    match command {
        ThresholdsCommand::Set { wallet, device, bands } => {
            let set = bands.to_set()?;
            let s = Session::open(&wallet).await?;
            let (receipt, id) = set_thresholds(&s, device, &set).await?;
            print_receipt("thresholds set", &receipt);
            println!("thresholds: {id}");
            print_set(&set);
            Ok(())
        }
        ThresholdsCommand::Show { wallet, device } => {
            let s = Session::open(&wallet).await?;
            let d = s
                .client
                .device(&device)
                .await?
                .with_context(|| format!("no device {device} (or you may not see it)"))?;
            let Some(t) = d.thresholds else {
                println!("no thresholds set: the device uses its built-in defaults");
                print_set(&ThresholdSet::defaults_for(d.kind));
                return Ok(());
            };
            println!("thresholds {} set by doctor {} at block {}", t.id, t.doctor, t.set_at);
            let blob = s.client.get_blob(&t.sealed.blob).await?;
            match devices::open_thresholds(&blob, &s.identity.decryption, &t.sealed.commitment) {
                Ok(set) => print_set(&set),
                Err(_) => println!(
                    "  sealed (to the device, the patient and the doctor); metrics: {}",
                    t.metrics.iter().map(Metric::name).collect::<Vec<_>>().join(", ")
                ),
            }
            Ok(())
        }
    }
}

fn print_set(set: &ThresholdSet) {
    for t in &set.thresholds {
        let critical = t.critical.map_or("none".to_owned(), |(l, h)| format!("{l}..{h}"));
        println!(
            "  {:<20} normal {}..{} {}, critical outside {critical}",
            t.metric.name(),
            t.low,
            t.high,
            t.metric.unit()
        );
    }
}

/// One decrypted reading, as printed.
#[derive(Debug, Serialize)]
pub(crate) struct ReadingLine {
    pub seq: u64,
    pub time_ms: u64,
    pub metric: Metric,
    pub value: f64,
    pub unit: &'static str,
    pub alert: Option<Severity>,
    pub height: u64,
}

/// What [`read_readings`] read of a session.
pub(crate) struct SessionRead {
    /// The session, as the node showed it before the read.
    pub view: SessionView,
    /// Its readings, decrypted, in sequence order, each once.
    pub lines: Vec<ReadingLine>,
}

/// The audited read of a session's readings and alerts (`device readings`): each page is an
/// access naming the patient's device data, committed to their trail before the node serves
/// it; the readings are decrypted here with the session key wrapped to this wallet and checked
/// against their digests on the ledger. In sequence order. The node's cursor must move forward
/// and no reading may come twice, so a node cannot keep the reader (and the trail) in a loop.
/// `reads` counts the pages the node served, each an allowed access in the patient's trail
/// (also when the read then fails here: the access is recorded all the same).
pub(crate) async fn read_readings(
    s: &Session,
    session: Hash,
    purpose: Purpose,
    reads: &mut u64,
) -> Result<SessionRead> {
    let view = s
        .client
        .device_session(&session)
        .await?
        .with_context(|| format!("no session {session} (or you may not see it)"))?;
    let mut after = 0;
    let mut secret = None;
    let mut lines = Vec::new();
    loop {
        let access = s
            .build(TxBody::Access(AccessTx {
                resource: Resource {
                    patient: view.patient,
                    category: Some(RecordCategory::DeviceData),
                    record: None,
                    case: None,
                },
                action: Action::Read,
                purpose,
            }))
            .await?;
        let page = s.client.read_session(&session, &access, after).await?;
        *reads += 1;
        if secret.is_none() {
            let wrapped: WrappedKey = encoding::decode("wrapped key", &page.wrapped_key, 4096)
                .context("the node served a malformed wrapped key")?;
            secret = Some(
                devices::unwrap_session_key(
                    &wrapped,
                    &s.identity.decryption,
                    &view.device,
                    &view.public_key,
                )
                .context("this wallet cannot open the session's key")?,
            );
        }
        let Some(key) = secret.as_ref() else { bail!("no session key") };
        let first = lines.len();
        let mut add = |readings: Vec<Reading>, alert: Option<Severity>, height: u64| {
            for r in readings {
                lines.push(ReadingLine {
                    seq: r.seq,
                    time_ms: r.time_ms,
                    metric: r.metric,
                    value: r.value,
                    unit: r.metric.unit(),
                    alert,
                    height,
                });
            }
        };
        for (b, bytes) in &page.batches {
            let (head, rs) = devices::open_readings(bytes, key, &session)?;
            if (head.first_seq, head.last_seq, head.count) != (b.first_seq, b.last_seq, b.count) {
                bail!(
                    "batch {}..={} does not match its digest on the ledger",
                    b.first_seq,
                    b.last_seq
                );
            }
            add(rs, None, b.height);
        }
        for (a, bytes) in &page.alerts {
            let (_, rs) = devices::open_readings(bytes, key, &session)?;
            if rs.len() != 1 || rs[0].seq != a.seq || rs[0].metric != a.metric {
                bail!("the sealed reading of alert {} does not match the alert", a.seq);
            }
            add(rs, Some(a.severity), a.height);
        }
        let seqs: Vec<u64> = lines[first..].iter().map(|l| l.seq).collect();
        match next_page(&session, after, &seqs, page.next_after)? {
            Some(n) => after = n,
            None => break,
        }
    }
    in_order(&session, &mut lines)?;
    Ok(SessionRead { view, lines })
}

/// The cursor of the page after the one of session `session` read after reading `after`,
/// which held readings `seqs` and named `next_after`; `None` at the end. Refuses a page that
/// holds a reading at or before its cursor, or that says there is more while holding nothing
/// or naming a cursor that does not move forward: a node cannot keep the reader (and the
/// patient's trail, one access per page) going round in a loop.
fn next_page(
    session: &Hash,
    after: u64,
    seqs: &[u64],
    next_after: Option<u64>,
) -> Result<Option<u64>> {
    if let Some(old) = seqs.iter().find(|&&q| q <= after) {
        bail!("the node's page of session {session} after reading {after} holds reading {old}");
    }
    match next_after {
        Some(n) if n > after && !seqs.is_empty() => Ok(Some(n)),
        Some(n) => bail!(
            "the node's page of session {session} after reading {after} says the next starts \
             after reading {n}{}: it does not move forward",
            if seqs.is_empty() { " and holds nothing" } else { "" }
        ),
        None => Ok(None),
    }
}

/// Sorts a session's readings by number; refuses one served twice.
fn in_order(session: &Hash, lines: &mut [ReadingLine]) -> Result<()> {
    lines.sort_by_key(|l| l.seq);
    if let Some(w) = lines.windows(2).find(|w| w[0].seq == w[1].seq) {
        bail!("the node served reading {} of session {session} twice", w[0].seq);
    }
    Ok(())
}

async fn readings(wallet: &WalletArgs, session: Hash, purpose: Purpose, json: bool) -> Result<()> {
    let s = Session::open(wallet).await?;
    let lines = read_readings(&s, session, purpose, &mut 0).await?.lines;
    if json {
        for l in &lines {
            println!("{}", serde_json::to_string(l)?);
        }
        return Ok(());
    }
    println!(
        "session {session}: {} readings ({} alerts); the read is recorded in the patient's audit trail",
        lines.len(),
        lines.iter().filter(|l| l.alert.is_some()).count()
    );
    for l in &lines {
        println!(
            "#{:<7} {:<20} {:>8.1} {:<6} block {:<6}{}",
            l.seq,
            l.metric.name(),
            l.value,
            l.unit,
            l.height,
            l.alert.map_or(String::new(), |s| format!("  ALERT ({})", crate::common::words(&s)))
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Hash = Hash([9; 32]);

    #[test]
    fn a_page_cursor_moves_forward_or_the_read_stops() {
        assert_eq!(next_page(&S, 0, &[1, 2, 3], Some(3)).unwrap(), Some(3));
        assert_eq!(next_page(&S, 3, &[4, 9], None).unwrap(), None);
        // A last page may be empty (nothing committed after the cursor).
        assert_eq!(next_page(&S, 3, &[], None).unwrap(), None);
        // Backwards, standing still, or promising more with nothing on the page: refused.
        for (after, seqs, next) in [(5, vec![6], 5), (5, vec![6], 2), (5, vec![], 9)] {
            let err = next_page(&S, after, &seqs, Some(next)).unwrap_err().to_string();
            assert!(err.contains("does not move forward"), "{err}");
        }
        // A reading at or before the cursor: a replay, refused.
        let err = next_page(&S, 5, &[6, 5], Some(8)).unwrap_err().to_string();
        assert!(err.contains("holds reading 5"), "{err}");
    }

    #[test]
    fn a_reading_served_twice_is_refused() {
        let line = |seq| ReadingLine {
            seq,
            time_ms: 0,
            metric: Metric::HeartRate,
            value: 70.0,
            unit: "bpm",
            alert: None,
            height: 1,
        };
        let mut lines = vec![line(3), line(1), line(2)];
        in_order(&S, &mut lines).unwrap();
        assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [1, 2, 3]);
        let mut twice = vec![line(3), line(1), line(3)];
        let err = in_order(&S, &mut twice).unwrap_err().to_string();
        assert!(err.contains("reading 3") && err.contains("twice"), "{err}");
    }
}
