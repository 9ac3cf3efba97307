//! The Raft network: each RPC is a signed envelope ([`super::transport`]) posted to the peer's
//! `/v1/raft/{append,vote,snapshot}`, and the peer's signed answer is checked before Raft sees
//! it. A peer that cannot be connected to is `Unreachable` (openraft backs off); one that
//! answers too late is a `Timeout` (from the `RPCOption`'s hard TTL); one that refuses the
//! message (its typed error code) or answers with something that does not check out is a
//! `Network` error; a Raft error on the peer is a `RemoteError`.

use std::{sync::Arc, time::Duration};

use medledger_api::{BINARY_MEDIA_TYPE, ErrorBody, paths};
use medledger_core::encoding;
use openraft::{
    BasicNode,
    error::{
        InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
        Timeout, Unreachable,
    },
    network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory},
    raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    },
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{
    TypeConfig,
    transport::{APPEND_TARGET_BYTES, RpcKind, Transport},
};

/// What a node answers inside the signed response envelope: the Raft core's answer, its API
/// error, or that its Raft core has stopped.
#[derive(Debug, Serialize, Deserialize)]
pub enum Answer<T, E> {
    /// The Raft core's response.
    Ok(T),
    /// The Raft core's API error (only install-snapshot has one).
    Api(E),
    /// The peer's Raft core is not running.
    Stopped(String),
}

/// The API error of append-entries and vote: there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum NoApiError {}

impl<T> Answer<T, NoApiError> {
    /// The answer to an RPC without API errors.
    pub fn of(r: Result<T, RaftError<u64>>) -> Self {
        match r {
            Ok(t) => Answer::Ok(t),
            Err(RaftError::APIError(never)) => match never {},
            Err(RaftError::Fatal(f)) => Answer::Stopped(f.to_string()),
        }
    }
}

impl<T> Answer<T, InstallSnapshotError> {
    /// The answer to an install-snapshot RPC.
    pub fn of_snapshot(r: Result<T, RaftError<u64, InstallSnapshotError>>) -> Self {
        match r {
            Ok(t) => Answer::Ok(t),
            Err(RaftError::APIError(e)) => Answer::Api(e),
            Err(RaftError::Fatal(f)) => Answer::Stopped(f.to_string()),
        }
    }
}

/// The base URL of a Raft member's address (`host:port` for the genesis node, which Raft
/// learnt from its listener; a full URL for admitted nodes, from the ledger).
pub fn base_url(addr: &str) -> String {
    let addr = addr.trim_end_matches('/');
    if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") }
}

/// Factory for connections to peers.
#[derive(Debug, Clone)]
pub struct Network {
    transport: Arc<Transport>,
    http: reqwest::Client,
}

impl Network {
    /// The network of the node whose end of the transport is `transport`.
    pub fn new(transport: Arc<Transport>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { transport, http })
    }
}

/// A connection to one peer.
#[derive(Debug)]
pub struct Peer {
    target: u64,
    url: String,
    transport: Arc<Transport>,
    http: reqwest::Client,
}

/// The peer refused the message, or its answer did not check out.
#[derive(Debug, thiserror::Error)]
#[error("node {target}: {reason}")]
struct Refused {
    target: u64,
    reason: String,
}

/// The peer's Raft core is not running.
#[derive(Debug, thiserror::Error)]
#[error("node {target}'s Raft core is not running: {reason}")]
struct PeerStopped {
    target: u64,
    reason: String,
}

type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl Peer {
    fn refused<E: std::error::Error>(&self, reason: String) -> RPCError<u64, BasicNode, E> {
        RPCError::Network(NetworkError::new(&Refused { target: self.target, reason }))
    }

    /// Sends `body` as a `kind` request and returns the peer's checked answer.
    async fn call<T, E>(
        &self,
        kind: RpcKind,
        path: &str,
        body: Vec<u8>,
        option: &RPCOption,
    ) -> RpcResult<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: std::error::Error + Serialize + DeserializeOwned,
    {
        let action = match kind {
            RpcKind::Append => RPCTypes::AppendEntries,
            RpcKind::Vote => RPCTypes::Vote,
            RpcKind::Snapshot => RPCTypes::InstallSnapshot,
        };
        let ttl = option.hard_ttl();
        let failed = |e: reqwest::Error| -> RPCError<u64, BasicNode, RaftError<u64, E>> {
            if e.is_timeout() {
                RPCError::Timeout(Timeout {
                    action,
                    id: self.transport.me,
                    target: self.target,
                    timeout: ttl,
                })
            } else if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        };
        let request = self.transport.request(self.target, kind, body);
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .timeout(ttl)
            .header(reqwest::header::CONTENT_TYPE, BINARY_MEDIA_TYPE)
            .body(request.encode())
            .send()
            .await
            .map_err(failed)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(failed)?;
        if !status.is_success() {
            let reason = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => format!("refused ({status}, {}): {}", b.code, b.message),
                Err(_) => format!("refused with HTTP {status}"),
            };
            return Err(self.refused(reason));
        }
        let reply = self
            .transport
            .open_reply(&bytes, &request)
            .map_err(|e| self.refused(format!("its answer does not check out: {e}")))?;
        let answer: Answer<T, E> = encoding::decode("raft answer", &reply.body, kind.limit())
            .map_err(|e| self.refused(format!("its answer does not decode: {e}")))?;
        match answer {
            Answer::Ok(t) => Ok(t),
            Answer::Api(e) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, RaftError::APIError(e))))
            }
            Answer::Stopped(reason) => Err(RPCError::Unreachable(Unreachable::new(&PeerStopped {
                target: self.target,
                reason,
            }))),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;
    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            target,
            url: base_url(&node.addr),
            transport: self.transport.clone(),
            http: self.http.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let entries = rpc.entries.len() as u64;
        let body = encoding::encode(&rpc);
        if body.len() > APPEND_TARGET_BYTES && entries > 1 {
            // Raft retries with fewer entries; a single entry always fits the receiver's limit.
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries / 2)));
        }
        self.call::<_, NoApiError>(RpcKind::Append, paths::RAFT_APPEND, body, &option)
            .await
            .map_err(widen)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let body = encoding::encode(&rpc);
        self.call(RpcKind::Snapshot, paths::RAFT_SNAPSHOT, body, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let body = encoding::encode(&rpc);
        self.call::<_, NoApiError>(RpcKind::Vote, paths::RAFT_VOTE, body, &option)
            .await
            .map_err(widen)
    }
}

/// An RPC error without API errors, as openraft's infallible form.
fn widen(
    e: RPCError<u64, BasicNode, RaftError<u64, NoApiError>>,
) -> RPCError<u64, BasicNode, RaftError<u64>> {
    match e {
        RPCError::Timeout(t) => RPCError::Timeout(t),
        RPCError::Unreachable(u) => RPCError::Unreachable(u),
        RPCError::PayloadTooLarge(p) => RPCError::PayloadTooLarge(p),
        RPCError::Network(n) => RPCError::Network(n),
        RPCError::RemoteError(r) => match r.source {
            RaftError::APIError(never) => match never {},
            RaftError::Fatal(f) => {
                RPCError::RemoteError(RemoteError::new(r.target, RaftError::Fatal(f)))
            }
        },
    }
}
