//! Record calls: the streamed upload of a ciphertext into the node's vault, the token queries,
//! and the audited read, whose body is a preamble (the reader's wrapped key, the sealed
//! metadata) followed by the ciphertext as it streams.

use std::time::Duration;

use bytes::Bytes;
use medledger_api::{BlobStored, MAX_PREAMBLE_BYTES, ReadPreamble, RecordView, paths};
use medledger_core::{Hash, encoding, ids::AccountId, tx::SignedTransaction};
use reqwest::{Response, header::CONTENT_TYPE};

use super::{NodeClient, error_chain, read_body, read_json, refusal};
use crate::error::{ClientError, HttpError};

/// How long a streamed upload or download may take in all (a DICOM study can be GiBs).
const STREAM_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

impl NodeClient {
    /// Streams `body` into the node's vault (`POST /v1/vault`). The node names the blob by the
    /// SHA-256 of what it received; with `expected` it refuses anything else. The request's
    /// signature covers no body (the body is not known up front): the content address binds
    /// it instead, so check the returned hash against your own.
    pub async fn upload(
        &self,
        body: reqwest::Body,
        expected: Option<&Hash>,
    ) -> Result<BlobStored, ClientError> {
        let path = match expected {
            Some(h) => format!("{}?sha256={h}", paths::VAULT),
            None => paths::VAULT.to_owned(),
        };
        let url = self.url(&path);
        let req = self
            .http
            .post(&url)
            .timeout(STREAM_TIMEOUT)
            .header(CONTENT_TYPE, "application/octet-stream");
        let req = self.authorised(req, "POST", &path, b"")?.body(body);
        let stored: BlobStored = read_json(self.send(req, &url).await?, &url).await?;
        if let Some(h) = expected
            && stored.hash != *h
        {
            return Err(ClientError::Http(HttpError::BadResponse {
                url,
                reason: format!("the node stored {} instead of {h}", stored.hash),
            }));
        }
        Ok(stored)
    }

    /// One record token.
    pub async fn record(&self, pmr: &str) -> Result<Option<RecordView>, ClientError> {
        self.get_optional(&format!("{}/{pmr}", paths::RECORDS)).await
    }

    /// The tokens an account holds.
    pub async fn records_owned_by(
        &self,
        owner: &AccountId,
    ) -> Result<Vec<RecordView>, ClientError> {
        self.get(&format!("{}?owner={owner}", paths::RECORDS)).await
    }

    /// Every record of a patient.
    pub async fn records_of_patient(
        &self,
        patient: &AccountId,
    ) -> Result<Vec<RecordView>, ClientError> {
        self.get(&format!("{}?patient={patient}", paths::RECORDS)).await
    }

    /// The key shares of a record this client's signer holds (a custodian's own, or those
    /// released to a reader), as (index, wrapped share).
    pub async fn record_shares(&self, pmr: &str) -> Result<Vec<(u8, Vec<u8>)>, ClientError> {
        let path = format!("{}/{pmr}/shares", paths::RECORDS);
        let list: Vec<medledger_api::ShareBlob> = self.get(&path).await?;
        list.into_iter()
            .map(|s| {
                hex::decode(&s.wrapped_hex).map(|b| (s.index, b)).map_err(|e| {
                    ClientError::Http(HttpError::BadResponse {
                        url: self.url(&path),
                        reason: e.to_string(),
                    })
                })
            })
            .collect()
    }

    /// The record's data key (or essential share) wrapped to this client's signer, if any.
    pub async fn own_wrapped_key(&self, pmr: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let path = format!("{}/{pmr}/key", paths::RECORDS);
        let Some(k) = self.get_optional::<medledger_api::OwnKey>(&path).await? else {
            return Ok(None);
        };
        hex::decode(&k.wrapped_hex).map(Some).map_err(|e| {
            ClientError::Http(HttpError::BadResponse {
                url: self.url(&path),
                reason: e.to_string(),
            })
        })
    }

    /// The versions of a record, oldest first.
    pub async fn record_history(&self, pmr: &str) -> Result<Vec<RecordView>, ClientError> {
        self.get(&format!("{}/{pmr}/history", paths::RECORDS)).await
    }

    /// The audited read: submits `access` (an access transaction for the record, signed by
    /// the reader), which the node commits before it releases a byte. Returns the preamble
    /// and a stream of the ciphertext.
    pub async fn read_record(
        &self,
        pmr: &str,
        access: &SignedTransaction,
    ) -> Result<RecordStream, ClientError> {
        let path = format!("{}/{pmr}/read", paths::RECORDS);
        let url = self.url(&path);
        let req = self.post_tx(&url, access).timeout(STREAM_TIMEOUT);
        let resp = self.send(req, &url).await?;
        let status = resp.status();
        if !status.is_success() {
            let body = read_body(resp, &url).await?;
            return Err(refusal(status, &body));
        }
        RecordStream::start(resp, url).await
    }
}

/// The body of an audited read: the preamble, then the ciphertext chunk by chunk.
#[derive(Debug)]
pub struct RecordStream {
    /// What precedes the ciphertext.
    pub preamble: ReadPreamble,
    resp: Response,
    pending: Option<Bytes>,
    url: String,
    received: u64,
}

impl RecordStream {
    async fn start(mut resp: Response, url: String) -> Result<Self, ClientError> {
        let bad =
            |reason: String| ClientError::Http(HttpError::BadResponse { url: url.clone(), reason });
        let mut buf = Vec::new();
        let (preamble, used) = loop {
            if buf.len() >= 4 {
                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if len > MAX_PREAMBLE_BYTES {
                    return Err(bad(format!("a read preamble of {len} bytes is too large")));
                }
                if buf.len() >= 4 + len {
                    let p: ReadPreamble =
                        encoding::decode("read preamble", &buf[4..4 + len], MAX_PREAMBLE_BYTES)
                            .map_err(|e| bad(e.to_string()))?;
                    break (p, 4 + len);
                }
            }
            match next(&mut resp, &url).await? {
                Some(chunk) => buf.extend_from_slice(&chunk),
                None => return Err(bad("the response ended inside the preamble".into())),
            }
        };
        let rest = Bytes::copy_from_slice(&buf[used..]);
        let received = rest.len() as u64;
        if received > preamble.size {
            return Err(bad("more ciphertext than announced".into()));
        }
        Ok(Self { preamble, resp, pending: (!rest.is_empty()).then_some(rest), url, received })
    }

    /// The next piece of ciphertext, or `None` at the end. Fails if the stream ends early or
    /// runs past the announced size.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        match next(&mut self.resp, &self.url).await? {
            Some(chunk) => {
                self.received += chunk.len() as u64;
                if self.received > self.preamble.size {
                    return Err(ClientError::Http(HttpError::BadResponse {
                        url: self.url.clone(),
                        reason: "more ciphertext than announced".into(),
                    }));
                }
                Ok(Some(chunk))
            }
            None if self.received < self.preamble.size => {
                Err(ClientError::Http(HttpError::Unreachable {
                    url: self.url.clone(),
                    reason: format!(
                        "the stream ended after {} of {} bytes",
                        self.received, self.preamble.size
                    ),
                }))
            }
            None => Ok(None),
        }
    }
}

async fn next(resp: &mut Response, url: &str) -> Result<Option<Bytes>, ClientError> {
    resp.chunk().await.map_err(|e| {
        ClientError::Http(HttpError::Unreachable {
            url: url.to_owned(),
            reason: format!("connection lost while reading the record: {}", error_chain(&e)),
        })
    })
}
