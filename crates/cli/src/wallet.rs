//! `medledger wallet`: create, pin and show identities.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_client::{
    ClientError, HttpError,
    checkpoints::{GENESIS_NODE_ID, SeenCheckpoint},
    http::NodeClient,
    keystore::{Wallet, WalletState},
};
use medledger_core::keys::PublicKey;

use crate::common::{
    Session, WalletArgs, load_wallet, node_url, passphrase, print_json, unlock_wallet,
};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new identity: a signing key and an encryption key, encrypted under a
    /// passphrase (Argon2id). Prints the public identity card to hand to whoever registers you.
    Create {
        /// Where to write the wallet.
        #[arg(long)]
        out: PathBuf,
        /// A name for the identity (yours, your hospital's).
        #[arg(long)]
        name: String,
        /// The node this wallet talks to: its genesis (network and node key) is pinned in the
        /// wallet now, authenticated under the passphrase.
        #[arg(long, env = "MEDLEDGER_NODE")]
        node: Option<String>,
        /// The node key you expect (64 hex characters, from the network's operator); with
        /// --node, the pin is refused if the node's genesis names another.
        #[arg(long)]
        node_key: Option<String>,
        /// Print JSON: `account`, `identity`, `name`, `wallet` (the file) and `pinned`.
        #[arg(long)]
        json: bool,
    },
    /// Pin the node this wallet trusts: its URL, chain id, genesis and node key, authenticated
    /// under the passphrase. Needed once for a wallet created without --node, or written by an
    /// older medledger.
    Pin {
        /// The wallet file.
        #[arg(long, env = "MEDLEDGER_WALLET")]
        wallet: PathBuf,
        /// The node (defaults to the one already pinned, then http://127.0.0.1:7300).
        #[arg(long, env = "MEDLEDGER_NODE")]
        node: Option<String>,
        /// The node key you expect (64 hex characters, from the network's operator): the pin
        /// is refused if the node's genesis names another. Without it, whatever the node says
        /// is pinned (trust on first use, by your explicit choice).
        #[arg(long)]
        node_key: Option<String>,
        /// Replace a pin to another network or node key (forgets the last checkpoint).
        #[arg(long)]
        replace: bool,
    },
    /// Forget the checkpoints this wallet remembers of one node (or of every node). Every
    /// checkpoint a node signs must agree with those remembered, so one node that signed a
    /// checkpoint far ahead of the others, or of a history they do not share, keeps failing
    /// every later check against the others; once the network's operators have dealt with
    /// that node, forget it here and its next checkpoint is taken afresh.
    ForgetCheckpoints {
        /// The wallet file.
        #[arg(long, env = "MEDLEDGER_WALLET")]
        wallet: PathBuf,
        /// The node's id on the ledger (as `network check` and `proof` name it).
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        node: Option<u64>,
        /// Forget every node's checkpoints.
        #[arg(long)]
        all: bool,
        /// Print JSON: `forgotten` (each node id, height and signer) and `remembered` (the
        /// node ids still remembered).
        #[arg(long)]
        json: bool,
    },
    /// Show a wallet's public identity and, if the node knows it, its ledger account.
    Show {
        /// The wallet file.
        #[arg(long, env = "MEDLEDGER_WALLET")]
        wallet: PathBuf,
        /// Print only the identity card (for scripts).
        #[arg(long)]
        identity_only: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also ask the node for the account's state on the ledger (unlocks the wallet to sign
        /// the request).
        #[arg(long)]
        ledger: bool,
        /// The node to ask (with --ledger).
        #[arg(long, env = "MEDLEDGER_NODE")]
        node: Option<String>,
    },
}

pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Create { out, name, node, node_key, json } => {
            let expected = node_key.as_deref().map(parse_node_key).transpose()?;
            let pass = passphrase("Choose a passphrase for the new wallet: ", true)?;
            let (mut wallet, _identity) = Wallet::create(&out, &name, &pass)?;
            if !json {
                println!("created wallet {} for {name:?}", out.display());
            }
            let pinned = node.is_some();
            if let Some(url) = node {
                pin(&mut wallet, &out, &url, expected, false, json).await.with_context(|| {
                    format!(
                        "the wallet was created but is not pinned: run `medledger wallet pin \
                         --wallet {} --node {url}` once the node is reachable",
                        out.display()
                    )
                })?;
            }
            if json {
                return print_json(&serde_json::json!({
                    "account": wallet.account(),
                    "identity": wallet.public_identity(),
                    "name": name,
                    "wallet": out,
                    "pinned": pinned,
                }));
            }
            println!("account:  {}", wallet.account());
            println!("identity: {}", wallet.public_identity());
            println!(
                "Give the identity line to the regulator (hospitals) or your hospital (doctors, patients)."
            );
            Ok(())
        }
        Command::Pin { wallet: path, node, node_key, replace } => {
            let expected = node_key.as_deref().map(parse_node_key).transpose()?;
            let (mut wallet, _identity) = unlock_wallet(&path)?;
            let url = node_url(node.as_deref(), Some(&wallet));
            pin(&mut wallet, &path, &url, expected, replace, false).await
        }
        Command::ForgetCheckpoints { wallet: path, node, all: _, json } => {
            let (mut wallet, _identity) = unlock_wallet(&path)?;
            let mut forgotten = Vec::new();
            wallet.update_state(&path, |state| -> Result<()> {
                forgotten = forget_checkpoints(state, node)?;
                Ok(())
            })?;
            let remembered: Vec<u64> =
                wallet.state()?.seen_checkpoints.iter().map(|s| s.node_id).collect();
            if json {
                let forgotten: Vec<_> = forgotten
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "node": s.node_id,
                            "height": s.checkpoint.checkpoint.height,
                            "signer": s.checkpoint.signer,
                        })
                    })
                    .collect();
                return print_json(
                    &serde_json::json!({ "forgotten": forgotten, "remembered": remembered }),
                );
            }
            for s in &forgotten {
                println!(
                    "forgot node {}'s checkpoint at height {} (signed by {})",
                    s.node_id, s.checkpoint.checkpoint.height, s.checkpoint.signer
                );
            }
            println!("still remembered: {}", ids(&remembered));
            Ok(())
        }
        Command::Show { wallet: path, identity_only, json, ledger, node } => {
            let wallet = load_wallet(&path)?;
            if identity_only {
                println!("{}", wallet.public_identity());
                return Ok(());
            }
            let on_ledger =
                if ledger {
                    let args = WalletArgs { wallet: path.clone(), node };
                    let s = Session::open(&args).await?;
                    match s.client.account(&wallet.account()).await {
                        Ok(a) => a,
                        // A wallet not (yet) on the ledger, or whose key is no longer the
                        // account's active key, cannot sign a request the node accepts (the node
                        // does not say which, so as not to tell strangers which accounts exist).
                        Err(ClientError::Http(HttpError::Refused {
                            status: 401, message, ..
                        })) if message.contains("not the active key") => None,
                        Err(e) => return Err(e.into()),
                    }
                } else {
                    None
                };
            if json {
                return print_json(&serde_json::json!({
                    "name": wallet.name(),
                    "account": wallet.account(),
                    "identity": wallet.public_identity(),
                    "ledger": on_ledger,
                }));
            }
            println!("name:     {}", wallet.name());
            println!("account:  {}", wallet.account());
            println!("identity: {}", wallet.public_identity());
            match on_ledger {
                Some(a) => {
                    println!(
                        "role:     {}{}",
                        crate::common::words(&a.role),
                        if a.suspended { " (suspended)" } else { "" }
                    );
                    println!("key:      {}", a.key.map_or("REVOKED".to_owned(), |k| k.to_string()));
                    if let Some(pid) = a.patient_id {
                        println!("patient:  {pid}");
                    }
                }
                None if ledger => println!(
                    "ledger:   not registered (or this wallet's key is no longer the active key)"
                ),
                None => println!("ledger:   (pass --ledger to ask the node)"),
            }
            Ok(())
        }
    }
}

