//! A seeded simulation of a 3-5 node network (issue 12, "Faults"): the real Raft stack of each
//! node (its redb Raft log and ledger in a temporary directory, the state machine with every
//! block check, the producer sealing blocks with the node's key, the membership driver) with
//! only the network between nodes simulated ([`net`]). A seed chooses the number of nodes,
//! the snapshot settings and a schedule of a few dozen steps: transactions submitted to a
//! node's producer queue, crashes and restarts, partitions, heals, lossy links and delays.
//! After every step each running node's ledger is checked ([`check`]): no two nodes hold
//! different blocks at one height, and every acknowledged transaction (one whose submitter got
//! a receipt, as the HTTP submit path answers) is in the ledger of every node that has reached
//! its height. At the end everything is healed and restarted; all nodes must converge to one
//! tip holding every acknowledged transaction and accept a new one, and the offline checks of
//! `medledger verify` (the ledger's full replay and the Raft log against it) pass on each.
//!
//! Honestly about determinism: every choice the simulation makes (steps, nodes, which message
//! is lost, delays) comes from the seed, but the nodes run on a multi-threaded tokio runtime in
//! real time (the state machine and the membership driver need `block_in_place`), redb writes
//! on its own thread and Raft's timers fire in wall-clock time, so a seed replays the same
//! schedule, not the same interleaving. A failure prints the seed and the step list; re-run it
//! with `MEDLEDGER_SIM_SEED=S`. Raft's timers run 5 times faster than a node's (heartbeat
//! 50 ms, election 150-300 ms) so that a seed takes about a second. A crash here drops the
//! node's handles without flushing its ledger (blocks since the last durable commit are
//! re-applied from the Raft log at restart); it cannot lose what the OS already holds, as
//! `kill -9` of a process cannot either (the e2e fault tests do that).
//!
//! Entry points: the tests below run 200 seeds in the test command; `scripts/sim-soak.sh
//! --seeds N [--first-seed S]` runs more in a release build (`MEDLEDGER_SIM_SEEDS`,
//! `MEDLEDGER_SIM_FIRST_SEED`).

mod check;
mod net;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use medledger_core::{
    Hash,
    block::{Genesis, Receipt},
    ids::AccountId,
    keys::{DecryptionKey, SigningKey},
    tx::{AdmitHospital, NodeTx, RegistryTx, SealedRef, SignedTransaction, Transaction, TxBody},
};
use medledger_ledger::Ledger;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{LogClosed, PreVerified, Raft, SnapshotSettings, Timers, start_timed, transport};
use crate::{
    producer::{self, ProduceError, Proposer, Submission},
    storage::StorageFault,
};

/// Raft's timers in the simulation: a node's, five times faster.
const TIMERS: Timers = Timers { heartbeat_ms: 50, election_ms: (150, 300) };

/// How long the network may take to converge at the end, or a node to stop, before the seed
/// fails rather than hang.
const LIMIT: Duration = Duration::from_secs(30);

/// How long the network may take to form.
const FORMING_LIMIT: Duration = LIMIT;

/// A network that takes longer than this to form is counted as slow.
const FORMING_SLOW: Duration = Duration::from_secs(5);

/// While the network forms, a transaction this often keeps blocks, and so the membership
/// driver (woken by each applied block, else once a second), going.
const FORMING_TICK: Duration = Duration::from_millis(60);

/// How long a submitter waits for its receipt.
const RECEIPT_WAIT: Duration = Duration::from_secs(10);

/// One step of a schedule, as run (the nodes it names are resolved when it runs).
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `count` transactions to the queue of node `to`.
    Submit { to: u64, count: usize },
    /// Node `id` crashes.
    Crash(u64),
    /// Node `id` restarts from its data directory.
    Restart(u64),
    /// The links between these nodes and the others are cut.
    Partition(BTreeSet<u64>),
    /// Every link open, lossless, without delay.
    Heal,
    /// Each message leg is lost with this chance.
    Lossy(f64),
    /// Each message leg is delayed by up to this long.
    Delay(Duration),
    /// Time passes.
    Wait(Duration),
}

/// A node's state as convergence looks at it.
#[derive(Debug)]
#[allow(dead_code, reason = "`id` is read through Debug, in the failure message")]
struct View {
    id: u64,
    tip: (u64, Hash),
    applied: Option<u64>,
    last_log: Option<u64>,
    state: openraft::ServerState,
    term: u64,
    leader: Option<u64>,
    /// The fault it stopped on, or its Raft core's fatal error.
    fault: Option<String>,
}

