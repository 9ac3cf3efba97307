//! `medledger proof TX`: fetch a transaction with its inclusion proof and verify it offline
//! against a checkpoint signed by the node key this wallet trusts; then check that the node's
//! checkpoint extends the one this wallet saw last (consistency proof), refusing loudly if not.

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use medledger_client::proof::{check_consistency, verify_tx_proof};
use medledger_core::Hash;

use crate::common::{Session, WalletArgs};

/// Options of `medledger proof`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The transaction hash (64 hex characters).
    tx: String,
    #[command(flatten)]
    wallet: WalletArgs,
}

pub async fn run(args: Args) -> Result<()> {
    let hash = Hash::from_hex(&args.tx)
        .with_context(|| format!("{:?} is not a transaction hash", args.tx))?;
    // The session checks that the node serves the genesis this wallet is pinned to.
    let Session { mut wallet, client, anchor, .. } = Session::open(&args.wallet).await?;
    let trusted = anchor.node_key;
    let resp = client.transaction(&hash).await?;
    verify_tx_proof(&resp, &trusted).context("the inclusion proof does NOT verify")?;
    let new = resp.checkpoint.clone();
    println!(
        "transaction {hash}: included at log index {} of {} (block {}), proof verified against checkpoint root {}",
        resp.receipt.log_index,
        new.checkpoint.log_size,
        resp.header.height,
        new.checkpoint.log_root
    );
    extend_history(&mut wallet, &args.wallet.wallet, &client, new, &trusted).await
}

/// Checks that checkpoint `new` (already verified under `trusted`) extends the one this wallet
/// saw last, refusing loudly if not, and records it in the wallet.
pub(crate) async fn extend_history(
    wallet: &mut medledger_client::Wallet,
    path: &std::path::Path,
    client: &medledger_client::NodeClient,
    new: medledger_core::block::SignedCheckpoint,
    trusted: &medledger_core::keys::PublicKey,
) -> Result<()> {
    if let Some(old) = wallet.state()?.last_checkpoint.clone() {
        if new.checkpoint.log_size < old.checkpoint.log_size {
            bail!(
                "INCONSISTENT NODE: its log has {} entries but this wallet already saw {}: the node's history was rolled back or forked. Do not trust it.",
                new.checkpoint.log_size,
                old.checkpoint.log_size
            );
        }
        let proof = client.consistency(old.checkpoint.log_size, new.checkpoint.log_size).await?;
        if let Err(e) = check_consistency(&old, &new, &proof.proof, trusted) {
            bail!(
                "INCONSISTENT NODE: {e}. Do not trust it; keep this wallet's checkpoint as evidence."
            );
        }
        println!(
            "consistent with the checkpoint this wallet saw last (log size {} -> {})",
            old.checkpoint.log_size, new.checkpoint.log_size
        );
    } else {
        println!("first checkpoint seen by this wallet: recorded for future consistency checks");
    }
    // Saved with the state MAC recomputed (atomically, 0600).
    wallet.state_mut()?.last_checkpoint = Some(new);
    wallet.save(path)?;
    Ok(())
}
