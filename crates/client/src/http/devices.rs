//! Device calls: devices, sessions, a session's digests and alerts, and the audited read of a
//! session's sealed readings (whose answer is in the canonical binary encoding).

use medledger_api::{DeviceView, SessionDataRead, SessionReadingsView, SessionView, paths};
use medledger_core::{Hash, encoding, ids::AccountId, tx::SignedTransaction};

use super::{MAX_RESPONSE_BYTES, NodeClient, read_body, refusal};
use crate::error::{ClientError, HttpError};

impl NodeClient {
    /// The devices of `patient` the signer may see.
    pub async fn devices_of_patient(
        &self,
        patient: &AccountId,
    ) -> Result<Vec<DeviceView>, ClientError> {
        self.get(&format!("{}?patient={patient}", paths::DEVICES)).await
    }

    /// A device, or `None` if there is none the signer may see.
    pub async fn device(&self, id: &AccountId) -> Result<Option<DeviceView>, ClientError> {
        self.get_optional(&format!("{}/{id}", paths::DEVICES)).await
    }

    /// A device's sessions, oldest first.
    pub async fn device_sessions(&self, id: &AccountId) -> Result<Vec<SessionView>, ClientError> {
        self.get(&format!("{}/{id}/sessions", paths::DEVICES)).await
    }

    /// A measurement session, or `None` if there is none the signer may see.
    pub async fn device_session(&self, id: &Hash) -> Result<Option<SessionView>, ClientError> {
        self.get_optional(&format!("{}/{id}", paths::DEVICE_SESSIONS)).await
    }

    /// A page of a session's batch digests and alerts (no content), after sequence number
    /// `after`.
    pub async fn session_readings(
        &self,
        id: &Hash,
        after: u64,
    ) -> Result<SessionReadingsView, ClientError> {
        self.get(&format!("{}/{id}/readings?after={after}", paths::DEVICE_SESSIONS)).await
    }

    /// The audited read of one page of a session's sealed readings: submits `access` (an
    /// access transaction for the patient's device data, signed by the reader), which the node
    /// commits before it releases anything.
    pub async fn read_session(
        &self,
        id: &Hash,
        access: &SignedTransaction,
        after: u64,
    ) -> Result<SessionDataRead, ClientError> {
        let path = format!("{}/{id}/read?after={after}", paths::DEVICE_SESSIONS);
        let url = self.url(&path);
        let req = self.post_tx(&url, access);
        let resp = self.send(req, &url).await?;
        let status = resp.status();
        let body = read_body(resp, &url).await?;
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        let read: SessionDataRead = encoding::decode("session read", &body, MAX_RESPONSE_BYTES)
            .map_err(|e| {
                ClientError::Http(HttpError::BadResponse {
                    url: url.clone(),
                    reason: e.to_string(),
                })
            })?;
        if read.session != *id {
            return Err(ClientError::Http(HttpError::BadResponse {
                url,
                reason: format!("the answer is for session {}, not {id}", read.session),
            }));
        }
        // The node checks blobs against their hashes; check them again here.
        for (b, bytes) in &read.batches {
            if Hash::of(bytes) != b.blob {
                return Err(ClientError::Http(HttpError::BadResponse {
                    url,
                    reason: format!(
                        "batch {}..={} does not hash to its digest",
                        b.first_seq, b.last_seq
                    ),
                }));
            }
        }
        for (a, bytes) in &read.alerts {
            if Hash::of(bytes) != a.reading {
                return Err(ClientError::Http(HttpError::BadResponse {
                    url,
                    reason: format!("the reading of alert {} does not hash to its digest", a.seq),
                }));
            }
        }
        Ok(read)
    }
}
