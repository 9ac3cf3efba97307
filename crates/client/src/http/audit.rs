//! Audit calls, each signed by the client's signer: a patient's trail, the regulator's counts,
//! and the event stream of the signer's own account.

use std::collections::BTreeMap;

use medledger_api::paths;
use medledger_core::{audit::AuditEvent, encoding, ids::AccountId};

use super::{CONNECT_TIMEOUT, MAX_RESPONSE_BYTES, NodeClient, error_chain, read_body, refusal};
use crate::error::{ClientError, HttpError};

impl NodeClient {
    /// A patient's audit trail after event `after` (the signer is the patient or a delegate).
    pub async fn audit_trail(
        &self,
        patient: &AccountId,
        after: Option<u64>,
    ) -> Result<Vec<AuditEvent>, ClientError> {
        let path = match after {
            Some(a) => format!("{}/{patient}?after={a}", paths::AUDIT),
            None => format!("{}/{patient}", paths::AUDIT),
        };
        // Asked for in the binary encoding: a full page is 10,000 events.
        let url = self.url(&path);
        let req = self
            .authorised(self.http.get(&url), "GET", &path, b"")?
            .header(reqwest::header::ACCEPT, medledger_api::BINARY_MEDIA_TYPE);
        let resp = self.send(req, &url).await?;
        let status = resp.status();
        let body = read_body(resp, &url).await?;
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        encoding::decode("audit trail", &body, MAX_RESPONSE_BYTES).map_err(|e| {
            ClientError::Http(HttpError::BadResponse {
                url,
                reason: format!("not an audit trail: {e}"),
            })
        })
    }

    /// A patient's whole audit trail after event `after`, page by page (the node answers at
    /// most [`medledger_api::MAX_AUDIT_PAGE`] events at a time; a shorter page is the end).
    pub async fn audit_trail_all(
        &self,
        patient: &AccountId,
        mut after: Option<u64>,
    ) -> Result<Vec<AuditEvent>, ClientError> {
        let mut all = Vec::new();
        loop {
            let page = self.audit_trail(patient, after).await?;
            let full = page.len() >= medledger_api::MAX_AUDIT_PAGE;
            match page.last() {
                // A node whose pages do not move forward would keep this loop going.
                Some(last) if after.is_some_and(|a| last.seq <= a) => {
                    return Err(ClientError::Http(HttpError::BadResponse {
                        url: self.url(paths::AUDIT),
                        reason: format!("the trail's page after {after:?} does not move past it"),
                    }));
                }
                Some(last) => after = Some(last.seq),
                None => break,
            }
            all.extend(page);
            if !full {
                break;
            }
        }
        Ok(all)
    }

    /// Counts of audit events by kind (the signer is the regulator).
    pub async fn audit_counts(&self) -> Result<BTreeMap<String, u64>, ClientError> {
        self.get(paths::AUDIT_COUNTS).await
    }

    /// Follows the event stream of `account` (the signer's own) from after event `after`,
    /// calling `on_event` for each audit event as it arrives, until `on_event` returns false or
    /// the stream ends. Returns the number of the last event seen, to resume from.
    pub async fn watch(
        &self,
        account: AccountId,
        after: Option<u64>,
        mut on_event: impl FnMut(AuditEvent) -> bool,
    ) -> Result<Option<u64>, ClientError> {
        use futures_util::StreamExt;
        let path = match after {
            Some(a) => format!("{}/{account}?after={a}", paths::EVENTS),
            None => format!("{}/{account}", paths::EVENTS),
        };
        let url = self.url(&path);
        // A stream has no overall deadline: it lasts as long as the watcher wants.
        let streaming = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tls_backend_preconfigured(self.tls.clone())
            .build()
            .map_err(|e| {
                ClientError::Http(HttpError::BadUrl { url: url.clone(), reason: error_chain(&e) })
            })?;
        let req = self
            .authorised(streaming.get(&url), "GET", &path, b"")?
            .header("accept", "text/event-stream");
        let resp = self.send(req, &url).await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = read_body(resp, &url).await?;
            return Err(refusal(status, &body));
        }
        let mut last = after;
        let mut buffer = String::new();
        let mut data = String::new();
        let mut bytes = resp.bytes_stream();
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(|e| {
                ClientError::Http(HttpError::Unreachable {
                    url: url.clone(),
                    reason: error_chain(&e),
                })
            })?;
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find('\n') {
                let line: String = buffer.drain(..=end).collect();
                let line = line.trim_end_matches(['\r', '\n']);
                if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                } else if line.is_empty() && !data.is_empty() {
                    let event: AuditEvent = serde_json::from_str(&data).map_err(|e| {
                        ClientError::Http(HttpError::BadResponse {
                            url: url.clone(),
                            reason: format!("an event is not the expected JSON: {e}"),
                        })
                    })?;
                    data.clear();
                    last = Some(event.seq);
                    if !on_event(event) {
                        return Ok(last);
                    }
                }
            }
            if buffer.len() > MAX_RESPONSE_BYTES {
                return Err(ClientError::Http(HttpError::BadResponse {
                    url,
                    reason: "an event is too large".into(),
                }));
            }
        }
        Ok(last)
    }
}
