//! Fault injection, for fault tests only: rules that cut, drop or delay the messages this node
//! sends to chosen peers, read from the JSON file named by `medledger up`'s hidden
//! `--fault-rules FILE` flag and re-read whenever that file changes (polled every
//! [`POLL_EVERY`]).
//!
//! **What a rule acts on.** Every message this node *sends* to another node: the Raft RPCs
//! (append entries, heartbeats included; vote; snapshot chunks: [`super::network`]) and the
//! submissions a follower forwards to the leader (`http/submit.rs`). The answer to a message
//! travels back on the connection that carried it, so a message that is not sent gets no
//! answer either. Messages other nodes send to this node are untouched here: they follow the
//! rules in *their* files. Cutting a pair's messages in both nodes' files is therefore a full
//! partition between the two (neither reaches the other by any node-to-node path), and cutting
//! in one file only is a one-way fault (this node's requests are lost; the peer's requests and
//! this node's answers to them still arrive). Clients' requests to this node, and everything it
//! serves them, are never affected.
//!
//! **The file.** `{"rules": [RULE, ...]}`; the first rule that matches a message decides its
//! fate, and a message no rule matches is sent as usual. A rule is
//! `{"to": [ID, ...], "messages": [KIND, ...], "cut": BOOL, "drop": P, "delay_ms": MS}`:
//! `to` (the peers' Raft ids) and `messages` (`append`, `vote`, `snapshot`, `forward`) narrow
//! what it matches and match everything when absent; `cut`: the message is not sent and fails
//! at once as if the peer could not be connected to (Raft: unreachable; forwarding: 503
//! `no_quorum`); `drop`: with probability P the message is lost, and the sender hears nothing
//! until its timeout (Raft: a timeout after the RPC's TTL; forwarding: `no_quorum` after the
//! forwarding timeout); `delay_ms`: a message not dropped waits this long before it is sent (a
//! delay at or beyond the sender's timeout is a loss). Each rule has at least one effect;
//! unknown fields are refused. A file that does not parse (or that others than its owner may
//! write) is refused with a clear error in the log, and the rules in force stay as they were;
//! at start, the node refuses to start with it.
//!
//! **Why it cannot be switched on by accident or remotely.** Only the hidden command-line flag
//! enables it, and the node then logs a warning at start; the rules come from a file on the
//! node's own disk, and no HTTP route reads or changes them. Without the flag the network
//! holds `None` and no rule is ever looked at.

use std::{
    collections::BTreeSet,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock, Weak},
    time::Duration,
};

use serde::Deserialize;

/// How often the rules file is re-read for changes.
pub const POLL_EVERY: Duration = Duration::from_millis(100);
/// Largest rules file read.
pub const MAX_RULES_BYTES: u64 = 64 * 1024;
/// Longest delay a rule may add.
pub const MAX_DELAY_MS: u64 = 60_000;

/// A kind of message this node sends to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Message {
    /// Raft append entries (and heartbeats).
    Append,
    /// Raft vote request.
    Vote,
    /// One chunk of a Raft snapshot.
    Snapshot,
    /// A client's submission forwarded to the leader.
    Forward,
    /// A request for a blob this node pulls from a peer, or for which blobs it holds
    /// (`raft/replicas.rs`).
    Blob,
}

impl From<super::transport::RpcKind> for Message {
    fn from(kind: super::transport::RpcKind) -> Self {
        match kind {
            super::transport::RpcKind::Append => Message::Append,
            super::transport::RpcKind::Vote => Message::Vote,
            super::transport::RpcKind::Snapshot => Message::Snapshot,
            super::transport::RpcKind::Blob | super::transport::RpcKind::BlobsHeld => Message::Blob,
        }
    }
}

