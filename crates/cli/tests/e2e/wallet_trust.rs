//! The wallet trusts only what it can authenticate (H5): a key-swapping proxy between wallet and
//! node gets nothing wrapped to its key, nor any device reading sealed to its key, and an
//! edited wallet file is refused before any network use.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use medledger_core::keys::DecryptionKey;

use crate::{harness::*, registry::cast};

/// What a lying proxy does to the node's answers.
#[derive(Clone)]
pub(crate) enum Lie {
    /// Replaces the hex of `victim` with the hex of `attacker` in every answer to a path that
    /// starts with `only` (every answer when `only` is empty).
    Swap { victim: String, attacker: String, only: String },
    /// Answers 404 to every request for a path that starts with `path`, as a node that hides
    /// what it holds would.
    Hide { path: String },
    /// Answers `body` (200) to every request for exactly `path`, as a node that made it up.
    Answer { path: String, body: Vec<u8> },
    /// Tells, for each request, the first of these lies that is about its path.
    All(Vec<Lie>),
}

impl Lie {
    /// The lie told in the answer to a request for `path`, if any.
    fn about(&self, path: &str) -> Option<&Lie> {
        match self {
            Lie::All(lies) => lies.iter().find_map(|l| l.about(path)),
            Lie::Hide { path: hidden } if path.starts_with(hidden.as_str()) => Some(self),
            Lie::Answer { path: made_up, .. } if path == made_up => Some(self),
            Lie::Swap { only, .. } if path.starts_with(only.as_str()) => Some(self),
            _ => None,
        }
    }
}

/// A real HTTP relay on 127.0.0.1 in front of the node: forwards every request (one per
/// connection) and tells its [`Lie`] in the answers, as a man in the middle (or a node that
/// lies) would. [`KeySwappingProxy::start`] swaps a key in every answer. Stops itself when
/// dropped or after a time limit.
pub(crate) struct KeySwappingProxy {
    pub(crate) url: String,
    /// "METHOD path" of every request relayed, in order.
    seen: Arc<Mutex<Vec<String>>>,
    /// How many answers were lied about.
    swaps: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl KeySwappingProxy {
    pub(crate) fn start(node_port: u16, victim: String, attacker: String) -> Self {
        Self::lying(node_port, Lie::Swap { victim, attacker, only: String::new() })
    }

    pub(crate) fn lying(node_port: u16, lie: Lie) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let swaps = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, w, st) = (seen.clone(), swaps.clone(), stop.clone());
        let handle = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (s, w, lie) = (s.clone(), w.clone(), lie.clone());
                        thread::spawn(move || {
                            let _ = relay(conn, node_port, &lie, &s, &w);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { url, seen, swaps, stop, handle: Some(handle) }
    }

    /// How many answers were lied about so far.
    pub(crate) fn lies(&self) -> usize {
        self.swaps.load(Ordering::Relaxed)
    }

    /// Asserts that nothing was stored or submitted through the proxy (no `PUT` or `POST`
    /// relayed): `what` names the case in the failure.
    pub(crate) fn sent_nothing(&self, what: &str) {
        let seen = self.seen();
        let sent = |r: &String| r.starts_with("PUT ") || r.starts_with("POST ");
        assert!(!seen.iter().any(sent), "{what}: something was stored or sent: {seen:?}");
    }

    pub(crate) fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for KeySwappingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Relays one request from `conn` to the node and the rewritten answer back.
fn relay(
    conn: TcpStream,
    node_port: u16,
    lie: &Lie,
    seen: &Mutex<Vec<String>>,
    swaps: &AtomicUsize,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(LIMIT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) =
        (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let (mut len, mut headers) = (0usize, Vec::new());
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else { continue };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
        match name.as_str() {
            "content-length" => len = value.parse().unwrap_or(0),
            "x-medledger-auth" | "accept" => headers.push((name, value)),
            _ => {}
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    seen.lock().unwrap().push(format!("{method} {path}"));
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut answer = request(node_port, &method, &path, &body, &pairs)?;
    let (victim, attacker): (&[u8], &[u8]) = match lie.about(&path) {
        Some(Lie::Hide { .. }) => {
            answer.status = 404;
            answer.body = br#"{"error":"not found"}"#.to_vec();
            swaps.fetch_add(1, Ordering::Relaxed);
            (b"", b"")
        }
        Some(Lie::Answer { body, .. }) => {
            answer.status = 200;
            answer.body = body.clone();
            swaps.fetch_add(1, Ordering::Relaxed);
            (b"", b"")
        }
        Some(Lie::Swap { victim, attacker, .. }) => (victim.as_bytes(), attacker.as_bytes()),
        _ => (b"", b""),
    };
    let mut out = answer.body;
    // On the bytes, so that a binary answer is rewritten and not otherwise mangled.
    if !victim.is_empty() && out.windows(victim.len()).any(|w| w == victim) {
        let (mut swapped, mut rest) = (Vec::with_capacity(out.len()), &out[..]);
        while let Some(at) = rest.windows(victim.len()).position(|w| w == victim) {
            swapped.extend_from_slice(&rest[..at]);
            swapped.extend_from_slice(attacker);
            rest = &rest[at + victim.len()..];
        }
        swapped.extend_from_slice(rest);
        out = swapped;
        swaps.fetch_add(1, Ordering::Relaxed);
    }
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        answer.status,
        out.len()
    )?;
    conn.write_all(&out)?;
    conn.flush()
}

fn pmr_of(out: &str) -> String {
    let start = out.find("record ").expect("a record line") + "record ".len();
    out[start..].split_whitespace().next().unwrap().to_owned()
}

#[test]
fn a_key_swapping_proxy_gets_nothing_and_an_edited_wallet_is_refused_offline() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let file = tmp.path().join("scan.txt");
    std::fs::write(&file, b"knee MRI, no effusion").unwrap();
    let out = ok(
        &["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id]
            .into_iter()
            .chain(["--file", &file.display().to_string(), "--category", "imaging"])
            .chain(["--date", "2021-01-26", "--title", "MRI knee"])
            .collect::<Vec<_>>(),
        &env,
    );
    let pmr = pmr_of(&out);

    // The patient shares the record's key with the doctor through a proxy that swaps the
    // doctor's encryption key for the attacker's wherever it appears.
    let card = ok(&["wallet", "show", "--wallet", &c.doctor, "--identity-only"], &[]);
    let doctor_key = card.trim().rsplit(':').next().unwrap().to_owned();
    let attacker = DecryptionKey::generate().public_key().to_string();
    let proxy = KeySwappingProxy::start(node.port, doctor_key.clone(), attacker.clone());
    let share = ["record", "share", &pmr, "--wallet", &c.patient, "--with", &c.doctor_account];
    let err = fails(&share, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(err.contains("refusing to use the encryption key"), "{err}");
    assert!(err.contains(&c.doctor_account), "{err}");
    let seen = proxy.seen();
    assert!(proxy.swaps.load(Ordering::Relaxed) > 0, "the proxy swapped nothing: {seen:?}");
    assert!(seen.iter().any(|r| r.ends_with("/encryption-key")), "{seen:?}");
    // Nothing was wrapped: no blob stored, no transaction submitted through the proxy.
    proxy.sent_nothing("after the swap");

    // The same share straight to the node succeeds: the refusal was the swap, nothing else.
    let out = ok(&share, &env);
    assert!(out.contains("wrapped to"), "{out}");

    // An edited wallet file (node URL pointed at the proxy, another pinned node key) is refused
    // before any network use.
    let before = proxy.seen().len();
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&c.patient).unwrap()).unwrap();
    let tampered = tmp.path().join("tampered.wallet.json");
    let tampered_s = tampered.display().to_string();
    let mallory_node = medledger_core::keys::SigningKey::generate().public_key().to_string();
    for edit in [
        ("node_url", serde_json::Value::from(proxy.url.as_str())),
        ("trusted_node_key", serde_json::Value::from(mallory_node.as_str())),
        ("trusted_node_key", serde_json::Value::Null),
        ("chain_id", serde_json::Value::from("elsewhere")),
    ] {
        let mut j = original.clone();
        j[edit.0] = edit.1.clone();
        std::fs::write(&tampered, serde_json::to_vec_pretty(&j).unwrap()).unwrap();
        let err = fails(
            &["record", "share", &pmr, "--wallet", &tampered_s, "--with", &c.doctor_account],
            &[],
        );
        assert!(err.contains("the wallet file has been tampered with"), "{edit:?}: {err}");
    }
    assert_eq!(proxy.seen().len(), before, "a tampered wallet talked to the network");

    // The same edits in the older, unauthenticated format: the identity unlocks, but the pin is
    // not carried over, and the wallet says how to pin again; nothing goes over the network.
    let mut j = original.clone();
    j["version"] = 1.into();
    j.as_object_mut().unwrap().remove("state_mac");
    j["node_url"] = proxy.url.as_str().into();
    std::fs::write(&tampered, serde_json::to_vec_pretty(&j).unwrap()).unwrap();
    let err = fails(
        &["record", "share", &pmr, "--wallet", &tampered_s, "--with", &c.doctor_account],
        &[],
    );
    assert!(err.contains("older medledger") && err.contains("wallet pin"), "{err}");
    assert_eq!(proxy.seen().len(), before, "an unpinned wallet talked to the network");

    // Pinning is explicit, and checks the node key the user expects.
    let genesis: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.dir.join("genesis.json")).unwrap()).unwrap();
    let node_key = genesis["node_key"].as_str().expect("genesis names the node key").to_owned();
    let err = fails(
        &[
            "wallet",
            "pin",
            "--wallet",
            &tampered_s,
            "--node",
            &node.url,
            "--node-key",
            &mallory_node,
        ],
        &[],
    );
    assert!(err.contains("not the"), "{err}");
    let out = ok(
        &["wallet", "pin", "--wallet", &tampered_s, "--node", &node.url, "--node-key", &node_key],
        &[],
    );
    assert!(out.contains(&format!("node key {node_key}")), "{out}");
    let out = ok(&["wallet", "show", "--wallet", &tampered_s, "--ledger"], &[]);
    assert!(out.contains("role:"), "{out}");
}

