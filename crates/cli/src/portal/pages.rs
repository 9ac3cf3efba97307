//! The portal's pages and forms. Every page is rendered here from what the unlocked wallet
//! may read through its node; askama escapes every value put into HTML.

use std::{convert::Infallible, sync::Arc};

use askama::Template;
use axum::{
    Form, Router,
    extract::{Multipart, Path, Query, State},
    http::{StatusCode, header},
    response::{
        Html, IntoResponse, Redirect, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use medledger_api::{GrantState, GrantView, RecordView};

use medledger_core::{
    Hash,
    audit::{AuditEvent, AuditKind},
    ids::AccountId,
    tx::{
        ConsentTx, RecordTx, TxBody,
        consent::{Basis, Decision, Purpose, RecordCategory, Scope},
        emergency::ReasonCode,
        registry::Role,
    },
};
use serde::Deserialize;

use super::{Portal, Unlocked, guard};
use crate::common::{local_time, words};

/// How many of the newest events the access log shows (the export holds them all).
const SHOWN_EVENTS: usize = 1000;

/// The largest record the portal takes in one upload (the vault's own limit may be lower).
const UPLOAD_LIMIT: usize = 256 * 1024 * 1024;

pub fn routes() -> Router<Portal> {
    Router::new()
        .route("/", get(home))
        // Answered by the gate; the route exists so that the gate runs for it.
        .route("/login", get(|| async { StatusCode::NOT_FOUND }))
        .route("/unlock", get(unlock_form).post(unlock))
        .route("/lock", post(lock))
        .route("/records", get(records).post(upload))
        .route("/records/download", post(download))
        .route("/record", get(record_page).post(record_act))
        .route("/export", post(export))
        .route("/access-log", get(access_log))
        .route("/consent", get(consent))
        .route("/consent/grant", post(grant))
        .route("/consent/revoke", post(revoke))
        .route("/research/release", post(research_release))
        .route("/consent/request", post(request))
        .route("/consent/answer", post(answer))
        .route("/consent/deny", post(deny))
        .route("/consent/delegate", post(delegate))
        .route("/emergency/break-glass", post(break_glass))
        .route("/proof/{tx}", get(proof))
        .route("/events", get(events))
        .route("/static/portal.css", get(css))
        .route("/static/portal.js", get(js))
        .merge(super::admin::routes())
        .merge(super::emergency::routes())
        .merge(super::cases::routes())
        .merge(super::devices::routes())
        .merge(super::organisations::routes())
        .layer(axum::extract::DefaultBodyLimit::max(UPLOAD_LIMIT))
}

/// Whether an event is one to alarm its reader: a denial, a break-glass, a device alert.
pub fn is_alarm(e: &AuditEvent) -> bool {
    match &e.kind {
        AuditKind::Access { decision, .. } => {
            !matches!(decision, Decision::Allow(_))
                || matches!(decision, Decision::Allow(Basis::BreakGlass { .. }))
        }
        other => {
            let name = other.name();
            name.starts_with("break_glass") || name.contains("alert")
        }
    }
}

// ---------------------------------------------------------------------------------------
// The frame every page shares.

/// Who is signed in, for the page's header and navigation.
pub struct Me {
    pub(super) name: String,
    pub(super) account: String,
    pub(super) role: &'static str,
    pub(super) patient: bool,
    pub(super) doctor: bool,
    pub(super) hospital: bool,
    pub(super) regulator: bool,
    pub(super) organisation: bool,
}

impl Me {
    pub fn of(u: &Unlocked) -> Self {
        Me {
            name: u.session.wallet.name().to_owned(),
            account: u.session.wallet.account().to_string(),
            role: crate::common::role_word(&u.role),
            patient: u.role == Role::Patient,
            doctor: u.role == Role::Doctor,
            hospital: u.role == Role::Hospital,
            regulator: u.role == Role::Regulator,
            organisation: matches!(u.role, Role::Organisation(_)),
        }
    }
}

/// A message at the top of a page, after a form.
pub struct Flash {
    pub(super) ok: bool,
    pub(super) text: String,
}

impl Flash {
    pub fn ok(text: impl Into<String>) -> Option<Self> {
        Some(Flash { ok: true, text: text.into() })
    }
    pub fn error(e: &anyhow::Error) -> Option<Self> {
        Some(Flash { ok: false, text: format!("{e:#}") })
    }
}

pub fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => guard::refuse(StatusCode::INTERNAL_SERVER_ERROR, &format!("page: {e}")),
    }
}

/// Why a page is not served: the portal locked meanwhile (to the unlock form), or the page
/// is not for this account's role.
pub enum Stop {
    Locked,
    NotForRole(String),
}

impl IntoResponse for Stop {
    fn into_response(self) -> Response {
        match self {
            Stop::Locked => Redirect::to("/unlock").into_response(),
            Stop::NotForRole(why) => guard::refuse(StatusCode::FORBIDDEN, &why),
        }
    }
}

/// The unlocked wallet.
pub fn unlocked(p: &Portal) -> Result<Arc<Unlocked>, Stop> {
    p.unlocked().ok_or(Stop::Locked)
}

/// The unlocked wallet, if the page or form is for its role.
pub fn unlocked_as(p: &Portal, roles: &[Role], what: &str) -> Result<Arc<Unlocked>, Stop> {
    let u = unlocked(p)?;
    only(&u, roles, what)?;
    Ok(u)
}

/// Whose records, cases or devices a page shows: `patient` as typed (a Patient-ID or an
/// account id), or, when nothing was typed, the wallet's own if it is a patient's (no one's
/// otherwise).
pub async fn whose(u: &Unlocked, patient: &str) -> anyhow::Result<Option<AccountId>> {
    match patient.trim() {
        "" => Ok((u.role == Role::Patient).then(|| u.session.wallet.account())),
        typed => crate::record::resolve_patient(&u.session, typed).await.map(Some),
    }
}

/// The address of the page at `path` for `patient` (a Patient-ID or an account id, as typed;
/// none: the page as it opens).
pub fn for_patient(path: &str, patient: &str) -> String {
    match patient.trim() {
        "" => path.to_owned(),
        patient => format!("{path}?patient={}", urlencode(patient)),
    }
}

/// `page` with `status`.
pub fn with_status(mut page: Response, status: StatusCode) -> Response {
    *page.status_mut() = status;
    page
}

