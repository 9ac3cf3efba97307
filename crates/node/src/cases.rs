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
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use medledger_api::{
    CASE_EXPORT_FORMAT, CaseExport, CaseRead, CaseSealView, CaseView, ExportedEntry, ExportedKey,
    OwnKey, ProvenTx,
};
use medledger_core::{
    encoding,
    ids::AccountId,
    keys::namespace,
    tx::{consent::Resource, records::KeyRef},
};
use medledger_ledger::{CaseLog, TxRecord};
use medledger_vault::BlobStore;
use serde::Deserialize;

use crate::{
    audited::AccessRead,
    auth::Signed,
    http::{ApiError, ApiResult, AppState, parse_account, vault_error},
};

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
/// consent at the time of the read, never the key alone: `authorize` lets read the patient and
/// delegates, a case grant in force, and the doctors who wrote in the case unless a deny rule
/// of the patient or an inactive key or hospital stops them.
fn sight(state: &AppState, who: &AccountId, id: &str, c: &CaseLog) -> Result<Sight, ApiError> {
    let ledger = &state.ledger;
    if crate::audited::readable_now(state, who, &case_resource(id, c))? {
        return Ok(Sight::Content);
    }
    if *who == c.opener || c.authors.contains(who) || c.hospital == *who {
        return Ok(Sight::Existence);
    }
    for a in &c.authors {
        if ledger.account(a)?.and_then(|a| a.hospital).as_ref() == Some(who) {
            return Ok(Sight::Existence);
        }
    }
    Ok(Sight::None)
}

/// What an access to case `id` names.
fn case_resource(id: &str, c: &CaseLog) -> Resource {
    Resource { patient: c.patient, category: None, record: None, case: Some(id.to_owned()) }
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

pub(crate) fn view(state: &AppState, id: String, c: CaseLog) -> Result<CaseView, ApiError> {
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

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    patient: String,
}

/// `GET /v1/cases?patient=ID`: the patient's cases that the signer may see (not those only an
/// open break-glass opens: the audited overview lists those).
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

/// `GET /v1/cases/{id}/key`: the case key wrapped to the signer, for a doctor who writes in
/// the case or an exporter. Useless without the content, which only the audited read serves.
pub(crate) async fn own_key(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<OwnKey> {
    visible_case(&state, &requester, &id, Sight::Existence)?;
    let no_key = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no key of case {id} is wrapped to {requester}"),
        )
    };
    let blob = state.ledger.case_key(&id, &requester)?.ok_or_else(no_key)?;
    let bytes = state.vault.get(&blob).map_err(vault_error)?.ok_or_else(no_key)?;
    Ok(Json(OwnKey { wrapped_hex: hex::encode(bytes) }))
}

/// `POST /v1/cases/{id}/read`: the audited read ([`crate::audited`]) of a case. The body is
/// the reader's access transaction naming the case; once it is committed and allowed, the
/// answer is a [`CaseRead`]: the access event and the case's export (every transaction with
/// its receipt, header and inclusion proof, the sealed description and entries, the reader's
/// wrapped key), signed by this node's key.
pub(crate) async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let read = AccessRead::open(&state, &body)?;
    let reader = read.reader();
    let c = state.ledger.case(&id)?.ok_or_else(|| read.missing(&state, not_found(&id)))?;
    let resource = case_resource(&id, &c);
    read.access_naming(&format!("case {id} of patient {}", c.patient), |r| *r == resource)?;
    let likely = read.likely(&state)?;
    let released = read
        .serve(&state, likely, |_| {
            let (state, id) = (state.clone(), id.clone());
            async move {
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

/// The export of case `id` for `requester`, read (and hash-checked by the vault) from one
/// snapshot of the case; a blob missing from this node's vault is an error.
fn build_export(state: &AppState, requester: &AccountId, id: &str) -> Result<CaseExport, ApiError> {
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
    Ok(export)
}
