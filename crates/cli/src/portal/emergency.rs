//! The patient's emergency profile and card in the portal: the profile is sealed to a key
//! derived from a new code, which is shown once (as text and as a QR code) for the card and
//! stored nowhere; with "open records", an open break-glass opens the patient's records.

use askama::Template;
use axum::{
    Form, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use medledger_client::emergency::ProfileContent;
use medledger_core::{
    Hash,
    ids::AccountId,
    tx::{consent::Purpose, registry::Role},
};
use serde::Deserialize;

use super::{
    Portal, Unlocked,
    pages::{Flash, Me, render, unlocked_as, with_status},
};
use crate::common::{local_time, words};

pub fn routes() -> Router<Portal> {
    Router::new()
        .route("/emergency", get(page).post(save))
        .route("/emergency/doctor", get(doctor))
        .route("/emergency/open", post(open))
        .route("/emergency/overview", post(overview))
}

/// What the page shows of the profile in force (its content is sealed to the card's key,
/// which the portal does not keep).
pub struct Current {
    open_records: bool,
    custodians: String,
    threshold: u8,
}

/// The card, right after a profile was saved.
pub struct Card {
    code: String,
    patient_id: String,
    account: String,
    /// The QR code as an SVG data URL.
    qr: String,
    wrapped: usize,
    /// Records the emergency key could not be given, and why (empty if none).
    unwrapped: String,
}

#[derive(Template)]
#[template(path = "portal/emergency.html")]
struct EmergencyPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    current: Option<Current>,
    card: Option<Card>,
}

async fn page(State(p): State<Portal>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "the emergency profile") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    // Right after a save: its card, this once.
    match p.take_outcome("/emergency") {
        Some(o) => emergency_page(&p, &u, Flash::ok(o.text), o.card, StatusCode::OK).await,
        None => emergency_page(&p, &u, None, None, StatusCode::OK).await,
    }
}

async fn emergency_page(
    p: &Portal,
    u: &Unlocked,
    flash: Option<Flash>,
    card: Option<Card>,
    status: StatusCode,
) -> Response {
    let s = &u.session;
    let (current, flash) = match s.client.emergency_profile(&s.wallet.account()).await {
        Ok(view) => (
            view.map(|v| Current {
                open_records: v.open_records,
                custodians: v
                    .custodians
                    .iter()
                    .map(|c| u.names.of(c))
                    .collect::<Vec<_>>()
                    .join(", "),
                threshold: v.threshold,
            }),
            flash,
        ),
        Err(e) => (None, flash.or_else(|| Flash::error(&e.into()))),
    };
    let mut page = render(&EmergencyPage { csrf: p.csrf(), me: Me::of(u), flash, current, card });
    *page.status_mut() = status;
    page
}

#[derive(Deserialize)]
struct ProfileForm {
    blood_type: String,
    #[serde(default)]
    allergies: String,
    #[serde(default)]
    medications: String,
    #[serde(default)]
    conditions: String,
    #[serde(default)]
    contacts: String,
    /// A checkbox: present when ticked.
    open_records: Option<String>,
    #[serde(default)]
    custodians: String,
    #[serde(default)]
    threshold: String,
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect()
}

