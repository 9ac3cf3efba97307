//! `medledger bench <tx|records|cases|devices>`: the load generators, each driving a running
//! node with the regulator's wallet over one shared set-up ([`setup`]): `tx` (a mixed
//! registry and consent workload: committed tx/s and commit latency), `records` (encrypted
//! upload and audited reads), `cases` (a long case, its export and offline verification) and
//! `devices` (device ingestion through the gateway). `medledger bench --wallet ... --txs ...`
//! without a subcommand is `bench tx`.

mod cases;
mod devices;
mod records;
pub(crate) mod setup;
mod tx;

use anyhow::Result;
use clap::{Args as ClapArgs, Subcommand};

/// Options of `medledger bench`: a subcommand, or `bench tx`'s options.
#[derive(Debug, ClapArgs)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// Without a subcommand: the options of `bench tx`.
    #[command(flatten)]
    tx: tx::Args,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Drive a running node with a pre-signed mixed registry workload and report tx/s and
    /// commit latency (the default).
    Tx(tx::Args),
    /// Measure a running node's record paths: encrypt + upload and audited read of a large
    /// file, audited reads of a small record by concurrent readers, peak memory.
    Records(records::Args),
    /// Build a case of many entries on a running node, then measure its export and the
    /// offline `case verify` of it.
    Cases(cases::Args),
    /// Drive a running node with many simulated devices and measure ingestion: readings
    /// committed per second, alert latency, and when alerts reach the event streams.
    Devices(devices::Args),
}

pub async fn run(args: Args) -> Result<()> {
    match args.command {
        None => tx::run(args.tx).await,
        Some(BenchCommand::Tx(a)) => tx::run(a).await,
        Some(BenchCommand::Records(a)) => records::run(a).await,
        Some(BenchCommand::Cases(a)) => cases::run(a).await,
        Some(BenchCommand::Devices(a)) => devices::run(a).await,
    }
}
