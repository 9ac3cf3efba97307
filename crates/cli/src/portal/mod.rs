//! `medledger portal`: a local web UI for a wallet, served by the user's own medledger
//! process on a loopback address, like a desktop wallet's UI.
//!
//! Signing, encryption and decryption happen here, with the same code as the CLI
//! ([`crate::common::Session`], [`crate::record`]); the browser only ever sees what its user
//! may see, rendered on the server (askama templates, escaped), plus one small script of the
//! portal's own for live notifications and upload progress. No key, passphrase or other
//! account's data is ever put in a page. The gate in front of every route is in [`guard`].

mod admin;
mod cases;
mod devices;
mod emergency;
mod guard;
mod organisations;
mod pages;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use axum::{Router, middleware};
use clap::Args as ClapArgs;
use medledger_core::{audit::AuditEvent, tx::registry::Role};
use tokio::sync::broadcast;

use crate::common::{Names, Session, WalletArgs};

/// `medledger portal`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    wallet: WalletArgs,
    /// Where to serve the portal: a loopback address only (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// Lock after this long without a request (the passphrase is needed again): seconds,
    /// minutes or hours, as `90s`, `15m` or `1h`.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    lock_after: Duration,
    /// Where to write the login address with its session token (readable only by you).
    /// Default: beside the wallet, `<wallet>.portal-<port>.token`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Print the addresses as JSON instead of text: one line with `url`, `login_url`,
    /// `token_file` and `pid` (to stop it with SIGTERM).
    #[arg(long)]
    json: bool,
}

/// The portal's shared state.
#[derive(Clone)]
pub struct Portal(Arc<Inner>);

impl std::ops::Deref for Portal {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// See [`Portal`].
pub struct Inner {
    wallet: WalletArgs,
    /// The session token (hex).
    token: String,
    /// The session cookie's name.
    cookie: String,
    /// The one `Host` this portal answers: a random name under `localhost` with the port.
    /// Browsers resolve every `*.localhost` name to the loopback address, and keep a cookie
    /// to the name it was set for: under `127.0.0.1` the session cookie would also be sent
    /// to every other server on any port of 127.0.0.1 (cookies do not tell ports apart).
    host: String,
    /// The origin of its pages (`http://` and the host).
    origin: String,
    /// Serialises unlocks (each runs the key derivation), and spaces out failed ones.
    unlocking: tokio::sync::Mutex<()>,
    lock_after: Duration,
    state: Mutex<LockState>,
    /// Events concerning the unlocked account, as they are applied.
    notices: broadcast::Sender<Notice>,
    /// Set when the portal stops: live streams end at once, so that stopping need not wait.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// What the portal holds while unlocked.
struct LockState {
    unlocked: Option<Arc<Unlocked>>,
    last_seen: Instant,
    /// The CSRF token of this unlock (a locked portal has one too, for its unlock form).
    csrf: String,
    /// Counts locks: an unlock that began before a lock does not take effect after it.
    generation: u64,
    /// No unlock is tried before this (a second after a failed one).
    next_attempt: Instant,
    /// What a form's answer shows on the page it redirects to, once (so that reloading that
    /// page does not send the form again), with that page's path.
    outcome: Option<(String, Outcome)>,
}

/// The result of a form, shown once by the page it redirects to (see [`Portal::done`]).
#[derive(Default)]
pub struct Outcome {
    pub text: String,
    /// A break-glass just declared: its id and the end of its window (ms).
    pub declared: Option<(String, u64)>,
    /// An emergency card just made: shown once, then gone (it is held nowhere else).
    pub card: Option<emergency::Card>,
}

/// An unlocked wallet and what the pages need of it.
pub struct Unlocked {
    pub session: Session,
    pub role: Role,
    pub names: Names,
    /// Who acts in the network's public directory: each doctor's and hospital's role and
    /// hospital, for the access log.
    pub directory:
        std::collections::HashMap<medledger_core::ids::AccountId, (&'static str, String)>,
    /// What the event stream has shown of break-glass (a doctor's or a hospital's stream
    /// starts at the beginning, so this is all of it).
    pub seen: Arc<Mutex<Seen>>,
    watcher: tokio::task::AbortHandle,
    /// Held while a request writes the wallet's checkpoint history: one at a time.
    history: tokio::sync::Mutex<()>,
}

/// Break-glass declarations in the account's event stream: those of a doctor, of a
/// hospital's doctors, and of patients whose emergency key a hospital holds a piece of.
#[derive(Default)]
pub struct Seen {
    /// Their ids, oldest first.
    pub break_glass: Vec<medledger_core::Hash>,
    /// Those this account (a custodian) released its escrow piece for.
    pub released: std::collections::HashSet<medledger_core::Hash>,
    /// Those found over (ended, or past their window): not asked about again.
    pub over: std::collections::HashSet<medledger_core::Hash>,
    /// Those on patients whose emergency key this account (a hospital) holds no piece of:
    /// not asked about again.
    pub not_ours: std::collections::HashSet<medledger_core::Hash>,
}

impl Unlocked {
    /// Checks `checkpoint`, signed by node `node_id` (whose admission the caller proved),
    /// against the newest checkpoint this wallet saw from every node, and records it in the
    /// wallet file, as the CLI's case reads do ([`crate::proof::extend_history`]): a node
    /// serving an older or forked history is named rather than shown as verified. The file is
    /// read again first (a CLI may have saved it since the unlock) and only through the key of
    /// this unlock.
    pub async fn extend_history(
        &self,
        checkpoint: medledger_core::block::SignedCheckpoint,
        node_id: u64,
    ) -> Result<()> {
        let _one = self.history.lock().await;
        let s = &self.session;
        let mut wallet = s.wallet.clone();
        wallet.reload_state(&s.path)?;
        crate::proof::extend_history(
            &mut wallet,
            &s.path,
            &s.client,
            checkpoint,
            node_id,
            &s.anchor,
        )
        .await?;
        Ok(())
    }

