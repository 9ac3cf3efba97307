//! Directory routes: genesis, checkpoints and consistency proofs, committed transactions (to
//! their parties), hospitals, organisations and their members, doctors, accounts with their proven encryption keys, and
//! patients by Patient-ID (to those who may look them up).

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use medledger_api::{
    AccountKeyProof, AccountView, ConsistencyQuery, ConsistencyResponse, DoctorView, HospitalView,
    OrganisationView, PatientView, TxProofResponse, paths,
};
use medledger_core::{
    block::{Created, Outcome, SignedCheckpoint},
    ids::PatientId,
};
use serde::Deserialize;

use crate::{
    app::AppState,
    auth::Signed,
    http::{
        error::{ApiResult, bad_request, not_found, parse_account, parse_hash},
        views,
    },
};

/// The directory routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(&format!("{}/{{hash}}", paths::TRANSACTIONS), get(transaction))
        .route(paths::CHECKPOINT, get(checkpoint))
        .route(paths::CONSISTENCY, get(consistency))
        .route(paths::GENESIS, get(genesis))
        .route(paths::HOSPITALS, get(hospitals))
        .route(paths::ORGANISATIONS, get(organisations))
        .route(paths::DOCTORS, get(doctors))
        .route(&format!("{}/{{id}}", paths::ACCOUNTS), get(account))
        .route(&format!("{}/{{id}}/{}", paths::ACCOUNTS, paths::ENCRYPTION_KEY), get(account_key))
        .route(&format!("{}/{{id}}", paths::PATIENTS), get(patient))
}

/// A committed transaction with its receipt and inclusion proof, only to its parties
/// (`Ledger::may_see_transaction`: the signer, the accounts it names, the patient it concerns
/// and their delegates and hospital, the regulator; a case's open, whoever holds the case's
/// key while they may see the case); anyone else gets the answer of a hash that is not in the
/// ledger (security review M7).
async fn transaction(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(hash): Path<String>,
) -> ApiResult<TxProofResponse> {
    let hash = parse_hash(&hash)?;
    let missing = || not_found(format!("no transaction {hash}"));
    let record = state.ledger.transaction(&hash)?.ok_or_else(missing)?;
    let now = crate::admission::now_ms();
    if !state.ledger.may_see_transaction(&requester, &record.tx, &record.receipt, now)? {
        return Err(missing());
    }
    Ok(Json(views::tx_proof(&state, record)?))
}

async fn checkpoint(State(state): State<AppState>, _: Signed) -> Json<SignedCheckpoint> {
    Json(state.signed_checkpoint())
}