/// H5, device sessions: a proxy that swaps a session's public key gets no reading sealed to
/// its key. The device takes the key only from the session's start, proven against the pinned
/// node key, and refuses before it seals or sends anything.
#[test]
fn a_swapped_session_key_gets_no_reading_sealed_to_it() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let s = crate::devices::setup(tmp.path(), &node);
    let attacker = DecryptionKey::generate().public_key().to_string();
    let proxy = KeySwappingProxy::start(node.port, s.public_key.clone(), attacker);
    let size = node.log_size();
    let simulate = [
        "device",
        "simulate",
        "--wallet",
        &s.device_wallet,
        "--session",
        &s.session,
        "--count",
        "3",
    ];
    let err = fails(&simulate, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(err.contains("refusing to use the encryption key"), "{err}");
    assert!(err.contains(&s.session), "{err}");
    let seen = proxy.seen();
    assert!(proxy.swaps.load(Ordering::Relaxed) > 0, "the proxy swapped nothing: {seen:?}");
    proxy.sent_nothing("after the swap");
    assert_eq!(node.log_size(), size, "a reading reached the log");

    // Straight to the node, the same command delivers its readings.
    let out = ok(&simulate, &[("MEDLEDGER_NODE", node.url.as_str())]);
    assert!(node.log_size() > size, "{out}");
}

/// H5, the emergency key: a proxy that swaps the patient's emergency key gets no record key
/// wrapped to it. The wallet takes the key only from the transaction that set the profile,
/// proven against the pinned node key, and refuses before it wraps or sends anything.
#[test]
fn a_swapped_emergency_key_gets_nothing_wrapped_to_it() {
    use medledger_client::emergency::{EmergencyCode, EmergencyKey};
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let file = tmp.path().join("ecg.txt");
    std::fs::write(&file, b"ECG: sinus rhythm").unwrap();
    let add = ["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id]
        .into_iter()
        .chain(["--file", &file.display().to_string(), "--category", "lab-report"])
        .chain(["--date", "2021-01-26", "--title", "ECG"])
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    ok(&add, &env);
    let out = ok(
        &["emergency", "profile", "--wallet", &c.patient, "--blood-type", "O-", "--json"]
            .into_iter()
            .chain(["--open-records"])
            .collect::<Vec<_>>(),
        &env,
    );
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["records_wrapped"], 1, "{out}");
    let code = EmergencyCode::parse(j["code"].as_str().unwrap()).unwrap();
    let pid = medledger_core::ids::PatientId(c.patient_id.parse().unwrap());
    let emergency_key = EmergencyKey::derive(&code, pid).encryption_key().to_string();

    let attacker = DecryptionKey::generate().public_key().to_string();
    let proxy = KeySwappingProxy::start(node.port, emergency_key, attacker);
    let via_proxy = [("MEDLEDGER_NODE", proxy.url.as_str())];
    let size = node.log_size();
    let wrap = ["emergency", "wrap-records", "--wallet", &c.patient];
    let err = fails(&wrap, &via_proxy);
    assert!(err.contains("refusing to use the encryption key"), "{err}");
    assert!(err.contains("emergency key"), "{err}");
    let seen = proxy.seen();
    assert!(proxy.swaps.load(Ordering::Relaxed) > 0, "the proxy swapped nothing: {seen:?}");
    proxy.sent_nothing("after the swap");
    assert_eq!(node.log_size(), size, "a wrap reached the log");

    // Straight to the node, the same command wraps to the real (proven) emergency key, and a
    // new record is added and wrapped to it (`record add` proves the key the same way).
    let out = ok(&wrap, &env);
    assert!(node.log_size() > size, "{out}");
    ok(&add, &env);
}

