//! Snapshots and log compaction on real files: Raft over a ledger and a log in a temporary data
//! directory, under enough blocks to pass the snapshot threshold several times (small
//! thresholds, the real code paths); a snapshot built on one data directory installed into a
//! fresh one through the state machine, as Raft's chunked transfer does; and tampered
//! snapshots refused with nothing changed.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use medledger_core::{
    Hash,
    block::{Block, Genesis, Tip},
    ids::AccountId,
    keys::{DecryptionKey, SigningKey},
    seal::SealedBlock,
    tx::{AdmitHospital, RegistryTx, SealedRef, Transaction, TxBody},
};
use medledger_ledger::Ledger;
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftSnapshotBuilder, Snapshot,
    storage::RaftStateMachine,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::storage::StorageFault;

/// How long anything may take before the test fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(60);

struct Chain {
    genesis: Genesis,
    regulator: SigningKey,
    /// The genesis node's key: it seals the blocks, as node 1 in term 1.
    node: SigningKey,
    tip: Tip,
    nonce: u64,
}

impl Chain {
    fn new() -> Self {
        let (regulator, node) = (SigningKey::generate(), SigningKey::generate());
        let genesis = Genesis {
            chain_id: "snapshots-test".into(),
            time_ms: 1,
            regulator_key: regulator.public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: node.public_key(),
        };
        let tip = Tip::genesis(&genesis);
        Chain { genesis, regulator, node, tip, nonce: 0 }
    }

    /// `block`, sealed by the genesis node in term 1.
    fn seal(&self, block: Block) -> SealedBlock {
        SealedBlock::seal(block, &self.genesis.chain_id, 1, 1, &self.node)
    }

    /// The next block: `n` hospital admissions, sealed.
    fn block(&mut self, n: usize) -> SealedBlock {
        let signer = AccountId::from_initial_key(&self.regulator.public_key());
        let txs = (0..n)
            .map(|_| {
                self.nonce += 1;
                Transaction {
                    chain_id: self.genesis.chain_id.clone(),
                    signer,
                    nonce: self.nonce,
                    body: TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
                        key: SigningKey::generate().public_key(),
                        encryption_key: DecryptionKey::generate().public_key(),
                        registration_id: format!("GOV-{}", self.nonce),
                        name: format!("Hospital {}", self.nonce),
                        city: "Leeds".into(),
                        specialisation: "general".into(),
                        contact: SealedRef {
                            blob: Hash::of(&self.nonce.to_be_bytes()),
                            commitment: Hash::of(b"c"),
                        },
                    })),
                }
                .sign(&self.regulator)
            })
            .collect();
        let block = self.tip.propose(self.tip.time_ms + 1, txs);
        self.seal(block)
    }
}

fn ledger_at(dir: &Path, genesis: &Genesis) -> Arc<Ledger> {
    let path = dir.join("ledger.redb");
    let ledger =
        if path.exists() { Ledger::open(&path) } else { Ledger::create(&path, genesis.clone()) };
    let ledger = Arc::new(ledger.unwrap());
    ledger.set_durable_every(crate::LEDGER_FSYNC_EVERY);
    ledger
}

/// Raft as the node runs it, over the ledger and log in `dir`.
async fn raft_at(dir: &Path, genesis: &Genesis, settings: SnapshotSettings) -> (Arc<Ledger>, Raft) {
    let ledger = ledger_at(dir, genesis);
    let (applied, _) = tokio::sync::watch::channel(0);
    // A one-member cluster sends no RPC; its network is the real one all the same.
    let key = Arc::new(medledger_core::keys::SigningKey::generate());
    let transport = Arc::new(super::transport::Transport::new(1, key, ledger.clone()));
    let network = super::network::Network::new(transport).unwrap();
    let super::Started { raft, .. } = start_with(
        ledger.clone(),
        &dir.join("raft-log.redb"),
        1,
        "127.0.0.1:1",
        network,
        PreVerified::default(),
        applied,
        Arc::new(StorageFault::default()),
        settings,
    )
    .await
    .unwrap();
    wait_until_caught_up(&raft, 1).await.unwrap();
    (ledger, raft)
}

