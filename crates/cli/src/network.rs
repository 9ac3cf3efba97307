//! `medledger network check [--json]`: asks every node the ledger lists for its signed
//! checkpoint and compares them, with each other and with the checkpoints this wallet saw
//! before, so that a split view (two nodes serving two histories) or a node that went back is
//! visible, with the two signed checkpoints as evidence.
//!
//! Each checkpoint is trusted only once its signer is the node's key on the ledger and that
//! key's admission by the pinned regulator is proven (the genesis node's key is pinned); a
//! node serving another genesis, or signing with another key, is named as untrusted. Each
//! node is reached at the address in the regulator's proven admission of its key, not at one
//! the wallet's node merely lists. A node that does not answer, a proof not given or a gap in
//! the node list leaves the check incomplete (not ok: such a node could hide a split view).
//! When nothing disagrees, the wallet remembers every checkpoint it checked.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use medledger_api::{ClusterView, NodeView, paths};
use medledger_client::{
    ClientError, HttpError, NodeClient, Signer,
    checkpoints::{GENESIS_NODE_ID, SeenCheckpoint, Split, compare_nodes, remember},
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
    /// `ok`, `lagging`, `inconsistent`, `untrusted`, `refused` (it answered with an error),
    /// `unreachable`, or `removed` (by the regulator, as the wallet's node lists it: not asked).
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
    /// What kept the check from covering every node and pair (a node that did not answer, a
    /// proof not given, a gap in the node list): `ok` is false.
    problems: Vec<String>,
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
    // The node asked first vouches for the others' admissions with its own proven key.
    let home_key = client
        .trusted_signer(&client.checkpoint().await?, &anchor, &genesis)
        .await
        .context("the node asked is not a proven node of the pinned network")?;
    let mut problems = Vec::new();
    // Ids are handed out one by one from 1: a list with a gap hides a node.
    let mut ids: Vec<u64> = listed.iter().map(|n| n.id).collect();
    ids.sort_unstable();
    if let Some(missing) = (1..=ids.len() as u64).find(|id| ids.binary_search(id).is_err()) {
        problems.push(format!("the node list skips node {missing}: a node may be hidden"));
    }
    // A node whose checkpoint this wallet saw must still be listed (its removal too).
    for s in &wallet.state()?.seen_checkpoints {
        if s.node_id != 0 && !ids.contains(&s.node_id) {
            problems.push(format!(
                "node {}, whose checkpoint this wallet saw, is not listed: a node may be hidden",
                s.node_id
            ));
        }
    }
    let mut reports = Vec::new();
    let mut fresh: Vec<(usize, NodeClient, SeenCheckpoint)> = Vec::new();
    for node in &listed {
        let mut report = NodeReport {
            id: node.id,
            url: String::new(),
            status: node.status.clone(),
            key: node.node_key.clone(),
            verdict: "ok",
            lag: None,
            checkpoint: None,
            inconsistent_with: Vec::new(),
            error: None,
        };
        if node.status == NodeView::REMOVED {
            report.verdict = "removed";
            reports.push(report);
            continue;
        }
        let fallback = urls.iter().find(|(id, _)| *id == node.id).map(|(_, u)| u.clone());
        match ask(&signer, node, fallback, &client, &home_key, &anchor, &genesis).await {
            Ok((url, node_client, checkpoint)) => {
                report.url = url;
                report.checkpoint = Some(checkpoint.clone());
                fresh.push((
                    reports.len(),
                    node_client,
                    SeenCheckpoint { node_id: node.id, checkpoint },
                ));
            }
            Err((url, asked)) => {
                report.url = url;
                let (verdict, e) = match asked {
                    Asked::Unreachable(e) => ("unreachable", e),
                    Asked::Refused(e) => ("refused", e),
                    Asked::Untrusted(e) => ("untrusted", e),
                };
                report.verdict = verdict;
                report.error = Some(e);
            }
        }
        reports.push(report);
    }

    let checked: Vec<SeenCheckpoint> = fresh.iter().map(|(_, _, s)| s.clone()).collect();
    let seen = wallet.state()?.seen_checkpoints.clone();
    let found = compare_nodes(&checked, &seen, |newer, old, new| {
        let node = fresh[newer].1.clone();
        async move {
            match tokio::time::timeout(PER_NODE, node.consistency(old, new)).await {
                Ok(answer) => answer.map(|r| r.proof),
                Err(_) => Err(ClientError::Http(HttpError::Unreachable {
                    url: node.base_url().to_owned(),
                    reason: format!("no consistency proof within {PER_NODE:?}"),
                })),
            }
        }
    })
    .await
    .map_err(|e: ClientError| anyhow::anyhow!(e))
    .context("comparing the checkpoints")?;

    let height = checked.iter().map(|s| s.checkpoint.checkpoint.height).max().unwrap_or(0);
    let at = |i: usize| if i < checked.len() { &checked[i] } else { &seen[i - checked.len()] };
    let mut split_reports = Vec::new();
    for Split { newer, older, disagreement } in &found.splits {
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
    for (newer, older, why) in &found.unproven {
        problems.push(format!(
            "node {} gave no consistency proof from node {}'s checkpoint: {why}",
            at(*newer).node_id,
            at(*older).node_id
        ));
    }
    for (index, _, s) in &fresh {
        let r = &mut reports[*index];
        let lag = height - s.checkpoint.checkpoint.height;
        r.lag = Some(lag);
        if r.verdict == "ok" && lag > 0 {
            r.verdict = "lagging";
        }
    }
    for r in &reports {
        if matches!(r.verdict, "unreachable" | "refused" | "untrusted") {
            problems.push(format!(
                "node {} is {}: {}",
                r.id,
                r.verdict,
                r.error.as_deref().unwrap_or("")
            ));
        }
    }
    if fresh.is_empty() {
        problems.push("no node answered".into());
    }
    let ok = split_reports.is_empty() && problems.is_empty();
    if split_reports.is_empty() {
        // What agreed is remembered, even when a node did not answer.
        let state = wallet.state_mut()?;
        let mut seen = state.seen_checkpoints.clone();
        for s in checked {
            remember(&mut seen, s);
        }
        state.seen_checkpoints = seen;
        wallet.save(&args.wallet.wallet)?;
    }
    let report = Report { ok, height, nodes: reports, splits: split_reports, problems };
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
    if !report.problems.is_empty() {
        bail!(
            "the network could not be checked in full (a node that does not answer could hide \
             a split view): {}",
            report.problems.join("; ")
        );
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

/// Within [`PER_NODE`], or unreachable.
async fn timed<T>(
    work: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, Asked> {
    tokio::time::timeout(PER_NODE, work)
        .await
        .map_err(|_| Asked::Unreachable(format!("no answer within {PER_NODE:?}")))?
        .map_err(Asked::from)
}

/// The URL of `node` and its checkpoint. The URL comes from the regulator's proven admission
/// of the node's key (served by `home`, proven in the log of `home_key`, its proven key, and
/// checked against the pinned genesis), never from the list alone; the genesis node, which no transaction admitted, is looked for at `fallback`
/// (Raft's members), and its checkpoint must be signed by the pinned genesis node key. The
/// node must serve the pinned genesis and sign with the key the ledger lists for it.
async fn ask(
    signer: &Signer,
    node: &NodeView,
    fallback: Option<String>,
    home: &NodeClient,
    home_key: &medledger_core::keys::PublicKey,
    anchor: &medledger_client::proof::TrustAnchor,
    genesis: &medledger_core::block::Genesis,
) -> Result<(String, NodeClient, SignedCheckpoint), (String, Asked)> {
    let key = medledger_client::nodes::parse_node_key(&node.node_key)
        .map_err(|e| (String::new(), Asked::Untrusted(format!("its listed key: {e}"))))?;
    let url = if node.id == GENESIS_NODE_ID {
        if key != anchor.node_key {
            let e = format!("node 1 is listed with key {key}, not the pinned {}", anchor.node_key);
            return Err((String::new(), Asked::Untrusted(e)));
        }
        fallback.ok_or_else(|| {
            let e = "no address: the ledger keeps none for the genesis node and Raft's \
                     members name none";
            (String::new(), Asked::Unreachable(e.into()))
        })?
    } else {
        let served = timed(home.node_admission(node.id))
            .await
            .map_err(|e| (String::new(), e))?
            .ok_or_else(|| (String::new(), Asked::Untrusted("no admission is served".into())))?;
        medledger_client::checkpoints::proven_node_address(
            &key,
            &served,
            anchor,
            genesis,
            Some(home_key),
        )
        .map_err(|e| (String::new(), Asked::Untrusted(e.to_string())))?
        .ok_or_else(|| (String::new(), Asked::Untrusted("no admitted address".into())))?
    };
    let fail = |e: Asked| (url.clone(), e);
    medledger_client::pinning::same_transport(home.base_url(), &url).map_err(|e| fail(e.into()))?;
    // Over TLS, only the node that proves the key the ledger gives it is asked.
    let client = NodeClient::pinned(&url, medledger_tls::Pins::new([key]))
        .map_err(|e| fail(e.into()))?
        .signed_by(signer.clone());
    let served = timed(client.genesis()).await.map_err(fail)?;
    if served.hash() != anchor.genesis {
        return Err(fail(Asked::Untrusted(format!(
            "it serves genesis {}, not the pinned genesis {}",
            served.hash(),
            anchor.genesis
        ))));
    }
    let checkpoint = timed(client.checkpoint()).await.map_err(fail)?;
    if checkpoint.signer != key {
        return Err(fail(Asked::Untrusted(format!(
            "its checkpoint is signed by node key {}, but the ledger lists {key} for node {}",
            checkpoint.signer, node.id
        ))));
    }
    checkpoint
        .verify(&key)
        .map_err(|_| fail(Asked::Untrusted("its checkpoint's signature does not verify".into())))?;
    Ok((url.clone(), client, checkpoint))
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
    for p in &report.problems {
        println!("  NOT CHECKED: {p}");
    }
    if report.ok {
        println!(
            "one history: every node agrees with every other, and with what this wallet saw before"
        );
    }
}