/// Who is a member of an organisation comes from the ledger, proven: a node (or a proxy) that
/// lists another account (here the doctor's) as a member of the organisation a patient grants
/// to gets nothing wrapped to it, and the wallet says why.
#[test]
fn an_account_a_node_lists_as_a_member_gets_no_key_unless_the_ledger_proves_it() {
    use crate::organisations::{add_member, admit};
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let url = node.url.as_str();
    let env = [("MEDLEDGER_NODE", url)];
    let c = cast(tmp.path(), &node);
    let lab = crate::registry::wallet(tmp.path(), "cohort-lab", url);
    let ana = crate::registry::wallet(tmp.path(), "ana", url);
    // An insurer: a grant to it wraps keys to its members (a research grant wraps none).
    let lab_account = admit(&node, &lab, "insurer", "Shield Mutual");
    let ana_account = add_member(&lab, &ana, &lab_account, &env);
    let file = tmp.path().join("lipids.txt");
    std::fs::write(&file, b"LDL 2.1 mmol/L").unwrap();
    let add = ["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id]
        .into_iter()
        .chain(["--file", &file.display().to_string(), "--category", "lab-report"])
        .map(str::to_owned)
        .collect::<Vec<_>>();
    ok(&add.iter().map(String::as_str).collect::<Vec<_>>(), &env);

    // Every answer that names the member names the doctor instead.
    let proxy = KeySwappingProxy::start(node.port, ana_account.clone(), c.doctor_account.clone());
    let via_proxy = [("MEDLEDGER_NODE", proxy.url.as_str())];
    let grant = ["consent", "grant", "--wallet", &c.patient, "--grantee", &lab_account]
        .into_iter()
        .chain(["--purpose", "insurance", "--scope", "all"])
        .collect::<Vec<_>>();
    let out = cli(&grant, &via_proxy);
    let text = show(&out);
    assert!(out.status.success(), "{text}");
    assert!(proxy.swaps.load(Ordering::Relaxed) > 0, "the proxy swapped nothing");
    assert!(text.contains("the ledger does not prove it"), "{text}");
    drop(proxy);

    // The trail (read straight from the node) shows the record's key shared with the
    // organisation, and with nobody else.
    assert_eq!(keys_shared(&c.patient, &env), vec![lab_account]);
}

/// Whom the patient of `wallet` shared record keys with, by its trail read from the node.
pub(crate) fn keys_shared(wallet: &str, env: &[(&str, &str)]) -> Vec<String> {
    let trail = ok(&["audit", "trail", "--wallet", wallet, "--json"], env);
    let events: serde_json::Value = serde_json::from_str(&trail).unwrap();
    events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"]["record_key_shared"]["grantee"].as_str().map(str::to_owned))
        .collect()
}

/// Onboards a doctor at the cast's hospital with a wallet of its own: its wallet and account.
pub(crate) fn onboard(
    dir: &std::path::Path,
    node: &Node,
    hospital: &str,
    name: &str,
) -> (String, String) {
    let wallet = crate::registry::wallet(dir, name, &node.url);
    let out = ok(
        &["doctor", "onboard", "--wallet", hospital, "--identity"]
            .into_iter()
            .chain([crate::registry::identity(&wallet).as_str(), "--name", name])
            .chain(["--registration-number", &format!("GMC-{name}"), "--specialisation", "gp"])
            .collect::<Vec<_>>(),
        &[],
    );
    (wallet, account(&out))
}

/// An approval wraps record keys to the requester the request's own transaction names,
/// proven, not to whom a node lists as the requester: a proxy that swaps the requesting
/// doctor's account for another doctor's in every answer gets that doctor no key (the
/// request's transaction, as the proxy serves it, no longer proves, so nothing is approved);
/// straight to the node, the approval wraps the keys to the requester alone.
/// The cast with two more doctors at its hospital, a record of the patient's, and a pending
/// access request from the consultant to the patient.
pub(crate) struct Asked {
    pub(crate) c: crate::registry::Cast,
    pub(crate) consultant_account: String,
    pub(crate) mallory_account: String,
    pub(crate) request: String,
}

/// The cast's doctor files an ECG report for the cast's patient.
fn add_ecg(dir: &std::path::Path, c: &crate::registry::Cast, env: &[(&str, &str)]) {
    let file = dir.join("ecg.txt");
    std::fs::write(&file, b"sinus rhythm, 72 bpm").unwrap();
    ok(
        &["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id]
            .into_iter()
            .chain(["--file", &file.display().to_string(), "--category", "lab-report"])
            .collect::<Vec<_>>(),
        env,
    );
}

pub(crate) fn asked(dir: &std::path::Path, node: &Node) -> Asked {
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let c = cast(dir, node);
    let (consultant, consultant_account) = onboard(dir, node, &c.hospital, "consultant");
    let (_, mallory_account) = onboard(dir, node, &c.hospital, "mallory");
    add_ecg(dir, &c, &env);
    let patient_account = crate::consent::account_of(&c.patient);
    let out = ok(
        &["consent", "request", "--wallet", &consultant, "--patient", &patient_account]
            .into_iter()
            .chain(["--purpose", "treatment", "--json"])
            .collect::<Vec<_>>(),
        &env,
    );
    let request =
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"].as_str().unwrap().to_owned();
    Asked { c, consultant_account, mallory_account, request }
}

#[test]
fn an_approval_wraps_keys_to_the_proven_requester_not_to_whom_a_node_names() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let Asked { c, consultant_account, mallory_account, request } = asked(tmp.path(), &node);

    // The patient approves through a proxy that names Mallory wherever the consultant is.
    let proxy =
        KeySwappingProxy::start(node.port, consultant_account.clone(), mallory_account.clone());
    let approve = ["consent", "approve", &request, "--wallet", &c.patient, "--scope", "all"];
    let err = fails(&approve, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(proxy.swaps.load(Ordering::Relaxed) > 0, "the proxy swapped nothing: {err}");
    assert!(err.contains(&format!("access request {request}")), "{err}");
    assert!(err.contains("does NOT verify"), "{err}");
    let seen = proxy.seen();
    assert!(!seen.iter().any(|r| r.starts_with("POST ")), "something was sent: {seen:?}");
    drop(proxy);
    // The trail, read straight from the node: the key went to the consultant alone.
    assert!(keys_shared(&c.patient, &env).is_empty());
    let out = ok(&approve, &env);
    assert!(out.contains(&format!("wrapped to {consultant_account}")), "{out}");
    assert_eq!(keys_shared(&c.patient, &env), vec![consultant_account]);

    // A transaction that is no access request is not approved.
    let grant = ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &mallory_account, "--json"],
        &env,
    );
    let tx = serde_json::from_str::<serde_json::Value>(&grant).unwrap()["tx_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let err = fails(&["consent", "approve", &tx, "--wallet", &c.patient, "--scope", "all"], &env);
    assert!(err.contains("is no access request"), "{err}");
}

/// A node that lies only in its listing of a request (the `/v1/consent/requests/` answers name
/// Mallory where the consultant is) changes neither what `consent show-request` shows nor
/// whom `consent approve` wraps the keys to: both come from the request's own transaction,
/// proven. A node that hides the key proof of the request's signer (so that no registration of
/// it is proven) gets no approval at all, and nothing is sent.
#[test]
fn a_request_is_shown_and_approved_as_its_transaction_says_whatever_a_node_lists() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let Asked { c, consultant_account, mallory_account, request } = asked(tmp.path(), &node);
    let approve = ["consent", "approve", &request, "--wallet", &c.patient, "--scope", "all"];
    let show = ["consent", "show-request", &request, "--wallet", &c.patient];

    // The signer's registration hidden: refused before anything is signed.
    let hidden = format!("/v1/accounts/{consultant_account}/encryption-key");
    let proxy = KeySwappingProxy::lying(node.port, Lie::Hide { path: hidden });
    let via = [("MEDLEDGER_NODE", proxy.url.as_str())];
    for args in [&approve[..], &show[..]] {
        let err = fails(args, &via);
        assert!(
            err.contains(&format!(
                "proves no registration of {consultant_account}, who signed request {request}"
            )),
            "{err}"
        );
    }
    assert!(proxy.swaps.load(Ordering::Relaxed) > 0, "the proxy hid nothing");
    let seen = proxy.seen();
    assert!(!seen.iter().any(|r| r.starts_with("POST ")), "something was sent: {seen:?}");
    drop(proxy);
    assert!(keys_shared(&c.patient, &env).is_empty());

    // The request's listing lies about the requester, and the directory gives the requester
    // the name of a doctor the patient knows.
    let only = "/v1/consent/requests/".to_owned();
    let lie = Lie::All(vec![
        Lie::Swap {
            victim: consultant_account.clone(),
            attacker: mallory_account.clone(),
            only: only.clone(),
        },
        renamed("consultant", "Dr. Own GP"),
    ]);
    let proxy = KeySwappingProxy::lying(node.port, lie);
    let via = [("MEDLEDGER_NODE", proxy.url.as_str())];
    let shown: serde_json::Value = serde_json::from_str(&ok(&show, &via)).unwrap();
    // The listing was rewritten (it named the consultant), and what is shown is the proven.
    assert!(proxy.swaps.load(Ordering::Relaxed) > 0, "the proxy did not lie");
    assert_eq!(shown["requester"], consultant_account.as_str(), "{shown}");
    assert_eq!(shown["requester_name"], "consultant", "{shown}");
    assert_eq!(shown["status"], "pending", "{shown}");
    let out = ok(&approve, &via);
    assert!(out.contains(&format!("from {consultant_account} (consultant), for")), "{out}");
    assert!(!out.contains("Dr. Own GP"), "{out}");
    assert!(out.contains(&format!("wrapped to {consultant_account}")), "{out}");
    assert!(!out.contains(&mallory_account), "{out}");
    // The renamed directory does reach the wallet: a listing that decides nothing shows it.
    let listed = ok(&["consent", "who-can-see", "--wallet", &c.patient], &via);
    assert!(listed.contains(&format!("{consultant_account} (Dr. Own GP)")), "{listed}");
    assert!(proxy.seen().iter().any(|r| r.starts_with(&format!("GET {only}"))));
    drop(proxy);
    assert_eq!(keys_shared(&c.patient, &env), vec![consultant_account]);
}