/// Stops Raft and waits until nothing holds the ledger any more (so that it can be reopened).
async fn stop(raft: Raft, ledger: Arc<Ledger>) {
    raft.shutdown().await.unwrap();
    drop(raft);
    let deadline = Instant::now() + LIMIT;
    while Arc::strong_count(&ledger) > 1 {
        assert!(Instant::now() < deadline, "Raft did not let go of the ledger");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ledger.flush().unwrap();
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

/// The offline check of the stopped node's log against its ledger.
fn offline_check(dir: &Path) -> RaftLogCheck {
    let facts = medledger_ledger::verify::stored_facts(&dir.join("ledger.redb")).unwrap();
    check_log_offline(
        &dir.join("raft-log.redb"),
        &facts.block_hashes,
        facts.applied_marker.as_deref(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_sustained_load_snapshots_are_built_the_log_stays_bounded_and_a_restart_serves_the_same_tip()
 {
    let settings = SnapshotSettings { every_entries: 40, keep_behind: 10, purge_batch: 5 };
    // Entries in the log at most: those since the last snapshot (a build is triggered at
    // `every_entries` and may finish a few entries later), those kept behind it, and a purge
    // batch not yet due.
    let bound = 2 * settings.every_entries + settings.keep_behind + settings.purge_batch;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut chain = Chain::new();
    let (ledger, raft) = raft_at(dir, &chain.genesis, settings).await;
    let mut log_bytes = Vec::new();
    for _round in 0..3 {
        for _ in 0..150 {
            raft.client_write(chain.block(2)).await.unwrap();
        }
        let last = raft.metrics().borrow().last_log_index.unwrap();
        let m = raft
            .wait(Some(LIMIT))
            .metrics(
                |m| m.purged.is_some_and(|p| last - p.index <= bound),
                "the log purged behind a recent snapshot",
            )
            .await
            .unwrap();
        let snapshot = m.snapshot.expect("a snapshot was built");
        assert!(snapshot.index > m.purged.unwrap().index, "{m:?}");
        log_bytes.push(std::fs::metadata(dir.join("raft-log.redb")).unwrap().len());
    }
    // 900 transactions in 450 blocks: the snapshot threshold passed more than ten times.
    assert_eq!(ledger.tip().height, 450);
    // Only the newest snapshot is kept. A build that finishes just now publishes the new file
    // before it deletes the old one, so this holds once no build is in flight (none writing
    // its temporary file either): wait for it.
    let deadline = Instant::now() + LIMIT;
    let snapshots = loop {
        let found = files(&dir.join("snapshots"), ".snap");
        let building = !files(&dir.join("snapshots"), ".tmp").is_empty();
        if (found.len() == 1 && !building) || Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(snapshots.len(), 1, "only the newest snapshot is kept: {snapshots:?}");
    assert!(files(&dir.join("snapshots"), ".tmp").is_empty());
    let purged = raft.metrics().borrow().purged;
    let tip = ledger.tip();
    stop(raft, ledger).await;

    // The log file holds a bounded number of entries, and the offline check accepts the
    // purged prefix.
    let check = offline_check(dir);
    assert!(check.is_ok(), "{check:?}");
    assert!(check.entries <= bound + 1, "{check:?}");
    assert!(check.range.unwrap().0 > 300, "{check:?}");
    // Its size does not grow with the ledger: no more after 450 blocks than after 150 and a
    // purge (redb reuses the pages purged entries freed), give or take a page region.
    assert!(log_bytes[2] <= 2 * log_bytes[0], "{log_bytes:?}");

    // A restart from the purged log serves the same tip, reports the same purge point, and
    // goes on.
    let (ledger, raft) = raft_at(dir, &chain.genesis, settings).await;
    assert_eq!((ledger.tip().height, ledger.tip().hash), (tip.height, tip.hash));
    assert_eq!(raft.metrics().borrow().purged, purged);
    raft.client_write(chain.block(1)).await.unwrap();
    assert_eq!(ledger.tip().height, 451);
    stop(raft, ledger).await;
    medledger_ledger::verify::verify_ledger(&dir.join("ledger.redb"), &mut |_, _, _| {}).unwrap();
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// A state machine over a ledger in `dir`.
fn state_machine(dir: &Path, genesis: &Genesis) -> (Arc<Ledger>, StateMachine) {
    let ledger = ledger_at(dir, genesis);
    let (sm, _) = state_machine_on(ledger.clone(), dir);
    (ledger, sm)
}

/// A state machine over `ledger` (whose data directory is `dir`), and the fault it reports to.
fn state_machine_on(ledger: Arc<Ledger>, dir: &Path) -> (StateMachine, Arc<StorageFault>) {
    let (applied, _) = tokio::sync::watch::channel(0);
    let fault = Arc::new(StorageFault::default());
    let sm = StateMachine::new(
        ledger,
        PreVerified::default(),
        applied,
        fault.clone(),
        &dir.join("snapshots"),
        Default::default(),
    )
    .unwrap();
    (sm, fault)
}

/// A data directory whose state machine applied a membership entry and `blocks` blocks, and
/// the bytes of a snapshot built there.
async fn built(dir: &Path, chain: &mut Chain, blocks: u64) -> (Snapshot<TypeConfig>, Vec<u8>) {
    let (_, mut sm) = state_machine(dir, &chain.genesis);
    let membership = Membership::new(
        vec![BTreeSet::from([1])],
        BTreeMap::from([(1, BasicNode { addr: "127.0.0.1:1".into() })]),
    );
    let mut entries = vec![Entry::<TypeConfig> {
        log_id: log_id(1),
        payload: EntryPayload::Membership(membership),
    }];
    for i in 0..blocks {
        entries
            .push(Entry { log_id: log_id(i + 2), payload: EntryPayload::Normal(chain.block(3)) });
    }
    sm.apply(entries).await.unwrap();
    let mut snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(blocks + 1)));
    let mut bytes = Vec::new();
    snapshot.snapshot.read_to_end(&mut bytes).await.unwrap();
    (snapshot, bytes)
}

/// Streams `bytes` into `sm` as Raft's chunked transfer does (begin, chunks, shut down), and
/// installs them as the snapshot `meta` announces.
async fn receive(
    sm: &mut StateMachine,
    meta: &openraft::SnapshotMeta<u64, BasicNode>,
    bytes: &[u8],
) -> Result<(), openraft::StorageError<u64>> {
    let mut data = sm.begin_receiving_snapshot().await.unwrap();
    for chunk in bytes.chunks(4096) {
        data.write_all(chunk).await.unwrap();
    }
    data.shutdown().await.unwrap();
    sm.install_snapshot(meta, data).await
}

/// Block `height` of `ledger`.
fn block_of(ledger: &Ledger, height: u64) -> Block {
    let header = ledger.header(height).unwrap().unwrap();
    let txs = ledger.block_transactions(&header).unwrap();
    let txs =
        txs.iter().map(|t| medledger_core::tx::SignedTransaction::decode(t).unwrap()).collect();
    Block { header, txs }
}

/// What a reader sees of a ledger: every stored byte (through a snapshot of it) and its tip.
fn view(ledger: &Ledger) -> (Vec<u8>, u64, Hash, u64) {
    let mut bytes = Vec::new();
    ledger.export_snapshot_to(&mut bytes).unwrap();
    (bytes, ledger.tip().height, ledger.tip().hash, ledger.log_size())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_built_on_one_data_directory_installs_into_a_fresh_one() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut chain = Chain::new();
    let (snapshot, bytes) = built(a.path(), &mut chain, 30).await;
    let (source, _) = state_machine(a.path(), &chain.genesis);

    let (target, mut sm) = state_machine(b.path(), &chain.genesis);
    receive(&mut sm, &snapshot.meta, &bytes).await.unwrap();
    assert_eq!(view(&target), view(&source));
    assert_eq!(target.tip().height, 30);
    assert_eq!(
        sm.applied_state().await.unwrap(),
        (snapshot.meta.last_log_id, snapshot.meta.last_membership.clone())
    );
    let current = sm.get_current_snapshot().await.unwrap().expect("the installed snapshot is kept");
    assert_eq!(current.meta.last_log_id, snapshot.meta.last_log_id);
    assert_eq!(current.meta.last_membership, snapshot.meta.last_membership);
    assert_eq!(files(&b.path().join("snapshots"), ".snap").len(), 1);
    assert!(files(&b.path().join("snapshots"), ".tmp").is_empty());

    // The next entry applies on top, and the data directory verifies.
    let next = Entry { log_id: log_id(32), payload: EntryPayload::Normal(chain.block(1)) };
    sm.apply([next]).await.unwrap();
    assert_eq!(target.tip().height, 31);
    drop((sm, source));
    let target = Arc::into_inner(target).unwrap();
    target.flush().unwrap();
    drop(target);
    medledger_ledger::verify::verify_ledger(&b.path().join("ledger.redb"), &mut |_, _, _| {})
        .unwrap();
}

/// A snapshot an older medledger wrote (another format version) does not stop the node
/// after an upgrade: it is removed and one built from the ledger takes its place, which a
/// fresh data directory installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_an_older_format_is_replaced_by_one_built_from_the_ledger() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut chain = Chain::new();
    let (snapshot, bytes) = built(a.path(), &mut chain, 5).await;
    let dir = a.path().join("snapshots");
    let [published] = files(&dir, ".snap").try_into().unwrap();
    let mut old = b"medledger-snap1\n".to_vec();
    old.extend_from_slice(&bytes[16..]);
    std::fs::write(&published, &old).unwrap();

    let (_, mut sm) = state_machine(a.path(), &chain.genesis);
    let current = sm.get_current_snapshot().await.unwrap().expect("a snapshot of the ledger");
    assert_eq!(current.meta.last_log_id, snapshot.meta.last_log_id);
    let [rebuilt] = files(&dir, ".snap").try_into().unwrap();
    assert!(std::fs::read(&rebuilt).unwrap().starts_with(medledger_ledger::snapshot::MAGIC));

    let (target, mut installing) = state_machine(b.path(), &chain.genesis);
    receive(&mut installing, &current.meta, &std::fs::read(&rebuilt).unwrap()).await.unwrap();
    assert_eq!(target.tip().height, 5);
}

/// A snapshot handed over for a point the ledger already holds, but not the file this node
/// imported (checked on receipt by its header alone), is not kept: a node serves only rows it
/// compared, and a snapshot built from its own ledger takes its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_for_a_point_already_held_is_not_kept_unless_it_was_the_one_imported() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut chain = Chain::new();
    let (snapshot, bytes) = built(a.path(), &mut chain, 5).await;
    let (target, mut sm) = state_machine(b.path(), &chain.genesis);
    receive(&mut sm, &snapshot.meta, &bytes).await.unwrap();
    // The same point again, its last row altered behind an honest header.
    let mut altered = bytes.clone();
    let end = altered.len() - 5 - 1;
    altered[end] ^= 1;
    assert_ne!(altered, bytes);
    receive(&mut sm, &snapshot.meta, &altered).await.unwrap();
    let mut current = sm.get_current_snapshot().await.unwrap().expect("a snapshot is kept");
    assert_eq!(current.meta.last_log_id, snapshot.meta.last_log_id);
    let mut kept = Vec::new();
    current.snapshot.read_to_end(&mut kept).await.unwrap();
    assert_ne!(kept, altered, "the altered file was kept");
    assert_eq!(kept, view(&target).0, "the kept snapshot is not the ledger's own");
    assert_eq!(files(&b.path().join("snapshots"), ".snap").len(), 1);
    assert!(files(&b.path().join("snapshots"), ".tmp").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_misannounced_snapshot_is_refused_by_install_and_nothing_changes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut chain = Chain::new();
    let (snapshot, bytes) = built(a.path(), &mut chain, 10).await;
    let (source, _) = state_machine(a.path(), &chain.genesis);
    let (target, mut sm) = state_machine(b.path(), &chain.genesis);
    // The target already applied the source's first block.
    let first = chain.seal(block_of(&source, 1));
    sm.apply([Entry { log_id: log_id(2), payload: EntryPayload::Normal(first) }]).await.unwrap();
    drop(source);
    let before = (view(&target), sm.applied_state().await.unwrap());

    // A byte of the first hospital's entry: after the table's frame (tag, length, name), the
    // row frame's tag and length, the key's length and the 20-byte key.
    let mut flipped = bytes.clone();
    let table = [&[4u8, 9, 0, 0, 0][..], b"hospitals"].concat();
    let at = bytes.windows(table.len()).position(|w| w == table).unwrap() + table.len();
    assert_eq!(bytes[at], 5, "a row frame follows");
    flipped[at + 5 + 4 + 20 + 8] ^= 1;
    let mut truncated = bytes.clone();
    truncated.truncate(bytes.len() / 2);
    let mut misannounced = snapshot.meta.clone();
    misannounced.last_log_id = Some(log_id(12));
    for (meta, bytes, why) in [
        (&snapshot.meta, &flipped[..], "does not check out"),
        (&snapshot.meta, &truncated[..], "truncated"),
        (&misannounced, &bytes[..], "another applied marker"),
    ] {
        // Each on a state machine of its own: the first fault reported is the one kept.
        let (mut sm, fault) = state_machine_on(target.clone(), b.path());
        let err = receive(&mut sm, meta, bytes).await.unwrap_err();
        assert!(err.to_string().contains(why) || format!("{err:?}").contains(why), "{err:?}");
        assert_eq!((view(&target), sm.applied_state().await.unwrap()), before);
        assert!(sm.get_current_snapshot().await.unwrap().is_none());
        assert!(files(&b.path().join("snapshots"), ".tmp").is_empty());
        // The leader sent something that does not check out: a protocol fault (keep the
        // evidence, tell the consortium), never a storage fault (repair the disk).
        let reason = fault.reason().expect("the refusal is reported");
        assert!(fault.is_protocol(), "{why}: reported as a storage fault: {reason}");
        assert!(reason.contains("installing the snapshot up to entry"), "{reason}");
    }
    // The genuine one still installs.
    receive(&mut sm, &snapshot.meta, &bytes).await.unwrap();
    assert_eq!(target.tip().height, 10);
}

#[test]
fn the_default_snapshot_settings_are_every_2000_scaled() {
    assert_eq!(SnapshotSettings::every(SNAPSHOT_EVERY_ENTRIES), SnapshotSettings::default());
    let small = SnapshotSettings::every(40);
    assert_eq!((small.keep_behind, small.purge_batch), (10, 5));
    // Never a zero interval or batch, whatever is asked.
    let tiny = SnapshotSettings::every(0);
    assert_eq!((tiny.every_entries, tiny.keep_behind, tiny.purge_batch), (1, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_that_breaks_the_protocol_stops_the_node_and_a_stale_one_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new();
    let ledger = ledger_at(dir.path(), &chain.genesis);
    let (mut sm, fault) = state_machine_on(ledger.clone(), dir.path());
    let first = chain.block(1);
    let stale = chain.seal(Tip::genesis(&chain.genesis).propose(9, Vec::new()));
    let results = sm
        .apply([
            Entry { log_id: log_id(1), payload: EntryPayload::Normal(first) },
            Entry { log_id: log_id(2), payload: EntryPayload::Normal(stale) },
        ])
        .await
        .unwrap();
    assert!(matches!(&results[0], BlockResult::Applied(r) if r.len() == 1), "{results:?}");
    assert!(
        matches!(&results[1], BlockResult::Rejected(r) if r.contains("at or behind the tip")),
        "{results:?}"
    );
    assert!(fault.reason().is_none());

    // The next block, sealed by someone other than its proposer.
    let mut forged = chain.block(1);
    forged.seal = SealedBlock::seal(
        forged.block.clone(),
        &chain.genesis.chain_id,
        1,
        1,
        &SigningKey::generate(),
    )
    .seal;
    let before = (view(&ledger), sm.applied_state().await.unwrap());
    let err = sm
        .apply([Entry { log_id: log_id(3), payload: EntryPayload::Normal(forged) }])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("its seal does not verify"), "{err}");
    assert!(fault.is_protocol(), "{:?}", fault.reason());
    assert!(fault.reason().unwrap().contains("proposer node 1"), "{:?}", fault.reason());
    assert_eq!((view(&ledger), sm.applied_state().await.unwrap()), before, "nothing applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_does_not_extend_the_applied_history_is_refused_and_nothing_changes() {
    let (a, b, c) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut chain = Chain::new();
    let (snapshot, bytes) = built(a.path(), &mut chain, 10).await;

    // A node that applied a block 1 of its own: the snapshot would rewrite it.
    let forked = ledger_at(b.path(), &chain.genesis);
    let (mut sm, fault) = state_machine_on(forked.clone(), b.path());
    let own = chain.seal(Tip::genesis(&chain.genesis).propose(5, Vec::new()));
    sm.apply([Entry { log_id: log_id(1), payload: EntryPayload::Normal(own) }]).await.unwrap();
    let before = (view(&forked), sm.applied_state().await.unwrap());
    let err = receive(&mut sm, &snapshot.meta, &bytes).await.unwrap_err();
    assert!(
        format!("{err:?}").contains("its block 1 differs from the block 1 this ledger applied"),
        "{err:?}"
    );
    assert_eq!((view(&forked), sm.applied_state().await.unwrap()), before);
    assert!(
        fault.is_protocol(),
        "a rewriting snapshot is the leader's fault: {:?}",
        fault.reason()
    );

    // A node ahead of the snapshot: it would roll back.
    let mut longer = Chain { tip: Tip::genesis(&chain.genesis), nonce: 0, ..chain };
    let ahead = ledger_at(c.path(), &longer.genesis);
    let (mut sm, fault) = state_machine_on(ahead.clone(), c.path());
    let entries: Vec<Entry<TypeConfig>> = (0..12)
        .map(|i| Entry { log_id: log_id(i + 1), payload: EntryPayload::Normal(longer.block(1)) })
        .collect();
    sm.apply(entries).await.unwrap();
    let before = (view(&ahead), sm.applied_state().await.unwrap());
    let err = receive(&mut sm, &snapshot.meta, &bytes).await.unwrap_err();
    assert!(format!("{err:?}").contains("its block 10 differs from the block 10"), "{err:?}");
    assert_eq!((view(&ahead), sm.applied_state().await.unwrap()), before);
    assert!(
        fault.is_protocol(),
        "a rolling-back snapshot is the leader's fault: {:?}",
        fault.reason()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_block_whose_header_does_not_match_its_transactions_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new();
    let ledger = ledger_at(dir.path(), &chain.genesis);
    let (mut sm, fault) = state_machine_on(ledger.clone(), dir.path());
    // Properly sealed by its proposer, but its header claims another transaction root.
    let mut block = chain.block(2).block;
    block.header.tx_root = Hash::of(b"another root");
    let bad = chain.seal(block);
    let before = (view(&ledger), sm.applied_state().await.unwrap());
    let err = sm
        .apply([Entry { log_id: log_id(1), payload: EntryPayload::Normal(bad) }])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tx_root does not match"), "{err}");
    assert!(fault.is_protocol(), "{:?}", fault.reason());
    assert_eq!((view(&ledger), sm.applied_state().await.unwrap()), before, "nothing applied");
}

/// The current snapshot handed to Raft (to send to a lagging node) stays readable when a newer
/// one is published and deletes its file: it is opened while no publication can run. Opened
/// by path afterwards, it could be gone, and the Raft core stopped on "No such file" (found by
/// the simulation, `raft/sim`, seed 1021 under load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_snapshot_stays_readable_when_a_newer_one_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new();
    let (first, _) = built(dir.path(), &mut chain, 3).await;
    let snapshots = snapshots::SnapshotDir::open(&dir.path().join("snapshots")).unwrap();
    let (published, file) = snapshots.open_newest().unwrap().expect("a snapshot");
    assert_eq!(published.meta, first.meta);

    // A newer snapshot is published and the older file deleted.
    let (_, mut sm) = state_machine(dir.path(), &chain.genesis);
    let entries: Vec<Entry<TypeConfig>> = (0..3)
        .map(|i| Entry { log_id: log_id(i + 5), payload: EntryPayload::Normal(chain.block(1)) })
        .collect();
    sm.apply(entries).await.unwrap();
    let newer = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert!(newer.meta.last_log_id > first.meta.last_log_id);
    assert!(!published.path.exists(), "the older snapshot's file was deleted");
    assert!(std::fs::File::open(&published.path).is_err(), "opening it by path now fails");

    // The file opened before still reads whole, and it is the older snapshot.
    let mut bytes = Vec::new();
    tokio::fs::File::from_std(file).read_to_end(&mut bytes).await.unwrap();
    let header = medledger_ledger::SnapshotHeader::read_from(&mut bytes.as_slice()).unwrap();
    assert_eq!(snapshots::marker_of(&header).unwrap().0, first.meta.last_log_id);
}

/// The blocks skipped since the last applied one are stored with the applied marker: a node
/// that restarts, or installs a snapshot taken, between a skipped block and the block built on
/// it skips that block as every other node does. Before, it started with an empty list and
/// stopped on "skips heights" (and stayed stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_or_a_snapshot_between_a_skipped_block_and_its_successor_skips_it_too() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut chain = Chain::new();
    let in_term = |term: u64, index: u64| LogId::new(CommittedLeaderId::new(term, 1), index);
    let (first, sealed_for_term_1) = (chain.block(1), chain.block(1));
    // Built on the skipped block, and sealed for the term it is ordered in.
    let built_on_it = chain.block(1).block;
    let built_on_it = SealedBlock::seal(built_on_it, &chain.genesis.chain_id, 1, 2, &chain.node);
    let (ledger, mut sm) = state_machine(a.path(), &chain.genesis);
    let results = sm
        .apply([
            Entry { log_id: in_term(1, 1), payload: EntryPayload::Normal(first) },
            // Ordered in term 2: skipped on every node.
            Entry { log_id: in_term(2, 2), payload: EntryPayload::Normal(sealed_for_term_1) },
        ])
        .await
        .unwrap();
    assert!(matches!(&results[1], BlockResult::Rejected(r) if r.contains("sealed for term 1")));
    let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let mut bytes = Vec::new();
    let mut data = snapshot.snapshot;
    data.read_to_end(&mut bytes).await.unwrap();
    drop(sm);

    // The successor, two heights above the tip, after a restart and after a snapshot install.
    let successor = Entry { log_id: in_term(2, 3), payload: EntryPayload::Normal(built_on_it) };
    let (mut restarted, fault) = state_machine_on(ledger.clone(), a.path());
    let (target, mut installed) = state_machine(b.path(), &chain.genesis);
    receive(&mut installed, &snapshot.meta, &bytes).await.unwrap();
    for sm in [&mut restarted, &mut installed] {
        let results = sm.apply([successor.clone()]).await.unwrap();
        assert!(
            matches!(&results[0], BlockResult::Rejected(r) if r.contains("that was skipped")),
            "{results:?}"
        );
        assert_eq!(sm.applied_state().await.unwrap().0, Some(in_term(2, 3)));
    }
    assert!(fault.reason().is_none(), "{:?}", fault.reason());
    assert_eq!((ledger.tip().height, target.tip().height), (1, 1));

    // The stored list holds both; the next block on the tip applies and empties it.
    let stored = |ledger: &Ledger| {
        super::state_machine::decode_marker(&ledger.applied_marker().unwrap().unwrap()).unwrap().1
    };
    assert_eq!(stored(&ledger).hashes().len(), 2);
    let next = ledger.tip().propose(10, vec![]);
    let next = SealedBlock::seal(next, &chain.genesis.chain_id, 1, 2, &chain.node);
    let results = restarted
        .apply([Entry { log_id: in_term(2, 4), payload: EntryPayload::Normal(next) }])
        .await
        .unwrap();
    assert!(matches!(&results[0], BlockResult::Applied(_)), "{results:?}");
    assert_eq!(stored(&ledger), Default::default());
}

/// A snapshot whose Raft membership names a node its own ledger never admitted is refused
/// before anything is written (issue 12's snapshot gap): the node stops with a protocol fault
/// rather than follow that membership, and neither keeps nor serves the snapshot. So is one
/// naming a voter only in its configuration, not among its nodes (a decoded membership is not
/// validated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_whose_membership_names_an_unadmitted_node_is_refused() {
    let node = |port: u16| BasicNode { addr: format!("127.0.0.1:{port}") };
    let stranger =
        Membership::new(vec![BTreeSet::from([1, 9])], BTreeMap::from([(1, node(1)), (9, node(9))]));
    let mut phantom = serde_json::to_value(Membership::new(
        vec![BTreeSet::from([1])],
        BTreeMap::from([(1, node(1))]),
    ))
    .unwrap();
    phantom["configs"] = serde_json::json!([[1, 9]]);
    let phantom: Membership<u64, BasicNode> = serde_json::from_value(phantom).unwrap();
    assert!(phantom.voter_ids().any(|id| id == 9) && phantom.get_node(&9).is_none());
    for (membership, why) in [(stranger, "never admitted"), (phantom, "as a voter but not")] {
        let marker =
            (Some(log_id(4)), openraft::StoredMembership::new(Some(log_id(1)), membership));
        refused_with_marker(marker, why).await;
    }
}

/// A snapshot whose blocks are sealed for a later Raft term than the log entry it says it was
/// taken at is refused: no leader of a later term sealed a block before that entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_holding_a_block_sealed_after_its_own_term_is_refused() {
    let in_term_0 = |index| LogId::new(CommittedLeaderId::new(0, 1), index);
    let membership = Membership::new(
        vec![BTreeSet::from([1])],
        BTreeMap::from([(1, BasicNode { addr: "127.0.0.1:1".into() })]),
    );
    let marker =
        (Some(in_term_0(4)), openraft::StoredMembership::new(Some(in_term_0(1)), membership));
    refused_with_marker(marker, "its block 1: it is sealed for Raft term 1, after the term 0")
        .await;
}

/// A snapshot of three blocks (sealed for term 1) taken as if at `marker`, sent to a new
/// node: refused with `why`, as a protocol fault, with nothing changed and nothing kept.
async fn refused_with_marker(marker: super::state_machine::Marker, why: &str) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut chain = Chain::new();
    built(a.path(), &mut chain, 3).await;
    let (source, mut sm) = state_machine(a.path(), &chain.genesis);
    source
        .set_applied_marker(&super::state_machine::encode_marker(&marker, &Default::default()))
        .unwrap();
    let mut snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let mut bytes = Vec::new();
    snapshot.snapshot.read_to_end(&mut bytes).await.unwrap();

    let target = ledger_at(b.path(), &chain.genesis);
    let (mut installing, fault) = state_machine_on(target.clone(), b.path());
    let before = (view(&target), installing.applied_state().await.unwrap());
    let err = receive(&mut installing, &snapshot.meta, &bytes).await.unwrap_err();
    assert!(format!("{err:?}").contains(why), "{err:?}");
    assert!(fault.is_protocol(), "{:?}", fault.reason());
    assert_eq!((view(&target), installing.applied_state().await.unwrap()), before);
    assert!(installing.get_current_snapshot().await.unwrap().is_none());
    assert!(files(&b.path().join("snapshots"), ".tmp").is_empty());
}

/// Node 2 as a follower over the ledger and log in `dir`, and the fault it reports to.
async fn follower_at(dir: &Path, genesis: &Genesis) -> (Arc<Ledger>, Started, Arc<StorageFault>) {
    let ledger = ledger_at(dir, genesis);
    let (applied, _) = tokio::sync::watch::channel(0);
    let key = Arc::new(SigningKey::generate());
    let transport = Arc::new(super::transport::Transport::new(2, key, ledger.clone()));
    let network = super::network::Network::new(transport).unwrap();
    let fault = Arc::new(StorageFault::default());
    let started = start_with(
        ledger.clone(),
        &dir.join("raft-log.redb"),
        2,
        "127.0.0.1:2",
        network,
        PreVerified::default(),
        applied,
        fault.clone(),
        SnapshotSettings::every(1000),
    )
    .await
    .unwrap();
    (ledger, started, fault)
}

/// What the receiving end answers to a snapshot's last chunk.
type SnapshotAnswer = Result<
    openraft::raft::InstallSnapshotResponse<u64>,
    openraft::error::RaftError<u64, openraft::error::InstallSnapshotError>,
>;

/// The snapshot `meta`/`bytes` as leader 1 of term 1 sends it, in chunks, to `started`'s
/// receiving end: the answer to the last chunk.
async fn send_snapshot(
    started: &Started,
    meta: &openraft::SnapshotMeta<u64, BasicNode>,
    bytes: &[u8],
) -> SnapshotAnswer {
    send_snapshot_as(started, openraft::Vote::new_committed(1, 1), meta, bytes).await
}

/// [`send_snapshot`] by a sender with `vote`.
async fn send_snapshot_as(
    started: &Started,
    vote: openraft::Vote<u64>,
    meta: &openraft::SnapshotMeta<u64, BasicNode>,
    bytes: &[u8],
) -> SnapshotAnswer {
    let chunks: Vec<&[u8]> = bytes.chunks(64 * 1024).collect();
    let mut answer = None;
    for (i, chunk) in chunks.iter().enumerate() {
        let req = openraft::raft::InstallSnapshotRequest {
            vote,
            meta: meta.clone(),
            offset: (i * 64 * 1024) as u64,
            data: chunk.to_vec(),
            done: i + 1 == chunks.len(),
        };
        answer = Some(started.receiver.receive(&started.raft, req).await);
    }
    answer.expect("at least one chunk")
}

/// A snapshot that does not check out, arriving at a follower whose log holds entries, is
/// refused before Raft hears of it (issue 12's snapshot gap: openraft purges the log behind a
/// snapshot while the state machine is still installing it). The node stops with a protocol
/// fault, its ledger and its Raft log as they were, so that it restarts from them, and the
/// genuine snapshot then installs and lets the log be purged behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_snapshot_leaves_the_raft_log_unpurged_and_the_node_restarts_from_it() {
    tokio::time::timeout(LIMIT, async {
        // The follower holds the membership entry and the first two blocks, as leader 1 sent
        // them, committed and applied.
        let r = Receiving::new().await;
        let (meta, bytes, source) = (r.snapshot.meta.clone(), r.bytes.clone(), r.source.clone());
        let before = view(&r.target);

        // One byte of the first hospital's row flipped (as in the install test above).
        let mut flipped = bytes.clone();
        let table = [&[4u8, 9, 0, 0, 0][..], b"hospitals"].concat();
        let at = bytes.windows(table.len()).position(|w| w == table).unwrap() + table.len();
        flipped[at + 5 + 4 + 20 + 8] ^= 1;
        let err = send_snapshot(&r.started, &meta, &flipped).await.unwrap_err();
        assert!(format!("{err:?}").contains("does not check out"), "{err:?}");
        let reason = r.fault.reason().expect("the refusal is reported");
        assert!(r.fault.is_protocol(), "reported as a storage fault: {reason}");
        assert_eq!(view(&r.target), before);

        let (_a, b, chain) = r.stop().await;
        {
            let mut log =
                LogStore::open(&b.path().join("raft-log.redb"), Default::default()).unwrap();
            let state = openraft::storage::RaftLogStorage::get_log_state(&mut log).await.unwrap();
            assert_eq!(state.last_purged_log_id, None, "the log was purged for a refused snapshot");
            assert_eq!(state.last_log_id, Some(log_id(3)));
            let closed = log.closed();
            drop(log);
            assert!(closed.wait(LIMIT).await);
        }
        assert!(offline_check(b.path()).problems.is_empty(), "{:?}", offline_check(b.path()));

        // Restarted, the node takes the genuine snapshot; the log behind it goes.
        let (target, started, fault) = follower_at(b.path(), &chain.genesis).await;
        assert_eq!(target.tip().height, 2);
        send_snapshot(&started, &meta, &bytes).await.unwrap();
        assert_eq!(fault.reason(), None);
        assert_eq!(view(&target), view(&source));
        started
            .raft
            .wait(Some(LIMIT))
            .metrics(|m| m.purged == Some(log_id(11)), "the log behind the snapshot purged")
            .await
            .unwrap();
        let Started { raft, closed, receiver } = started;
        drop(receiver);
        stop(raft, target).await;
        assert!(closed.wait(LIMIT).await);
    })
    .await
    .expect("the test took too long");
}

/// A follower whose log holds leader 1's entries of term 1, committed and applied up to
/// block 2 (so its vote is leader 1's of term 1), over the ledger in `dir`.
async fn follower_of_term_1(
    dir: &Path,
    chain: &mut Chain,
    source: &Ledger,
    membership: openraft::Membership<u64, BasicNode>,
) -> (Arc<Ledger>, Started, Arc<StorageFault>) {
    let (target, started, fault) = follower_at(dir, &chain.genesis).await;
    // (Raft's log starts at index 0; the leader's first entry there is a blank one.)
    let mut entries = vec![
        Entry::<TypeConfig> { log_id: log_id(0), payload: EntryPayload::Blank },
        Entry { log_id: log_id(1), payload: EntryPayload::Membership(membership) },
    ];
    for height in 1..=2 {
        let block = chain.seal(block_of(source, height));
        entries.push(Entry { log_id: log_id(height + 1), payload: EntryPayload::Normal(block) });
    }
    let append = openraft::raft::AppendEntriesRequest {
        vote: openraft::Vote::new_committed(1, 1),
        prev_log_id: None,
        entries,
        leader_commit: Some(log_id(3)),
    };
    assert!(started.raft.append_entries(append).await.unwrap().is_success());
    while target.tip().height < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (target, started, fault)
}

/// A snapshot of ten blocks built by a source node (in `a`), and a follower (in `b`) that
/// applied the first two of them as leader 1 of term 1 sent them ([`follower_of_term_1`]).
struct Receiving {
    a: tempfile::TempDir,
    b: tempfile::TempDir,
    chain: Chain,
    snapshot: Snapshot<TypeConfig>,
    bytes: Vec<u8>,
    source: Arc<Ledger>,
    target: Arc<Ledger>,
    started: Started,
    fault: Arc<StorageFault>,
}

impl Receiving {
    async fn new() -> Self {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut chain = Chain::new();
        let (snapshot, bytes) = built(a.path(), &mut chain, 10).await;
        let source = ledger_at(a.path(), &chain.genesis);
        let membership = snapshot.meta.last_membership.membership().clone();
        let (target, started, fault) =
            follower_of_term_1(b.path(), &mut chain, &source, membership).await;
        Receiving { a, b, chain, snapshot, bytes, source, target, started, fault }
    }

    /// Stops the follower and waits until its Raft log is closed.
    async fn stop(self) -> (tempfile::TempDir, tempfile::TempDir, Chain) {
        let Started { raft, closed, receiver } = self.started;
        drop(receiver);
        stop(raft, self.target).await;
        assert!(closed.wait(LIMIT).await, "the Raft log was not closed");
        (self.a, self.b, self.chain)
    }
}

/// A snapshot that claims a last entry of a later term than the vote of the leader sending it
/// is made up (a leader of term T holds no entry of a later term; such a snapshot would pass
/// for newer than entries this node acknowledged): refused as a protocol fault before it is
/// imported, whatever its content, and the ledger is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_whose_last_entry_is_of_a_later_term_than_its_sender_s_vote_is_refused() {
    tokio::time::timeout(LIMIT, async {
        let r = Receiving::new().await;
        let before = view(&r.target);
        // The genuine snapshot's bytes, its last entry claimed for term 2 by leader 1 of term 1.
        let mut meta = r.snapshot.meta.clone();
        let last = meta.last_log_id.unwrap();
        meta.last_log_id = Some(LogId::new(CommittedLeaderId::new(2, 1), last.index));
        let err = send_snapshot(&r.started, &meta, &r.bytes).await.unwrap_err();
        assert!(format!("{err:?}").contains("later term than its sender's vote"), "{err:?}");
        let reason = r.fault.reason().expect("the refusal is reported");
        assert!(r.fault.is_protocol(), "reported as a storage fault: {reason}");
        assert_eq!(view(&r.target), before, "a made-up snapshot was imported");
        r.stop().await;
    })
    .await
    .expect("the test took too long");
}

