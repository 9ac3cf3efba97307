//! The portal's pages for hospital staff (onboard doctors, register patients) and for the
//! regulator (admit, suspend and reinstate hospitals; audit counts). Each form builds the same
//! transaction as its command (`crate::registry`).

use askama::Template;
use axum::{
    Form, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use medledger_core::{
    ids::AccountId,
    tx::{RegistryTx, TxBody, registry::Role},
};
use serde::Deserialize;

use super::{
    Portal, Unlocked,
    pages::{Flash, Me, render, unlocked_as},
};

pub fn routes() -> Router<Portal> {
    Router::new()
        .route("/staff", get(staff))
        .route("/staff/doctor", post(onboard))
        .route("/staff/patient", post(register))
        .route("/staff/review", post(review))
        .route("/staff/release", post(release))
        .route("/regulator", get(regulator))
        .route("/regulator/hospital", post(admit))
        .route("/regulator/hospital/status", post(set_status))
        .route("/regulator/window", post(set_window))
        .route("/regulator/node", post(node))
}

/// A doctor as a row.
pub struct DoctorRow {
    name: String,
    account: String,
    registration_number: String,
    specialisation: String,
}

/// A break-glass by one of the hospital's doctors that awaits its review.
pub struct ReviewRow {
    id: String,
    doctor: String,
    patient: String,
    started: String,
    code: String,
    reason: String,
}

/// An open break-glass on a patient whose emergency key this hospital holds a piece of.
pub struct CustodyRow {
    id: String,
    doctor: String,
    patient: String,
    started: String,
    until: String,
    code: String,
    /// This hospital released its piece already.
    released: bool,
}

#[derive(Template)]
#[template(path = "portal/staff.html")]
struct StaffPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    doctors: Vec<DoctorRow>,
    reviews: Vec<ReviewRow>,
    custody: Vec<CustodyRow>,
}

/// The open break-glass declarations (seen in the hospital's event stream) on patients
/// whose emergency key this hospital holds an escrow piece of, and what could not be looked
/// at. Each declaration is looked at on its own: the stream also holds those of the
/// hospital's own doctors on patients whose custodians are other hospitals, for which the
/// node refuses the profile (403) or has none (404): those are remembered as not this
/// hospital's and skipped; any other failure is reported and does not hide the rest.
async fn custody_rows(u: &Unlocked) -> (Vec<CustodyRow>, Vec<String>) {
    let s = &u.session;
    let me = s.wallet.account();
    let now = super::node_now_ms(&s.client).await;
    let (ids, released) = u.seen_open();
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for id in ids {
        let b = match s.client.break_glass(&id).await {
            Ok(b) => b,
            Err(e) => {
                failed.push(format!("break-glass {id}: {:#}", anyhow::Error::from(e)));
                continue;
            }
        };
        if b.ended_at.is_some() || b.until_ms <= now {
            u.mark(id, true);
            continue;
        }
        let custodian = match s.client.emergency_profile(&b.patient).await {
            Ok(profile) => profile.is_some_and(|p| p.custodians.contains(&me)),
            Err(e) if super::refused_with(&e, &[403, 404]) => false,
            Err(e) => {
                failed.push(format!("break-glass {id}: {:#}", anyhow::Error::from(e)));
                continue;
            }
        };
        if !custodian {
            u.not_ours(id);
            continue;
        }
        rows.push(CustodyRow {
            id: id.to_string(),
            doctor: u.names.of(&b.doctor),
            patient: b.patient.to_string(),
            started: crate::common::local_time(b.started_ms),
            until: crate::common::local_time(b.until_ms),
            code: b.code.to_string(),
            released: released.contains(&id),
        });
    }
    (rows, failed)
}

async fn staff(State(p): State<Portal>) -> Response {
    let u = match unlocked_as(&p, &[Role::Hospital], "the staff desk") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    // Right after a form: its outcome, this once.
    let flash = p.take_outcome("/staff").and_then(|o| Flash::ok(o.text));
    staff_page(&p, &u, flash, StatusCode::OK).await
}