/// Refuses a page or form that is not for the unlocked account's role.
pub fn only(u: &Unlocked, roles: &[Role], what: &str) -> Result<(), Stop> {
    if roles.contains(&u.role) {
        return Ok(());
    }
    Err(Stop::NotForRole(format!(
        "refused: {what} is not for a {} account",
        crate::common::role_word(&u.role)
    )))
}

// ---------------------------------------------------------------------------------------
// Unlock, lock, home.

#[derive(Template)]
#[template(path = "portal/unlock.html")]
struct UnlockPage {
    csrf: String,
    wallet: String,
    error: Option<String>,
}

async fn unlock_form(State(p): State<Portal>) -> Response {
    if p.unlocked().is_some() {
        return Redirect::to("/").into_response();
    }
    render(&UnlockPage {
        csrf: p.csrf(),
        wallet: p.wallet.wallet.display().to_string(),
        error: None,
    })
}

#[derive(Deserialize)]
struct UnlockForm {
    passphrase: String,
}

async fn unlock(State(p): State<Portal>, Form(mut form): Form<UnlockForm>) -> Response {
    let unlocked = p.unlock(&form.passphrase).await;
    zeroize::Zeroize::zeroize(&mut form.passphrase);
    match unlocked {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "portal: unlock refused");
            let page = UnlockPage {
                csrf: p.csrf(),
                wallet: p.wallet.wallet.display().to_string(),
                error: Some(format!("{e:#}")),
            };
            let mut response = render(&page);
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
    }
}

async fn lock(State(p): State<Portal>) -> Response {
    p.lock();
    Redirect::to("/unlock").into_response()
}

#[derive(Template)]
#[template(path = "portal/home.html")]
struct HomePage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    chain: String,
    node: String,
    patient_id: Option<String>,
}

async fn home(State(p): State<Portal>) -> Response {
    let u = match unlocked(&p) {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let me = u.session.wallet.account();
    let patient_id = match u.session.client.account(&me).await {
        Ok(Some(a)) => a.patient_id.map(|id| id.to_string()),
        _ => None,
    };
    render(&HomePage {
        csrf: p.csrf(),
        me: Me::of(&u),
        flash: None,
        chain: u.session.chain_id.clone(),
        node: u.session.client.base_url().to_owned(),
        patient_id,
    })
}

// ---------------------------------------------------------------------------------------
// Records.

/// A record as a row.
pub struct RecordRow {
    pmr: String,
    category: String,
    date: String,
    size: u64,
    cid: String,
    author: String,
    status: &'static str,
    readable: bool,
}

impl RecordRow {
    fn of(r: &RecordView, u: &Unlocked) -> Self {
        let status = if r.erased_at.is_some() {
            "erased"
        } else if r.superseded_by.is_some() {
            "superseded"
        } else {
            "current"
        };
        RecordRow {
            pmr: r.pmr.clone(),
            category: words(&r.category),
            date: r.visit_date.to_string(),
            size: r.size,
            cid: r.cid.clone(),
            author: u.names.of(&r.author),
            status,
            readable: r.erased_at.is_none(),
        }
    }
}

#[derive(Template)]
#[template(path = "portal/records.html")]
struct RecordsPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    /// Whose records are shown (the patient's own page: none asked).
    patient: String,
    rows: Vec<RecordRow>,
    categories: Vec<&'static str>,
    codes: Vec<&'static str>,
    /// A break-glass just declared: its id and end (ms since the epoch, for the countdown).
    declared: Option<(String, u64)>,
    /// For a doctor: the patients whose grants to them are in force or yet to begin.
    my_patients: Vec<MyPatientRow>,
}

/// A patient who granted the doctor access, as a row of the doctor's records page.
pub struct MyPatientRow {
    account: String,
    grants: Vec<GrantRow>,
}

/// The patients whose grants to the unlocked doctor are in force or yet to begin, each
/// grant judged by the node's clock.
async fn my_patients(u: &Unlocked) -> anyhow::Result<Vec<MyPatientRow>> {
    let view = u.session.client.granted_to_me().await?;
    let name = |a: &AccountId| u.names.of(a);
    Ok(view
        .patients
        .iter()
        .map(|p| MyPatientRow {
            account: p.patient.to_string(),
            grants: p.grants.iter().map(|g| grant_row(g, view.time_ms, &name)).collect(),
        })
        .filter(|p| p.grants.iter().any(|g| g.active))
        .collect())
}

#[derive(Deserialize)]
struct RecordsQuery {
    patient: Option<String>,
    minted: Option<String>,
}

async fn records(State(p): State<Portal>, Query(q): Query<RecordsQuery>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient, Role::Doctor], "the records page") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    records_page_minted(&p, &u, q.patient.unwrap_or_default(), q.minted).await
}

async fn records_page(p: &Portal, u: &Unlocked, patient: String, flash: Option<Flash>) -> Response {
    records_page_with(p, u, patient, flash, None, None).await
}

/// The records page after an upload: "record X added" only if X is among the records listed
/// (the address is the upload's redirect, which anyone could also link to).
async fn records_page_minted(
    p: &Portal,
    u: &Unlocked,
    patient: String,
    minted: Option<String>,
) -> Response {
    match p.take_outcome("/records") {
        Some(o) => records_page_with(p, u, patient, Flash::ok(o.text), o.declared, minted).await,
        None => records_page_with(p, u, patient, None, None, minted).await,
    }
}

async fn records_page_with(
    p: &Portal,
    u: &Unlocked,
    patient: String,
    flash: Option<Flash>,
    declared: Option<(String, u64)>,
    minted: Option<String>,
) -> Response {
    let s = &u.session;
    let listed = match whose(u, &patient).await {
        Ok(Some(account)) => {
            s.client.records_of_patient(&account).await.map_err(anyhow::Error::from)
        }
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e),
    };
    let (rows, flash) = match listed {
        Ok(list) => {
            let flash = match minted {
                Some(pmr) if flash.is_none() && list.iter().any(|r| r.pmr == pmr) => {
                    Flash::ok(format!("record {pmr} added"))
                }
                _ => flash,
            };
            (list.iter().map(|r| RecordRow::of(r, u)).collect(), flash)
        }
        Err(e) => (Vec::new(), Flash::error(&e)),
    };
    let (my_patients, flash) = match u.role {
        Role::Doctor => match my_patients(u).await {
            Ok(list) => (list, flash),
            Err(e) => (Vec::new(), flash.or_else(|| Flash::error(&e))),
        },
        _ => (Vec::new(), flash),
    };
    render(&RecordsPage {
        csrf: p.csrf(),
        me: Me::of(u),
        flash,
        patient,
        rows,
        categories: RecordCategory::ALL.iter().map(|c| c.name()).collect(),
        codes: ReasonCode::ALL.iter().map(|c| c.name()).collect(),
        declared,
        my_patients,
    })
}

