//! `medledger network check [--json]`: asks every node the ledger lists for its signed
//! checkpoint and compares them, with each other and with the checkpoints this wallet saw
//! before, so that a split view (two nodes serving two histories) or a node that went back is
//! visible, with the two signed checkpoints as evidence.
//!
//! Each checkpoint is trusted only once its signer is the node's key on the ledger and that
//! key's admission by the pinned regulator is proven (the genesis node's key is pinned); a
//! node serving another genesis, or signing with another key, is named as untrusted. Nodes
//! that do not answer are reported, not guessed about. When nothing disagrees, the wallet
//! remembers every checkpoint it checked.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use medledger_api::{ClusterView, NodeView, paths};
use medledger_client::{
    ClientError, HttpError, NodeClient, Signer,
    checkpoints::{SeenCheckpoint, Split, compare_nodes, remember},
};
use medledger_core::block::SignedCheckpoint;
use serde::Serialize;

use crate::common::{Session, WalletArgs};

/// How long one node may take to answer one request.
const PER_NODE: Duration = Duration::from_secs(10);

/// `medledger network ...`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask every node the ledger lists for its signed checkpoint and check that all of them,
    /// and every checkpoint this wallet saw before, are one history; name the nodes that
    /// disagree, with both signed checkpoints. Fails if any node disagrees or is untrusted.
    Check(CheckArgs),
}

/// Options of `medledger network check`.
#[derive(Debug, ClapArgs)]
pub struct CheckArgs {
    #[command(flatten)]
    wallet: WalletArgs,
    /// Print one JSON object: `ok`, each node's verdict and checkpoint, and each disagreement
    /// with both signed checkpoints (`splits`).
    #[arg(long)]
    json: bool,
}

/// One node in the report.
#[derive(Debug, Serialize)]
struct NodeReport {
    id: u64,
    url: String,
    /// Its status on the ledger (`active`, `suspended`).
    status: String,
    key: String,
    /// `ok`, `lagging`, `inconsistent`, `untrusted`, `refused` (it answered with an error)
    /// or `unreachable`.
    verdict: &'static str,
    /// How many blocks it is behind the highest checkpoint seen in this check.
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<SignedCheckpoint>,
    /// The nodes whose checkpoints it disagrees with.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    inconsistent_with: Vec<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Two checkpoints that are not one history.
#[derive(Debug, Serialize)]
struct SplitReport {
    /// The node of the higher checkpoint, and of the lower one.
    nodes: [u64; 2],
    /// Which of the two (`newer`, `older`) this wallet remembered from before rather than
    /// fetched now.
    remembered: [bool; 2],
    reason: String,
    newer: SignedCheckpoint,
    older: SignedCheckpoint,
}

#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    /// The highest block height any node signed in this check.
    height: u64,
    nodes: Vec<NodeReport>,
    splits: Vec<SplitReport>,
}

pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Check(args) => check(args).await,
    }
}

