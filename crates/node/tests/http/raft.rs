//! The Raft RPC routes between nodes (`POST /v1/raft/{append,vote,snapshot}`): a message
//! signed by a member's node key is answered with an envelope signed by this node that
//! answers that message; each of the receiver's checks is an attack here that gets its typed
//! refusal (and would be answered if the check were removed).

use medledger_core::{Hash, keys::SigningKey};
use medledger_node::raft::{
    network::{Answer, NoApiError},
    transport::{CLOCK_WINDOW_MS, Envelope, RpcKind},
};
use openraft::{Vote, raft::VoteRequest};

use medledger_api::ErrorCode;
use medledger_client::{ClientError, HttpError};
use medledger_core::tx::{
    RecordTx, TxBody,
    consent::RecordCategory,
    records::{KeyRef, MintRecord, VisitDate},
};

use crate::{CHAIN, Node, World, now_ms, run};

/// A vote request of `candidate` (node 1 is the genesis node, the single node's only member),
/// postcard.
fn vote_body(candidate: u64) -> Vec<u8> {
    medledger_core::encoding::encode(&VoteRequest::<u64>::new(Vote::new(0, candidate), None))
}

/// An envelope as a sender would build it: `tweak` changes what the attack changes.
struct Message {
    key: SigningKey,
    chain: String,
    from: u64,
    to: u64,
    sent_ms: u64,
    kind: RpcKind,
    /// The candidate the vote request names.
    candidate: u64,
}

impl Message {
    fn honest(node: &Node) -> Self {
        Message {
            key: node.node_key(),
            chain: CHAIN.into(),
            from: 1,
            to: 1,
            sent_ms: now_ms(),
            kind: RpcKind::Vote,
            candidate: 1,
        }
    }

    fn seal(&self) -> Envelope {
        Envelope::seal(
            &self.key,
            &self.chain,
            self.from,
            self.to,
            self.sent_ms,
            self.kind,
            None,
            vote_body(self.candidate),
        )
    }
}

async fn post(node: &Node, path: &str, body: Vec<u8>) -> (u16, Option<String>, Vec<u8>) {
    send(reqwest::Client::new().post(format!("{}{path}", node.base)).body(body)).await
}

/// Sends `request`: its status, its error code if the body is an error, and the body.
async fn send(request: reqwest::RequestBuilder) -> (u16, Option<String>, Vec<u8>) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap().to_vec();
    let code = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned));
    (status, code, bytes)
}

#[test]
fn a_members_signed_vote_gets_a_signed_answer_to_that_request() {
    run(async {
        let node = Node::start(&SigningKey::generate()).await;
        let request = Message::honest(&node).seal();
        let (status, code, bytes) = post(&node, "/v1/raft/vote", request.encode()).await;
        assert_eq!((status, code), (200, None));
        let reply = Envelope::decode(&bytes, RpcKind::Vote.limit()).unwrap();
        assert_eq!((reply.from, reply.to, reply.kind), (1, 1, RpcKind::Vote));
        assert_eq!(reply.reply_to, Some(request.signature));
        let answer: Answer<openraft::raft::VoteResponse<u64>, NoApiError> =
            medledger_core::encoding::decode("answer", &reply.body, 4096).unwrap();
        assert!(matches!(answer, Answer::Ok(_)), "{answer:?}");
        node.stop().await;
    });
}

#[test]
fn every_check_of_the_receiver_refuses_its_attack_with_its_code() {
    run(async {
        let node = Node::start(&SigningKey::generate()).await;
        type Attack = (&'static str, fn(&mut Message), u16, &'static str);
        let attacks: [Attack; 7] = [
            ("another network's message", |m| m.chain = "other-chain".into(), 403, "wrong_chain"),
            ("a message for another node", |m| m.to = 2, 403, "wrong_recipient"),
            (
                "a sender outside the Raft membership",
                |m| {
                    m.from = 7;
                    m.key = SigningKey::generate();
                },
                403,
                "not_member",
            ),
            (
                "a member's id with another key",
                |m| m.key = SigningKey::generate(),
                403,
                "bad_signature",
            ),
            ("a replayed old message", |m| m.sent_ms -= 2 * CLOCK_WINDOW_MS, 403, "clock_skew"),
            ("a message from the future", |m| m.sent_ms += 2 * CLOCK_WINDOW_MS, 403, "clock_skew"),
            (
                "a member's signed message speaking for another node (a vote for candidate 2)",
                |m| m.candidate = 2,
                403,
                "wrong_sender",
            ),
        ];
        for (what, attack, status, code) in attacks {
            let mut m = Message::honest(&node);
            attack(&mut m);
            let (got, got_code, _) = post(&node, "/v1/raft/vote", m.seal().encode()).await;
            assert_eq!((got, got_code.as_deref()), (status, Some(code)), "{what}");
        }
        node.stop().await;
    });
}

