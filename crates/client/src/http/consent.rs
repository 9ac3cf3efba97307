//! Consent calls, each signed by the client's signer: who can see a patient's records, the
//! grants from a patient to the signer, an access request, and a researcher's cohort.

use medledger_api::{
    CohortView, ExportListingView, GrantView, GrantedToMeView, RequestView, WhoCanSeeView, paths,
};
use medledger_core::{Hash, ids::AccountId};

use super::NodeClient;
use crate::error::{ClientError, HttpError};

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
        loop {
            let page: CohortView = self.get(&path).await?;
            let last = cohort.patients.last().map(|p| p.patient);
            // Pages follow one another in account order: a node that repeats or goes back
            // would make the loop endless or the cohort wrong.
            let ordered =
                page.patients.iter().map(|p| p.patient).try_fold(last, |prev, p| {
                    (prev.is_none_or(|prev| prev < p)).then_some(Some(p))
                });
            let advances = match (page.next, page.patients.last()) {
                (Some(next), Some(end)) => next == end.patient,
                (Some(_), None) => false,
                (None, _) => true,
            };
            if ordered.is_none() || !advances {
                return Err(ClientError::Http(HttpError::BadResponse {
                    url: self.url(&path),
                    reason: "the research cohort's pages are not in account order".into(),
                }));
            }
            cohort.patients.extend(page.patients);
            match page.next {
                Some(after) => path = format!("{first}&after={after}"),
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