/// Removes what `state` remembers of node `node`'s checkpoints (every node's with `None`): its
/// entries in the per-node memory, and the newest checkpoint if that node signed it (the
/// newest of those left takes its place). Returns what was forgotten; refuses, changing
/// nothing, a node it remembers nothing of.
fn forget_checkpoints(state: &mut WalletState, node: Option<u64>) -> Result<Vec<SeenCheckpoint>> {
    // A newest checkpoint remembered before the per-node memory existed is the pinned
    // (genesis) node's, or of a node the wallet never named (id 0).
    let legacy = state
        .last_checkpoint
        .as_ref()
        .filter(|last| !state.seen_checkpoints.iter().any(|s| s.checkpoint.signer == last.signer));
    let legacy = legacy.map(|last| SeenCheckpoint {
        node_id: if Some(last.signer) == state.trusted_node_key { GENESIS_NODE_ID } else { 0 },
        checkpoint: last.clone(),
    });
    let all: Vec<SeenCheckpoint> = state.seen_checkpoints.iter().cloned().chain(legacy).collect();
    let (forgotten, kept): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|s| node.is_none_or(|id| s.node_id == id));
    if forgotten.is_empty() {
        let remembered: Vec<u64> = kept.iter().map(|s| s.node_id).collect();
        match node {
            Some(id) => bail!(
                "this wallet remembers no checkpoint of node {id} (it remembers those of: {}): \
                 nothing forgotten",
                ids(&remembered)
            ),
            None => bail!("this wallet remembers no checkpoint: nothing forgotten"),
        }
    }
    if let Some(last) = &state.last_checkpoint
        && forgotten.iter().any(|s| s.checkpoint.signer == last.signer)
    {
        state.last_checkpoint = kept
            .iter()
            .max_by_key(|s| s.checkpoint.checkpoint.height)
            .map(|s| s.checkpoint.clone());
    }
    state
        .seen_checkpoints
        .retain(|s| !forgotten.iter().any(|f| f.checkpoint.signer == s.checkpoint.signer));
    Ok(forgotten)
}

/// Node ids as a list for people.
fn ids(ids: &[u64]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    let ids: Vec<String> = ids.iter().map(|id| format!("node {id}")).collect();
    ids.join(", ")
}

fn parse_node_key(hex_key: &str) -> Result<PublicKey> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut bytes)
        .map_err(|e| anyhow::anyhow!("--node-key is not 64 hex characters: {e}"))?;
    Ok(PublicKey(bytes))
}