async fn save(State(p): State<Portal>, Form(f): Form<ProfileForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "the emergency profile") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let saved = async {
        anyhow::ensure!(!f.blood_type.trim().is_empty(), "the blood type is needed");
        let custodians = list(&f.custodians)
            .iter()
            .map(|c| c.parse::<AccountId>().map_err(|e| anyhow::anyhow!("custodian {c:?}: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let threshold = match f.threshold.trim() {
            "" => None,
            t => Some(t.parse::<u8>().map_err(|_| anyhow::anyhow!("{t:?} is not a threshold"))?),
        };
        let open_records = f.open_records.is_some();
        let content = ProfileContent {
            blood_type: f.blood_type.trim().to_owned(),
            allergies: list(&f.allergies),
            medications: list(&f.medications),
            conditions: list(&f.conditions),
            contacts: list(&f.contacts),
        };
        let set = crate::emergency::set_profile(
            &u.session,
            content,
            open_records,
            &custodians,
            threshold,
        )
        .await?;
        // The profile is replaced: from here on nothing may lose the code, which is held
        // nowhere else. The records are wrapped after the card exists; a failure there is
        // reported beside the card.
        let qr = qrcode::QrCode::new(format!("medledger-emergency:{}:{}", set.pid, set.text))
            .map(|qr| {
                let svg =
                    qr.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build();
                format!(
                    "data:image/svg+xml;base64,{}",
                    data_encoding::BASE64.encode(svg.as_bytes())
                )
            })
            .unwrap_or_default();
        let mut card = Card {
            code: set.text,
            patient_id: set.pid.to_string(),
            account: u.session.wallet.account().to_string(),
            qr,
            wrapped: 0,
            unwrapped: String::new(),
        };
        if open_records {
            match crate::emergency::wrap_records(&u.session, u.session.wallet.account()).await {
                Ok((wrapped, missing)) => {
                    card.wrapped = wrapped;
                    if !missing.is_empty() {
                        card.unwrapped = format!(
                            "this wallet holds no key of {}: they stay closed under break-glass",
                            missing.join(", ")
                        );
                    }
                }
                Err(e) => {
                    card.unwrapped = format!(
                        "your records were not all wrapped to the emergency key ({e:#}); run \
                         `medledger emergency wrap-records` to finish"
                    )
                }
            }
        }
        anyhow::Ok(card)
    }
    .await;
    match saved {
        // To the page, which shows the card once: a reload makes no new profile.
        Ok(card) => {
            let text = "emergency profile saved: write the code on your card now; it is shown \
                        only this once";
            p.done(
                "/emergency",
                super::Outcome { text: text.into(), card: Some(card), ..Default::default() },
            )
        }
        Err(e) => emergency_page(&p, &u, Flash::error(&e), None, StatusCode::BAD_REQUEST).await,
    }
}

// ---------------------------------------------------------------------------------------
// The doctor's side: break-glass declared, opened with the released escrow pieces, and the
// audited overview of the patient.

/// How many of the newest break-glass declarations the doctor's page looks at.
const SHOWN_DECLARATIONS: usize = 50;

/// A break-glass this doctor declared, as a row.
pub struct DeclaredRow {
    id: String,
    patient: String,
    started: String,
    until: String,
    open: bool,
    released: usize,
}

/// The profile read under break-glass.
pub struct OpenedProfile {
    patient: String,
    until: String,
    blood_type: String,
    allergies: String,
    medications: String,
    conditions: String,
    contacts: String,
}

#[derive(Template)]
#[template(path = "portal/break_glass.html")]
struct DoctorPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    declared: Vec<DeclaredRow>,
    opened: Option<OpenedProfile>,
}

async fn doctor(State(p): State<Portal>) -> Response {
    let u = match unlocked_as(&p, &[Role::Doctor], "the break-glass page") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    doctor_page(&p, &u, None, None, StatusCode::OK).await
}

/// The break-glass declarations of this doctor (seen in its event stream), newest first:
/// among the newest [`SHOWN_DECLARATIONS`] this account's stream showed.
async fn doctor_page(
    p: &Portal,
    u: &Unlocked,
    flash: Option<Flash>,
    opened: Option<OpenedProfile>,
    status: StatusCode,
) -> Response {
    let s = &u.session;
    let me = s.wallet.account();
    let now = super::node_now_ms(&s.client).await;
    // Each declaration on its own: one that cannot be looked at does not hide the others.
    let mut declared = Vec::new();
    let mut failed = Vec::new();
    for id in u.seen_newest(SHOWN_DECLARATIONS) {
        let b = match s.client.break_glass(&id).await {
            Ok(b) => b,
            Err(e) => {
                failed.push(format!("break-glass {id}: {:#}", anyhow::Error::from(e)));
                continue;
            }
        };
        if b.doctor != me {
            continue;
        }
        declared.push(DeclaredRow {
            id: id.to_string(),
            patient: b.patient.to_string(),
            started: local_time(b.started_ms),
            until: local_time(b.until_ms),
            open: b.ended_at.is_none() && b.until_ms > now,
            released: b.released.len(),
        });
    }
    let flash = flash.or_else(|| {
        (!failed.is_empty())
            .then(|| Flash { ok: false, text: format!("could not look at {}", failed.join("; ")) })
    });
    let page = render(&DoctorPage { csrf: p.csrf(), me: Me::of(u), flash, declared, opened });
    with_status(page, status)
}