/// One rule: which messages it matches and what happens to them.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The peers (Raft ids) whose messages it matches; every peer when absent.
    #[serde(default)]
    pub to: Option<BTreeSet<u64>>,
    /// The kinds of message it matches; every kind when absent.
    #[serde(default)]
    pub messages: Option<BTreeSet<Message>>,
    /// The message is not sent and fails at once.
    #[serde(default)]
    pub cut: bool,
    /// The probability that the message is lost.
    #[serde(default)]
    pub drop: f64,
    /// How long a message not dropped waits before it is sent, in ms.
    #[serde(default)]
    pub delay_ms: u64,
}

impl Rule {
    fn matches(&self, to: u64, message: Message) -> bool {
        self.to.as_ref().is_none_or(|t| t.contains(&to))
            && self.messages.as_ref().is_none_or(|m| m.contains(&message))
    }

    fn check(&self, i: usize) -> Result<(), FaultRulesError> {
        let invalid = |why: String| Err(FaultRulesError::Invalid(format!("rule {i}: {why}")));
        if !(0.0..=1.0).contains(&self.drop) {
            return invalid(format!("drop is {}, not a probability in [0, 1]", self.drop));
        }
        if self.delay_ms > MAX_DELAY_MS {
            return invalid(format!("delay_ms {} is above {MAX_DELAY_MS}", self.delay_ms));
        }
        if !self.cut && self.drop == 0.0 && self.delay_ms == 0 {
            return invalid("it has no effect (give cut, drop or delay_ms)".into());
        }
        if self.to.as_ref().is_some_and(BTreeSet::is_empty)
            || self.messages.as_ref().is_some_and(BTreeSet::is_empty)
        {
            return invalid(
                "an empty `to` or `messages` matches nothing (omit it to match all)".into(),
            );
        }
        Ok(())
    }
}

/// The rules in force, in the order they are tried.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// The rules; the first that matches a message decides its fate.
    pub rules: Vec<Rule>,
}

/// What happens to one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// It is sent after this delay (zero: at once).
    Send(Duration),
    /// It is not sent and fails at once.
    Cut,
    /// It is lost: the sender hears nothing until its timeout.
    Drop,
}

impl Rules {
    /// Parses and checks a rules file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, FaultRulesError> {
        let rules: Rules =
            serde_json::from_slice(bytes).map_err(|e| FaultRulesError::Invalid(e.to_string()))?;
        for (i, rule) in rules.rules.iter().enumerate() {
            rule.check(i)?;
        }
        Ok(rules)
    }

    /// The fate of a `message` to peer `to`, `roll` being a uniform draw in [0, 1) (compared
    /// with a matching rule's `drop`).
    pub fn fate(&self, to: u64, message: Message, roll: f64) -> Fate {
        match self.rules.iter().find(|r| r.matches(to, message)) {
            None => Fate::Send(Duration::ZERO),
            Some(r) if r.cut => Fate::Cut,
            Some(r) if roll < r.drop => Fate::Drop,
            Some(r) => Fate::Send(Duration::from_millis(r.delay_ms)),
        }
    }
}

/// A rules file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FaultRulesError {
    /// The file could not be read.
    #[error("cannot read the fault rules file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Others than its owner may write the file, which steers the node.
    #[error("the fault rules file {0} may be written by others than its owner (chmod go-w)")]
    Writable(PathBuf),
    /// The file is larger than [`MAX_RULES_BYTES`].
    #[error("the fault rules file {0} is larger than {MAX_RULES_BYTES} bytes")]
    TooLarge(PathBuf),
    /// The file's content is not valid rules.
    #[error("invalid fault rules: {0}")]
    Invalid(String),
}

/// Why a message was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    /// A rule cut it.
    #[error("not sent: cut by the node's fault rules (a fault test)")]
    Cut,
    /// A rule dropped it (or delayed it past the sender's timeout); the timeout has passed.
    #[error("lost: dropped by the node's fault rules (a fault test)")]
    Dropped,
}

