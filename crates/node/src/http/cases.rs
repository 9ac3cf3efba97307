//! Case routes: a patient's cases, a case, the signer's own wrapped case key, and the audited
//! read of a case's content (entries, sealed blobs and the export that proves the whole case
//! offline).
//!
//! Who may see a case's content: whom `authorize` lets read it at the block of the read: its
//! patient and their delegates, a case grant in force, and the doctors who wrote in it unless
//! the patient's deny rule names them or their key or hospital is inactive. Holding a wrapped
//! case key is not enough: revoking a grant or adding a deny rule stops the next read. Every
//! read of the content is an access event committed before a byte is served
//! ([`crate::audited`]): the patient's trail and notifications show it, allowed or denied, and
//! denials count against the reader's allowance like record denials. The opener's and
//! authors' hospitals, and authors a deny rule stopped, see that the case exists (its metadata
//! and hashes), not its content. Anyone else, and a doctor whose only basis is an open
//! break-glass (M6: the audited overview lists the case), gets the same 404 as for a case
//! that does not exist.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use medledger_api::{
    CASE_EXPORT_FORMAT, CaseExport, CaseRead, CaseView, ExportedEntry, ExportedKey, OwnKey,
    ProvenTx, paths,
};
use medledger_core::{encoding, ids::AccountId, keys::namespace};
use medledger_ledger::{CaseLog, LedgerError, TxRecord, visibility::CaseSight};
use medledger_vault::BlobStore;
use serde::Deserialize;

use crate::{
    app::AppState,
    audited::AccessRead,
    auth::Signed,
    http::{
        error::{ApiError, ApiResult, not_found, parse_account, vault_error},
        views,
    },
    limits::signed_body,
};

/// The case routes.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(paths::CASES, get(list))
        .route(&format!("{}/{{id}}", paths::CASES), get(case))
        .route(&format!("{}/{{id}}/key", paths::CASES), get(own_key))
        .route(&format!("{}/{{id}}/read", paths::CASES), signed_body(state, post(read)))
}

fn no_case(id: &str) -> ApiError {
    not_found(format!("no case {id}"))
}

/// What an access to case `id` names.
/// The case named `id`, if `who` may see it at least as far as `needed`
/// (`Ledger::case_visible_to`); 404 otherwise, whether or not it exists.
fn visible_case(
    state: &AppState,
    who: &AccountId,
    id: &str,
    needed: CaseSight,
) -> Result<CaseLog, ApiError> {
    let now = crate::admission::now_ms();
    state.ledger.case_visible_to(who, id, needed, now)?.ok_or_else(|| no_case(id))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    patient: String,
}

/// `GET /v1/cases?patient=ID`: the patient's cases that the signer may see (not those only an
/// open break-glass opens: the audited overview lists those).
async fn list(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Query(q): Query<ListQuery>,
) -> ApiResult<Vec<CaseView>> {
    let patient = parse_account(&q.patient)?;
    let now = crate::admission::now_ms();
    let list = state.ledger.cases_of_patient_visible_to(&requester, &patient, now)?;
    let views = list.into_iter().map(|(id, c)| shown(&state, &requester, id, c, now));
    Ok(Json(views.collect::<Result<_, _>>()?))
}

/// Case `id` (`c`) as `requester`, who may see it, is shown it: its links to the case it
/// follows up and to its follow-ups only where they may see that case too, since a Case-ID
/// carries the Patient-ID and a count (as a record's links to its versions).
fn shown(
    state: &AppState,
    requester: &AccountId,
    id: String,
    c: CaseLog,
    now: u64,
) -> Result<CaseView, LedgerError> {
    let mut view = views::case(&state.ledger, id, c)?;
    let seen = |link: &str| -> Result<bool, LedgerError> {
        Ok(state.ledger.case_visible_to(requester, link, CaseSight::Existence, now)?.is_some())
    };
    if let Some(prior) = view.follow_up_of.as_deref()
        && !seen(prior)?
    {
        view.follow_up_of = None;
    }
    let mut follow_ups = Vec::with_capacity(view.follow_ups.len());
    for f in std::mem::take(&mut view.follow_ups) {
        if seen(&f)? {
            follow_ups.push(f);
        }
    }
    view.follow_ups = follow_ups;
    Ok(view)
}

