//! The signed envelope of every Raft RPC between nodes, and the checks on both ends.
//!
//! A request is `{chain_id, from, to, sent_ms, kind, reply_to: None, body}` signed by the
//! sender's node key in the namespace [`namespace::RAFT`]; the body is the openraft request,
//! postcard-encoded with the project's bounded [`encoding`]. The receiver refuses, in this
//! order and with a typed error code, an envelope that does not decode, names another chain,
//! is addressed to another node, comes from a node outside its Raft membership (voters and
//! learners; a node not yet initialised, which is waiting to be added, has none and relies on
//! the ledger check alone), from a node that is not active on the ledger, whose signature does
//! not verify under the key the ledger holds for the sender's id, or whose `sent_ms` is
//! outside [`CLOCK_WINDOW_MS`] of its own clock. The response is an envelope of the same kind
//! from the receiver back to the sender, with `reply_to` set to the request's signature (so it
//! answers that request and no other), signed by the receiver; the sender checks it likewise.

use std::sync::Arc;

use medledger_api::ErrorCode;
use medledger_core::{
    encoding,
    keys::{PublicKey, Signature, SigningKey, namespace},
};
use medledger_ledger::Ledger;
use serde::{Deserialize, Serialize};

/// Largest append-entries envelope a node accepts: one block of the largest size
/// ([`medledger_core::block::MAX_BLOCK_TXS`] transactions of
/// [`medledger_core::tx::MAX_TX_BYTES`]) and its framing. Senders split batches of entries
/// above [`APPEND_TARGET_BYTES`].
pub const MAX_APPEND_BYTES: usize =
    medledger_core::block::MAX_BLOCK_TXS * medledger_core::tx::MAX_TX_BYTES + 1024 * 1024;
/// A sender splits an append of several entries whose body is larger than this.
pub const APPEND_TARGET_BYTES: usize = 16 * 1024 * 1024;
/// Largest vote envelope a node accepts.
pub const MAX_VOTE_BYTES: usize = 4 * 1024;
/// Largest install-snapshot envelope a node accepts: one chunk (openraft's chunk size,
/// 3 MiB by default) and its framing.
pub const MAX_SNAPSHOT_CHUNK_BYTES: usize = 16 * 1024 * 1024;
/// How far a request's `sent_ms` may be from the receiver's clock, either way.
pub const CLOCK_WINDOW_MS: u64 = 30_000;

/// Which RPC an envelope carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcKind {
    /// Append entries (and heartbeats).
    Append,
    /// Request a vote.
    Vote,
    /// One chunk of a snapshot.
    Snapshot,
    /// A request for a vault blob by its hash (the replica pull of `raft/replicas.rs`): the
    /// body is the hash; the blob comes back as a plain stream, checked against its hash by
    /// the receiver, so the answer needs no signature.
    Blob,
    /// Which of a list of blobs (at most [`MAX_HELD_QUERY`] hashes) the receiver holds: the
    /// answer, one flag per hash in order, lets a puller ask only a peer that has the blob.
    BlobsHeld,
}

/// The most hashes one [`RpcKind::BlobsHeld`] request names.
pub const MAX_HELD_QUERY: usize = 1024;

impl RpcKind {
    /// The body limit of this kind.
    pub fn limit(self) -> usize {
        match self {
            RpcKind::Append => MAX_APPEND_BYTES,
            RpcKind::Vote => MAX_VOTE_BYTES,
            RpcKind::Snapshot => MAX_SNAPSHOT_CHUNK_BYTES,
            RpcKind::Blob => MAX_VOTE_BYTES,
            RpcKind::BlobsHeld => MAX_HELD_QUERY * 32 + MAX_VOTE_BYTES,
        }
    }
}

/// A signed Raft message between two nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The network.
    pub chain_id: String,
    /// The sender's Raft id.
    pub from: u64,
    /// The receiver's Raft id.
    pub to: u64,
    /// When the sender sent it (ms since the epoch, the sender's clock).
    pub sent_ms: u64,
    /// The RPC.
    pub kind: RpcKind,
    /// For a response: the signature of the request it answers.
    pub reply_to: Option<Signature>,
    /// The openraft request or response, postcard.
    pub body: Vec<u8>,
    /// The sender's node key over everything above, in [`namespace::RAFT`].
    pub signature: Signature,
}

