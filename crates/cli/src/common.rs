//! What every wallet command shares: the wallet file and its passphrase, the node client, and
//! submitting a transaction with the next nonce.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use medledger_client::{
    ClientError, HttpError, Signer,
    http::NodeClient,
    keystore::{Identity, Wallet},
    proof::TrustAnchor,
};
use medledger_core::block::{Outcome, Receipt};
use medledger_core::tx::records::VisitDate;
use medledger_core::tx::{SignedTransaction, TxBody};
use medledger_core::{ids::AccountId, keys::EncryptionKey};

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

/// The node URL to use: the flag, the unlocked wallet's, or the default.
pub fn node_url(flag: Option<&str>, wallet: Option<&Wallet>) -> String {
    flag.map(str::to_owned)
        .or_else(|| wallet.and_then(|w| w.state().ok()?.node_url.clone()))
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
    /// The pinned network and node key (authenticated under the passphrase).
    pub anchor: TrustAnchor,
    /// The network's genesis, as the node served it when the session opened and checked
    /// against the pinned hash: whose regulator keys are the ledger's.
    pub genesis: medledger_core::block::Genesis,
    /// The node keys this session accepts over TLS: the genesis node's, and each node's whose
    /// admission it has proved ([`medledger_client::pinning`]).
    pub pins: std::sync::Arc<medledger_tls::Pins>,
    /// Set when the session may sign no more (the portal locked): [`Session::build`] refuses.
    pub revoked: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Loads and unlocks a wallet (asking for its passphrase): refuses a tampered file before
/// anything in it is used.
pub fn unlock_wallet(path: &Path) -> Result<(Wallet, Identity)> {
    let mut wallet = load_wallet(path)?;
    let identity = wallet
        .unlock(&passphrase(&format!("Passphrase for {}: ", path.display()), false)?)
        .with_context(|| format!("cannot unlock the wallet {}", path.display()))?;
    Ok((wallet, identity))
}

/// The unlocked wallet's pin, or an error that says how to pin.
pub fn pinned(wallet: &Wallet, path: &Path) -> Result<TrustAnchor> {
    if let Some(anchor) = wallet.state()?.trust_anchor() {
        return Ok(anchor);
    }
    let how = format!(
        "check the network's node key out of band (`node_key` in the node's genesis.json, \
         printed by `medledger up`) and run: medledger wallet pin --wallet {} --node <URL> \
         --node-key <KEY>",
        path.display()
    );
    if wallet.dropped_legacy_state() {
        bail!(
            "the wallet {} was written by an older medledger that did not authenticate its node \
             pin (node URL, chain id, node key, last checkpoint), so the pin was not carried \
             over: {how}",
            path.display()
        )
    }
    bail!("the wallet {} trusts no node yet: {how}", path.display())
}

impl Session {
    /// Loads and unlocks the wallet (a tampered file is refused before any network use), and
    /// connects to the node, which must serve the genesis this wallet is pinned to. A wallet
    /// with no pin is refused: pinning is an explicit act (`medledger wallet pin`, or
    /// `wallet create --node`), never a side effect.
    pub async fn open(args: &WalletArgs) -> Result<Self> {
        let (wallet, identity) = unlock_wallet(&args.wallet)?;
        Self::connect(args, wallet, identity).await
    }

    /// As [`Session::open`], with the passphrase given (the portal's unlock form).
    /// The key derivation runs off the async workers.
    pub async fn open_with(args: &WalletArgs, passphrase: &str) -> Result<Self> {
        let path = args.wallet.clone();
        let mut passphrase = zeroize::Zeroizing::new(passphrase.to_owned());
        let (wallet, identity) = tokio::task::spawn_blocking(move || {
            let mut wallet = load_wallet(&path)?;
            let identity = wallet
                .unlock(&passphrase)
                .with_context(|| format!("cannot unlock the wallet {}", path.display()));
            zeroize::Zeroize::zeroize(&mut *passphrase);
            anyhow::Ok((wallet, identity?))
        })
        .await
        .context("the wallet's key derivation failed")??;
        Self::connect(args, wallet, identity).await
    }

    async fn connect(args: &WalletArgs, wallet: Wallet, identity: Identity) -> Result<Self> {
        let anchor = pinned(&wallet, &args.wallet)?;
        let url = node_url(args.node.as_deref(), Some(&wallet));
        let pins = medledger_client::pinning::pins_of(&anchor);
        let client = medledger_client::pinning::connect(&url, &anchor, &pins)
            .await?
            .signed_by(Signer::new(identity.signing.clone(), wallet.account()));
        let genesis = client.genesis().await?;
        if genesis.chain_id != anchor.chain_id {
            bail!(
                "the node at {url} serves chain {:?}, but this wallet belongs to {:?}",
                genesis.chain_id,
                anchor.chain_id
            );
        }
        if genesis.node_key != anchor.node_key {
            bail!(
                "the node at {url} has genesis node key {}, but this wallet trusts {}",
                genesis.node_key,
                anchor.node_key
            );
        }
        if genesis.hash() != anchor.genesis {
            bail!(
                "the node at {url} serves genesis {}, but this wallet is pinned to genesis {}",
                genesis.hash(),
                anchor.genesis
            );
        }
        Ok(Session {
            path: args.wallet.clone(),
            chain_id: genesis.chain_id.clone(),
            wallet,
            identity,
            client,
            anchor,
            genesis,
            pins,
            revoked: Default::default(),
        })
    }

    /// The encryption key of `account`, proven against the ledger under this wallet's pin:
    /// the only key anything may be wrapped or sealed to.
    pub async fn encryption_key_of(&self, account: &AccountId) -> Result<EncryptionKey> {
        if *account == self.wallet.account() {
            return Ok(self.identity.decryption.public_key());
        }
        self.client
            .proven_encryption_key(account, &self.anchor)
            .await?
            .with_context(|| format!("account {account} is not on the ledger"))
    }

    /// Signs `body` with this wallet's next nonce, without submitting it.
    pub async fn build(&self, body: TxBody) -> Result<SignedTransaction> {
        if self.revoked.load(std::sync::atomic::Ordering::SeqCst) {
            bail!("the wallet was locked: nothing more is signed until it is unlocked again");
        }
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
            current.nonce.context("the node did not tell this account its nonce")? + 1,
            body,
        ))
    }

    /// Signs `body` with the next nonce, simulates it against committed state and submits it
    /// if it would apply; returns the receipt of an applied transaction, or a clear error for
    /// a refused one. A transaction the ledger would refuse is reported with the ledger's exact
    /// refusal and never sent, so no refusal of a wallet's lands in the append-only log unless
    /// the state changed between the simulation and the next block. (The load generators and
    /// the device gateway submit without simulating: the round trip would halve their rate.)
    pub async fn submit(&self, body: TxBody) -> Result<Receipt> {
        let tx = self.build(body).await?;
        // What a node does not simulate (a decision of `authorize` no trail would record) is
        // submitted as it is.
        let simulated = if tx.tx.body.is_simulated() {
            self.client.simulate(&tx).await.map(|_| ())
        } else {
            Ok(())
        };
        match simulated {
            Ok(_) => {}
            Err(ClientError::Http(HttpError::Refused {
                message,
                outcome: Some(Outcome::Refused { reason }),
                ..
            })) => {
                bail!(
                    "the ledger would refuse the transaction: {reason} ({message}); nothing was submitted"
                )
            }
            Err(e) => return Err(e.into()),
        }
        // The other nodes, asked before submitting (the node may not answer afterwards).
        let others = self.other_nodes().await;
        match self.client.submit(&tx).await {
            // Sent again by the client (a follower's `not_yet`) after it was applied.
            Err(e) if is_duplicate(&e) => self.proven_receipt(&self.client, &tx).await,
            Err(e) if not_included(&e) => self.resubmit(&tx, e, others).await,
            other => receipt_of(other),
        }
    }

    /// Transaction `hash` and its receipt, fetched with its inclusion proof and verified under
    /// a checkpoint of a node whose admission is proven: what the transaction says is then
    /// the ledger's, not the node's word. Refused unless the node proves that very
    /// transaction and reports it applied.
    pub(crate) async fn proven_transaction(
        &self,
        hash: &medledger_core::Hash,
    ) -> Result<(SignedTransaction, Receipt)> {
        let resp = self.client.transaction(hash).await?;
        let signer =
            self.client.trusted_signer(&resp.checkpoint, &self.anchor, &self.genesis).await?;
        // Proven included under that checkpoint, validly signed, for this chain, that very
        // transaction, and reported applied.
        let tx = medledger_client::proof::applied_transaction(&resp, hash, &self.anchor, &signer)
            .map_err(|reason| {
            anyhow::anyhow!("its inclusion proof does NOT verify: {reason}")
        })?;
        if resp.receipt.tx_hash != *hash {
            bail!("the node at {} proved another transaction than {hash}", self.client.base_url());
        }
        Ok((tx, resp.receipt))
    }

    /// The receipt of `tx`, which `client`'s node says is in the ledger: fetched with its
    /// inclusion proof and verified under a checkpoint of a node whose admission is proven,
    /// so that no node can make this wallet believe a transaction was included. (The receipt's
    /// outcome is not in the Merkle log: inclusion is what is proven.) A node that has not
    /// applied it yet is waited for a little.
    async fn proven_receipt(&self, client: &NodeClient, tx: &SignedTransaction) -> Result<Receipt> {
        let hash = tx.hash();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let resp = loop {
            match client.transaction(&hash).await {
                Ok(resp) => break resp,
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, %hash, "the transaction's proof is not served yet");
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e).context(format!(
                        "the node at {} says transaction {hash} is in the ledger but serves no \
                         proof of it",
                        client.base_url()
                    )));
                }
            }
        };
        let signer = client.trusted_signer(&resp.checkpoint, &self.anchor, &self.genesis).await?;
        let proven = medledger_client::proof::verify_tx_proof(&resp, &signer)
            .context("the inclusion proof does NOT verify")?;
        if proven.hash() != hash || resp.receipt.tx_hash != hash {
            bail!("the node at {} proved another transaction than {hash}", client.base_url());
        }
        Ok(resp.receipt)
    }

    /// The base URLs of the other active nodes the ledger lists (the genesis node has none
    /// there; it is found through Raft's members), if this node says.
    async fn other_nodes(&self) -> Vec<(u64, String)> {
        let Ok(nodes) = self.client.nodes().await else { return Vec::new() };
        if nodes.len() < 2 {
            return Vec::new();
        }
        let mut urls: Vec<(u64, String)> = nodes
            .into_iter()
            .filter(|n| n.status == medledger_api::NodeView::ACTIVE)
            .map(|n| (n.id, n.address))
            .collect();
        if urls.iter().any(|(_, a)| a.is_empty())
            && let Ok(http) = crate::cluster::http()
            && let Ok(view) = crate::cluster::get_json::<medledger_api::ClusterView>(
                &http,
                self.client.base_url(),
                medledger_api::paths::CLUSTER,
            )
            .await
        {
            for (id, address) in urls.iter_mut().filter(|(_, a)| a.is_empty()) {
                if let Some(m) = view.members.iter().find(|m| m.id == *id) {
                    *address = m.url.clone();
                }
            }
        }
        let home = self.client.base_url().trim_end_matches('/').to_owned();
        urls.retain(|(_, a)| !a.is_empty() && a.trim_end_matches('/') != home);
        urls
    }

    /// The node did not include `tx` (`first`: why): reports it and submits the same signed
    /// transaction through each other node in turn until one includes it. Sent twice, one
    /// transaction is still applied once: the ledger refuses a repeat of the same bytes, and a
    /// node answers a committed one with its receipt.
    async fn resubmit(
        &self,
        tx: &SignedTransaction,
        first: ClientError,
        others: Vec<(u64, String)>,
    ) -> Result<Receipt> {
        let hash = tx.hash();
        eprintln!(
            "warning: the node at {} did not confirm transaction {hash}: {first}",
            self.client.base_url()
        );
        if others.is_empty() {
            bail!(
                "transaction {hash} was not confirmed by the node at {}, and this wallet knows no \
                 other node to send it through ({first}); it may still be included: look it up \
                 with `medledger proof {hash}` before sending it again",
                self.client.base_url()
            );
        }
        let signer = Signer::new(self.identity.signing.clone(), self.wallet.account());
        let mut failures = vec![format!("{}: {first}", self.client.base_url())];
        for (id, url) in others {
            eprintln!("resubmitting transaction {hash} through node {id} at {url}");
            let reached =
                match medledger_client::pinning::same_transport(self.client.base_url(), &url) {
                    Ok(()) => {
                        medledger_client::pinning::connect(&url, &self.anchor, &self.pins).await
                    }
                    Err(e) => Err(e),
                };
            let client = match reached {
                Ok(client) => client.signed_by(signer.clone()),
                Err(e) => {
                    failures.push(format!("node {id} at {url}: {e}"));
                    continue;
                }
            };
            // Applied through this node, or before (the first node did include it after all):
            // either way the receipt is taken only with its proof.
            match client.submit(tx).await {
                Err(e) if not_included(&e) => failures.push(format!("node {id} at {url}: {e}")),
                Ok(_) => {
                    let receipt = self.proven_receipt(&client, tx).await?;
                    eprintln!("transaction {hash} included through node {id} at {url}");
                    return Ok(receipt);
                }
                Err(e) if is_duplicate(&e) => {
                    let receipt = self.proven_receipt(&client, tx).await?;
                    eprintln!("transaction {hash} was included already (proven by node {id})");
                    return Ok(receipt);
                }
                other => return receipt_of(other),
            }
        }
        bail!(
            "transaction {hash} was included by no node ({}); it may still be included: look it \
             up with `medledger proof {hash}` before sending it again",
            failures.join("; ")
        )
    }
}

