//! `medledger proof TX [--node URL]`: fetch a transaction with its inclusion proof from any node
//! of the network and verify it offline against that node's checkpoint, once the key that
//! signed it is proven admitted by the pinned network's regulator (the genesis node's key needs
//! no admission); then check that checkpoint against the newest one this wallet saw from every
//! node (consistency proofs from the serving node), naming a node whose history disagrees.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use medledger_api::{ErrorCode, TxProofResponse};
use medledger_client::{
    ClientError, HttpError, NodeClient, ProofError,
    checkpoints::{GENESIS_NODE_ID, SeenCheckpoint, check_against_seen, remember},
    proof::{TrustAnchor, verify_tx_proof},
};
use medledger_core::{Hash, block::SignedCheckpoint, merkle::ConsistencyProof};
use serde_json::json;

use crate::common::{Session, WalletArgs};

/// How long a node that is behind the newest checkpoint this wallet saw is waited for.
const CATCH_UP: Duration = Duration::from_secs(15);

/// Options of `medledger proof`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The transaction hash (64 hex characters).
    tx: String,
    /// Print JSON: the proof, the serving node and the nodes its checkpoint was checked
    /// against; on a failure `ok: false`, the error and, for an inconsistency, both nodes'
    /// checkpoints (`inconsistent`).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    wallet: WalletArgs,
}

pub async fn run(args: Args) -> Result<()> {
    let json = args.json;
    match prove(args).await {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            Ok(())
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&failure(&e))?);
            }
            Err(e)
        }
    }
}

async fn prove(args: Args) -> Result<serde_json::Value> {
    let quiet = args.json;
    let hash = Hash::from_hex(&args.tx)
        .with_context(|| format!("{:?} is not a transaction hash", args.tx))?;
    // The session checks that the node serves the genesis this wallet is pinned to.
    let Session { mut wallet, client, anchor, .. } = Session::open(&args.wallet).await?;
    let genesis = client.genesis().await?;
    let floor = newest_seen(wallet.state()?);
    let mut resp = client.transaction(&hash).await?;
    let signer = resp.checkpoint.signer;
    let node_id = client.admitted_signer(&resp.checkpoint, &anchor, &genesis).await?;
    // A follower may lag behind a checkpoint this wallet saw from another node: it is waited
    // for. A node whose own earlier checkpoint was higher rolled back: that is not waited for.
    let rolled_back = wallet.state()?.seen_checkpoints.iter().any(|s| {
        s.checkpoint.signer == signer
            && s.checkpoint.checkpoint.height > resp.checkpoint.checkpoint.height
    });
    if resp.checkpoint.checkpoint.height < floor && !rolled_back {
        resp = fetch_at_least(&client, &hash, floor).await?;
        if resp.checkpoint.signer != signer {
            bail!(
                "the node at {} signed with node key {signer}, then with {}: refusing it",
                client.base_url(),
                resp.checkpoint.signer
            );
        }
    }
    let new = resp.checkpoint.clone();
    verify_tx_proof(&resp, &new.signer).context("the inclusion proof does NOT verify")?;
    if !quiet {
        println!(
            "transaction {hash}: included at log index {} of {} (block {}), proof verified against checkpoint root {} signed by node {node_id}",
            resp.receipt.log_index,
            new.checkpoint.log_size,
            resp.header.height,
            new.checkpoint.log_root
        );
    }
    let checked =
        extend_history(&mut wallet, &args.wallet.wallet, &client, new.clone(), node_id, &anchor)
            .await?;
    if !quiet {
        print_checked(&checked);
    }
    Ok(json!({
        "ok": true,
        "tx_hash": hash,
        "log_index": resp.receipt.log_index,
        "height": resp.header.height,
        "node": { "id": node_id, "key": new.signer },
        "checkpoint": new.checkpoint,
        "checked_against": checked.iter().map(|s| json!({
            "node": s.node_id,
            "key": s.checkpoint.signer,
            "height": s.checkpoint.checkpoint.height,
            "log_size": s.checkpoint.checkpoint.log_size,
        })).collect::<Vec<_>>(),
    }))
}

