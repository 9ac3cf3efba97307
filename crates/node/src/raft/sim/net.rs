//! The simulation's network: an in-memory [`RaftNetworkFactory`] whose messages go through
//! exactly what a real node does on each side of `POST /v1/raft/{append,vote,snapshot}`: the
//! sender seals the signed envelope ([`Transport::request`]), the receiver opens it with every
//! check (chain, recipient, membership, admitted signer, clock), refuses a vote that speaks for
//! another node than its signer, calls its `Raft` handle, and seals its answer; the sender
//! checks the signed answer. Between the two, a seeded RNG decides each leg's fate: sent
//! (after a delay), lost (a timeout after the RPC's TTL, at most 2 s, as the real fault layer reports it) or
//! cut (unreachable at once). A request can get through and its answer be lost.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use medledger_core::encoding;
use openraft::{
    BasicNode,
    error::{InstallSnapshotError, RPCError, RaftError, Timeout, Unreachable},
    network::{RPCOption, RaftNetwork, RaftNetworkFactory},
    raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    },
};
use serde::{Serialize, de::DeserializeOwned};

use crate::raft::{
    Raft, TypeConfig,
    faults::Blocked,
    network::{self, Answer, NoApiError, RpcResult},
    transport::{Envelope, EnvelopeError, RpcKind, Transport},
};

/// The longest a sender waits for an answer that was lost (or comes too late).
const LOST_WAIT: Duration = Duration::from_secs(2);

/// What happens to one leg of an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Delivered after this delay.
    Send(Duration),
    /// Lost: the sender waits out its TTL.
    Lost,
    /// The link is cut: unreachable at once.
    Cut,
}

/// A running node as the network reaches it.
#[derive(Clone)]
struct Endpoint {
    raft: Raft,
    transport: Arc<Transport>,
    /// Checks and imports snapshots before Raft is told (as the node's route does).
    snapshots: Arc<super::super::SnapshotReceiver>,
}

/// The links between the simulated nodes, and who is up.
#[derive(Default)]
struct Links {
    /// The running nodes.
    up: HashMap<u64, Endpoint>,
    /// Directed links that are cut (a partition cuts both directions).
    cut: BTreeSet<(u64, u64)>,
    /// The chance that a leg is lost.
    loss: f64,
    /// Each delivered leg is delayed by up to this long.
    max_delay: Duration,
}

/// The simulated network shared by every node of one run.
pub(super) struct Net {
    links: Mutex<Links>,
    /// Decides each leg's fate and delay (seeded; the order in which legs ask it depends on
    /// thread scheduling).
    rng: Mutex<fastrand::Rng>,
    /// Snapshots installed whole (the last chunk accepted), to show that the run exercised
    /// catching up by snapshot.
    pub(super) snapshots_installed: std::sync::atomic::AtomicU64,
}

impl Net {
    /// A network with every link open and lossless, its fates drawn from `seed`.
    pub(super) fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            links: Mutex::default(),
            rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0x6e65_7477_6f72_6b00)),
            snapshots_installed: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn links(&self) -> std::sync::MutexGuard<'_, Links> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Node `id` is up: messages to it reach `raft`, opened by `transport`, its snapshots
    /// `snapshots`.
    pub(super) fn up(
        &self,
        id: u64,
        raft: Raft,
        transport: Arc<Transport>,
        snapshots: Arc<super::super::SnapshotReceiver>,
    ) {
        self.links().up.insert(id, Endpoint { raft, transport, snapshots });
    }

    /// Node `id` is down: messages to it are unreachable.
    pub(super) fn down(&self, id: u64) {
        self.links().up.remove(&id);
    }

    /// Cuts every link between `side` and the other nodes of `all` (both directions).
    pub(super) fn partition(&self, side: &BTreeSet<u64>, all: &[u64]) {
        let mut links = self.links();
        for a in side {
            for b in all.iter().filter(|b| !side.contains(b)) {
                links.cut.insert((*a, *b));
                links.cut.insert((*b, *a));
            }
        }
    }

    /// Every link open, lossless and without delay.
    pub(super) fn heal(&self) {
        let mut links = self.links();
        links.cut.clear();
        links.loss = 0.0;
        links.max_delay = Duration::ZERO;
    }

    /// Each leg is lost with chance `loss`.
    pub(super) fn set_loss(&self, loss: f64) {
        self.links().loss = loss;
    }

    /// Each delivered leg is delayed by up to `max`.
    pub(super) fn set_delay(&self, max: Duration) {
        self.links().max_delay = max;
    }

    fn fate(&self, from: u64, to: u64) -> Fate {
        let (cut, loss, max_delay) = {
            let links = self.links();
            (links.cut.contains(&(from, to)), links.loss, links.max_delay)
        };
        if cut {
            return Fate::Cut;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        if loss > 0.0 && rng.f64() < loss {
            return Fate::Lost;
        }
        let max = max_delay.as_millis() as u64;
        Fate::Send(Duration::from_millis(if max == 0 { 0 } else { rng.u64(0..=max) }))
    }

    fn endpoint(&self, id: u64) -> Option<Endpoint> {
        self.links().up.get(&id).cloned()
    }
}