/// What is signed: every field but the signature.
#[derive(Serialize)]
struct Signed<'a> {
    chain_id: &'a str,
    from: u64,
    to: u64,
    sent_ms: u64,
    kind: RpcKind,
    reply_to: Option<Signature>,
    body: &'a [u8],
}

impl Envelope {
    fn signed_bytes(&self) -> Vec<u8> {
        encoding::encode(&Signed {
            chain_id: &self.chain_id,
            from: self.from,
            to: self.to,
            sent_ms: self.sent_ms,
            kind: self.kind,
            reply_to: self.reply_to,
            body: &self.body,
        })
    }

    /// Builds and signs an envelope with `key`.
    #[allow(clippy::too_many_arguments, reason = "one argument per envelope field")]
    pub fn seal(
        key: &SigningKey,
        chain_id: &str,
        from: u64,
        to: u64,
        sent_ms: u64,
        kind: RpcKind,
        reply_to: Option<Signature>,
        body: Vec<u8>,
    ) -> Self {
        let mut e = Envelope {
            chain_id: chain_id.to_owned(),
            from,
            to,
            sent_ms,
            kind,
            reply_to,
            body,
            signature: Signature([0; 64]),
        };
        e.signature = key.sign(namespace::RAFT, &e.signed_bytes());
        e
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Decodes wire bytes of at most `limit` bytes.
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Self, EnvelopeError> {
        encoding::decode("raft envelope", bytes, limit)
            .map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }

    /// Whether `key` signed this envelope.
    fn verify(&self, key: &PublicKey) -> bool {
        key.verify(namespace::RAFT, &self.signed_bytes(), &self.signature).is_ok()
    }
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// It does not decode within its limit.
    #[error("malformed raft message: {0}")]
    Malformed(String),
    /// Another network's message.
    #[error("the message is for chain {theirs:?}; this node serves {ours:?}")]
    WrongChain {
        /// This node's chain.
        ours: String,
        /// The message's.
        theirs: String,
    },
    /// Addressed to another node, or a response from another node than asked.
    #[error(
        "the message is addressed from node {from} to node {to}; expected from {expected_from} to {expected_to}"
    )]
    WrongRecipient {
        /// The message's sender id.
        from: u64,
        /// The message's receiver id.
        to: u64,
        /// The sender expected.
        expected_from: u64,
        /// The receiver expected (this node).
        expected_to: u64,
    },
    /// The request speaks for another node than its signed sender (its vote names another
    /// leader or candidate): one admitted node impersonating another.
    #[error(
        "the message is signed by node {from} but speaks for node {claimed:?} as leader or candidate"
    )]
    WrongSender {
        /// The signed sender.
        from: u64,
        /// The leader or candidate the request's vote names.
        claimed: Option<u64>,
    },
    /// The wrong RPC kind, or a response that answers another request.
    #[error("the message is not a {0:?} answering this request")]
    NotAReply(RpcKind),
    /// The sender is not in this node's Raft membership.
    #[error("node {0} is not a member of this node's Raft membership (voters or learners)")]
    NotMember(u64),
    /// The sender is not an active node on this node's ledger.
    #[error("node {0} is not an active node admitted on this node's ledger")]
    NotAdmitted(u64),
    /// The signature does not verify under the ledger's key of the sender.
    #[error(
        "the message's signature does not verify under the node key the ledger holds for node {0}"
    )]
    BadSignature(u64),
    /// Sent too long ago or too far ahead.
    #[error(
        "the message was sent at {sent_ms} ms, {skew_ms} ms from this node's clock; the window is {CLOCK_WINDOW_MS} ms"
    )]
    ClockSkew {
        /// The message's time.
        sent_ms: u64,
        /// Its distance from this node's clock.
        skew_ms: u64,
    },
    /// Over TLS, the request is signed by a node other than the one whose key the connection
    /// proved (or the connection proved none): one node's envelope carried by another client.
    #[error(
        "the message is signed by node {from}, but this TLS connection proved {}",
        proved.map_or("no node key".to_owned(), |k| format!("node key {k}"))
    )]
    OtherConnection {
        /// The signed sender.
        from: u64,
        /// The key the connection's client certificate proved, if any.
        proved: Option<PublicKey>,
    },
    /// The ledger could not be read.
    #[error("the ledger could not be read: {0}")]
    Ledger(String),
}