#[derive(Deserialize)]
struct BreakGlassForm {
    patient: String,
    code: String,
    reason: String,
}

/// A doctor declares break-glass: a coded reason and a text of at least 20 characters
/// (sealed to the patient, the doctor's hospital and the regulator). The page then counts
/// down to the end of the window.
async fn break_glass(State(p): State<Portal>, Form(form): Form<BreakGlassForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Doctor], "break-glass") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let declared = async {
        let code: ReasonCode = form.code.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        crate::emergency::break_glass(&u.session, form.patient.trim(), code, &form.reason).await
    }
    .await;
    let patient = form.patient.trim().to_owned();
    match declared {
        // To the records page, which shows it once: reloading that page declares nothing.
        Ok(b) => {
            let text = format!(
                "BREAK-GLASS declared: id {}; the patient, their delegates and your hospital \
                 are told",
                b.id
            );
            let declared = Some((b.id.to_string(), b.until_ms));
            p.done(
                &for_patient("/records", &patient),
                super::Outcome { text, declared, card: None },
            )
        }
        Err(e) => {
            let mut page = records_page(&p, &u, patient, Flash::error(&e)).await;
            *page.status_mut() = StatusCode::BAD_REQUEST;
            page
        }
    }
}

#[derive(Template)]
#[template(path = "portal/record.html")]
struct RecordPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    pmr: String,
    /// Every version, newest first.
    versions: Vec<RecordRow>,
    /// The wallet is the record's patient: it may share and erase it (and take it back).
    patient: bool,
    /// The wallet is the record's patient or holds it: it may transfer it.
    holder: bool,
}

#[derive(Deserialize)]
struct RecordQuery {
    pmr: String,
}

/// One record: its versions, and for its owner (the patient) share, transfer and erase.
async fn record_page(State(p): State<Portal>, Query(q): Query<RecordQuery>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient, Role::Doctor], "a record's page") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let flash = p.take_outcome("/record").and_then(|o| Flash::ok(o.text));
    one_record_page(&p, &u, q.pmr, flash, StatusCode::OK).await
}

async fn one_record_page(
    p: &Portal,
    u: &Unlocked,
    pmr: String,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    let s = &u.session;
    let me = s.wallet.account();
    let (versions, patient, holder, flash) = match s.client.record_history(&pmr).await {
        Ok(list) if !list.is_empty() => {
            let this = list.iter().find(|r| r.pmr == pmr);
            let patient = this.is_some_and(|r| r.patient == me);
            let holder = patient || this.is_some_and(|r| r.owner == me);
            (list.iter().rev().map(|r| RecordRow::of(r, u)).collect(), patient, holder, flash)
        }
        Ok(_) => {
            let none = anyhow::anyhow!("no record {pmr} (or you may not see it)");
            (Vec::new(), false, false, flash.or_else(|| Flash::error(&none)))
        }
        Err(e) => (Vec::new(), false, false, flash.or_else(|| Flash::error(&e.into()))),
    };
    let mut page = render(&RecordPage {
        csrf: p.csrf(),
        me: Me::of(u),
        flash,
        pmr,
        versions,
        patient,
        holder,
    });
    *page.status_mut() = status;
    page
}

#[derive(Deserialize)]
struct RecordAct {
    pmr: String,
    /// `share`, `transfer` or `erase`.
    action: String,
    #[serde(default)]
    to: String,
    /// For transfer and erase: the record's PMR-ID typed again.
    #[serde(default)]
    confirm: String,
}

/// The owner shares a record's key with an account, transfers the record (to a guardian,
/// say) or erases it; transfer and erase need the PMR-ID typed again.
async fn record_act(State(p): State<Portal>, Form(f): Form<RecordAct>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "sharing, transferring or erasing a record") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let done = async {
        let s = &u.session;
        let to = || -> anyhow::Result<AccountId> {
            f.to.trim().parse().map_err(|e| anyhow::anyhow!("{:?} is not an account id: {e}", f.to))
        };
        let confirmed = || {
            anyhow::ensure!(
                f.confirm.trim() == f.pmr,
                "type the record's PMR-ID ({}) to confirm; nothing was done",
                f.pmr
            );
            anyhow::Ok(())
        };
        match f.action.as_str() {
            "share" => {
                let with = to()?;
                let record = crate::record::proven_record(s, &f.pmr).await?;
                let height = crate::record::share_with(s, &record, with).await?;
                anyhow::Ok(format!(
                    "record {}: its key wrapped to {} (block {height}); they still need a grant to read it",
                    f.pmr,
                    u.names.of(&with)
                ))
            }
            "transfer" => {
                let to = to()?;
                confirmed()?;
                let r = s.submit(TxBody::Records(RecordTx::Transfer { record: f.pmr.clone(), to })).await?;
                anyhow::Ok(format!("record {} transferred to {} (block {})", f.pmr, u.names.of(&to), r.height))
            }
            "erase" => {
                confirmed()?;
                let r = s.submit(TxBody::Records(RecordTx::Erase { record: f.pmr.clone() })).await?;
                anyhow::Ok(format!(
                    "record {} erased (block {}): its content and keys are being destroyed; the token remains, marked erased",
                    f.pmr, r.height
                ))
            }
            other => anyhow::bail!("{other:?} is not share, transfer or erase"),
        }
    }
    .await;
    match done {
        Ok(text) => p.done_with(&format!("/record?pmr={}", urlencode(&f.pmr)), text),
        Err(e) => one_record_page(&p, &u, f.pmr, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

#[derive(Deserialize)]
struct DownloadForm {
    pmr: String,
    /// The patient whose records the page showed (kept on the page that reports a refusal).
    #[serde(default)]
    patient: String,
    /// A break-glass of this doctor's to read the record under (`record get --break-glass`).
    #[serde(default)]
    break_glass: String,
}

/// The audited read of a record, decrypted here and sent as an attachment: always as
/// `application/octet-stream`, so that no record is ever rendered in the portal's origin.
async fn download(State(p): State<Portal>, Form(form): Form<DownloadForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient, Role::Doctor], "reading a record") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let decrypted = async {
        let break_glass = match form.break_glass.trim() {
            "" => None,
            id => Some(
                id.parse::<Hash>()
                    .map_err(|e| anyhow::anyhow!("{id:?} is no break-glass id: {e}"))?,
            ),
        };
        decrypt_record(&u, &form.pmr, break_glass).await
    }
    .await;
    match decrypted {
        Ok((name, file, len)) => {
            let disposition = format!("attachment; filename=\"{}\"", safe_file_name(&name));
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                    (header::CONTENT_LENGTH, len.to_string()),
                ],
                axum::body::Body::from_stream(file_stream(file)),
            )
                .into_response()
        }
        Err(e) => {
            let mut page = records_page(&p, &u, form.patient, Flash::error(&e)).await;
            *page.status_mut() = StatusCode::FORBIDDEN;
            page
        }
    }
}

