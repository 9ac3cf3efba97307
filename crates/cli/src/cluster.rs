//! `medledger cluster status --node URL [--json]`: the Raft cluster as a node sees it
//! (`GET /v1/cluster`), with each member's own report of its applied index, committed height
//! and log root (asked of the member itself; a member that does not answer is shown as
//! unreachable). Unsigned reads of consortium infrastructure: no wallet needed.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use medledger_api::{ClusterView, ErrorBody, NodeView, paths};
use serde::Serialize;

/// `medledger cluster ...`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Members, roles, leader, term, and each member's applied index, height, log root and lag.
    Status(StatusArgs),
    /// Start a local network of N nodes on 127.0.0.1 in one command (node i on BASE_PORT+i,
    /// data in DIR/node-i, the regulator's wallet DIR/regulator.wallet.json); Ctrl-C or
    /// SIGTERM stops every node.
    Up(crate::cluster_up::UpArgs),
}

/// Options of `medledger cluster status`.
#[derive(Debug, ClapArgs)]
pub struct StatusArgs {
    /// Any node of the network (its base URL).
    #[arg(long)]
    node: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// One member in the status.
#[derive(Debug, Serialize)]
struct Member {
    id: u64,
    url: String,
    /// `voter` or `learner`.
    role: String,
    /// The member's applied Raft index, as it reports it.
    applied: Option<u64>,
    /// The member's committed height, as it reports it.
    height: Option<u64>,
    /// The member's log root, as it reports it.
    log_root: Option<String>,
    /// How many log entries the member is behind the leader (from the leader's view).
    lag: Option<u64>,
    /// Why the member did not report.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The status of the cluster.
#[derive(Debug, Serialize)]
struct Status {
    leader: Option<u64>,
    term: u64,
    members: Vec<Member>,
}

/// An HTTP client for unsigned reads of nodes. Over `https://` it accepts any node
/// certificate: encrypted, but what it reads is authenticated only where the caller checks it
/// (a genesis against `--genesis-hash`, say).
pub(crate) fn http() -> Result<reqwest::Client> {
    let tls =
        medledger_tls::client_config(None, std::sync::Arc::new(medledger_tls::AnyKey::default()))?;
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .tls_backend_preconfigured(tls)
        .build()
        .context("cannot build an HTTP client")
}

/// `GET base+path` as JSON, with the node's error body on failure.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    base: &str,
    path: &str,
) -> Result<T> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let response = http.get(&url).send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let bytes = response.bytes().await.with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => bail!("{url}: {} ({status}): {}", e.code, e.message),
            Err(_) => bail!("{url}: HTTP {status}"),
        }
    }
    serde_json::from_slice(&bytes).with_context(|| format!("{url}: unexpected answer"))
}

/// The ledger's nodes at `base` (`GET /v1/nodes`).
pub(crate) async fn nodes(http: &reqwest::Client, base: &str) -> Result<Vec<NodeView>> {
    get_json(http, base, paths::NODES).await
}

pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Status(args) => status(args).await,
        Command::Up(args) => crate::cluster_up::up(args).await,
    }
}

async fn status(args: StatusArgs) -> Result<()> {
    let http = http()?;
    let mut view: ClusterView = get_json(&http, &args.node, paths::CLUSTER).await?;
    // The leader knows every member's lag; ask it when it is another node.
    if view.leader.is_some_and(|l| l != view.node_id)
        && let Some(url) = view.members.iter().find(|m| Some(m.id) == view.leader).map(|m| &m.url)
        && let Ok(leader_view) = get_json::<ClusterView>(&http, url, paths::CLUSTER).await
    {
        view = leader_view;
    }
    let mut members = Vec::new();
    for m in &view.members {
        let own = get_json::<ClusterView>(&http, &m.url, paths::CLUSTER).await;
        let (applied, height, log_root, error) = match own {
            Ok(v) => (Some(v.applied), Some(v.height), Some(v.log_root), None),
            Err(e) => (None, None, None, Some(format!("{e:#}"))),
        };
        members.push(Member {
            id: m.id,
            url: m.url.clone(),
            role: m.role.clone(),
            applied,
            height,
            log_root,
            lag: m.lag,
            error,
        });
    }
    let status = Status { leader: view.leader, term: view.term, members };
    if args.json {
        return crate::common::print_json(&status);
    }
    let leader = status.leader.map_or("none".to_owned(), |l| l.to_string());
    println!("leader {leader}, term {}", status.term);
    for m in &status.members {
        let show = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        match &m.error {
            Some(e) => println!("  node {} {} {}: unreachable ({e})", m.id, m.role, m.url),
            None => println!(
                "  node {} {} {}: applied {}, height {}, lag {}, log root {}",
                m.id,
                m.role,
                m.url,
                show(m.applied),
                show(m.height),
                show(m.lag),
                m.log_root.as_deref().unwrap_or("-"),
            ),
        }
    }
    Ok(())
}