/// The rules of one node, from one file, kept up to date by a watcher task.
#[derive(Debug)]
pub struct Faults {
    path: PathBuf,
    /// The rules in force.
    rules: RwLock<Arc<Rules>>,
    /// The file's bytes as last read (valid or not), so that only a change is parsed and
    /// logged.
    last: RwLock<Vec<u8>>,
    /// The last error reading the file (missing, unreadable), so that it is logged once while
    /// it lasts rather than at every poll.
    read_error: RwLock<Option<String>>,
}

fn read_rules_file(path: &Path) -> Result<Vec<u8>, FaultRulesError> {
    let read = |source| FaultRulesError::Read { path: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(FaultRulesError::Writable(path.to_owned()));
    }
    if meta.len() > MAX_RULES_BYTES {
        return Err(FaultRulesError::TooLarge(path.to_owned()));
    }
    std::fs::read(path).map_err(read)
}

impl Faults {
    /// Loads the rules in `path`: an error if the file cannot be read or is not valid rules.
    pub fn load(path: &Path) -> Result<Self, FaultRulesError> {
        let (rules, bytes) = Self::read(path)?;
        tracing::warn!(
            file = %path.display(),
            rules = rules.rules.len(),
            "FAULT INJECTION ENABLED (--fault-rules, for fault tests only): messages to other \
             nodes are cut, dropped or delayed as the file says"
        );
        Ok(Self {
            path: path.to_owned(),
            rules: RwLock::new(Arc::new(rules)),
            last: RwLock::new(bytes),
            read_error: RwLock::new(None),
        })
    }

    /// Reads and checks the rules in `path` without putting them in force (so that `medledger
    /// up` refuses a bad file before it changes anything): the rules and the file's bytes.
    pub fn read(path: &Path) -> Result<(Rules, Vec<u8>), FaultRulesError> {
        let bytes = read_rules_file(path)?;
        Ok((Rules::parse(&bytes)?, bytes))
    }