async fn staff_page(
    p: &Portal,
    u: &Unlocked,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    let me = u.session.wallet.account();
    // The hospital's doctors as they are now: one onboarded since the unlock is named too.
    let mut ours = std::collections::HashMap::new();
    let (doctors, flash) = match u.session.client.doctors(Some(me)).await {
        Ok(list) => (
            list.into_iter()
                .inspect(|d| {
                    ours.insert(d.account, d.name.clone());
                })
                .map(|d| DoctorRow {
                    name: d.name,
                    account: d.account.to_string(),
                    registration_number: d.registration_number,
                    specialisation: d.specialisation,
                })
                .collect(),
            flash,
        ),
        Err(e) => (Vec::new(), Flash::error(&e.into())),
    };
    let (reviews, flash) = match u.session.client.open_reviews().await {
        Ok(open) => (
            open.into_iter()
                .map(|b| ReviewRow {
                    id: b.id.to_string(),
                    doctor: match ours.get(&b.doctor) {
                        Some(name) => format!("{} ({name})", b.doctor),
                        None => u.names.of(&b.doctor),
                    },
                    patient: b.patient.to_string(),
                    started: crate::common::local_time(b.started_ms),
                    code: b.code.to_string(),
                    reason: match hex::decode(&b.reason) {
                        Ok(sealed) => u.names.open(&sealed),
                        Err(_) => "(malformed)".into(),
                    },
                })
                .collect(),
            flash,
        ),
        Err(e) => (Vec::new(), flash.or_else(|| Flash::error(&e.into()))),
    };
    let (custody, failed) = custody_rows(u).await;
    let flash = flash.or_else(|| {
        (!failed.is_empty())
            .then(|| Flash { ok: false, text: format!("could not look at {}", failed.join("; ")) })
    });
    let mut page =
        render(&StaffPage { csrf: p.csrf(), me: Me::of(u), flash, doctors, reviews, custody });
    *page.status_mut() = status;
    page
}

#[derive(Deserialize)]
struct OnboardForm {
    identity: String,
    registration_number: String,
    name: String,
    specialisation: String,
}