#[test]
fn a_message_altered_after_signing_or_sent_to_the_wrong_route_is_refused() {
    run(async {
        let node = Node::start(&SigningKey::generate()).await;
        // Signed as node 1, then claimed to be from... still node 1, with another body.
        let mut altered = Message::honest(&node).seal();
        altered.body =
            medledger_core::encoding::encode(&VoteRequest::<u64>::new(Vote::new(9, 1), None));
        let (status, code, _) = post(&node, "/v1/raft/vote", altered.encode()).await;
        assert_eq!((status, code.as_deref()), (403, Some("bad_signature")));
        // A vote posted as an append (or a snapshot chunk) is not that RPC.
        let vote = Message::honest(&node).seal();
        for path in ["/v1/raft/append", "/v1/raft/snapshot"] {
            let (status, code, _) = post(&node, path, vote.encode()).await;
            assert_eq!((status, code.as_deref()), (400, Some("malformed")), "{path}");
        }
        // A response envelope is not a request.
        let mut m = Message::honest(&node).seal();
        m = Envelope::seal(
            &node.node_key(),
            CHAIN,
            1,
            1,
            now_ms(),
            RpcKind::Vote,
            Some(m.signature),
            m.body.clone(),
        );
        let (status, code, _) = post(&node, "/v1/raft/vote", m.encode()).await;
        assert_eq!((status, code.as_deref()), (400, Some("malformed")));
        // Garbage, and an envelope over the vote's limit.
        let (status, code, _) = post(&node, "/v1/raft/vote", vec![0xff; 64]).await;
        assert_eq!((status, code.as_deref()), (400, Some("malformed")));
        let big = Envelope::seal(
            &node.node_key(),
            CHAIN,
            1,
            1,
            now_ms(),
            RpcKind::Vote,
            None,
            vec![0; RpcKind::Vote.limit()],
        );
        let (status, _, _) = post(&node, "/v1/raft/vote", big.encode()).await;
        assert!(status == 400 || status == 413, "{status}");
        node.stop().await;
    });
}

/// A read that asks for a height the node has not applied gets `not_yet` with the node's
/// height; at or below it, the read is served.
#[test]
fn a_read_at_a_height_not_yet_applied_is_answered_not_yet_with_the_height() {
    run(async {
        let node = Node::start(&SigningKey::generate()).await;
        let (status, body) =
            node.raw("GET", "/v1/genesis", &[("x-medledger-min-height", "5".into())], vec![]).await;
        assert_eq!((status, body["code"].as_str()), (503, Some("not_yet")), "{body}");
        assert!(body["message"].as_str().unwrap().contains("height 0"), "{body}");
        let (status, body) = node.raw("GET", "/v1/genesis?min_height=1", &[], vec![]).await;
        assert_eq!((status, body["code"].as_str()), (503, Some("not_yet")), "{body}");
        let response = reqwest::get(format!("{}/health?min_height=3", node.base)).await.unwrap();
        assert_eq!(response.headers()["x-medledger-height"], "0");
        assert_eq!(response.headers()["retry-after"], "1");
        let (status, body) = node.raw("GET", "/v1/genesis?min_height=0", &[], vec![]).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = node.raw("GET", "/v1/genesis?min_height=soon", &[], vec![]).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("malformed")), "{body}");
        node.stop().await;
    });
}

/// `GET /v1/cluster` of a single node: it leads itself, the only voter.
#[test]
fn a_single_node_reports_itself_as_the_leader_and_only_voter() {
    run(async {
        let node = Node::start(&SigningKey::generate()).await;
        let (status, view) = node.raw("GET", "/v1/cluster", &[], vec![]).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!((view["node_id"].as_u64(), view["role"].as_str()), (Some(1), Some("leader")));
        assert_eq!(view["leader"].as_u64(), Some(1), "{view}");
        let members = view["members"].as_array().unwrap();
        assert_eq!(members.len(), 1, "{view}");
        assert_eq!(
            (members[0]["id"].as_u64(), members[0]["role"].as_str()),
            (Some(1), Some("voter"))
        );
        assert_eq!(members[0]["url"].as_str(), Some(node.base.as_str()), "{view}");
        assert_eq!(view["height"].as_u64(), Some(0));
        node.stop().await;
    });
}