/// The height of the newest checkpoint this wallet saw, from any node.
fn newest_seen(state: &medledger_client::keystore::WalletState) -> u64 {
    let seen = state.seen_checkpoints.iter().map(|s| &s.checkpoint);
    seen.chain(state.last_checkpoint.as_ref()).map(|c| c.checkpoint.height).max().unwrap_or(0)
}

/// The transaction's proof from a node that has applied at least `floor`: a node behind it (a
/// follower catching up) is waited for a little, and then refused as behind, not as forked.
async fn fetch_at_least(client: &NodeClient, hash: &Hash, floor: u64) -> Result<TxProofResponse> {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        match client.transaction_at_least(hash, floor).await {
            Err(ClientError::Http(HttpError::Refused {
                code: ErrorCode::NotYet, message, ..
            })) => {
                if Instant::now() >= deadline {
                    bail!(
                        "the node at {} is behind what this wallet already saw (height {floor}) \
                         and did not catch up within {CATCH_UP:?}: {message}; its checkpoint \
                         cannot be checked against the others yet (retry, or ask another node)",
                        client.base_url()
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// The JSON of a failure: the error and, for an inconsistency, both nodes' checkpoints.
fn failure(e: &anyhow::Error) -> serde_json::Value {
    let mut out = json!({ "ok": false, "error": format!("{e:#}") });
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Proof(ProofError::ForkedNode(d))) => {
            out["inconsistent"] = json!({
                "node": { "id": d.node, "key": d.key, "height": d.height, "log_size": d.log_size, "log_root": d.log_root },
                "seen": { "id": d.seen_node, "key": d.seen_key, "height": d.seen_height, "log_size": d.seen_log_size, "log_root": d.seen_log_root },
                "reason": d.reason,
            });
        }
        Some(ClientError::Proof(ProofError::UnadmittedNode { key, reason })) => {
            out["unadmitted"] = json!({ "key": key, "reason": reason });
        }
        _ => {}
    }
    out
}

fn print_checked(checked: &[SeenCheckpoint]) {
    if checked.is_empty() {
        println!("first checkpoint seen by this wallet: recorded for future consistency checks");
        return;
    }
    let nodes: Vec<String> = checked
        .iter()
        .map(|s| format!("node {} (log size {})", s.node_id, s.checkpoint.checkpoint.log_size))
        .collect();
    println!(
        "consistent with the checkpoint this wallet saw last from each node: {}",
        nodes.join(", ")
    );
}

/// Checks that checkpoint `new`, signed by node `node_id` (whose key the caller trusts: the
/// pinned genesis node's, or one with a proven admission), is consistent with the newest
/// checkpoint this wallet saw from every node, refusing loudly and naming the node if not, and
/// records it in the wallet file ([`medledger_client::Wallet::update_state`]: read again under
/// the wallet's lock; if another process changed the history while this one was checking
/// against it, nothing is written and the caller is asked to retry). Returns the checkpoints
/// it was checked against.
pub(crate) async fn extend_history(
    wallet: &mut medledger_client::Wallet,
    path: &std::path::Path,
    client: &NodeClient,
    new: SignedCheckpoint,
    node_id: u64,
    anchor: &TrustAnchor,
) -> Result<Vec<SeenCheckpoint>> {
    let seen = seen_of(wallet.state()?, anchor);
    let new = SeenCheckpoint { node_id, checkpoint: new };
    let (n, mut proofs) = (&new.checkpoint.checkpoint, Vec::<(u64, ConsistencyProof)>::new());
    for old in &seen {
        let o = &old.checkpoint.checkpoint;
        if o.height > n.height && old.checkpoint.signer != new.checkpoint.signer {
            bail!(
                "node {node_id} is behind: its checkpoint is at height {}, this wallet already \
                 saw height {} from node {}; its history cannot be checked yet (retry, or ask \
                 another node)",
                n.height,
                o.height,
                old.node_id
            );
        }
        let proof = if o.log_size > 0 && o.log_size < n.log_size && o.height < n.height {
            match proofs.iter().find(|(size, _)| *size == o.log_size) {
                Some((_, p)) => Some(p.clone()),
                None => {
                    let p = client.consistency(o.log_size, n.log_size).await?.proof;
                    proofs.push((o.log_size, p.clone()));
                    Some(p)
                }
            }
        } else {
            None
        };
        check_against_seen(&new, old, proof.as_ref())?;
    }
    let checked = seen;
    // Saved with the state MAC recomputed (atomically, fsynced, 0600).
    wallet.update_state(path, |state| record_checked(state, anchor, &checked, &new))?;
    Ok(checked)
}

/// Records checkpoint `new` in `state`, which must still hold the history `new` was checked
/// against (`checked`): if another process changed it meanwhile, nothing changes and the
/// caller is asked to retry.
fn record_checked(
    state: &mut medledger_client::keystore::WalletState,
    anchor: &TrustAnchor,
    checked: &[SeenCheckpoint],
    new: &SeenCheckpoint,
) -> Result<()> {
    let mut seen = seen_of(state, anchor);
    if seen != checked {
        bail!(
            "the wallet's checkpoint history changed while this checkpoint was checked against \
             it (another medledger process saved the wallet): try again"
        );
    }
    let n = &new.checkpoint.checkpoint;
    if state.last_checkpoint.as_ref().is_none_or(|l| l.checkpoint.height <= n.height) {
        state.last_checkpoint = Some(new.checkpoint.clone());
    }
    remember(&mut seen, new.clone());
    state.seen_checkpoints = seen;
    Ok(())
}

/// The newest checkpoint this wallet saw from each node, with one remembered before the
/// per-node memory existed (the wallet trusted only the pinned, genesis, node key then).
fn seen_of(
    state: &medledger_client::keystore::WalletState,
    anchor: &TrustAnchor,
) -> Vec<SeenCheckpoint> {
    let mut seen = state.seen_checkpoints.clone();
    if let Some(last) = &state.last_checkpoint
        && !seen.iter().any(|s| s.checkpoint.signer == last.signer)
    {
        let id = if last.signer == anchor.node_key { GENESIS_NODE_ID } else { 0 };
        seen.push(SeenCheckpoint { node_id: id, checkpoint: last.clone() });
    }
    seen
}

#[cfg(test)]
pub(crate) mod tests {
    use medledger_client::{
        checkpoints::SeenCheckpoint, keystore::WalletState, proof::TrustAnchor,
    };
    use medledger_core::{Hash, block::Checkpoint, keys::SigningKey};

    use super::record_checked;

    /// A checkpoint of `height` signed by `key`, as the wallet remembers it from `node_id`
    /// (the wallet's tests use it too).
    pub(crate) fn seen(node_id: u64, key: &SigningKey, height: u64) -> SeenCheckpoint {
        let checkpoint = Checkpoint {
            chain_id: "medledger-test".into(),
            height,
            time_ms: height * 1_000,
            log_size: height * 3,
            log_root: Hash::of(&height.to_be_bytes()),
        }
        .sign(key);
        SeenCheckpoint { node_id, checkpoint }
    }

    /// A checkpoint is recorded against the history it was checked with; if another process
    /// saved a checkpoint into the wallet meanwhile, it is refused and the state is unchanged.
    #[test]
    fn a_checkpoint_is_recorded_only_against_the_history_it_was_checked_with() {
        let (one, two) = (SigningKey::generate(), SigningKey::generate());
        let anchor = TrustAnchor {
            node_key: one.public_key(),
            chain_id: "medledger-test".into(),
            genesis: Hash([7; 32]),
        };
        let first = seen(1, &one, 3);
        let mut state = WalletState { seen_checkpoints: vec![first.clone()], ..Default::default() };
        let checked = vec![first.clone()];
        let newer = seen(1, &one, 5);
        record_checked(&mut state, &anchor, &checked, &newer).unwrap();
        assert_eq!(state.seen_checkpoints, vec![newer.clone()]);
        assert_eq!(state.last_checkpoint.as_ref(), Some(&newer.checkpoint));

        // Checked against [newer], but another process added node 2's checkpoint since.
        let checked = state.seen_checkpoints.clone();
        state.seen_checkpoints.push(seen(2, &two, 9));
        let before = state.clone();
        let err = record_checked(&mut state, &anchor, &checked, &seen(1, &one, 6)).unwrap_err();
        assert!(err.to_string().contains("changed while this checkpoint was checked"), "{err}");
        assert_eq!(state, before);
    }
}