/// Pins the genesis served at `url` in the unlocked `wallet` and saves it: refuses a node key
/// other than `expected`, and a pin to another network or node key unless `replace`.
async fn pin(
    wallet: &mut Wallet,
    path: &std::path::Path,
    url: &str,
    expected: Option<PublicKey>,
    replace: bool,
    quiet: bool,
) -> Result<()> {
    // Over TLS with a key to expect, the node must prove that very key in the handshake: a
    // genesis fetched from anyone else could name the expected key and another regulator.
    let client = match expected {
        Some(key) if medledger_client::pinning::is_https(url) => {
            NodeClient::pinned(url, medledger_tls::Pins::new([key]))?
        }
        _ => NodeClient::new(url)?,
    };
    let genesis = client.genesis().await.with_context(|| match expected {
        Some(key) => format!(
            "cannot fetch the genesis from {url} (over TLS the node must prove node key {key}: \
             pin through the genesis node)"
        ),
        None => format!("cannot fetch the genesis from {url}"),
    })?;
    if let Some(key) = expected
        && key != genesis.node_key
    {
        bail!(
            "the node at {url} has genesis node key {}, not the {key} you expect: not pinned",
            genesis.node_key
        );
    }
    // Over TLS, the node must also prove a key of that network: the genesis node's, or one
    // the regulator admitted.
    let anchor = medledger_client::proof::TrustAnchor {
        node_key: genesis.node_key,
        chain_id: genesis.chain_id.clone(),
        genesis: genesis.hash(),
    };
    medledger_client::pinning::connect(url, &anchor, &medledger_client::pinning::pins_of(&anchor))
        .await
        .with_context(|| format!("the node at {url} is not a node of the network it serves"))?;
    let state = wallet.state_mut()?;
    let same = state.genesis_hash == Some(genesis.hash())
        && state.trusted_node_key == Some(genesis.node_key)
        && state.chain_id.as_deref() == Some(genesis.chain_id.as_str());
    if state.trust_anchor().is_some() && !same {
        if !replace {
            bail!(
                "this wallet is pinned to chain {:?} with node key {}, but the node at {url} \
                 serves chain {:?} with node key {}: not pinned (pass --replace to trust it \
                 instead)",
                state.chain_id.as_deref().unwrap_or_default(),
                state.trusted_node_key.map(|k| k.to_string()).unwrap_or_default(),
                genesis.chain_id,
                genesis.node_key
            );
        }
        state.last_checkpoint = None;
    }
    if !same {
        // A checkpoint from an unauthenticated (older) state is never kept.
        state.last_checkpoint = None;
    }
    state.node_url = Some(url.to_owned());
    state.chain_id = Some(genesis.chain_id.clone());
    state.trusted_node_key = Some(genesis.node_key);
    state.genesis_hash = Some(genesis.hash());
    wallet.save(path)?;
    if quiet {
        return Ok(());
    }
    println!(
        "pinned {url}: chain {:?}, genesis {}, node key {}",
        genesis.chain_id,
        genesis.hash(),
        genesis.node_key
    );
    if expected.is_none() {
        println!(
            "(check the node key with the network's operator, or pin with --node-key next time)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use medledger_client::keystore::WalletState;
    use medledger_core::keys::SigningKey;

    use super::forget_checkpoints;
    use crate::proof::tests::seen;

    /// Forgetting the node that signed the newest checkpoint (say, far ahead of the others)
    /// leaves the others' and makes the newest of theirs the wallet's newest; a node the
    /// wallet remembers nothing of is refused with nothing changed; `--all` forgets all.
    #[test]
    fn forgetting_a_node_keeps_the_others_and_the_newest_of_theirs() {
        let (one, two, three) =
            (SigningKey::generate(), SigningKey::generate(), SigningKey::generate());
        let (a, b, far) = (seen(1, &one, 5), seen(2, &two, 6), seen(3, &three, 900));
        let mut state = WalletState {
            trusted_node_key: Some(one.public_key()),
            seen_checkpoints: vec![a.clone(), b.clone(), far.clone()],
            last_checkpoint: Some(far.checkpoint.clone()),
            ..Default::default()
        };
        let forgotten = forget_checkpoints(&mut state, Some(3)).unwrap();
        assert_eq!(forgotten, vec![far.clone()]);
        assert_eq!(state.seen_checkpoints, vec![a.clone(), b.clone()]);
        assert_eq!(state.last_checkpoint.as_ref(), Some(&b.checkpoint));

        let before = state.clone();
        let err = forget_checkpoints(&mut state, Some(3)).unwrap_err().to_string();
        assert!(err.contains("no checkpoint of node 3") && err.contains("node 1, node 2"), "{err}");
        assert_eq!(state, before);

        // Forgetting a node that did not sign the newest leaves the newest alone.
        forget_checkpoints(&mut state, Some(1)).unwrap();
        assert_eq!(
            (state.seen_checkpoints.clone(), state.last_checkpoint.clone()),
            (vec![b.clone()], Some(b.checkpoint.clone()))
        );

        state.seen_checkpoints.push(a.clone());
        assert_eq!(forget_checkpoints(&mut state, None).unwrap().len(), 2);
        assert_eq!((state.seen_checkpoints.len(), state.last_checkpoint.clone()), (0, None));
        let err = forget_checkpoints(&mut state, None).unwrap_err().to_string();
        assert!(err.contains("remembers no checkpoint"), "{err}");
    }

    /// A newest checkpoint kept from before the per-node memory (the pinned node's) is node
    /// 1's: forgetting node 1 forgets it.
    #[test]
    fn a_checkpoint_from_before_the_per_node_memory_is_the_pinned_nodes() {
        let one = SigningKey::generate();
        let old = seen(1, &one, 4);
        let mut state = WalletState {
            trusted_node_key: Some(one.public_key()),
            last_checkpoint: Some(old.checkpoint.clone()),
            ..Default::default()
        };
        let err = forget_checkpoints(&mut state, Some(2)).unwrap_err().to_string();
        assert!(err.contains("those of: node 1"), "{err}");
        assert_eq!(forget_checkpoints(&mut state, Some(1)).unwrap(), vec![old]);
        assert_eq!(state.last_checkpoint, None);
    }
}