async fn onboard(State(p): State<Portal>, Form(f): Form<OnboardForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Hospital], "onboarding a doctor") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let result = crate::registry::onboard_doctor(
        &u.session,
        f.identity.trim(),
        f.registration_number.trim(),
        f.name.trim(),
        f.specialisation.trim(),
    )
    .await
    .map(|(r, account)| {
        format!("{} onboarded: account {account} (block {})", f.name.trim(), r.height)
    });
    match result {
        Ok(text) => p.done_with("/staff", text),
        Err(e) => staff_page(&p, &u, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

#[derive(Deserialize)]
struct RegisterForm {
    identity: String,
    name: String,
    date_of_birth: String,
    phone: String,
    attendant_name: String,
    attendant_phone: String,
    attendant_relationship: String,
}

async fn register(State(p): State<Portal>, Form(f): Form<RegisterForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Hospital], "registering a patient") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let result = async {
        let date_of_birth = crate::common::parse_past_date(f.date_of_birth.trim())
            .map_err(|e| anyhow::anyhow!("date of birth: {e}"))?;
        let patient = crate::registry::NewPatient {
            identity: f.identity.trim().to_owned(),
            name: f.name.trim().to_owned(),
            date_of_birth,
            phone: f.phone.trim().to_owned(),
            attendant_name: f.attendant_name.trim().to_owned(),
            attendant_phone: f.attendant_phone.trim().to_owned(),
            attendant_relationship: f.attendant_relationship.trim().to_owned(),
        };
        let (r, account, patient_id) =
            crate::registry::register_patient(&u.session, &patient).await?;
        anyhow::Ok(format!(
            "{} registered: Patient-ID {patient_id}, account {account} (block {})",
            patient.name, r.height
        ))
    }
    .await;
    match result {
        Ok(text) => p.done_with("/staff", text),
        Err(e) => staff_page(&p, &u, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

#[derive(Deserialize)]
struct ReviewForm {
    break_glass: String,
    finding: String,
}

/// The hospital files its review of a break-glass by one of its doctors; the finding is
/// sealed to the patient, the hospital and the regulator.
async fn review(State(p): State<Portal>, Form(f): Form<ReviewForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Hospital], "reviewing a break-glass") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let result = async {
        let id: medledger_core::Hash = f
            .break_glass
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{:?} is no break-glass id: {e}", f.break_glass))?;
        let r = crate::emergency::file_review(&u.session, id, &f.finding).await?;
        anyhow::Ok(format!("review of break-glass {id} filed (block {})", r.height))
    }
    .await;
    match result {
        Ok(text) => p.done_with("/staff", text),
        Err(e) => staff_page(&p, &u, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

#[derive(Deserialize)]
struct ReleaseForm {
    break_glass: String,
}

/// As a custodian: release this hospital's escrow piece of the patient's emergency key to the
/// doctor of an open break-glass (`medledger emergency release`).
async fn release(State(p): State<Portal>, Form(f): Form<ReleaseForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Hospital], "releasing an escrow piece") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let result = async {
        let id: medledger_core::Hash = f
            .break_glass
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{:?} is no break-glass id: {e}", f.break_glass))?;
        let (doctor, r) = crate::emergency::release(&u.session, id).await?;
        // Shown as released at once, before the event stream brings the release.
        u.mark(id, false);
        anyhow::Ok(format!(
            "escrow piece released to {} for break-glass {id} (block {})",
            u.names.of(&doctor),
            r.height
        ))
    }
    .await;
    match result {
        Ok(text) => p.done_with("/staff", text),
        Err(e) => staff_page(&p, &u, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

/// A hospital as a row of the regulator's page.
pub struct HospitalRow {
    name: String,
    account: String,
    city: String,
    specialisation: String,
    suspended: bool,
}

#[derive(Template)]
#[template(path = "portal/regulator.html")]
struct RegulatorPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    hospitals: Vec<HospitalRow>,
    counts: Vec<(String, u64)>,
    /// The network's nodes.
    nodes: Vec<NodeRow>,
    /// Researcher and insurer organisations.
    organisations: Vec<super::organisations::OrganisationRow>,
}

/// A node as a row of the regulator's page.
pub struct NodeRow {
    id: u64,
    key: String,
    address: String,
    hospital: String,
    status: String,
}

async fn regulator(State(p): State<Portal>) -> Response {
    let u = match unlocked_as(&p, &[Role::Regulator], "the regulator's desk") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let flash = p.take_outcome("/regulator").and_then(|o| Flash::ok(o.text));
    regulator_page(&p, &u, flash, StatusCode::OK).await
}

pub(super) async fn regulator_page(
    p: &Portal,
    u: &Unlocked,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    let c = &u.session.client;
    let (hospitals, counts, flash) = match (c.hospitals().await, c.audit_counts().await) {
        (Ok(hospitals), Ok(counts)) => (
            hospitals
                .into_iter()
                .map(|h| HospitalRow {
                    name: h.name,
                    account: h.account.to_string(),
                    city: h.city,
                    specialisation: h.specialisation,
                    suspended: h.suspended,
                })
                .collect(),
            counts.into_iter().map(|(k, n)| (k.replace('_', " "), n)).collect(),
            flash,
        ),
        (Err(e), _) | (_, Err(e)) => (Vec::new(), Vec::new(), Flash::error(&e.into())),
    };
    let nodes = c
        .nodes()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|n| NodeRow {
            id: n.id,
            key: n.node_key,
            address: n.address,
            hospital: n.hospital.unwrap_or_default(),
            status: n.status,
        })
        .collect();
    let (organisations, flash) = match super::organisations::organisation_rows(u).await {
        Ok(rows) => (rows, flash),
        Err(e) => (Vec::new(), flash.or_else(|| Flash::error(&e))),
    };
    let mut page = render(&RegulatorPage {
        csrf: p.csrf(),
        me: Me::of(u),
        flash,
        hospitals,
        counts,
        nodes,
        organisations,
    });
    *page.status_mut() = status;
    page
}

#[derive(Deserialize)]
struct AdmitForm {
    identity: String,
    registration_id: String,
    name: String,
    city: String,
    specialisation: String,
    contact: String,
}

async fn admit(State(p): State<Portal>, Form(f): Form<AdmitForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Regulator], "admitting a hospital") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let hospital = crate::registry::NewHospital {
        identity: f.identity.trim().to_owned(),
        registration_id: f.registration_id.trim().to_owned(),
        name: f.name.trim().to_owned(),
        city: f.city.trim().to_owned(),
        specialisation: f.specialisation.trim().to_owned(),
        contact: f.contact.trim().to_owned(),
    };
    let result =
        crate::registry::admit_hospital(&u.session, &hospital).await.map(|(r, account)| {
            format!("{} admitted: account {account} (block {})", hospital.name, r.height)
        });
    match result {
        Ok(text) => p.done_with("/regulator", text),
        Err(e) => regulator_page(&p, &u, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

#[derive(Deserialize)]
struct StatusForm {
    hospital: String,
    /// `suspend` or `reinstate`.
    action: String,
    #[serde(default)]
    reason: String,
}

async fn set_status(State(p): State<Portal>, Form(f): Form<StatusForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Regulator], "suspending or reinstating a hospital") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let result = async {
        let (hospital, tx) = status_change(&f.hospital, &f.action, &f.reason)?;
        let (tx, done) = match tx {
            Some(reason) => (RegistryTx::SuspendHospital { hospital, reason }, "suspended"),
            None => (RegistryTx::ReinstateHospital { hospital }, "reinstated"),
        };
        let r = u.session.submit(TxBody::Registry(tx)).await?;
        anyhow::Ok(format!("hospital {hospital} {done} (block {})", r.height))
    }
    .await;
    match result {
        Ok(text) => p.done_with("/regulator", text),
        Err(e) => regulator_page(&p, &u, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

/// What a suspend-or-reinstate form asks of a party (a hospital or an organisation): its
/// account, and the suspension's reason (needed), or none to reinstate it.
pub(super) fn status_change(
    party: &str,
    action: &str,
    reason: &str,
) -> anyhow::Result<(AccountId, Option<String>)> {
    let account =
        party.trim().parse().map_err(|e| anyhow::anyhow!("{party:?} is not an account id: {e}"))?;
    match action {
        "suspend" => {
            let reason = reason.trim();
            anyhow::ensure!(!reason.is_empty(), "a suspension needs a reason");
            Ok((account, Some(reason.to_owned())))
        }
        "reinstate" => Ok((account, None)),
        other => anyhow::bail!("{other:?} is neither suspend nor reinstate"),
    }
}

#[derive(Deserialize)]
struct WindowForm {
    minutes: String,
}

/// The regulator sets how long a break-glass stays open.
async fn set_window(State(p): State<Portal>, Form(f): Form<WindowForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Regulator], "the break-glass window") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let result = async {
        let minutes: u32 = f
            .minutes
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{:?} is not a number of minutes", f.minutes))?;
        let tx = medledger_core::tx::emergency::EmergencyTx::SetWindow { minutes };
        let r = u.session.submit(TxBody::Emergency(tx)).await?;
        anyhow::Ok(format!("break-glass window set to {minutes} minutes (block {})", r.height))
    }
    .await;
    match result {
        Ok(text) => p.done_with("/regulator", text),
        Err(e) => regulator_page(&p, &u, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

#[derive(Deserialize)]
struct NodeForm {
    /// `admit`, `suspend`, `reinstate` or `remove`.
    action: String,
    node_key: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    hospital: String,
    /// For a removal (for good): the node key typed again.
    #[serde(default)]
    confirm: String,
}

/// The regulator admits a hospital's node, or suspends, reinstates or removes one (as
/// `medledger node`; the ledger's consequences change the Raft membership).
async fn node(State(p): State<Portal>, Form(f): Form<NodeForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Regulator], "changing the network's nodes") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let result = async {
        use medledger_client::nodes;
        let key = nodes::parse_node_key(&f.node_key)?;
        let (body, done) = match f.action.as_str() {
            "admit" => {
                let hospital: AccountId = f.hospital.trim().parse().map_err(|e| {
                    anyhow::anyhow!("{:?} is not a hospital's account id: {e}", f.hospital)
                })?;
                (nodes::admit(key, f.address.trim(), hospital)?, "admitted")
            }
            "suspend" => (nodes::suspend(key), "suspended"),
            "reinstate" => (nodes::reinstate(key), "reinstated"),
            "remove" => {
                anyhow::ensure!(
                    f.confirm.trim() == f.node_key.trim(),
                    "a node is removed for good: type its key again to confirm; nothing was done"
                );
                (nodes::remove(key), "removed")
            }
            other => anyhow::bail!("{other:?} is not admit, suspend, reinstate or remove"),
        };
        let r = u.session.submit(body).await?;
        anyhow::Ok(format!("node {key} {done} (block {})", r.height))
    }
    .await;
    match result {
        Ok(text) => p.done_with("/regulator", text),
        Err(e) => regulator_page(&p, &u, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}
