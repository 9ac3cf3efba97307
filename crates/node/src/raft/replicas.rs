//! Vault replication between nodes: a node pulls a blob it lacks from its peers by hash.
//!
//! The request is a signed envelope ([`super::transport`], kind [`RpcKind::Blob`], body the
//! hash) in the `x-medledger-node-request` header of `GET /v1/raft/blobs/{hash}`: only an
//! active member of the network is served, and the peer checks chain, recipient, signature
//! and clock as for every Raft RPC. The answer is the blob itself, streamed; the puller
//! stores it through a vault upload that announces the hash, so bytes that do not hash to
//! it are refused and nothing is stored (a peer cannot plant a blob, only fail to deliver
//! one). Replicas are charged to the vault's system account, not to the uploader's quota:
//! the transaction that references them is committed already.
//!
//! Who pulls what: every node replicates every blob a committed transaction references
//! (the janitor, [`crate::janitor`], pulls a block's blobs as it applies, before the erasures
//! of later blocks); the leader pulls the blobs of a submission a follower forwarded from
//! that follower before admission; a node serving an audited read pulls what it lacks first.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use medledger_api::paths;
use medledger_core::{Hash, cid::Cid};
use medledger_ledger::Ledger;
use medledger_vault::{BlobError, BlobStore, FsVault, SYSTEM_UPLOADER};
use reqwest::StatusCode;

use super::{
    Raft,
    network::base_url,
    transport::{MAX_HELD_QUERY, RpcKind, Transport},
};

/// How long one pull from one peer may take (connecting, and the whole transfer).
pub const PULL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one question "which of these do you hold" may take.
const HELD_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no replica of a blob could be pulled.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// No peer is known (a one-node network, or none in the membership yet).
    #[error("no peer to pull blob {0} from")]
    NoPeer(Hash),
    /// Every peer was asked; none delivered. The reasons, one per peer.
    #[error("no peer delivered blob {hash}: {}", reasons.join("; "))]
    NotDelivered {
        /// The blob.
        hash: Hash,
        /// What each peer answered.
        reasons: Vec<String>,
        /// Whether every peer answered that it does not hold the blob (rather than a peer
        /// failing to answer or to deliver): asking again soon is then unlikely to help.
        held_by_none: bool,
    },
    /// This node may not write it now: below its free-space reserve, or after a fault.
    #[error("blob {hash} is not pulled: {reason}")]
    NotWritable {
        /// The blob.
        hash: Hash,
        /// Why.
        reason: String,
    },
    /// The blob belonged to a record erased at `height`: it is never stored again.
    #[error("blob {hash} was erased at block {height}: it is not pulled")]
    Erased {
        /// The blob.
        hash: Hash,
        /// The height of the erasure.
        height: u64,
    },
    /// This node's vault failed while storing it.
    #[error("storing blob {hash} in this node's vault failed: {error}")]
    Vault {
        /// The blob.
        hash: Hash,
        /// What failed.
        error: BlobError,
    },
}

impl PullError {
    /// The blob that was not pulled.
    pub fn hash(&self) -> Hash {
        match self {
            PullError::NoPeer(hash)
            | PullError::NotDelivered { hash, .. }
            | PullError::NotWritable { hash, .. }
            | PullError::Erased { hash, .. }
            | PullError::Vault { hash, .. } => *hash,
        }
    }

    /// Whether asking again later may deliver it (an erased blob: never).
    pub fn retriable(&self) -> bool {
        !matches!(self, PullError::Erased { .. })
    }

    /// Whether it is worth asking again soon whatever the blob's role: some peer failed to
    /// answer or to deliver (cut off, down, busy), or this node could not store it. A blob
    /// every peer said it does not hold is not: it may never have been uploaded.
    pub fn transient(&self) -> bool {
        match self {
            PullError::NotDelivered { held_by_none, .. } => !held_by_none,
            PullError::Erased { .. } => false,
            PullError::NoPeer(_) | PullError::NotWritable { .. } | PullError::Vault { .. } => true,
        }
    }
}