/// A directory that gives the doctor registered as `name` the name `shown` instead.
pub(crate) fn renamed(name: &str, shown: &str) -> Lie {
    Lie::Swap {
        victim: format!("\"name\":\"{name}\""),
        attacker: format!("\"name\":\"{shown}\""),
        only: "/v1/doctors".into(),
    }
}

/// Runs `command` through a node that resolves the Patient-ID of `victim` (an account) to
/// `attacker`, and checks that the node lied and the command was refused, saying `said`; the
/// proxy, for what else the caller checks.
fn refused_when_a_patient_id_names(
    node: &Node,
    (victim, attacker): (&str, &str),
    command: &[&str],
    said: &str,
) -> KeySwappingProxy {
    let lie = Lie::Swap {
        victim: victim.to_owned(),
        attacker: attacker.to_owned(),
        only: "/v1/patients/".to_owned(),
    };
    let proxy = KeySwappingProxy::lying(node.port, lie);
    let err = fails(command, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(proxy.lies() > 0, "the proxy did not lie: {err}");
    assert!(err.contains(said), "{command:?}: {err}");
    proxy
}

/// A Patient-ID is resolved by the node: one that resolves it to a doctor's account (whose key
/// proves, so a new record's key would be wrapped to that doctor) gets nothing. `record add`
/// is refused before any blob is stored or anything is sent; straight to the node, the same
/// command files the record for the patient.
#[test]
fn a_patient_id_a_node_resolves_to_no_patient_gets_no_record() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let c = cast(tmp.path(), &node);
    let (_, mallory_account) = onboard(tmp.path(), &node, &c.hospital, "mallory");
    let patient_account = crate::consent::account_of(&c.patient);
    let file = tmp.path().join("ecg.txt");
    std::fs::write(&file, b"sinus rhythm, 72 bpm").unwrap();
    let file = file.display().to_string();
    let add = ["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id]
        .into_iter()
        .chain(["--file", &file, "--category", "lab-report"])
        .collect::<Vec<_>>();

    let said = format!(
        "the node resolves Patient-ID {} to account {mallory_account}, which the ledger proves \
         is no patient",
        c.patient_id
    );
    let proxy =
        refused_when_a_patient_id_names(&node, (&patient_account, &mallory_account), &add, &said);
    proxy.sent_nothing("through the lying node");
    drop(proxy);
    let out = ok(&add, &env);
    assert!(out.contains("record "), "{out}");
}

/// A node that resolves a Patient-ID to another hospital's patient, or to a doctor, gets
/// no registering hospital's amendment of the details (sealed to the account it named): the
/// account must be proven a patient of the hospital the node names, and the hospital amends
/// only its own. Named a doctor, a doctor's record add is refused too. A patient's own export
/// and a grantee's take the Patient resource only from a view of the patient asked for.
/// Nothing is stored, sent or written.
#[test]
fn a_patient_id_a_node_resolves_to_another_hospitals_patient_gets_no_details() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let url = node.url.as_str();
    let env = [("MEDLEDGER_NODE", url)];
    let c = cast(tmp.path(), &node);
    let (_, mallory_account) = onboard(tmp.path(), &node, &c.hospital, "mallory");
    // A second hospital and its own patient.
    let second = crate::registry::wallet(tmp.path(), "second", url);
    let out = ok(
        &["hospital", "admit", "--wallet", &node.regulator(), "--identity"]
            .into_iter()
            .chain([crate::registry::identity(&second).as_str()])
            .chain(["--registration-id", "GOV-2", "--name", "Second", "--city", "York"])
            .chain(["--specialisation", "oncology", "--contact", "+44 0"])
            .collect::<Vec<_>>(),
        &env,
    );
    let second_account = account(&out);
    let register = |hospital: &str, name: &str| {
        crate::registry::register_patient(tmp.path(), url, hospital, name).1
    };
    let other_account = register(&second, "Sam Other");
    let patient_account = crate::consent::account_of(&c.patient);
    let amend = ["patient", "amend", &c.patient_id, "--wallet", &c.hospital, "--phone", "+44 9"];
    let file = tmp.path().join("ecg.txt");
    std::fs::write(&file, b"sinus rhythm, 72 bpm").unwrap();
    let file = file.display().to_string();
    let add = ["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id]
        .into_iter()
        .chain(["--file", &file, "--category", "lab-report"])
        .collect::<Vec<_>>();
    let another_hospitals = format!(
        "the node resolves Patient-ID {} to account {other_account} of hospital {}, but the \
         ledger proves hospital {second_account} registered it",
        c.patient_id, c.hospital_account
    );
    let no_patient = format!(
        "the node resolves Patient-ID {} to account {mallory_account}, which the ledger proves \
         is no patient",
        c.patient_id
    );
    // (Another hospital's patient named for a doctor's `record add` would pass a lie that
    // names that hospital too: the doctor may treat patients of any hospital, so only the
    // hospital's own amendment can tell.)
    let cases = [
        (&other_account, &another_hospitals, &amend[..]),
        (&mallory_account, &no_patient, &amend[..]),
        (&mallory_account, &no_patient, &add[..]),
    ];
    for (attacker, said, command) in cases {
        let proxy =
            refused_when_a_patient_id_names(&node, (&patient_account, attacker), command, said);
        proxy.sent_nothing(&format!("{command:?}"));
    }
    // The patient's own export and a grantee's take the Patient resource from the node's view
    // of the Patient-ID only if it is of the patient asked for: a node that gives the view of
    // a sibling patient of the same hospital (proven a patient of it) gets nothing written.
    let sibling_account = register(&c.hospital, "Sib Ling");
    ok(&["consent", "grant", "--wallet", &c.patient, "--grantee", &c.doctor_account], &env);
    let bundle = tmp.path().join("bundle.json").display().to_string();
    let own = ["export", "--wallet", &c.patient, "--fhir", "-o", &bundle];
    let grantee = ["export", "--wallet", &c.doctor, "--fhir", "-o", &bundle, "--patient"]
        .into_iter()
        .chain([patient_account.as_str()])
        .collect::<Vec<_>>();
    let not_yours = format!("is account {sibling_account}, not yours ({patient_account})");
    let not_theirs = format!("is account {sibling_account}, not patient {patient_account}");
    for (command, said) in [(&own[..], &not_yours), (&grantee[..], &not_theirs)] {
        let proxy = refused_when_a_patient_id_names(
            &node,
            (&patient_account, &sibling_account),
            command,
            said,
        );
        assert!(!std::path::Path::new(&bundle).exists(), "{command:?}: a bundle was written");
        drop(proxy);
        ok(command, &env);
        std::fs::remove_file(&bundle).unwrap();
    }
    // Through the node itself, both go through.
    ok(&amend, &env);
    let out = ok(&add, &env);
    assert!(out.contains("record "), "{out}");
}

/// An account's registration (and the encryption key it set) never changes, so a wallet
/// proves it once per command: a grant that wraps the keys of three records by one doctor
/// to a consultant asks for the consultant's registration (its key), the doctor's and the
/// hospital's above them once, not once per record.
#[test]
fn a_wallet_proves_an_accounts_registration_once_per_command() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let c = cast(tmp.path(), &node);
    let (_, consultant_account) = onboard(tmp.path(), &node, &c.hospital, "consultant");
    for i in 0..3 {
        let name = format!("note-{i}.txt");
        add_record(tmp.path(), &c, &env, (&name, "sinus rhythm"), ("lab-report", "2026-03-01"));
    }
    let honest = KeySwappingProxy::lying(node.port, Lie::All(Vec::new()));
    let grant = ["consent", "grant", "--wallet", &c.patient, "--grantee", &consultant_account];
    let out = ok(&grant, &[("MEDLEDGER_NODE", honest.url.as_str())]);
    assert!(out.contains("data keys of 3 record(s) wrapped"), "{out}");
    let seen = honest.seen();
    let proofs = |account: &str| {
        let path = format!("/v1/accounts/{account}/encryption-key");
        seen.iter().filter(|r| r.starts_with("GET ") && r.contains(&path)).count()
    };
    for account in [&consultant_account, &c.doctor_account, &c.hospital_account] {
        assert_eq!(proofs(account), 1, "{account}: {seen:#?}");
    }
}

