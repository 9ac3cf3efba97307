//! Consent routes: who can see a patient's records (to the patient and delegates), the grants
//! in force from a patient to the signer (to a member, its organisation's), an access request
//! (to its patient, delegates and requester), and a researcher's cohort (to a member of a
//! researcher organisation).

use axum::http::StatusCode;
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use medledger_api::{
    CaseKeyHolderView, CohortPatientView, CohortView, ErrorCode, ExportListingView,
    ExportedRecordView, GrantView, GrantedByView, GrantedToMeView, RequestView, WhoCanSeeView,
    paths,
};
use serde::Deserialize;

use crate::{
    app::AppState,
    auth::Signed,
    http::{
        error::{
            ApiError, ApiResult, bad_request, forbidden, not_found, parse_account, parse_hash,
        },
        views,
    },
};

/// The consent routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(&format!("{}/{{patient}}", paths::WHO_CAN_SEE), get(who_can_see))
        .route(paths::GRANTS, get(grants))
        .route(paths::GRANTED_TO_ME, get(granted_to_me))
        .route(&format!("{}/{{id}}", paths::REQUESTS), get(access_request))
        .route(paths::RESEARCH_COHORT, get(research_cohort))
        .route(&format!("{}/{{event}}", paths::RESEARCH_EXPORTS), get(research_export))
}

#[derive(Deserialize)]
struct CohortQuery {
    project: String,
    rule_set: String,
    /// The last patient of the previous page.
    after: Option<String>,
    /// Most patients in a page (at most [`COHORT_PAGE`], the default).
    limit: Option<usize>,
}

/// Most patients in one page of a research cohort: each costs a read of the patient's records
/// (its plan), so a request's work is bounded whatever the cohort's size.
pub(crate) const COHORT_PAGE: usize = 500;

/// The signer's research cohort (`Ledger::research_cohort`), with each patient's plan for the
/// project and rule set asked; only to an active member of a researcher organisation.
async fn research_cohort(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Query(q): Query<CohortQuery>,
) -> ApiResult<CohortView> {
    medledger_core::tx::research::check_project(&q.project, &q.rule_set).map_err(bad_request)?;
    let page = medledger_ledger::research::CohortPage {
        after: q.after.as_deref().map(parse_account).transpose()?,
        limit: q.limit.unwrap_or(COHORT_PAGE).min(COHORT_PAGE),
    };
    let now = crate::admission::now_ms();
    // A scan of every grant to the organisation and of each patient's records: on a blocking
    // thread, not an async worker.
    let ledger = state.ledger.clone();
    let cohort = tokio::task::spawn_blocking(move || {
        ledger.research_cohort_page(&requester, &q.project, &q.rule_set, now, page)
    })
    .await
    .map_err(crate::http::error::joined)??
    .ok_or_else(|| {
        forbidden(
            "only an active member of an active researcher organisation has a research cohort",
        )
    })?;
    let (cohort, next) = cohort;
    let patients = cohort
        .into_iter()
        .map(|c| CohortPatientView { patient: c.patient, categories: c.categories, plan: c.plan })
        .collect();
    Ok(Json(CohortView { patients, next }))
}

/// What the signer's committed research export `event` planned
/// (`Ledger::research_export_listing`): the only listing of a patient's records a researcher
/// gets, covered by the export's event in the patient's trail. Another's export, another kind
/// of event and one that does not exist are all "not found".
async fn research_export(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(event): Path<String>,
) -> ApiResult<ExportListingView> {
    use medledger_ledger::research::ExportListing;
    let unknown = || not_found(format!("no research export {event} of yours"));
    let seq: u64 = event.parse().map_err(|_| unknown())?;
    match state.ledger.research_export_listing(&requester, seq, crate::admission::now_ms())? {
        ExportListing::Unknown => Err(unknown()),
        ExportListing::Closed(why) => Err(forbidden(why)),
        ExportListing::Changed => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Changed,
            format!(
                "the patient's records are no longer those research export {seq} planned \
                 (one was added, amended or erased since): export again"
            ),
        )),
        ExportListing::Named { patient, project, rule_set, categories, plan, time_ms, records } => {
            Ok(Json(ExportListingView {
                event: seq,
                patient,
                project,
                rule_set,
                categories,
                plan,
                time_ms,
                records: {
                    // Links to versions outside the plan (an erased earlier one) are not the
                    // export's to show.
                    let planned: Vec<String> = records.iter().map(|(pmr, _)| pmr.clone()).collect();
                    let inside = |link: Option<String>| link.filter(|id| planned.contains(id));
                    records
                        .into_iter()
                        .map(|(pmr, r)| ExportedRecordView {
                            pmr,
                            category: r.category,
                            content: r.content,
                            size: r.size,
                            visit_year: r.visit_date.year,
                            supersedes: inside(r.supersedes),
                            superseded_by: inside(r.superseded_by),
                        })
                        .collect()
                },
            }))
        }
    }
}

