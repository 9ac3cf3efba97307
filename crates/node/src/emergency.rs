//! Emergency routes: the public part of a profile, the logged read of the sealed profile, a
//! custodian's own escrow piece, break-glass declarations (with the pieces released to the
//! doctor) and a hospital's open reviews.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use medledger_api::{BreakGlassView, EmergencyView};
use medledger_core::{
    Hash,
    block::{Created, Outcome},
    ids::AccountId,
    tx::{EmergencyTx, Role, SignedTransaction, TxBody},
};
use medledger_vault::BlobStore;

use crate::{
    auth::Signed,
    http::{ApiError, ApiResult, AppState, forbidden, parse_account},
};

fn not_found(what: String) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
}

fn is_active_doctor(state: &AppState, who: &AccountId) -> Result<bool, ApiError> {
    Ok(state
        .ledger
        .account(who)?
        .is_some_and(|a| a.role == Role::Doctor && a.key.is_some() && !a.suspended))
}

/// `GET /v1/emergency/{patient}`: for the patient, delegates, custodians and active doctors.
pub(crate) async fn profile(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(patient): Path<String>,
) -> ApiResult<EmergencyView> {
    let patient = parse_account(&patient)?;
    let p = state
        .ledger
        .emergency_profile(&patient)?
        .ok_or_else(|| not_found(format!("patient {patient} has no emergency profile")))?;
    let custodians: Vec<AccountId> = p.escrow.iter().map(|k| k.recipient).collect();
    if requester != patient
        && !custodians.contains(&requester)
        && !state.ledger.is_delegate(&patient, &requester)?
        && !is_active_doctor(&state, &requester)?
    {
        return Err(forbidden("only doctors, custodians, the patient and delegates see this"));
    }
    Ok(Json(EmergencyView {
        patient,
        key_check: p.key_check,
        emergency_key: p.emergency_key,
        open_records: p.open_records,
        custodians,
        threshold: p.threshold,
        window_ms: state.ledger.emergency_window_ms()?,
    }))
}

/// `POST /v1/emergency/{patient}/read`: orders the doctor's read transaction, and only once it
/// is committed serves the sealed profile (which opens only with the code or the escrow).
pub(crate) async fn read(
    State(state): State<AppState>,
    Path(patient): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patient = parse_account(&patient)?;
    let tx = SignedTransaction::decode(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed", e.to_string()))?;
    if tx.tx.body != TxBody::Emergency(EmergencyTx::ReadProfile { patient }) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("the body must be a signed emergency profile read of {patient}"),
        ));
    }
    // The sender first, before anything about the profile (see `records::read`).
    let signature_ok = tx.verify_signature().is_ok();
    crate::admission::authenticate(&state, &tx, signature_ok)?;
    let p = state.ledger.emergency_profile(&patient)?.ok_or_else(|| {
        crate::admission::probe_refused(&state, &tx.tx.signer)
            .unwrap_or_else(|| not_found(format!("patient {patient} has no emergency profile")))
    })?;
    let sealed = state
        .vault
        .get(&p.profile)
        .map_err(crate::http::vault_error)?
        .ok_or_else(|| not_found("the sealed profile is not in this node's vault".into()))?;
    let receipt = crate::http::submit_checked(&state, tx, signature_ok).await?;
    if !matches!(receipt.outcome, Outcome::Applied { created: Some(Created::Access { .. }) }) {
        return Err(ApiError::internal(format!("unexpected receipt {:?}", receipt.outcome)));
    }
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], sealed).into_response())
}

/// `GET /v1/emergency/{patient}/escrow`: the requester's own escrow piece (a custodian's).
pub(crate) async fn escrow(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(patient): Path<String>,
) -> Result<Response, ApiError> {
    let patient = parse_account(&patient)?;
    let p = state
        .ledger
        .emergency_profile(&patient)?
        .ok_or_else(|| not_found(format!("patient {patient} has no emergency profile")))?;
    let piece = p
        .escrow
        .iter()
        .find(|k| k.recipient == requester)
        .ok_or_else(|| not_found(format!("{requester} holds no escrow piece of {patient}")))?;
    let bytes = state
        .vault
        .get(&piece.blob)
        .map_err(crate::http::vault_error)?
        .ok_or_else(|| not_found("the escrow piece is not in this node's vault".into()))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

fn view(state: &AppState, id: Hash, requester: &AccountId) -> Result<BreakGlassView, ApiError> {
    let b =
        state.ledger.break_glass(&id)?.ok_or_else(|| not_found(format!("no break-glass {id}")))?;
    let custodian = state
        .ledger
        .emergency_profile(&b.patient)?
        .is_some_and(|p| p.escrow.iter().any(|k| k.recipient == *requester));
    // The regulator is one of the readers of the sealed reason and finding.
    let regulator = state.ledger.genesis().regulator();
    if ![b.doctor, b.hospital, b.patient, regulator].contains(requester)
        && !custodian
        && !state.ledger.is_delegate(&b.patient, requester)?
    {
        return Err(forbidden("only those a break-glass concerns may see it"));
    }
    let mut released = Vec::new();
    if *requester == b.doctor {
        for (custodian, blob) in state.ledger.escrow_releases(&id)? {
            if let Some(bytes) = state.vault.get(&blob).map_err(crate::http::vault_error)? {
                released.push((custodian, hex::encode(bytes)));
            }
        }
    }
    Ok(BreakGlassView {
        id,
        patient: b.patient,
        doctor: b.doctor,
        hospital: b.hospital,
        code: b.code,
        reason: hex::encode(&b.reason),
        started_at: b.started_at,
        started_ms: b.started_ms,
        until_ms: b.until_ms,
        ended_at: b.ended_at,
        review: b.review.map(|(finding, _)| hex::encode(finding)),
        released,
    })
}

/// `GET /v1/emergency/break-glass/{id}`.
pub(crate) async fn break_glass(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<BreakGlassView> {
    let id = Hash::from_hex(&id).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed", format!("{id:?} is not an id"))
    })?;
    Ok(Json(view(&state, id, &requester)?))
}

/// `GET /v1/emergency/reviews`: the signer's (a hospital's) break-glass reviews still open.
pub(crate) async fn reviews(
    State(state): State<AppState>,
    Signed(requester): Signed,
) -> ApiResult<Vec<BreakGlassView>> {
    let open = state.ledger.open_reviews(&requester)?;
    open.into_iter().map(|r| view(&state, r.id, &requester)).collect::<Result<_, _>>().map(Json)
}
