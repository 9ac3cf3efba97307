//! `medledger cluster up`: a local network of N nodes in one command, for trying the
//! consortium and for tests. Node i listens on 127.0.0.1:PORT+i and keeps its data in
//! DIR/node-i; the regulator's wallet is DIR/regulator.wallet.json and node i's hospital's
//! wallet DIR/hospital-i.wallet.json. Every step is the command a hospital's IT team would run
//! by hand (`up`, `wallet create`, `hospital admit`, `node init`, `node admit`, `up --join`),
//! run as a child process of this one: one process per node, all stopped together by Ctrl-C or
//! SIGTERM. A second `cluster up` over the same directory starts the same network again.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;

use crate::common::{PASSPHRASE_ENV, passphrase};

/// Most nodes `cluster up` starts: a local network for trying things, not a deployment.
const MAX_NODES: u16 = 9;
/// How long one node may take to answer `/health` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the network may take to make every node a voter.
const FORM_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the nodes get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Options of `medledger cluster up`.
#[derive(Debug, ClapArgs)]
pub struct UpArgs {
    /// How many nodes (1 to 9).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Where the network keeps its nodes' data directories, logs and wallets.
    #[arg(long, default_value = "medledger-cluster")]
    data_dir: PathBuf,
    /// Node i listens on 127.0.0.1:BASE_PORT+i.
    #[arg(long, default_value_t = 7300)]
    base_port: u16,
    /// Once every node is a voter, print the network as one JSON object (then keep running).
    #[arg(long)]
    json: bool,
    /// Every node serves HTTPS and talks to the others over TLS (`medledger up --tls`); use
    /// the same choice each time the network is started.
    #[arg(long)]
    tls: bool,
}

/// One node of the local network.
struct Member {
    index: u16,
    url: String,
    dir: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Drop for Member {
    /// A node this command started never outlives it (an error on the way up, a panic).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub async fn up(args: UpArgs) -> Result<()> {
    if args.nodes == 0 || args.nodes > MAX_NODES {
        bail!("--nodes must be 1 to {MAX_NODES}");
    }
    let Some(_) = args.base_port.checked_add(args.nodes - 1) else {
        bail!("--base-port {} leaves no room for {} nodes", args.base_port, args.nodes);
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let root = args.data_dir.canonicalize()?;
    let regulator = root.join("regulator.wallet.json");
    let first_run = !regulator.exists();
    let pass = if first_run {
        passphrase("Choose a passphrase for the network's wallets: ", true)?
    } else {
        passphrase(&format!("Passphrase for {}: ", regulator.display()), false)?
    };
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let run = Runner { exe, pass, tls: args.tls };
    let mut members: Vec<Member> = Vec::new();
    let stop = crate::up::stop_signal()?;
    tokio::pin!(stop);

    let started = async {
        let first = run.start(&root, 0, args.base_port, &regulator, None).await?;
        let leader_url = first.url.clone();
        members.push(first);
        for i in 1..args.nodes {
            let port = args.base_port + i;
            let dir = root.join(format!("node-{i}"));
            if !dir.join("genesis.json").exists() {
                run.admit(&root, i, port, &regulator, &leader_url).await?;
            }
            members.push(run.start(&root, i, port, &regulator, Some(&leader_url)).await?);
        }
        run.wait_formed(&leader_url, args.nodes).await
    };
    let status = tokio::select! {
        r = started => r,
        () = &mut stop => {
            eprintln!("stopping before the network had formed");
            stop_all(&mut members).await;
            return Ok(());
        }
    };
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            stop_all(&mut members).await;
            return Err(e);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        eprintln!("\nThe network is up: {} nodes, every one a voter.", args.nodes);
        for m in &members {
            eprintln!(
                "  node {}  {}  data {}  log {}",
                m.index,
                m.url,
                m.dir.display(),
                m.log.display()
            );
        }
        eprintln!(
            "\n  regulator wallet   {}\n  status             medledger cluster status --node {}\n\nCtrl-C stops every node.",
            regulator.display(),
            members[0].url
        );
    }
    // Run until a signal; a node that exits on its own is reported, the others keep running.
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                for m in &mut members {
                    if let Ok(Some(status)) = m.child.try_wait() {
                        eprintln!("node {} ({}) exited: {status}; see {}", m.index, m.url, m.log.display());
                    }
                }
                members.retain_mut(|m| !matches!(m.child.try_wait(), Ok(Some(_))));
                if members.is_empty() {
                    bail!("every node has exited");
                }
            }
        }
    }
    stop_all(&mut members).await;
    eprintln!("every node stopped");
    Ok(())
}

/// Runs this binary's own commands as child processes.
struct Runner {
    exe: PathBuf,
    pass: String,
    /// The nodes serve HTTPS (`up --tls`).
    tls: bool,
}

impl Runner {
    /// The base URL of the node listening on `listen`.
    fn url(&self, listen: &str) -> String {
        format!("{}://{listen}", if self.tls { "https" } else { "http" })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.args(args).env(PASSPHRASE_ENV, &self.pass).stdin(Stdio::null());
        c
    }

