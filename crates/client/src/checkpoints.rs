//! Checkpoints from every node of the network: which node keys a wallet trusts to sign them,
//! and the wallet's memory of the newest checkpoint it saw from each node, against which every
//! new checkpoint is checked so that a node serving a forked history is named.
//!
//! A checkpoint is trusted when its signer is the genesis node's key (pinned with the genesis
//! hash) or a key whose admission is proven: the regulator's `NodeTx::Admit` of exactly that
//! key, signed by the regulator key the pinned genesis names, for the pinned chain, applied
//! (its receipt names the node id created), and included in the log under a checkpoint signed
//! by that same key (so the node's own log holds its admission). Every new checkpoint must then
//! be consistent with the newest remembered checkpoint of every node seen before.
//!
//! What a wallet cannot know: a suspension or removal that the serving node's own ledger does
//! not show. A removed node that stopped applying blocks before its removal serves a prefix of
//! the true history, which is consistent; only freshness (its height against the other nodes'
//! checkpoints this wallet remembers) gives it away. An admission proves a key was admitted,
//! not that it is still in good standing.

use medledger_api::NodeAdmission;
use medledger_core::{
    block::{Created, Genesis, Outcome, SignedCheckpoint},
    keys::PublicKey,
    merkle::ConsistencyProof,
    tx::{NodeTx, TxBody},
};
use serde::{Deserialize, Serialize};

use crate::{
    NodeClient,
    error::{ClientError, Disagreement, ProofError},
    proof::{TrustAnchor, verify_tx_proof},
};

/// The most nodes whose newest checkpoint a wallet remembers; past it, the lowest is dropped
/// (it is a prefix of the others: every remembered checkpoint was checked against the rest).
pub const MAX_SEEN_NODES: usize = 64;

/// The genesis node's id.
pub const GENESIS_NODE_ID: u64 = 1;

/// The newest checkpoint a wallet saw from one node (its key is the checkpoint's signer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenCheckpoint {
    /// The node's id on the ledger (1 for the genesis node).
    pub node_id: u64,
    /// Its checkpoint, whose signature was checked when it was remembered.
    pub checkpoint: SignedCheckpoint,
}

/// Checks that `served` proves that the regulator of the pinned network admitted `key`, and
/// that the serving node's ledger does not say it was removed; returns the node's id.
///
/// The genesis node's key (in the pinned genesis) needs no admission.
pub fn verify_node_admission(
    key: &PublicKey,
    served: &NodeAdmission,
    anchor: &TrustAnchor,
    genesis: &Genesis,
) -> Result<u64, ClientError> {
    verify_node_admission_under(key, served, anchor, genesis, None)
}

/// [`verify_node_admission`], also taking the admission proven under a checkpoint of
/// `vouching`: a key the caller already trusts (the genesis node's, or a node's whose own
/// admission it proved), such as the node that served the list.
pub fn verify_node_admission_under(
    key: &PublicKey,
    served: &NodeAdmission,
    anchor: &TrustAnchor,
    genesis: &Genesis,
    vouching: Option<&PublicKey>,
) -> Result<u64, ClientError> {
    let refuse =
        |reason: String| ClientError::Proof(ProofError::UnadmittedNode { key: *key, reason });
    if genesis.hash() != anchor.genesis {
        return Err(refuse(format!(
            "the node serves genesis {}, not the pinned genesis {}",
            genesis.hash(),
            anchor.genesis
        )));
    }
    if served.node.node_key != key.to_string() {
        return Err(refuse(format!("the node answered for node key {}", served.node.node_key)));
    }
    if served.node.status == medledger_api::NodeView::REMOVED {
        return Err(refuse(format!("the regulator removed node {}", served.node.id)));
    }
    if *key == genesis.node_key {
        return if served.node.id == GENESIS_NODE_ID {
            Ok(GENESIS_NODE_ID)
        } else {
            Err(refuse(format!("the genesis node's key is served as node {}", served.node.id)))
        };
    }
    let proof = served
        .admission
        .as_ref()
        .ok_or_else(|| refuse("the node gave no admission transaction for it".into()))?;
    let signer = proof.checkpoint.signer;
    if signer != *key && Some(&signer) != vouching {
        return Err(refuse(format!(
            "its admission is proven under a checkpoint of key {signer}, not of its own{}",
            vouching.map_or(String::new(), |v| format!(" nor of the trusted {v}"))
        )));
    }
    let tx = verify_tx_proof(proof, &signer).map_err(|e| {
        refuse(format!("its admission is not proven in the log of key {signer}: {e}"))
    })?;
    tx.verify_signature()
        .map_err(|e| refuse(format!("its admission is not validly signed: {e}")))?;
    if tx.public_key != genesis.regulator_key || tx.tx.signer != genesis.regulator() {
        return Err(refuse(format!(
            "its admission is signed by {} (account {}), not by the regulator the pinned \
             genesis names",
            tx.public_key, tx.tx.signer
        )));
    }
    if tx.tx.chain_id != anchor.chain_id {
        return Err(refuse(format!(
            "its admission is for chain {:?}, not {:?}",
            tx.tx.chain_id, anchor.chain_id
        )));
    }
    match &tx.tx.body {
        TxBody::Nodes(NodeTx::Admit { node_key, .. }) if node_key == key => {}
        TxBody::Nodes(NodeTx::Admit { node_key, .. }) => {
            return Err(refuse(format!("the admission offered admits node key {node_key}")));
        }
        other => {
            return Err(refuse(format!(
                "the transaction offered as its admission is a {}",
                other.kind()
            )));
        }
    }
    match &proof.receipt.outcome {
        Outcome::Applied { created: Some(Created::Node { id }) } if *id == served.node.id => {
            Ok(*id)
        }
        other => Err(refuse(format!(
            "the receipt of its admission does not say it created node {}: {other:?}",
            served.node.id
        ))),
    }
}