/// Everything of the patient's in one click: a tar archive of every current record
/// (decrypted here; each an audited read, as a download), the record list, the grants in
/// force and the whole audit trail as JSON.
async fn export(State(p): State<Portal>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "the export of a patient's records") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    match export_archive(&u).await {
        Ok((name, file, len)) => (
            [
                (header::CONTENT_TYPE, "application/x-tar".to_owned()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
                (header::CONTENT_LENGTH, len.to_string()),
            ],
            axum::body::Body::from_stream(file_stream(file)),
        )
            .into_response(),
        Err(e) => {
            let mut page = records_page(&p, &u, String::new(), Flash::error(&e)).await;
            *page.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            page
        }
    }
}

/// The export, written to an anonymous temporary file (each record decrypted into one of
/// its own first, then copied in): its name, the archive file (at its start) and its length.
async fn export_archive(u: &Unlocked) -> anyhow::Result<(String, std::fs::File, u64)> {
    use std::io::Seek;
    let s = &u.session;
    let me = s.wallet.account();
    let records = s.client.records_of_patient(&me).await?;
    let grants = s.client.who_can_see(&me).await?;
    let root = format!("medledger-export-{me}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut archive = tar::Builder::new(tempfile::tempfile()?);
    let mut add = |path: &str, len: u64, data: &mut dyn std::io::Read| -> anyhow::Result<()> {
        let mut head = tar::Header::new_gnu();
        head.set_size(len);
        head.set_mode(0o600);
        head.set_mtime(now);
        archive.append_data(&mut head, format!("{root}/{path}"), data)?;
        anyhow::Ok(())
    };
    let json = serde_json::to_vec_pretty(&records)?;
    add("records.json", json.len() as u64, &mut json.as_slice())?;
    let json = serde_json::to_vec_pretty(&grants)?;
    add("who-can-see.json", json.len() as u64, &mut json.as_slice())?;
    for r in records.iter().filter(|r| r.erased_at.is_none() && r.superseded_by.is_none()) {
        let (name, mut file, len) = decrypt_record(u, &r.pmr, None).await?;
        // Both parts of the name reduced to safe characters: no path in the archive.
        let path = format!("records/{}-{}", safe_file_name(&r.pmr), safe_file_name(&name));
        add(&path, len, &mut file)?;
    }
    // The trail last: it includes the reads of this export.
    let trail = s.client.audit_trail_all(&me, None).await?;
    let json = serde_json::to_vec_pretty(&trail)?;
    add("audit-trail.json", json.len() as u64, &mut json.as_slice())?;
    let mut file = archive.into_inner()?;
    let len = file.stream_position()?;
    file.rewind()?;
    Ok((format!("{root}.tar"), file, len))
}

/// A file name with nothing but letters, digits, `.`, `-` and `_` (others become `_`).
fn safe_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(100)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    if cleaned.trim_matches('.').is_empty() { "record".into() } else { cleaned }
}

/// Reads and decrypts record `pmr` (audited: for treatment, or under a break-glass of this
/// doctor's for emergency) into an anonymous temporary file
/// ([`crate::record::read_to_tempfile`]): its file name, the file and its length.
async fn decrypt_record(
    u: &Unlocked,
    pmr: &str,
    break_glass: Option<Hash>,
) -> anyhow::Result<(String, std::fs::File, u64)> {
    let purpose = if break_glass.is_some() { Purpose::Emergency } else { Purpose::Treatment };
    let (meta, file, len) =
        crate::record::read_to_tempfile(&u.session, pmr, purpose, break_glass, None).await?;
    let name = meta.file_name.clone().unwrap_or_else(|| format!("{pmr}.bin"));
    Ok((name, file, len))
}