    fn seen_lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The break-glass ids seen so far that are not known to be over, newest first, and
    /// those this account released for.
    pub fn seen_open(
        &self,
    ) -> (Vec<medledger_core::Hash>, std::collections::HashSet<medledger_core::Hash>) {
        let seen = self.seen_lock();
        let open = seen
            .break_glass
            .iter()
            .rev()
            .filter(|id| !seen.over.contains(*id) && !seen.not_ours.contains(*id))
            .copied()
            .collect();
        (open, seen.released.clone())
    }

    /// The newest `n` break-glass ids seen, over or not.
    pub fn seen_newest(&self, n: usize) -> Vec<medledger_core::Hash> {
        self.seen_lock().break_glass.iter().rev().take(n).copied().collect()
    }

    /// Marks break-glass `id` over (it stays so), or released by this account.
    pub fn mark(&self, id: medledger_core::Hash, over: bool) {
        let mut seen = self.seen_lock();
        if over {
            seen.over.insert(id);
        } else {
            seen.released.insert(id);
        }
    }

    /// Marks break-glass `id` as on a patient this account holds no escrow piece for.
    pub fn not_ours(&self, id: medledger_core::Hash) {
        self.seen_lock().not_ours.insert(id);
    }
}

/// Whether `e` is the node's refusal with one of `statuses`.
pub fn refused_with(e: &medledger_client::ClientError, statuses: &[u16]) -> bool {
    matches!(
        e,
        medledger_client::ClientError::Http(medledger_client::HttpError::Refused { status, .. })
            if statuses.contains(status)
    )
}

impl Drop for Unlocked {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// A live notification: one event, in words.
#[derive(Clone, Debug)]
pub struct Notice {
    pub seq: u64,
    pub text: String,
    pub alarm: bool,
}

/// `90s`, `15m`, `1h` (at least a second, at most a day).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 =
        number.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 15m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" | "" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: the unit is s, m or h")),
    };
    if !(1..=86_400).contains(&secs) {
        return Err(format!("{s:?}: between 1 second and 24 hours"));
    }
    Ok(Duration::from_secs(secs))
}

fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(bytes))
}

impl Portal {
    fn new(wallet: WalletArgs, addr: SocketAddr, lock_after: Duration) -> Result<Self> {
        let port = addr.port();
        let name = &random_hex()?[..32];
        let host = format!("{name}.localhost:{port}");
        Ok(Portal(Arc::new(Inner {
            wallet,
            token: random_hex()?,
            cookie: guard::COOKIE.to_owned(),
            origin: format!("http://{host}"),
            host,
            unlocking: tokio::sync::Mutex::new(()),
            lock_after,
            state: Mutex::new(LockState {
                unlocked: None,
                last_seen: Instant::now(),
                csrf: random_hex()?,
                generation: 0,
                next_attempt: Instant::now(),
                outcome: None,
            }),
            notices: broadcast::channel(256).0,
            stopping: tokio::sync::watch::channel(false).0,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LockState> {
        self.0.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This session's CSRF token.
    pub fn csrf(&self) -> String {
        self.state().csrf.clone()
    }

    /// The unlocked wallet, if the portal is unlocked and has not been idle too long (then it
    /// is locked here). Does not count as activity.
    pub fn unlocked(&self) -> Option<Arc<Unlocked>> {
        let mut state = self.state();
        if state.unlocked.is_some() && state.last_seen.elapsed() > self.lock_after {
            Self::lock_state(&mut state);
        }
        state.unlocked.clone()
    }

    /// The answer to a form that was done (Post/Redirect/Get): a redirect (303 See Other) to
    /// `to`, a page's path with its query, which shows `outcome` once. Reloading that page
    /// then only reads it again: no form is sent twice (a second grant, a second
    /// registration, a second release). A refused form is answered with its page and the
    /// reason instead, as nothing was done.
    pub fn done(&self, to: &str, outcome: Outcome) -> axum::response::Response {
        use axum::response::IntoResponse;
        let path = to.split_once('?').map_or(to, |(path, _)| path);
        self.state().outcome = Some((path.to_owned(), outcome));
        axum::response::Redirect::to(to).into_response()
    }

    /// [`Portal::done`] with only a message.
    pub fn done_with(&self, to: &str, text: String) -> axum::response::Response {
        self.done(to, Outcome { text, ..Outcome::default() })
    }

    /// The outcome a form left for the page at `path`, once. Opening any other page first
    /// drops it: it belongs to the answer of that one form.
    pub fn take_outcome(&self, path: &str) -> Option<Outcome> {
        match self.state().outcome.take() {
            Some((page, outcome)) if page == path => Some(outcome),
            _ => None,
        }
    }

    /// Whether `u` is still the unlocked wallet: checked again right before a handler signs
    /// or decrypts, so that a request that began before a lock does not act after it.
    pub fn still(&self, u: &Arc<Unlocked>) -> bool {
        self.unlocked().is_some_and(|now| Arc::ptr_eq(&now, u))
    }

    /// A request: whether the portal is unlocked, and (`active`: a page the user opened,
    /// not the notification stream or a background fetch) the idle clock restarts.
    fn touch(&self, active: bool) -> bool {
        if self.unlocked().is_none() {
            return false;
        }
        if active {
            self.state().last_seen = Instant::now();
        }
        true
    }

    /// Unlocks with `passphrase`: the wallet is opened and its node checked as for any
    /// command; a new CSRF token is issued. One unlock at a time; a failed one holds the
    /// next back for a second (so a passphrase cannot be guessed at the key derivation's
    /// speed on every core). An unlock that a lock overtook takes no effect.
    pub async fn unlock(&self, passphrase: &str) -> Result<()> {
        let _one = self.unlocking.lock().await;
        let generation = {
            let state = self.state();
            if state.unlocked.is_some() {
                // A second submission of the form: the first one unlocked it.
                return Ok(());
            }
            if Instant::now() < state.next_attempt {
                bail!("too soon after a wrong passphrase: wait a second and try again");
            }
            state.generation
        };
        // The wait after a failure is kept in the state, not slept in this request: a client
        // that drops its request does not skip it.
        let session = match Session::open_with(&self.wallet, passphrase).await {
            Ok(session) => session,
            Err(e) => {
                self.state().next_attempt = Instant::now() + Duration::from_secs(1);
                return Err(e);
            }
        };
        let me = session.wallet.account();
        let role = session
            .client
            .account(&me)
            .await?
            .with_context(|| format!("account {me} is not on the ledger yet"))?
            .role;
        // The public directory, read once: names, and each doctor's hospital.
        let hospitals = session.client.hospitals().await.unwrap_or_default();
        let doctors = session.client.doctors(None).await.unwrap_or_default();
        let names = Names::of_directory(&session, &hospitals, &doctors);
        let mut directory = std::collections::HashMap::new();
        for h in &hospitals {
            directory.insert(h.account, ("hospital", h.name.clone()));
        }
        for d in &doctors {
            let hospital = hospitals
                .iter()
                .find(|h| h.account == d.hospital)
                .map_or_else(|| d.hospital.to_string(), |h| h.name.clone());
            directory.insert(d.account, ("doctor", hospital));
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let watcher = tokio::spawn(watch(
            session.client.clone(),
            me,
            names.clone(),
            self.notices.clone(),
            seen.clone(),
        ));
        let unlocked = Arc::new(Unlocked {
            session,
            role,
            names,
            directory,
            seen,
            watcher: watcher.abort_handle(),
            history: tokio::sync::Mutex::new(()),
        });
        let csrf = random_hex()?;
        let mut state = self.state();
        if state.generation != generation {
            bail!("the portal was locked while it was being unlocked; unlock it again");
        }
        state.unlocked = Some(unlocked);
        state.last_seen = Instant::now();
        state.csrf = csrf;
        Ok(())
    }

    /// Locks now: the unlocked wallet is dropped (its keys zeroised once no request holds
    /// it), and a new CSRF token issued.
    pub fn lock(&self) {
        Self::lock_state(&mut self.state());
    }

    fn lock_state(state: &mut LockState) {
        // Requests in progress that hold the wallet sign nothing more, and notifications stop.
        state.outcome = None;
        if let Some(u) = state.unlocked.take() {
            u.session.revoked.store(true, std::sync::atomic::Ordering::SeqCst);
            u.watcher.abort();
        }
        state.generation += 1;
        if let Ok(csrf) = random_hex() {
            state.csrf = csrf;
        }
    }

    /// Locks when idle too long, checked every few seconds, so that keys do not stay in
    /// memory until the next request.
    async fn lock_when_idle(self) {
        loop {
            tokio::time::sleep(Duration::from_secs(2).min(self.lock_after)).await;
            let mut state = self.state();
            if state.unlocked.is_some() && state.last_seen.elapsed() > self.lock_after {
                Self::lock_state(&mut state);
                drop(state);
                tracing::info!("portal locked after inactivity");
            }
        }
    }
}

/// Follows the node's event stream for `account` (new events only) into `notices`, and its
/// break-glass events into `seen`, until the portal locks; reconnects after a dropped stream.
async fn watch(
    client: medledger_client::NodeClient,
    account: medledger_core::ids::AccountId,
    names: Names,
    notices: broadcast::Sender<Notice>,
    seen: Arc<Mutex<Seen>>,
) {
    // Only what happens from now on is news. A patient's stream starts after the trail's
    // newest event; the stream of a doctor or a hospital (whose own trail is empty: it
    // lists events about patients) starts at the beginning, and the events of blocks up to
    // the node's height at this unlock are passed over (by height, not by a clock).
    let backlog_to = loop {
        match client.health().await {
            Ok(h) => break h.height,
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    let mut after = match client.audit_trail_all(&account, None).await {
        Ok(events) => events.last().map(|e| e.seq),
        Err(_) => None,
    };
    loop {
        let result = client
            .watch(account, after.or(Some(0)), |e: AuditEvent| {
                after = Some(e.seq);
                {
                    use medledger_core::audit::AuditKind;
                    let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match &e.kind {
                        AuditKind::BreakGlassStarted { id, .. }
                            if !seen.break_glass.contains(id) =>
                        {
                            seen.break_glass.push(*id)
                        }
                        AuditKind::EscrowReleased { id, custodian } if *custodian == account => {
                            seen.released.insert(*id);
                        }
                        _ => {}
                    }
                }
                if e.height > backlog_to {
                    let _ = notices.send(Notice {
                        seq: e.seq,
                        text: crate::audit::line(&e, &names),
                        alarm: pages::is_alarm(&e),
                    });
                }
                true
            })
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "portal: the event stream ended; reconnecting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The node's clock now (its `/health` answer), by which its next block judges validity
/// windows (break-glass, grants): the portal's own clock may be off. The portal's clock only
/// if the node does not say (then it is unreachable, and the page reports that too).
async fn node_now_ms(client: &medledger_client::NodeClient) -> u64 {
    match client.health().await {
        Ok(h) if h.time_ms > 0 => h.time_ms,
        _ => crate::common::now_ms(),
    }
}

fn router(portal: Portal) -> Router {
    pages::routes()
        .layer(middleware::from_fn_with_state(portal.clone(), guard::gate))
        .with_state(portal)
}

/// The default token file: `<wallet>.portal-<port>.token` (one per portal, so that two
/// portals of one wallet do not remove each other's).
fn token_path(args: &Args, port: u16) -> PathBuf {
    args.token_file.clone().unwrap_or_else(|| {
        let mut name = args.wallet.wallet.clone().into_os_string();
        name.push(format!(".portal-{port}.token"));
        PathBuf::from(name)
    })
}

/// Writes `contents` to `path`, readable and writable by the owner alone.
fn write_private(path: &std::path::Path, contents: &str) -> Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write the token file {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

pub async fn run(args: Args) -> Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "the portal serves a loopback address only (127.0.0.1 or ::1), not {}: it holds an \
             unlocked wallet",
            args.listen
        );
    }
    // The wallet must load (and not be tampered with) before anything is served.
    crate::common::load_wallet(&args.wallet.wallet)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let portal = Portal::new(args.wallet.clone(), addr, args.lock_after)?;
    let url = format!("{}/", portal.origin);
    let login = format!("{}/login?token={}", portal.origin, portal.token);
    let token_file = token_path(&args, addr.port());
    write_private(&token_file, &format!("{login}\n"))?;
    if args.json {
        // One line, so that a script can read it while the portal keeps running.
        println!(
            "{}",
            serde_json::json!({
                "url": url,
                "listen": addr,
                "login_url": login,
                "token_file": token_file,
                "pid": std::process::id(),
            })
        );
    } else {
        println!("portal for {} at {url}", args.wallet.wallet.display());
        println!("open: {login}");
        println!("(the address is also in {}, readable only by you)", token_file.display());
        println!("locks after {} s without use; stop with Ctrl-C", args.lock_after.as_secs());
    }
    let idle = tokio::spawn(portal.clone().lock_when_idle());
    let signal = crate::up::stop_signal()?;
    let stopping = portal.clone();
    let served = axum::serve(listener, router(portal.clone()))
        .with_graceful_shutdown(async move {
            signal.await;
            stopping.stopping.send_replace(true);
        })
        .await;
    idle.abort();
    portal.lock();
    let _ = std::fs::remove_file(&token_file);
    served.context("the portal's server failed")?;
    eprintln!("portal stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_durations_parse_with_their_unit_and_are_bounded() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["0s", "25h", "m", "1d", "-1s", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
