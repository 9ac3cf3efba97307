//! `medledger wallet`: create and show identities.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use medledger_client::{ClientError, keystore::Wallet};

use crate::common::{Session, WalletArgs, load_wallet, passphrase, print_json};

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
        /// The node this wallet talks to.
        #[arg(long, env = "MEDLEDGER_NODE")]
        node: Option<String>,
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
        Command::Create { out, name, node } => {
            let pass = passphrase("Choose a passphrase for the new wallet: ", true)?;
            let (mut wallet, _identity) = Wallet::create(&out, &name, &pass)?;
            if node.is_some() {
                wallet.node_url = node;
                wallet.save(&out)?;
            }
            println!("created wallet {} for {name:?}", out.display());
            println!("account:  {}", wallet.account());
            println!("identity: {}", wallet.public_identity());
            println!(
                "Give the identity line to the regulator (hospitals) or your hospital (doctors, patients)."
            );
            Ok(())
        }
        Command::Show { wallet: path, identity_only, json, ledger, node } => {
            let wallet = load_wallet(&path)?;
            if identity_only {
                println!("{}", wallet.public_identity());
                return Ok(());
            }
            let on_ledger = if ledger {
                let args = WalletArgs { wallet: path.clone(), node };
                let s = Session::open(&args).await?;
                match s.client.account(&wallet.account()).await {
                    Ok(a) => a,
                    // A wallet not (yet) on the ledger, or whose key is no longer the account's
                    // active key, cannot sign a request the node accepts (the node does not say
                    // which, so as not to tell strangers which accounts exist).
                    Err(ClientError::Refused { status: 401, message, .. })
                        if message.contains("not the active key") =>
                    {
                        None
                    }
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
                        "role:     {:?}{}",
                        a.role,
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
