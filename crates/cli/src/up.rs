//! `medledger up`: start a node on the embedded default (a one-member cluster with local
//! storage). On first run, create the regulator's identity, the node key and genesis.
//!
//! `medledger up --join URL` starts a node of an existing network instead: on first run it
//! fetches the genesis from URL (checked against `--genesis-hash` when given), learns the id
//! the ledger gave its node key (`GET /v1/nodes`; refused until the regulator has admitted the
//! key with `medledger node admit`), and waits for the leader to add it to Raft.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use medledger_client::keystore::Wallet;
use medledger_core::block::Genesis;
use medledger_node::{DataDir, Limits, quotas::VaultQuotas};

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
    /// Serve HTTPS: TLS 1.3 with a certificate bound to this node's key (no certificate
    /// authority). Other nodes accept it only as an active node of the ledger; wallets only as
    /// a node key they pinned or proved. Without it the node serves plain HTTP (fine on
    /// loopback, not across a network).
    #[arg(long)]
    tls: bool,
    /// The network's name (first run only).
    #[arg(long, default_value = "medledger-local")]
    chain_id: String,
    /// Join the network this node (base URL) belongs to, instead of creating one.
    #[arg(long)]
    join: Option<String>,
    /// With --join: the genesis hash (hex) the fetched genesis must have.
    #[arg(long, requires = "join")]
    genesis_hash: Option<String>,
    /// Where the first run writes the regulator's wallet (default: regulator.wallet.json in
    /// the data directory).
    #[arg(long, conflicts_with = "join")]
    wallet_out: Option<PathBuf>,
    /// Most open connections, all clients together; more are closed at once.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Most open connections from one IP address; more are closed at once.
    #[arg(long, default_value_t = Limits::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, default_value_t = Limits::default().header_read_timeout.as_secs())]
    header_timeout_secs: u64,
    /// Seconds a buffered request body (transaction, batch, blob) has to arrive, and the
    /// longest pause in a streamed upload.
    #[arg(long, default_value_t = Limits::default().body_read_timeout.as_secs())]
    body_timeout_secs: u64,
    /// Batch and blob bodies received at once; more wait for a turn.
    #[arg(long, default_value_t = Limits::default().max_large_bodies)]
    max_large_bodies: usize,
    /// Open event streams (`medledger watch`) per account; more are refused with 429.
    #[arg(long, default_value_t = Limits::default().max_event_streams_per_account)]
    max_event_streams_per_account: usize,
    /// Seconds requests in flight get to finish when the node is stopped (SIGINT, SIGTERM).
    #[arg(long, default_value_t = Limits::default().shutdown_grace.as_secs())]
    shutdown_grace_secs: u64,
    /// Free space (MiB) to keep on the data directory's file system: below it the node refuses
    /// new transactions (audited reads included, as they commit an access event) and vault
    /// uploads with HTTP 507 `disk_full`, keeps serving other reads, and resumes by itself
    /// once space returns.
    #[arg(long, default_value_t = medledger_node::storage::DEFAULT_DISK_RESERVE_BYTES / medledger_node::storage::MIB)]
    disk_reserve_mb: u64,
    /// Raft entries (blocks) between two snapshots of the ledger; the Raft log is purged
    /// behind each snapshot, and a node too far behind catches up by installing one. A
    /// snapshot costs about 1 s per 100,000 transactions of history to build.
    #[arg(long, default_value_t = medledger_node::raft::SNAPSHOT_EVERY_ENTRIES,
          value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every: u64,
    /// For fault tests only (hidden): a JSON file of rules that cut, drop or delay the
    /// messages this node sends to other nodes, re-read when it changes
    /// (medledger_node::raft::faults). Never set it on a node that serves anyone.
    #[arg(long, hide = true, value_name = "FILE")]
    fault_rules: Option<PathBuf>,
    /// Vault quota (MiB) of each device: what one account may keep in the vault at once.
    #[arg(long, default_value_t = quota_mb(|q| q.device))]
    quota_device_mb: u64,
    /// Vault quota (MiB) of each patient.
    #[arg(long, default_value_t = quota_mb(|q| q.patient))]
    quota_patient_mb: u64,
    /// Vault quota (MiB) of each doctor.
    #[arg(long, default_value_t = quota_mb(|q| q.doctor))]
    quota_doctor_mb: u64,
    /// Vault quota (MiB) of each hospital.
    #[arg(long, default_value_t = quota_mb(|q| q.hospital))]
    quota_hospital_mb: u64,
    /// Vault quota (MiB) of the regulator and of each organisation.
    #[arg(long, default_value_t = quota_mb(|q| q.regulator))]
    quota_regulator_mb: u64,
}

fn quota_mb(of: impl Fn(&VaultQuotas) -> u64) -> u64 {
    of(&VaultQuotas::default()) / medledger_node::storage::MIB
}

impl Args {
    fn vault_quotas(&self) -> VaultQuotas {
        let mib = |m: u64| m.saturating_mul(medledger_node::storage::MIB);
        VaultQuotas {
            device: mib(self.quota_device_mb),
            patient: mib(self.quota_patient_mb),
            doctor: mib(self.quota_doctor_mb),
            hospital: mib(self.quota_hospital_mb),
            regulator: mib(self.quota_regulator_mb),
            organisation: mib(self.quota_regulator_mb),
        }
    }

