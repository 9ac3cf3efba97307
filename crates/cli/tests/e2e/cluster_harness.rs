//! What the cluster and fault tests share: the regulator signing from its wallet, a network of
//! N real `medledger up` processes (the genesis node and N-1 nodes the regulator admits, which
//! join with `up --join`), bounded waits on `GET /v1/cluster`, a writer thread that keeps
//! submitting and records what was acknowledged and what was refused, fault rules files
//! (`up --fault-rules`), and the offline check of every node's ledger once stopped.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use medledger_client::{Wallet, tx::build};
use medledger_core::{
    Hash,
    block::Outcome,
    ids::AccountId,
    keys::{DecryptionKey, PublicKey, SigningKey},
    tx::{AdmitHospital, NodeTx, RegistryTx, SealedRef, TxBody},
};
use medledger_node::DataDir;

use crate::harness::*;

/// How long the cluster may take to converge at each step.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// The regulator of the network node 1 created, signing with its wallet.
pub struct Regulator {
    pub identity: medledger_client::keystore::Identity,
    pub account: AccountId,
    pub chain: String,
    pub nonce: u64,
}

impl Regulator {
    pub fn of(node: &Node) -> Self {
        let mut wallet = Wallet::load(node.regulator_wallet()).unwrap();
        let identity = wallet.unlock(PASS).unwrap();
        let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
        Regulator { identity, account: wallet.account(), chain, nonce: 0 }
    }

    /// Signs `body` with the next nonce.
    pub fn sign(&mut self, body: TxBody) -> medledger_core::tx::SignedTransaction {
        self.nonce += 1;
        build(&self.identity, self.account, &self.chain, self.nonce, body)
    }