/// A node the regulator suspended is no longer heard, though it is still in Raft's
/// membership: its messages are refused `not_admitted`. Here the genesis node itself, the
/// only voter (Raft keeps a last voter), suspended once a second node is admitted.
#[test]
fn a_suspended_nodes_messages_are_refused_not_admitted() {
    run(async {
        let mut world = crate::World::build().await;
        let node = &world.node;
        let (status, _, _) =
            post(node, "/v1/raft/vote", Message::honest(node).seal().encode()).await;
        assert_eq!(status, 200);
        use medledger_core::tx::{NodeTx, TxBody};
        let admit = world.regulator.tx(TxBody::Nodes(NodeTx::Admit {
            node_key: SigningKey::generate().public_key(),
            address: "http://127.0.0.1:9".into(),
            hospital: world.hospital.account,
        }));
        let (status, body) = world.node.post_tx("/v1/transactions", &admit).await;
        assert_eq!(status, 200, "{body}");
        let suspend = world
            .regulator
            .tx(TxBody::Nodes(NodeTx::Suspend { node_key: world.node.node_key().public_key() }));
        let (status, body) = world.node.post_tx("/v1/transactions", &suspend).await;
        assert_eq!(status, 200, "{body}");
        let node = &world.node;
        let (status, code, _) =
            post(node, "/v1/raft/vote", Message::honest(node).seal().encode()).await;
        assert_eq!((status, code.as_deref()), (403, Some("not_admitted")));
        world.node.stop().await;
    });
}

/// A chunk of a snapshot from node 1 (the leader of term 1) to itself, signed with `key`.
fn snapshot_chunk(key: &SigningKey, bytes: usize) -> Vec<u8> {
    let rpc = openraft::raft::InstallSnapshotRequest::<medledger_node::raft::TypeConfig> {
        vote: Vote::new_committed(1, 1),
        meta: openraft::SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 5)),
            last_membership: openraft::StoredMembership::default(),
            snapshot_id: "attack".into(),
        },
        offset: 0,
        data: vec![0; bytes],
        done: false,
    };
    let body = medledger_core::encoding::encode(&rpc);
    Envelope::seal(key, CHAIN, 1, 1, now_ms(), RpcKind::Snapshot, None, body).encode()
}

#[test]
fn a_snapshot_chunk_is_refused_below_the_free_space_reserve() {
    run(async {
        // A reserve larger than any disk: every write is below it.
        let options = medledger_node::NodeOptions {
            disk_reserve_bytes: u64::MAX / 4,
            ..medledger_node::NodeOptions::default()
        };
        let node = Node::start_with(&SigningKey::generate(), options).await;
        let (status, code, _) =
            post(&node, "/v1/raft/snapshot", snapshot_chunk(&node.node_key(), 64 * 1024)).await;
        assert_eq!((status, code.as_deref()), (507, Some("disk_full")));
        node.stop().await;

        // With room, the same chunk reaches Raft and is answered (signed).
        let node = Node::start(&SigningKey::generate()).await;
        let (status, code, bytes) =
            post(&node, "/v1/raft/snapshot", snapshot_chunk(&node.node_key(), 64 * 1024)).await;
        assert_eq!((status, code), (200, None));
        assert!(Envelope::decode(&bytes, RpcKind::Snapshot.limit()).is_ok());
        node.stop().await;
    });
}

/// `GET /v1/raft/blobs/{hash}` with `signed` (hex of an envelope) in the node-request header
/// (none when `None`): status, error code, body.
async fn pull(node: &Node, hash: &Hash, signed: Option<String>) -> (u16, Option<String>, Vec<u8>) {
    let mut request = reqwest::Client::new().get(format!(
        "{}{}/{hash}",
        node.base,
        medledger_api::paths::RAFT_BLOBS
    ));
    if let Some(signed) = signed {
        request = request.header(medledger_api::paths::NODE_REQUEST_HEADER, signed);
    }
    send(request).await
}

