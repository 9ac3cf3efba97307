//! `medledger bench <tx|records|cases|devices>`: the load generators, each driving a running
//! node with the regulator's wallet over one shared set-up ([`setup`]): `tx` (a mixed
//! registry and consent workload: committed tx/s and commit latency), `records` (encrypted
//! upload and audited reads), `cases` (a long case, its export and offline verification) and
//! `devices` (device ingestion through the gateway) and `research` (the research export of
//! many consented patients). `medledger bench --wallet ... --txs ...`
//! without a subcommand is `bench tx`.

mod cases;
mod devices;
mod records;
mod research;
pub(crate) mod setup;
mod tx;

use anyhow::Result;
use clap::{Args as ClapArgs, Subcommand};

/// Options of `medledger bench`: one load generator.
#[derive(Debug, ClapArgs)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

/// The load generators, as spelled after `bench`.
const SUBCOMMANDS: &[&str] = &["tx", "records", "cases", "devices", "research", "help"];

/// `medledger bench --wallet ...` (no subcommand) is `medledger bench tx --wallet ...`, as it
/// was before the other generators moved under `bench`: inserts `tx` after `bench` unless a
/// subcommand or a help flag follows. Clap has no default subcommand, and flattening `tx`'s
/// options into `bench` itself cannot be made optional (its wallet is a nested group).
pub fn default_to_tx(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let Some(at) = args.iter().position(|a| a == "bench") else { return args };
    // Only the `bench` command itself (the first non-option word), not a value named "bench".
    if args[1..at].iter().any(|a| !a.to_string_lossy().starts_with('-')) {
        return args;
    }
    let next = args.get(at + 1).map(|a| a.to_string_lossy().into_owned());
    let keep = match next.as_deref() {
        None => true,
        Some(word) => SUBCOMMANDS.contains(&word) || matches!(word, "-h" | "--help"),
    };
    if !keep {
        args.insert(at + 1, "tx".into());
    }
    args
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
    /// Set up many patients with a research grant to an organisation, then measure the
    /// member's research export (patients per second, without record content).
    Research(research::Args),
}

pub async fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        BenchCommand::Tx(a) => tx::run(a).await,
        BenchCommand::Records(a) => records::run(a).await,
        BenchCommand::Cases(a) => cases::run(a).await,
        BenchCommand::Devices(a) => devices::run(a).await,
        BenchCommand::Research(a) => research::run(a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::default_to_tx;

    fn words(s: &str) -> Vec<std::ffi::OsString> {
        s.split_whitespace().map(Into::into).collect()
    }

    #[test]
    fn bench_without_a_subcommand_is_bench_tx() {
        let cases = [
            ("medledger bench --wallet w --txs 5", "medledger bench tx --wallet w --txs 5"),
            ("medledger bench", "medledger bench"),
            ("medledger bench records --wallet w", "medledger bench records --wallet w"),
            ("medledger bench devices --devices 2", "medledger bench devices --devices 2"),
            ("medledger bench tx --wallet w", "medledger bench tx --wallet w"),
            ("medledger bench --help", "medledger bench --help"),
            ("medledger bench help records", "medledger bench help records"),
            // "bench" as a value of another command is left alone.
            (
                "medledger record add --title bench --file f",
                "medledger record add --title bench --file f",
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(default_to_tx(words(given)), words(expected), "{given}");
        }
    }
}