/// Checks that `new` and `seen` (each signature checked against its own signer, which the
/// caller trusts) belong to one history, given that `new` is at least as high as `seen`:
/// at one height, the same checkpoint; at a greater one, a log that is no smaller, and if
/// larger, `proof` (from `seen`'s size to `new`'s, from the node that served `new`) leading
/// from `seen`'s root to `new`'s. Any disagreement is [`ProofError::ForkedNode`], naming both.
pub fn check_against_seen(
    new: &SeenCheckpoint,
    seen: &SeenCheckpoint,
    proof: Option<&ConsistencyProof>,
) -> Result<(), ClientError> {
    let (n, o) = (&new.checkpoint, &seen.checkpoint);
    for cp in [n, o] {
        cp.verify(&cp.signer).map_err(|_| {
            ClientError::Proof(ProofError::UntrustedCheckpoint {
                signer: cp.signer,
                trusted: cp.signer,
            })
        })?;
    }
    let forked = |reason: String| {
        ClientError::Proof(ProofError::ForkedNode(Box::new(Disagreement {
            node: new.node_id,
            key: n.signer,
            height: n.checkpoint.height,
            log_size: n.checkpoint.log_size,
            log_root: n.checkpoint.log_root,
            seen_node: seen.node_id,
            seen_key: o.signer,
            seen_height: o.checkpoint.height,
            seen_log_size: o.checkpoint.log_size,
            seen_log_root: o.checkpoint.log_root,
            reason,
        })))
    };
    let (n, o) = (&n.checkpoint, &o.checkpoint);
    if n.height < o.height {
        return Err(forked("the new checkpoint is lower: nothing to check it against".into()));
    }
    crate::proof::extends(o, n, proof).map_err(forked)
}

/// The address of the node whose key is `key`, from the regulator's proven admission of it
/// (see [`verify_node_admission_under`]: in its own log, or in that of `vouching`, a key the
/// caller trusts): where a wallet may reach it without trusting what the list says. `None` for
/// the genesis node, which no transaction admitted.
pub fn proven_node_address(
    key: &PublicKey,
    served: &NodeAdmission,
    anchor: &TrustAnchor,
    genesis: &Genesis,
    vouching: Option<&PublicKey>,
) -> Result<Option<String>, ClientError> {
    let id = verify_node_admission_under(key, served, anchor, genesis, vouching)?;
    let Some(proof) = served.admission.as_ref() else {
        return Ok(None);
    };
    let tx = verify_tx_proof(proof, &proof.checkpoint.signer)?;
    match tx.tx.body {
        TxBody::Nodes(NodeTx::Admit { address, .. }) => Ok(Some(address)),
        other => Err(ClientError::Proof(ProofError::UnadmittedNode {
            key: *key,
            reason: format!("node {id}'s admission is a {}", other.kind()),
        })),
    }
}

/// Two checkpoints of a comparison that are not one history: indexes into the compared list
/// (fresh checkpoints first, then remembered ones; `newer` is the higher) and what disagrees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The higher checkpoint's index.
    pub newer: usize,
    /// The lower checkpoint's index.
    pub older: usize,
    /// Both nodes and what each signed, and what failed.
    pub disagreement: Disagreement,
}