/// A file's bytes as a response body, 64 KiB at a time.
fn file_stream(
    file: std::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> + Send {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(tokio::fs::File::from_std(file), |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

/// A doctor's upload (multipart, from the page's script, which sends the CSRF header):
/// the file is encrypted here and minted for the patient; then the patient's records.
async fn upload(State(p): State<Portal>, multipart: Multipart) -> Response {
    let u = match unlocked_as(&p, &[Role::Doctor], "adding a record") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    match mint_upload(&p, &u, multipart).await {
        Ok((patient, pmr)) => Redirect::to(&format!(
            "/records?patient={}&minted={}",
            urlencode(&patient),
            urlencode(&pmr)
        ))
        .into_response(),
        Err(e) => {
            guard::refuse(StatusCode::BAD_REQUEST, &format!("the record was not added: {e:#}"))
        }
    }
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|x| x.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

async fn mint_upload(
    p: &Portal,
    u: &Arc<Unlocked>,
    mut multipart: Multipart,
) -> anyhow::Result<(String, String)> {
    use anyhow::{Context, bail};
    use std::io::{Seek, Write};
    let (mut patient, mut category, mut title) = (None, None, None);
    let mut file: Option<(std::fs::File, String, u64)> = None;
    while let Some(mut field) = multipart.next_field().await.context("reading the upload")? {
        match field.name().unwrap_or("") {
            "patient" => patient = Some(field.text().await?),
            "category" => category = Some(field.text().await?),
            "title" => title = Some(field.text().await?),
            "file" => {
                let name = field.file_name().unwrap_or("record").to_owned();
                let mut out = tempfile::tempfile()?;
                let mut len = 0u64;
                while let Some(chunk) = field.chunk().await.context("reading the file")? {
                    len += chunk.len() as u64;
                    out.write_all(&chunk)?;
                }
                out.rewind()?;
                file = Some((out, name, len));
            }
            other => bail!("unexpected form field {other:?}"),
        }
    }
    let patient_text = patient.filter(|p| !p.trim().is_empty()).context("no patient given")?;
    let category: RecordCategory =
        category.context("no category given")?.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (input, file_name, len) = file.context("no file given")?;
    if len == 0 {
        bail!("the file is empty");
    }
    // A slow upload may outlast the lock: nothing is signed for it after the lock.
    if !p.still(u) {
        bail!("the portal was locked during the upload; unlock it and add the record again");
    }
    let s = &u.session;
    let patient = crate::record::resolve_patient(s, patient_text.trim()).await?;
    let visit_date = crate::record::today();
    let meta = medledger_client::envelope::RecordMetadata {
        title: title.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| file_name.clone()),
        content_type: crate::record::guess_content_type(std::path::Path::new(&file_name))
            .to_owned(),
        date: visit_date.to_string(),
        notes: String::new(),
        file_name: Some(file_name),
    };
    let minted =
        crate::record::mint(s, patient, input, |_| {}, category, meta, visit_date, None, None)
            .await?;
    Ok((patient_text.trim().to_owned(), minted.pmr))
}

// ---------------------------------------------------------------------------------------
// The access log.

/// An audit event as a row of the access log.
pub struct LogRow {
    seq: u64,
    when: String,
    who: String,
    who_id: String,
    role: String,
    hospital: String,
    what: String,
    class: &'static str,
    tx: String,
}

#[derive(Template)]
#[template(path = "portal/access_log.html")]
struct AccessLogPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    rows: Vec<LogRow>,
}

fn row_class(e: &AuditEvent) -> &'static str {
    match &e.kind {
        AuditKind::Access { decision: Decision::Allow(Basis::BreakGlass { .. }), .. } => {
            "break-glass"
        }
        AuditKind::Access { decision: Decision::Allow(_), .. } => "allowed",
        AuditKind::Access { decision: Decision::Deny(_), .. } => "denied",
        other if other.name().starts_with("break_glass") => "break-glass",
        _ => "event",
    }
}

async fn access_log(State(p): State<Portal>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "the access log") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let s = &u.session;
    let (rows, flash) = match s.client.audit_trail_all(&s.wallet.account(), None).await {
        Ok(events) => (
            events
                .iter()
                .rev()
                .take(SHOWN_EVENTS)
                .map(|e| LogRow {
                    seq: e.seq,
                    when: local_time(e.time_ms),
                    who: u.names.name(&e.actor).map_or_else(|| e.actor.to_string(), str::to_owned),
                    who_id: e.actor.to_string(),
                    role: match u.directory.get(&e.actor) {
                        Some((role, _)) => (*role).to_owned(),
                        None if e.actor == s.wallet.account() => "patient".into(),
                        None => String::new(),
                    },
                    hospital: u.directory.get(&e.actor).map(|(_, h)| h.clone()).unwrap_or_default(),
                    what: crate::audit::what(e, &u.names),
                    class: row_class(e),
                    tx: e.tx_hash.to_string(),
                })
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Flash::error(&e.into())),
    };
    render(&AccessLogPage { csrf: p.csrf(), me: Me::of(&u), flash, rows })
}

#[derive(Template)]
#[template(path = "portal/proof.html")]
struct ProofPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    tx: String,
    height: u64,
    checkpoint: u64,
    verified: bool,
}

/// A transaction's inclusion proof, checked here under the checkpoint of a node the pinned
/// regulator admitted, and that checkpoint against the wallet's history (as `medledger
/// prove`): a lagging or forked node's proof is not shown as verified.
async fn proof(State(p): State<Portal>, Path(tx): Path<String>) -> Response {
    let u = match unlocked(&p) {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let checked = async {
        let hash: Hash = tx.parse().map_err(|e| anyhow::anyhow!("{tx:?} is no hash: {e}"))?;
        let s = &u.session;
        let resp = s.client.transaction(&hash).await?;
        let genesis = s.client.genesis().await?;
        let node_id = s.client.admitted_signer(&resp.checkpoint, &s.anchor, &genesis).await?;
        let proven = medledger_client::proof::verify_tx_proof(&resp, &resp.checkpoint.signer)?;
        anyhow::ensure!(proven.hash() == hash, "the node proved another transaction");
        u.extend_history(resp.checkpoint.clone(), node_id).await?;
        anyhow::Ok((resp.receipt.height, resp.checkpoint.checkpoint.height))
    }
    .await;
    let (height, checkpoint, verified, flash) = match checked {
        Ok((h, c)) => (h, c, true, None),
        Err(e) => (0, 0, false, Flash::error(&e)),
    };
    render(&ProofPage { csrf: p.csrf(), me: Me::of(&u), flash, tx, height, checkpoint, verified })
}

// ---------------------------------------------------------------------------------------
// Consent.

/// A grant as a row.
pub struct GrantRow {
    id: String,
    grantee: String,
    scope: String,
    purpose: String,
    until: String,
    active: bool,
    revocable: bool,
    state: &'static str,
}

/// A grant as the consent page lists it, where it stands at `node_ms` of the node's clock:
/// in force or not yet begun (both revocable) among the current grants, expired or revoked
/// among the past.
fn grant_row(g: &GrantView, node_ms: u64, name: &dyn Fn(&AccountId) -> String) -> GrantRow {
    let state = g.state_at(node_ms);
    GrantRow {
        id: g.id.to_string(),
        grantee: name(&g.grantee),
        scope: scope_words(&g.scope),
        purpose: words(&g.purpose),
        until: local_time(g.validity.expires_at_ms),
        active: matches!(state, GrantState::Active | GrantState::NotYet),
        // The ledger lists a grant until a block passes its end: revocable until then, whatever
        // a clock says.
        revocable: g.revoked_at.is_none(),
        state: state.word(),
    }
}

impl GrantRow {
    /// The row's CSS class: its state, one word.
    fn state_class(&self) -> String {
        self.state.replace(' ', "-")
    }
}

fn scope_words(scope: &Scope) -> String {
    match scope {
        Scope::All => "all records".into(),
        Scope::Categories(cs) => cs.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
        Scope::Records(ids) => format!("records {}", ids.join(", ")),
        Scope::Case(id) => format!("case {id}"),
    }
}

#[derive(Template)]
#[template(path = "portal/consent.html")]
struct ConsentPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    /// The grants in force.
    grants: Vec<GrantRow>,
    /// The grants no longer in force: expired or revoked.
    past: Vec<GrantRow>,
    requests: Vec<RequestRow>,
    denials: Vec<DenyRow>,
    delegates: Vec<(String, String)>,
    categories: Vec<&'static str>,
}