/// Node `me`'s end of the simulated network.
#[derive(Clone)]
pub(super) struct SimNetwork {
    pub(super) me: u64,
    pub(super) transport: Arc<Transport>,
    pub(super) net: Arc<Net>,
    /// Closed when the node crashes: what it was sending dies with it, as with a process
    /// (rather than wait out a lost message's TTL, holding the node's ledger).
    pub(super) alive: tokio::sync::watch::Receiver<()>,
}

/// A connection from one node to a peer.
pub(super) struct SimPeer {
    me: u64,
    target: u64,
    transport: Arc<Transport>,
    net: Arc<Net>,
    alive: tokio::sync::watch::Receiver<()>,
}

impl RaftNetworkFactory<TypeConfig> for SimNetwork {
    type Network = SimPeer;
    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> SimPeer {
        SimPeer {
            me: self.me,
            target,
            transport: self.transport.clone(),
            net: self.net.clone(),
            alive: self.alive.clone(),
        }
    }
}

/// The peer is down.
#[derive(Debug, thiserror::Error)]
#[error("node {target} is down: {reason}")]
struct Down {
    target: u64,
    reason: String,
}

/// What the receiving node's route does with a request (as `http/raft.rs`): open the envelope
/// with every check, decode the body, refuse a vote that speaks for another node, hand it to
/// Raft, and seal the answer. A refusal is its error code and message.
async fn receive(peer: &Endpoint, kind: RpcKind, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let refuse = |e: EnvelopeError| format!("refused ({:?}): {e}", e.code());
    let (initialised, members): (bool, BTreeSet<u64>) = {
        let metrics = peer.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        (membership.voter_ids().next().is_some(), membership.nodes().map(|(id, _)| *id).collect())
    };
    let is_member = |id: u64| members.contains(&id);
    let envelope = peer
        .transport
        .open_request(bytes, kind, initialised.then_some(&is_member as _))
        .map_err(refuse)?;
    let speaks_for_sender = |envelope: &Envelope, vote: &openraft::Vote<u64>| {
        let claimed = vote.leader_id().voted_for();
        if claimed != Some(envelope.from) {
            return Err(refuse(EnvelopeError::WrongSender { from: envelope.from, claimed }));
        }
        Ok(())
    };
    let malformed = |e: encoding::DecodeError| refuse(EnvelopeError::Malformed(e.to_string()));
    let body = match kind {
        RpcKind::Append => {
            let rpc: AppendEntriesRequest<TypeConfig> =
                encoding::decode("raft request", &envelope.body, kind.limit())
                    .map_err(malformed)?;
            speaks_for_sender(&envelope, &rpc.vote)?;
            encoding::encode(&Answer::of(peer.raft.append_entries(rpc).await))
        }
        RpcKind::Vote => {
            let rpc: VoteRequest<u64> =
                encoding::decode("raft request", &envelope.body, kind.limit())
                    .map_err(malformed)?;
            speaks_for_sender(&envelope, &rpc.vote)?;
            encoding::encode(&Answer::of(peer.raft.vote(rpc).await))
        }
        RpcKind::Snapshot => {
            let rpc: InstallSnapshotRequest<TypeConfig> =
                encoding::decode("raft request", &envelope.body, kind.limit())
                    .map_err(malformed)?;
            speaks_for_sender(&envelope, &rpc.vote)?;
            encoding::encode(&Answer::of_snapshot(peer.snapshots.receive(&peer.raft, rpc).await))
        }
        RpcKind::Blob | RpcKind::BlobsHeld => {
            return Err(refuse(EnvelopeError::Malformed("not a Raft RPC".into())));
        }
    };
    Ok(peer.transport.reply(&envelope, body).encode())
}