async fn who_can_see(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(patient): Path<String>,
) -> ApiResult<WhoCanSeeView> {
    let patient = parse_account(&patient)?;
    if !state.ledger.acts_for(&requester, &patient)? {
        return Err(forbidden(
            "only the patient or a delegate they named may see who can see their records",
        ));
    }
    let height = state.ledger.tip().height;
    let w = state.ledger.who_can_see(&patient, Some(height))?;
    let mut case_key_holders = Vec::new();
    for (case, _) in state.ledger.cases_of_patient(&patient)? {
        for (holder, _) in state.ledger.case_keys(&case)? {
            if holder != patient {
                case_key_holders.push(CaseKeyHolderView { case: case.clone(), holder });
            }
        }
    }
    Ok(Json(WhoCanSeeView {
        case_key_holders,
        patient,
        height,
        time_ms: crate::admission::now_ms(),
        delegates: w.delegates,
        delegate_powers: w
            .delegate_powers
            .iter()
            .map(|p| p.names().into_iter().map(str::to_owned).collect())
            .collect(),
        grants: w.grants.into_iter().map(|(id, g)| views::grant(id, g)).collect(),
        upcoming: w.upcoming.into_iter().map(|(id, g)| views::grant(id, g)).collect(),
        past: w.past.into_iter().map(|(id, g)| views::grant(id, g)).collect(),
        deny_rules: w.deny_rules.into_iter().map(|(id, d)| views::deny(id, d)).collect(),
    }))
}

#[derive(Debug, Deserialize)]
struct GrantsQuery {
    patient: String,
}

/// The grants in force from `patient` under which the signer acts
/// (`Ledger::grants_acted_under_now`): its own, or for an active member of an active
/// organisation the organisation's; empty for anyone else.
async fn grants(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Query(q): Query<GrantsQuery>,
) -> ApiResult<Vec<GrantView>> {
    let patient = parse_account(&q.patient)?;
    let list =
        state.ledger.grants_acted_under_now(&requester, &patient, crate::admission::now_ms())?;
    Ok(Json(list.into_iter().map(|(id, g)| views::grant(id, g)).collect()))
}

/// The patients whose grants to the signer itself are in force or yet to begin
/// (`Ledger::grants_to`): whom a doctor may see. Only the signer's own grants: each was
/// given to it, and told to it, by the patient.
async fn granted_to_me(
    State(state): State<AppState>,
    Signed(requester): Signed,
) -> ApiResult<GrantedToMeView> {
    let height = state.ledger.tip().height;
    let patients = state.ledger.grants_to(&requester)?;
    Ok(Json(GrantedToMeView {
        height,
        time_ms: crate::admission::now_ms(),
        patients: patients
            .into_iter()
            .map(|p| GrantedByView {
                patient: p.patient,
                grants: p.grants.into_iter().map(|(id, g)| views::grant(id, g)).collect(),
            })
            .collect(),
    }))
}

async fn access_request(
    State(state): State<AppState>,
    Signed(requester): Signed,
    Path(id): Path<String>,
) -> ApiResult<RequestView> {
    let id = parse_hash(&id)?;
    let r =
        state.ledger.access_request(&id)?.ok_or_else(|| not_found(format!("no request {id}")))?;
    if requester != r.requester && !state.ledger.acts_for(&requester, &r.patient)? {
        return Err(forbidden("only the patient, a delegate or the requester may see a request"));
    }
    Ok(Json(views::request(id, r)))
}