/// A deny rule as a row: its id and what it covers, in words.
pub struct DenyRow {
    id: String,
    covers: String,
}

/// A form field, trimmed, if not empty.
fn some(v: &str) -> Option<&str> {
    Some(v.trim()).filter(|v| !v.is_empty())
}

fn deny_words(r: &medledger_core::tx::consent::DenyRule, u: &Unlocked) -> String {
    let mut parts = Vec::new();
    if let Some(g) = &r.grantee {
        parts.push(u.names.of(g));
    }
    if let Some(role) = &r.grantee_role {
        parts.push(format!("every {}", crate::common::role_word(role)));
    }
    if let Some(c) = &r.category {
        parts.push(format!("{} records", words(c)));
    }
    if let Some(p) = &r.purpose {
        parts.push(format!("for {}", words(p)));
    }
    // Every part must match for the rule to reach an access.
    parts.join(" and ")
}

/// A pending access request, as a row the patient answers.
pub struct RequestRow {
    id: String,
    requester: String,
    scope: String,
    purpose: String,
    when: String,
}

/// The requests to `patient` still pending: found through the trail's `Requested` events,
/// each shown as its own transaction says (proven, as the answer form approves it), the node's
/// view used only for whether it is still pending.
async fn pending_requests(u: &Unlocked) -> anyhow::Result<Vec<RequestRow>> {
    let s = &u.session;
    let mut rows = Vec::new();
    for e in s.client.audit_trail_all(&s.wallet.account(), None).await?.iter().rev() {
        let AuditKind::Requested { request, .. } = &e.kind else { continue };
        if s.client.access_request(request).await?.status != "pending" {
            continue;
        }
        let r = crate::consent::proven_request(s, request).await?;
        rows.push(RequestRow {
            id: request.to_string(),
            requester: r.requester_words(),
            scope: scope_words(&r.scope),
            purpose: words(&r.purpose),
            when: local_time(e.time_ms),
        });
    }
    Ok(rows)
}

async fn consent(State(p): State<Portal>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "consent") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let flash = p.take_outcome("/consent").and_then(|o| Flash::ok(o.text));
    consent_page(&p, &u, flash).await
}

async fn consent_page(p: &Portal, u: &Unlocked, flash: Option<Flash>) -> Response {
    let s = &u.session;
    let mut denials = Vec::new();
    let mut delegates = Vec::new();
    let (grants, flash) = match s.client.who_can_see(&s.wallet.account()).await {
        Ok(view) => {
            denials = view
                .deny_rules
                .iter()
                .map(|d| DenyRow { id: d.id.to_string(), covers: deny_words(&d.rule, u) })
                .collect();
            delegates = view.delegates.iter().map(|d| (d.to_string(), u.names.of(d))).collect();
            // Judged by the node's clock, as its next block will: the portal's may be off.
            let name = |a: &AccountId| u.names.of(a);
            let mut rows: Vec<GrantRow> = (view.upcoming.iter().rev())
                .chain(view.grants.iter().rev())
                .map(|g| grant_row(g, view.time_ms, &name))
                .collect();
            // Then the grants the ledger holds as over (newest first): nothing to revoke.
            rows.extend(
                view.past
                    .iter()
                    .map(|g| GrantRow { revocable: false, ..grant_row(g, view.time_ms, &name) }),
            );
            (rows, flash)
        }
        Err(e) => (Vec::new(), Flash::error(&e.into())),
    };
    let (requests, flash) = match pending_requests(u).await {
        Ok(requests) => (requests, flash),
        Err(e) => (Vec::new(), flash.or_else(|| Flash::error(&e))),
    };
    let (grants, past): (Vec<GrantRow>, Vec<GrantRow>) =
        grants.into_iter().partition(|g: &GrantRow| g.active);
    render(&ConsentPage {
        csrf: p.csrf(),
        me: Me::of(u),
        flash,
        grants,
        past,
        requests,
        denials,
        delegates,
        categories: RecordCategory::ALL.iter().map(|c| c.name()).collect(),
    })
}

#[derive(Deserialize)]
struct GrantForm {
    grantee: String,
    scope: String,
    purpose: String,
    days: u64,
}

async fn grant(State(p): State<Portal>, Form(form): Form<GrantForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "granting access") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let granted = async {
        let grantee: AccountId = form
            .grantee
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{:?} is not an account id: {e}", form.grantee))?;
        let scope = match form.scope.as_str() {
            "all" => Scope::All,
            c => Scope::Categories(vec![c.parse().map_err(|e| anyhow::anyhow!("{e}"))?]),
        };
        let purpose =
            crate::record::parse_purpose(&form.purpose).map_err(|e| anyhow::anyhow!("{e}"))?;
        let me = u.session.wallet.account();
        let body = ConsentTx::Grant {
            patient: me,
            grantee,
            scope: scope.clone(),
            purpose,
            validity: crate::consent::validity(form.days)?,
        };
        u.session.submit(TxBody::Consent(body)).await?;
        let wrapped = crate::consent::wrap_for_grant(&u.session, me, grantee, &scope).await?;
        anyhow::Ok(format!(
            "access granted to {} ({}){}",
            u.names.of(&grantee),
            wrapped_words(&wrapped),
            unproven_words(&wrapped)
        ))
    }
    .await;
    match granted {
        Ok(text) => p.done_with("/consent", text),
        Err(e) => {
            with_status(consent_page(&p, &u, Flash::error(&e)).await, StatusCode::BAD_REQUEST)
        }
    }
}

