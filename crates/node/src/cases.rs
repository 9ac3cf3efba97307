//! Case routes: a patient's cases, a case, its entries, its sealed blobs, and the export that
//! proves the whole case offline.
//!
//! Who may see a case's content (entries, sealed blobs, export): its patient and their
//! delegates, anyone `authorize` lets read the case now for some purpose (a case grant in
//! force), and the doctors who wrote in it unless the patient's deny rule names them or their
//! key or hospital is inactive. Holding a wrapped case key is not enough: revoking a grant or
//! adding a deny rule stops the next read. The opener's and authors' hospitals, and authors
//! a deny rule stopped, see that the case exists (its metadata and hashes), not its content.
//! Anyone else gets the same 404 as for a case that does not exist. Case reads are signed but
//! not yet committed as access events (the structure issue's one audited read does that).

use axum::{
    Json,
    body::Body,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use medledger_api::{
    CASE_EXPORT_FORMAT, CaseEntryView, CaseExport, CaseSealView, CaseView, ExportedEntry,
    ExportedKey, ProvenTx,
};
use medledger_core::{
    Hash, encoding,
    ids::AccountId,
    keys::namespace,
    tx::{
        consent::{Action, Decision, Denial, Purpose, Resource},
        records::KeyRef,
    },
};
use medledger_ledger::{CaseLog, CaseLogEntry, TxRecord};
use medledger_vault::BlobStore;
use serde::Deserialize;

use crate::{
    auth::Signed,
    http::{ApiError, ApiResult, AppState, parse_account, vault_error},
};

const PURPOSES: [Purpose; 5] =
    [Purpose::Treatment, Purpose::Emergency, Purpose::Research, Purpose::Insurance, Purpose::Other];

/// Most entries returned by one request for entries.
const MAX_ENTRIES_PAGE: usize = 10_000;

fn not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no case {id}"))
}

/// How far `who` may see a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sight {
    /// Not at all: the same 404 as for a case that does not exist.
    None,
    /// That it exists, who wrote in it and its hashes (the opener's and authors' hospitals).
    Existence,
    /// Its content too: entries, sealed blobs and the export.
    Content,
}

/// How far `who` may see case `id` now (see the module documentation). Content follows
/// consent at the time of the read, never the key alone: the patient and delegates; anyone
/// `authorize` lets read the case now; and the doctors who wrote in it, unless a deny rule of
/// the patient or an inactive key or hospital (which `authorize` reports) stops them.
fn sight(state: &AppState, who: &AccountId, id: &str, c: &CaseLog) -> Result<Sight, ApiError> {
    let ledger = &state.ledger;
    let resource =
        Resource { patient: c.patient, category: None, record: None, case: Some(id.to_owned()) };
    let now = crate::admission::now_ms();
    let mut stopped = false;
    for purpose in PURPOSES {
        match ledger.authorize_now(who, Action::Read, &resource, purpose, now)? {
            Decision::Allow(_) => return Ok(Sight::Content),
            Decision::Deny(Denial::DenyRule { .. } | Denial::RequesterInactive) => stopped = true,
            Decision::Deny(_) => {}
        }
    }
    let author = *who == c.opener || c.authors.contains(who);
    if author && !stopped {
        return Ok(Sight::Content);
    }
    if author || c.hospital == *who {
        return Ok(Sight::Existence);
    }
    for a in &c.authors {
        if ledger.account(a)?.and_then(|a| a.hospital).as_ref() == Some(who) {
            return Ok(Sight::Existence);
        }
    }
    Ok(Sight::None)
}

/// The case named `id`, if `who` may see it at least as far as `needed`; 404 otherwise,
/// whether or not it exists.
fn visible_case(
    state: &AppState,
    who: &AccountId,
    id: &str,
    needed: Sight,
) -> Result<CaseLog, ApiError> {
    let c = state.ledger.case(id)?.ok_or_else(|| not_found(id))?;
    let sight = sight(state, who, id, &c)?;
    if sight == Sight::None || (needed == Sight::Content && sight != Sight::Content) {
        return Err(not_found(id));
    }
    Ok(c)
}

