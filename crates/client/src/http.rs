//! An async HTTP client for a node's API (the paths and bodies of `medledger-api`): the
//! transport kernel (requests, signing, bodies, refusals) and the registry, transaction and blob
//! calls; each other area's calls are in `http/<area>.rs`.
//!
//! A client signs every request in one way: as the [`Signer`] given to
//! [`NodeClient::signed_by`] (all reads but health, metrics and genesis must be signed). Every
//! non-2xx answer becomes a [`crate::error::HttpError::Refused`] carrying the server's code and message
//! (and, for a transaction, its outcome); no answer at all becomes
//! [`crate::error::HttpError::Unreachable`]. Response bodies are size-limited, and content the client can
//! check (a receipt's transaction hash, a stored blob's hash) is checked.

use std::{sync::Arc, time::Duration};

use medledger_api::{
    AccountKeyProof, AccountView, BatchItem, BlobStored, ConsistencyResponse, DoctorView,
    ErrorCode, Health, HospitalView, OrganisationView, PatientView, Simulation, TxProofResponse,
    paths,
};
use medledger_core::{
    Hash,
    block::{Genesis, Receipt, SignedCheckpoint},
    encoding,
    ids::{AccountId, PatientId},
    keys::EncryptionKey,
    tx::SignedTransaction,
};
use reqwest::{RequestBuilder, Response, StatusCode, header::CONTENT_TYPE};
use serde::de::DeserializeOwned;

use crate::error::{ClientError, HttpError};

mod audit;
mod cases;
mod consent;
mod devices;
mod emergency;
mod nodes;
mod records;
pub use records::RecordStream;

/// Largest response body accepted.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a whole request (a submission waits for its block to commit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a submission answered 503 `not_yet` (committed, not yet applied by the node
/// asked) is sent again, half a second apart, before the answer is passed on.
const NOT_YET_RETRIES: u32 = 20;

/// A client for one node. With a signer ([`NodeClient::signed_by`]) every read is signed, as
/// the node requires of all reads but health, metrics and genesis.
#[derive(Clone, Debug)]
pub struct NodeClient {
    base: String,
    http: reqwest::Client,
    /// The TLS configuration of `http`, for a client without its overall deadline (an event
    /// stream).
    tls: medledger_tls::ClientConfig,
    signer: Option<Signer>,
    /// Accounts whose registration this client has proven, by trust anchor
    /// ([`NodeClient::proven_account`]): a registration, and the encryption key it set, never
    /// change, so each is proven once (with its registrars) rather than on every key it is
    /// asked for. Shared by the clones of one client.
    proven: Arc<std::sync::Mutex<ProvenAccounts>>,
}

/// What [`NodeClient::proven_account`] has proven.
type ProvenAccounts = std::collections::HashMap<
    (AccountId, crate::proof::TrustAnchor),
    crate::proof::VerifiedRegistration,
>;

/// Who signs a client's requests: an account and its active key.
#[derive(Clone, Debug)]
pub struct Signer {
    key: std::sync::Arc<medledger_core::keys::SigningKey>,
    account: AccountId,
}

impl Signer {
    /// Signs as `account` with `key` (the account's active key).
    pub fn new(key: medledger_core::keys::SigningKey, account: AccountId) -> Self {
        Self { key: std::sync::Arc::new(key), account }
    }

    /// The signing account.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// The signature header for `method path` with `body`: now, with a fresh random nonce.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<medledger_core::request::RequestAuth, ClientError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| ClientError::Random { reason: e.to_string() })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Ok(medledger_core::request::RequestAuth::sign(
            &self.key,
            self.account,
            method,
            path,
            body,
            now,
            nonce,
        ))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// How many registrations up a key proof follows its signers: a device's (its patient's or
/// a delegate's), the patient's (a hospital's), the hospital's (the regulator's).
const MAX_REGISTRARS: u8 = 3;

