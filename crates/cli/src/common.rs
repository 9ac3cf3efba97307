//! What every wallet command shares: the wallet file and its passphrase, the node client, and
//! submitting a transaction with the next nonce.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use medledger_client::{
    ClientError, Signer,
    http::NodeClient,
    keystore::{Identity, Wallet},
};
use medledger_core::block::{Outcome, Receipt};
use medledger_core::tx::records::VisitDate;
use medledger_core::tx::{SignedTransaction, TxBody};

/// Environment variable holding the wallet passphrase, for scripts.
pub const PASSPHRASE_ENV: &str = "MEDLEDGER_PASSPHRASE";

/// Options of every command that acts as a wallet.
#[derive(Debug, Args, Clone)]
pub struct WalletArgs {
    /// The wallet file.
    #[arg(long, env = "MEDLEDGER_WALLET")]
    pub wallet: PathBuf,
    /// The node to talk to (defaults to the one recorded in the wallet, then
    /// http://127.0.0.1:7300).
    #[arg(long, env = "MEDLEDGER_NODE")]
    pub node: Option<String>,
}

/// The node URL to use: the flag, the wallet's, or the default.
pub fn node_url(flag: Option<&str>, wallet: Option<&Wallet>) -> String {
    flag.map(str::to_owned)
        .or_else(|| wallet.and_then(|w| w.node_url.clone()))
        .unwrap_or_else(|| "http://127.0.0.1:7300".to_owned())
}

/// Reads the passphrase from the environment or a prompt.
pub fn passphrase(prompt: &str, confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(p);
    }
    let p = rpassword::prompt_password(prompt)
        .with_context(|| format!("no terminal to ask for a passphrase: set {PASSPHRASE_ENV}"))?;
    if confirm {
        let again = rpassword::prompt_password("Repeat the passphrase: ")?;
        if again != p {
            bail!("the passphrases differ");
        }
    }
    Ok(p)
}

/// An unlocked wallet and a client for its node.
pub struct Session {
    pub path: PathBuf,
    pub wallet: Wallet,
    pub identity: Identity,
    pub client: NodeClient,
    pub chain_id: String,
}

impl Session {
    /// Loads and unlocks the wallet, connects to the node, and pins the node's genesis key on
    /// first contact (trust on first use, recorded in the wallet).
    pub async fn open(args: &WalletArgs) -> Result<Self> {
        let mut wallet = load_wallet(&args.wallet)?;
        let identity = wallet
            .unlock(&passphrase(&format!("Passphrase for {}: ", args.wallet.display()), false)?)
            .context("cannot unlock the wallet")?;
        let url = node_url(args.node.as_deref(), Some(&wallet));
        let client = NodeClient::new(&url)?
            .signed_by(Signer::new(identity.signing.clone(), wallet.account()));
        let genesis = client.genesis().await?;
        match (&wallet.chain_id, &wallet.trusted_node_key) {
            (Some(chain), _) if *chain != genesis.chain_id => bail!(
                "the node at {url} serves chain {:?}, but this wallet belongs to {chain:?}",
                genesis.chain_id
            ),
            (_, Some(key)) if *key != genesis.node_key => {
                bail!(
                    "the node at {url} has genesis node key {}, but this wallet trusts {key}",
                    genesis.node_key
                )
            }
            (None, _) | (_, None) => {
                wallet.chain_id = Some(genesis.chain_id.clone());
                wallet.trusted_node_key = Some(genesis.node_key);
                wallet.node_url.get_or_insert(url);
                wallet.save(&args.wallet)?;
            }
            _ => {}
        }
        Ok(Session {
            path: args.wallet.clone(),
            chain_id: genesis.chain_id,
            wallet,
            identity,
            client,
        })
    }

    /// Signs `body` with this wallet's next nonce, without submitting it.
    pub async fn build(&self, body: TxBody) -> Result<SignedTransaction> {
        let account = self.wallet.account();
        let current = self
            .client
            .account(&account)
            .await?
            .with_context(|| format!("account {account} is not on the ledger yet"))?;
        Ok(medledger_client::tx::build(
            &self.identity,
            account,
            &self.chain_id,
            current.nonce + 1,
            body,
        ))
    }

    /// Signs `body` with the next nonce and submits it; returns the receipt of an applied
    /// transaction, or a clear error for a refused one.
    pub async fn submit(&self, body: TxBody) -> Result<Receipt> {
        let tx = self.build(body).await?;
        match self.client.submit(&tx).await {
            Ok(receipt) => Ok(receipt),
            Err(ClientError::Refused {
                message,
                outcome: Some(Outcome::Refused { reason }),
                ..
            }) => {
                bail!("the ledger refused the transaction: {reason} ({message})")
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Loads a wallet with a helpful error.
pub fn load_wallet(path: &Path) -> Result<Wallet> {
    Wallet::load(path).with_context(|| format!("cannot read the wallet {}", path.display()))
}

/// Parses a date given on the command line: an ISO 8601 calendar date `YYYY-MM-DD` that exists
/// and is not in the future by this machine's clock (a date that is already today somewhere,
/// up to UTC+14, counts as today). Dates of birth are sealed, so only the wallet can check
/// them; the ledger checks visit dates again against block time.
pub fn parse_past_date(s: &str) -> Result<VisitDate, String> {
    let date: VisitDate = s.parse()?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if date.is_after(now_ms) {
        return Err(format!("{s} is in the future"));
    }
    Ok(date)
}

/// Prints `value` as pretty JSON.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The civil (proleptic Gregorian) date of a day counted from 1970-01-01, as (year, month,
/// day): Howard Hinnant's algorithm.
pub fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// A block time (milliseconds since the Unix epoch) as `YYYY-MM-DD HH:MM UTC`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (year, month, day) = civil_date((secs / 86_400) as i64);
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02} UTC")
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_block_times() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(
            super::utc(1_611_619_200_000 + 3_600_000 * 13 + 60_000 * 5),
            "2021-01-26 13:05 UTC"
        );
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00 UTC");
    }
}
