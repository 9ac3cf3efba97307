//! Cases in the portal: a doctor opens a case for a patient they treat, appends entries and
//! seals it; the patient, and a doctor who may see it, list a patient's cases and read one.
//! Reading is the audited read of `medledger case show` ([`crate::case::read_verified`]):
//! the access naming the case is committed to the patient's trail first, the export is
//! verified here against the node key the pinned regulator admitted, then decrypted here.
//! Every form calls the same functions as the `case` commands: the patient or the opener
//! shares the case key (`case share`); a reader downloads the verified export file (`case
//! export`, the same audited read) and anyone signed in checks such a file (`case verify`,
//! uploaded: its checkpoint must be signed by a node the pinned regulator admitted).

use askama::Template;
use axum::{
    Form, Router,
    extract::{Multipart, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use medledger_core::tx::{consent::Purpose, registry::Role};
use serde::Deserialize;

use super::{
    Portal, Unlocked,
    pages::{Flash, Me, for_patient, render, unlocked_as, whose, with_status},
};
use crate::common::local_time;

pub fn routes() -> Router<Portal> {
    Router::new()
        .route("/cases", get(cases))
        .route("/cases/open", post(open))
        .route("/case/read", post(read))
        .route("/case/append", post(append))
        .route("/case/seal", post(seal))
        .route("/case/share", post(share))
        .route("/case/export", post(export))
        .route("/case/verify", post(verify))
}

/// The largest case export file the portal checks (an upload; the CLI reads up to
/// `MAX_EXPORT_BYTES` from disk).
const VERIFY_LIMIT: usize = 64 * 1024 * 1024;

/// A case as a row of the list.
pub struct CaseRow {
    id: String,
    opener: String,
    opened: String,
    entries: u64,
    sealed: bool,
    status: String,
    follow_up_of: String,
}

#[derive(Template)]
#[template(path = "portal/cases.html")]
struct CasesPage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    /// Whose cases are shown, as asked (a patient's own page: none asked).
    patient: String,
    rows: Vec<CaseRow>,
}

#[derive(Deserialize)]
struct CasesQuery {
    #[serde(default)]
    patient: String,
}

async fn cases(State(p): State<Portal>, Query(q): Query<CasesQuery>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient, Role::Doctor], "the cases page") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let flash = p.take_outcome("/cases").and_then(|o| Flash::ok(o.text));
    cases_page(&p, &u, q.patient, flash, StatusCode::OK).await
}

/// The cases of `patient` (a Patient-ID or an account id; the patient's own when empty and
/// the wallet is a patient's) that this wallet may see.
async fn cases_page(
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
        Ok(s.client.cases_of_patient(&account).await?)
    }
    .await;
    let (rows, flash) = match listed {
        Ok(list) => (
            list.iter()
                .rev()
                .map(|c| CaseRow {
                    id: c.case.clone(),
                    opener: u.names.of(&c.opener),
                    opened: local_time(c.opened_time_ms),
                    entries: c.entries,
                    sealed: c.sealed.is_some(),
                    status: match &c.sealed {
                        Some(seal) => format!("sealed at block {}", seal.height),
                        None => "open".into(),
                    },
                    follow_up_of: c.follow_up_of.clone().unwrap_or_default(),
                })
                .collect(),
            flash,
        ),
        Err(e) => (Vec::new(), flash.or_else(|| Flash::error(&e))),
    };
    let page = render(&CasesPage { csrf: p.csrf(), me: Me::of(u), flash, patient, rows });
    with_status(page, status)
}

#[derive(Deserialize)]
struct OpenForm {
    patient: String,
    title: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    follow_up_of: String,
}

/// A doctor opens a case for a patient they treat (`medledger case open`).
async fn open(State(p): State<Portal>, Form(f): Form<OpenForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Doctor], "opening a case") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let opened = async {
        anyhow::ensure!(!f.title.trim().is_empty(), "a case needs a title");
        let description = medledger_client::cases::CaseDescription {
            title: f.title.trim().to_owned(),
            notes: f.notes.trim().to_owned(),
        };
        let follow_up = Some(f.follow_up_of.trim().to_owned()).filter(|c| !c.is_empty());
        let o =
            crate::case::open_case(&u.session, f.patient.trim(), description, follow_up).await?;
        anyhow::Ok(format!("case {} opened (block {})", o.case, o.receipt.height))
    }
    .await;
    match opened {
        Ok(text) => p.done_with(&for_patient("/cases", &f.patient), text),
        Err(e) => cases_page(&p, &u, f.patient, Flash::error(&e), StatusCode::BAD_REQUEST).await,
    }
}

