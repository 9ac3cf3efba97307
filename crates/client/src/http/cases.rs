//! Case calls: a patient's cases, a case, the signer's own wrapped case key, and the audited
//! read of a case (the binary [`CaseRead`], whose export [`crate::cases::verify_export`]
//! checks, not here).

use medledger_api::{CaseRead, CaseView, OwnKey, paths};
use medledger_core::{Hash, encoding, ids::AccountId, tx::SignedTransaction};

use super::NodeClient;
use crate::{
    cases::MAX_EXPORT_BYTES,
    error::{ClientError, HttpError},
};

impl NodeClient {
    /// A patient's cases that the signer may see.
    pub async fn cases_of_patient(
        &self,
        patient: &AccountId,
    ) -> Result<Vec<CaseView>, ClientError> {
        self.get(&format!("{}?patient={patient}", paths::CASES)).await
    }

    /// One case, if it exists and the signer may see it.
    pub async fn case(&self, id: &str) -> Result<Option<CaseView>, ClientError> {
        self.get_optional(&format!("{}/{id}", paths::CASES)).await
    }

    /// The case key wrapped to this client's signer, if any, and the transaction the node
    /// says wrapped it (unproven).
    pub async fn own_case_key(
        &self,
        id: &str,
    ) -> Result<Option<(Vec<u8>, Option<Hash>)>, ClientError> {
        let path = format!("{}/{id}/key", paths::CASES);
        let Some(k) = self.get_optional::<OwnKey>(&path).await? else {
            return Ok(None);
        };
        hex::decode(&k.wrapped_hex).map(|bytes| Some((bytes, k.tx))).map_err(|e| {
            ClientError::Http(HttpError::BadResponse {
                url: self.url(&path),
                reason: e.to_string(),
            })
        })
    }

    /// The audited read of a case: submits `access` (an access transaction naming the case,
    /// signed by the reader), which the node commits before it releases anything. Returns the
    /// access event and the case's export, with its sealed blobs and the reader's wrapped key.
    pub async fn read_case(
        &self,
        id: &str,
        access: &SignedTransaction,
    ) -> Result<CaseRead, ClientError> {
        let path = format!("{}/{id}/read", paths::CASES);
        let url = self.url(&path);
        let req = self.post_tx(&url, access);
        let body = self.bytes(req, &url, MAX_EXPORT_BYTES).await?;
        let read: CaseRead =
            encoding::decode("case read", &body, MAX_EXPORT_BYTES).map_err(|e| {
                ClientError::Http(HttpError::BadResponse {
                    url: url.clone(),
                    reason: e.to_string(),
                })
            })?;
        if read.export.case != id {
            return Err(ClientError::Http(HttpError::BadResponse {
                url,
                reason: format!("the answer is for case {}, not {id}", read.export.case),
            }));
        }
        Ok(read)
    }
}