#[derive(Deserialize)]
struct BreakGlassIdForm {
    break_glass: String,
}

fn break_glass_id(text: &str) -> anyhow::Result<Hash> {
    text.trim().parse().map_err(|e| anyhow::anyhow!("{text:?} is no break-glass id: {e}"))
}

/// The doctor of a break-glass recovers the patient's emergency key from the released escrow
/// pieces and reads the profile (`medledger emergency open`; logged, the patient is told).
async fn open(State(p): State<Portal>, Form(f): Form<BreakGlassIdForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Doctor], "opening a break-glass") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let opened = async {
        let id = break_glass_id(&f.break_glass)?;
        crate::emergency::open_break_glass(&u.session, &id).await
    }
    .await;
    match opened {
        Ok(o) => {
            let list = |v: &[String]| {
                if v.is_empty() { "none recorded".to_owned() } else { v.join(", ") }
            };
            let profile = OpenedProfile {
                patient: o.patient.to_string(),
                until: local_time(o.until_ms),
                blood_type: o.profile.blood_type.clone(),
                allergies: list(&o.profile.allergies),
                medications: list(&o.profile.medications),
                conditions: list(&o.profile.conditions),
                contacts: list(&o.profile.contacts),
            };
            let flash = Flash::ok(
                "emergency key recovered; the profile read is logged and the patient is told",
            );
            doctor_page(&p, &u, flash, Some(profile), StatusCode::OK).await
        }
        Err(e) => doctor_page(&p, &u, Flash::error(&e), None, StatusCode::BAD_REQUEST).await,
    }
}

/// A record of the overview, as a row.
pub struct OverviewRecord {
    pmr: String,
    category: String,
    date: String,
    readable: bool,
}

#[derive(Template)]
#[template(path = "portal/overview.html")]
struct OverviewPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    patient: String,
    break_glass: String,
    event: u64,
    height: u64,
    records: Vec<OverviewRecord>,
    cases: Vec<(String, u64)>,
    devices: Vec<(String, String)>,
    sessions: Vec<(String, String, u64)>,
}

/// The audited overview of a break-glass's patient (`medledger emergency overview`, purpose
/// emergency): under break-glass, how the doctor finds the records, each then read under it.
async fn overview(State(p): State<Portal>, Form(f): Form<BreakGlassIdForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Doctor], "a patient's overview") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    // The patient is the break-glass's own, as its declaring transaction proves it.
    let listed = async {
        let id = break_glass_id(&f.break_glass)?;
        let patient = crate::emergency::patient_of(&u.session, &id).await?.to_string();
        let o = crate::emergency::overview(&u.session, &patient, Purpose::Emergency).await?;
        anyhow::Ok((patient, o))
    }
    .await;
    match listed {
        Ok((patient, o)) => render(&OverviewPage {
            csrf: p.csrf(),
            me: Me::of(&u),
            flash: None,
            patient,
            break_glass: f.break_glass.trim().to_owned(),
            event: o.event,
            height: o.height,
            records: o
                .records
                .iter()
                .map(|r| OverviewRecord {
                    pmr: r.pmr.clone(),
                    category: words(&r.category),
                    date: r.visit_date.to_string(),
                    readable: r.erased_at.is_none(),
                })
                .collect(),
            cases: o.cases.iter().map(|c| (c.case.clone(), c.entries)).collect(),
            devices: o.devices.iter().map(|d| (d.account.to_string(), words(&d.kind))).collect(),
            sessions: o
                .sessions
                .iter()
                .map(|v| (v.id.to_string(), v.device.to_string(), v.readings))
                .collect(),
        }),
        Err(e) => doctor_page(&p, &u, Flash::error(&e), None, StatusCode::FORBIDDEN).await,
    }
}