async fn consistency(
    State(state): State<AppState>,
    _: Signed,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult<ConsistencyResponse> {
    let proof = state.ledger.consistency_proof(q.old, q.new)?;
    let old_root = state.ledger.root_at(q.old)?;
    Ok(Json(ConsistencyResponse { proof, old_root }))
}

async fn genesis(State(state): State<AppState>) -> Json<medledger_core::block::Genesis> {
    Json(state.ledger.genesis().clone())
}

async fn hospitals(State(state): State<AppState>, _: Signed) -> ApiResult<Vec<HospitalView>> {
    let list = state.ledger.hospitals()?;
    Ok(Json(list.into_iter().map(|(a, e, suspended)| views::hospital(a, e, suspended)).collect()))
}

/// The organisation directory: researchers and insurers, with their members (public names
/// and encryption keys, as a doctor's directory entry is public).
async fn organisations(
    State(state): State<AppState>,
    _: Signed,
) -> ApiResult<Vec<OrganisationView>> {
    let list = state.ledger.organisations()?;
    Ok(Json(
        list.into_iter()
            .map(|(id, e, a, members)| views::organisation(id, e, a, members))
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
struct DoctorQuery {
    hospital: Option<String>,
}

async fn doctors(
    State(state): State<AppState>,
    _: Signed,
    Query(q): Query<DoctorQuery>,
) -> ApiResult<Vec<DoctorView>> {
    let hospital = q.hospital.as_deref().map(parse_account).transpose()?;
    let list = state.ledger.doctors(hospital.as_ref())?;
    Ok(Json(list.into_iter().map(|(account, e)| views::doctor(account, e)).collect()))
}

/// An account's public entry. Its nonce (how many transactions it has committed, an activity
/// count) goes only to the account itself, which needs it to sign its next transaction; a
/// patient's Patient-ID only to those who may look the patient up.
async fn account(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<AccountView> {
    let id = parse_account(&id)?;
    let a = state.ledger.account(&id)?.ok_or_else(|| not_found(format!("no account {id}")))?;
    // A patient's Patient-ID only to those who may look the patient up (M4).
    let now = crate::admission::now_ms();
    let patient_id = match a.patient_id {
        Some(pid) => match state.ledger.patient(pid)? {
            Some(p) if state.ledger.patient_visible_to(&requester, &p, None, now)? => Some(pid),
            _ => None,
        },
        None => None,
    };
    Ok(Json(AccountView {
        account: id,
        role: a.role,
        key: a.key,
        encryption_key: a.encryption_key,
        nonce: (requester == id).then_some(a.nonce),
        suspended: a.suspended,
        patient_id,
    }))
}

/// An account's encryption key with the registration that set it, proven against a checkpoint
/// signed now: what a wallet checks before wrapping a key or sealing details to the account.
/// A patient's registration receipt names the Patient-ID it assigned: to anyone who may not
/// look the patient up it says only that the account was created (the receipt is not in the
/// Merkle log; the proof is of the transaction, which names no Patient-ID).
async fn account_key(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<AccountKeyProof> {
    let id = parse_account(&id)?;
    let a = state.ledger.account(&id)?.ok_or_else(|| not_found(format!("no account {id}")))?;
    let registration = match state.ledger.registration_of(&id)? {
        None => None,
        Some(record) => {
            let mut proof = views::tx_proof(&state, record)?;
            let assigned = match &proof.receipt.outcome {
                Outcome::Applied { created: Some(Created::Patient { patient_id, .. }) } => {
                    Some(*patient_id)
                }
                _ => None,
            };
            if let Some(pid) = assigned {
                let now = crate::admission::now_ms();
                let may = match state.ledger.patient(pid)? {
                    Some(p) => state.ledger.patient_visible_to(&requester, &p, None, now)?,
                    None => false,
                };
                if !may {
                    let created = Some(Created::Account { account: id });
                    proof.receipt.outcome = Outcome::Applied { created };
                }
            }
            Some(proof)
        }
    };
    Ok(Json(AccountKeyProof { account: id, encryption_key: a.encryption_key, registration }))
}

#[derive(Debug, Deserialize)]
struct PatientQuery {
    /// The key check of the patient's emergency profile, derived from the code on their card:
    /// whoever holds the card may look the patient up.
    card: Option<String>,
}

/// A patient's registration by Patient-ID, only to those the ledger can tell have a reason
/// (`Ledger::patient_visible_to`) or who hold the patient's card code. Everyone else gets the
/// answer of a Patient-ID that does not exist, and each such miss spends their allowance of
/// denials, so that Patient-IDs cannot be enumerated (security review M4).
async fn patient(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
    Query(q): Query<PatientQuery>,
) -> ApiResult<PatientView> {
    let pid =
        PatientId(id.parse().map_err(|_| bad_request(format!("{id:?} is not a Patient-ID")))?);
    let card = q.card.as_deref().map(parse_hash).transpose()?;
    let now = crate::admission::now_ms();
    let visible = match state.ledger.patient(pid)? {
        Some(p) if state.ledger.patient_visible_to(&requester, &p, card.as_ref(), now)? => Some(p),
        _ => None,
    };
    let Some(p) = visible else {
        if let Some(spent) = crate::admission::probe_refused(&state, &requester) {
            return Err(spent);
        }
        return Err(not_found(format!("no patient {pid}")));
    };
    Ok(Json(views::patient(pid, p)))
}