/// A snapshot's chunk from a sender whose vote is behind this node's (a deposed leader) is
/// answered with this node's vote, and nothing is written: no chunk kept, nothing imported,
/// no fault; the same snapshot from the current leader then installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_from_a_sender_behind_this_node_s_vote_is_answered_with_it_and_writes_nothing() {
    tokio::time::timeout(LIMIT, async {
        let r = Receiving::new().await;
        let before = view(&r.target);
        let mine = r.started.raft.metrics().borrow().vote;
        assert_eq!(mine, openraft::Vote::new_committed(1, 1));
        let stale = openraft::Vote::new(0, 1);
        let answer = send_snapshot_as(&r.started, stale, &r.snapshot.meta, &r.bytes).await.unwrap();
        assert_eq!(answer.vote, mine, "the sender is not told this node's vote");
        assert_eq!(r.fault.reason(), None);
        assert_eq!(view(&r.target), before, "a deposed leader's snapshot was imported");
        assert_eq!(r.started.raft.metrics().borrow().snapshot, None);
        // The current leader's copy is taken.
        send_snapshot(&r.started, &r.snapshot.meta, &r.bytes).await.unwrap();
        assert_eq!(view(&r.target), view(&r.source));
        r.stop().await;
    })
    .await
    .expect("the test took too long");
}