    /// Runs one command to completion (off the async threads); returns its stdout, or its
    /// stderr as the error.
    async fn output(&self, args: &[&str]) -> Result<String> {
        let mut command = self.command(args);
        let out = tokio::task::spawn_blocking(move || command.output())
            .await?
            .with_context(|| format!("cannot run `medledger {}`", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "`medledger {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let out = self.output(args).await?;
        serde_json::from_str(out.trim())
            .with_context(|| format!("`medledger {}` printed no JSON: {out}", args.join(" ")))
    }

    /// Starts node `index` (`up`, with `--join` for all but the first) and waits for it to
    /// answer `/health`.
    async fn start(
        &self,
        root: &Path,
        index: u16,
        port: u16,
        regulator: &Path,
        join: Option<&str>,
    ) -> Result<Member> {
        let dir = root.join(format!("node-{index}"));
        let log = root.join(format!("node-{index}.log"));
        let listen = format!("127.0.0.1:{port}");
        let dir_s = dir.display().to_string();
        let mut args = vec!["up", "--data-dir", &dir_s, "--listen", &listen];
        if self.tls {
            args.push("--tls");
        }
        let wallet = regulator.display().to_string();
        match join {
            None => args.extend(["--wallet-out", &wallet]),
            Some(url) => args.extend(["--join", url]),
        }
        let file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = self
            .command(&args)
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("cannot start a node")?;
        let url = self.url(&listen);
        let mut member = Member { index, url, dir, log, child };
        eprintln!("node {index}: starting on {} (log {})", member.url, member.log.display());
        let client = crate::cluster::http()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = member.child.try_wait() {
                bail!("node {index} exited ({status}) before it served:\n{}", tail(&member.log));
            }
            let health = client.get(format!("{}/health", member.url)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(member);
            }
            if Instant::now() > deadline {
                bail!(
                    "node {index} did not serve within {START_TIMEOUT:?}:\n{}",
                    tail(&member.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Admits node `index` as the regulator would: its hospital (with a wallet of its own),
    /// its node key, then the node under that hospital.
    async fn admit(
        &self,
        root: &Path,
        index: u16,
        port: u16,
        regulator: &Path,
        leader: &str,
    ) -> Result<()> {
        let dir = root.join(format!("node-{index}")).display().to_string();
        let reg = regulator.display().to_string();
        let hospital_wallet = root.join(format!("hospital-{index}.wallet.json"));
        let hw = hospital_wallet.display().to_string();
        let key = self.json(&["node", "init", "--data-dir", &dir, "--json"]).await?;
        let Some(node_key) = key["node_key"].as_str() else {
            bail!("`node init` printed no node key: {key}");
        };
        // Admitted by an earlier run that stopped before the node joined: nothing to do.
        let listed = self.json(&["node", "list", "--node", leader, "--json"]).await?;
        let known = listed
            .as_array()
            .is_some_and(|nodes| nodes.iter().any(|n| n["node_key"].as_str() == Some(node_key)));
        if known {
            return Ok(());
        }
        let name = format!("Hospital {index}");
        if !hospital_wallet.exists() {
            self.output(&["wallet", "create", "--out", &hw, "--name", &name, "--node", leader])
                .await?;
        }
        let identity = self.output(&["wallet", "show", "--wallet", &hw, "--identity-only"]).await?;
        let registration = format!("CLUSTER-{index}");
        let admitted = self
            .json(&[
                "hospital",
                "admit",
                "--wallet",
                &reg,
                "--node",
                leader,
                "--identity",
                identity.trim(),
                "--registration-id",
                &registration,
                "--name",
                &name,
                "--city",
                "Loopback",
                "--specialisation",
                "general",
                "--contact",
                "the local cluster",
                "--json",
            ])
            .await?;
        let Some(hospital) = admitted["account"].as_str() else {
            bail!("`hospital admit` named no account: {admitted}");
        };
        let address = self.url(&format!("127.0.0.1:{port}"));
        self.json(&[
            "node",
            "admit",
            "--wallet",
            &reg,
            "--node",
            leader,
            "--node-key",
            node_key,
            "--address",
            &address,
            "--hospital",
            hospital,
            "--json",
        ])
        .await?;
        eprintln!("node {index}: admitted (key {node_key}, hospital {hospital})");
        Ok(())
    }

    /// Waits until `cluster status` lists `n` voters; returns that status.
    async fn wait_formed(&self, leader: &str, n: u16) -> Result<serde_json::Value> {
        let deadline = Instant::now() + FORM_TIMEOUT;
        loop {
            let status = self.json(&["cluster", "status", "--node", leader, "--json"]).await;
            if let Ok(s) = &status {
                let voters = s["members"]
                    .as_array()
                    .map_or(0, |m| m.iter().filter(|m| m["role"] == "voter").count());
                if voters == usize::from(n) {
                    return status;
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the network did not make all {n} nodes voters within {FORM_TIMEOUT:?}: {status:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// SIGTERM to every node, then waits; a node still running after [`STOP_GRACE`] is killed.
async fn stop_all(members: &mut [Member]) {
    for m in members.iter() {
        if let Some(pid) = rustix::process::Pid::from_raw(m.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    for m in members.iter_mut() {
        loop {
            if !matches!(m.child.try_wait(), Ok(None)) {
                eprintln!("node {} stopped", m.index);
                break;
            }
            if Instant::now() > deadline {
                eprintln!("node {} did not stop within {STOP_GRACE:?}: killing it", m.index);
                let _ = m.child.kill();
                let _ = m.child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The last lines of a node's log, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
