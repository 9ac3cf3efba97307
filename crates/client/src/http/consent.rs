//! Consent calls, each signed by the client's signer: who can see a patient's records, the
//! grants from a patient to the signer, an access request, and a researcher's cohort.

use medledger_api::{CohortView, GrantView, RequestView, WhoCanSeeView, paths};
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

    /// The signer's research cohort (the signer is a member of a researcher organisation).
    pub async fn research_cohort(&self) -> Result<CohortView, ClientError> {
        self.get(paths::RESEARCH_COHORT).await
    }

    /// An access request (the signer is the patient, a delegate or the requester).
    pub async fn access_request(&self, id: &Hash) -> Result<RequestView, ClientError> {
        self.get(&format!("{}/{id}", paths::REQUESTS)).await
    }
}