/// Entries a snapshot imported on receipt already holds are skipped when Raft applies them
/// (Raft may decline the snapshot after its import, e.g. when a new leader's vote overtook it,
/// and send those entries instead); the entries after it apply on top, and the snapshot handed
/// over late changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_a_snapshot_imported_on_receipt_holds_are_skipped_and_the_next_apply_on_top() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut chain = Chain::new();
    let (snapshot, bytes) = built(a.path(), &mut chain, 10).await;
    let source = ledger_at(a.path(), &chain.genesis);
    let (target, mut sm) = state_machine(b.path(), &chain.genesis);
    let membership = snapshot.meta.last_membership.membership().clone();
    let mut entries: Vec<Entry<TypeConfig>> =
        vec![Entry { log_id: log_id(1), payload: EntryPayload::Membership(membership) }];
    for height in 1..=10 {
        let block = chain.seal(block_of(&source, height));
        entries.push(Entry { log_id: log_id(height + 1), payload: EntryPayload::Normal(block) });
    }
    sm.apply(entries[..3].to_vec()).await.unwrap();

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let marker = (snapshot.meta.last_log_id, snapshot.meta.last_membership.clone());
    let previous = snapshot.meta.last_membership.membership().clone();
    super::state_machine::import(&target, file.as_file(), &marker, &previous).unwrap();
    assert_eq!(target.tip().height, 10);

    let next = Entry { log_id: log_id(12), payload: EntryPayload::Normal(chain.block(2)) };
    let results = sm.apply([entries[3..].to_vec(), vec![next]].concat()).await.unwrap();
    assert_eq!(results.len(), 9);
    assert!(results.iter().all(|r| matches!(r, BlockResult::Applied(_))), "{results:?}");
    assert_eq!(target.tip().height, 11);
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(12)));

    // Raft handing over that snapshot now (it had declined it) changes nothing; the file it
    // received is not kept, a snapshot of the ledger as it is replaces it.
    let before = (view(&target), sm.applied_state().await.unwrap());
    receive(&mut sm, &snapshot.meta, &bytes).await.unwrap();
    assert_eq!((view(&target), sm.applied_state().await.unwrap()), before);
    let current = sm.get_current_snapshot().await.unwrap().expect("a snapshot of the ledger");
    assert_eq!(current.meta.last_log_id, Some(log_id(12)));
    assert!(files(&b.path().join("snapshots"), ".tmp").is_empty());

    // Passed or not, it is checked: a membership naming a node never admitted is refused.
    let mut stranger = snapshot.meta.clone();
    stranger.last_membership = openraft::StoredMembership::new(
        Some(log_id(1)),
        Membership::new(
            vec![BTreeSet::from([1, 9])],
            BTreeMap::from([
                (1, BasicNode { addr: "127.0.0.1:1".into() }),
                (9, BasicNode { addr: "127.0.0.1:9".into() }),
            ]),
        ),
    );
    let (mut checking, fault) = state_machine_on(target.clone(), b.path());
    let err = receive(&mut checking, &stranger, &bytes).await.unwrap_err();
    assert!(format!("{err:?}").contains("another applied marker"), "{err:?}");
    assert!(fault.is_protocol());
}