    /// [`Faults::load`], then re-reads the file every [`POLL_EVERY`] (on the current Tokio
    /// runtime) for as long as the returned handle lives.
    pub fn watch(path: &Path) -> Result<Arc<Self>, FaultRulesError> {
        let faults = Arc::new(Self::load(path)?);
        let weak: Weak<Self> = Arc::downgrade(&faults);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_EVERY);
            loop {
                tick.tick().await;
                let Some(faults) = weak.upgrade() else { return };
                // A refusal is logged by `reload`; the rules in force stay.
                let _ = tokio::task::spawn_blocking(move || faults.reload()).await;
            }
        });
        Ok(faults)
    }

    /// Re-reads the file: `Ok(true)` when new rules are now in force, `Ok(false)` when it has
    /// not changed, an error (logged, the rules in force kept) when it cannot be used.
    pub fn reload(&self) -> Result<bool, FaultRulesError> {
        let bytes = match read_rules_file(&self.path) {
            Ok(bytes) => {
                *self.read_error.write().unwrap_or_else(|e| e.into_inner()) = None;
                bytes
            }
            Err(e) => {
                let mut last = self.read_error.write().unwrap_or_else(|e| e.into_inner());
                if last.as_deref() != Some(e.to_string().as_str()) {
                    *last = Some(e.to_string());
                    tracing::error!(error = %e, "fault rules file refused; the previous rules stay in force");
                }
                return Err(e);
            }
        };
        {
            let mut last = self.last.write().unwrap_or_else(|e| e.into_inner());
            if *last == bytes {
                return Ok(false);
            }
            last.clone_from(&bytes);
        }
        match Rules::parse(&bytes) {
            Ok(rules) => {
                tracing::info!(
                    file = %self.path.display(),
                    rules = rules.rules.len(),
                    "fault rules now in force"
                );
                *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
                Ok(true)
            }
            Err(e) => {
                // Logged once per content: the file is parsed again only once it changes.
                tracing::error!(error = %e, "fault rules file refused; the previous rules stay in force");
                Err(e)
            }
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The fate of a `message` to peer `to` under the rules in force.
    pub fn fate(&self, to: u64, message: Message) -> Fate {
        self.rules().fate(to, message, fastrand::f64())
    }
}

/// Applies the fate of a `message` to peer `to` before it is sent with `timeout`: returns the
/// time left of `timeout` once any delay has passed, or why it is not sent (after waiting out
/// `timeout` for a lost message). Without `faults`, `timeout` at once.
pub async fn before_send(
    faults: Option<&Faults>,
    to: u64,
    message: Message,
    timeout: Duration,
) -> Result<Duration, Blocked> {
    let Some(faults) = faults else { return Ok(timeout) };
    match faults.fate(to, message) {
        Fate::Send(Duration::ZERO) => Ok(timeout),
        Fate::Send(delay) if delay < timeout => {
            tokio::time::sleep(delay).await;
            Ok(timeout - delay)
        }
        Fate::Send(_) | Fate::Drop => {
            tokio::time::sleep(timeout).await;
            Err(Blocked::Dropped)
        }
        Fate::Cut => Err(Blocked::Cut),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn rules(json: &str) -> Rules {
        Rules::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn the_first_matching_rule_decides_and_unmatched_messages_are_sent() {
        let r = rules(
            r#"{"rules": [
                {"to": [2], "messages": ["vote"], "delay_ms": 5},
                {"to": [2, 3], "cut": true},
                {"messages": ["snapshot"], "drop": 0.5, "delay_ms": 7}
            ]}"#,
        );
        let ms = Duration::from_millis;
        // To 2: votes are delayed (rule 0 comes first), everything else is cut (rule 1).
        assert_eq!(r.fate(2, Message::Vote, 0.0), Fate::Send(ms(5)));
        for m in [Message::Append, Message::Snapshot, Message::Forward] {
            assert_eq!(r.fate(2, m, 0.0), Fate::Cut, "{m:?}");
        }
        // To 3: everything is cut; to 4, only snapshots match (rule 2), lost below the odds.
        assert_eq!(r.fate(3, Message::Vote, 0.9), Fate::Cut);
        assert_eq!(r.fate(4, Message::Snapshot, 0.49), Fate::Drop);
        assert_eq!(r.fate(4, Message::Snapshot, 0.5), Fate::Send(ms(7)));
        assert_eq!(r.fate(4, Message::Append, 0.0), Fate::Send(Duration::ZERO));
        // No rules: everything is sent at once.
        assert_eq!(rules(r#"{"rules": []}"#).fate(2, Message::Append, 0.0), Fate::Send(ms(0)));
        // drop 1 loses every message; drop 0 (with a delay) none.
        let all = rules(r#"{"rules": [{"drop": 1.0}]}"#);
        assert_eq!(all.fate(9, Message::Forward, 0.999_999), Fate::Drop);
    }

    #[test]
    fn malformed_rules_are_refused_with_the_reason() {
        for (json, why) in [
            ("", "EOF"),
            (r#"{"rules": [{"cut": true}], "extra": 1}"#, "unknown field"),
            (r#"{"rules": [{"to": [2], "cut": true, "cutt": true}]}"#, "unknown field"),
            (r#"{"rules": [{"messages": ["gossip"], "cut": true}]}"#, "unknown variant"),
            (r#"{"rules": [{"to": [2]}]}"#, "rule 0: it has no effect"),
            (r#"{"rules": [{"cut": true}, {"drop": 1.5}]}"#, "rule 1: drop is 1.5"),
            (r#"{"rules": [{"drop": -0.1}]}"#, "not a probability"),
            (r#"{"rules": [{"delay_ms": 60001}]}"#, "above 60000"),
            (r#"{"rules": [{"to": [], "cut": true}]}"#, "matches nothing"),
            (r#"{"rules": [{"to": [-1], "cut": true}]}"#, "invalid value"),
            (r#"[{"cut": true}]"#, "invalid type"),
        ] {
            let e = Rules::parse(json.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(why), "{json}: {e}");
        }
    }

    fn write(path: &Path, text: &str) {
        // Written beside and renamed into place, as a test rewrites a node's rules.
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_changed_file_takes_effect_and_a_malformed_one_keeps_the_rules_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.json");
        write(&path, r#"{"rules": [{"to": [2], "cut": true}]}"#);
        let faults = Faults::load(&path).unwrap();
        assert_eq!(faults.fate(2, Message::Append), Fate::Cut);
        assert!(!faults.reload().unwrap(), "unchanged");

        write(&path, r#"{"rules": [{"to": [3], "cut": true}]}"#);
        assert!(faults.reload().unwrap());
        assert_eq!(faults.fate(2, Message::Append), Fate::Send(Duration::ZERO));
        assert_eq!(faults.fate(3, Message::Append), Fate::Cut);

        // Malformed, missing, writable by others: refused, node 3 still cut.
        write(&path, r#"{"rules": [{"to": [3], "cut": tru"#);
        assert!(matches!(faults.reload(), Err(FaultRulesError::Invalid(_))));
        assert_eq!(faults.fate(3, Message::Append), Fate::Cut);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(faults.reload(), Err(FaultRulesError::Read { .. })));
        assert_eq!(faults.fate(3, Message::Append), Fate::Cut);
        write(&path, r#"{"rules": []}"#);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(faults.reload(), Err(FaultRulesError::Writable(_))));
        assert_eq!(faults.fate(3, Message::Append), Fate::Cut);

        // Repaired: in force.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(faults.reload().unwrap());
        assert_eq!(faults.fate(3, Message::Append), Fate::Send(Duration::ZERO));
    }

    #[test]
    fn a_node_does_not_start_with_a_missing_or_malformed_rules_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.json");
        assert!(matches!(Faults::load(&path), Err(FaultRulesError::Read { .. })));
        write(&path, r#"{"rules": [{"to": [2]}]}"#);
        let e = Faults::load(&path).unwrap_err().to_string();
        assert!(e.contains("no effect"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watcher_picks_up_a_rewritten_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.json");
        write(&path, r#"{"rules": []}"#);
        let faults = Faults::watch(&path).unwrap();
        write(&path, r#"{"rules": [{"cut": true}]}"#);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while faults.fate(2, Message::Vote) != Fate::Cut {
            assert!(tokio::time::Instant::now() < deadline, "the rewrite was not picked up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn before_send_cuts_at_once_loses_after_the_timeout_and_delays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.json");
        write(
            &path,
            r#"{"rules": [{"to": [2], "cut": true}, {"to": [3], "drop": 1.0},
                          {"to": [4], "delay_ms": 30}, {"to": [5], "delay_ms": 500}]}"#,
        );
        let faults = Faults::load(&path).unwrap();
        let f = Some(&faults);
        let ttl = Duration::from_millis(200);
        assert_eq!(before_send(None, 2, Message::Append, ttl).await, Ok(ttl));
        assert_eq!(before_send(f, 2, Message::Append, ttl).await, Err(Blocked::Cut));
        let start = tokio::time::Instant::now();
        assert_eq!(before_send(f, 3, Message::Append, ttl).await, Err(Blocked::Dropped));
        assert!(start.elapsed() >= ttl, "a lost message is reported only after the timeout");
        let start = tokio::time::Instant::now();
        let left = before_send(f, 4, Message::Append, ttl).await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(30) && left == ttl - Duration::from_millis(30)
        );
        // Delayed past the timeout: lost.
        assert_eq!(before_send(f, 5, Message::Append, ttl).await, Err(Blocked::Dropped));
        assert_eq!(before_send(f, 6, Message::Append, ttl).await, Ok(ttl));
    }
}
