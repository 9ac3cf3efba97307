//! The Raft network: each RPC is a signed envelope ([`super::transport`]) posted to the peer's
//! `/v1/raft/{append,vote,snapshot}`, and the peer's signed answer is checked before Raft sees
//! it. A peer that cannot be connected to is `Unreachable` (openraft backs off); one that
//! answers too late is a `Timeout` (from the `RPCOption`'s hard TTL); one that refuses the
//! message (its typed error code) or answers with something that does not check out is a
//! `Network` error; a Raft error on the peer is a `RemoteError`. Under a fault test's rules
//! ([`super::faults`]; `None` otherwise, and nothing is looked at) a message may be cut
//! (`Unreachable` at once), lost (a `Timeout` after the TTL) or delayed before it is sent.

use std::sync::Arc;

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
    faults::{self, Blocked, Faults},
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
    /// A fault test's rules for what this node sends (`medledger up --fault-rules`); `None` in
    /// production.
    faults: Option<Arc<Faults>>,
}

impl Network {
    /// The network of the node whose end of the transport is `transport`.
    pub fn new(transport: Arc<Transport>) -> Result<Self, String> {
        let http = transport.peer_client()?;
        Ok(Self { transport, http, faults: None })
    }

    /// The same network with a fault test's rules applied to every RPC it sends.
    pub fn with_faults(self, faults: Option<Arc<Faults>>) -> Self {
        Self { faults, ..self }
    }
}

/// A connection to one peer.
#[derive(Debug)]
pub struct Peer {
    target: u64,
    url: String,
    transport: Arc<Transport>,
    http: reqwest::Client,
    faults: Option<Arc<Faults>>,
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

/// What an RPC to a peer gives openraft.
pub(crate) type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

/// Peer `target` refused the message, or its answer did not check out: a network error.
pub(crate) fn refused<E: std::error::Error>(
    target: u64,
    reason: String,
) -> RPCError<u64, BasicNode, E> {
    RPCError::Network(NetworkError::new(&Refused { target, reason }))
}

/// The openraft action a Raft RPC kind is.
pub(crate) fn action(kind: RpcKind) -> RPCTypes {
    match kind {
        RpcKind::Append => RPCTypes::AppendEntries,
        RpcKind::Vote => RPCTypes::Vote,
        RpcKind::Snapshot => RPCTypes::InstallSnapshot,
        RpcKind::Blob | RpcKind::BlobsHeld => {
            unreachable!("blobs are pulled by raft::replicas, not sent by Raft")
        }
    }
}

/// Peer `target`'s signed reply `bytes` to `request`: checked (signed by it, answering this
/// request), decoded, and mapped onto what openraft expects (its API error as a remote error,
/// a stopped Raft core as unreachable, anything that does not check out as refused).
pub(crate) fn read_reply<T, E>(
    transport: &Transport,
    target: u64,
    kind: RpcKind,
    bytes: &[u8],
    request: &super::transport::Envelope,
) -> RpcResult<T, E>
where
    T: Serialize + DeserializeOwned,
    E: std::error::Error + Serialize + DeserializeOwned,
{
    let reply = transport
        .open_reply(bytes, request)
        .map_err(|e| refused(target, format!("its answer does not check out: {e}")))?;
    let answer: Answer<T, E> = encoding::decode("raft answer", &reply.body, kind.limit())
        .map_err(|e| refused(target, format!("its answer does not decode: {e}")))?;
    match answer {
        Answer::Ok(t) => Ok(t),
        Answer::Api(e) => {
            Err(RPCError::RemoteError(RemoteError::new(target, RaftError::APIError(e))))
        }
        Answer::Stopped(reason) => {
            Err(RPCError::Unreachable(Unreachable::new(&PeerStopped { target, reason })))
        }
    }
}

impl Peer {
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
        let action = action(kind);
        let timeout = |ttl| -> RPCError<u64, BasicNode, RaftError<u64, E>> {
            RPCError::Timeout(Timeout {
                action,
                id: self.transport.me,
                target: self.target,
                timeout: ttl,
            })
        };
        let ttl = match faults::before_send(
            self.faults.as_deref(),
            self.target,
            kind.into(),
            option.hard_ttl(),
        )
        .await
        {
            Ok(left) => left,
            Err(Blocked::Cut) => {
                return Err(RPCError::Unreachable(Unreachable::new(&Blocked::Cut)));
            }
            Err(Blocked::Dropped) => return Err(timeout(option.hard_ttl())),
        };
        let failed = |e: reqwest::Error| -> RPCError<u64, BasicNode, RaftError<u64, E>> {
            if e.is_timeout() {
                timeout(ttl)
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
            return Err(refused(self.target, reason));
        }
        read_reply(&self.transport, self.target, kind, &bytes, &request)
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
            faults: self.faults.clone(),
        }
    }
}