/// An entry at or before the point of an imported snapshot is skipped only if it can precede
/// it: one of a later term (or another entry at its very index) means the snapshot's log id
/// was made up, and the node stops rather than skip everything after it in silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_cannot_precede_the_imported_snapshot_stops_the_node() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut chain = Chain::new();
    let (snapshot, bytes) = built(a.path(), &mut chain, 10).await;
    let target = ledger_at(b.path(), &chain.genesis);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let marker = (snapshot.meta.last_log_id, snapshot.meta.last_membership.clone());
    let previous = Membership::new(vec![], BTreeMap::new());
    super::state_machine::import(&target, file.as_file(), &marker, &previous).unwrap();
    let later_term = LogId::new(CommittedLeaderId::new(2, 1), 5);
    let other_at_point = LogId::new(CommittedLeaderId::new(1, 2), 11);
    for log_id in [later_term, other_at_point] {
        let (mut sm, fault) = state_machine_on(target.clone(), b.path());
        let err = sm.apply([Entry { log_id, payload: EntryPayload::Blank }]).await.unwrap_err();
        assert!(format!("{err:?}").contains("cannot precede the snapshot"), "{err:?}");
        assert!(fault.is_protocol(), "{:?}", fault.reason());
    }
    // One that can precede it is skipped.
    let (mut sm, fault) = state_machine_on(target.clone(), b.path());
    sm.apply([Entry { log_id: log_id(5), payload: EntryPayload::Blank }]).await.unwrap();
    assert_eq!(fault.reason(), None);
}