/// Compares the checkpoints just fetched from several nodes (`fresh`) with each other and
/// with the ones this wallet remembers (`remembered`): every two must be one history
/// ([`check_against_seen`], the higher against the lower; each signature is checked, and the
/// caller trusts each signer). Indexes run over `fresh` then `remembered`.
/// `proof(newer, old_size, new_size)` asks the node of fresh checkpoint `newer` for a
/// consistency proof; it is asked only where one is needed, and only of a fresh checkpoint's
/// node. Two remembered checkpoints were compared when remembered. A remembered checkpoint
/// higher than a fresh one is compared only when one node signed both (it must not have
/// gone back); another node that is behind is lagging, not forked.
///
/// Returns every pair that disagrees, each naming both nodes (a node serving a fork is named
/// in its pair with each honest node), and every pair whose proof could not be fetched
/// (neither agreeing nor disagreeing: unproven).
pub async fn compare_nodes<F, Fut>(
    fresh: &[SeenCheckpoint],
    remembered: &[SeenCheckpoint],
    mut proof: F,
) -> Result<Comparison, ClientError>
where
    F: FnMut(usize, u64, u64) -> Fut,
    Fut: std::future::Future<Output = Result<ConsistencyProof, ClientError>>,
{
    let all: Vec<&SeenCheckpoint> = fresh.iter().chain(remembered).collect();
    let (mut splits, mut unproven) = (Vec::new(), Vec::new());
    for a in 0..fresh.len() {
        for b in a + 1..all.len() {
            let (x, y) = (&all[a].checkpoint.checkpoint, &all[b].checkpoint.checkpoint);
            let (newer, older) =
                if (x.height, x.log_size) >= (y.height, y.log_size) { (a, b) } else { (b, a) };
            let (n, o) = (&all[newer].checkpoint, &all[older].checkpoint);
            let p = if newer >= fresh.len() {
                if n.signer != o.signer {
                    continue;
                }
                None
            } else if o.checkpoint.log_size > 0
                && o.checkpoint.log_size < n.checkpoint.log_size
                && o.checkpoint.height < n.checkpoint.height
            {
                match proof(newer, o.checkpoint.log_size, n.checkpoint.log_size).await {
                    Ok(p) => Some(p),
                    Err(e) => {
                        unproven.push((newer, older, e.to_string()));
                        continue;
                    }
                }
            } else {
                None
            };
            match check_against_seen(all[newer], all[older], p.as_ref()) {
                Ok(()) => {}
                Err(ClientError::Proof(ProofError::ForkedNode(d))) => {
                    splits.push(Split { newer, older, disagreement: *d });
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Comparison { splits, unproven })
}

/// What [`compare_nodes`] found.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    /// The pairs that are not one history.
    pub splits: Vec<Split>,
    /// The pairs whose consistency proof could not be fetched: (newer, older, why).
    pub unproven: Vec<(usize, usize, String)>,
}

/// Records `new` as the newest checkpoint of its signer (replacing an older one of the same
/// key), keeping at most [`MAX_SEEN_NODES`] (dropping the lowest).
pub fn remember(seen: &mut Vec<SeenCheckpoint>, new: SeenCheckpoint) {
    let key = new.checkpoint.signer;
    match seen.iter_mut().find(|s| s.checkpoint.signer == key) {
        Some(old) if old.checkpoint.checkpoint.height <= new.checkpoint.checkpoint.height => {
            *old = new;
        }
        Some(_) => {}
        None => seen.push(new),
    }
    while seen.len() > MAX_SEEN_NODES {
        let lowest = seen
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.checkpoint.checkpoint.height)
            .map(|(i, _)| i)
            .expect("not empty");
        seen.remove(lowest);
    }
    seen.sort_by_key(|s| (s.node_id, s.checkpoint.signer.0));
}

impl NodeClient {
    /// The id of the node whose key signed `checkpoint`, once its admission by the pinned
    /// network's regulator is proven by this node (see [`verify_node_admission`]); the
    /// genesis node's key (node 1) needs no admission.
    pub async fn admitted_signer(
        &self,
        checkpoint: &SignedCheckpoint,
        anchor: &TrustAnchor,
        genesis: &Genesis,
    ) -> Result<u64, ClientError> {
        let key = checkpoint.signer;
        let refuse =
            |reason: String| ClientError::Proof(ProofError::UnadmittedNode { key, reason });
        let nodes = self.nodes().await?;
        let Some(node) = nodes.iter().find(|n| n.node_key == key.to_string()) else {
            return Err(refuse("the node's ledger has no node with this key".into()));
        };
        let served = self
            .node_admission(node.id)
            .await?
            .ok_or_else(|| refuse(format!("the node has no node {}", node.id)))?;
        verify_node_admission(&key, &served, anchor, genesis)
    }

    /// The key that signed `checkpoint`, once [`NodeClient::admitted_signer`] has proven it
    /// admitted: what every proven-key path (an account's, a session's, an emergency key)
    /// verifies its proof against, so that a proof served by any admitted node is trusted.
    /// The pinned genesis node's key is trusted as pinned, without asking the node (two
    /// requests fewer on every proven key of a one-node network).
    pub async fn trusted_signer(
        &self,
        checkpoint: &SignedCheckpoint,
        anchor: &TrustAnchor,
        genesis: &Genesis,
    ) -> Result<PublicKey, ClientError> {
        if checkpoint.signer == anchor.node_key {
            return Ok(checkpoint.signer);
        }
        self.admitted_signer(checkpoint, anchor, genesis).await?;
        Ok(checkpoint.signer)
    }
}

#[cfg(test)]
mod tests {
    use medledger_api::{NodeView, TxProofResponse};
    use medledger_core::{
        Hash,
        block::{BlockHeader, Checkpoint, Receipt},
        ids::AccountId,
        keys::{DecryptionKey, SigningKey},
        merkle::MerkleLog,
        tx::{SignedTransaction, Transaction},
    };

    use super::*;

    const CHAIN: &str = "medledger-test";

    /// A network: its regulator, genesis node, genesis and the wallet's pin.
    struct Net {
        regulator: SigningKey,
        genesis: Genesis,
        anchor: TrustAnchor,
    }

    fn net() -> Net {
        let regulator = SigningKey::generate();
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            time_ms: 1,
            regulator_key: regulator.public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: SigningKey::generate().public_key(),
        };
        let anchor = TrustAnchor {
            node_key: genesis.node_key,
            chain_id: CHAIN.into(),
            genesis: genesis.hash(),
        };
        Net { regulator, genesis, anchor }
    }

    /// `signer`'s transaction admitting `key` on `chain`, nonce `nonce`.
    fn admit_tx(signer: &SigningKey, key: PublicKey, chain: &str, nonce: u64) -> SignedTransaction {
        Transaction {
            chain_id: chain.into(),
            signer: AccountId::from_initial_key(&signer.public_key()),
            nonce,
            body: TxBody::Nodes(NodeTx::Admit {
                node_key: key,
                address: "http://127.0.0.2:7301".into(),
                hospital: AccountId([3; 20]),
            }),
        }
        .sign(signer)
    }

    /// `tx` as the only transaction of block 1 with `outcome`, proven under a checkpoint
    /// signed by `node`, served as node `id` with `status`.
    fn served(
        tx: &SignedTransaction,
        node: &SigningKey,
        id: u64,
        status: &str,
        outcome: Outcome,
    ) -> NodeAdmission {
        let mut log = MerkleLog::new();
        log.push(medledger_core::merkle::leaf_hash(&tx.encode()));
        let checkpoint = Checkpoint {
            chain_id: CHAIN.into(),
            height: 1,
            time_ms: 2,
            log_size: 1,
            log_root: log.root(),
        }
        .sign(node);
        NodeAdmission {
            node: NodeView {
                id,
                node_key: node.public_key().to_string(),
                address: "http://127.0.0.2:7301".into(),
                hospital: None,
                status: status.into(),
                admitted_at: 1,
            },
            admission: Some(TxProofResponse {
                tx_hex: hex::encode(tx.encode()),
                receipt: Receipt { tx_hash: tx.hash(), height: 1, log_index: 0, outcome },
                header: BlockHeader {
                    height: 1,
                    prev_hash: Hash::default(),
                    time_ms: 2,
                    tx_count: 1,
                    tx_root: log.root(),
                    log_size: 1,
                    log_root: log.root(),
                },
                checkpoint,
                inclusion: log.inclusion_proof(0, 1).unwrap(),
            }),
        }
    }

    fn created(id: u64) -> Outcome {
        Outcome::Applied { created: Some(Created::Node { id }) }
    }

    fn refused(r: Result<u64, ClientError>, key: &PublicKey, what: &str, says: &str) {
        match r {
            Err(ClientError::Proof(ProofError::UnadmittedNode { key: k, reason })) => {
                assert_eq!(&k, key, "{what}");
                assert!(reason.contains(says), "{what}: {reason}");
            }
            other => panic!("{what}: expected the node key to be refused, got {other:?}"),
        }
    }

    #[test]
    fn a_key_the_regulator_admitted_is_trusted_and_every_forgery_is_refused() {
        let n = net();
        let node = SigningKey::generate();
        let key = node.public_key();
        let good = served(&admit_tx(&n.regulator, key, CHAIN, 1), &node, 2, "active", created(2));
        assert_eq!(verify_node_admission(&key, &good, &n.anchor, &n.genesis).unwrap(), 2);
        // Suspended: still a node of the network whose history can be checked.
        let mut suspended = good.clone();
        suspended.node.status = NodeView::SUSPENDED.into();
        assert_eq!(verify_node_admission(&key, &suspended, &n.anchor, &n.genesis).unwrap(), 2);

        // No admission at all: a key the regulator never admitted.
        let mut none = good.clone();
        none.admission = None;
        refused(
            verify_node_admission(&key, &none, &n.anchor, &n.genesis),
            &key,
            "none",
            "no admission",
        );
        // An admission signed by someone else than the regulator (the node itself).
        let forged = served(&admit_tx(&node, key, CHAIN, 1), &node, 2, "active", created(2));
        refused(
            verify_node_admission(&key, &forged, &n.anchor, &n.genesis),
            &key,
            "self-signed",
            "not by the regulator",
        );
        // The regulator of another network (another genesis).
        let other = net();
        refused(
            verify_node_admission(&key, &good, &other.anchor, &other.genesis),
            &key,
            "other regulator",
            "not by the regulator",
        );
        // A served genesis that is not the pinned one.
        refused(
            verify_node_admission(&key, &good, &n.anchor, &other.genesis),
            &key,
            "other genesis",
            "not the pinned genesis",
        );
        // The regulator's admission on another chain.
        let elsewhere =
            served(&admit_tx(&n.regulator, key, "elsewhere", 1), &node, 2, "active", created(2));
        refused(
            verify_node_admission(&key, &elsewhere, &n.anchor, &n.genesis),
            &key,
            "other chain",
            "for chain",
        );
        // The admission of another key, offered for this one.
        let stranger = SigningKey::generate().public_key();
        let of_other =
            served(&admit_tx(&n.regulator, stranger, CHAIN, 1), &node, 2, "active", created(2));
        refused(
            verify_node_admission(&key, &of_other, &n.anchor, &n.genesis),
            &key,
            "another key's admission",
            "admits node key",
        );
        // A refused admission, or one that created another node.
        let refused_tx = served(
            &admit_tx(&n.regulator, key, CHAIN, 1),
            &node,
            2,
            "active",
            Outcome::Refused { reason: medledger_core::block::Refusal::BadSignature },
        );
        refused(
            verify_node_admission(&key, &refused_tx, &n.anchor, &n.genesis),
            &key,
            "refused admission",
            "does not say it created",
        );
        let other_id =
            served(&admit_tx(&n.regulator, key, CHAIN, 1), &node, 2, "active", created(3));
        refused(
            verify_node_admission(&key, &other_id, &n.anchor, &n.genesis),
            &key,
            "other id",
            "does not say it created",
        );
        // Proven under another node's checkpoint, not in the node's own log.
        let elsewhere_log = served(
            &admit_tx(&n.regulator, key, CHAIN, 1),
            &SigningKey::generate(),
            2,
            "active",
            created(2),
        );
        let mut moved = good.clone();
        moved.admission = elsewhere_log.admission;
        refused(
            verify_node_admission(&key, &moved, &n.anchor, &n.genesis),
            &key,
            "other log",
            "not of its own",
        );
        // A tampered inclusion proof.
        let mut bad_proof = good.clone();
        let p = bad_proof.admission.as_mut().unwrap();
        p.checkpoint =
            Checkpoint { log_root: Hash::of(b"x"), ..p.checkpoint.checkpoint.clone() }.sign(&node);
        refused(
            verify_node_admission(&key, &bad_proof, &n.anchor, &n.genesis),
            &key,
            "bad inclusion",
            "not proven in the log of key",
        );
        // The node answered for another key; the regulator removed the node.
        let mut answered = good.clone();
        answered.node.node_key = stranger.to_string();
        refused(
            verify_node_admission(&key, &answered, &n.anchor, &n.genesis),
            &key,
            "other key",
            "answered for",
        );
        let mut removed = good.clone();
        removed.node.status = NodeView::REMOVED.into();
        refused(
            verify_node_admission(&key, &removed, &n.anchor, &n.genesis),
            &key,
            "removed",
            "removed node 2",
        );
    }

    /// The step every proven-key path takes (see [`NodeClient::trusted_signer`]): the
    /// checkpoint's signer is proven admitted, then the key's proof is verified under it.
    fn account_key_via(
        proof: &medledger_api::AccountKeyProof,
        account: &AccountId,
        served: &NodeAdmission,
        n: &Net,
    ) -> Result<medledger_core::keys::EncryptionKey, ClientError> {
        let cp = &proof.registration.as_ref().expect("a registration").checkpoint;
        verify_node_admission(&cp.signer, served, &n.anchor, &n.genesis)?;
        crate::proof::verify_account_key(proof, account, &n.anchor, &cp.signer, None)
    }

    #[test]
    fn an_account_key_proven_under_an_admitted_nodes_checkpoint_is_trusted_and_no_other() {
        let n = net();
        let node = SigningKey::generate();
        let key = node.public_key();
        let (proof, account, _) = crate::proof::tests::key_proof(&node);
        let admitted =
            served(&admit_tx(&n.regulator, key, CHAIN, 1), &node, 2, "active", created(2));
        assert_eq!(account_key_via(&proof, &account, &admitted, &n).unwrap(), proof.encryption_key);
        // Under the pinned genesis node key alone (what the wallet trusted before), refused.
        assert!(matches!(
            crate::proof::verify_account_key(&proof, &account, &n.anchor, &n.anchor.node_key, None),
            Err(ClientError::Proof(ProofError::UnprovenKey { .. }))
        ));
        // A key whose admission is forged (signed by the node itself), or of another network.
        let forged = served(&admit_tx(&node, key, CHAIN, 1), &node, 2, "active", created(2));
        refused(
            account_key_via(&proof, &account, &forged, &n).map(|_| 0),
            &key,
            "forged",
            "not by the regulator",
        );
        let other = net();
        let foreign =
            served(&admit_tx(&other.regulator, key, CHAIN, 1), &node, 2, "active", created(2));
        refused(
            account_key_via(&proof, &account, &foreign, &n).map(|_| 0),
            &key,
            "foreign regulator",
            "not by the regulator",
        );
        // An admitted node's key does not vouch for a proof signed by another key.
        let stranger = SigningKey::generate();
        let (under_stranger, account2, _) = crate::proof::tests::key_proof(&stranger);
        let r = verify_node_admission(&key, &admitted, &n.anchor, &n.genesis).and_then(|_| {
            crate::proof::verify_account_key(&under_stranger, &account2, &n.anchor, &key, None)
        });
        assert!(matches!(r, Err(ClientError::Proof(ProofError::UnprovenKey { .. }))), "{r:?}");
    }

    #[test]
    fn an_admission_proven_in_another_nodes_log_is_taken_only_from_a_node_the_wallet_trusts() {
        let net = net();
        let (b, home, other) =
            (SigningKey::generate(), SigningKey::generate(), SigningKey::generate());
        let key = b.public_key();
        let tx = admit_tx(&net.regulator, key, CHAIN, 1);
        let mut s = served(&tx, &b, 2, NodeView::ACTIVE, created(2));
        // The same proof, under the checkpoint of the node that served it (`home`).
        let proof = s.admission.as_mut().unwrap();
        proof.checkpoint = proof.checkpoint.checkpoint.clone().sign(&home);
        let (anchor, genesis) = (&net.anchor, &net.genesis);
        refused(verify_node_admission(&key, &s, anchor, genesis), &key, "alone", "not of its own");
        let vouched =
            verify_node_admission_under(&key, &s, anchor, genesis, Some(&home.public_key()));
        assert_eq!(vouched.unwrap(), 2);
        let address = proven_node_address(&key, &s, anchor, genesis, Some(&home.public_key()));
        assert_eq!(address.unwrap().as_deref(), Some("http://127.0.0.2:7301"));
        let r = verify_node_admission_under(&key, &s, anchor, genesis, Some(&other.public_key()));
        refused(r, &key, "another voucher", "not of its own");
        // A checkpoint claiming the trusted signer but signed by another key proves nothing.
        let mut forged = s.clone();
        let proof = forged.admission.as_mut().unwrap();
        let by_other = proof.checkpoint.checkpoint.clone().sign(&other);
        proof.checkpoint.signature = by_other.signature;
        let r =
            verify_node_admission_under(&key, &forged, anchor, genesis, Some(&home.public_key()));
        refused(r, &key, "forged voucher", "not proven in the log of key");
    }

    #[test]
    fn the_genesis_node_needs_no_admission_but_only_as_node_one() {
        let n = net();
        let key = n.genesis.node_key;
        let view = |id: u64, status: &str| NodeAdmission {
            node: NodeView {
                id,
                node_key: key.to_string(),
                address: String::new(),
                hospital: None,
                status: status.into(),
                admitted_at: 0,
            },
            admission: None,
        };
        assert_eq!(
            verify_node_admission(&key, &view(1, "active"), &n.anchor, &n.genesis).unwrap(),
            1
        );
        refused(
            verify_node_admission(&key, &view(4, "active"), &n.anchor, &n.genesis),
            &key,
            "id",
            "node 4",
        );
        refused(
            verify_node_admission(&key, &view(1, "removed"), &n.anchor, &n.genesis),
            &key,
            "removed",
            "removed",
        );
    }

    /// Checkpoints of a log of `leaves` leaves (salted), one per size, signed by `node`.
    fn history(salt: &[u8], leaves: u64) -> MerkleLog {
        let mut log = MerkleLog::new();
        for i in 0..leaves {
            log.push(Hash::of_parts(&[salt, &i.to_be_bytes()]));
        }
        log
    }

    fn seen_at(
        log: &MerkleLog,
        size: u64,
        height: u64,
        node: &SigningKey,
        id: u64,
    ) -> SeenCheckpoint {
        SeenCheckpoint {
            node_id: id,
            checkpoint: Checkpoint {
                chain_id: CHAIN.into(),
                height,
                time_ms: 100 + height,
                log_size: size,
                log_root: log.root_at(size).unwrap(),
            }
            .sign(node),
        }
    }

    fn forked(r: Result<(), ClientError>, what: &str) -> Box<Disagreement> {
        match r {
            Err(ClientError::Proof(ProofError::ForkedNode(d))) => d,
            other => panic!("{what}: expected a fork, got {other:?}"),
        }
    }

    #[test]
    fn checkpoints_of_two_nodes_are_one_history_or_the_fork_is_named() {
        let (one, two) = (SigningKey::generate(), SigningKey::generate());
        let log = history(b"main", 10);
        let old = seen_at(&log, 6, 3, &one, 1);
        let new = seen_at(&log, 10, 5, &two, 2);
        let proof = log.consistency_proof(6, 10).unwrap();
        check_against_seen(&new, &old, Some(&proof)).unwrap();
        // The same height from two nodes: the same checkpoint, signed twice.
        check_against_seen(&seen_at(&log, 6, 3, &two, 2), &old, None).unwrap();

        // A history that shares the first 4 entries and then diverges, at a greater size.
        let mut fork = history(b"main", 4);
        for i in 0..6u64 {
            fork.push(Hash::of_parts(&[b"fork", &i.to_be_bytes()]));
        }
        let bad = seen_at(&fork, 10, 5, &two, 2);
        let fork_proof = fork.consistency_proof(6, 10).unwrap();
        let d = forked(check_against_seen(&bad, &old, Some(&fork_proof)), "diverged");
        assert_eq!((d.node, d.key, d.log_size, d.log_root), (2, two.public_key(), 10, fork.root()));
        assert_eq!(
            (d.seen_node, d.seen_key, d.seen_log_size, d.seen_log_root),
            (1, one.public_key(), 6, log.root_at(6).unwrap())
        );
        let text = ClientError::Proof(ProofError::ForkedNode(d)).to_string();
        assert!(
            text.contains("INCONSISTENT") && text.contains("node 2") && text.contains("node 1"),
            "{text}"
        );
        // The honest proof does not rescue the forked root either; no proof at all is refused.
        forked(check_against_seen(&bad, &old, Some(&proof)), "honest proof, forked root");
        forked(check_against_seen(&new, &old, None), "no proof");
        // The same height, another checkpoint; the same size, another root.
        forked(check_against_seen(&seen_at(&fork, 6, 3, &two, 2), &old, None), "same height");
        forked(check_against_seen(&seen_at(&fork, 6, 4, &two, 2), &old, None), "same size");
        // A smaller log at a greater height; a lower height (a rollback).
        forked(check_against_seen(&seen_at(&log, 5, 4, &two, 2), &old, None), "smaller log");
        forked(check_against_seen(&seen_at(&log, 5, 2, &one, 1), &old, None), "rollback");
        // Another chain.
        let mut other_chain = new.clone();
        other_chain.checkpoint =
            Checkpoint { chain_id: "elsewhere".into(), ..new.checkpoint.checkpoint.clone() }
                .sign(&two);
        forked(check_against_seen(&other_chain, &old, Some(&proof)), "other chain");
        // A signature that does not verify under the key it names is not a checkpoint at all.
        let mut unsigned = new.clone();
        unsigned.checkpoint.signature = old.checkpoint.signature;
        assert!(matches!(
            check_against_seen(&unsigned, &old, Some(&proof)),
            Err(ClientError::Proof(ProofError::UntrustedCheckpoint { .. }))
        ));
    }

    /// Three nodes, one serving a fork: the two pairs with it disagree, each naming it; the
    /// honest pair agrees. Proofs come from the higher fresh node of each pair, and only where
    /// one is needed. Remembered checkpoints: one of the same history passes, a node that went
    /// back is named, and another node's higher one only shows that a node lags.
    #[tokio::test]
    async fn a_network_comparison_names_the_node_that_serves_a_fork_in_every_pair() {
        let keys = [SigningKey::generate(), SigningKey::generate(), SigningKey::generate()];
        let log = history(b"main", 12);
        let mut fork = history(b"main", 4);
        for i in 0..8u64 {
            fork.push(Hash::of_parts(&[b"fork", &i.to_be_bytes()]));
        }
        let logs = [&log, &log, &fork];
        let fresh = [
            seen_at(&log, 8, 4, &keys[0], 1),
            seen_at(&log, 12, 6, &keys[1], 2),
            seen_at(&fork, 10, 5, &keys[2], 3),
        ];
        let asked = std::sync::Mutex::new(Vec::new());
        let splits = compare_nodes(&fresh, &[], |newer, old, new| {
            asked.lock().unwrap().push((newer, old, new));
            let proof = logs[newer].consistency_proof(old, new).unwrap();
            async move { Ok(proof) }
        })
        .await
        .unwrap()
        .splits;
        assert_eq!(*asked.lock().unwrap(), vec![(1, 8, 12), (2, 8, 10), (1, 10, 12)]);
        let pairs: Vec<_> = splits.iter().map(|s| (s.newer, s.older)).collect();
        assert_eq!(pairs, vec![(2, 0), (1, 2)]);
        assert_eq!((splits[0].disagreement.node, splits[0].disagreement.seen_node), (3, 1));
        assert_eq!((splits[1].disagreement.node, splits[1].disagreement.seen_node), (2, 3));

        // One history: nothing disagrees; equal checkpoints need no proof. Remembered: node 1
        // earlier (consistent), node 3 higher than node 1 is now (node 1 lags: not checked).
        let honest = [fresh[0].clone(), fresh[1].clone(), seen_at(&log, 12, 6, &keys[2], 3)];
        let remembered = [seen_at(&log, 5, 2, &keys[0], 1), seen_at(&log, 11, 5, &keys[2], 3)];
        let splits = compare_nodes(&honest, &remembered, |newer, old, new| {
            let proof = log.consistency_proof(old, new).unwrap();
            assert!(newer < 3, "only a fresh checkpoint's node is asked");
            async move { Ok(proof) }
        })
        .await
        .unwrap()
        .splits;
        assert!(splits.is_empty(), "{splits:?}");

        // Node 1 signed height 5 before and serves height 4 now: it went back.
        let earlier = [seen_at(&log, 10, 5, &keys[0], 1)];
        let splits = compare_nodes(&honest, &earlier, |_, old, new| {
            let proof = log.consistency_proof(old, new).unwrap();
            async move { Ok(proof) }
        })
        .await
        .unwrap()
        .splits;
        let pairs: Vec<_> = splits.iter().map(|s| (s.newer, s.older)).collect();
        assert_eq!(pairs, vec![(3, 0)], "{splits:?}");

        // A proof that cannot be fetched leaves its pair unproven, neither agreeing nor not.
        let found = compare_nodes(&fresh, &[], |_, _, _| async {
            Err(ClientError::Proof(ProofError::UntrustedCheckpoint {
                signer: keys[0].public_key(),
                trusted: keys[0].public_key(),
            }))
        })
        .await
        .unwrap();
        assert!(found.splits.is_empty(), "{found:?}");
        let pairs: Vec<_> = found.unproven.iter().map(|(n, o, _)| (*n, *o)).collect();
        assert_eq!(pairs, vec![(1, 0), (2, 0), (1, 2)]);
    }

    #[test]
    fn the_memory_keeps_the_newest_checkpoint_per_node_and_is_bounded() {
        let log = history(b"main", 200);
        let keys: Vec<SigningKey> =
            (0..MAX_SEEN_NODES + 3).map(|_| SigningKey::generate()).collect();
        let mut seen = Vec::new();
        remember(&mut seen, seen_at(&log, 5, 5, &keys[0], 1));
        remember(&mut seen, seen_at(&log, 9, 9, &keys[0], 1));
        remember(&mut seen, seen_at(&log, 7, 7, &keys[0], 1));
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].checkpoint.checkpoint.height, 9, "an older one never replaces a newer");
        for (i, key) in keys.iter().enumerate().skip(1) {
            let h = 10 + i as u64;
            remember(&mut seen, seen_at(&log, h, h, key, i as u64 + 1));
        }
        assert_eq!(seen.len(), MAX_SEEN_NODES);
        // The lowest were dropped: node 1 (height 9), then nodes 2 and 3.
        let lowest = seen.iter().map(|s| s.checkpoint.checkpoint.height).min().unwrap();
        assert_eq!(lowest, 13);
    }
}