/// The body of an append, or Raft's cue to retry with half the entries when it is over
/// [`APPEND_TARGET_BYTES`] (a single entry always fits the receiver's limit).
pub(crate) fn encode_append(
    rpc: &AppendEntriesRequest<TypeConfig>,
) -> Result<Vec<u8>, RPCError<u64, BasicNode, RaftError<u64>>> {
    let entries = rpc.entries.len() as u64;
    let body = encoding::encode(rpc);
    if body.len() > APPEND_TARGET_BYTES && entries > 1 {
        return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries / 2)));
    }
    Ok(body)
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let body = encode_append(&rpc)?;
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
pub(crate) fn widen(
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use medledger_core::keys::{DecryptionKey, SigningKey};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    /// Node 1's end of the network, over a fresh ledger in `dir`, and a peer 1 at `addr`.
    fn peer(dir: &tempfile::TempDir, addr: &str) -> Peer {
        let dir = tempfile::tempdir_in(dir.path()).unwrap();
        let dir = dir.keep();
        let key = SigningKey::generate();
        let genesis = medledger_core::block::Genesis {
            chain_id: "c".into(),
            time_ms: 1,
            regulator_key: SigningKey::generate().public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: key.public_key(),
        };
        let ledger =
            Arc::new(medledger_ledger::Ledger::create(&dir.join("l.redb"), genesis).unwrap());
        let network = Network::new(Arc::new(Transport::new(1, Arc::new(key), ledger))).unwrap();
        Peer {
            target: 1,
            url: base_url(addr),
            transport: network.transport,
            http: network.http,
            faults: None,
        }
    }

    fn heartbeat() -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: openraft::Vote::new_committed(1, 2),
            prev_log_id: None,
            leader_commit: None,
            entries: vec![],
        }
    }

    fn vote() -> VoteRequest<u64> {
        VoteRequest::new(openraft::Vote::new(1, 1), None)
    }

    /// A server on 127.0.0.1 that answers every connection with `answer` (after reading the
    /// request), or never answers when `answer` is `None`.
    async fn server(answer: Option<Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 64 * 1024];
                    let _ = s.read(&mut buf).await;
                    match answer {
                        Some(a) => {
                            let _ = s.write_all(&a).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        addr
    }

    /// An HTTP/1.1 response of `status` with `body`.
    fn answer(status: &str, body: &[u8]) -> Vec<u8> {
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        [head.as_bytes(), body].concat()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_failure_is_the_rpc_error_openraft_expects() {
        let dir = tempfile::tempdir().unwrap();
        let option = RPCOption::new(Duration::from_millis(300));

        // Nobody listens: unreachable (openraft backs off).
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let mut p = peer(&dir, &closed.to_string());
        let e = p.vote(vote(), option.clone()).await.unwrap_err();
        assert!(matches!(e, RPCError::Unreachable(_)), "{e:?}");

        // It listens and never answers: a timeout after the hard TTL.
        let mut p = peer(&dir, &server(None).await);
        let e = p.vote(vote(), option.clone()).await.unwrap_err();
        assert!(matches!(e, RPCError::Timeout(ref t) if t.target == 1), "{e:?}");

        // It refuses the message: a network error carrying its code.
        let refusal = answer("403 Forbidden", br#"{"code":"not_member","message":"not you"}"#);
        let mut p = peer(&dir, &server(Some(refusal)).await);
        let e = p.vote(vote(), option.clone()).await.unwrap_err();
        assert!(matches!(e, RPCError::Network(_)), "{e:?}");
        assert!(e.to_string().contains("not_member"), "{e}");

        // It answers 200 with something that is not a signed answer to this request.
        let forged = answer("200 OK", &[0, 1, 2, 3]);
        let mut p = peer(&dir, &server(Some(forged)).await);
        let e = p.vote(vote(), option).await.unwrap_err();
        assert!(matches!(e, RPCError::Network(_)), "{e:?}");
        assert!(e.to_string().contains("does not check out"), "{e}");
    }

    /// A listener on 127.0.0.1 that counts the connections made to it and answers none.
    async fn counting_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let reached = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = reached.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(s);
                });
            }
        });
        (addr, reached)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cut_or_lost_message_never_reaches_the_peer() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.json");
        std::fs::write(
            &rules,
            r#"{"rules": [{"to": [1], "messages": ["vote"], "cut": true},
                          {"to": [1], "messages": ["append"], "drop": 1.0}]}"#,
        )
        .unwrap();
        // Only its owner may write a rules file.
        std::fs::set_permissions(&rules, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let faults = Arc::new(Faults::load(&rules).unwrap());
        let (addr, reached) = counting_server().await;
        let mut p = peer(&dir, &addr);
        p.faults = Some(faults.clone());
        let option = RPCOption::new(Duration::from_millis(300));

        // Cut: unreachable at once, saying why.
        let e = p.vote(vote(), option.clone()).await.unwrap_err();
        assert!(matches!(e, RPCError::Unreachable(_)), "{e:?}");
        assert!(e.to_string().contains("cut by the node's fault rules"), "{e}");
        // Lost: a timeout after the TTL.
        let e = p.append_entries(heartbeat(), option.clone()).await.unwrap_err();
        assert!(matches!(e, RPCError::Timeout(ref t) if t.target == 1), "{e:?}");
        assert_eq!(reached.load(SeqCst), 0, "a cut or lost message was sent");

        // The rules lifted: the same vote reaches the peer (which never answers).
        std::fs::write(&rules, r#"{"rules": []}"#).unwrap();
        assert!(faults.reload().unwrap());
        let e = p.vote(vote(), option).await.unwrap_err();
        assert!(matches!(e, RPCError::Timeout(_)), "{e:?}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while reached.load(SeqCst) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the vote never reached the peer");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