/// A key proof names the transaction that registered the account, but its receipt is the
/// node's word and a refused transaction is in the log too. Mallory, a doctor, signs an
/// `OnboardDoctor` naming the consultant's (public) signing key beside her own encryption
/// key; the ledger refuses it (only a hospital onboards a doctor), yet it is in the log. A
/// node that serves it as the consultant's registration, its receipt rewritten to "applied",
/// gets nothing: the registration's signer is not proven to be a hospital, so the patient's
/// grant to the consultant stops before any key is wrapped or anything is sent.
#[test]
fn a_registration_signed_by_one_who_may_not_register_proves_no_key() {
    use medledger_client::{NodeClient, Signer, Wallet};
    use medledger_core::{
        block::{Created, Outcome},
        tx::{OnboardDoctor, RegistryTx, TxBody},
    };
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let c = cast(tmp.path(), &node);
    let (consultant, consultant_account) = onboard(tmp.path(), &node, &c.hospital, "consultant");
    let (mallory, mallory_account) = onboard(tmp.path(), &node, &c.hospital, "mallory");
    let unlock = |wallet: &str| {
        let mut w = Wallet::load(wallet).unwrap();
        (w.unlock(PASS).unwrap(), w.account())
    };
    let (consultant_id, consultant_acc) = unlock(&consultant);
    let (mallory_id, mallory_acc) = unlock(&mallory);
    assert_eq!(consultant_acc.to_string(), consultant_account);
    assert_eq!(mallory_acc.to_string(), mallory_account);

    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
    let forged = TxBody::Registry(RegistryTx::OnboardDoctor(OnboardDoctor {
        key: consultant_id.signing.public_key(),
        encryption_key: mallory_id.decryption.public_key(),
        registration_number: "GMC-forged".into(),
        name: "consultant".into(),
        specialisation: "gp".into(),
    }));
    let forged = medledger_client::tx::build(&mallory_id, mallory_acc, &chain, 1, forged);
    let _ = http(node.port, "POST", "/v1/transactions", &forged.encode()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = NodeClient::new(&node.url)
        .unwrap()
        .signed_by(Signer::new(mallory_id.signing.clone(), mallory_acc));
    let mut proof = rt.block_on(client.transaction(&forged.hash())).expect("in the log");
    assert!(matches!(proof.receipt.outcome, Outcome::Refused { .. }), "{:?}", proof.receipt);
    proof.receipt.outcome =
        Outcome::Applied { created: Some(Created::Account { account: consultant_acc }) };
    let made_up = medledger_api::AccountKeyProof {
        account: consultant_acc,
        encryption_key: mallory_id.decryption.public_key(),
        registration: Some(proof),
    };
    let lie = Lie::Answer {
        path: format!("/v1/accounts/{consultant_account}/encryption-key"),
        body: serde_json::to_vec(&made_up).unwrap(),
    };
    let proxy = KeySwappingProxy::lying(node.port, lie);
    add_ecg(tmp.path(), &c, &env);
    let grant = ["consent", "grant", "--wallet", &c.patient, "--grantee", &consultant_account];
    let err = fails(&grant, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(proxy.lies() > 0, "the proxy did not lie: {err}");
    let said = format!(
        "its registration was signed by {mallory_account}, which the ledger does not prove may register it"
    );
    assert!(err.contains(&said), "{err}");
    let seen = proxy.seen();
    assert!(!seen.iter().any(|r| r.starts_with("PUT ")), "a key was stored: {seen:?}");
    drop(proxy);
    // Straight to the node, the grant wraps the key to the consultant.
    let out = ok(&grant, &env);
    assert!(out.contains(&format!("wrapped to {consultant_account}")), "{out}");
}

/// The cast's doctor files `text` for the cast's patient as a record of `category` dated
/// `date`: its PMR-ID.
fn add_record(
    dir: &std::path::Path,
    c: &crate::registry::Cast,
    env: &[(&str, &str)],
    (name, text): (&str, &str),
    (category, date): (&str, &str),
) -> String {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    crate::fhir_export::add_record(&c.doctor, &c.patient_id, &file, category, date, env)
}

/// A client of the node signing as the (unlocked) wallet `wallet`, and a runtime to drive it.
pub(crate) fn client_of(
    wallet: &str,
    node: &Node,
) -> (tokio::runtime::Runtime, medledger_client::NodeClient) {
    use medledger_client::{NodeClient, Signer, Wallet};
    let mut w = Wallet::load(wallet).unwrap();
    let id = w.unlock(PASS).unwrap();
    let client =
        NodeClient::new(&node.url).unwrap().signed_by(Signer::new(id.signing, w.account()));
    (tokio::runtime::Runtime::new().unwrap(), client)
}

/// `body` signed by the account of `wallet` (its first transaction, nonce 1) and sent straight
/// to the node, which orders it and refuses it: a refused transaction is in the log all the
/// same. Returns its hash and its proof as `reader` fetches it, the receipt rewritten to say
/// applied, as a lying node would serve it.
pub(crate) fn refused_served_applied(
    node: &Node,
    wallet: &str,
    body: medledger_core::tx::TxBody,
    reader: &str,
) -> (medledger_core::Hash, medledger_api::TxProofResponse) {
    use medledger_core::block::Outcome;
    let mut w = medledger_client::Wallet::load(wallet).unwrap();
    let id = w.unlock(PASS).unwrap();
    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
    let tx = medledger_client::tx::build(&id, w.account(), &chain, 1, body);
    let _ = http(node.port, "POST", "/v1/transactions", &tx.encode()).unwrap();
    let (rt, client) = client_of(reader, node);
    let mut proof = rt.block_on(client.transaction(&tx.hash())).expect("in the log");
    assert!(matches!(proof.receipt.outcome, Outcome::Refused { .. }), "{:?}", proof.receipt);
    proof.receipt.outcome = Outcome::Applied { created: None };
    (tx.hash(), proof)
}

/// What the node answers `path` with, as JSON `T`, and its JSON with `edit` applied.
fn edited<T: serde::Serialize>(value: &T, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut json = serde_json::to_value(value).unwrap();
    edit(&mut json);
    serde_json::to_vec(&json).unwrap()
}

/// A record's key is wrapped to anyone only as its mint transaction proves the record: a node
/// that relabels a psychiatric note as a lab report in its listing (so that a grant of lab
/// reports would hand out its key), or serves under the lab report's PMR-ID the note's key
/// beside the lab report's view with the note's content, or the note's whole view, gets no key
/// at all: the wallet names what differs, and nothing is stored or shared. Straight to the
/// node, the same grant and share wrap the lab report's key alone.
#[test]
fn a_record_a_node_relabels_or_passes_off_as_another_gets_no_key_wrapped() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let c = cast(tmp.path(), &node);
    let (_, consultant) = onboard(tmp.path(), &node, &c.hospital, "consultant");
    let note = ("note.txt", "low mood for six weeks; sertraline 50 mg");
    let note = add_record(tmp.path(), &c, &env, note, ("psychiatry", "2021-01-26"));
    let lab = ("lipids.txt", "LDL 2.1 mmol/L");
    let lab = add_record(tmp.path(), &c, &env, lab, ("lab-report", "2021-02-01"));
    let (rt, client) = client_of(&c.patient, &node);
    let view = |pmr: &str| rt.block_on(client.record(pmr)).unwrap().unwrap();
    let (note_view, lab_view) = (view(&note), view(&lab));
    let note_key = medledger_api::OwnKey {
        wrapped_hex: hex::encode(rt.block_on(client.own_wrapped_key(&note)).unwrap().unwrap()),
        tx: None,
    };
    let note_key = serde_json::to_vec(&note_key).unwrap();
    let at = |pmr: &str| format!("/v1/records/{pmr}");
    let key_at = |pmr: &str| format!("/v1/records/{pmr}/key");
    let no_key_stored = |proxy: &KeySwappingProxy, err: &str| {
        assert!(proxy.lies() > 0, "the proxy did not lie: {err}");
        let seen = proxy.seen();
        assert!(!seen.iter().any(|r| r.starts_with("PUT ")), "a key was stored: {seen:?}");
    };

    // The listing relabels the note; a grant of lab reports wraps nothing and says why.
    let lie = Lie::Swap {
        victim: r#""category":"psychiatry""#.into(),
        attacker: r#""category":"lab_report""#.into(),
        only: "/v1/records?patient=".into(),
    };
    let proxy = KeySwappingProxy::lying(node.port, lie);
    let grant = ["consent", "grant", "--wallet", &c.patient, "--grantee", &consultant]
        .into_iter()
        .chain(["--scope", "categories:lab-report"])
        .collect::<Vec<_>>();
    let err = fails(&grant, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(
        err.contains(&format!("record {note} is not as its mint transaction proves it")),
        "{err}"
    );
    assert!(err.contains("its mint says category Psychiatry, the node lists LabReport"), "{err}");
    no_key_stored(&proxy, &err);
    drop(proxy);
    assert!(keys_shared(&c.patient, &env).is_empty());

    // Under the lab report's PMR-ID: the note's key, with the lab report's view carrying the
    // note's content, and then with the note's whole view.
    let share = ["record", "share", &lab, "--wallet", &c.patient, "--with", &consultant];
    let content_swapped = edited(&lab_view, |v| {
        v["content"] = serde_json::to_value(note_view.content).unwrap();
        v["cid"] = serde_json::to_value(&note_view.cid).unwrap();
    });
    let passed_off = edited(&note_view, |v| v["pmr"] = serde_json::Value::from(lab.as_str()));
    for (view, said) in [
        (content_swapped, format!("its mint says content {}", lab_view.content)),
        (passed_off, "its PMR-ID does not name its visit date 2021-01-26".to_owned()),
    ] {
        let lie = Lie::All(vec![
            Lie::Answer { path: at(&lab), body: view },
            Lie::Answer { path: key_at(&lab), body: note_key.clone() },
        ]);
        let proxy = KeySwappingProxy::lying(node.port, lie);
        let err = fails(&share, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
        assert!(
            err.contains(&format!("record {lab} is not as its mint transaction proves it")),
            "{err}"
        );
        assert!(err.contains(&said), "{err}");
        no_key_stored(&proxy, &err);
        drop(proxy);
    }
    assert!(keys_shared(&c.patient, &env).is_empty());

    // Straight to the node: the lab report's key alone, to the consultant.
    let out = ok(&share, &env);
    assert!(out.contains(&format!("record {lab}: data key wrapped to {consultant}")), "{out}");
    let out = ok(&grant, &env);
    assert!(out.contains("data keys of 1 record(s) wrapped"), "{out}");
    assert_eq!(keys_shared(&c.patient, &env), vec![consultant.clone(), consultant]);
}

/// A case's key is wrapped to anyone only as the case's open transaction proves the case: a
/// node that serves, under one case's id, another case's description and key gets nothing
/// stored or shared; straight to the node, the share goes through.
#[test]
fn a_case_a_node_passes_off_as_another_gets_no_key_wrapped() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let c = cast(tmp.path(), &node);
    let (_, consultant) = onboard(tmp.path(), &node, &c.hospital, "consultant");
    let open = |title: &str| crate::cases::open_case(&c, &env, title);
    let (knee, psych) = (open("Knee arthroscopy"), open("Psychiatric admission"));
    let (rt, client) = client_of(&c.patient, &node);
    let knee_view = rt.block_on(client.case(&knee)).unwrap().unwrap();
    let psych_view = rt.block_on(client.case(&psych)).unwrap().unwrap();
    let (psych_bytes, psych_tx) = rt.block_on(client.own_case_key(&psych)).unwrap().unwrap();
    let psych_key = medledger_api::OwnKey { wrapped_hex: hex::encode(psych_bytes), tx: psych_tx };
    let swapped = edited(&knee_view, |v| {
        v["description"] = serde_json::to_value(psych_view.description).unwrap();
    });
    let lie = Lie::All(vec![
        Lie::Answer { path: format!("/v1/cases/{knee}"), body: swapped },
        Lie::Answer {
            path: format!("/v1/cases/{knee}/key"),
            body: serde_json::to_vec(&psych_key).unwrap(),
        },
    ]);
    let proxy = KeySwappingProxy::lying(node.port, lie);
    let share = ["case", "share", &knee, "--wallet", &c.patient, "--with", &consultant];
    let err = fails(&share, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(proxy.lies() > 0, "the proxy did not lie: {err}");
    assert!(
        err.contains(&format!("case {knee} is not as its open transaction proves it")),
        "{err}"
    );
    assert!(err.contains(&format!("its open says description {}", knee_view.description)), "{err}");
    let seen = proxy.seen();
    assert!(!seen.iter().any(|r| r.starts_with("PUT ")), "a key was stored: {seen:?}");
    assert!(!seen.iter().any(|r| r.starts_with("POST ")), "something was sent: {seen:?}");
    drop(proxy);
    let out = ok(&share, &env);
    assert!(out.contains(&format!("case {knee}: key wrapped to {consultant}")), "{out}");
}

/// A case's opener seals an entry, and its patient shares the case, only under a key whose
/// wrapping transaction the wallet proves (the case's open, or a key share by the case's
/// patient or opener): a node that serves a key of its own choosing, wrapped to the wallet
/// under the case's context, naming the case's real open or no transaction, gets no entry
/// sealed under it and no share; nothing is stored or sent. Straight to the node both go
/// through, also after the patient shared the key again to the opener (the open's blob is
/// then replaced, and the share proves the new one).
#[test]
fn a_case_key_a_node_substitutes_seals_no_entry_and_is_not_shared() {
    use medledger_client::{Wallet, cases::case_context, envelope};
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let c = cast(tmp.path(), &node);
    let (_, consultant) = onboard(tmp.path(), &node, &c.hospital, "consultant");
    let case = crate::cases::open_case(&c, &env, "Knee arthroscopy");
    let (rt, client) = client_of(&c.doctor, &node);
    let view = rt.block_on(client.case(&case)).unwrap().unwrap();
    // The node's own key, wrapped to each wallet exactly as a real one would be, said to be
    // wrapped by the case's real open, or by nothing.
    let substitute = |wallet: &str, tx: Option<medledger_core::Hash>| {
        let to = Wallet::load(wallet).unwrap().encryption_key();
        let key = envelope::DataKey::generate().unwrap();
        let wrapped = envelope::wrap_key(&key, &to, &case_context(&view.description)).unwrap();
        let body = medledger_api::OwnKey {
            wrapped_hex: hex::encode(medledger_core::encoding::encode(&wrapped)),
            tx,
        };
        Lie::Answer {
            path: format!("/v1/cases/{case}/key"),
            body: serde_json::to_vec(&body).unwrap(),
        }
    };
    let append = ["case", "append", &case, "--wallet", &c.doctor, "--text", "effusion drained"];
    let share = ["case", "share", &case, "--wallet", &c.patient, "--with", &consultant];
    for (command, wallet) in [(&append[..], &c.doctor), (&share[..], &c.patient)] {
        for (tx, said) in
            [(Some(view.open_tx), "filed no such key"), (None, "names no transaction")]
        {
            let proxy = KeySwappingProxy::lying(node.port, substitute(wallet, tx));
            let err = fails(command, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
            assert!(proxy.lies() > 0, "the proxy did not lie: {err}");
            assert!(
                err.contains(&format!("the key of case {case} the node serves for you"))
                    && err.contains("is not proven to be the case's")
                    && err.contains(said),
                "{err}"
            );
            proxy.sent_nothing("under a substituted case key");
            drop(proxy);
        }
        ok(command, &env);
    }
    // The patient shares the key to the opener again: the opener's key is now the share's.
    let doctor = crate::consent::account_of(&c.doctor);
    ok(&["case", "share", &case, "--wallet", &c.patient, "--with", &doctor], &env);
    ok(&["case", "append", &case, "--wallet", &c.doctor, "--text", "second look"], &env);
    // A delegate the patient gave the key does not pass it on (the ledger would take it and
    // replace the opener's key with one no wallet uses): refused, nothing sent.
    let (delegate, delegate_account) =
        crate::registry::register_patient(tmp.path(), &node.url, &c.hospital, "D. Elegate");
    ok(&["consent", "delegate", &delegate_account, "--wallet", &c.patient], &env);
    ok(&["case", "share", &case, "--wallet", &c.patient, "--with", &delegate_account], &env);
    let size = node.log_size();
    let err = fails(&["case", "share", &case, "--wallet", &delegate, "--with", &doctor], &env);
    assert!(err.contains("only case") && err.contains("nothing was shared"), "{err}");
    assert_eq!(node.log_size(), size, "a delegate's share reached the log");
    ok(&["case", "append", &case, "--wallet", &c.doctor, "--text", "third look"], &env);
}

/// A new record's key is wrapped to the patient's emergency key only if the transaction that
/// set the profile lets break-glass open records: a node whose profile view says it does,
/// when the patient said not, gets `record add` refused before anything is stored or sent;
/// straight to the node, the record is filed.
#[test]
fn a_profile_a_node_says_opens_records_gets_no_key_unless_its_transaction_does() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let c = cast(tmp.path(), &node);
    ok(&["emergency", "profile", "--wallet", &c.patient, "--blood-type", "O-"], &env);
    let file = tmp.path().join("ecg.txt");
    std::fs::write(&file, b"sinus rhythm, 72 bpm").unwrap();
    let file = file.display().to_string();
    let add = ["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id]
        .into_iter()
        .chain(["--file", &file, "--category", "lab-report"])
        .collect::<Vec<_>>();
    let lie = Lie::Swap {
        victim: r#""open_records":false"#.into(),
        attacker: r#""open_records":true"#.into(),
        only: "/v1/emergency/".into(),
    };
    let proxy = KeySwappingProxy::lying(node.port, lie);
    let err = fails(&add, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(proxy.lies() > 0, "the proxy did not lie: {err}");
    assert!(
        err.contains("the node says break-glass opens patient")
            && err.contains("but the transaction that set the profile says it does not"),
        "{err}"
    );
    proxy.sent_nothing("through the lying node");
    drop(proxy);
    let out = ok(&add, &env);
    assert!(out.contains("record ") && out.contains(" created"), "{out}");
}

/// A device seals readings only to a session its patient started, as the device's own
/// registration names the patient: a doctor who signs a `StartSession` on the patient's
/// device with a key of hers is refused by the ledger, yet the start is in the log; a node
/// that serves it as the device's applied session gets no reading sealed to that key, and
/// nothing is sent.
#[test]
fn a_session_started_by_anyone_but_the_devices_patient_gets_no_reading() {
    use medledger_core::{
        ids::AccountId,
        tx::{TxBody, devices::DeviceTx, devices::StartSession},
    };
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let s = crate::devices::setup(tmp.path(), &node);
    let (mallory, mallory_account) = onboard(tmp.path(), &node, &s.c.hospital, "mallory");
    let (rt, client) = client_of(&s.c.patient, &node);
    let device: AccountId = s.device.parse().unwrap();
    let real = rt.block_on(client.device_session(&s.session.parse().unwrap())).unwrap().unwrap();
    let her_key = DecryptionKey::generate().public_key();
    let start = StartSession {
        device,
        public_key: her_key,
        expires_at_ms: None,
        doctor: None,
        keys: Vec::new(),
    };
    let body = TxBody::Devices(DeviceTx::StartSession(start));
    let (forged, proof) = refused_served_applied(&node, &mallory, body, &s.c.patient);
    let view = edited(&real, |v| {
        v["id"] = serde_json::to_value(forged).unwrap();
        v["public_key"] = serde_json::to_value(her_key).unwrap();
        v["started_by"] = serde_json::Value::from(mallory_account.as_str());
    });
    let session = forged.to_string();
    let lie = Lie::All(vec![
        Lie::Answer { path: format!("/v1/device-sessions/{session}"), body: view },
        Lie::Answer {
            path: format!("/v1/transactions/{session}"),
            body: serde_json::to_vec(&proof).unwrap(),
        },
    ]);
    let proxy = KeySwappingProxy::lying(node.port, lie);
    let size = node.log_size();
    let simulate =
        ["device", "simulate", "--wallet", &s.device_wallet, "--session", &session, "--count", "3"];
    let err = fails(&simulate, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(proxy.lies() >= 2, "the proxy did not lie: {err}");
    let patient = crate::consent::account_of(&s.c.patient);
    assert!(
        err.contains(&format!(
            "it was started by {mallory_account}, not by the device's patient {patient}"
        )),
        "{err}"
    );
    proxy.sent_nothing("through the lying node");
    drop(proxy);
    assert_eq!(node.log_size(), size, "a reading reached the log");
    // The patient's own session still takes readings, straight from the node.
    let own = ["device", "simulate", "--wallet", &s.device_wallet, "--session", &s.session];
    ok(&[&own[..], &["--count", "3"]].concat(), &[("MEDLEDGER_NODE", node.url.as_str())]);
    assert!(node.log_size() > size);
}

/// A session's secret, and a doctor's thresholds, are sealed to the device's patient as the
/// device's own registration on the ledger names them: a node whose device view names
/// another account as the patient gets `device session start` and `device thresholds set`
/// refused before anything is stored or sent.
#[test]
fn a_device_a_node_gives_another_patient_gets_no_session_started_nor_thresholds() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let s = crate::devices::setup(tmp.path(), &node);
    let patient = crate::consent::account_of(&s.c.patient);
    let lie = Lie::Swap {
        victim: patient.clone(),
        attacker: s.c.doctor_account.clone(),
        only: "/v1/devices/".into(),
    };
    let proxy = KeySwappingProxy::lying(node.port, lie);
    let start = ["device", "session", "start", "--wallet", &s.c.patient, "--device", &s.device];
    let err = fails(&start, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(proxy.lies() > 0, "the proxy did not lie: {err}");
    assert!(
        err.contains(&format!(
            "the node says device {} is patient {}'s, but its registration on the ledger names patient {patient}",
            s.device, s.c.doctor_account
        )),
        "{err}"
    );
    assert!(err.contains("no session was started"), "{err}");
    proxy.sent_nothing("through the lying node");
    drop(proxy);

    // The doctor's thresholds, with another patient named: one the doctor's hospital
    // registered, whose key the wallet would otherwise seal the bands to.
    let (_, other) =
        crate::registry::register_patient(tmp.path(), &node.url, &s.c.hospital, "O. Ther");
    let lie =
        Lie::Swap { victim: patient.clone(), attacker: other.clone(), only: "/v1/devices/".into() };
    let proxy = KeySwappingProxy::lying(node.port, lie);
    let set = ["device", "thresholds", "set", "--wallet", &s.c.doctor, "--device", &s.device]
        .into_iter()
        .chain(["--heart-rate", "55..105,40..140"])
        .collect::<Vec<_>>();
    let err = fails(&set, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(proxy.lies() > 0, "the proxy did not lie: {err}");
    assert!(
        err.contains(&format!(
            "the node says device {} is patient {other}'s, but its registration on the ledger names patient {patient}",
            s.device
        )) && err.contains("no thresholds were set"),
        "{err}"
    );
    proxy.sent_nothing("thresholds through the lying node");
    drop(proxy);
    ok(&set, &[("MEDLEDGER_NODE", node.url.as_str())]);
}

/// A break-glass reason is sealed to the declaring doctor's hospital as the doctor's own
/// registration proves it, and a review's finding to the patient the declaring transaction
/// names: a node that names another hospital in its doctor directory, or another patient in
/// its view of the break-glass, is handed neither (the real hospital and the real patient
/// read them). A hospital that is not the doctor's is refused before anything is sent, even
/// when a node serves it the break-glass as its own to review.
#[test]
fn a_break_glass_reason_and_its_review_are_sealed_only_to_whom_the_ledger_proves() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let c = cast(tmp.path(), &node);
    let (keeper, keeper_account) = crate::portal::keeper_hospital(tmp.path(), &node);
    let (_, stranger) =
        crate::registry::register_patient(tmp.path(), &node.url, &c.hospital, "S. Tranger");
    ok(&["emergency", "profile", "--wallet", &c.patient, "--blood-type", "O-"], &env);
    let reason = "unconscious after a road accident";
    let finding = "justified: patient unconscious";

    // The doctor directory names the keeper as the doctor's hospital.
    let lie = Lie::Swap {
        victim: c.hospital_account.clone(),
        attacker: keeper_account.clone(),
        only: "/v1/doctors".into(),
    };
    let proxy = KeySwappingProxy::lying(node.port, lie);
    let declare = ["emergency", "break-glass", "--wallet", &c.doctor, "--patient", &c.patient_id]
        .into_iter()
        .chain(["--code", "unconscious", "--reason", reason])
        .collect::<Vec<_>>();
    // A wallet whose own registration proves no doctor (the hospital here, which the lying
    // directory could list as one) is refused before anything is sent.
    let size = node.log_size();
    let by_hospital = ["emergency", "break-glass", "--wallet", &c.hospital, "--patient"]
        .into_iter()
        .chain([c.patient_id.as_str(), "--code", "unconscious", "--reason", reason])
        .collect::<Vec<_>>();
    let err = fails(&by_hospital, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(err.contains("only a doctor may declare break-glass"), "{err}");
    proxy.sent_nothing("a break-glass by a hospital");
    assert_eq!(node.log_size(), size, "a hospital's break-glass reached the log");
    let out = ok(&declare, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    drop(proxy);
    let bg = crate::emergency::id_of(&out);
    let show =
        |wallet: &str| ok(&["emergency", "show", "--wallet", wallet, "--break-glass", &bg], &env);
    assert!(show(&c.hospital).contains(&format!("unconscious: {reason:?}")), "not the hospital's");

    // A hospital that is not the doctor's, served the view and the declaration as the
    // doctor's hospital would be: refused by the wallet, nothing sent.
    let (rt, client) = client_of(&c.hospital, &node);
    let id = bg.parse().unwrap();
    let view = serde_json::to_vec(&rt.block_on(client.break_glass(&id)).unwrap()).unwrap();
    let declared = serde_json::to_vec(&rt.block_on(client.transaction(&id)).unwrap()).unwrap();
    let lie = Lie::All(vec![
        Lie::Answer { path: format!("/v1/emergency/break-glass/{bg}"), body: view },
        Lie::Answer { path: format!("/v1/transactions/{bg}"), body: declared },
    ]);
    let proxy = KeySwappingProxy::lying(node.port, lie);
    let review = |wallet: &str| {
        ["emergency", "review", "--wallet", wallet, "--break-glass", &bg]
            .into_iter()
            .chain(["--finding", finding])
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let args = review(&keeper);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = fails(&args, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(proxy.lies() >= 2, "the proxy did not lie: {err}");
    assert!(err.contains(&format!("not a doctor of this hospital ({keeper_account})")), "{err}");
    proxy.sent_nothing("a review by a hospital not the doctor's");
    drop(proxy);

    // The view of the break-glass names another patient.
    let patient = crate::consent::account_of(&c.patient);
    let lie = Lie::Swap {
        victim: patient,
        attacker: stranger,
        only: "/v1/emergency/break-glass/".into(),
    };
    let proxy = KeySwappingProxy::lying(node.port, lie);
    let args = review(&c.hospital);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&args, &[("MEDLEDGER_NODE", proxy.url.as_str())]);
    assert!(proxy.lies() > 0, "the proxy did not lie");
    drop(proxy);
    assert!(show(&c.patient).contains(finding), "the finding is not the patient's");
}