/// A blob request as node `from` signs it with `key`, for `hash`, sent at `sent_ms`.
fn blob_request(key: &SigningKey, from: u64, hash: &Hash, sent_ms: u64) -> String {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).unwrap();
    let body = medledger_core::encoding::encode(&(hash, nonce));
    hex::encode(Envelope::seal(key, CHAIN, from, 1, sent_ms, RpcKind::Blob, None, body).encode())
}

#[test]
fn a_blob_goes_only_to_a_members_signed_request_for_that_blob() {
    run(async {
        let world = World::build().await;
        let node = &world.node;
        // The record's ciphertext, stored by the doctor when the world was built.
        let blob = Hash::of(b"record ciphertext");
        let key = node.node_key();
        let honest = || blob_request(&key, 1, &blob, now_ms());
        let first = honest();
        let (status, code, bytes) = pull(node, &blob, Some(first.clone())).await;
        assert_eq!((status, code), (200, None));
        assert_eq!(bytes, b"record ciphertext");
        // The same signed request again (captured on the wire, within its clock window).
        let (status, code, bytes) = pull(node, &blob, Some(first)).await;
        assert_eq!((status, code.as_deref()), (401, Some("unauthenticated")), "a replay");
        assert!(!bytes.windows(6).any(|w| w == b"record"), "a replay got the blob");

        let stranger = SigningKey::generate();
        let other = Hash::of(b"another blob");
        let attacks: [(&str, Option<String>, Hash, u16, &str); 8] = [
            ("no signed request", None, blob, 401, "unauthenticated"),
            ("a header that is not hex", Some("zz".into()), blob, 401, "unauthenticated"),
            ("garbage", Some(hex::encode([0xff; 40])), blob, 400, "malformed"),
            (
                "a stranger's key",
                Some(blob_request(&stranger, 7, &blob, now_ms())),
                blob,
                403,
                "not_member",
            ),
            (
                "a member's id, another key",
                Some(blob_request(&stranger, 1, &blob, now_ms())),
                blob,
                403,
                "bad_signature",
            ),
            ("a request for another blob", Some(honest()), other, 400, "malformed"),
            (
                "a request signed a minute ago",
                Some(blob_request(&key, 1, &blob, now_ms() - 2 * CLOCK_WINDOW_MS)),
                blob,
                403,
                "clock_skew",
            ),
            (
                "a vote envelope",
                Some(hex::encode(Message::honest(node).seal().encode())),
                blob,
                400,
                "malformed",
            ),
        ];
        for (what, signed, hash, status, code) in attacks {
            let (got, got_code, bytes) = pull(node, &hash, signed).await;
            assert_eq!((got, got_code.as_deref()), (status, Some(code)), "{what}");
            assert!(!bytes.windows(6).any(|w| w == b"record"), "{what}: the blob leaked");
        }
        // An honest request for a blob this node does not hold.
        let (status, code, _) =
            pull(node, &other, Some(blob_request(&key, 1, &other, now_ms()))).await;
        assert_eq!((status, code.as_deref()), (404, Some("not_in_vault")));
        world.node.stop().await;
    });
}

/// A "which of these blobs do you hold" request of node `from`, signed with `key`.
fn held_request(key: &SigningKey, from: u64, hashes: &[Hash]) -> Envelope {
    let body = medledger_core::encoding::encode(&hashes.to_vec());
    Envelope::seal(key, CHAIN, from, 1, now_ms(), RpcKind::BlobsHeld, None, body)
}

#[test]
fn a_member_learns_which_blobs_a_node_holds_in_a_signed_answer_and_no_one_else_does() {
    run(async {
        let world = World::build().await;
        let node = &world.node;
        let key = node.node_key();
        let (held, not_held) = (Hash::of(b"record ciphertext"), Hash::of(b"never stored"));
        let request = held_request(&key, 1, &[not_held, held, not_held]);
        let (status, code, bytes) = post(node, "/v1/raft/blobs", request.encode()).await;
        assert_eq!((status, code), (200, None));
        let reply = Envelope::decode(&bytes, RpcKind::BlobsHeld.limit()).unwrap();
        assert_eq!((reply.kind, reply.reply_to), (RpcKind::BlobsHeld, Some(request.signature)));
        let flags: Vec<bool> =
            medledger_core::encoding::decode("flags", &reply.body, 4096).unwrap();
        assert_eq!(flags, [false, true, false]);

        let stranger = SigningKey::generate();
        let too_many = vec![held; medledger_node::raft::transport::MAX_HELD_QUERY + 1];
        let attacks: [(&str, Envelope, u16, &str); 4] = [
            ("a stranger", held_request(&stranger, 7, &[held]), 403, "not_member"),
            (
                "a member's id, another key",
                held_request(&stranger, 1, &[held]),
                403,
                "bad_signature",
            ),
            ("over 1,024 hashes", held_request(&key, 1, &too_many), 400, "malformed"),
            ("a vote envelope", Message::honest(node).seal(), 400, "malformed"),
        ];
        for (what, envelope, status, code) in attacks {
            let (got, got_code, _) = post(node, "/v1/raft/blobs", envelope.encode()).await;
            assert_eq!((got, got_code.as_deref()), (status, Some(code)), "{what}");
        }
        world.node.stop().await;
    });
}

