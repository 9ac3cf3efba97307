//! Emergency routes: the public part of a profile, the logged read of the sealed profile, a
//! custodian's own escrow piece, break-glass declarations (with the pieces released to the
//! doctor) and a hospital's open reviews.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::header,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use medledger_api::{
    BreakGlassView, CaseView, DeviceView, EmergencyView, PatientOverview, RecordView, SessionView,
    TxProofResponse, paths,
};
use medledger_core::{
    Hash,
    ids::AccountId,
    tx::{
        EmergencyTx, TxBody,
        consent::{Basis, Decision, Resource},
        emergency::EmergencyProfile,
    },
};
use medledger_vault::BlobStore;

use crate::{
    app::AppState,
    audited::AccessRead,
    auth::Signed,
    http::{
        error::{
            ApiError, ApiResult, bad_request, forbidden, not_found, parse_account, parse_hash,
            vault_error,
        },
        views,
    },
    limits::signed_body,
};

/// The emergency routes.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    let patient = |tail: &str| format!("{}/{{patient}}{tail}", paths::EMERGENCY);
    Router::new()
        .route(&format!("{}/reviews", paths::EMERGENCY), get(reviews))
        .route(&format!("{}/break-glass/{{id}}", paths::EMERGENCY), get(break_glass))
        .route(&patient(""), get(profile))
        .route(&patient("/read"), signed_body(state, post(read)))
        .route(&patient("/overview"), signed_body(state, post(overview)))
        .route(&patient("/escrow"), get(escrow))
        .route(&patient(&format!("/{}", paths::EMERGENCY_KEY_PROOF)), get(key_proof))
}

fn no_profile(patient: &AccountId) -> ApiError {
    not_found(format!("patient {patient} has no emergency profile"))
}

/// A patient's emergency profile, if `requester` may see its public part
/// (`Ledger::emergency_profile_visible_to`: the patient, delegates, custodians and active
/// doctors); 403 to anyone else whether or not there is one (so that nobody else learns which
/// patients have a profile), 404 without one to those who may see it.
fn visible_profile(
    state: &AppState,
    requester: &AccountId,
    patient: &AccountId,
) -> Result<EmergencyProfile, ApiError> {
    let p = state.ledger.emergency_profile(patient)?;
    if !state.ledger.emergency_profile_visible_to(requester, patient, p.as_ref())? {
        return Err(forbidden("only doctors, custodians, the patient and delegates see this"));
    }
    p.ok_or_else(|| no_profile(patient))
}

/// `GET /v1/emergency/{patient}/key-proof`: the transaction that set the patient's emergency
/// profile now in force, with its inclusion proof against a checkpoint signed now; for whoever
/// may see the profile. What a wallet checks before wrapping a record key to the emergency key.
async fn key_proof(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(patient): Path<String>,
) -> ApiResult<TxProofResponse> {
    let patient = parse_account(&patient)?;
    visible_profile(&state, &requester, &patient)?;
    let missing = || not_found(format!("no transaction set the profile of patient {patient}"));
    let hash = state.ledger.emergency_profile_tx(&patient)?.ok_or_else(missing)?;
    let record = state.ledger.transaction(&hash)?.ok_or_else(missing)?;
    Ok(Json(views::tx_proof(&state, record)?))
}

/// `GET /v1/emergency/{patient}`: for the patient, delegates, custodians and active doctors.
async fn profile(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(patient): Path<String>,
) -> ApiResult<EmergencyView> {
    let patient = parse_account(&patient)?;
    let p = visible_profile(&state, &requester, &patient)?;
    let custodians: Vec<AccountId> = p.escrow.iter().map(|k| k.recipient).collect();
    Ok(Json(EmergencyView {
        patient,
        key_check: p.key_check,
        emergency_key: p.emergency_key,
        open_records: p.open_records,
        custodians,
        threshold: p.threshold,
        window_ms: state.ledger.emergency_window_ms()?,
        set_by: state.ledger.emergency_profile_tx(&patient)?,
    }))
}

/// `POST /v1/emergency/{patient}/read`: the audited read ([`crate::audited`]) of the sealed
/// profile (which opens only with the code or the escrow); the body is the doctor's signed
/// profile read, which the ledger allows any active doctor.
async fn read(
    State(state): State<AppState>,
    Path(patient): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patient = parse_account(&patient)?;
    let read = AccessRead::open(&state, &body)?;
    if *read.body() != TxBody::Emergency(EmergencyTx::ReadProfile { patient }) {
        return Err(bad_request(format!(
            "the body must be a signed emergency profile read of {patient}"
        )));
    }
    // Only a doctor reads a profile (the ledger's rule): anyone else is refused before the
    // profile is looked up, so that the answer does not tell whether there is one.
    let reader = state.ledger.account(&read.reader())?;
    if !reader.is_some_and(|a| a.role == medledger_core::tx::Role::Doctor) {
        return Err(forbidden("only a doctor may read an emergency profile"));
    }
    let p = state
        .ledger
        .emergency_profile(&patient)?
        .ok_or_else(|| read.missing(&state, no_profile(&patient)))?;
    let likely = Decision::Allow(Basis::EmergencyProfile);
    let released = read
        .serve(&state, likely, |_| async {
            state
                .vault
                .get(&p.profile)
                .map_err(vault_error)?
                .ok_or_else(|| not_found("the sealed profile is not in this node's vault"))
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], released.value).into_response())
}

