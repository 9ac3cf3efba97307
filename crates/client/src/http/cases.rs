//! Case calls: a patient's cases, a case, its entries, one of its sealed blobs (checked
//! against its hash), and its export (the binary [`CaseExport`], checked by
//! [`crate::cases::verify_export`], not here).

use medledger_api::{CaseEntryView, CaseExport, CaseView, paths};
use medledger_core::{Hash, encoding, ids::AccountId};

use super::NodeClient;
use crate::{cases::MAX_EXPORT_BYTES, error::ClientError};

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

    /// Entries of a case numbered after `after`, in order (a page of at most 10,000).
    pub async fn case_entries(
        &self,
        id: &str,
        after: u64,
    ) -> Result<Vec<CaseEntryView>, ClientError> {
        self.get(&format!("{}/{id}/entries?after={after}", paths::CASES)).await
    }

    async fn get_bytes(&self, path: &str, limit: usize) -> Result<Vec<u8>, ClientError> {
        let url = self.url(path);
        let req = self.authorised(self.http.get(&url), "GET", path, b"")?;
        self.bytes(req, &url, limit).await
    }

    /// A blob of a case (its sealed description, a sealed entry, a wrapped key), checked
    /// against `hash`.
    pub async fn case_blob(&self, id: &str, hash: &Hash) -> Result<Vec<u8>, ClientError> {
        let path = format!("{}/{id}/blobs/{hash}", paths::CASES);
        let bytes = self.get_bytes(&path, crate::http::MAX_RESPONSE_BYTES).await?;
        let got = Hash::of(&bytes);
        if got != *hash {
            return Err(ClientError::BadResponse {
                url: self.url(&path),
                reason: format!("the node served a blob that hashes to {got}, not {hash}"),
            });
        }
        Ok(bytes)
    }

    /// Everything that proves a case, with its sealed blobs and the signer's wrapped key.
    pub async fn case_export(&self, id: &str) -> Result<CaseExport, ClientError> {
        let path = format!("{}/{id}/export", paths::CASES);
        let bytes = self.get_bytes(&path, MAX_EXPORT_BYTES).await?;
        encoding::decode("case export", &bytes, MAX_EXPORT_BYTES).map_err(|e| {
            ClientError::BadResponse {
                url: self.url(&path),
                reason: format!("not a case export: {e}"),
            }
        })
    }
}
