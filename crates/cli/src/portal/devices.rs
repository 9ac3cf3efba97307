//! Devices in the portal: hospital staff (or the patient) register a device for a patient; a
//! doctor the patient consented to sets its thresholds; the patient and such a doctor list a
//! patient's devices and sessions and read a session's readings and alerts. Reading is the
//! audited read of `medledger device readings` ([`crate::device::read_readings`]), decrypted
//! here. The patient starts and ends a device's measurement sessions (the session key is made
//! here and wrapped to the patient and the doctor named); the patient or the registering
//! hospital retires a device. Every form calls the same functions as the `device` commands.

use askama::Template;
use axum::{
    Form, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use medledger_core::{
    Hash,
    ids::AccountId,
    tx::{DeviceTx, TxBody, consent::Purpose, devices::Metric, registry::Role},
};
use serde::Deserialize;

use super::{
    Portal, Unlocked,
    pages::{Flash, Me, for_patient, render, unlocked_as, whose, with_status},
};
use crate::common::{local_time, words};

pub fn routes() -> Router<Portal> {
    Router::new()
        .route("/devices", get(devices))
        .route("/devices/register", post(register))
        .route("/devices/thresholds", post(thresholds))
        .route("/devices/readings", post(readings))
        .route("/devices/session/start", post(start))
        .route("/devices/session/end", post(end))
        .route("/devices/retire", post(retire))
}

/// The device kinds, as the form offers them.
const KINDS: [&str; 5] = [
    "pulse-oximeter",
    "blood-pressure-monitor",
    "glucose-meter",
    "thermometer",
    "vital-signs-monitor",
];

/// A device as the page shows it.
pub struct DeviceRow {
    account: String,
    kind: String,
    details: String,
    registered: String,
    retired: bool,
    /// Whether one of its sessions is open (a new one cannot start until it ends).
    measuring: bool,
    thresholds: String,
    sessions: Vec<SessionRow>,
}

/// A measurement session as a row.
pub struct SessionRow {
    id: String,
    open: bool,
    started: String,
    readings: u64,
    alerts: u64,
    doctor: String,
}

#[derive(Template)]
#[template(path = "portal/devices.html")]
struct DevicesPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    /// Whose devices are shown, as asked (a patient's own page: none asked).
    patient: String,
    rows: Vec<DeviceRow>,
    kinds: [&'static str; 5],
}

#[derive(Deserialize)]
struct DevicesQuery {
    #[serde(default)]
    patient: String,
}

async fn devices(State(p): State<Portal>, Query(q): Query<DevicesQuery>) -> Response {
    let u =
        match unlocked_as(&p, &[Role::Patient, Role::Doctor, Role::Hospital], "the devices page") {
            Ok(u) => u,
            Err(stop) => return stop.into_response(),
        };
    let flash = p.take_outcome("/devices").and_then(|o| Flash::ok(o.text));
    devices_page(&p, &u, q.patient, flash, StatusCode::OK).await
}

async fn devices_page(
    p: &Portal,
    u: &Unlocked,
    patient: String,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    let s = &u.session;
    let patient = patient.trim().to_owned();
    let listed = async {
        let Some(account) = whose(u, &patient).await? else {
            return anyhow::Ok(Vec::new());
        };
        let mut rows = Vec::new();
        for d in s.client.devices_of_patient(&account).await? {
            let details = match crate::device::open_details(s, &d.details).await {
                Some(v) => format!(
                    "serial {}, model {}",
                    v["serial"].as_str().unwrap_or("?"),
                    v["model"].as_str().unwrap_or("?")
                ),
                None => "sealed (the patient and the registering party can open them)".into(),
            };
            let sessions = s
                .client
                .device_sessions(&d.account)
                .await?
                .iter()
                .rev()
                .map(|v| SessionRow {
                    id: v.id.to_string(),
                    open: v.open,
                    started: local_time(v.started_time_ms),
                    readings: v.readings,
                    alerts: v.alerts,
                    doctor: v.doctor.map(|d| u.names.of(&d)).unwrap_or_default(),
                })
                .collect::<Vec<SessionRow>>();
            rows.push(DeviceRow {
                measuring: sessions.iter().any(|v| v.open),
                account: d.account.to_string(),
                kind: words(&d.kind),
                details,
                registered: format!(
                    "block {} by {}",
                    d.registered_at,
                    u.names.of(&d.registered_by)
                ),
                retired: d.retired_at.is_some(),
                thresholds: match &d.thresholds {
                    Some(t) => format!(
                        "{} by {} (block {})",
                        t.metrics.iter().map(Metric::name).collect::<Vec<_>>().join(", "),
                        u.names.of(&t.doctor),
                        t.set_at
                    ),
                    None => "none set (the device uses its built-in defaults)".into(),
                },
                sessions,
            });
        }
        Ok(rows)
    }
    .await;
    let (rows, flash) = match listed {
        Ok(rows) => (rows, flash),
        Err(e) => (Vec::new(), flash.or_else(|| Flash::error(&e))),
    };
    let page =
        render(&DevicesPage { csrf: p.csrf(), me: Me::of(u), flash, patient, rows, kinds: KINDS });
    with_status(page, status)
}

#[derive(Deserialize)]
struct RegisterForm {
    identity: String,
    kind: String,
    serial: String,
    #[serde(default)]
    model: String,
    /// The patient (a Patient-ID or an account id); a patient's own device: empty.
    #[serde(default)]
    patient: String,
}

/// Hospital staff (or the patient) register a device (`medledger device register`).
async fn register(State(p): State<Portal>, Form(f): Form<RegisterForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Hospital, Role::Patient], "registering a device") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let patient = Some(f.patient.trim()).filter(|p| !p.is_empty());
    let registered = async {
        anyhow::ensure!(
            u.role == Role::Patient || patient.is_some(),
            "name the patient the device serves"
        );
        anyhow::ensure!(!f.serial.trim().is_empty(), "a device needs its serial number");
        let kind = crate::device::parse_kind(f.kind.trim()).map_err(|e| anyhow::anyhow!(e))?;
        let (r, device, _) = crate::device::register_device(
            &u.session,
            f.identity.trim(),
            kind,
            f.serial.trim(),
            f.model.trim(),
            patient,
        )
        .await?;
        anyhow::Ok(format!("device registered: account {device} (block {})", r.height))
    }
    .await;
    match registered {
        Ok(text) => p.done_with(&for_patient("/devices", &f.patient), text),
        Err(e) => devices_page(&p, &u, f.patient, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

#[derive(Deserialize)]
struct ThresholdsForm {
    device: String,
    /// The patient whose devices the page showed.
    #[serde(default)]
    patient: String,
    #[serde(default)]
    heart_rate: String,
    #[serde(default)]
    spo2: String,
    #[serde(default)]
    systolic: String,
    #[serde(default)]
    diastolic: String,
    #[serde(default)]
    glucose: String,
    #[serde(default)]
    temperature: String,
}

/// A doctor sets a device's thresholds (`medledger device thresholds set`): each metric's
/// band `LOW..HIGH`, optionally `,CRIT_LOW..CRIT_HIGH`.
async fn thresholds(State(p): State<Portal>, Form(f): Form<ThresholdsForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Doctor], "setting a device's thresholds") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let set = async {
        let device = device_of(&f.device)?;
        let band = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        let bands = crate::device::Bands {
            heart_rate: band(&f.heart_rate),
            spo2: band(&f.spo2),
            systolic: band(&f.systolic),
            diastolic: band(&f.diastolic),
            glucose: band(&f.glucose),
            temperature: band(&f.temperature),
        };
        let set = bands.to_set()?;
        let (r, id) = crate::device::set_thresholds(&u.session, device, &set).await?;
        anyhow::Ok(format!("thresholds {id} set on device {device} (block {})", r.height))
    }
    .await;
    match set {
        Ok(text) => p.done_with(&for_patient("/devices", &f.patient), text),
        Err(e) => devices_page(&p, &u, f.patient, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

/// The device account id typed or sent by a form.
fn device_of(typed: &str) -> anyhow::Result<AccountId> {
    typed.trim().parse().map_err(|e| anyhow::anyhow!("{typed:?} is not a device's account id: {e}"))
}

#[derive(Deserialize)]
struct StartForm {
    device: String,
    /// The patient whose devices the page showed.
    #[serde(default)]
    patient: String,
    /// The responsible doctor's account id (told of alerts, given the session key), if any.
    #[serde(default)]
    doctor: String,
    /// End the session by itself after this many hours (empty: when ended).
    #[serde(default)]
    hours: String,
}

/// The patient (or a delegate) starts a measurement session on a device
/// (`medledger device session start`).
async fn start(State(p): State<Portal>, Form(f): Form<StartForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "starting a device session") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let started = async {
        let device = device_of(&f.device)?;
        let doctor = match f.doctor.trim() {
            "" => None,
            typed => Some(typed.parse::<AccountId>().map_err(|e| {
                anyhow::anyhow!("{typed:?} is not the account id of a doctor: {e}")
            })?),
        };
        let hours = match f.hours.trim() {
            "" => None,
            typed => Some(typed.parse::<u64>().ok().filter(|h| *h > 0).ok_or_else(|| {
                anyhow::anyhow!("{typed:?} is not a number of hours (1 or more)")
            })?),
        };
        let (r, id, _) = crate::device::start_session(&u.session, device, doctor, hours).await?;
        anyhow::Ok(format!("session {id} started on device {device} (block {})", r.height))
    }
    .await;
    match started {
        Ok(text) => p.done_with(&for_patient("/devices", &f.patient), text),
        Err(e) => devices_page(&p, &u, f.patient, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

#[derive(Deserialize)]
struct EndForm {
    session: String,
    #[serde(default)]
    patient: String,
}

/// The patient (or a delegate) ends a session (`medledger device session end`).
async fn end(State(p): State<Portal>, Form(f): Form<EndForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "ending a device session") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let ended = async {
        let session: Hash = f
            .session
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{:?} is no session id: {e}", f.session))?;
        let r = u.session.submit(TxBody::Devices(DeviceTx::EndSession { session })).await?;
        anyhow::Ok(format!("session {session} ended (block {})", r.height))
    }
    .await;
    match ended {
        Ok(text) => p.done_with(&for_patient("/devices", &f.patient), text),
        Err(e) => devices_page(&p, &u, f.patient, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

#[derive(Deserialize)]
struct RetireForm {
    device: String,
    #[serde(default)]
    patient: String,
    /// The box saying the device is retired for good.
    confirm: Option<String>,
}

/// The patient (or a delegate) or the registering hospital retires a device for good
/// (`medledger device retire`): its open session ends, and it accepts no more.
async fn retire(State(p): State<Portal>, Form(f): Form<RetireForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient, Role::Hospital], "retiring a device") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let retired = async {
        let device = device_of(&f.device)?;
        anyhow::ensure!(
            f.confirm.is_some(),
            "a retired device is retired for good: tick the box to confirm; nothing was done"
        );
        let r = u.session.submit(TxBody::Devices(DeviceTx::Retire { device })).await?;
        anyhow::Ok(format!("device {device} retired (block {})", r.height))
    }
    .await;
    match retired {
        Ok(text) => p.done_with(&for_patient("/devices", &f.patient), text),
        Err(e) => devices_page(&p, &u, f.patient, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

/// A reading as a row.
pub struct ReadingRow {
    seq: u64,
    metric: &'static str,
    value: String,
    unit: &'static str,
    when: String,
    height: u64,
    alert: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/readings.html")]
struct ReadingsPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    session: String,
    rows: Vec<ReadingRow>,
    alerts: usize,
}

#[derive(Deserialize)]
struct ReadingsForm {
    session: String,
    #[serde(default)]
    patient: String,
}

/// The audited read of a session's readings and alerts (`medledger device readings`).
async fn readings(State(p): State<Portal>, Form(f): Form<ReadingsForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient, Role::Doctor], "reading a device's readings") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let read = async {
        let session: Hash = f
            .session
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{:?} is no session id: {e}", f.session))?;
        crate::device::read_readings(&u.session, session, Purpose::Treatment, &mut 0)
            .await
            .map(|read| read.lines)
    }
    .await;
    match read {
        Ok(lines) => {
            let rows: Vec<ReadingRow> = lines
                .iter()
                .map(|l| ReadingRow {
                    seq: l.seq,
                    metric: l.metric.name(),
                    value: format!("{:.1}", l.value),
                    unit: l.unit,
                    when: local_time(l.time_ms),
                    height: l.height,
                    alert: l.alert.map(|s| words(&s)),
                })
                .collect();
            let alerts = rows.iter().filter(|r| r.alert.is_some()).count();
            render(&ReadingsPage {
                csrf: p.csrf(),
                me: Me::of(&u),
                flash: None,
                session: f.session.trim().to_owned(),
                rows,
                alerts,
            })
        }
        Err(e) => devices_page(&p, &u, f.patient, Flash::error(&e), StatusCode::FORBIDDEN).await,
    }
}
