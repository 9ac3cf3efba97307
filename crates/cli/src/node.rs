//! `medledger node`: a node's key (`init`), and the network's membership as the ledger keeps
//! it: the regulator admits a hospital's node, suspends, reinstates or removes it; anyone lists
//! the nodes (public, unsigned).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_api::NodeView;
use medledger_client::{http::NodeClient, nodes};
use medledger_core::{
    block::{Created, Outcome, Receipt},
    ids::AccountId,
    keys::PublicKey,
    tx::nodes::check_node_address,
};
use medledger_node::DataDir;

use crate::{
    common::{Session, WalletArgs, node_url, print_created, print_json},
    registry::print_receipt,
};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Create this node's key in its data directory if there is none yet, and print its public
    /// half (what the regulator admits). Never replaces an existing key.
    Init {
        /// The node's data directory (created if need be).
        #[arg(long, default_value = "medledger-data")]
        data_dir: PathBuf,
        /// Print JSON: `node_key` (hex) and `path` (the key file).
        #[arg(long)]
        json: bool,
    },
    /// Admit a hospital's node to the network (regulator). It gets the next node id.
    Admit {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The node's key, 64 hex characters (`medledger node init` on that node prints it).
        #[arg(long, value_parser = parse_node_key)]
        node_key: PublicKey,
        /// The node's base URL, with an explicit port and no path: http://10.0.0.2:7300.
        #[arg(long, value_parser = parse_address)]
        address: String,
        /// The account of the hospital that runs it.
        #[arg(long)]
        hospital: AccountId,
        /// Print JSON: `node_id`, `node_key`, `tx_hash`, `height`, `log_index`.
        #[arg(long)]
        json: bool,
    },
    /// Suspend a node (regulator): it leaves the network until reinstated.
    Suspend(StatusArgs),
    /// Reinstate a suspended node (regulator).
    Reinstate(StatusArgs),
    /// Remove a node for good (regulator); its key can never be admitted again.
    Remove(StatusArgs),
    /// List the network's nodes as the ledger knows them (public: no wallet needed).
    List {
        /// The node to ask.
        #[arg(long, env = "MEDLEDGER_NODE", default_value = "http://127.0.0.1:7300")]
        node: String,
        /// Print JSON: a list of `id`, `node_key`, `address`, `hospital`, `status`,
        /// `admitted_at`.
        #[arg(long)]
        json: bool,
    },
}

/// The options of a status change.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    wallet: WalletArgs,
    /// The node's key, 64 hex characters.
    #[arg(long, value_parser = parse_node_key)]
    node_key: PublicKey,
    /// Print JSON: `node_key`, `status` (the new one), `tx_hash`, `height`, `log_index`.
    #[arg(long)]
    json: bool,
}

fn parse_node_key(s: &str) -> Result<PublicKey, String> {
    nodes::parse_node_key(s).map_err(|e| e.to_string())
}

fn parse_address(s: &str) -> Result<String, String> {
    check_node_address(s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

pub async fn run(command: NodeCommand) -> Result<()> {
    match command {
        NodeCommand::Init { data_dir, json } => init(data_dir, json),
        NodeCommand::Admit { wallet, node_key, address, hospital, json } => {
            let body = nodes::admit(node_key, &address, hospital)?;
            let s = Session::open(&wallet).await?;
            let receipt = s.submit(body).await?;
            let Outcome::Applied { created: Some(Created::Node { id }) } = &receipt.outcome else {
                bail!("the ledger admitted no node: {:?}", receipt.outcome);
            };
            if json {
                let ids = serde_json::json!({ "node_id": id, "node_key": node_key.to_string() });
                return print_created(&receipt, ids);
            }
            print_receipt("node admitted", &receipt);
            println!("node {id}: key {node_key}, {address}, hospital {hospital}");
            Ok(())
        }
        NodeCommand::Suspend(args) => {
            change(args, nodes::suspend, NodeView::SUSPENDED, "node suspended").await
        }
        NodeCommand::Reinstate(args) => {
            change(args, nodes::reinstate, NodeView::ACTIVE, "node reinstated").await
        }
        NodeCommand::Remove(args) => {
            change(args, nodes::remove, NodeView::REMOVED, "node removed").await
        }
        NodeCommand::List { node, json } => {
            let url = node_url(Some(&node), None);
            let list = NodeClient::new(&url)?.nodes().await?;
            if json {
                return print_json(&list);
            }
            println!(
                "{:>4}  {:<9}  {:<64}  {:<40}  {:<9}  ADDRESS",
                "ID", "STATUS", "NODE KEY", "HOSPITAL", "ADMITTED"
            );
            for n in list {
                let address = if n.address.is_empty() { "(genesis node)" } else { &n.address };
                println!(
                    "{:>4}  {:<9}  {:<64}  {:<40}  {:<9}  {address}",
                    n.id,
                    n.status,
                    n.node_key,
                    n.hospital.as_deref().unwrap_or("-"),
                    n.admitted_at,
                );
            }
            Ok(())
        }
    }
}

/// Submits a status change of the node with `args.node_key`.
async fn change(
    args: StatusArgs,
    body: fn(PublicKey) -> medledger_core::tx::TxBody,
    status: &str,
    what: &str,
) -> Result<()> {
    let s = Session::open(&args.wallet).await?;
    let receipt: Receipt = s.submit(body(args.node_key)).await?;
    if args.json {
        let ids = serde_json::json!({ "node_key": args.node_key.to_string(), "status": status });
        return print_created(&receipt, ids);
    }
    print_receipt(what, &receipt);
    Ok(())
}

/// Creates the data directory's node key if absent (the one `medledger up` creates and uses),
/// and prints its public half and the key file.
fn init(data_dir: PathBuf, json: bool) -> Result<()> {
    // Everything the node creates is its owner's alone, as `medledger up` makes it.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let dir = DataDir::new(&data_dir);
    let existed = dir.node_key_path().exists();
    let key = dir
        .ensure_node_key()
        .with_context(|| format!("cannot create or read the node key in {}", data_dir.display()))?
        .public_key();
    let path = dir.node_key_path();
    if json {
        return print_json(&serde_json::json!({
            "node_key": key.to_string(),
            "path": path.display().to_string(),
        }));
    }
    let state = if existed { "existing" } else { "new" };
    println!("node key {key}");
    println!("  {state} key file {}", path.display());
    eprintln!(
        "\nThe regulator admits this node with:\n  medledger node admit --wallet REGULATOR.wallet.json \
         --node-key {key} --address http://HOST:PORT --hospital HOSPITAL_ACCOUNT"
    );
    Ok(())
}