/// `POST /v1/emergency/{patient}/overview`: the audited list of everything of a patient (M6).
/// The body is the reader's access naming the patient alone (allowed to the patient,
/// delegates, a grant of everything, or an open break-glass the patient allowed to open
/// records); once it is committed and allowed, the patient's record tokens, cases, devices
/// and sessions are listed. The signed GET lists leave out what only a break-glass opens, so
/// a doctor in an emergency gets the whole list in one call, and the patient sees that call.
async fn overview(
    State(state): State<AppState>,
    Path(patient): Path<String>,
    body: Bytes,
) -> ApiResult<PatientOverview> {
    let patient = parse_account(&patient)?;
    let read = AccessRead::open(&state, &body)?;
    let all = Resource { patient, category: None, record: None, case: None };
    read.access_naming(&format!("patient {patient} alone"), |r| *r == all)?;
    let likely = read.likely(&state)?;
    let released = read.serve(&state, likely, |_| async { list_all(&state, &patient) }).await?;
    let (records, cases, devices, sessions) = released.value;
    Ok(Json(PatientOverview {
        event: released.event,
        height: released.height,
        records,
        cases,
        devices,
        sessions,
    }))
}

type Everything = (Vec<RecordView>, Vec<CaseView>, Vec<DeviceView>, Vec<SessionView>);

fn list_all(state: &AppState, patient: &AccountId) -> Result<Everything, ApiError> {
    let ledger = &state.ledger;
    let records = ledger
        .records_of_patient(patient)?
        .into_iter()
        .map(|(id, r)| views::record(id, r))
        .collect();
    let cases = ledger
        .cases_of_patient(patient)?
        .into_iter()
        .map(|(id, c)| views::case(ledger, id, c))
        .collect::<Result<_, _>>()?;
    let mut devices = Vec::new();
    let mut sessions = Vec::new();
    for (id, d) in ledger.devices_of_patient(patient)? {
        for (s, entry) in ledger.sessions_of_device(&id)? {
            sessions.push(views::session(ledger, s, entry));
        }
        devices.push(views::device(ledger, id, d)?);
    }
    Ok((records, cases, devices, sessions))
}

/// `GET /v1/emergency/{patient}/escrow`: the requester's own escrow piece (a custodian's).
async fn escrow(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(patient): Path<String>,
) -> Result<Response, ApiError> {
    let patient = parse_account(&patient)?;
    // One answer whether the patient has no profile or the requester holds no piece of it:
    // whether a profile exists is not told to someone who is not its custodian.
    let none = || not_found(format!("{requester} holds no escrow piece of {patient}"));
    let p = state.ledger.emergency_profile(&patient)?.ok_or_else(none)?;
    let piece = p.escrow.iter().find(|k| k.recipient == requester).ok_or_else(none)?;
    let bytes = state
        .vault
        .get(&piece.blob)
        .map_err(vault_error)?
        .ok_or_else(|| not_found("the escrow piece is not in this node's vault"))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// Break-glass `id`, to those it concerns (`Ledger::break_glass_visible_to`); its doctor also
/// gets the escrow pieces released to them.
fn view(state: &AppState, id: Hash, requester: &AccountId) -> Result<BreakGlassView, ApiError> {
    let b =
        state.ledger.break_glass(&id)?.ok_or_else(|| not_found(format!("no break-glass {id}")))?;
    if !state.ledger.break_glass_visible_to(requester, &b)? {
        return Err(forbidden("only those a break-glass concerns may see it"));
    }
    let mut released = Vec::new();
    if *requester == b.doctor {
        for (custodian, blob) in state.ledger.escrow_releases(&id)? {
            if let Some(bytes) = state.vault.get(&blob).map_err(vault_error)? {
                released.push((custodian, hex::encode(bytes)));
            }
        }
    }
    Ok(views::break_glass(id, b, released))
}

/// `GET /v1/emergency/break-glass/{id}`.
async fn break_glass(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<BreakGlassView> {
    let id = parse_hash(&id)?;
    pull_escrow_releases(&state, id, &requester).await?;
    Ok(Json(view(&state, id, &requester)?))
}

/// Pulls the escrow pieces released for break-glass `id` that this node lacks from a peer,
/// when `requester` is its doctor (the only one they are shown to); nothing for anyone else.
async fn pull_escrow_releases(
    state: &AppState,
    id: Hash,
    requester: &AccountId,
) -> Result<(), ApiError> {
    if state.ledger.break_glass(&id)?.is_none_or(|b| b.doctor != *requester) {
        return Ok(());
    }
    let released = state.ledger.escrow_releases(&id)?;
    state
        .replicas
        .ensure_present(released.into_iter().map(|(_, blob)| blob).collect::<Vec<_>>())
        .await;
    Ok(())
}

/// `GET /v1/emergency/reviews`: the signer's (a hospital's) break-glass reviews still open.
async fn reviews(
    State(state): State<AppState>,
    Signed(requester): Signed,
) -> ApiResult<Vec<BreakGlassView>> {
    let open = state.ledger.open_reviews(&requester)?;
    open.into_iter().map(|r| view(&state, r.id, &requester)).collect::<Result<_, _>>().map(Json)
}