    /// Signs `body` and submits it to `port`; the receipt as JSON.
    pub fn submit(&mut self, port: u16, body: TxBody) -> serde_json::Value {
        let tx = self.sign(body);
        let deadline = Instant::now() + CONVERGE;
        loop {
            let r = http(port, "POST", "/v1/transactions", &tx.encode()).unwrap();
            if r.status == 200 {
                return r.json();
            }
            // A leader being elected: the write was not ordered; the same transaction again.
            let json = r.json();
            assert!(
                r.status == 503 && Instant::now() < deadline,
                "submitting to port {port}: {} {json}",
                r.status
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A hospital's admission (a unique name makes a unique transaction), and its account.
pub fn hospital(name: &str) -> (TxBody, AccountId) {
    let key = SigningKey::generate().public_key();
    let body = TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
        key,
        encryption_key: DecryptionKey::generate().public_key(),
        registration_id: format!("GOV-{name}"),
        name: name.to_owned(),
        city: "Leeds".into(),
        specialisation: "general".into(),
        contact: SealedRef { blob: Hash::of(name.as_bytes()), commitment: Hash::of(b"c") },
    }));
    (body, AccountId::from_initial_key(&key))
}

/// `GET /v1/cluster` of the node on `port`, if it answers.
pub fn cluster(port: u16) -> Option<serde_json::Value> {
    let r = http(port, "GET", "/v1/cluster", b"").ok()?;
    (r.status == 200).then(|| r.json())
}

/// Waits (bounded) until `done` holds of the views of the nodes on `ports`.
pub fn wait_for(
    what: &str,
    ports: &[u16],
    nodes: &[&Node],
    done: impl Fn(&[serde_json::Value]) -> bool,
) {
    wait_within(what, CONVERGE, ports, nodes, done);
}

/// [`wait_for`] with a time limit of its own.
pub fn wait_within(
    what: &str,
    limit: Duration,
    ports: &[u16],
    nodes: &[&Node],
    done: impl Fn(&[serde_json::Value]) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let views: Option<Vec<_>> = ports.iter().map(|p| cluster(*p)).collect();
        if let Some(views) = &views
            && done(views)
        {
            return;
        }
        if Instant::now() >= deadline {
            let logs: String =
                nodes.iter().map(|n| n.log_text()).collect::<Vec<_>>().join("\n---\n");
            panic!("{what}: not within {limit:?}; last views {views:#?}\n{logs}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Every view has the same height (at least `min`) and log root, and names the same leader.
pub fn converged(views: &[serde_json::Value], min: u64) -> bool {
    let first = &views[0];
    first["height"].as_u64().is_some_and(|h| h >= min)
        && first["leader"].is_u64()
        && views.iter().all(|v| {
            v["height"] == first["height"]
                && v["log_root"] == first["log_root"]
                && v["leader"] == first["leader"]
        })
}

pub fn voters(view: &serde_json::Value) -> Vec<u64> {
    view["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "voter")
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

/// A data directory with a node key only (what `medledger node init` makes).
pub fn node_key_in(dir: &std::path::Path) -> PublicKey {
    DataDir::new(dir).ensure_node_key().unwrap().public_key()
}

/// Writes a node's fault rules file (beside, then renamed into place, so that the node never
/// reads half a file; only its owner may write it).
pub fn write_rules(path: &Path, json: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// What a node logs each time it puts rules read from its file in force.
const RULES_IN_FORCE: &str = "fault rules now in force";

/// A network of real nodes on loopback ports: node i (1-based) is `nodes[i - 1]`, with its
/// Raft id i.
pub struct Network {
    pub nodes: Vec<Node>,
    /// Each node's fault rules file, when the network was started with them.
    pub rules: Vec<PathBuf>,
    /// The hospital the regulator admitted first, under which every node is admitted.
    pub hospital: AccountId,
    /// Extra arguments of `medledger up` every node was started with.
    up_args: Vec<String>,
}

/// What `medledger verify` found in the Raft log of a stopped node's data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftLogSpan {
    /// Entries in the log.
    pub entries: u64,
    /// The first and last index held.
    pub first: u64,
    pub last: u64,
    /// Entries up to this index were purged behind a snapshot, if any were.
    pub purged: Option<u64>,
}

impl RaftLogSpan {
    /// Parses verify's "raft log: OK (N entries, indexes F to L, ...; entries up to P purged
    /// behind a snapshot; ...)" line from its output.
    pub fn from_verify(out: &str) -> Self {
        let line = out
            .lines()
            .find(|l| l.starts_with("raft log: OK ("))
            .unwrap_or_else(|| panic!("no `raft log: OK (` line in verify's output:\n{out}"));
        let number_after = |word: &str| -> Option<u64> {
            let at = line.find(word)? + word.len();
            line[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
        };
        let entries = line["raft log: OK (".len()..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no entry count in {line:?}"));
        let first = number_after("indexes ").unwrap_or_else(|| panic!("no indexes in {line:?}"));
        let last = number_after(&format!("indexes {first} to "))
            .unwrap_or_else(|| panic!("no last index in {line:?}"));
        RaftLogSpan { entries, first, last, purged: number_after("entries up to ") }
    }
}

/// A stopped node's data directory after `medledger verify` passed on it.
#[derive(Debug)]
pub struct Verified {
    /// What verify printed.
    pub report: String,
    /// The hash of the last block's header (it chains every block, hence every transaction).
    pub tip: Hash,
    /// The state and index digests, recomputed from the stored tables.
    pub digests: medledger_ledger::state::Digests,
}

impl Network {
    /// Starts `n` nodes in `dir` (node 1 founds the network; the regulator admits a hospital
    /// and nodes 2..=n, which join), each with a fault rules file allowing everything when
    /// `faults`, and waits until all are voters with one tip. The network and its regulator.
    pub fn start(dir: &Path, n: usize, faults: bool) -> (Self, Regulator) {
        Self::start_with(dir, n, faults, &[])
    }

    /// [`Network::start`] with extra arguments of `medledger up` for every node
    /// (`--snapshot-every 20`, say).
    pub fn start_with(dir: &Path, n: usize, faults: bool, up_args: &[&str]) -> (Self, Regulator) {
        let up_args: Vec<String> = up_args.iter().map(|a| (*a).to_owned()).collect();
        let rules: Vec<PathBuf> = if faults {
            (1..=n).map(|i| dir.join(format!("node-{i}.rules.json"))).collect()
        } else {
            Vec::new()
        };
        for path in &rules {
            write_rules(path, r#"{"rules": []}"#);
        }
        let extra = |i: usize| -> Vec<String> {
            let mut a = up_args.clone();
            if let Some(path) = rules.get(i - 1) {
                a.extend(["--fault-rules".into(), path.display().to_string()]);
            }
            a
        };
        let first = extra(1);
        let first: Vec<&str> = first.iter().map(String::as_str).collect();
        let n1 = Node::start_with(&dir.join("node-1"), free_port(), &first);
        let mut regulator = Regulator::of(&n1);
        let (admit, hospital_account) = hospital("St. Mary's");
        regulator.submit(n1.port, admit);
        let mut nodes = vec![n1];
        let mut joining = Vec::new();
        for i in 2..=n {
            let dir = dir.join(format!("node-{i}"));
            let port = free_port();
            let node_key = node_key_in(&dir);
            let address = format!("http://127.0.0.1:{port}");
            regulator.submit(
                nodes[0].port,
                TxBody::Nodes(NodeTx::Admit { node_key, address, hospital: hospital_account }),
            );
            joining.push((dir, port));
        }
        let join = nodes[0].url.clone();
        for (i, (dir, port)) in (2..=n).zip(joining) {
            let mut a = vec!["--join".to_owned(), join.clone()];
            a.extend(extra(i));
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            nodes.push(Node::start_with(&dir, port, &a));
        }
        let net = Network { nodes, rules, hospital: hospital_account, up_args };
        let all: Vec<u64> = (1..=n as u64).collect();
        net.wait_all("every node a voter, one tip", |v| {
            v.iter().all(|v| voters(v) == all) && converged(v, 1)
        });
        (net, regulator)
    }

    /// The ports of nodes `ids` (Raft ids).
    pub fn ports(&self, ids: &[u64]) -> Vec<u16> {
        ids.iter().map(|i| self.node(*i).port).collect()
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[id as usize - 1]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// Every node's Raft id.
    pub fn ids(&self) -> Vec<u64> {
        (1..=self.nodes.len() as u64).collect()
    }

    /// [`wait_for`] on nodes `ids`.
    pub fn wait(&self, what: &str, ids: &[u64], done: impl Fn(&[serde_json::Value]) -> bool) {
        let nodes: Vec<&Node> = self.nodes.iter().collect();
        wait_for(what, &self.ports(ids), &nodes, done);
    }

    /// [`wait_for`] on every node.
    pub fn wait_all(&self, what: &str, done: impl Fn(&[serde_json::Value]) -> bool) {
        self.wait(what, &self.ids(), done);
    }

    /// [`Network::wait_all`] with a time limit of its own.
    pub fn wait_all_within(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) {
        let nodes: Vec<&Node> = self.nodes.iter().collect();
        wait_within(what, limit, &self.ports(&self.ids()), &nodes, done);
    }

    /// The leader node `id` knows of (after waiting, bounded, until it knows one among `among`).
    pub fn leader_seen_by(&self, id: u64, among: &[u64]) -> u64 {
        self.wait("a leader", &[id], |v| {
            v[0]["leader"].as_u64().is_some_and(|l| among.contains(&l))
        });
        cluster(self.node(id).port).unwrap()["leader"].as_u64().unwrap()
    }

    /// Sets each node's fault rules (`(id, json)`) and waits (bounded) until every one of them
    /// has put its new rules in force.
    pub fn set_rules(&self, rules: &[(u64, String)]) {
        let count = |id: u64| self.node(id).log_text().matches(RULES_IN_FORCE).count();
        let before: Vec<usize> = rules.iter().map(|(id, _)| count(*id)).collect();
        for (id, json) in rules {
            write_rules(&self.rules[*id as usize - 1], json);
        }
        let deadline = Instant::now() + LIMIT;
        for ((id, _), before) in rules.iter().zip(before) {
            while count(*id) <= before {
                assert!(
                    Instant::now() < deadline,
                    "node {id} did not put its new fault rules in force\n{}",
                    self.node(*id).log_text()
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Cuts every message between `side` and the other nodes, both ways.
    pub fn partition(&self, side: &[u64]) {
        let ids = self.ids();
        let other: Vec<u64> = ids.iter().copied().filter(|i| !side.contains(i)).collect();
        let cut = |to: &[u64]| format!(r#"{{"rules": [{{"to": {to:?}, "cut": true}}]}}"#);
        let rules: Vec<(u64, String)> = ids
            .iter()
            .map(|i| (*i, if side.contains(i) { cut(&other) } else { cut(side) }))
            .collect();
        self.set_rules(&rules);
    }

    /// Lifts every fault rule.
    pub fn heal(&self) {
        let rules: Vec<(u64, String)> =
            self.ids().into_iter().map(|i| (i, r#"{"rules": []}"#.to_owned())).collect();
        self.set_rules(&rules);
    }

    /// Admits a new node as an operator would, with the CLI: `medledger node init` makes its
    /// key in `dir`, the regulator admits it (`node admit`, under [`Network::hospital`], through
    /// node 1) at a free loopback port, and it starts with `up --join` node 1's URL and
    /// `--genesis-hash` (and the network's extra `up` arguments). Returns its Raft id and the
    /// admission's transaction hash; waits for nothing but its `/health`.
    pub fn admit_and_join(&mut self, dir: &Path) -> (u64, String) {
        let d = dir.display().to_string();
        let init = ok(&["node", "init", "--data-dir", &d, "--json"], &[]);
        let init: serde_json::Value = serde_json::from_str(&init).unwrap();
        let key = init["node_key"].as_str().unwrap().to_owned();
        let port = free_port();
        let first = &self.nodes[0];
        let admitted = ok(
            &[
                "node",
                "admit",
                "--wallet",
                &first.regulator(),
                "--node",
                &first.url,
                "--node-key",
                &key,
                "--address",
                &format!("http://127.0.0.1:{port}"),
                "--hospital",
                &self.hospital.to_string(),
                "--json",
            ],
            &[],
        );
        let admitted: serde_json::Value = serde_json::from_str(&admitted).unwrap();
        let id = admitted["node_id"].as_u64().unwrap();
        assert_eq!(id, self.nodes.len() as u64 + 1, "{admitted}");
        let genesis: medledger_core::block::Genesis =
            serde_json::from_slice(&std::fs::read(first.dir.join("genesis.json")).unwrap())
                .unwrap();
        let hash = genesis.hash().to_string();
        let mut args = vec!["--join", first.url.as_str(), "--genesis-hash", hash.as_str()];
        args.extend(self.up_args.iter().map(String::as_str));
        let node = Node::start_with(dir, port, &args);
        self.nodes.push(node);
        (id, admitted["tx_hash"].as_str().unwrap().to_owned())
    }

    /// Stops every node cleanly and runs `medledger verify` (within `limit` each) on each data
    /// directory, which must pass; what each one holds.
    pub fn stop_and_verify(&mut self, limit: Duration) -> Vec<Verified> {
        use redb::ReadableDatabase;
        for n in &mut self.nodes {
            n.stop();
        }
        self.nodes
            .iter()
            .map(|n| {
                let d = n.dir.to_str().unwrap();
                let out = cli_within(&["verify", "--data-dir", d], &[], limit);
                assert!(out.status.success(), "verify {d}\n{}", show(&out));
                let path = n.dir.join("ledger.redb");
                let facts = medledger_ledger::verify::stored_facts(&path).unwrap();
                let db = redb::ReadOnlyDatabase::open(&path).unwrap();
                let digests =
                    medledger_ledger::verify::state_digest(&db.begin_read().unwrap()).unwrap();
                let tip = *facts.block_hashes.last().expect("a block");
                Verified { report: stdout(&out), tip, digests }
            })
            .collect()
    }

    /// Stops every node cleanly, runs `medledger verify` on each data directory, and returns
    /// each node's committed transactions (hash and whether applied), in log order, checked to
    /// be the same on every node with the same tip.
    pub fn stop_and_check_ledgers(&mut self) -> Vec<(Hash, bool)> {
        self.stop_and_verify(Duration::from_secs(60));
        let mut first: Option<(Vec<(Hash, bool)>, Hash)> = None;
        for n in &self.nodes {
            let d = n.dir.to_str().unwrap();
            let ledger = medledger_ledger::Ledger::open(&n.dir.join("ledger.redb")).unwrap();
            let txs: Vec<(Hash, bool)> = (0..ledger.log_size())
                .map(|i| {
                    let r = ledger.transaction_at(i).unwrap().unwrap();
                    (r.tx.hash(), matches!(r.receipt.outcome, Outcome::Applied { .. }))
                })
                .collect();
            let tip = ledger.tip().hash;
            match &first {
                None => first = Some((txs, tip)),
                Some((t, h)) => {
                    assert!(*t == txs && *h == tip, "{d} holds another history than node 1")
                }
            }
        }
        let (txs, _) = first.unwrap();
        let mut seen = BTreeMap::new();
        for (h, _) in &txs {
            *seen.entry(*h).or_insert(0) += 1;
        }
        assert!(seen.values().all(|c| *c == 1), "a transaction is in the ledger twice");
        txs
    }
}

/// What a writer saw: each transaction acknowledged (receipt) and each refused (HTTP status,
/// 0 when the connection failed, and error code).
#[derive(Debug, Default)]
pub struct Writes {
    pub acked: Vec<(Hash, u64)>,
    pub failed: Vec<(Hash, u16, String)>,
}

/// A thread submitting hospital admissions one after another, round-robin over the nodes on
/// its target ports, until stopped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    targets: Arc<Mutex<Vec<u16>>>,
    acked: Arc<AtomicUsize>,
    handle: Option<thread::JoinHandle<(Regulator, Writes)>>,
}

impl Writer {
    pub fn start(mut regulator: Regulator, targets: Vec<u16>, tag: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(targets));
        let acked = Arc::new(AtomicUsize::new(0));
        let (s, t, a, tag) = (stop.clone(), targets.clone(), acked.clone(), tag.to_owned());
        let handle = thread::spawn(move || {
            let mut writes = Writes::default();
            let mut turn = 0;
            while !s.load(Ordering::SeqCst) {
                let port = {
                    let t = t.lock().unwrap();
                    turn += 1;
                    t[turn % t.len()]
                };
                let (body, _) = hospital(&format!("{tag} {}", regulator.nonce + 1));
                let tx = regulator.sign(body);
                let hash = tx.hash();
                match http(port, "POST", "/v1/transactions", &tx.encode()) {
                    Ok(r) if r.status == 200 => {
                        let receipt = r.json();
                        assert_eq!(receipt["tx_hash"], hash.to_string(), "{receipt}");
                        writes.acked.push((hash, receipt["height"].as_u64().unwrap()));
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => {
                        let code = serde_json::from_slice::<serde_json::Value>(&r.body)
                            .ok()
                            .and_then(|j| j["code"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        writes.failed.push((hash, r.status, code));
                        thread::sleep(Duration::from_millis(50));
                    }
                    Err(_) => {
                        writes.failed.push((hash, 0, String::new()));
                        thread::sleep(Duration::from_millis(50));
                    }
                }
            }
            (regulator, writes)
        });
        Writer { stop, targets, acked, handle: Some(handle) }
    }

    /// Writes acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// Stops writing to `port` (before its node is killed).
    pub fn avoid(&self, port: u16) {
        self.targets.lock().unwrap().retain(|p| *p != port);
    }

    /// Waits (bounded) until `more` further writes have been acknowledged.
    pub fn wait_for_more(&self, more: usize, what: &str) {
        let target = self.acked() + more;
        let deadline = Instant::now() + CONVERGE;
        while self.acked() < target {
            assert!(Instant::now() < deadline, "{what}: fewer than {more} writes acknowledged");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the writer: the regulator back (its nonce past every write) and what it saw.
    pub fn stop(mut self) -> (Regulator, Writes) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().expect("the writer panicked")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