impl NodeClient {
    /// A client for the node at `base_url` (like `http://127.0.0.1:7878`). Over `https://`
    /// it accepts any node certificate ([`medledger_tls::AnyKey`]): the connection is
    /// encrypted but the node unauthenticated; a wallet connects with [`NodeClient::pinned`].
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Self::with_tls(base_url, Arc::new(medledger_tls::AnyKey::default()))
    }

    /// A client for the node at `base_url` that, over `https://`, accepts only a node that
    /// proves one of `pins` in the TLS handshake (see [`crate::pinning`]).
    pub fn pinned(base_url: &str, pins: Arc<medledger_tls::Pins>) -> Result<Self, ClientError> {
        Self::with_tls(base_url, pins)
    }

    /// A client for the node at `base_url` whose TLS handshakes accept the keys `policy`
    /// accepts.
    pub fn with_tls(
        base_url: &str,
        policy: Arc<dyn medledger_tls::KeyPolicy>,
    ) -> Result<Self, ClientError> {
        let base = base_url.trim().trim_end_matches('/').to_owned();
        let bad = |reason: String| {
            ClientError::Http(HttpError::BadUrl { url: base_url.to_owned(), reason })
        };
        let url = reqwest::Url::parse(&base).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("scheme {:?} is not http or https", url.scheme())));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a node URL has no query or fragment".into()));
        }
        let tls = medledger_tls::client_config(None, policy).map_err(|e| bad(e.to_string()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tls_backend_preconfigured(tls.clone())
            .build()
            .map_err(|e| bad(error_chain(&e)))?;
        Ok(Self { base, http, tls, signer: None, proven: Default::default() })
    }

    /// The same client, signing every request as `signer`.
    pub fn signed_by(mut self, signer: Signer) -> Self {
        self.signer = Some(signer);
        self
    }

    /// A POST of a signed transaction (an audited read's access), whose signature is its
    /// own authentication.
    fn post_tx(&self, url: &str, tx: &SignedTransaction) -> RequestBuilder {
        self.http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(tx.encode())
    }

    /// Adds the signature header when this client has a signer.
    fn authorised(
        &self,
        req: RequestBuilder,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<RequestBuilder, ClientError> {
        Ok(match &self.signer {
            Some(signer) => req.header(
                medledger_core::request::HEADER,
                signer.sign(method, path, body)?.to_header(),
            ),
            None => req,
        })
    }

    /// The node's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Liveness and tip.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get_public(paths::HEALTH).await
    }

    /// The network's genesis.
    pub async fn genesis(&self) -> Result<Genesis, ClientError> {
        self.get_public(paths::GENESIS).await
    }

    /// The latest signed checkpoint. Check it with [`crate::proof::check_consistency`] against
    /// the last one the wallet saw.
    pub async fn checkpoint(&self) -> Result<SignedCheckpoint, ClientError> {
        self.get(paths::CHECKPOINT).await
    }

    /// A consistency proof between log sizes `old` and `new`.
    pub async fn consistency(
        &self,
        old: u64,
        new: u64,
    ) -> Result<ConsistencyResponse, ClientError> {
        self.get(&format!("{}?old={old}&new={new}", paths::CONSISTENCY)).await
    }

    /// A committed transaction with its inclusion proof (`GET /v1/transactions/{hash}`). Check
    /// it with [`crate::proof::verify_tx_proof`].
    pub async fn transaction(&self, hash: &Hash) -> Result<TxProofResponse, ClientError> {
        self.get(&format!("{}/{hash}", paths::TRANSACTIONS)).await
    }

    /// [`NodeClient::transaction`], answered only once the node has applied `min_height`
    /// (else 503 `not_yet` with its height): its proof is then against a checkpoint at least
    /// that high.
    pub async fn transaction_at_least(
        &self,
        hash: &Hash,
        min_height: u64,
    ) -> Result<TxProofResponse, ClientError> {
        self.get(&format!("{}/{hash}?min_height={min_height}", paths::TRANSACTIONS)).await
    }

    /// An account, or `None` if the ledger has no such account.
    pub async fn account(&self, id: &AccountId) -> Result<Option<AccountView>, ClientError> {
        self.get_optional(&format!("{}/{id}", paths::ACCOUNTS)).await
    }

    /// An account's encryption key with the registration that set it, unchecked; see
    /// [`NodeClient::proven_encryption_key`].
    pub async fn account_key_proof(
        &self,
        id: &AccountId,
    ) -> Result<Option<AccountKeyProof>, ClientError> {
        self.get_optional(&format!("{}/{id}/{}", paths::ACCOUNTS, paths::ENCRYPTION_KEY)).await
    }

    /// The encryption key of `account`, proven against the ledger under `anchor` (see
    /// [`crate::proof::verify_account_key`], and its registration's signer proven to be one
    /// the ledger lets register it, see [`crate::proof::Registrar`]), or `None` if the node
    /// says there is no such account. The only way the wallet learns a key to wrap or seal
    /// anything to: [`NodeClient::account`]'s `encryption_key` is what the node says,
    /// unchecked.
    pub async fn proven_encryption_key(
        &self,
        account: &AccountId,
        anchor: &crate::proof::TrustAnchor,
    ) -> Result<Option<EncryptionKey>, ClientError> {
        Ok(self.proven_account(account, anchor, MAX_REGISTRARS).await?.map(|v| v.key))
    }

    /// What the proven registration of `account` made it (see
    /// [`crate::proof::verify_registration`], the signer proven as for
    /// [`NodeClient::proven_encryption_key`]), or `None` if the node says there is no such
    /// account: how the wallet knows who is a member of which organisation, never from a
    /// listing the node could edit.
    pub async fn proven_registration(
        &self,
        account: &AccountId,
        anchor: &crate::proof::TrustAnchor,
    ) -> Result<Option<crate::proof::Registered>, ClientError> {
        Ok(self.proven_account(account, anchor, MAX_REGISTRARS).await?.map(|v| v.registered))
    }

    /// What the proven registration of `account` made it and the name it was registered
    /// under (proven as for [`NodeClient::proven_registration`]), or `None` if the node says
    /// there is no such account: the name to show beside an account id where the user
    /// decides something, never the node's directory.
    pub async fn proven_registrant(
        &self,
        account: &AccountId,
        anchor: &crate::proof::TrustAnchor,
    ) -> Result<Option<(crate::proof::Registered, Option<String>)>, ClientError> {
        let proven = self.proven_account(account, anchor, MAX_REGISTRARS).await?;
        Ok(proven.map(|v| (v.registered, v.name)))
    }

    /// `account`'s proven key and registration, its registration's signer proven in turn (at
    /// most `depth` registrations up: a device's patient, their hospital, the regulator).
    fn proven_account<'a>(
        &'a self,
        account: &'a AccountId,
        anchor: &'a crate::proof::TrustAnchor,
        depth: u8,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<Option<crate::proof::VerifiedRegistration>, ClientError>,
    > {
        Box::pin(async move {
            let cached = (*account, anchor.clone());
            if let Some(v) = self.proven.lock().expect("proven accounts lock").get(&cached) {
                return Ok(Some(v.clone()));
            }
            let Some(proof) = self.account_key_proof(account).await? else { return Ok(None) };
            let genesis = self.genesis().await?;
            // The registration may be proven under any admitted node's checkpoint; the
            // regulator's key (no registration) comes from the pinned genesis, under no
            // checkpoint.
            let signer = match &proof.registration {
                Some(r) => self.trusted_signer(&r.checkpoint, anchor, &genesis).await?,
                None => anchor.node_key,
            };
            let verified = crate::proof::verify_registration(
                &proof,
                account,
                anchor,
                &signer,
                Some(&genesis),
            )?;
            if let Some((by, needs)) = verified.registrar {
                let refuse = |reason: String| {
                    ClientError::Proof(crate::error::ProofError::UnprovenKey {
                        account: *account,
                        reason,
                    })
                };
                // The regulator, as the pinned genesis names it.
                let regulator = genesis.hash() == anchor.genesis && by == genesis.regulator();
                let proven = match (needs, regulator) {
                    (crate::proof::Registrar::Regulator, _) | (_, true) => None,
                    _ if depth == 0 => {
                        return Err(refuse(format!(
                            "its registration's signer {by} is more than {MAX_REGISTRARS} \
                             registrations from the regulator"
                        )));
                    }
                    _ => self.proven_account(&by, anchor, depth - 1).await?.map(|v| v.registered),
                };
                if !needs.allows(regulator, proven) {
                    return Err(refuse(format!(
                        "its registration was signed by {by}, which the ledger does not prove \
                         may register it (it must be {needs:?}; {by} is proven {proven:?})"
                    )));
                }
            }
            self.proven.lock().expect("proven accounts lock").insert(cached, verified.clone());
            Ok(Some(verified))
        })
    }
    /// The public key of `device`'s `session`, proven against the ledger under `anchor` by the
    /// transaction that started the session (see [`crate::proof::verify_session_key`]): the
    /// only key a device seals readings to. The session view's `public_key` is what the node
    /// says, unchecked.
    pub async fn proven_session_key(
        &self,
        session: &Hash,
        device: &AccountId,
        anchor: &crate::proof::TrustAnchor,
    ) -> Result<EncryptionKey, ClientError> {
        let proof = self.transaction(session).await?;
        let genesis = self.genesis().await?;
        let signer = self.trusted_signer(&proof.checkpoint, anchor, &genesis).await?;
        let (key, started_by) =
            crate::proof::verify_session_start(&proof, session, device, anchor, &signer)?;
        // Started by the device's patient, as the device's own registration names them: a
        // start anyone else signed is refused by the ledger, yet in the log.
        let refuse = |reason: String| {
            ClientError::Proof(crate::error::ProofError::UnprovenKey {
                account: *device,
                reason: format!("the key of session {session} is not proven: {reason}"),
            })
        };
        match self.proven_registration(device, anchor).await? {
            Some(crate::proof::Registered::DeviceOf(patient)) if patient == started_by => Ok(key),
            Some(crate::proof::Registered::DeviceOf(patient)) => Err(refuse(format!(
                "it was started by {started_by}, not by the device's patient {patient}"
            ))),
            other => Err(refuse(format!(
                "the ledger proves no registration of device {device} (it proves {other:?})"
            ))),
        }
    }

    /// The hospital directory.
    pub async fn hospitals(&self) -> Result<Vec<HospitalView>, ClientError> {
        self.get(paths::HOSPITALS).await
    }

    /// The organisation directory (researchers, insurers, their members).
    pub async fn organisations(&self) -> Result<Vec<OrganisationView>, ClientError> {
        self.get(paths::ORGANISATIONS).await
    }

    /// The doctor directory, optionally only one hospital's doctors.
    pub async fn doctors(
        &self,
        hospital: Option<AccountId>,
    ) -> Result<Vec<DoctorView>, ClientError> {
        match hospital {
            Some(h) => self.get(&format!("{}?hospital={h}", paths::DOCTORS)).await,
            None => self.get(paths::DOCTORS).await,
        }
    }

    /// A patient's registration, or `None` if there is no such patient.
    pub async fn patient(&self, id: PatientId) -> Result<Option<PatientView>, ClientError> {
        self.get_optional(&format!("{}/{id}", paths::PATIENTS)).await
    }

    /// A patient's registration by Patient-ID, looked up with the key check derived from the
    /// code on their emergency card (`EmergencyKey::check`): how a doctor who holds the card,
    /// and has no other relationship to the patient the ledger knows of, finds their account.
    pub async fn patient_with_card(
        &self,
        id: PatientId,
        card: &Hash,
    ) -> Result<Option<PatientView>, ClientError> {
        self.get_optional(&format!("{}/{id}?card={card}", paths::PATIENTS)).await
    }

    /// Stores a (sealed) blob in the node's vault. Checks that the node reports the hash and
    /// size of the bytes sent.
    pub async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobStored, ClientError> {
        let url = self.url(paths::BLOBS);
        let (hash, size) = (Hash::of(&bytes), bytes.len() as u64);
        let req = self.http.put(&url).header(CONTENT_TYPE, "application/octet-stream");
        let req = self.authorised(req, "PUT", paths::BLOBS, &bytes)?.body(bytes);
        let stored: BlobStored = read_json(self.send(req, &url).await?, &url).await?;
        if stored.hash != hash || stored.size != size {
            return Err(ClientError::Http(HttpError::BadResponse {
                url,
                reason: format!(
                    "the node stored {} ({} bytes), but the blob sent is {hash} ({size} bytes)",
                    stored.hash, stored.size
                ),
            }));
        }
        Ok(stored)
    }

    /// Fetches a blob by its content hash (`GET /v1/blobs/{hash}`) and checks that the bytes
    /// hash to it.
    pub async fn get_blob(&self, hash: &Hash) -> Result<Vec<u8>, ClientError> {
        let path = format!("{}/{hash}", paths::BLOBS);
        let url = self.url(&path);
        let resp =
            self.send(self.authorised(self.http.get(&url), "GET", &path, b"")?, &url).await?;
        let status = resp.status();
        let body = read_body(resp, &url).await?;
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        let got = Hash::of(&body);
        if got != *hash {
            return Err(ClientError::Http(HttpError::BadResponse {
                url,
                reason: format!("the blob served hashes to {got}, not to the {hash} requested"),
            }));
        }
        Ok(body)
    }

    /// Submits a transaction and waits for its receipt. A receipt may still record a refusal
    /// (`outcome` of status refused); a transaction refused before or by the ledger comes back
    /// as [`crate::error::HttpError::Refused`] with the server's code, message and outcome.
    pub async fn submit(&self, tx: &SignedTransaction) -> Result<Receipt, ClientError> {
        let url = self.url(paths::TRANSACTIONS);
        let mut attempt = 0;
        let receipt: Receipt = loop {
            let req = self
                .http
                .post(&url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(tx.encode());
            match read_json(self.send(req, &url).await?, &url).await {
                // A follower forwarded it and the leader committed it, but the follower has
                // not applied it yet: the same transaction again is answered with its receipt.
                Err(ClientError::Http(HttpError::Refused { code: ErrorCode::NotYet, .. }))
                    if attempt < NOT_YET_RETRIES =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => break other?,
            }
        };
        let hash = tx.hash();
        if receipt.tx_hash != hash {
            return Err(ClientError::Http(HttpError::BadResponse {
                url,
                reason: format!("the receipt is for transaction {}, not {hash}", receipt.tx_hash),
            }));
        }
        Ok(receipt)
    }

    /// Asks the node what the next block would do with `tx` (`POST
    /// /v1/transactions/simulate`), without ordering or writing anything: the
    /// [`Simulation`] of a transaction that would apply, or [`crate::error::HttpError::Refused`] with the
    /// code, message and outcome a submission would get.
    pub async fn simulate(&self, tx: &SignedTransaction) -> Result<Simulation, ClientError> {
        let url = self.url(paths::TRANSACTIONS_SIMULATE);
        let req =
            self.http.post(&url).header(CONTENT_TYPE, "application/octet-stream").body(tx.encode());
        let simulation: Simulation = read_json(self.send(req, &url).await?, &url).await?;
        let hash = tx.hash();
        if simulation.tx_hash != hash {
            return Err(ClientError::Http(HttpError::BadResponse {
                url,
                reason: format!(
                    "the simulation is of transaction {}, not {hash}",
                    simulation.tx_hash
                ),
            }));
        }
        Ok(simulation)
    }

    /// Submits many transactions at once; one result per transaction, in order.
    pub async fn submit_batch(
        &self,
        txs: &[SignedTransaction],
    ) -> Result<Vec<BatchItem>, ClientError> {
        let url = self.url(paths::TRANSACTIONS_BATCH);
        // The canonical encoding of a slice is that of the `Vec` the node decodes.
        let req = self
            .http
            .post(&url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(encoding::encode(txs));
        let items: Vec<BatchItem> = read_json(self.send(req, &url).await?, &url).await?;
        if items.len() != txs.len() {
            return Err(ClientError::Http(HttpError::BadResponse {
                url,
                reason: format!("{} results for {} transactions", items.len(), txs.len()),
            }));
        }
        for (item, tx) in items.iter().zip(txs) {
            if let BatchItem::Receipt(r) = item
                && r.tx_hash != tx.hash()
            {
                return Err(ClientError::Http(HttpError::BadResponse {
                    url,
                    reason: format!("result for {} is a receipt for {}", tx.hash(), r.tx_hash),
                }));
            }
        }
        Ok(items)
    }

    /// A GET with a ready-made signature header (for tests of replays and stale requests).
    pub async fn get_with_auth<T: DeserializeOwned>(
        &self,
        path: &str,
        auth: &medledger_core::request::RequestAuth,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let req = self.http.get(&url).header(medledger_core::request::HEADER, auth.to_header());
        read_json(self.send(req, &url).await?, &url).await
    }

    /// A GET, signed when this client has a signer.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let req = self.authorised(self.http.get(&url), "GET", path, b"")?;
        read_json(self.send(req, &url).await?, &url).await
    }

    /// A GET of one of the few public paths (health, genesis): never signed, so that a wallet
    /// not yet on the ledger can learn which network it talks to.
    async fn get_public<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        read_json(self.send(self.http.get(&url), &url).await?, &url).await
    }

    /// [`Self::get_public`] of a path that may name nothing: `None` for the node's typed 404
    /// `not_found`; any other answer (such as the bare 404 of a node without the route) is an
    /// error.
    pub(crate) async fn get_public_optional<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, ClientError> {
        match self.get_public(path).await {
            Ok(found) => Ok(Some(found)),
            Err(ClientError::Http(HttpError::Refused {
                status: 404,
                code: ErrorCode::NotFound,
                ..
            })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get_optional<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, ClientError> {
        let url = self.url(path);
        let resp = self.send(self.authorised(self.http.get(&url), "GET", path, b"")?, &url).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        read_json(resp, &url).await.map(Some)
    }

    /// Sends `req` and returns the body of a 2xx answer (at most `limit` bytes), or the
    /// refusal.
    async fn bytes(
        &self,
        req: RequestBuilder,
        url: &str,
        limit: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let resp = self.send(req, url).await?;
        let status = resp.status();
        if !status.is_success() {
            let body = read_body(resp, url).await?;
            return Err(refusal(status, &body));
        }
        read_body_limited(resp, url, limit).await
    }

    async fn send(&self, req: RequestBuilder, url: &str) -> Result<Response, ClientError> {
        req.send().await.map_err(|e| {
            ClientError::Http(HttpError::Unreachable {
                url: url.to_owned(),
                reason: error_chain(&e),
            })
        })
    }
}

/// Reads at most [`MAX_RESPONSE_BYTES`] of a response body.
async fn read_body(resp: Response, url: &str) -> Result<Vec<u8>, ClientError> {
    read_body_limited(resp, url, MAX_RESPONSE_BYTES).await
}

/// Reads at most `limit` bytes of a response body.
async fn read_body_limited(
    mut resp: Response,
    url: &str,
    limit: usize,
) -> Result<Vec<u8>, ClientError> {
    let too_large = || {
        ClientError::Http(HttpError::BadResponse {
            url: url.to_owned(),
            reason: format!("response body larger than {limit} bytes"),
        })
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        ClientError::Http(HttpError::Unreachable {
            url: url.to_owned(),
            reason: format!("connection lost while reading the response: {}", error_chain(&e)),
        })
    })? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a 2xx JSON body, or turns an error status into [`crate::error::HttpError::Refused`].
async fn read_json<T: DeserializeOwned>(resp: Response, url: &str) -> Result<T, ClientError> {
    let status = resp.status();
    let body = read_body(resp, url).await?;
    if !status.is_success() {
        return Err(refusal(status, &body));
    }
    serde_json::from_slice(&body).map_err(|e| {
        ClientError::Http(HttpError::BadResponse {
            url: url.to_owned(),
            reason: format!("body is not the expected JSON: {e}"),
        })
    })
}

/// An error answer as a [`ClientError`] (see [`HttpError::refusal`]).
fn refusal(status: StatusCode, body: &[u8]) -> ClientError {
    HttpError::refusal(status, body).into()
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Read, Write},
        net::TcpListener,
        thread,
    };

    use medledger_api::{ErrorBody, ErrorCode};
    use medledger_core::{
        block::{Outcome, Refusal},
        keys::SigningKey,
        tx::{RegistryTx, Transaction, TxBody},
    };

    use super::*;

    /// A request as the mock server saw it.
    #[derive(Debug)]
    struct Seen {
        method: String,
        path: String,
        content_type: Option<String>,
        body: Vec<u8>,
    }

    /// Serves one canned response per connection, in order, and returns what it was sent.
    fn mock(responses: Vec<(u16, String)>) -> (String, thread::JoinHandle<Vec<Seen>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, body) in responses {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut parts = line.split_whitespace();
                let (method, path) =
                    (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned());
                let (mut len, mut content_type) = (0usize, None);
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (name, value) = h.split_once(':').unwrap();
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => len = value.trim().parse().unwrap(),
                        "content-type" => content_type = Some(value.trim().to_owned()),
                        _ => {}
                    }
                }
                let mut body_in = vec![0u8; len];
                reader.read_exact(&mut body_in).unwrap();
                seen.push(Seen { method, path, content_type, body: body_in });
                let mut stream = stream;
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
            seen
        });
        (url, handle)
    }

    fn tx(nonce: u64) -> SignedTransaction {
        let key = SigningKey::from_seed([3; 32]);
        Transaction {
            chain_id: "medledger-test".into(),
            signer: medledger_core::ids::AccountId::from_initial_key(&key.public_key()),
            nonce,
            body: TxBody::Registry(RegistryTx::RotateKey { new_key: key.public_key() }),
        }
        .sign(&key)
    }

    fn receipt(tx: &SignedTransaction, outcome: Outcome) -> Receipt {
        Receipt { tx_hash: tx.hash(), height: 4, log_index: 9, outcome }
    }

    #[tokio::test]
    async fn submit_posts_canonical_bytes_and_parses_the_receipt() {
        let t = tx(1);
        let r = receipt(&t, Outcome::Applied { created: None });
        let (url, server) = mock(vec![(200, serde_json::to_string(&r).unwrap())]);
        let client = NodeClient::new(&format!("{url}/")).unwrap();
        assert_eq!(client.submit(&t).await.unwrap(), r);
        let seen = server.join().unwrap();
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].path, paths::TRANSACTIONS);
        assert_eq!(seen[0].content_type.as_deref(), Some("application/octet-stream"));
        assert_eq!(seen[0].body, t.encode());
    }

    #[tokio::test]
    async fn a_submission_not_yet_applied_by_the_follower_is_sent_again_until_its_receipt() {
        let t = tx(1);
        let r = receipt(&t, Outcome::Applied { created: None });
        let not_yet = serde_json::to_string(&ErrorBody {
            code: ErrorCode::NotYet,
            message: "not yet: this node has applied height 3".into(),
            outcome: None,
        })
        .unwrap();
        let (url, server) = mock(vec![
            (503, not_yet.clone()),
            (503, not_yet),
            (200, serde_json::to_string(&r).unwrap()),
        ]);
        let client = NodeClient::new(&url).unwrap();
        assert_eq!(client.submit(&t).await.unwrap(), r);
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|s| s.body == t.encode()), "the same transaction each time");

        // Any other 503 is passed on at once.
        let no_quorum = serde_json::to_string(&ErrorBody {
            code: ErrorCode::NoQuorum,
            message: "no quorum".into(),
            outcome: None,
        })
        .unwrap();
        let (url, server) = mock(vec![(503, no_quorum)]);
        let err = NodeClient::new(&url).unwrap().submit(&t).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Http(HttpError::Refused { status: 503, .. })),
            "{err:?}"
        );
        assert_eq!(server.join().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn refusals_carry_code_message_and_outcome() {
        let t = tx(1);
        let outcome = Outcome::Refused { reason: Refusal::StaleNonce { last: 1, got: 1 } };
        let body = ErrorBody {
            code: ErrorCode::Refused,
            message: "replayed nonce".into(),
            outcome: Some(outcome.clone()),
        };
        let (url, server) = mock(vec![
            (422, serde_json::to_string(&body).unwrap()),
            (502, "<html>bad gateway</html>".into()),
        ]);
        let client = NodeClient::new(&url).unwrap();
        let err = client.submit(&t).await.unwrap_err();
        match &err {
            ClientError::Http(HttpError::Refused {
                status: 422,
                code,
                message,
                outcome: Some(o),
                ..
            }) => {
                assert_eq!(code, "refused");
                assert_eq!(message, "replayed nonce");
                assert_eq!(o, &outcome);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(
            err.to_string().starts_with("the ledger refused the transaction: replayed nonce"),
            "{err}"
        );

        let err = client.hospitals().await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Http(HttpError::Refused { status: 502, code, message, .. })
                if code == "http_error" && message.contains("bad gateway")),
            "{err:?}"
        );
        server.join().unwrap();
    }

    #[tokio::test]
    async fn not_found_is_none_and_paths_are_right() {
        let not_found = serde_json::to_string(&ErrorBody {
            code: ErrorCode::NotFound,
            message: "no such account".into(),
            outcome: None,
        })
        .unwrap();
        let (url, server) =
            mock(vec![(404, not_found.clone()), (404, not_found), (200, "[]".into())]);
        let client = NodeClient::new(&url).unwrap();
        let id = medledger_core::ids::AccountId([0xab; 20]);
        assert_eq!(client.account(&id).await.unwrap(), None);
        assert_eq!(client.patient(PatientId(85437)).await.unwrap(), None);
        assert_eq!(client.doctors(Some(id)).await.unwrap(), vec![]);
        let seen = server.join().unwrap();
        assert_eq!(seen[0].path, format!("/v1/accounts/{}", "ab".repeat(20)));
        assert_eq!(seen[1].path, "/v1/patients/85437");
        assert_eq!(seen[2].path, format!("/v1/doctors?hospital={}", "ab".repeat(20)));
    }

    #[tokio::test]
    async fn batch_and_blob() {
        let txs = vec![tx(1), tx(2)];
        let items = vec![
            BatchItem::Receipt(receipt(&txs[0], Outcome::Applied { created: None })),
            BatchItem::Error(ErrorBody {
                code: ErrorCode::BadSignature,
                message: "no".into(),
                outcome: None,
            }),
        ];
        let blob = b"sealed bytes".to_vec();
        let stored = BlobStored { hash: Hash::of(&blob), size: blob.len() as u64 };
        let wrong = BlobStored { hash: Hash::of(b"other"), size: 5 };
        let (url, server) = mock(vec![
            (200, serde_json::to_string(&items).unwrap()),
            (201, serde_json::to_string(&stored).unwrap()),
            (201, serde_json::to_string(&wrong).unwrap()),
            (200, "sealed bytes".into()),
            (200, "sealed bytez".into()),
        ]);
        let client = NodeClient::new(&url).unwrap();
        assert_eq!(client.submit_batch(&txs).await.unwrap(), items);
        assert_eq!(client.put_blob(blob.clone()).await.unwrap(), stored);
        assert!(matches!(
            client.put_blob(blob.clone()).await,
            Err(ClientError::Http(HttpError::BadResponse { .. }))
        ));
        assert_eq!(client.get_blob(&stored.hash).await.unwrap(), blob);
        assert!(matches!(
            client.get_blob(&stored.hash).await,
            Err(ClientError::Http(HttpError::BadResponse { .. }))
        ));
        let seen = server.join().unwrap();
        assert_eq!(seen[0].path, paths::TRANSACTIONS_BATCH);
        assert_eq!(seen[0].body, encoding::encode(&txs));
        let decoded: Vec<SignedTransaction> =
            encoding::decode("batch", &seen[0].body, usize::MAX).unwrap();
        assert_eq!(decoded, txs);
        assert_eq!((seen[1].method.as_str(), seen[1].path.as_str()), ("PUT", paths::BLOBS));
        assert_eq!(seen[1].body, blob);
        assert_eq!(seen[3].path, format!("/v1/blobs/{}", stored.hash));
    }

    #[tokio::test]
    async fn unreachable_node_gives_a_hint() {
        // A port that was just free: nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = NodeClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = client.health().await.unwrap_err();
        assert!(matches!(err, ClientError::Http(HttpError::Unreachable { .. })), "{err:?}");
        assert!(err.to_string().contains("Is a node running there?"), "{err}");
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in ["", "not a url", "ftp://x", "http://x/?a=b"] {
            assert!(
                matches!(NodeClient::new(url), Err(ClientError::Http(HttpError::BadUrl { .. }))),
                "{url}"
            );
        }
    }
}
