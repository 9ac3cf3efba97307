//! `medledger vault status --node URL [--json]`: how completely every member of the network
//! holds the blobs committed state references (each node keeps a replica of every one), as
//! of each node's last repair pass, and which blobs are under-replicated (missing on some
//! node); `medledger vault repair --node URL [--all]`: asks a node (or every member) for a
//! repair pass now. Unsigned reads of consortium infrastructure: no wallet needed.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use medledger_api::{ClusterView, VaultStatus, paths};
use serde::Serialize;

use crate::cluster::{get_json, http};

/// `medledger vault ...`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Each member's replicas (blobs referenced, held, missing) and the under-replicated
    /// blobs, as of each node's last repair pass.
    Status(StatusArgs),
    /// Ask a node (or, with --all, every member) for a repair pass now: it pulls every blob
    /// it lacks from its peers (at most one pass per 30 s per node).
    Repair(RepairArgs),
}

/// Options of `medledger vault status`.
#[derive(Debug, ClapArgs)]
pub struct StatusArgs {
    /// Any node of the network (its base URL); every member it knows is asked.
    #[arg(long)]
    node: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `medledger vault repair`.
#[derive(Debug, ClapArgs)]
pub struct RepairArgs {
    /// The node to repair (its base URL).
    #[arg(long)]
    node: String,
    /// Ask every member the node knows, not only that node.
    #[arg(long)]
    all: bool,
    /// Print JSON instead of lines.
    #[arg(long)]
    json: bool,
}

/// One member's replicas.
#[derive(Debug, Serialize)]
struct Member {
    id: u64,
    url: String,
    /// Its status; `None` if it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<VaultStatus>,
    /// Why it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A blob some member lacks.
#[derive(Debug, Serialize)]
struct UnderReplicated {
    blob: String,
    /// The members that lack it.
    missing_on: Vec<u64>,
}

/// The network's replicas.
#[derive(Debug, Serialize)]
struct Status {
    members: Vec<Member>,
    /// Blobs missing on some members but held by another (among the first 100 each member
    /// names): a repair pass on the members that lack them pulls them.
    under_replicated: Vec<UnderReplicated>,
    /// Blobs committed state references that no member that answered holds: never uploaded
    /// (details a transaction names without requiring them) or lost everywhere.
    unheld: Vec<String>,
}

pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Status(args) => status(args).await,
        Command::Repair(args) => repair(args).await,
    }
}

/// The members (id, base URL) `node` knows.
async fn members(http: &reqwest::Client, node: &str) -> Result<Vec<(u64, String)>> {
    let view: ClusterView = get_json(http, node, paths::CLUSTER).await?;
    Ok(view.members.into_iter().map(|m| (m.id, m.url)).collect())
}

async fn status(args: StatusArgs) -> Result<()> {
    let http = http()?;
    let mut members = Vec::new();
    let mut lacking: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (id, url) in self::members(&http, &args.node).await? {
        match get_json::<VaultStatus>(&http, &url, paths::VAULT_STATUS).await {
            Ok(status) => {
                for blob in &status.missing_blobs {
                    lacking.entry(blob.to_string()).or_default().push(id);
                }
                members.push(Member { id, url, status: Some(status), error: None });
            }
            Err(e) => members.push(Member { id, url, status: None, error: Some(format!("{e:#}")) }),
        }
    }
    let answered = members.iter().filter(|m| m.status.is_some()).count();
    let (unheld, under): (Vec<_>, Vec<_>) =
        lacking.into_iter().partition(|(_, missing_on)| missing_on.len() == answered);
    let under_replicated =
        under.into_iter().map(|(blob, missing_on)| UnderReplicated { blob, missing_on }).collect();
    let unheld = unheld.into_iter().map(|(blob, _)| blob).collect();
    let status = Status { members, under_replicated, unheld };
    if args.json {
        return crate::common::print_json(&status);
    }
    for m in &status.members {
        match (&m.status, &m.error) {
            (Some(s), _) => match s.checked_at_ms {
                None => println!(
                    "node {} {}: no repair pass yet (a node without peers replicates nothing)",
                    m.id, m.url
                ),
                Some(at) => println!(
                    "node {} {}: {} of {} referenced blobs held, {} missing{}; checked {}{}",
                    m.id,
                    m.url,
                    s.held,
                    s.referenced,
                    s.missing,
                    if s.retrying > 0 {
                        format!(", {} of recent blocks still asked for", s.retrying)
                    } else {
                        String::new()
                    },
                    crate::common::local_time(at),
                    if s.repair_pending { " (a repair pass is pending)" } else { "" },
                ),
            },
            (None, e) => println!(
                "node {} {}: unreachable ({})",
                m.id,
                m.url,
                e.as_deref().unwrap_or("no answer")
            ),
        }
    }
    if !status.unheld.is_empty() {
        println!("held by no node ({}; never uploaded, or lost everywhere):", status.unheld.len());
        for blob in &status.unheld {
            println!("  {blob}");
        }
    }
    if status.under_replicated.is_empty() {
        println!("no under-replicated blob");
    } else {
        println!("under-replicated blobs (run `medledger vault repair --node URL --all`):");
        for u in &status.under_replicated {
            let on: Vec<String> = u.missing_on.iter().map(u64::to_string).collect();
            println!("  {} missing on node {}", u.blob, on.join(", "));
        }
    }
    Ok(())
}

async fn repair(args: RepairArgs) -> Result<()> {
    let http = http()?;
    let targets = if args.all {
        members(&http, &args.node).await?
    } else {
        let view: ClusterView = get_json(&http, &args.node, paths::CLUSTER).await?;
        vec![(view.node_id, args.node.trim_end_matches('/').to_owned())]
    };
    let mut answers = Vec::new();
    let mut failed = Vec::new();
    for (id, url) in targets {
        let response = http.post(format!("{url}{}", paths::VAULT_REPAIR)).send().await;
        let answer = match response {
            Ok(r) if r.status().is_success() => match r.json::<VaultStatus>().await {
                Ok(s) => Ok(s),
                Err(e) => Err(format!("unexpected answer: {e}")),
            },
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                Err(serde_json::from_str::<medledger_api::ErrorBody>(&body)
                    .map(|b| format!("{}: {}", b.code, b.message))
                    .unwrap_or_else(|_| format!("HTTP {status}")))
            }
            Err(e) => Err(format!("cannot reach {url}: {e}")),
        };
        if let Err(e) = &answer {
            failed.push(format!("node {id}: {e}"));
        }
        if !args.json {
            match &answer {
                Ok(_) => println!("node {id} {url}: repair pass asked for"),
                Err(e) => println!("node {id} {url}: {e}"),
            }
        }
        answers.push(Member {
            id,
            url,
            status: answer.as_ref().ok().cloned(),
            error: answer.err(),
        });
    }
    if args.json {
        crate::common::print_json(&answers)?;
    }
    if !failed.is_empty() {
        bail!("the repair request was not taken: {}", failed.join("; "));
    }
    Ok(())
}
