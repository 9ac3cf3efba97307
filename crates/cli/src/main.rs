//! `medledger`: run a node, act as a wallet, verify a ledger offline, check proofs, and
//! benchmark a running node.

mod audit;
mod bench;
mod case;
mod cluster;
mod cluster_up;
mod common;
mod consent;
mod device;
mod device_sim;
mod emergency;
mod export;
mod export_grantee;
mod network;
mod node;
mod organisation;
mod portal;
mod proof;
mod record;
mod record_import;
mod registry;
mod research;
mod up;
mod vault;
mod verify;
mod wallet;
mod watch;

use std::{path::PathBuf, process::ExitCode};

/// mimalloc rather than glibc's allocator: a node's resident memory stays flat under load
/// (docs/benchmarks.md, "Memory and restart").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// medledger: a permissioned ledger for medical records.
#[derive(Debug, Parser)]
#[command(name = "medledger", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a node (first run: create genesis and a regulator identity).
    Up(up::Args),
    /// Re-check a whole data directory offline: the ledger (hash chain, Merkle roots, every
    /// signature, a full state replay), the Raft log (every entry decodes; every applied block
    /// is in it) and the vault (its index; every referenced blob present and hash-checked).
    /// One line per part; exits non-zero on any discrepancy.
    Verify {
        /// The node's data directory (the node must be stopped).
        #[arg(long, default_value = "medledger-data")]
        data_dir: PathBuf,
        /// Print JSON: `ok` and each part's verdict and problems.
        #[arg(long)]
        json: bool,
    },
    /// Fetch and verify a transaction's inclusion proof, and the node's consistency with the
    /// checkpoint this wallet saw last.
    Proof(proof::Args),
    /// Wallets: create and show identities.
    #[command(subcommand)]
    Wallet(wallet::Command),
    /// Hospitals: admit, suspend, reinstate (regulator); list.
    #[command(subcommand)]
    Hospital(registry::HospitalCommand),
    /// Doctors: onboard (hospital); list.
    #[command(subcommand)]
    Doctor(registry::DoctorCommand),
    /// Researcher and insurer organisations: admit, suspend, reinstate (regulator); members
    /// (accept, add, remove); list.
    #[command(subcommand)]
    Organisation(organisation::OrganisationCommand),
    /// Patients: register (hospital desk); show a registration.
    #[command(subcommand)]
    Patient(registry::PatientCommand),
    /// Consent: grant, revoke, request, approve, decline, deny rules, delegates.
    #[command(subcommand)]
    Consent(consent::ConsentCommand),
    /// The audit trail of a patient's records; counts for the regulator.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Encrypted records: add, get (audited), list, history, transfer, approve, share, erase.
    #[command(subcommand)]
    Record(record::RecordCommand),
    /// Emergency access: the profile and card code, break-glass, escrow releases, reviews.
    #[command(subcommand)]
    Emergency(emergency::EmergencyCommand),
    /// Case-wise treatment logs: open, append, seal, share, list, show, export, verify.
    #[command(subcommand)]
    Case(case::CaseCommand),
    /// Medical devices: register, list, retire, measurement sessions, thresholds, readings,
    /// and a simulator that streams readings.
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Your whole record as a FHIR R4 Bundle (patient): registration, records (with
    /// `--content`, decrypted: audited reads), who wrote them, consent, cases, audit trail.
    Export(export::Args),
    /// Research: a member of a researcher organisation exports, de-identified (HIPAA Safe
    /// Harbor) and encrypted to its key, the patients whose research grant is in force; opens
    /// such an export.
    #[command(subcommand)]
    Research(research::ResearchCommand),
    /// Print the events concerning your account as they arrive; resumes where it left off.
    Watch(watch::Args),
    /// A local web UI for your wallet (loopback only): records, access log, consent, live
    /// notifications. Keys and plaintext stay in this process.
    Portal(portal::Args),
    /// Nodes: create this node's key (init); admit, suspend, reinstate, remove (regulator);
    /// list the network's nodes.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Keys: rotate your own; revoke one you have authority over.
    #[command(subcommand)]
    Key(registry::KeyCommand),
    /// The Raft cluster: members, roles, leader, each member's progress.
    #[command(subcommand)]
    Cluster(cluster::Command),
    /// The vault's replicas across the network: status (under-replicated blobs) and repair.
    #[command(subcommand)]
    Vault(vault::Command),
    /// The consortium's nodes as this wallet sees them: check that every node serves one
    /// history (a split view names the nodes, with their signed checkpoints).
    #[command(subcommand)]
    Network(network::Command),
    /// Load generators against a running node: `tx` (the default: a mixed registry and
    /// consent workload, tx/s and commit latency), `records`, `cases`, `devices`.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEDLEDGER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    medledger_tls::install_default_provider();
    let cli = Cli::parse_from(bench::default_to_tx(std::env::args_os().collect()));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(args).await,
            Command::Verify { data_dir, json } => verify::run(&data_dir, json),
            Command::Proof(args) => proof::run(args).await,
            Command::Wallet(c) => wallet::run(c).await,
            Command::Hospital(c) => registry::hospital(c).await,
            Command::Doctor(c) => registry::doctor(c).await,
            Command::Patient(c) => registry::patient(c).await,
            Command::Organisation(c) => organisation::run(c).await,
            Command::Key(c) => registry::key(c).await,
            Command::Node(c) => node::run(c).await,
            Command::Consent(c) => consent::run(c).await,
            Command::Audit(c) => audit::run(c).await,
            Command::Record(c) => record::run(c).await,
            Command::Emergency(c) => emergency::run(c).await,
            Command::Case(c) => case::run(c).await,
            Command::Device(c) => device::run(c).await,
            Command::Export(args) => export::run(args).await,
            Command::Research(c) => research::run(c).await,
            Command::Watch(args) => watch::run(args).await,
            Command::Portal(args) => portal::run(args).await,
            Command::Cluster(c) => cluster::run(c).await,
            Command::Vault(c) => vault::run(c).await,
            Command::Network(c) => network::run(c).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Commands whose output a script's next step needs: each takes `--json`.
    const CREATING: &[&str] = &[
        "wallet create",
        "wallet show",
        "hospital admit",
        "doctor onboard",
        "organisation admit",
        "organisation member add",
        "patient register",
        "consent grant",
        "consent request",
        "record add",
        "case open",
        "device register",
        "device session start",
        "emergency break-glass",
        "node init",
        "node admit",
        "node suspend",
        "node reinstate",
        "node remove",
    ];

    /// Listings whose name is not `list` and whose help does not start with "List".
    const OTHER_LISTINGS: &[&str] =
        &["consent who-can-see", "consent grants", "audit trail", "audit counts", "record history"];

    /// Clap's own consistency checks (unique argument and group names, valid defaults) over every
    /// command: a mistake there is otherwise a panic the first time someone runs the command.
    #[test]
    fn every_command_passes_clap_s_consistency_checks() {
        super::Cli::command().debug_assert();
    }

    /// `up` refuses, before anything starts, a snapshot interval of zero and a regulator
    /// wallet location for a node that joins (only a first run that creates a network writes
    /// one).
    #[test]
    fn up_refuses_a_zero_snapshot_interval_and_a_wallet_out_with_join() {
        use clap::Parser;
        let parse = |args: &[&str]| super::Cli::try_parse_from(args);
        assert!(parse(&["medledger", "up", "--snapshot-every", "1"]).is_ok());
        assert!(parse(&["medledger", "up", "--snapshot-every", "0"]).is_err());
        assert!(parse(&["medledger", "up", "--wallet-out", "w.json"]).is_ok());
        assert!(
            parse(&[
                "medledger",
                "up",
                "--join",
                "http://127.0.0.1:7300",
                "--wallet-out",
                "w.json"
            ])
            .is_err()
        );
    }

    /// Every leaf command as its path ("device session list") and its definition.
    fn leaves(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            let path = format!("{prefix}{}", sub.get_name()).trim().to_owned();
            if sub.has_subcommands() {
                leaves(sub, &format!("{path} "), out);
            } else {
                out.push((path, sub.clone()));
            }
        }
    }

    fn is_listing(path: &str, cmd: &clap::Command) -> bool {
        cmd.get_name() == "list"
            || cmd.get_about().is_some_and(|a| a.to_string().starts_with("List"))
            || OTHER_LISTINGS.contains(&path)
    }

    fn takes_json(cmd: &clap::Command) -> bool {
        cmd.get_arguments().any(|a| a.get_long() == Some("json") && !a.get_action().takes_values())
    }

    #[test]
    fn every_listing_and_every_creating_command_takes_json() {
        let mut all = Vec::new();
        leaves(&super::Cli::command(), "", &mut all);
        let listings: Vec<_> = all.iter().filter(|(p, c)| is_listing(p, c)).collect();
        assert!(listings.len() >= 12, "listings found: {:?}", listings.iter().map(|l| &l.0));
        for (path, cmd) in listings {
            assert!(takes_json(cmd), "the listing `medledger {path}` takes no --json");
        }
        for path in CREATING {
            let (_, cmd) = all
                .iter()
                .find(|(p, _)| p == path)
                .unwrap_or_else(|| panic!("no command `medledger {path}`"));
            assert!(takes_json(cmd), "`medledger {path}` takes no --json");
        }
    }
}