/// How many record keys a grant wrapped, to the grantee and (an organisation) its members.
fn wrapped_words(w: &crate::consent::Wrapped) -> String {
    if w.per_export {
        return crate::consent::PER_EXPORT_NOTE.to_owned();
    }
    let mut text = format!("{} record key(s) wrapped to them", w.grantee);
    if !w.members.is_empty() {
        let keys: usize = w.members.iter().map(|(_, n)| n).sum();
        text.push_str(&format!(", {keys} to their {} member(s)", w.members.len()));
    }
    text
}

/// The members a node listed that the ledger does not prove, if any (no key went to them).
fn unproven_words(w: &crate::consent::Wrapped) -> String {
    if w.unproven.is_empty() {
        return String::new();
    }
    let list: Vec<String> = w.unproven.iter().map(ToString::to_string).collect();
    format!(
        "; not wrapped to {}: the node lists them as members but the ledger does not prove it",
        list.join(", ")
    )
}

#[derive(Deserialize)]
struct RevokeForm {
    grant: String,
}

async fn revoke(State(p): State<Portal>, Form(form): Form<RevokeForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "revoking a grant") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let revoked = async {
        let grant: Hash = form
            .grant
            .parse()
            .map_err(|e| anyhow::anyhow!("{:?} is no grant id: {e}", form.grant))?;
        u.session.submit(TxBody::Consent(ConsentTx::Revoke { grant })).await?;
        anyhow::Ok(format!("grant {grant} revoked"))
    }
    .await;
    match revoked {
        Ok(text) => p.done_with("/consent", text),
        Err(e) => {
            with_status(consent_page(&p, &u, Flash::error(&e)).await, StatusCode::BAD_REQUEST)
        }
    }
}

/// The patient releases to researchers the keys of the records their research exports named
/// (`medledger research release`: each export proven in the ledger first).
async fn research_release(State(p): State<Portal>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "releasing keys to researchers") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    match crate::research::release(&u.session).await {
        Ok(r) if r.released.is_empty() => {
            p.done_with("/consent", "no key to release: no research export of the last day named a record whose key is not released".into())
        }
        Ok(r) => {
            let list: Vec<String> = r
                .released
                .iter()
                .map(|k| format!("{} to {} ({})", k.pmr, u.names.of(&k.member), k.project))
                .collect();
            p.done_with("/consent", format!("keys released: {}", list.join(", ")))
        }
        Err(e) => {
            with_status(consent_page(&p, &u, Flash::error(&e)).await, StatusCode::BAD_REQUEST)
        }
    }
}

#[derive(Deserialize)]
struct RequestForm {
    patient: String,
    purpose: String,
}

/// A doctor asks a patient for access to all their records (the patient answers in their
/// portal or with `consent approve`).
async fn request(State(p): State<Portal>, Form(form): Form<RequestForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Doctor], "asking for access") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let asked = async {
        let patient = crate::record::resolve_patient(&u.session, form.patient.trim()).await?;
        let purpose =
            crate::record::parse_purpose(&form.purpose).map_err(|e| anyhow::anyhow!("{e}"))?;
        let body = ConsentTx::Request { patient, scope: Scope::All, purpose };
        u.session.submit(TxBody::Consent(body)).await?;
        anyhow::Ok(format!("access to the records of {patient} requested; the patient is told"))
    }
    .await;
    let patient = form.patient.trim().to_owned();
    match asked {
        Ok(text) => p.done_with(&for_patient("/records", &patient), text),
        Err(e) => with_status(
            records_page(&p, &u, patient, Flash::error(&e)).await,
            StatusCode::BAD_REQUEST,
        ),
    }
}

#[derive(Deserialize)]
struct AnswerForm {
    request: String,
    /// `approve` or `decline`.
    answer: String,
    #[serde(default = "thirty")]
    days: u64,
}

fn thirty() -> u64 {
    30
}

/// The patient approves (a grant for what was asked, the record keys wrapped to the
/// requester) or declines a request.
async fn answer(State(p): State<Portal>, Form(form): Form<AnswerForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "answering a request") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let answered = async {
        let id: Hash = form
            .request
            .parse()
            .map_err(|e| anyhow::anyhow!("{:?} is no request id: {e}", form.request))?;
        // The request as its own transaction says, proven: not as the node lists it.
        let r = crate::consent::proven_request(&u.session, &id).await?;
        anyhow::ensure!(r.patient == u.session.wallet.account(), "request {id} is not to you");
        match form.answer.as_str() {
            "approve" => {
                let validity = crate::consent::validity(form.days)?;
                let body = ConsentTx::Approve { request: id, scope: r.scope.clone(), validity };
                u.session.submit(TxBody::Consent(body)).await?;
                let me = u.session.wallet.account();
                let wrapped =
                    crate::consent::wrap_for_grant(&u.session, me, r.requester, &r.scope).await?;
                anyhow::Ok(format!(
                    "request approved: {} may read {} for {} ({}){}",
                    r.requester_words(),
                    scope_words(&r.scope),
                    words(&r.purpose),
                    wrapped_words(&wrapped),
                    unproven_words(&wrapped)
                ))
            }
            "decline" => {
                u.session.submit(TxBody::Consent(ConsentTx::Decline { request: id })).await?;
                anyhow::Ok(format!("request from {} declined", r.requester_words()))
            }
            other => anyhow::bail!("{other:?} is neither approve nor decline"),
        }
    }
    .await;
    match answered {
        Ok(text) => p.done_with("/consent", text),
        Err(e) => {
            with_status(consent_page(&p, &u, Flash::error(&e)).await, StatusCode::BAD_REQUEST)
        }
    }
}

#[derive(Deserialize)]
struct DenyForm {
    /// `add` or `remove`.
    action: String,
    #[serde(default)]
    rule: String,
    #[serde(default)]
    grantee: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    purpose: String,
}

