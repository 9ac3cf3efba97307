//! Consent calls, each signed by the client's signer: who can see a patient's records, the
//! grants from a patient to the signer, an access request, and a researcher's cohort.

use medledger_api::{
    CohortView, ExportListingView, GrantView, GrantedToMeView, RequestView, WhoCanSeeView, paths,
};
use medledger_core::{Hash, ids::AccountId};

use super::NodeClient;
use crate::error::{ClientError, HttpError};

/// Most patients (and pages) a research cohort may have, as the client takes it in: a node
/// that sends pages without end is stopped there.
pub const MAX_COHORT: usize = 10_000_000;

impl NodeClient {
    /// Who can see `patient`'s records (the signer is the patient or a delegate).
    pub async fn who_can_see(&self, patient: &AccountId) -> Result<WhoCanSeeView, ClientError> {
        self.get(&format!("{}/{patient}", paths::WHO_CAN_SEE)).await
    }

    /// The grants in force from `patient` to the signer.
    pub async fn grants_from(&self, patient: &AccountId) -> Result<Vec<GrantView>, ClientError> {
        self.get(&format!("{}?patient={patient}", paths::GRANTS)).await
    }

    /// The patients whose grants to the signer are in force or yet to begin, with them.
    pub async fn granted_to_me(&self) -> Result<GrantedToMeView, ClientError> {
        self.get(paths::GRANTED_TO_ME).await
    }

    /// The signer's research cohort (the signer is a member of a researcher organisation),
    /// with each patient's plan for an export for `project` under `rule_set`: every page of
    /// it, in account order.
    pub async fn research_cohort(
        &self,
        project: &str,
        rule_set: &str,
    ) -> Result<CohortView, ClientError> {
        self.research_cohort_in_pages(project, rule_set, None).await
    }

    /// [`NodeClient::research_cohort`], asked in pages of at most `page` patients (none: the
    /// node's page size).
    pub async fn research_cohort_in_pages(
        &self,
        project: &str,
        rule_set: &str,
        page: Option<usize>,
    ) -> Result<CohortView, ClientError> {
        // Both are checked to be short words of URL-safe characters before they are sent.
        medledger_core::tx::research::check_project(project, rule_set)
            .map_err(|reason| ClientError::InvalidInput { what: "research project", reason })?;
        let mut first = format!("{}?project={project}&rule_set={rule_set}", paths::RESEARCH_COHORT);
        if let Some(limit) = page {
            first.push_str(&format!("&limit={limit}"));
        }
        let mut cohort = CohortView { patients: Vec::new(), next: None };
        let mut path = first.clone();
        let mut after: Option<AccountId> = None;
        let mut pages = 0usize;
        loop {
            pages += 1;
            let page: CohortView = self.get(&path).await?;
            // Pages follow one another in account order, each past the last one's `next`: a
            // node that repeats or goes back would make the loop endless or the cohort wrong.
            let mut at = after;
            let ordered = page.patients.iter().all(|p| {
                let ok = at.is_none_or(|at| at < p.patient);
                at = Some(p.patient);
                ok
            });
            let advances = match page.next {
                Some(next) => after.is_none_or(|a| a < next) && at.is_none_or(|at| at <= next),
                None => true,
            };
            // (A page may hold no patient and still lead on: pages count too.)
            let too_many = cohort.patients.len() + page.patients.len() + pages > MAX_COHORT;
            if !ordered || !advances || too_many {
                return Err(ClientError::Http(HttpError::BadResponse {
                    url: self.url(&path),
                    reason: if too_many {
                        format!("a research cohort of more than {MAX_COHORT} patients")
                    } else {
                        "the research cohort's pages are not in account order".into()
                    },
                }));
            }
            cohort.patients.extend(page.patients);
            match page.next {
                Some(next) => {
                    after = Some(next);
                    path = format!("{first}&after={next}");
                }
                None => return Ok(cohort),
            }
        }
    }

    /// What the signer's committed research export `event` planned: its records, listed
    /// while the export is open to the signer.
    pub async fn research_export_listing(
        &self,
        event: u64,
    ) -> Result<ExportListingView, ClientError> {
        self.get(&format!("{}/{event}", paths::RESEARCH_EXPORTS)).await
    }

    /// An access request (the signer is the patient, a delegate or the requester).
    pub async fn access_request(&self, id: &Hash) -> Result<RequestView, ClientError> {
        self.get(&format!("{}/{id}", paths::REQUESTS)).await
    }
}