/// A case entry, as the page shows it.
pub struct EntryRow {
    seq: u64,
    when: String,
    height: u64,
    author: String,
    text: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/case.html")]
struct CasePage {
    csrf: String,
    me: Me,
    flash: Option<Flash>,
    id: String,
    patient: String,
    title: Option<String>,
    notes: String,
    opener: String,
    opened: String,
    opened_at: u64,
    follow_up_of: String,
    entries: Vec<EntryRow>,
    /// How it was sealed, in words; `None` while open.
    sealed: Option<String>,
    /// What the verification established, in words.
    verified: String,
    /// The read's audit event and its block.
    event: u64,
    height: u64,
}

#[derive(Deserialize)]
struct CaseForm {
    case: String,
    /// For a read: the reader's purpose (default treatment).
    #[serde(default)]
    purpose: String,
    /// For an append: the entry's text.
    #[serde(default)]
    text: String,
}

/// The audited read of a case (`medledger case show`): verified, then decrypted here. A case
/// that does not verify is not shown; the page says why.
async fn read(State(p): State<Portal>, Form(f): Form<CaseForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient, Role::Doctor], "reading a case") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let id = f.case.trim().to_owned();
    let shown = async {
        let purpose = match f.purpose.trim() {
            "" => Purpose::Treatment,
            other => crate::record::parse_purpose(other).map_err(|e| anyhow::anyhow!("{e}"))?,
        };
        let v = crate::case::read_verified(&u.session, &id, purpose).await?;
        u.extend_history(v.checkpoint.clone(), v.node_id).await?;
        anyhow::Ok(v)
    }
    .await;
    let v = match shown {
        Ok(v) => v,
        Err(e) => {
            return cases_page(
                &p,
                &u,
                list_after(&u, &id),
                Flash::error(&e),
                StatusCode::FORBIDDEN,
            )
            .await;
        }
    };
    let r = &v.report;
    let sealed = r.sealed.as_ref().map(|seal| {
        format!(
            "sealed at block {} ({}) by {} with head {}",
            seal.height,
            local_time(seal.time_ms),
            u.names.of(&seal.by),
            seal.head
        )
    });
    let verified = format!(
        "every entry present and in order, the chain unbroken from the open to the last head, \
         each entry signed by its author and applied by the ledger at its block; the open{} in \
         the ledger (inclusion proofs against checkpoint height {}, log size {}, signed by a \
         node key the regulator admitted)",
        if r.sealed.is_some() { " and the seal" } else { "" },
        r.checkpoint.height,
        r.checkpoint.log_size
    );
    let page = CasePage {
        csrf: p.csrf(),
        me: Me::of(&u),
        flash: None,
        id: v.shown.case.clone(),
        patient: v.shown.patient.to_string(),
        title: v.shown.title.clone(),
        notes: v.shown.notes.clone().unwrap_or_default(),
        opener: u.names.of(&v.shown.opener),
        opened: local_time(r.opened_time_ms),
        opened_at: r.opened_at,
        follow_up_of: v.shown.follow_up_of.clone().unwrap_or_default(),
        entries: v
            .shown
            .entries
            .iter()
            .map(|e| EntryRow {
                seq: e.seq,
                when: local_time(e.time_ms),
                height: e.height,
                author: u.names.of(&e.author),
                text: e.text.clone(),
            })
            .collect(),
        sealed,
        verified,
        event: v.event,
        height: v.height,
    };
    render(&page)
}

/// The Patient-ID a case id names (`C<Patient-ID>-<n>`), or nothing.
fn patient_of(case: &str) -> String {
    crate::case::patient_id_of_case(case).unwrap_or_default().to_owned()
}

/// Whose cases to list on the page after a read, an append or a seal of `case`: the case's
/// patient (a patient's own page: none).
fn list_after(u: &Unlocked, case: &str) -> String {
    if u.role == Role::Patient { String::new() } else { patient_of(case) }
}

/// A doctor appends an entry (`medledger case append`): sealed under the case key here.
async fn append(State(p): State<Portal>, Form(f): Form<CaseForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Doctor], "writing in a case") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let id = f.case.trim();
    let appended = crate::case::append_entry(&u.session, id, f.text.clone())
        .await
        .map(|(seq, _, r)| format!("entry {seq} appended to case {id} (block {})", r.height));
    match appended {
        Ok(text) => p.done_with(&for_patient("/cases", &list_after(&u, id)), text),
        Err(e) => {
            cases_page(&p, &u, list_after(&u, id), Flash::error(&e), StatusCode::BAD_REQUEST).await
        }
    }
}

/// The opener or the patient seals a case at its head (`medledger case seal`).
async fn seal(State(p): State<Portal>, Form(f): Form<CaseForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Doctor, Role::Patient], "sealing a case") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let id = f.case.trim();
    let sealed = crate::case::seal_case(&u.session, id).await.map(|(entries, _, r)| {
        format!("case {id} sealed with {entries} entries (block {})", r.height)
    });
    match sealed {
        Ok(text) => p.done_with(&for_patient("/cases", &list_after(&u, id)), text),
        Err(e) => {
            cases_page(&p, &u, list_after(&u, id), Flash::error(&e), StatusCode::BAD_REQUEST).await
        }
    }
}