/// The patient adds a deny rule (it overrides every grant it reaches) or removes one.
async fn deny(State(p): State<Portal>, Form(f): Form<DenyForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "deny rules") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let done = async {
        let me = u.session.wallet.account();
        let tx = match f.action.as_str() {
            "add" => {
                let grantee = some(&f.grantee)
                    .map(|g| g.parse::<AccountId>())
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("{:?} is not an account id: {e}", f.grantee))?;
                let grantee_role = match some(&f.role) {
                    None => None,
                    Some("hospital") => Some(Role::Hospital),
                    Some("doctor") => Some(Role::Doctor),
                    Some("researcher") => {
                        Some(Role::Organisation(medledger_core::tx::OrganisationKind::Researcher))
                    }
                    Some("insurer") => {
                        Some(Role::Organisation(medledger_core::tx::OrganisationKind::Insurer))
                    }
                    Some(other) => anyhow::bail!("{other:?} is not a role a rule can name"),
                };
                let category = some(&f.category)
                    .map(str::parse::<RecordCategory>)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let purpose = some(&f.purpose)
                    .map(crate::record::parse_purpose)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                anyhow::ensure!(
                    grantee.is_some()
                        || grantee_role.is_some()
                        || category.is_some()
                        || purpose.is_some(),
                    "a deny rule needs a grantee, a role, a category or a purpose"
                );
                let rule = medledger_core::tx::consent::DenyRule {
                    grantee,
                    grantee_role,
                    category,
                    purpose,
                };
                ConsentTx::Deny { patient: me, rule }
            }
            "remove" => {
                let rule: Hash = f
                    .rule
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{:?} is no rule id: {e}", f.rule))?;
                ConsentTx::RemoveDeny { rule }
            }
            other => anyhow::bail!("{other:?} is neither add nor remove"),
        };
        let added = matches!(tx, ConsentTx::Deny { .. });
        let r = u.session.submit(TxBody::Consent(tx)).await?;
        anyhow::Ok(format!(
            "deny rule {} (block {})",
            if added { "added" } else { "removed" },
            r.height
        ))
    }
    .await;
    match done {
        Ok(text) => p.done_with("/consent", text),
        Err(e) => {
            with_status(consent_page(&p, &u, Flash::error(&e)).await, StatusCode::BAD_REQUEST)
        }
    }
}

#[derive(Deserialize)]
struct DelegateForm {
    delegate: String,
    /// `name` or `remove`.
    action: String,
    /// Naming: the box saying the patient gives the delegate every power.
    confirm: Option<String>,
}

/// The patient names a delegate (a guardian, say, who may act for them) or removes one.
async fn delegate(State(p): State<Portal>, Form(f): Form<DelegateForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient], "delegates") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let done = async {
        let delegate: AccountId = f
            .delegate
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{:?} is not an account id: {e}", f.delegate))?;
        let (tx, what) = match f.action.as_str() {
            "name" => {
                anyhow::ensure!(
                    f.confirm.is_some(),
                    "a delegate may do everything you may: tick the box to confirm; nothing was done"
                );
                (ConsentTx::NameDelegate { delegate }, "named")
            }
            "remove" => (ConsentTx::RemoveDelegate { delegate }, "removed"),
            other => anyhow::bail!("{other:?} is neither name nor remove"),
        };
        let r = u.session.submit(TxBody::Consent(tx)).await?;
        anyhow::Ok(format!("delegate {} {what} (block {})", u.names.of(&delegate), r.height))
    }
    .await;
    match done {
        Ok(text) => p.done_with("/consent", text),
        Err(e) => {
            with_status(consent_page(&p, &u, Flash::error(&e)).await, StatusCode::BAD_REQUEST)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Live notifications, and the static files.

/// Server-sent events of the unlocked account's new events, each in words (`notice`). Ends
/// when the portal stops or locks.
async fn events(State(p): State<Portal>) -> Response {
    if p.unlocked().is_none() {
        return guard::refuse(StatusCode::LOCKED, "refused: the portal is locked");
    }
    let notices = p.notices.subscribe();
    let stopping = p.stopping.subscribe();
    let stream = futures_util::stream::unfold(
        (p, notices, stopping, false),
        |(p, mut notices, mut stopping, ended)| async move {
            loop {
                if ended || *stopping.borrow() {
                    return None;
                }
                if p.unlocked().is_none() {
                    // The page's script goes to the unlock form; then the stream ends.
                    let event = Event::default().event("locked").data("locked");
                    return Some((Ok::<_, Infallible>(event), (p, notices, stopping, true)));
                }
                tokio::select! {
                    n = notices.recv() => match n {
                        // Received while unlocked, sent only if still unlocked.
                        Ok(_) if p.unlocked().is_none() => continue,
                        Ok(n) => {
                            let data = serde_json::json!({ "seq": n.seq, "text": n.text, "alarm": n.alarm });
                            let event = Event::default().event("notice").data(data.to_string());
                            return Some((Ok(event), (p, notices, stopping, false)));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = stopping.changed() => return None,
                    () = tokio::time::sleep(std::time::Duration::from_secs(2)) => continue,
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../static/portal.css"))
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/portal.js"),
    )
        .into_response()
}

#[cfg(test)]
mod grant_rows {
    use medledger_api::GrantView;
    use medledger_core::{
        Hash,
        ids::AccountId,
        tx::consent::{Purpose, Scope, Validity},
    };

    /// A grant's row is placed by the node's clock given, however far it is from this
    /// machine's (here, 1970).
    #[test]
    fn a_grant_row_stands_where_the_nodes_clock_puts_it() {
        let g = GrantView {
            id: Hash([1; 32]),
            patient: AccountId([2; 20]),
            grantee: AccountId([3; 20]),
            scope: Scope::All,
            purpose: Purpose::Treatment,
            validity: Validity { not_before_ms: 1_000, expires_at_ms: 2_000 },
            granted_by: AccountId([2; 20]),
            granted_at: 5,
            revoked_at: None,
        };
        let name = |_: &AccountId| "Dr. Who".to_owned();
        for (node_ms, state, current) in
            [(500, "not yet in force", true), (1_500, "active", true), (2_500, "expired", false)]
        {
            let row = super::grant_row(&g, node_ms, &name);
            assert_eq!((row.state, row.active, row.revocable), (state, current, true), "{node_ms}");
        }
        let revoked = GrantView { revoked_at: Some(9), ..g };
        let row = super::grant_row(&revoked, 1_500, &name);
        assert_eq!((row.state, row.active, row.revocable), ("revoked", false, false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_reduced_to_safe_characters() {
        assert_eq!(safe_file_name("note.txt"), "note.txt");
        assert_eq!(safe_file_name("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(safe_file_name("a\"; b=c\r\n.pdf"), "a___b_c__.pdf");
        assert_eq!(safe_file_name(".."), "record");
        assert_eq!(safe_file_name(""), "record");
    }

    #[test]
    fn a_url_parameter_is_encoded() {
        assert_eq!(urlencode("a b&c=d"), "a+b%26c%3Dd");
    }
}
