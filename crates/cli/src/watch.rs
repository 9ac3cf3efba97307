//! `medledger watch`: print the events concerning your account as they arrive (accesses,
//! denials, grants, revocations, requests and their answers). Resumes where it left off: the
//! number of the last event printed is kept beside the wallet, and a dropped connection is
//! re-opened from it, so no event is missed or printed twice.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;

use crate::common::{Session, WalletArgs};

/// Options of `medledger watch`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    wallet: WalletArgs,
    /// Start after this event number (default: after the last one this wallet printed).
    #[arg(long)]
    after: Option<u64>,
    /// Start from the first event.
    #[arg(long, conflicts_with = "after")]
    from_start: bool,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
    /// Print each event as one JSON line.
    #[arg(long)]
    json: bool,
}

fn cursor_file(wallet: &std::path::Path) -> PathBuf {
    wallet.with_extension("events-cursor")
}

pub async fn run(args: Args) -> Result<()> {
    let s = Session::open(&args.wallet).await?;
    let me = s.wallet.account();
    let cursor_path = cursor_file(&s.path);
    let mut cursor = if args.from_start {
        None
    } else {
        args.after.or_else(|| {
            std::fs::read_to_string(&cursor_path).ok().and_then(|t| t.trim().parse().ok())
        })
    };
    let mut printed = 0u64;
    let names = if args.json {
        crate::common::Names::default()
    } else {
        crate::common::Names::load(&s).await
    };
    if !args.json {
        eprintln!("watching events for {me} (Ctrl-C to stop)");
    }
    loop {
        let result = s
            .client
            .watch(me, cursor, |e| {
                if args.json {
                    println!("{}", serde_json::to_string(&e).unwrap_or_default());
                } else {
                    println!("{}", crate::audit::line(&e, &names));
                }
                let _ = std::fs::write(&cursor_path, e.seq.to_string());
                printed += 1;
                args.count.is_none_or(|n| printed < n)
            })
            .await;
        match result {
            Ok(last) => {
                cursor = last.or(cursor);
                if args.count.is_some_and(|n| printed >= n) {
                    return Ok(());
                }
            }
            Err(medledger_client::ClientError::Http(
                medledger_client::error::HttpError::Refused { message, .. },
            )) => {
                return Err(anyhow::anyhow!(message)).context("the node refused the subscription");
            }
            Err(e) => {
                eprintln!("connection lost ({e}); reconnecting");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                cursor = std::fs::read_to_string(&cursor_path)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .or(cursor);
            }
        }
    }
}