async fn check(args: CheckArgs) -> Result<()> {
    let Session { mut wallet, client, anchor, identity, .. } = Session::open(&args.wallet).await?;
    let signer = Signer::new(identity.signing.clone(), wallet.account());
    let genesis = client.genesis().await?;
    let listed = client.nodes().await.context("listing the network's nodes")?;
    let urls = raft_urls(&client).await;
    let mut reports = Vec::new();
    let mut fresh: Vec<(usize, NodeClient, SeenCheckpoint)> = Vec::new();
    for node in listed.iter().filter(|n| n.status != NodeView::REMOVED) {
        let url = if node.address.is_empty() {
            urls.iter().find(|(id, _)| *id == node.id).map(|(_, u)| u.clone())
        } else {
            Some(node.address.clone())
        };
        let mut report = NodeReport {
            id: node.id,
            url: url.clone().unwrap_or_default(),
            status: node.status.clone(),
            key: node.node_key.clone(),
            verdict: "ok",
            lag: None,
            checkpoint: None,
            inconsistent_with: Vec::new(),
            error: None,
        };
        let Some(url) = url else {
            report.verdict = "unreachable";
            report.error =
                Some("no address: neither the ledger nor the Raft members give one".into());
            reports.push(report);
            continue;
        };
        match ask(&url, &signer, node, &client, &anchor, &genesis).await {
            Ok((node_client, checkpoint)) => {
                report.checkpoint = Some(checkpoint.clone());
                fresh.push((
                    reports.len(),
                    node_client,
                    SeenCheckpoint { node_id: node.id, checkpoint },
                ));
            }
            Err(Asked::Unreachable(e)) => {
                report.verdict = "unreachable";
                report.error = Some(e);
            }
            Err(Asked::Refused(e)) => {
                report.verdict = "refused";
                report.error = Some(e);
            }
            Err(Asked::Untrusted(e)) => {
                report.verdict = "untrusted";
                report.error = Some(e);
            }
        }
        reports.push(report);
    }

    let checked: Vec<SeenCheckpoint> = fresh.iter().map(|(_, _, s)| s.clone()).collect();
    let seen = wallet.state()?.seen_checkpoints.clone();
    let splits = compare_nodes(&checked, &seen, |newer, old, new| {
        let node = fresh[newer].1.clone();
        async move { node.consistency(old, new).await.map(|r| r.proof) }
    })
    .await
    .map_err(|e: ClientError| anyhow::anyhow!(e))
    .context("fetching a consistency proof")?;

    let height = checked.iter().map(|s| s.checkpoint.checkpoint.height).max().unwrap_or(0);
    let at = |i: usize| if i < checked.len() { &checked[i] } else { &seen[i - checked.len()] };
    let mut split_reports = Vec::new();
    for Split { newer, older, disagreement } in &splits {
        let (n, o) = (at(*newer), at(*older));
        for (i, other) in [(*newer, o.node_id), (*older, n.node_id)] {
            if let Some((index, _, _)) = fresh.get(i) {
                let r = &mut reports[*index];
                r.verdict = "inconsistent";
                if !r.inconsistent_with.contains(&other) {
                    r.inconsistent_with.push(other);
                }
            }
        }
        split_reports.push(SplitReport {
            nodes: [n.node_id, o.node_id],
            remembered: [*newer >= checked.len(), *older >= checked.len()],
            reason: disagreement.reason.clone(),
            newer: n.checkpoint.clone(),
            older: o.checkpoint.clone(),
        });
    }
    for (index, _, s) in &fresh {
        let r = &mut reports[*index];
        let lag = height - s.checkpoint.checkpoint.height;
        r.lag = Some(lag);
        if r.verdict == "ok" && lag > 0 {
            r.verdict = "lagging";
        }
    }
    let ok = split_reports.is_empty()
        && !reports.iter().any(|r| r.verdict == "untrusted")
        && !fresh.is_empty();
    if split_reports.is_empty() {
        let state = wallet.state_mut()?;
        let mut seen = state.seen_checkpoints.clone();
        for s in checked {
            remember(&mut seen, s);
        }
        state.seen_checkpoints = seen;
        wallet.save(&args.wallet.wallet)?;
    }
    let report = Report { ok, height, nodes: reports, splits: split_reports };
    if args.json {
        crate::common::print_json(&report)?;
    } else {
        print(&report);
    }
    if !report.splits.is_empty() {
        let pairs: Vec<String> = report
            .splits
            .iter()
            .map(|s| {
                let when = |remembered: bool| if remembered { "earlier " } else { "" };
                format!("node {} and {}node {}", s.nodes[0], when(s.remembered[1]), s.nodes[1])
            })
            .collect();
        bail!(
            "INCONSISTENT LEDGER HISTORY: not one history: {}; one of each pair serves a forked \
             or rewritten ledger; keep this wallet and the output (--json has both signed \
             checkpoints of each pair) as evidence",
            pairs.join("; ")
        );
    }
    if let Some(r) = report.nodes.iter().find(|r| r.verdict == "untrusted") {
        bail!("node {} is not trusted: {}", r.id, r.error.as_deref().unwrap_or(""));
    }
    if fresh.is_empty() {
        bail!("no node answered");
    }
    Ok(())
}

/// Why a node's checkpoint was not taken.
enum Asked {
    /// No answer.
    Unreachable(String),
    /// It answered with an error.
    Refused(String),
    /// What it served is not to be trusted.
    Untrusted(String),
}