/// Pulls blobs from peers into this node's vault.
#[derive(Clone)]
pub struct Puller {
    raft: Raft,
    ledger: Arc<Ledger>,
    me: u64,
    transport: Arc<Transport>,
    vault: FsVault,
    http: reqwest::Client,
    faults: Option<Arc<super::faults::Faults>>,
    report: Arc<Mutex<Report>>,
    repair: Arc<tokio::sync::Notify>,
    writable: Writable,
}

/// What a pull must respect before it writes: the data directory's free-space reserve (kept
/// for the Raft log and the ledger) and a storage fault (after which nothing is written).
#[derive(Clone, Debug)]
pub struct Writable {
    /// The free-space reserve.
    pub disk: Arc<crate::storage::DiskGuard>,
    /// The node's storage or protocol fault, if one was reported.
    pub fault: Arc<crate::storage::StorageFault>,
}

/// What the last repair pass found, and what is being asked for again.
#[derive(Debug, Default)]
struct Report {
    checked_at_ms: Option<u64>,
    referenced: u64,
    /// What the last pass found missing, less what was pulled since.
    missing: std::collections::BTreeSet<Hash>,
    retrying: u64,
    repair_pending: bool,
}

/// How many missing blobs a status names.
const LISTED: usize = 100;

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller").field("me", &self.me).finish_non_exhaustive()
    }
}

impl Puller {
    /// A puller for node `me`, asking the members of `raft`'s membership.
    pub fn new(
        raft: Raft,
        ledger: Arc<Ledger>,
        me: u64,
        transport: Arc<Transport>,
        vault: FsVault,
        faults: Option<Arc<super::faults::Faults>>,
        writable: Writable,
    ) -> Result<Self, String> {
        let http = transport.peer_client()?;
        Ok(Puller {
            raft,
            ledger,
            me,
            transport,
            vault,
            http,
            faults,
            report: Arc::default(),
            repair: Arc::default(),
            writable,
        })
    }