#[derive(Deserialize)]
struct ShareForm {
    case: String,
    /// The account to wrap the case key to.
    with: String,
}

/// The patient or the case's opener wraps the case key to another account (`medledger case
/// share`): the ledger decides whether this wallet may.
async fn share(State(p): State<Portal>, Form(f): Form<ShareForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Doctor, Role::Patient], "sharing a case") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let id = f.case.trim();
    let shared = async {
        let with: medledger_core::ids::AccountId = f.with.trim().parse().map_err(|_| {
            anyhow::anyhow!("{:?} is not an account id (40 hex digits)", f.with.trim())
        })?;
        let r = crate::case::share_case(&u.session, id, with).await?;
        anyhow::Ok(format!(
            "case {id}: key wrapped to {} (block {}); to write entries they also need a \
             treatment grant for the case",
            u.names.of(&with),
            r.height
        ))
    }
    .await;
    match shared {
        Ok(text) => p.done_with(&for_patient("/cases", &list_after(&u, id)), text),
        Err(e) => {
            cases_page(&p, &u, list_after(&u, id), Flash::error(&e), StatusCode::BAD_REQUEST).await
        }
    }
}

/// The verified export file of a case, downloaded (`medledger case export`): an audited read,
/// verified here before a byte is sent; one that does not verify is not sent.
async fn export(State(p): State<Portal>, Form(f): Form<CaseForm>) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient, Role::Doctor], "exporting a case") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    let id = f.case.trim().to_owned();
    let exported = async {
        let purpose = match f.purpose.trim() {
            "" => Purpose::Treatment,
            other => crate::record::parse_purpose(other).map_err(|e| anyhow::anyhow!("{e}"))?,
        };
        let (export, _, node_id) = crate::case::export_verified(&u.session, &id, purpose).await?;
        u.extend_history(export.checkpoint.clone(), node_id).await?;
        anyhow::Ok(export)
    }
    .await;
    match exported {
        Ok(export) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{id}.case\"")),
            ],
            medledger_client::cases::export_bytes(&export),
        )
            .into_response(),
        Err(e) => {
            cases_page(&p, &u, list_after(&u, &id), Flash::error(&e), StatusCode::FORBIDDEN).await
        }
    }
}

/// Checks an uploaded case export file (`medledger case verify`), from the page's script
/// (multipart, with the CSRF header): what it proves, or the first problem.
async fn verify(State(p): State<Portal>, multipart: Multipart) -> Response {
    let u = match unlocked_as(&p, &[Role::Patient, Role::Doctor], "verifying a case file") {
        Ok(u) => u,
        Err(stop) => return stop.into_response(),
    };
    match verify_upload(&p, &u, multipart).await {
        Ok(text) => p.done_with("/cases", text),
        Err(e) => super::guard::refuse(StatusCode::BAD_REQUEST, &format!("{e:#}")),
    }
}

async fn verify_upload(
    p: &Portal,
    u: &std::sync::Arc<Unlocked>,
    mut multipart: Multipart,
) -> anyhow::Result<String> {
    use anyhow::{Context, bail};
    let mut bytes = Vec::new();
    let mut name = String::new();
    while let Some(mut field) = multipart.next_field().await.context("reading the upload")? {
        if field.name() != Some("file") {
            bail!("unexpected form field {:?}", field.name().unwrap_or(""));
        }
        name = field.file_name().unwrap_or("the file").to_owned();
        while let Some(chunk) = field.chunk().await.context("reading the file")? {
            if bytes.len() + chunk.len() > VERIFY_LIMIT {
                bail!("{name} is larger than {} MiB: not a case export", VERIFY_LIMIT >> 20);
            }
            bytes.extend_from_slice(&chunk);
        }
    }
    if bytes.is_empty() {
        bail!("choose a case export file (.case) to verify");
    }
    // A slow upload may outlast the lock: nothing is checked (or shown) for it after the lock.
    if !p.still(u) {
        bail!("the portal was locked during the upload; unlock it and check the file again");
    }
    let r = crate::case::verify_bytes(&u.session, &bytes).await?;
    let sealed = match &r.sealed {
        Some(seal) => format!("sealed at block {}", seal.height),
        None => "open (more entries may follow)".into(),
    };
    Ok(format!(
        "{name} verifies: case {}, {} entries, {sealed}; every entry present and in order, the \
         chain unbroken, each entry signed by its author and applied by the ledger (checkpoint \
         height {}, signed by a node the regulator admitted)",
        r.case,
        r.entries.len(),
        r.checkpoint.height
    ))
}

#[cfg(test)]
mod tests {
    use super::patient_of;

    #[test]
    fn the_patient_id_is_taken_from_a_case_id_only() {
        assert_eq!(patient_of("C1042-3"), "1042");
        for odd in ["1042-3", "C-3", "Cx1-3", "C1042", ""] {
            assert_eq!(patient_of(odd), "", "{odd}");
        }
    }
}