/// Erasure is for good on every path a blob could come back by: once the record is erased,
/// the node neither offers nor serves its ciphertext to a member (410 `erased` before the
/// vault is looked at), takes no upload of the same bytes (announced or not; nothing is
/// kept), and admits no mint naming it again.
#[test]
fn an_erased_blob_is_never_offered_served_or_stored_again() {
    run(async {
        let mut world = World::build().await;
        let content = Hash::of(b"record ciphertext");
        let key = world.node.node_key();
        let held = |hash: Hash| {
            let node = &world.node;
            let key = key.clone();
            async move {
                let request = held_request(&key, 1, &[hash]);
                let (status, _, bytes) = post(node, "/v1/raft/blobs", request.encode()).await;
                assert_eq!(status, 200);
                let reply = Envelope::decode(&bytes, RpcKind::BlobsHeld.limit()).unwrap();
                medledger_core::encoding::decode::<Vec<bool>>("flags", &reply.body, 64).unwrap()
            }
        };
        assert_eq!(held(content).await, [true]);
        assert!(world.node.vault_file(&content).exists());

        let erase =
            world.patient.tx(TxBody::Records(RecordTx::Erase { record: world.pmr.clone() }));
        world.patient.client.submit(&erase).await.unwrap();
        assert_eq!(held(content).await, [false], "an erased blob is offered");
        let (status, code, bytes) =
            pull(&world.node, &content, Some(blob_request(&key, 1, &content, now_ms()))).await;
        assert_eq!((status, code.as_deref()), (410, Some("erased")));
        assert!(!bytes.windows(17).any(|w| w == b"record ciphertext"), "the blob leaked");

        let erased_code = |e: ClientError| match e {
            ClientError::Http(HttpError::Refused { code, .. }) => code,
            other => panic!("{other}"),
        };
        let again = world.doctor.client.upload(b"record ciphertext".to_vec().into(), None).await;
        assert_eq!(erased_code(again.unwrap_err()), ErrorCode::Erased, "an unannounced upload");
        let announced =
            world.doctor.client.upload(b"record ciphertext".to_vec().into(), Some(&content)).await;
        assert_eq!(erased_code(announced.unwrap_err()), ErrorCode::Erased, "an announced upload");
        let details = world.hospital.client.put_blob(b"record ciphertext".to_vec()).await;
        assert_eq!(erased_code(details.unwrap_err()), ErrorCode::Erased, "as sealed details");
        // The janitor's deletion and the refused uploads leave nothing on disk.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while world.node.vault_file(&content).exists() {
            assert!(std::time::Instant::now() < deadline, "the erased blob stays on disk");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }

        let (metadata, _) = world.doctor.store(b"new sealed metadata").await;
        let (wrapped, _) = world.doctor.store(b"a new wrapped key").await;
        let (for_doctor, _) = world.doctor.store(b"the doctor's wrapped key").await;
        let mint = world.doctor.tx(TxBody::Records(RecordTx::Mint(MintRecord {
            patient: world.patient.account,
            visit_date: VisitDate { year: 2026, month: 1, day: 2 },
            category: RecordCategory::LabReport,
            content,
            size: 17,
            metadata,
            keys: vec![
                KeyRef { recipient: world.patient.account, blob: wrapped },
                KeyRef { recipient: world.doctor.account, blob: for_doctor },
            ],
            supersedes: None,
            sharing: None,
        })));
        let refused = world.doctor.client.submit(&mint).await.unwrap_err();
        assert_eq!(erased_code(refused), ErrorCode::Erased, "a mint naming the erased content");
        world.node.stop().await;
    });
}