fn view(state: &AppState, id: String, c: CaseLog) -> Result<CaseView, ApiError> {
    let keys = state
        .ledger
        .case_keys(&id)?
        .into_iter()
        .map(|(recipient, blob)| KeyRef { recipient, blob })
        .collect();
    Ok(CaseView {
        follow_ups: state.ledger.follow_ups(&id)?,
        case: id,
        patient: c.patient,
        opener: c.opener,
        hospital: c.hospital,
        description: c.description,
        follow_up_of: c.follow_up_of,
        opened_at: c.opened_at,
        opened_time_ms: c.opened_time_ms,
        open_tx: c.open_tx,
        first_head: c.first_head,
        head: c.head,
        entries: c.entries,
        authors: c.authors,
        sealed: c.sealed.map(|s| CaseSealView {
            height: s.height,
            time_ms: s.time_ms,
            by: s.by,
            tx: s.tx,
        }),
        keys,
    })
}

fn entry_view(seq: u64, e: CaseLogEntry) -> CaseEntryView {
    CaseEntryView {
        seq,
        author: e.author,
        height: e.height,
        time_ms: e.time_ms,
        entry: e.entry,
        prev: e.prev,
        head: e.head,
        tx: e.tx,
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    patient: String,
}

/// `GET /v1/cases?patient=ID`: the patient's cases that the signer may see.
pub(crate) async fn list(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Query(q): Query<ListQuery>,
) -> ApiResult<Vec<CaseView>> {
    let patient = parse_account(&q.patient)?;
    let mut out = Vec::new();
    for (id, c) in state.ledger.cases_of_patient(&patient)? {
        if sight(&state, &requester, &id, &c)? != Sight::None {
            out.push(view(&state, id, c)?);
        }
    }
    Ok(Json(out))
}

/// `GET /v1/cases/{id}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<CaseView> {
    let c = visible_case(&state, &requester, &id, Sight::Existence)?;
    Ok(Json(view(&state, id, c)?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct EntriesQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/cases/{id}/entries?after=N&limit=M`: entries numbered after `N`, in order.
pub(crate) async fn entries(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
    Query(q): Query<EntriesQuery>,
) -> ApiResult<Vec<CaseEntryView>> {
    visible_case(&state, &requester, &id, Sight::Content)?;
    let limit = q.limit.unwrap_or(MAX_ENTRIES_PAGE).min(MAX_ENTRIES_PAGE);
    let list = state.ledger.case_entries(&id, q.after.unwrap_or(0), limit)?;
    Ok(Json(list.into_iter().map(|(seq, e)| entry_view(seq, e)).collect()))
}

/// `GET /v1/cases/{id}/blobs/{hash}`: a blob the case references (its sealed description, a
/// sealed entry, a wrapped key), checked against its hash by the vault.
pub(crate) async fn blob(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path((id, hash)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    visible_case(&state, &requester, &id, Sight::Content)?;
    let hash = Hash::from_hex(&hash).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed", format!("{hash:?} is not a SHA-256"))
    })?;
    let no_blob = || {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("case {id} has no blob {hash}"))
    };
    if state.ledger.blob_owner(&hash)?.as_deref() != Some(id.as_str()) {
        return Err(no_blob());
    }
    let vault = state.vault.clone();
    let bytes = tokio::task::spawn_blocking(move || vault.get(&hash))
        .await
        .map_err(|e| ApiError::internal(format!("a vault task failed: {e}")))?
        .map_err(vault_error)?
        .ok_or_else(no_blob)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// `GET /v1/cases/{id}/export`: the [`CaseExport`] of the case, in the canonical (binary)
/// encoding, signed by this node's key.
pub(crate) async fn export(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    visible_case(&state, &requester, &id, Sight::Content)?;
    let body = tokio::task::spawn_blocking(move || build_export(&state, &requester, &id))
        .await
        .map_err(|e| ApiError::internal(format!("the export task failed: {e}")))??;
    Ok(([(header::CONTENT_TYPE, medledger_api::BINARY_MEDIA_TYPE)], Body::from(body))
        .into_response())
}

fn build_export(state: &AppState, requester: &AccountId, id: &str) -> Result<Vec<u8>, ApiError> {
    let txs = state.ledger.case_transactions(id)?.ok_or_else(|| not_found(id))?;
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
    Ok(encoding::encode(&export))
}