    fn limits(&self) -> Result<Limits> {
        if self.max_connections == 0
            || self.max_connections_per_ip == 0
            || self.header_timeout_secs == 0
            || self.body_timeout_secs == 0
            || self.max_large_bodies == 0
            || self.max_event_streams_per_account == 0
        {
            bail!(
                "--max-connections, --max-connections-per-ip, --header-timeout-secs, \
                 --body-timeout-secs, --max-large-bodies and --max-event-streams-per-account \
                 must be at least 1"
            );
        }
        Ok(Limits {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            header_read_timeout: Duration::from_secs(self.header_timeout_secs),
            body_read_timeout: Duration::from_secs(self.body_timeout_secs),
            max_large_bodies: self.max_large_bodies,
            max_event_streams_per_account: self.max_event_streams_per_account,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            ..Limits::default()
        })
    }
}

pub async fn run(args: Args) -> Result<()> {
    let limits = args.limits()?;
    if let Some(rules) = &args.fault_rules {
        // Refused before anything is created (the node reads the file again when it starts).
        medledger_node::raft::faults::Faults::read(rules)?;
    }
    // Everything the node creates is its owner's alone (L6); `serve` tightens what exists.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let dir = DataDir::new(&args.data_dir);
    if dir.in_use() {
        bail!(
            "{} is in use by another process (is a node already running on this data directory?)",
            args.data_dir.display()
        );
    }
    let url = format!("{}://{}", if args.tls { "https" } else { "http" }, args.listen);
    // The port first: a first run must not create a network and print "Next steps" for a
    // node that cannot serve.
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "cannot listen on {}: the address is already in use (is another node or program \
             serving there?); stop it or choose another address with --listen",
            args.listen
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot listen on {}", args.listen));
        }
    };
    let node_id = match &args.join {
        Some(join) => Some(join_network(&dir, join, args.genesis_hash.as_deref()).await?),
        None => {
            if !dir.is_initialised() {
                first_run(&dir, &args, &url)?;
            }
            None
        }
    };
    eprintln!(
        "starting the medledger node on {url}: checking the ledger in {}",
        args.data_dir.display()
    );
    let options = medledger_node::NodeOptions {
        limits,
        disk_reserve_bytes: args.disk_reserve_mb.saturating_mul(medledger_node::storage::MIB),
        vault_quotas: args.vault_quotas(),
        node_id,
        snapshot_every: args.snapshot_every,
        fault_rules: args.fault_rules.clone(),
        tls: args.tls,
    };
    medledger_node::serve_with(&dir, listener, options, stop_signal()?)
        .await
        .context("the node stopped")?;
    eprintln!("the node stopped cleanly");
    Ok(())
}

/// Prepares `dir` to join the network `join` belongs to: the genesis (fetched on first run,
/// checked against `expected_hash`; on later runs, checked to be the one `dir` holds) and the
/// id the network's ledger gave this node's key.
async fn join_network(dir: &DataDir, join: &str, expected_hash: Option<&str>) -> Result<u64> {
    let http = crate::cluster::http()?;
    let genesis: Genesis = crate::cluster::get_json(&http, join, medledger_api::paths::GENESIS)
        .await
        .with_context(|| format!("cannot fetch the genesis of the network at {join}"))?;
    let hash = genesis.hash().to_string();
    if let Some(expected) = expected_hash
        && !expected.trim().eq_ignore_ascii_case(&hash)
    {
        bail!(
            "the network at {join} has genesis {hash}, not the {expected} given with \
             --genesis-hash: refusing to join it"
        );
    }
    if dir.is_initialised() {
        let local: Genesis = serde_json::from_slice(
            &std::fs::read(dir.genesis_path())
                .with_context(|| format!("cannot read {}", dir.genesis_path().display()))?,
        )
        .with_context(|| format!("{} is not a genesis", dir.genesis_path().display()))?;
        if local.hash() != genesis.hash() {
            bail!(
                "{} belongs to another network (genesis {}) than {join} (genesis {hash})",
                dir.root().display(),
                local.hash()
            );
        }
    }
    if !dir.node_key_path().exists() {
        bail!(
            "{} has no node key: create one with `medledger node init --data-dir {}` and have \
             the regulator admit it",
            dir.root().display(),
            dir.root().display()
        );
    }
    let key = hex::encode(dir.node_key()?.public_key().0);
    let nodes = crate::cluster::nodes(&http, join)
        .await
        .with_context(|| format!("cannot list the nodes of the network at {join}"))?;
    let Some(me) = nodes.iter().find(|n| n.node_key.eq_ignore_ascii_case(&key)) else {
        bail!(
            "this node's key {key} is not admitted to the network at {join} yet: ask the \
             regulator to run `medledger node admit --node-key {key} --address URL --hospital \
             ACCOUNT`, then start this node again"
        );
    };
    if me.status != medledger_api::NodeView::ACTIVE {
        bail!("this node ({}) is {} on the network at {join}: it cannot join", me.id, me.status);
    }
    if !dir.is_initialised() {
        dir.initialise(&genesis)?;
        eprintln!(
            "joined the network {:?} (genesis {hash}) as node {}; waiting for the leader to add \
             this node",
            genesis.chain_id, me.id
        );
    }
    Ok(me.id)
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
pub(crate) fn stop_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        eprintln!("{name}: shutting down");
    })
}

fn first_run(dir: &DataDir, args: &Args, url: &str) -> Result<()> {
    std::fs::create_dir_all(dir.root())
        .with_context(|| format!("cannot create {}", dir.root().display()))?;
    let wallet_path =
        args.wallet_out.clone().unwrap_or_else(|| dir.root().join("regulator.wallet.json"));

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
    // Pinned from the genesis written here, not from anything read over the network.
    let state = wallet.state_mut()?;
    state.node_url = Some(url.to_owned());
    state.chain_id = Some(genesis.chain_id.clone());
    state.trusted_node_key = Some(genesis.node_key);
    state.genesis_hash = Some(genesis.hash());
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