    /// The other members (voters and learners) with their base URLs, `first` (if a member)
    /// ahead of the rest.
    fn peers(&self, first: Option<u64>) -> Vec<(u64, String)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let mut peers: Vec<(u64, String)> = metrics
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != self.me)
            .map(|(id, node)| (*id, base_url(&node.addr)))
            .collect();
        if let Some(first) = first {
            peers.sort_by_key(|(id, _)| *id != first);
        }
        peers
    }

    /// This node's replicas as of the last repair pass.
    pub fn status(&self) -> medledger_api::VaultStatus {
        let r = self.report.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        medledger_api::VaultStatus {
            node_id: self.me,
            checked_at_ms: r.checked_at_ms,
            referenced: r.referenced,
            held: r.referenced.saturating_sub(r.missing.len() as u64),
            missing: r.missing.len() as u64,
            missing_blobs: r.missing.iter().take(LISTED).copied().collect(),
            retrying: r.retrying,
            repair_pending: r.repair_pending,
        }
    }

    /// Asks the janitor for a repair pass (folded into one already asked for).
    pub fn request_repair(&self) {
        self.report.lock().unwrap_or_else(std::sync::PoisonError::into_inner).repair_pending = true;
        self.repair.notify_one();
    }

    /// Waits until a repair pass is asked for.
    pub async fn repair_requested(&self) {
        self.repair.notified().await;
    }

    /// Records a repair pass over `referenced` blobs that left `missing` ones missing.
    pub fn record_pass(&self, referenced: usize, missing: &[Hash]) {
        let mut r = self.report.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        r.checked_at_ms = Some(super::transport::now_ms());
        r.referenced = referenced as u64;
        r.missing = missing.iter().copied().collect();
        r.repair_pending = false;
    }

    /// Records how many blobs of recent blocks are being asked for again.
    pub fn record_retrying(&self, retrying: usize) {
        self.report.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retrying =
            retrying as u64;
    }

    /// Whether this node has peers to pull from.
    pub fn has_peers(&self) -> bool {
        !self.peers(None).is_empty()
    }

    /// Makes sure `hash` is in this node's vault: if it is not, pulls it from the peers
    /// (`first` asked first) until one delivers it. `Ok(true)` if it was pulled now.
    pub async fn ensure(&self, hash: &Hash, first: Option<u64>) -> Result<bool, PullError> {
        if self.vault.contains(hash).map_err(|error| PullError::Vault { hash: *hash, error })? {
            return Ok(false);
        }
        match self.ensure_all([*hash], first).await.pop() {
            Some(e) => Err(e),
            None => Ok(true),
        }
    }

    /// Pulls every blob of `hashes` this node lacks; the ones no peer delivered, with why.
    /// Each peer in turn (`first` first) is asked which of the blobs still wanted it holds
    /// (one request per 1,024; a single blob is asked for directly), and each it holds is
    /// pulled from it: a blob no node holds costs one question per peer, not a pull each.
    pub async fn ensure_all(
        &self,
        hashes: impl IntoIterator<Item = Hash>,
        first: Option<u64>,
    ) -> Vec<PullError> {
        let mut failed = Vec::new();
        let mut wanted = std::collections::BTreeSet::new();
        for hash in hashes {
            match self.vault.contains(&hash) {
                Ok(true) => {}
                Ok(false) => match self.erased_at(&hash) {
                    Ok(Some(height)) => failed.push(PullError::Erased { hash, height }),
                    Ok(None) => {
                        wanted.insert(hash);
                    }
                    Err(e) => failed.push(e),
                },
                Err(error) => failed.push(PullError::Vault { hash, error }),
            }
        }
        if wanted.is_empty() {
            return failed;
        }
        let peers = self.peers(first);
        if peers.is_empty() {
            failed.extend(wanted.into_iter().map(PullError::NoPeer));
            return failed;
        }
        let mut reasons: std::collections::BTreeMap<Hash, Vec<String>> = Default::default();
        // Blobs some peer failed to answer for or to deliver (not merely "not held").
        let mut unanswered = std::collections::BTreeSet::new();
        for (id, url) in peers {
            if wanted.is_empty() {
                break;
            }
            let asked: Vec<Hash> = wanted.iter().copied().collect();
            let holds = if asked.len() == 1 {
                asked.clone()
            } else {
                match self.held_by(id, &url, &asked).await {
                    Ok(holds) => holds,
                    Err(reason) => {
                        for hash in &asked {
                            reasons.entry(*hash).or_default().push(format!("node {id}: {reason}"));
                        }
                        unanswered.extend(asked);
                        continue;
                    }
                }
            };
            for hash in &asked {
                if !holds.contains(hash) {
                    reasons.entry(*hash).or_default().push(format!("node {id}: does not hold it"));
                }
            }
            for hash in holds {
                match self.pull_from(id, &url, &hash).await {
                    Ok(len) => {
                        wanted.remove(&hash);
                        // Erased while it was on its way: the janitor may have carried out
                        // the erasure before this copy was stored, so it is deleted here.
                        if let Some(erased) = self.drop_if_erased(&hash) {
                            failed.push(erased);
                            continue;
                        }
                        tracing::info!(blob = %hash, from = id, len, "pulled a replica");
                        self.report
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .missing
                            .remove(&hash);
                    }
                    Err(Attempt::Vault(error)) => {
                        wanted.remove(&hash);
                        failed.push(PullError::Vault { hash, error });
                    }
                    Err(Attempt::NotWritable(reason)) => {
                        wanted.remove(&hash);
                        failed.push(PullError::NotWritable { hash, reason });
                    }
                    Err(Attempt::Peer(reason)) => {
                        reasons.entry(hash).or_default().push(format!("node {id}: {reason}"));
                        unanswered.insert(hash);
                    }
                    Err(Attempt::NotHeld(reason)) => {
                        reasons.entry(hash).or_default().push(format!("node {id}: {reason}"));
                    }
                }
            }
        }
        failed.extend(wanted.into_iter().map(|hash| PullError::NotDelivered {
            hash,
            reasons: reasons.remove(&hash).unwrap_or_default(),
            held_by_none: !unanswered.contains(&hash),
        }));
        failed
    }

    /// The height at which `hash` was erased, if it was (a failed read of the ledger is this
    /// node's fault: nothing is pulled).
    fn erased_at(&self, hash: &Hash) -> Result<Option<u64>, PullError> {
        // A point read in redb, as quick as the vault's own `contains`.
        self.ledger.erased_at(hash).map_err(|e| PullError::NotWritable {
            hash: *hash,
            reason: format!("cannot read the ledger: {e}"),
        })
    }

    /// Deletes this node's copy of `hash` if the blob was erased; the error saying so.
    fn drop_if_erased(&self, hash: &Hash) -> Option<PullError> {
        let height = match self.erased_at(hash) {
            Ok(height) => height?,
            Err(e) => {
                tracing::error!(error = %e, "cannot tell whether a pulled blob was erased meanwhile");
                return None;
            }
        };
        if let Err(e) = tokio::task::block_in_place(|| self.vault.delete(hash)) {
            tracing::error!(blob = %hash, error = %e, "cannot delete a pulled blob erased meanwhile");
        }
        Some(PullError::Erased { hash: *hash, height })
    }

    /// Which of `hashes` peer `to` at `base` holds, asked in signed requests of at most
    /// [`MAX_HELD_QUERY`] hashes; the answers are signed by the peer and checked.
    async fn held_by(&self, to: u64, base: &str, hashes: &[Hash]) -> Result<Vec<Hash>, String> {
        let mut holds = Vec::new();
        for chunk in hashes.chunks(MAX_HELD_QUERY) {
            let timeout = super::faults::before_send(
                self.faults.as_deref(),
                to,
                super::faults::Message::Blob,
                HELD_TIMEOUT,
            )
            .await
            .map_err(|e| e.to_string())?;
            let request = self.transport.request(
                to,
                RpcKind::BlobsHeld,
                medledger_core::encoding::encode(&chunk.to_vec()),
            );
            let response = self
                .http
                .post(format!("{base}{}", paths::RAFT_BLOBS))
                .header(reqwest::header::CONTENT_TYPE, medledger_api::BINARY_MEDIA_TYPE)
                .body(request.encode())
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| format!("did not answer: {e}"))?;
            let status = response.status();
            let bytes = response.bytes().await.map_err(|e| format!("did not answer: {e}"))?;
            if status != StatusCode::OK {
                return Err(serde_json::from_slice::<medledger_api::ErrorBody>(&bytes)
                    .map(|b| format!("{} ({})", b.code, b.message))
                    .unwrap_or_else(|_| format!("HTTP {status}")));
            }
            let reply = self
                .transport
                .open_reply(&bytes, &request)
                .map_err(|e| format!("its answer does not check out: {e}"))?;
            let flags: Vec<bool> =
                medledger_core::encoding::decode("blobs held", &reply.body, MAX_HELD_QUERY + 16)
                    .map_err(|e| format!("its answer does not decode: {e}"))?;
            if flags.len() != chunk.len() {
                return Err(format!("it answered {} flags for {} blobs", flags.len(), chunk.len()));
            }
            holds.extend(chunk.iter().zip(flags).filter(|(_, held)| *held).map(|(h, _)| *h));
        }
        Ok(holds)
    }

    /// Replaces this node's damaged copy of `hash` (its bytes no longer hash to its name)
    /// with a peer's: the damaged copy is deleted (it can never be served), then the blob is
    /// pulled and hash-checked like any replica.
    pub async fn replace_damaged(&self, hash: &Hash) -> Result<(), PullError> {
        tracing::error!(blob = %hash, "this node's copy of a blob is damaged: replacing it with a peer's");
        tokio::task::block_in_place(|| self.vault.delete(hash))
            .map_err(|error| PullError::Vault { hash: *hash, error })?;
        self.ensure(hash, None).await?;
        tracing::warn!(blob = %hash, "a damaged replica was replaced with a good copy from a peer");
        Ok(())
    }

    /// Before a read: pulls what of `hashes` this node lacks, if it has peers; a blob no peer
    /// delivers is logged and left to the read, which reports it missing.
    pub async fn ensure_present(&self, hashes: impl IntoIterator<Item = Hash>) {
        let failed = self.ensure_all(hashes, None).await;
        for e in
            failed.iter().filter(|e| !matches!(e, PullError::NoPeer(_) | PullError::Erased { .. }))
        {
            tracing::warn!(error = %e, "a blob to be read is on no peer asked");
        }
    }

    async fn pull_from(&self, to: u64, base: &str, hash: &Hash) -> Result<u64, Attempt> {
        let timeout = super::faults::before_send(
            self.faults.as_deref(),
            to,
            super::faults::Message::Blob,
            PULL_TIMEOUT,
        )
        .await
        .map_err(|e| Attempt::Peer(e.to_string()))?;
        // A fresh nonce: two pulls of one blob from one peer in one millisecond would otherwise
        // be the same signed bytes, and the peer serves a signed request once.
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| Attempt::Peer(format!("no randomness: {e}")))?;
        let body = medledger_core::encoding::encode(&(hash, nonce));
        let request = self.transport.request(to, RpcKind::Blob, body);
        let response = self
            .http
            .get(format!("{base}{}/{hash}", paths::RAFT_BLOBS))
            .header(paths::NODE_REQUEST_HEADER, hex::encode(request.encode()))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| Attempt::Peer(format!("did not answer: {e}")))?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            let code = serde_json::from_str::<medledger_api::ErrorBody>(&body)
                .map(|b| format!("{} ({})", b.code, b.message))
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(match status {
                StatusCode::NOT_FOUND | StatusCode::GONE => Attempt::NotHeld(code),
                _ => Attempt::Peer(code),
            });
        }
        // The peer says how long the blob is, and no more is taken: the room is admitted
        // against the free-space reserve before anything is written.
        let Some(len) = response.content_length() else {
            return Err(Attempt::Peer("sent a blob without its length".into()));
        };
        if let Some(reason) = self.writable.fault.reason() {
            return Err(Attempt::NotWritable(format!("the node stopped writing: {reason}")));
        }
        self.writable.disk.admit(len).map_err(|e| Attempt::NotWritable(e.to_string()))?;
        let mut upload = self
            .vault
            .begin_upload(SYSTEM_UPLOADER, Some(Cid::from_hash(*hash)))
            .map_err(Attempt::Vault)?;
        let mut response = response;
        let mut received = 0u64;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    received += chunk.len() as u64;
                    if received > len {
                        return Err(Attempt::Peer(format!(
                            "sent more than the {len} bytes it announced"
                        )));
                    }
                    tokio::task::block_in_place(|| upload.write_chunk(&chunk))
                        .map_err(Attempt::Vault)?;
                }
                Ok(None) => break,
                Err(e) => return Err(Attempt::Peer(format!("the transfer broke off: {e}"))),
            }
        }
        match tokio::task::block_in_place(|| upload.finish()) {
            Ok(stored) => Ok(stored.len),
            // Bytes that are not the blob: the peer's fault (or its disk's), not ours.
            Err(BlobError::CidMismatch { .. }) => {
                Err(Attempt::Peer("sent bytes that do not hash to the blob".into()))
            }
            Err(e) => Err(Attempt::Vault(e)),
        }
    }
}

/// How one pull from one peer failed: the peer (ask the next), this node's vault, or its
/// room to write (stop).
enum Attempt {
    /// The peer failed to answer or to deliver.
    Peer(String),
    /// The peer answered that it does not hold the blob (or that it was erased).
    NotHeld(String),
    Vault(BlobError),
    NotWritable(String),
}
