//! `medledger up`: start a node on the embedded default (a one-member cluster with local
//! storage). On first run, create the regulator's identity, the node key and genesis.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use medledger_client::keystore::Wallet;
use medledger_core::block::Genesis;
use medledger_node::DataDir;

use crate::common::passphrase;

/// Options of `medledger up`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Where the node keeps its ledger, Raft log, keys and vault.
    #[arg(long, default_value = "medledger-data")]
    data_dir: PathBuf,
    /// The address to serve the HTTP API on.
    #[arg(long, default_value = "127.0.0.1:7300")]
    listen: SocketAddr,
    /// The network's name (first run only).
    #[arg(long, default_value = "medledger-local")]
    chain_id: String,
    /// Free space (MiB) to keep on the data directory's file system: below it the node refuses
    /// new transactions (audited reads included, as they commit an access event) and vault
    /// uploads with HTTP 507 `disk_full`, keeps serving other reads, and resumes by itself
    /// once space returns.
    #[arg(long, default_value_t = medledger_node::storage::DEFAULT_DISK_RESERVE_BYTES / medledger_node::storage::MIB)]
    disk_reserve_mb: u64,
}

pub async fn run(args: Args) -> Result<()> {
    let dir = DataDir::new(&args.data_dir);
    let url = format!("http://{}", args.listen);
    if !dir.is_initialised() {
        first_run(&dir, &args, &url)?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "starting the medledger node on {url}: checking the ledger in {}",
        args.data_dir.display()
    );
    let options = medledger_node::NodeOptions {
        disk_reserve_bytes: args.disk_reserve_mb.saturating_mul(medledger_node::storage::MIB),
    };
    medledger_node::serve_with(
        &dir,
        listener,
        async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("shutting down");
        },
        options,
    )
    .await
    .context("the node stopped")?;
    Ok(())
}

fn first_run(dir: &DataDir, args: &Args, url: &str) -> Result<()> {
    std::fs::create_dir_all(dir.root())
        .with_context(|| format!("cannot create {}", dir.root().display()))?;
    let wallet_path = dir.root().join("regulator.wallet.json");
    eprintln!("First run: creating a new network {:?} in {}", args.chain_id, dir.root().display());
    let pass = passphrase("Choose a passphrase for the regulator's wallet: ", true)?;
    let (mut wallet, identity) = Wallet::create(&wallet_path, "regulator", &pass)?;
    let node_key = dir.ensure_node_key()?;
    let genesis = Genesis {
        chain_id: args.chain_id.clone(),
        time_ms: SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64,
        regulator_key: identity.signing.public_key(),
        regulator_encryption_key: identity.decryption.public_key(),
        node_key: node_key.public_key(),
    };
    dir.initialise(&genesis)?;
    wallet.node_url = Some(url.to_owned());
    wallet.chain_id = Some(genesis.chain_id.clone());
    wallet.trusted_node_key = Some(genesis.node_key);
    wallet.save(&wallet_path)?;
    eprintln!(
        "\nCreated:\n  genesis            {}\n  regulator wallet   {} (account {})\n  node key           {}\n\nNext steps (in another terminal):\n  export MEDLEDGER_WALLET={}\n  medledger wallet create --out hospital.wallet.json --name \"St. Mary's\"\n  medledger hospital admit --identity \"$(medledger wallet show --wallet hospital.wallet.json --identity-only)\" \\\n      --registration-id GOV-123 --name \"St. Mary's\" --city Leeds --specialisation cardiology --contact \"+44 113 000 0000\"\n",
        dir.genesis_path().display(),
        wallet_path.display(),
        wallet.account(),
        dir.node_key_path().display(),
        wallet_path.display(),
    );
    Ok(())
}