/// A node that is up: its handles and tasks.
struct Running {
    raft: Raft,
    ledger: Arc<Ledger>,
    queue: mpsc::Sender<Submission>,
    fault: Arc<StorageFault>,
    closed: LogClosed,
    tasks: Vec<JoinHandle<()>>,
    /// Dropped when the node stops: what it is sending dies with it.
    alive: tokio::sync::watch::Sender<()>,
}

/// One run of one seed.
struct Sim {
    seed: u64,
    /// Draws the schedule.
    rng: fastrand::Rng,
    dir: tempfile::TempDir,
    genesis: Genesis,
    regulator: SigningKey,
    nonce: u64,
    /// The node keys, node `i`'s at `i - 1`.
    keys: Vec<Arc<SigningKey>>,
    snapshots: SnapshotSettings,
    net: Arc<net::Net>,
    nodes: BTreeMap<u64, Option<Running>>,
    /// Receipts of acknowledged transactions, as their submitters got them.
    acked: Arc<Mutex<Vec<Receipt>>>,
    /// Submitters still waiting for a receipt.
    waiting: tokio::task::JoinSet<()>,
    seen: check::Heights,
    /// How far each node's ledger was checked.
    checked: BTreeMap<u64, check::Checked>,
    /// What has run, for the failure message.
    log: Vec<String>,
}