impl SimPeer {
    /// [`Self::exchange`], unless this node crashes first.
    async fn call<T, E>(&self, kind: RpcKind, body: Vec<u8>, option: &RPCOption) -> RpcResult<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: std::error::Error + Serialize + DeserializeOwned,
    {
        let mut alive = self.alive.clone();
        tokio::select! {
            answer = self.exchange(kind, body, option) => answer,
            _ = alive.changed() => {
                let down = Down { target: self.me, reason: "crashed while sending".into() };
                Err(RPCError::Unreachable(Unreachable::new(&down)))
            }
        }
    }

    /// Sends `body` as a `kind` request through the simulated links and returns the peer's
    /// checked answer, with the errors the real network gives for each failure.
    async fn exchange<T, E>(
        &self,
        kind: RpcKind,
        body: Vec<u8>,
        option: &RPCOption,
    ) -> RpcResult<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: std::error::Error + Serialize + DeserializeOwned,
    {
        let action = network::action(kind);
        // A lost message is a timeout after its TTL, as with the real fault layer, but waited
        // out for at most `LOST_WAIT`: the snapshot TTLs (30 s a chunk, 300 s the last) are
        // sized for a large ledger, and would stall the run.
        let ttl = option.hard_ttl().min(LOST_WAIT);
        let timeout = || -> RPCError<u64, BasicNode, RaftError<u64, E>> {
            RPCError::Timeout(Timeout { action, id: self.me, target: self.target, timeout: ttl })
        };
        let started = tokio::time::Instant::now();
        // Waits out one leg's fate; `Err` when the leg does not arrive.
        let leg = |from: u64, to: u64| {
            let fate = self.net.fate(from, to);
            async move {
                match fate {
                    Fate::Cut => Err(RPCError::Unreachable(Unreachable::new(&Blocked::Cut))),
                    Fate::Lost => {
                        tokio::time::sleep_until(started + ttl).await;
                        Err(timeout())
                    }
                    Fate::Send(delay) => {
                        if started.elapsed() + delay >= ttl {
                            tokio::time::sleep_until(started + ttl).await;
                            return Err(timeout());
                        }
                        tokio::time::sleep(delay).await;
                        Ok(())
                    }
                }
            }
        };
        leg(self.me, self.target).await?;
        let Some(peer) = self.net.endpoint(self.target) else {
            let down = Down { target: self.target, reason: "nothing listens".into() };
            return Err(RPCError::Unreachable(Unreachable::new(&down)));
        };
        let request = self.transport.request(self.target, kind, body);
        let left = ttl.saturating_sub(started.elapsed());
        let reply = match tokio::time::timeout(left, receive(&peer, kind, &request.encode())).await
        {
            Err(_) => return Err(timeout()),
            Ok(Err(reason)) => return Err(network::refused(self.target, reason)),
            Ok(Ok(reply)) => reply,
        };
        drop(peer);
        leg(self.target, self.me).await.map_err(|_| timeout())?;
        network::read_reply(&self.transport, self.target, kind, &reply, &request)
    }
}

impl RaftNetwork<TypeConfig> for SimPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let body = network::encode_append(&rpc)?;
        self.call::<_, NoApiError>(RpcKind::Append, body, &option).await.map_err(network::widen)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let last = rpc.done;
        let answer = self.call(RpcKind::Snapshot, encoding::encode(&rpc), &option).await;
        if last && answer.is_ok() {
            self.net.snapshots_installed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        answer
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call::<_, NoApiError>(RpcKind::Vote, encoding::encode(&rpc), &option)
            .await
            .map_err(network::widen)
    }
}