impl EnvelopeError {
    /// The typed error code of this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            EnvelopeError::Malformed(_) | EnvelopeError::NotAReply(_) => ErrorCode::Malformed,
            EnvelopeError::WrongChain { .. } => ErrorCode::WrongChain,
            EnvelopeError::WrongRecipient { .. } => ErrorCode::WrongRecipient,
            EnvelopeError::WrongSender { .. } | EnvelopeError::OtherConnection { .. } => {
                ErrorCode::WrongSender
            }
            EnvelopeError::NotMember(_) => ErrorCode::NotMember,
            EnvelopeError::NotAdmitted(_) => ErrorCode::NotAdmitted,
            EnvelopeError::BadSignature(_) => ErrorCode::BadSignature,
            EnvelopeError::ClockSkew { .. } => ErrorCode::ClockSkew,
            EnvelopeError::Ledger(_) => ErrorCode::Internal,
        }
    }
}

/// The key the ledger holds for node `id` if that node is active (contract:
/// `Ledger::node_member`).
pub fn active_node_key(ledger: &Ledger, id: u64) -> Result<Option<PublicKey>, EnvelopeError> {
    let member = ledger.node_member(id).map_err(|e| EnvelopeError::Ledger(e.to_string()))?;
    Ok(member.filter(|m| m.status == medledger_ledger::NodeStatus::Active).map(|m| m.node_key))
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One node's end of the transport: its id, key and ledger (for the keys of the others).
#[derive(Debug)]
pub struct Transport {
    /// This node's Raft id.
    pub me: u64,
    /// Signs what this node sends.
    key: Arc<SigningKey>,
    /// The network's chain id and the node keys of the others.
    ledger: Arc<Ledger>,
    /// Reach peers over `https://` only (a node serving TLS never falls back to plain HTTP).
    https_only: bool,
    /// The one client to peers, built on first use.
    peer_client: std::sync::OnceLock<reqwest::Client>,
}

impl Transport {
    /// The transport of node `me`, signing with `key`.
    pub fn new(me: u64, key: Arc<SigningKey>, ledger: Arc<Ledger>) -> Self {
        Self { me, key, ledger, https_only: false, peer_client: Default::default() }
    }

    /// The same transport, reaching peers over `https://` only when `on`.
    pub fn https_only(self, on: bool) -> Self {
        Self { https_only: on, ..self }
    }

    /// The HTTP client this node reaches its peers with ([`crate::tls::peer_client`]), one for
    /// all its uses (Raft, blob pulls, forwarded writes).
    pub fn peer_client(&self) -> Result<reqwest::Client, String> {
        if let Some(client) = self.peer_client.get() {
            return Ok(client.clone());
        }
        let client = crate::tls::peer_client(&self.key, self.ledger.clone(), self.https_only)?;
        Ok(self.peer_client.get_or_init(|| client).clone())
    }

    /// A request of `kind` from this node to `to`.
    pub fn request(&self, to: u64, kind: RpcKind, body: Vec<u8>) -> Envelope {
        Envelope::seal(&self.key, self.ledger.chain_id(), self.me, to, now_ms(), kind, None, body)
    }

    /// The signed response to `request` (already opened) carrying `body`.
    pub fn reply(&self, request: &Envelope, body: Vec<u8>) -> Envelope {
        Envelope::seal(
            &self.key,
            self.ledger.chain_id(),
            self.me,
            request.from,
            now_ms(),
            request.kind,
            Some(request.signature),
            body,
        )
    }

    /// Opens a request of `kind` received by this node: every check of the module doc.
    /// `membership` says whether a node id is in this node's Raft membership (`None`: this
    /// node has no membership yet).
    pub fn open_request(
        &self,
        bytes: &[u8],
        kind: RpcKind,
        is_member: Option<&dyn Fn(u64) -> bool>,
    ) -> Result<Envelope, EnvelopeError> {
        let e = Envelope::decode(bytes, kind.limit())?;
        if e.kind != kind || e.reply_to.is_some() {
            return Err(EnvelopeError::NotAReply(kind));
        }
        self.check_chain(&e)?;
        if e.to != self.me {
            return Err(EnvelopeError::WrongRecipient {
                from: e.from,
                to: e.to,
                expected_from: e.from,
                expected_to: self.me,
            });
        }
        if let Some(is_member) = is_member
            && !is_member(e.from)
        {
            return Err(EnvelopeError::NotMember(e.from));
        }
        self.check_signer(&e)?;
        let now = now_ms();
        let skew_ms = now.abs_diff(e.sent_ms);
        if skew_ms > CLOCK_WINDOW_MS {
            return Err(EnvelopeError::ClockSkew { sent_ms: e.sent_ms, skew_ms });
        }
        Ok(e)
    }

    /// Over TLS (`proved` is `Some`: the key the connection's client certificate proved, if
    /// any), refuses `request` unless that key is the one the ledger holds for its sender.
    pub fn check_connection(
        &self,
        request: &Envelope,
        proved: Option<Option<PublicKey>>,
    ) -> Result<(), EnvelopeError> {
        let Some(proved) = proved else { return Ok(()) };
        let sender = active_node_key(&self.ledger, request.from)?;
        if proved.is_none() || proved != sender {
            return Err(EnvelopeError::OtherConnection { from: request.from, proved });
        }
        Ok(())
    }

    /// Opens the response to `request` (sent by this node to `request.to`).
    pub fn open_reply(&self, bytes: &[u8], request: &Envelope) -> Result<Envelope, EnvelopeError> {
        let e = Envelope::decode(bytes, request.kind.limit())?;
        self.check_chain(&e)?;
        if e.from != request.to || e.to != self.me {
            return Err(EnvelopeError::WrongRecipient {
                from: e.from,
                to: e.to,
                expected_from: request.to,
                expected_to: self.me,
            });
        }
        if e.kind != request.kind || e.reply_to != Some(request.signature) {
            return Err(EnvelopeError::NotAReply(request.kind));
        }
        self.check_signer(&e)?;
        Ok(e)
    }

    fn check_chain(&self, e: &Envelope) -> Result<(), EnvelopeError> {
        let ours = self.ledger.chain_id();
        if e.chain_id != ours {
            return Err(EnvelopeError::WrongChain {
                ours: ours.to_owned(),
                theirs: e.chain_id.clone(),
            });
        }
        Ok(())
    }

    /// The sender is active on the ledger and signed with the key the ledger holds for it.
    fn check_signer(&self, e: &Envelope) -> Result<(), EnvelopeError> {
        let key =
            active_node_key(&self.ledger, e.from)?.ok_or(EnvelopeError::NotAdmitted(e.from))?;
        if !e.verify(&key) {
            return Err(EnvelopeError::BadSignature(e.from));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_envelope_verifies_and_any_changed_field_does_not() {
        let key = SigningKey::generate();
        let e = Envelope::seal(&key, "c", 1, 2, 5, RpcKind::Vote, None, vec![1, 2, 3]);
        assert!(e.verify(&key.public_key()));
        let decoded = Envelope::decode(&e.encode(), MAX_VOTE_BYTES).unwrap();
        assert_eq!(decoded, e);
        let changes: [fn(&mut Envelope); 7] = [
            |e| e.chain_id.push('x'),
            |e| e.from += 1,
            |e| e.to += 1,
            |e| e.sent_ms += 1,
            |e| e.kind = RpcKind::Append,
            |e| e.reply_to = Some(Signature([7; 64])),
            |e| e.body.push(0),
        ];
        for change in changes {
            let mut changed = e.clone();
            change(&mut changed);
            assert!(!changed.verify(&key.public_key()));
        }
        assert!(!e.verify(&SigningKey::generate().public_key()));
    }

    /// A ledger whose genesis node key is `node`, in `dir`.
    fn ledger(dir: &std::path::Path, node: &SigningKey) -> Arc<Ledger> {
        let genesis = medledger_core::block::Genesis {
            chain_id: "c".into(),
            time_ms: 1,
            regulator_key: SigningKey::generate().public_key(),
            regulator_encryption_key: medledger_core::keys::DecryptionKey::generate().public_key(),
            node_key: node.public_key(),
        };
        Arc::new(Ledger::create(&dir.join("ledger.redb"), genesis).unwrap())
    }

    /// The sender's checks of an answer: from the node asked, to this node, answering this
    /// request, signed by the key the ledger holds for the node asked.
    #[test]
    fn an_answer_that_does_not_answer_this_request_from_that_node_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(SigningKey::generate());
        let ledger = ledger(dir.path(), &key);
        // Node 1 asks itself (the only node this ledger knows).
        let me = Transport::new(1, key.clone(), ledger.clone());
        let request = me.request(1, RpcKind::Vote, vec![1]);
        let honest = me.reply(&request, vec![2]);
        assert_eq!(me.open_reply(&honest.encode(), &request).unwrap(), honest);

        let other = me.request(1, RpcKind::Vote, vec![3]);
        let to_other = me.reply(&other, vec![2]);
        assert_eq!(
            me.open_reply(&to_other.encode(), &request),
            Err(EnvelopeError::NotAReply(RpcKind::Vote))
        );
        let forged = Envelope::seal(
            &SigningKey::generate(),
            "c",
            1,
            1,
            now_ms(),
            RpcKind::Vote,
            Some(request.signature),
            vec![2],
        );
        assert_eq!(me.open_reply(&forged.encode(), &request), Err(EnvelopeError::BadSignature(1)));
        let from_elsewhere = Envelope::seal(
            &key,
            "c",
            2,
            1,
            now_ms(),
            RpcKind::Vote,
            Some(request.signature),
            vec![2],
        );
        assert!(matches!(
            me.open_reply(&from_elsewhere.encode(), &request),
            Err(EnvelopeError::WrongRecipient { from: 2, .. })
        ));
        let other_chain = Envelope::seal(
            &key,
            "d",
            1,
            1,
            now_ms(),
            RpcKind::Vote,
            Some(request.signature),
            vec![2],
        );
        assert!(matches!(
            me.open_reply(&other_chain.encode(), &request),
            Err(EnvelopeError::WrongChain { .. })
        ));
        let other_kind = Envelope::seal(
            &key,
            "c",
            1,
            1,
            now_ms(),
            RpcKind::Append,
            Some(request.signature),
            vec![2],
        );
        assert_eq!(
            me.open_reply(&other_kind.encode(), &request),
            Err(EnvelopeError::NotAReply(RpcKind::Vote))
        );
    }

    #[test]
    fn an_envelope_over_its_kinds_limit_is_refused() {
        let key = SigningKey::generate();
        let e = Envelope::seal(&key, "c", 1, 2, 5, RpcKind::Vote, None, vec![0; MAX_VOTE_BYTES]);
        assert!(matches!(
            Envelope::decode(&e.encode(), MAX_VOTE_BYTES),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}

/// How many served requests are remembered at most: far above what members pull in two clock
/// windows; past it (after forgetting the expired), a request is refused as busy.
const MAX_SEEN: usize = 200_000;

/// The signatures of signed requests already served, kept for twice [`CLOCK_WINDOW_MS`]
/// (a request older than the window is refused by its clock check anyway): a request
/// captured on the wire and sent again is refused. Only members can sign one, so the set
/// grows with members' honest traffic.
#[derive(Debug, Default)]
pub struct SeenRequests(std::sync::Mutex<std::collections::HashMap<[u8; 64], u64>>);

impl SeenRequests {
    /// Records `envelope` as served at `now_ms`.
    pub fn first_use(&self, envelope: &Envelope, now_ms: u64) -> Use {
        let mut seen = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_SEEN / 2 {
            seen.retain(|_, at| now_ms.saturating_sub(*at) <= 2 * CLOCK_WINDOW_MS);
        }
        if seen.len() >= MAX_SEEN {
            return Use::TooMany;
        }
        match seen.insert(envelope.signature.0, now_ms) {
            None => Use::First,
            Some(_) => Use::Replay,
        }
    }
}

/// What [`SeenRequests::first_use`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Not seen before: serve it.
    First,
    /// Served before: refuse it.
    Replay,
    /// Too many remembered: refuse it as busy.
    TooMany,
}