/// A failed seed: why, and what ran.
#[derive(Debug)]
struct Failure {
    seed: u64,
    why: String,
    log: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "simulation seed {} failed: {}", self.seed, self.why)?;
        writeln!(f, "steps (re-run with MEDLEDGER_SIM_SEED={}):", self.seed)?;
        for line in &self.log {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// What a seed did, for the soak's summary.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    nodes: usize,
    steps: usize,
    acked: usize,
    height: u64,
    /// Snapshots installed by lagging or restarted nodes.
    snapshots_installed: u64,
    /// Runs whose network took longer than [`FORMING_SLOW`] to form.
    slow_forming: u64,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let n = rng.usize(3..=5);
        let snapshots = match rng.u8(0..3) {
            0 => SnapshotSettings::default(),
            1 => SnapshotSettings { every_entries: 20, keep_behind: 5, purge_batch: 5 },
            _ => SnapshotSettings { every_entries: 8, keep_behind: 2, purge_batch: 2 },
        };
        let regulator = SigningKey::generate();
        let keys: Vec<_> = (0..n).map(|_| Arc::new(SigningKey::generate())).collect();
        let genesis = Genesis {
            chain_id: format!("sim-{seed}"),
            time_ms: 1,
            regulator_key: regulator.public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: keys[0].public_key(),
        };
        Sim {
            seed,
            rng,
            dir: scratch_dir(),
            genesis,
            regulator,
            nonce: 0,
            keys,
            snapshots,
            net: net::Net::new(seed),
            nodes: (1..=n as u64).map(|id| (id, None)).collect(),
            acked: Arc::default(),
            waiting: tokio::task::JoinSet::new(),
            seen: check::Heights::default(),
            checked: BTreeMap::new(),
            log: Vec::new(),
        }
    }

    fn fail(&self, why: impl Into<String>) -> Failure {
        Failure { seed: self.seed, why: why.into(), log: self.log.clone() }
    }

    fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    fn up(&self) -> Vec<u64> {
        self.nodes.iter().filter(|(_, r)| r.is_some()).map(|(id, _)| *id).collect()
    }

    fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// The regulator's next transaction.
    fn sign(&mut self, body: TxBody) -> SignedTransaction {
        self.nonce += 1;
        Transaction {
            chain_id: self.genesis.chain_id.clone(),
            signer: AccountId::from_initial_key(&self.regulator.public_key()),
            nonce: self.nonce,
            body,
        }
        .sign(&self.regulator)
    }

    /// A hospital's admission (unique by nonce), and its account.
    fn hospital(&mut self) -> (SignedTransaction, AccountId) {
        let key = SigningKey::generate().public_key();
        let n = self.nonce + 1;
        let tx = self.sign(TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
            key,
            encryption_key: DecryptionKey::generate().public_key(),
            registration_id: format!("GOV-{n}"),
            name: format!("Hospital {n}"),
            city: "Leeds".into(),
            specialisation: "general".into(),
            contact: SealedRef { blob: Hash::of(&n.to_le_bytes()), commitment: Hash::of(b"c") },
        })));
        (tx, AccountId::from_initial_key(&key))
    }

    /// Starts node `id` on its data directory, as `serve_with` does: Raft over its ledger and
    /// log, caught up with its log, then reachable, its membership driver and producer running.
    async fn start(&mut self, id: u64) -> Result<(), String> {
        let dir = self.node_dir(id);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join("ledger.redb");
        let ledger = tokio::task::block_in_place(|| {
            if path.exists() {
                Ledger::open(&path)
            } else {
                Ledger::create(&path, self.genesis.clone())
            }
        })
        .map_err(|e| format!("node {id}'s ledger: {e}"))?;
        let ledger = Arc::new(ledger);
        ledger.set_durable_every(crate::LEDGER_FSYNC_EVERY);
        let key = self.keys[id as usize - 1].clone();
        let transport = Arc::new(transport::Transport::new(id, key.clone(), ledger.clone()));
        let (alive, alive_rx) = tokio::sync::watch::channel(());
        let network = net::SimNetwork {
            me: id,
            transport: transport.clone(),
            net: self.net.clone(),
            alive: alive_rx,
        };
        let preverified = PreVerified::default();
        let (applied_tx, applied_rx) = tokio::sync::watch::channel(ledger.tip().height);
        let fault = Arc::new(StorageFault::default());
        let super::Started { raft, closed, receiver } = start_timed(
            ledger.clone(),
            &dir.join("raft-log.redb"),
            id,
            &format!("127.0.0.1:{}", 7300 + id),
            network,
            preverified.clone(),
            applied_tx,
            fault.clone(),
            self.snapshots,
            TIMERS,
        )
        .await?;
        super::wait_until_caught_up(&raft, id).await?;
        self.net.up(id, raft.clone(), transport, receiver);
        let (queue, queue_rx) = mpsc::channel(producer::QUEUE);
        let proposer = Proposer { id, key };
        let tasks = vec![
            tokio::spawn(super::membership::run(raft.clone(), ledger.clone(), id, applied_rx)),
            tokio::spawn(super::report_fatal(raft.clone(), fault.clone())),
            tokio::spawn(producer::run(
                raft.clone(),
                ledger.clone(),
                preverified,
                proposer,
                queue_rx,
            )),
        ];
        self.nodes.insert(id, Some(Running { raft, ledger, queue, fault, closed, tasks, alive }));
        Ok(())
    }

    /// Stops node `id`: unreachable at once, its Raft core shut down, its tasks ended, and
    /// (once nothing holds them) its log and ledger closed; the ledger is flushed only when
    /// `graceful`.
    async fn stop(&mut self, id: u64, graceful: bool) -> Result<(), String> {
        let Some(node) = self.nodes.get_mut(&id).and_then(Option::take) else { return Ok(()) };
        self.net.down(id);
        let Running { raft, ledger, queue, fault: _, closed, tasks, alive } = node;
        drop(alive);
        drop(queue);
        let _ = raft.shutdown().await;
        drop(raft);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        let deadline = tokio::time::Instant::now() + LIMIT;
        while Arc::strong_count(&ledger) > 1 {
            if tokio::time::Instant::now() > deadline {
                return Err(format!("node {id}: something still holds its ledger after {LIMIT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !closed.wait(LIMIT).await {
            return Err(format!("node {id}: its Raft log did not close within {LIMIT:?}"));
        }
        if graceful {
            ledger.flush().map_err(|e| format!("node {id}: flushing its ledger: {e}"))?;
        }
        drop(ledger);
        Ok(())
    }

    /// Puts `txs` in node `to`'s queue; each submitter waits for its receipt and records it.
    fn submit(&mut self, to: u64, txs: Vec<SignedTransaction>) {
        let Some(Some(node)) = self.nodes.get(&to) else { return };
        for tx in txs {
            let (reply, receipt) = tokio::sync::oneshot::channel();
            if node.queue.try_send(Submission { tx, reply }).is_err() {
                continue;
            }
            let acked = self.acked.clone();
            self.waiting.spawn(async move {
                if let Ok(Ok(Ok(r))) = tokio::time::timeout(RECEIPT_WAIT, receipt).await {
                    acked.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                }
            });
        }
    }

    /// Submits `txs` to `to` and waits for every receipt (setting up the network).
    async fn submit_and_wait(
        &mut self,
        to: u64,
        txs: Vec<SignedTransaction>,
    ) -> Result<(), String> {
        let Some(Some(node)) = self.nodes.get(&to) else {
            return Err(format!("node {to} is down"));
        };
        let mut receipts = Vec::new();
        for tx in txs {
            let (reply, receipt) = tokio::sync::oneshot::channel();
            node.queue.send(Submission { tx, reply }).await.map_err(|e| e.to_string())?;
            receipts.push(receipt);
        }
        for r in receipts {
            let receipt: Result<Receipt, ProduceError> = tokio::time::timeout(LIMIT, r)
                .await
                .map_err(|_| "no receipt in time".to_owned())?
                .map_err(|_| "the producer dropped the transaction".to_owned())?;
            let receipt = receipt.map_err(|e| e.to_string())?;
            if !matches!(receipt.outcome, medledger_core::block::Outcome::Applied { .. }) {
                return Err(format!("a set-up transaction was refused: {:?}", receipt.outcome));
            }
            self.acked.lock().unwrap_or_else(|p| p.into_inner()).push(receipt);
        }
        Ok(())
    }

    /// The running node that leads in the highest term, if any.
    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|(id, r)| {
                let m = r.as_ref()?.raft.metrics().borrow().clone();
                (m.current_leader == Some(*id)).then_some((m.current_term, *id))
            })
            .max()
            .map(|(_, id)| id)
    }

    /// Node 1 founds the network; the regulator admits a hospital and nodes 2..N; they start
    /// and the membership driver makes each a voter (a transaction every [`FORMING_TICK`]
    /// keeps it going).
    async fn set_up(&mut self) -> Result<(), String> {
        self.start(1).await?;
        let (hospital_tx, hospital) = self.hospital();
        let mut txs = vec![hospital_tx];
        for id in 2..=self.nodes.len() as u64 {
            let node_key = self.keys[id as usize - 1].public_key();
            let address = format!("http://127.0.0.1:{}", 7300 + id);
            txs.push(self.sign(TxBody::Nodes(NodeTx::Admit { node_key, address, hospital })));
        }
        self.submit_and_wait(1, txs).await?;
        for id in 2..=self.nodes.len() as u64 {
            self.start(id).await?;
        }
        let all: Vec<u64> = self.ids();
        let deadline = tokio::time::Instant::now() + FORMING_LIMIT;
        loop {
            let voters: Vec<u64> = {
                let Some(Some(n1)) = self.nodes.get(&1) else { unreachable!("node 1 runs") };
                n1.raft.metrics().borrow().membership_config.membership().voter_ids().collect()
            };
            if voters == all {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                let views: Vec<String> = self
                    .nodes
                    .iter()
                    .filter_map(|(id, r)| {
                        let r = r.as_ref()?;
                        let m = r.raft.metrics().borrow().clone();
                        Some(format!(
                            "node {id}: {:?} term {} leader {:?} voters {:?} fault {:?} core {:?}",
                            m.state,
                            m.current_term,
                            m.current_leader,
                            m.membership_config.membership().voter_ids().collect::<Vec<_>>(),
                            r.fault.reason(),
                            m.running_state,
                        ))
                    })
                    .collect();
                return Err(format!("the network did not form: voters {voters:?}; {views:?}"));
            }
            let (tx, _) = self.hospital();
            self.submit(1, vec![tx]);
            tokio::time::sleep(FORMING_TICK).await;
        }
    }

    /// The next step, drawn from the seed (resolved against which nodes are up).
    fn next_step(&mut self) -> Step {
        let up = self.up();
        let down: Vec<u64> = self.ids().into_iter().filter(|id| !up.contains(id)).collect();
        let n = self.nodes.len();
        let roll = self.rng.u32(0..100);
        match roll {
            0..=39 => {
                // Mostly to the leader, as forwarding does; sometimes to any node (a deposed
                // leader in a minority proposes and must not get a receipt for it).
                let leader = self.leader();
                let any = self.rng.usize(0..n) as u64 + 1;
                let to = match leader {
                    Some(l) if self.rng.u8(0..4) > 0 => l,
                    _ => any,
                };
                Step::Submit { to, count: self.rng.usize(1..=4) }
            }
            40..=51 if down.len() + 1 < n => {
                let leader = self.leader();
                let any = up[self.rng.usize(0..up.len())];
                match leader {
                    Some(l) if self.rng.bool() => Step::Crash(l),
                    _ => Step::Crash(any),
                }
            }
            52..=65 if !down.is_empty() => Step::Restart(down[self.rng.usize(0..down.len())]),
            66..=73 => {
                let size = self.rng.usize(1..n);
                let mut ids = self.ids();
                self.rng.shuffle(&mut ids);
                Step::Partition(ids.into_iter().take(size).collect())
            }
            74..=81 => Step::Heal,
            82..=87 => Step::Lossy(f64::from(self.rng.u8(5..=40)) / 100.0),
            88..=93 => Step::Delay(Duration::from_millis(self.rng.u64(1..=40))),
            _ => Step::Wait(Duration::from_millis(self.rng.u64(100..=600))),
        }
    }

    async fn run_step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Submit { to, count } => {
                let txs = (0..*count).map(|_| self.hospital().0).collect();
                self.submit(*to, txs);
            }
            Step::Crash(id) => self.stop(*id, false).await?,
            Step::Restart(id) => self.start(*id).await?,
            Step::Partition(side) => self.net.partition(side, &self.ids()),
            Step::Heal => self.net.heal(),
            Step::Lossy(p) => self.net.set_loss(*p),
            Step::Delay(d) => self.net.set_delay(*d),
            Step::Wait(d) => tokio::time::sleep(*d).await,
        }
        Ok(())
    }

    /// Checks every running node's ledger (from where it was checked last, or from height 1
    /// when `full`); also that no node stopped on a fault.
    fn check(&mut self, full: bool) -> Result<(), String> {
        let acked = self.acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut violations = Vec::new();
        for (id, node) in &self.nodes {
            let Some(node) = node else { continue };
            if let Some(reason) = node.fault.reason() {
                violations.push(format!("node {id} stopped on a fault: {reason}"));
            }
            let from = if full { None } else { self.checked.get(id).copied().flatten() };
            let (found, reached) = tokio::task::block_in_place(|| {
                check::check_node(&mut self.seen, *id, &node.ledger, &acked, from)
            });
            violations.extend(found);
            self.checked.insert(*id, reached);
        }
        if violations.is_empty() { Ok(()) } else { Err(violations.join("\n")) }
    }

    /// Heals the network, restarts every node, and waits until all have applied their whole
    /// log and hold one tip; then a new transaction must be acknowledged.
    async fn converge(&mut self) -> Result<(), String> {
        self.net.heal();
        for id in self.ids() {
            if self.nodes[&id].is_none() {
                self.start(id).await?;
            }
        }
        let deadline = tokio::time::Instant::now() + LIMIT;
        let mut last = String::new();
        loop {
            let views: Vec<View> = self
                .nodes
                .iter()
                .filter_map(|(id, r)| {
                    let r = r.as_ref()?;
                    let m = r.raft.metrics().borrow().clone();
                    let tip = r.ledger.tip();
                    Some(View {
                        id: *id,
                        tip: (tip.height, tip.hash),
                        applied: m.last_applied.map(|l| l.index),
                        last_log: m.last_log_index,
                        state: m.state,
                        term: m.current_term,
                        leader: m.current_leader,
                        fault: r
                            .fault
                            .reason()
                            .or_else(|| m.running_state.as_ref().err().map(|e| e.to_string())),
                    })
                })
                .collect();
            let one_tip = views.windows(2).all(|w| w[0].tip == w[1].tip);
            let applied = views.iter().all(|v| v.applied == v.last_log);
            if one_tip && applied && self.leader().is_some() {
                break;
            }
            last = format!("{views:?}");
            if tokio::time::Instant::now() > deadline {
                return Err(format!("the nodes did not converge after healing: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The healed network still takes writes (a leader may be being elected: try again).
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let outcome = match self.leader() {
                Some(leader) => {
                    let (tx, _) = self.hospital();
                    self.submit_and_wait(leader, vec![tx]).await
                }
                None => Err("no leader".to_owned()),
            };
            match outcome {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(format!("the healed network refuses writes: {e} ({last})")),
            }
        }
        // Every node applies that one too.
        let height = self.nodes.values().flatten().map(|r| r.ledger.tip().height).max();
        let deadline = tokio::time::Instant::now() + LIMIT;
        while self.nodes.values().flatten().any(|r| Some(r.ledger.tip().height) != height) {
            if tokio::time::Instant::now() > deadline {
                return Err("the nodes did not all apply the last transaction".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Every acknowledged transaction on every node; then each node stopped and its data
    /// directory checked offline as `medledger verify` does.
    async fn finish(&mut self) -> Result<Outcome, String> {
        while let Some(r) = tokio::time::timeout(LIMIT, self.waiting.join_next())
            .await
            .map_err(|_| "submitters still waiting".to_owned())?
        {
            r.map_err(|e| e.to_string())?;
        }
        self.check(true)?;
        let acked = self.acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let tip = self.nodes.values().flatten().map(|r| r.ledger.tip().height).max().unwrap_or(0);
        if let Some(r) = acked.iter().find(|r| r.height > tip) {
            return Err(format!(
                "acknowledged transaction {} at height {} is beyond the tip {tip}",
                r.tx_hash, r.height
            ));
        }
        for id in self.ids() {
            self.stop(id, true).await?;
        }
        for id in self.ids() {
            let dir = self.node_dir(id);
            tokio::task::block_in_place(|| verify_offline(&dir))
                .map_err(|e| format!("node {id}: {e}"))?;
        }
        Ok(Outcome {
            nodes: self.nodes.len(),
            steps: 0,
            acked: acked.len(),
            height: tip,
            snapshots_installed: self
                .net
                .snapshots_installed
                .load(std::sync::atomic::Ordering::Relaxed),
            slow_forming: 0,
        })
    }

    /// Stops whatever still runs (after a failure), so that the run ends in bounded time.
    async fn tear_down(&mut self) {
        for id in self.ids() {
            let _ = self.stop(id, false).await;
        }
        self.waiting.abort_all();
    }
}

/// A temporary directory for one seed's data directories: in memory (`/dev/shm`) where there
/// is one, so that the real fsyncs of the log and the ledger cost little (the simulation is
/// about orderings, not about the disk), else the system's temporary directory.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let in_memory = if shm.is_dir() { tempfile::tempdir_in(shm).ok() } else { None };
    in_memory.unwrap_or_else(|| tempfile::tempdir().expect("a temporary directory"))
}

/// The offline checks of `medledger verify` on a node's ledger and Raft log.
fn verify_offline(dir: &Path) -> Result<(), String> {
    let ledger = dir.join("ledger.redb");
    medledger_ledger::verify::verify_ledger(&ledger, &mut |_, _, _| {})
        .map_err(|e| format!("the ledger does not verify: {e}"))?;
    let facts = medledger_ledger::verify::stored_facts(&ledger).map_err(|e| e.to_string())?;
    let check = super::check_log_offline(
        &dir.join("raft-log.redb"),
        &facts.block_hashes,
        facts.applied_marker.as_deref(),
    );
    if !check.is_ok() {
        return Err(format!("the Raft log does not check: {}", check.problems.join("; ")));
    }
    Ok(())
}

/// Runs seed `seed`: set-up, a few dozen steps each followed by the checks, convergence and
/// the final checks.
async fn run_seed(seed: u64, verbose: bool) -> Result<Outcome, Failure> {
    let mut sim = Sim::new(seed);
    let started = std::time::Instant::now();
    let result = run_steps(&mut sim).await;
    if verbose {
        eprintln!("seed {seed} ({:.1} s):", started.elapsed().as_secs_f64());
        for line in &sim.log {
            eprintln!("  {line}");
        }
    }
    match result {
        Ok(outcome) => Ok(outcome),
        Err(why) => {
            sim.tear_down().await;
            Err(sim.fail(why))
        }
    }
}

async fn run_steps(sim: &mut Sim) -> Result<Outcome, String> {
    sim.log.push(format!(
        "{} nodes, snapshots every {} entries ({} kept behind)",
        sim.nodes.len(),
        sim.snapshots.every_entries,
        sim.snapshots.keep_behind
    ));
    let started = std::time::Instant::now();
    sim.set_up().await.map_err(|e| format!("set-up: {e}"))?;
    let forming = started.elapsed();
    sim.log.push(format!("network formed in {:.2} s", forming.as_secs_f64()));
    let steps = sim.rng.usize(16..=32);
    for i in 1..=steps {
        let step = sim.next_step();
        let settle = Duration::from_millis(sim.rng.u64(10..=80));
        sim.log.push(format!("{i}: {step:?}, then {settle:?}"));
        sim.run_step(&step).await.map_err(|e| format!("step {i}: {e}"))?;
        tokio::time::sleep(settle).await;
        sim.check(false).map_err(|e| format!("after step {i}: {e}"))?;
    }
    sim.log.push(format!(
        "heal, restart every node, converge (at {:.2} s)",
        started.elapsed().as_secs_f64()
    ));
    sim.converge().await?;
    sim.log.push(format!("converged at {:.2} s", started.elapsed().as_secs_f64()));
    let mut outcome = sim.finish().await?;
    outcome.steps = steps;
    outcome.slow_forming = u64::from(forming > FORMING_SLOW);
    sim.log
        .push(format!("{outcome:?}, checked offline at {:.2} s", started.elapsed().as_secs_f64()));
    Ok(outcome)
}

/// Runs seeds `seeds`, `parallel` at a time, printing a line every 10; panics naming each
/// failed seed with its steps.
async fn run_seeds(seeds: std::ops::Range<u64>, parallel: usize) {
    let verbose = seeds.end - seeds.start == 1;
    use futures_util::StreamExt;
    let started = std::time::Instant::now();
    let total = seeds.end - seeds.start;
    let mut done = 0u64;
    let mut failures = Vec::new();
    let mut totals = Outcome::default();
    let mut runs = futures_util::stream::iter(seeds.map(|s| tokio::spawn(run_seed(s, verbose))))
        .buffer_unordered(parallel.max(1));
    while let Some(r) = runs.next().await {
        done += 1;
        match r {
            Ok(Ok(o)) => {
                totals.nodes += o.nodes;
                totals.steps += o.steps;
                totals.acked += o.acked;
                totals.height += o.height;
                totals.snapshots_installed += o.snapshots_installed;
                totals.slow_forming += o.slow_forming;
            }
            Ok(Err(f)) => {
                eprintln!("{f}");
                failures.push(f.seed);
            }
            Err(e) => {
                eprintln!("a seed's task panicked: {e}");
                failures.push(u64::MAX);
            }
        }
        if done.is_multiple_of(10) || done == total {
            eprintln!(
                "simulation: {done}/{total} seeds, {} failed, {:.1} s ({} nodes, {} steps, {} transactions acknowledged, {} blocks, {} snapshots installed, {} slow to form)",
                failures.len(),
                started.elapsed().as_secs_f64(),
                totals.nodes,
                totals.steps,
                totals.acked,
                totals.height,
                totals.snapshots_installed,
                totals.slow_forming,
            );
        }
    }
    assert!(failures.is_empty(), "simulation seeds failed: {failures:?} (steps printed above)");
}

/// The seeds a test runs: `MEDLEDGER_SIM_SEED` alone if set; else `MEDLEDGER_SIM_SEEDS`
/// from `MEDLEDGER_SIM_FIRST_SEED` (0) when set (only the first share runs them); else its
/// `share` of the default set.
fn seeds_for(share: u64, default: std::ops::Range<u64>) -> std::ops::Range<u64> {
    let var = |name: &str| -> Option<u64> {
        std::env::var(name)
            .ok()
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
    };
    if let Some(seed) = var("MEDLEDGER_SIM_SEED") {
        return if share == 0 { seed..seed + 1 } else { 0..0 };
    }
    if let Some(n) = var("MEDLEDGER_SIM_SEEDS") {
        let first = var("MEDLEDGER_SIM_FIRST_SEED").unwrap_or(0);
        return if share == 0 { first..first + n } else { 0..0 };
    }
    default
}

/// Seeds run at once in one test (`MEDLEDGER_SIM_PARALLEL` overrides it).
const PARALLEL: usize = 3;

fn parallel() -> usize {
    std::env::var("MEDLEDGER_SIM_PARALLEL").ok().and_then(|v| v.parse().ok()).unwrap_or(PARALLEL)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeds_0_to_49() {
    run_seeds(seeds_for(0, 0..50), parallel()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeds_50_to_99() {
    run_seeds(seeds_for(1, 50..100), parallel()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeds_100_to_149() {
    run_seeds(seeds_for(2, 100..150), parallel()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeds_150_to_199() {
    run_seeds(seeds_for(3, 150..200), parallel()).await;
}