/// `GET /v1/cases/{id}`.
async fn case(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<CaseView> {
    let c = visible_case(&state, &requester, &id, CaseSight::Existence)?;
    Ok(Json(shown(&state, &requester, id, c, crate::admission::now_ms())?))
}

/// `GET /v1/cases/{id}/key`: the case key wrapped to the signer, for a doctor who writes in
/// the case or an exporter, with the transaction that wrapped it. Useless without the
/// content, which only the audited read serves.
async fn own_key(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<OwnKey> {
    visible_case(&state, &requester, &id, CaseSight::Existence)?;
    let no_key = || not_found(format!("no key of case {id} is wrapped to {requester}"));
    let (blob, tx) = state.ledger.case_key_and_tx(&id, &requester)?.ok_or_else(no_key)?;
    state.replicas.ensure_present([blob]).await;
    let bytes = state.vault.get(&blob).map_err(vault_error)?.ok_or_else(no_key)?;
    Ok(Json(OwnKey { wrapped_hex: hex::encode(bytes), tx }))
}

/// `POST /v1/cases/{id}/read`: the audited read ([`crate::audited`]) of a case. The body is
/// the reader's access transaction naming the case; once it is committed and allowed, the
/// answer is a [`CaseRead`]: the access event and the case's export (every transaction with
/// its receipt, header and inclusion proof, the sealed description and entries, the reader's
/// wrapped key), signed by this node's key.
async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let read = AccessRead::open(&state, &body)?;
    let reader = read.reader();
    // What the body names is checked before the case is looked up, and a case of another
    // patient than the body says is answered as a missing one (charged alike): a body that
    // is never submitted must not tell which cases exist, or whose they are.
    let named = read.access_naming(&format!("case {id} alone"), |r| {
        r.case.as_deref() == Some(id.as_str()) && r.record.is_none() && r.category.is_none()
    })?;
    let named_patient = named.resource.patient;
    if state.ledger.case(&id)?.is_none_or(|c| c.patient != named_patient) {
        return Err(read.missing(&state, no_case(&id)));
    }
    let likely = read.likely(&state)?;
    let released = read
        .serve(&state, likely, |_| {
            let (state, id) = (state.clone(), id.clone());
            async move {
                // What this node lacks is pulled from a peer before the access is committed.
                state.replicas.ensure_present(case_blobs(&state, &reader, &id)?).await;
                tokio::task::spawn_blocking(move || build_export(&state, &reader, &id))
                    .await
                    .map_err(|e| ApiError::internal(format!("the export task failed: {e}")))?
            }
        })
        .await?;
    let answer =
        CaseRead { event: released.event, height: released.height, export: released.value };
    Ok(([(header::CONTENT_TYPE, medledger_api::BINARY_MEDIA_TYPE)], encoding::encode(&answer))
        .into_response())
}

/// The blobs of case `id` an export for `requester` reads: its description, its entries and
/// the case key wrapped to `requester`.
fn case_blobs(
    state: &AppState,
    requester: &AccountId,
    id: &str,
) -> Result<Vec<medledger_core::Hash>, ApiError> {
    let txs = state.ledger.case_transactions(id)?.ok_or_else(|| no_case(id))?;
    let mut out = vec![txs.case.description];
    out.extend(txs.entries.iter().map(|(e, _)| e.entry));
    out.extend(state.ledger.case_key(id, requester)?);
    Ok(out)
}

/// The export of case `id` for `requester`, read (and hash-checked by the vault) from one
/// snapshot of the case; a blob missing from this node's vault is an error.
fn build_export(state: &AppState, requester: &AccountId, id: &str) -> Result<CaseExport, ApiError> {
    let txs = state.ledger.case_transactions(id)?.ok_or_else(|| no_case(id))?;
    // The checkpoint is taken after the case was read, so it covers every transaction read.
    let checkpoint = state.ledger.checkpoint().sign(&state.node_key);
    let size = checkpoint.checkpoint.log_size;
    let prove = |r: TxRecord| -> Result<ProvenTx, ApiError> {
        let inclusion = state.ledger.inclusion_proof(r.receipt.log_index, size)?;
        Ok(ProvenTx { tx: r.tx.encode(), receipt: r.receipt, header: r.header, inclusion })
    };
    let vault = &state.vault;
    let mut entries = Vec::with_capacity(txs.entries.len());
    for (e, record) in txs.entries {
        entries.push(ExportedEntry {
            tx: prove(record)?,
            blob: vault.get(&e.entry).map_err(vault_error)?,
        });
    }
    let key = match state.ledger.case_key(id, requester)? {
        Some(blob) => vault
            .get(&blob)
            .map_err(vault_error)?
            .map(|wrapped| ExportedKey { recipient: *requester, wrapped }),
        None => None,
    };
    let mut export = CaseExport {
        format: CASE_EXPORT_FORMAT,
        chain_id: state.ledger.chain_id().to_owned(),
        case: id.to_owned(),
        checkpoint,
        open: prove(txs.open)?,
        entries,
        seal: txs.seal.map(prove).transpose()?,
        attestation: medledger_core::keys::Signature([0; 64]),
        description: vault.get(&txs.case.description).map_err(vault_error)?,
        key,
    };
    export.attestation = state.node_key.sign(namespace::CASE_EXPORT, &export.attested());
    Ok(export)
}