impl From<ClientError> for Asked {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Http(HttpError::Unreachable { .. }) => Asked::Unreachable(e.to_string()),
            other => Asked::Refused(other.to_string()),
        }
    }
}

/// The checkpoint of the node at `url`, once it serves the pinned genesis and its checkpoint
/// is signed by the key the ledger lists for it, whose admission `home` proves.
async fn ask(
    url: &str,
    signer: &Signer,
    node: &NodeView,
    home: &NodeClient,
    anchor: &medledger_client::proof::TrustAnchor,
    genesis: &medledger_core::block::Genesis,
) -> Result<(NodeClient, SignedCheckpoint), Asked> {
    let late = |_| Asked::Unreachable(format!("no answer within {PER_NODE:?}"));
    let client = NodeClient::new(url)?.signed_by(signer.clone());
    let served = tokio::time::timeout(PER_NODE, client.genesis()).await.map_err(late)??;
    if served.hash() != anchor.genesis {
        return Err(Asked::Untrusted(format!(
            "it serves genesis {}, not the pinned genesis {}",
            served.hash(),
            anchor.genesis
        )));
    }
    let checkpoint = tokio::time::timeout(PER_NODE, client.checkpoint()).await.map_err(late)??;
    if checkpoint.signer.to_string() != node.node_key {
        return Err(Asked::Untrusted(format!(
            "its checkpoint is signed by node key {}, but the ledger lists {} for node {}",
            checkpoint.signer, node.node_key, node.id
        )));
    }
    let id = home
        .admitted_signer(&checkpoint, anchor, genesis)
        .await
        .map_err(|e| Asked::Untrusted(e.to_string()))?;
    if id != node.id {
        return Err(Asked::Untrusted(format!(
            "its key is admitted as node {id}, not node {}",
            node.id
        )));
    }
    checkpoint
        .verify(&checkpoint.signer)
        .map_err(|_| Asked::Untrusted("its checkpoint's signature does not verify".into()))?;
    Ok((client, checkpoint))
}

/// The Raft members' URLs as the wallet's node sees them: the address of a node the ledger
/// lists without one (the genesis node).
async fn raft_urls(home: &NodeClient) -> Vec<(u64, String)> {
    let Ok(http) = crate::cluster::http() else { return Vec::new() };
    match crate::cluster::get_json::<ClusterView>(&http, home.base_url(), paths::CLUSTER).await {
        Ok(view) => view.members.into_iter().map(|m| (m.id, m.url)).collect(),
        Err(_) => Vec::new(),
    }
}

fn print(report: &Report) {
    println!("highest checkpoint: height {}", report.height);
    for r in &report.nodes {
        let cp = r.checkpoint.as_ref().map(|c| &c.checkpoint);
        let at = cp.map_or(String::new(), |c| {
            format!(" height {}, log size {}, root {}", c.height, c.log_size, c.log_root)
        });
        let detail = match r.verdict {
            "ok" => String::new(),
            "lagging" => format!(" ({} blocks behind)", r.lag.unwrap_or(0)),
            "inconsistent" => format!(
                " (NOT one history with node(s) {})",
                r.inconsistent_with.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            ),
            _ => format!(" ({})", r.error.as_deref().unwrap_or("")),
        };
        println!("  node {} {} [{}]: {}{at}{detail}", r.id, r.url, r.status, r.verdict);
    }
    for s in &report.splits {
        let (n, o) = (&s.newer.checkpoint, &s.older.checkpoint);
        let when = |remembered: bool| if remembered { "earlier " } else { "" };
        println!(
            "  INCONSISTENT: node {} {}signed height {} (log size {}, root {}); node {} {}signed \
             height {} (log size {}, root {}): {}",
            s.nodes[0],
            when(s.remembered[0]),
            n.height,
            n.log_size,
            n.log_root,
            s.nodes[1],
            when(s.remembered[1]),
            o.height,
            o.log_size,
            o.log_root,
            s.reason
        );
    }
    if report.ok {
        println!(
            "one history: every node that answered agrees with every other, and with what this wallet saw before"
        );
    }
}
