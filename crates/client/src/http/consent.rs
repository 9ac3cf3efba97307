//! Consent calls, each signed by the client's signer: who can see a patient's records, the
//! grants from a patient to the signer, an access request, and a researcher's cohort.

use medledger_api::{CohortView, ExportListingView, GrantView, RequestView, WhoCanSeeView, paths};
use medledger_core::{Hash, ids::AccountId};

use super::NodeClient;
use crate::error::ClientError;

impl NodeClient {
    /// Who can see `patient`'s records (the signer is the patient or a delegate).
    pub async fn who_can_see(&self, patient: &AccountId) -> Result<WhoCanSeeView, ClientError> {
        self.get(&format!("{}/{patient}", paths::WHO_CAN_SEE)).await
    }

    /// The grants in force from `patient` to the signer.
    pub async fn grants_from(&self, patient: &AccountId) -> Result<Vec<GrantView>, ClientError> {
        self.get(&format!("{}?patient={patient}", paths::GRANTS)).await
    }

    /// The signer's research cohort (the signer is a member of a researcher organisation),
    /// with each patient's plan for an export for `project` under `rule_set`.
    pub async fn research_cohort(
        &self,
        project: &str,
        rule_set: &str,
    ) -> Result<CohortView, ClientError> {
        // Both are checked to be short words of URL-safe characters before they are sent.
        medledger_core::tx::research::check_project(project, rule_set)
            .map_err(|reason| ClientError::InvalidInput { what: "research project", reason })?;
        self.get(&format!("{}?project={project}&rule_set={rule_set}", paths::RESEARCH_COHORT)).await
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