/// Whether a submission's error means the node did not confirm the transaction, and another
/// node might: no answer, no quorum, its block not applied in time, or a node too busy,
/// stopping or not ordering.
fn not_included(e: &ClientError) -> bool {
    use medledger_api::ErrorCode;
    match e {
        ClientError::Http(HttpError::Unreachable { .. }) => true,
        ClientError::Http(HttpError::Refused { code, .. }) => matches!(
            code,
            ErrorCode::NoQuorum
                | ErrorCode::NotYet
                | ErrorCode::Busy
                | ErrorCode::ShuttingDown
                | ErrorCode::NotOrdered
        ),
        _ => false,
    }
}

/// Whether the ledger refused the transaction as one it applied before: the same signed
/// bytes, sent again (the wallet builds each transaction with a fresh nonce, so only a resend
/// of this one can be a duplicate).
fn is_duplicate(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Http(HttpError::Refused {
            outcome: Some(Outcome::Refused {
                reason: medledger_core::block::Refusal::Duplicate { .. }
            }),
            ..
        })
    )
}

/// A submission's answer: the receipt, or the ledger's refusal as a clear error.
fn receipt_of(answer: Result<Receipt, ClientError>) -> Result<Receipt> {
    match answer {
        Ok(receipt) => Ok(receipt),
        Err(ClientError::Http(HttpError::Refused {
            message,
            outcome: Some(Outcome::Refused { reason }),
            ..
        })) => {
            bail!("the ledger refused the transaction: {reason} ({message})")
        }
        Err(e) => Err(e.into()),
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

/// Prints what a command created as JSON: `tx_hash`, `height` and `log_index` of its receipt,
/// and the created ids (`ids`, a JSON object) as top-level fields, for the next step of a
/// script to read.
pub fn print_created(receipt: &Receipt, ids: serde_json::Value) -> Result<()> {
    let mut out = serde_json::json!({
        "tx_hash": receipt.tx_hash,
        "height": receipt.height,
        "log_index": receipt.log_index,
    });
    if let (Some(out), serde_json::Value::Object(ids)) = (out.as_object_mut(), ids) {
        out.extend(ids);
    }
    print_json(&out)
}

/// Prints `value` as pretty JSON.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A block time (milliseconds since the Unix epoch) in this machine's time zone (`TZ`, else
/// the system's), with its offset: `2021-01-26 18:35 +05:30`.
pub fn local_time(ms: u64) -> String {
    time_in(ms, &chrono::Local)
}

fn time_in<Tz: chrono::TimeZone>(ms: u64, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    match i64::try_from(ms).ok().and_then(|ms| tz.timestamp_millis_opt(ms).single()) {
        Some(t) => t.format("%Y-%m-%d %H:%M %:z").to_string(),
        None => format!("{ms} ms after 1970"),
    }
}

/// An enum value as the words its JSON name spells (`lab_report` -> `lab report`), for text
/// meant for people: never Rust's Debug form.
pub fn words<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s.replace('_', " "),
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// A role in one word, for people.
pub fn role_word(role: &medledger_core::tx::Role) -> &'static str {
    use medledger_core::tx::Role;
    match role {
        Role::Regulator => "regulator",
        Role::Hospital => "hospital",
        Role::Doctor => "doctor",
        Role::Patient => "patient",
        Role::Organisation(_) => "organisation",
        Role::Device => "device",
        Role::Member => "organisation member",
    }
}

/// What the wallet can tell about the accounts and sealed texts in events: the names it can
/// put beside account ids (the public directory of hospitals and doctors, and the wallet's
/// own name; patients' names are sealed, so only their own wallet knows them), and the key
/// that opens break-glass reasons and review findings sealed to it.
#[derive(Clone, Debug, Default)]
pub struct Names {
    names: std::collections::HashMap<AccountId, String>,
    key: Option<medledger_core::keys::DecryptionKey>,
}

impl Names {
    /// Reads the directory from the node (an unreadable directory leaves ids bare).
    pub async fn load(s: &Session) -> Self {
        let hospitals = s.client.hospitals().await.unwrap_or_default();
        let doctors = s.client.doctors(None).await.unwrap_or_default();
        Self::of_directory(s, &hospitals, &doctors)
    }

    /// As [`Names::load`], from a directory already read.
    pub fn of_directory(
        s: &Session,
        hospitals: &[medledger_api::HospitalView],
        doctors: &[medledger_api::DoctorView],
    ) -> Self {
        let mut names = std::collections::HashMap::new();
        names.extend(hospitals.iter().map(|h| (h.account, h.name.clone())));
        names.extend(doctors.iter().map(|d| (d.account, d.name.clone())));
        names.insert(s.wallet.account(), format!("{}, you", s.wallet.name()));
        Self { names, key: Some(s.identity.decryption.clone()) }
    }

    /// A name for `account`, if known.
    pub fn name(&self, account: &AccountId) -> Option<&str> {
        self.names.get(account).map(String::as_str)
    }

    /// `account (Name)` where the name is known, else the id alone.
    pub fn of(&self, account: &AccountId) -> String {
        match self.name(account) {
            Some(name) => format!("{account} ({name})"),
            None => account.to_string(),
        }
    }

    /// A sealed break-glass reason or review finding, opened if it was sealed to this
    /// wallet, quoted.
    pub fn open(&self, sealed: &[u8]) -> String {
        match self.key.as_ref().map(|k| medledger_client::emergency::open_text(sealed, k)) {
            Some(Ok(text)) => format!("{text:?}"),
            _ => "(sealed; not for this wallet)".into(),
        }
    }

    /// Records a name learned elsewhere.
    #[cfg(test)]
    pub fn insert(&mut self, account: AccountId, name: &str) {
        self.names.insert(account, name.to_owned());
    }
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn block_times_are_shown_in_the_local_zone_with_its_offset() {
        let kolkata = chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
        assert_eq!(super::time_in(0, &kolkata), "1970-01-01 05:30 +05:30");
        assert_eq!(
            super::time_in(1_611_619_200_000 + 3_600_000 * 13 + 60_000 * 5, &chrono::Utc),
            "2021-01-26 13:05 +00:00"
        );
        let new_york = chrono::FixedOffset::west_opt(5 * 3600).unwrap();
        assert_eq!(super::time_in(951_782_400_000, &new_york), "2000-02-28 19:00 -05:00");
    }

    #[test]
    fn words_are_the_json_names_not_debug() {
        use medledger_core::tx::consent::RecordCategory;
        assert_eq!(super::words(&RecordCategory::LabReport), "lab report");
    }
}
