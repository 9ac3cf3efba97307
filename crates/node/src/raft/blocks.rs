//! What every node checks of a committed block before it applies it, and what it does when a
//! check fails.
//!
//! Raft orders entries; it does not vouch for them. So every node, leader and followers
//! alike, decides each block in log order from its own applied state:
//!
//! - **Skip** (every node alike, deterministically; the block's senders resubmit): a block
//!   built on a stale view of the tip: at or behind the tip, or at the next height but on a
//!   predecessor that was itself skipped (what a deposed or pipelining leader honestly
//!   proposes); a block sealed for another term than the one that ordered it (a leader
//!   whose term changed as it sealed); a block whose proposer the ledger suspended or
//!   removed before it was applied; a block built on one this node skipped since it last
//!   applied one ([`Skipped`]), whatever its height: a pipelining leader builds block N+1 on
//!   its own block N before N is decided, and when N is skipped, N+1 comes two heights above
//!   the tip.
//! - **Refuse** (this node stops with the reason, rather than diverge): a seal that is not
//!   the proposer's or names a node never admitted; a block that skips heights and is not
//!   built on a skipped block (this node lost a block, or the leader skipped one); a block time
//!   earlier than its predecessor's or more than [`MAX_AHEAD_MS`] ahead of this node's clock;
//!   a transaction whose signature does not verify; header fields that do not match the
//!   transactions. None of these can come from an honest leader: it checked every signature
//!   at admission and builds each block on the tip it applied.
//!
//! The clock check is the only one that depends on the node rather than the log: a block
//! that far ahead of a follower's clock means a leader's clock (or the follower's) is wrong,
//! and an operator must look before ledger time (which decides expiries) runs ahead.

use std::{collections::VecDeque, sync::Arc};

use medledger_core::{Hash, block::BlockError, seal::SealedBlock};
use medledger_ledger::{Ledger, LedgerError, SealFault, judge_seal, verify_signatures};

use super::{PreVerified, TypeConfig};

/// How far ahead of this node's clock a block's time may be.
pub const MAX_AHEAD_MS: u64 = 60_000;

/// How many skipped blocks are remembered: an honest chain of skips is as long as a leader's
/// pipeline ([`crate::producer::PIPELINE`] blocks) times the terms it spans; far fewer than
/// this.
const SKIPPED_KEPT: usize = 64;

/// The hashes of the blocks this node skipped since it last applied one, in log order: every
/// node decides the same blocks in the same order, so every node holds the same list. It is
/// stored with the applied marker (`state_machine::encode_marker`), so a node that restarts,
/// or installs a snapshot taken, between a skipped block and its successor still holds it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped(VecDeque<Hash>);

impl Skipped {
    /// The list as stored, oldest first.
    pub fn hashes(&self) -> Vec<Hash> {
        self.0.iter().copied().collect()
    }

    /// A stored list (keeping the newest [`SKIPPED_KEPT`]).
    pub fn from_hashes(hashes: Vec<Hash>) -> Self {
        let mut out = Skipped::default();
        hashes.into_iter().for_each(|h| out.note(h));
        out
    }

    /// Notes that the block `hash` was skipped.
    pub fn note(&mut self, hash: Hash) {
        if self.0.len() == SKIPPED_KEPT {
            self.0.pop_front();
        }
        self.0.push_back(hash);
    }

    /// Forgets every skipped block (a block was applied, or a snapshot installed).
    pub fn clear(&mut self) {
        self.0.clear();
    }

    fn contains(&self, hash: &Hash) -> bool {
        self.0.contains(hash)
    }
}

/// What to do with a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it; `signature_ok[i]` is transaction `i`'s signature check (all true).
    Apply(Vec<bool>),
    /// Skip it, as every node does.
    Skip(String),
    /// Stop: the block breaks the protocol.
    Refuse(String),
}

/// Decides `sealed`, ordered by Raft in `term`, against the ledger's applied state at `now_ms`
/// and the blocks `skipped` since the last one applied. `preverified`: this node checked the
/// transactions' signatures at admission (its own block).
pub fn check(
    ledger: &Ledger,
    term: u64,
    sealed: &SealedBlock,
    skipped: &Skipped,
    preverified: bool,
    now_ms: u64,
) -> Result<Verdict, LedgerError> {
    let (block, seal) = (&sealed.block, &sealed.seal);
    let h = &block.header;
    let at = format!("block {} (Raft term {term}, proposer node {})", h.height, seal.proposer);
    // The rule a snapshot's replay and `verify` judge stored seals by; an inactive proposer's
    // block is skipped here (as every node skips it), never applied.
    // No previous term here: the term check below (the entry's own) is stricter, since Raft's
    // log never goes back a term; `apply_sealed_block` checks it against the stored seal too.
    let judged =
        judge_seal(&ledger.genesis().chain_id, h, seal, None, |id| ledger.node_member(id))?;
    if let Err(fault @ (SealFault::Unknown(_) | SealFault::BadSignature { .. })) = &judged {
        return Ok(Verdict::Refuse(format!("{at}: {fault}")));
    }
    if seal.term != term {
        return Ok(Verdict::Skip(format!("{at} was sealed for term {}", seal.term)));
    }
    if let Err(fault) = judged {
        return Ok(Verdict::Skip(format!("{at}: {fault}")));
    }
    let tip = ledger.tip();
    if h.height <= tip.height {
        return Ok(Verdict::Skip(format!("{at} is at or behind the tip, height {}", tip.height)));
    }
    if h.height > tip.height + 1 {
        // Only a height gap consults the list: a block at the next height is decided by the
        // tip alone, so a node whose list was emptied (a restart, a snapshot) decides it as
        // every other node does.
        if skipped.contains(&h.prev_hash) {
            return Ok(Verdict::Skip(format!(
                "{at} is built on block {} that was skipped",
                h.prev_hash
            )));
        }
        return Ok(Verdict::Refuse(format!("{at} skips heights: the tip is {}", tip.height)));
    }
    if h.prev_hash != tip.hash {
        return Ok(Verdict::Skip(format!("{at} follows a block that was skipped")));
    }
    if h.time_ms < tip.time_ms {
        return Ok(Verdict::Refuse(
            BlockError::Time { height: h.height, prev: tip.time_ms, got: h.time_ms }.to_string(),
        ));
    }
    if h.time_ms > now_ms.saturating_add(MAX_AHEAD_MS) {
        return Ok(Verdict::Refuse(format!(
            "{at} is timed {} ms, {} ms ahead of this node's clock (at most {MAX_AHEAD_MS} ms)",
            h.time_ms,
            h.time_ms - now_ms
        )));
    }
    let signature_ok = if preverified {
        vec![true; block.txs.len()]
    } else {
        let started = std::time::Instant::now();
        let ok = verify_signatures(&block.txs, |_| false);
        ledger.stages().add(medledger_ledger::stages::Stage::Verify, started.elapsed());
        ok
    };
    if let Some(bad) = signature_ok.iter().position(|ok| !ok) {
        return Ok(Verdict::Refuse(format!(
            "{at}: transaction {bad} ({}) has a signature that does not verify",
            block.txs[bad].hash()
        )));
    }
    Ok(Verdict::Apply(signature_ok))
}

/// Starts checking the signatures of the blocks a leader just sent, on all cores in the
/// background, while Raft stores them and the state machine applies earlier ones: the check
/// of block N+1 overlaps the apply of block N instead of following it. `applied` is the
/// height of the last block applied here (from the node's watch, not the ledger's writer lock,
/// which an apply holds: this runs on the request's async worker, for every append, before
/// openraft has looked at it). Blocks at or below it, and blocks already checked or being
/// checked, are left alone. A block counts as checked only if its transactions are the ones
/// its header commits to and every signature verifies ([`PreVerified`]); apply takes that
/// verdict, waiting for a check still running, and checks any other block itself ([`check`]).
pub fn check_signatures_ahead(
    ledger: &Arc<Ledger>,
    preverified: &PreVerified,
    applied: u64,
    entries: &[openraft::Entry<TypeConfig>],
) {
    let blocks: Vec<(Hash, medledger_core::block::Block)> = entries
        .iter()
        .filter_map(|e| match &e.payload {
            openraft::EntryPayload::Normal(sealed) if sealed.block.header.height > applied => {
                let hash = sealed.block.header.hash();
                preverified.start(hash).then(|| (hash, sealed.block.clone()))
            }
            _ => None,
        })
        .collect();
    if blocks.is_empty() {
        return;
    }
    // Every claimed block is finished, whatever happens to the task (see `Claim`).
    let claims: Vec<_> = blocks.iter().map(|(hash, _)| Claim::new(preverified, *hash)).collect();
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || {
        for ((_, block), claim) in blocks.into_iter().zip(claims) {
            let started = std::time::Instant::now();
            // A leader could send other transactions under the same header (in an append
            // openraft then rejects): they must be the ones the header commits to.
            let all_ok = block.transactions_match_header()
                && verify_signatures(&block.txs, |_| false).iter().all(|ok| *ok);
            ledger.stages().add(medledger_ledger::stages::Stage::Verify, started.elapsed());
            claim.finish(all_ok);
        }
    });
}

/// A block's check claimed in [`PreVerified`], finished when dropped: with the verdict once
/// set, as failed if the check never ran to the end (a panic, a runtime shutting down), so
/// that apply never waits for a check nobody is running.
struct Claim {
    preverified: PreVerified,
    hash: Hash,
    all_ok: bool,
}

impl Claim {
    fn new(preverified: &PreVerified, hash: Hash) -> Self {
        Claim { preverified: preverified.clone(), hash, all_ok: false }
    }

    /// Ends the check with its verdict.
    fn finish(mut self, all_ok: bool) {
        self.all_ok = all_ok;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.preverified.finish(self.hash, self.all_ok);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use medledger_core::{
        Hash,
        block::{Genesis, Tip},
        ids::AccountId,
        keys::{DecryptionKey, PublicKey, SigningKey},
        tx::{
            AdmitHospital, NodeTx, RegistryTx, SealedRef, SignedTransaction, Transaction, TxBody,
        },
    };

    use medledger_ledger::NodeStatus;

    use super::*;

    struct Net {
        ledger: Arc<Ledger>,
        node: SigningKey,
        regulator: SigningKey,
        tip: Tip,
        _dir: tempfile::TempDir,
    }

    const NOW: u64 = 1_000_000;

    fn net() -> Net {
        let (node, regulator) = (SigningKey::generate(), SigningKey::generate());
        let genesis = Genesis {
            chain_id: "blocks-test".into(),
            time_ms: 1,
            regulator_key: regulator.public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: node.public_key(),
        };
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(Ledger::create(&dir.path().join("l.redb"), genesis.clone()).unwrap());
        Net { ledger, node, regulator, tip: Tip::genesis(&genesis), _dir: dir }
    }

    impl Net {
        fn seal(&self, block: medledger_core::block::Block, term: u64) -> SealedBlock {
            SealedBlock::seal(block, "blocks-test", 1, term, &self.node)
        }

        fn next(&mut self, time: u64, txs: Vec<SignedTransaction>) -> SealedBlock {
            let b = self.tip.propose(time, txs);
            self.seal(b, 1)
        }

        fn apply(&self, s: &SealedBlock) {
            let ok = vec![true; s.block.txs.len()];
            self.ledger.apply_block(&s.block, &ok, b"").unwrap();
        }

        /// The regulator's transaction.
        fn signed(&self, nonce: u64, body: TxBody) -> SignedTransaction {
            Transaction {
                chain_id: "blocks-test".into(),
                signer: AccountId::from_initial_key(&self.regulator.public_key()),
                nonce,
                body,
            }
            .sign(&self.regulator)
        }

        /// The regulator suspends the node with `node_key`.
        fn suspend(&self, nonce: u64, node_key: PublicKey) -> SignedTransaction {
            self.signed(nonce, TxBody::Nodes(NodeTx::Suspend { node_key }))
        }

        fn tx(&self, nonce: u64) -> SignedTransaction {
            self.suspend(nonce, SigningKey::generate().public_key())
        }
    }

    fn verdict(n: &Net, term: u64, s: &SealedBlock) -> Verdict {
        check(&n.ledger, term, s, &Skipped::default(), false, NOW).unwrap()
    }

    fn refused(v: &Verdict, words: &str) -> bool {
        matches!(v, Verdict::Refuse(r) if r.contains(words))
    }

    fn skipped(v: &Verdict, words: &str) -> bool {
        matches!(v, Verdict::Skip(r) if r.contains(words))
    }

    #[test]
    fn a_sealed_block_on_the_tip_applies() {
        let mut n = net();
        let b = n.next(10, vec![n.tx(1)]);
        assert_eq!(verdict(&n, 1, &b), Verdict::Apply(vec![true]));
    }

    #[test]
    fn a_seal_not_made_by_the_proposer_or_by_no_member_stops_the_node() {
        let mut n = net();
        let b = n.next(10, Vec::new());
        let forged =
            SealedBlock::seal(b.block.clone(), "blocks-test", 1, 1, &SigningKey::generate());
        assert!(
            refused(&verdict(&n, 1, &forged), "its seal does not verify"),
            "{:?}",
            verdict(&n, 1, &forged)
        );
        let other_chain = SealedBlock::seal(b.block.clone(), "other-chain", 1, 1, &n.node);
        assert!(refused(&verdict(&n, 1, &other_chain), "its seal does not verify"));
        let mut altered = b.clone();
        altered.block.header.time_ms += 1;
        assert!(refused(&verdict(&n, 1, &altered), "its seal does not verify"));
        let stranger = SealedBlock::seal(b.block.clone(), "blocks-test", 7, 1, &n.node);
        assert!(refused(&verdict(&n, 1, &stranger), "never admitted"));
    }

    #[test]
    fn stale_blocks_are_skipped_on_every_node_alike() {
        let mut n = net();
        let first = n.next(10, Vec::new());
        // Sealed for term 1, ordered in term 2.
        assert!(skipped(&verdict(&n, 2, &first), "sealed for term 1"));
        n.apply(&first);
        // At the tip again: a deposed leader's block for a height already taken.
        let mut stale_tip = Tip::genesis(n.ledger.genesis());
        let again = n.seal(stale_tip.propose(11, Vec::new()), 1);
        assert!(skipped(&verdict(&n, 1, &again), "at or behind the tip"));
        // The next height, built on that skipped block.
        let after_skipped = n.seal(stale_tip.propose(12, Vec::new()), 1);
        assert!(skipped(&verdict(&n, 1, &after_skipped), "follows a block that was skipped"));
    }

    /// A leader pipelines block N+1 on its own block N; N is skipped (here: sealed for another
    /// term than the one that ordered it), so N+1 arrives two heights above the tip. Every
    /// node skipped N, so every node skips N+1 too; before, each stopped on "skips heights"
    /// (a simulation seed found it under load).
    #[test]
    fn a_pipelined_block_built_on_a_skipped_one_is_skipped_too() {
        let n = net();
        let mut view = n.tip.clone();
        let first = n.seal(view.propose(10, Vec::new()), 2);
        let second = n.seal(view.propose(11, Vec::new()), 1);
        let mut skipped_here = Skipped::default();
        let v = check(&n.ledger, 1, &first, &skipped_here, false, NOW).unwrap();
        assert!(skipped(&v, "sealed for term 2"), "{v:?}");
        skipped_here.note(first.block.header.hash());
        let v = check(&n.ledger, 1, &second, &skipped_here, false, NOW).unwrap();
        assert!(skipped(&v, "built on block"), "{v:?}");
        // A node without the list (lost: it is stored with the applied marker) stops rather
        // than guess.
        assert!(refused(&verdict(&n, 1, &second), "skips heights"));
    }

    /// The list of skipped blocks never decides a block at the next height: were the tip's own
    /// hash in it (a leader re-appending the tip block sealed for another term), the honest
    /// next block is still applied, as on a node whose list is empty.
    #[test]
    fn the_next_block_is_decided_by_the_tip_alone_whatever_was_skipped() {
        let n = net();
        let mut skipped_here = Skipped::default();
        skipped_here.note(n.tip.hash);
        let mut view = n.tip.clone();
        let next = n.seal(view.propose(10, Vec::new()), 1);
        let v = check(&n.ledger, 1, &next, &skipped_here, false, NOW).unwrap();
        assert_eq!(v, verdict(&n, 1, &next));
        assert!(matches!(v, Verdict::Apply(_)), "{v:?}");
    }

    #[test]
    fn a_block_of_a_proposer_suspended_before_it_was_applied_is_skipped() {
        let mut n = net();
        let (hospital, second) = (SigningKey::generate(), SigningKey::generate());
        let admit_hospital = n.signed(
            1,
            TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
                key: hospital.public_key(),
                encryption_key: DecryptionKey::generate().public_key(),
                registration_id: "GOV-1".into(),
                name: "Hospital 1".into(),
                city: "Leeds".into(),
                specialisation: "general".into(),
                contact: SealedRef { blob: Hash::of(b"b"), commitment: Hash::of(b"c") },
            })),
        );
        let admit_node = n.signed(
            2,
            TxBody::Nodes(NodeTx::Admit {
                node_key: second.public_key(),
                address: "http://127.0.0.2:7301".into(),
                hospital: AccountId::from_initial_key(&hospital.public_key()),
            }),
        );
        let admitted = n.next(10, vec![admit_hospital, admit_node]);
        n.apply(&admitted);
        assert_eq!(n.ledger.node_member(2).unwrap().unwrap().status, NodeStatus::Active);
        // Node 2's block applies while it is active ...
        let by_second = |tip: &mut Tip, time| {
            SealedBlock::seal(tip.propose(time, Vec::new()), "blocks-test", 2, 1, &second)
        };
        let mut tip = n.tip.clone();
        assert_eq!(verdict(&n, 1, &by_second(&mut tip, 11)), Verdict::Apply(Vec::new()));
        // ... and is skipped once the regulator suspended it.
        let suspend = n.next(11, vec![n.suspend(3, second.public_key())]);
        n.apply(&suspend);
        let mut tip = n.tip.clone();
        let late = by_second(&mut tip, 12);
        assert!(
            skipped(&verdict(&n, 1, &late), "node 2 is suspended"),
            "{:?}",
            verdict(&n, 1, &late)
        );
    }

    #[test]
    fn a_block_that_skips_heights_goes_back_in_time_or_runs_ahead_of_the_clock_stops_the_node() {
        let mut n = net();
        let first = n.next(500, Vec::new());
        n.apply(&first);
        let mut ahead = n.tip.clone();
        ahead.propose(501, Vec::new());
        let skipping = n.seal(ahead.propose(502, Vec::new()), 1);
        assert!(refused(&verdict(&n, 1, &skipping), "skips heights"));
        // Built on a block this node skipped, it is skipped instead; built on one it merely
        // never saw, still refused.
        let mut skipped = Skipped::default();
        skipped.note(Hash::of(b"some other block"));
        let v = check(&n.ledger, 1, &skipping, &skipped, false, NOW).unwrap();
        assert!(refused(&v, "skips heights"), "{v:?}");

        let mut back = n.tip.clone();
        back.time_ms = 100;
        let earlier = n.seal(back.propose(100, Vec::new()), 1);
        assert!(
            refused(&verdict(&n, 1, &earlier), "earlier than the previous block"),
            "{:?}",
            verdict(&n, 1, &earlier)
        );

        let future = n.seal(n.tip.clone().propose(NOW + MAX_AHEAD_MS + 1, Vec::new()), 1);
        assert!(refused(&verdict(&n, 1, &future), "ahead of this node's clock"));
        let just = n.seal(n.tip.clone().propose(NOW + MAX_AHEAD_MS, Vec::new()), 1);
        assert_eq!(verdict(&n, 1, &just), Verdict::Apply(Vec::new()));
    }

    #[test]
    fn a_transaction_with_a_bad_signature_stops_the_node_unless_checked_at_admission() {
        let mut n = net();
        let mut bad = n.tx(1);
        bad.signature = n.tx(2).signature;
        let b = n.next(10, vec![n.tx(3), bad.clone()]);
        let v = verdict(&n, 1, &b);
        assert!(refused(&v, &format!("transaction 1 ({})", bad.hash())), "{v:?}");
        // The proposer's own block: its signatures were checked when the transactions came in.
        assert_eq!(
            check(&n.ledger, 1, &b, &Skipped::default(), true, NOW).unwrap(),
            Verdict::Apply(vec![true, true])
        );
    }

    fn entry(index: u64, sealed: &SealedBlock) -> openraft::Entry<TypeConfig> {
        openraft::Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(sealed.clone()),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocks_checked_ahead_count_as_checked_only_if_every_signature_verifies() {
        let mut n = net();
        let good = n.next(10, (1..=40).map(|i| n.tx(i)).collect());
        let mut bad_tx = n.tx(41);
        bad_tx.signature = n.tx(42).signature;
        let mut txs: Vec<_> = (43..=80).map(|i| n.tx(i)).collect();
        txs.insert(17, bad_tx);
        let bad = n.next(20, txs);
        let pre = PreVerified::default();
        check_signatures_ahead(&n.ledger, &pre, 0, &[entry(1, &good), entry(2, &bad)]);
        let (good_hash, bad_hash) = (good.block.header.hash(), bad.block.header.hash());
        // Sent again while running or done: not checked twice.
        assert!(!pre.start(good_hash));
        let waiting = pre.clone();
        let taken = tokio::task::spawn_blocking(move || {
            (waiting.take(&good_hash), waiting.take(&bad_hash), waiting.take(&good_hash))
        })
        .await
        .unwrap();
        // The good block counts as checked, once; the bad one does not, so apply checks it
        // itself and refuses it with its reason.
        assert_eq!(taken, (true, false, false));
        n.apply(&good);
        let v = check(&n.ledger, 1, &bad, &Skipped::default(), false, NOW).unwrap();
        assert!(refused(&v, "has a signature that does not verify"), "{v:?}");
        // A block already applied is not checked again.
        check_signatures_ahead(&n.ledger, &pre, 1, &[entry(1, &good)]);
        assert!(pre.start(good_hash), "nothing claimed the applied block");
    }

    /// A leader that sends a decoy under a block's header (valid signatures, other
    /// transactions: in an append openraft rejects, or is overwritten) must not get the
    /// real block, with a forged signature, counted as checked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_decoy_under_a_blocks_header_does_not_count_as_checking_the_block() {
        let mut n = net();
        let mut forged = n.tx(1);
        forged.signature = n.tx(2).signature;
        let real = n.next(10, vec![n.tx(3), forged]);
        let hash = real.block.header.hash();
        let variants = [
            vec![n.tx(3), n.tx(4)],          // as many transactions, all validly signed
            vec![n.tx(3)],                   // fewer
            vec![n.tx(3), n.tx(4), n.tx(5)], // more
        ];
        for txs in variants {
            let mut decoy = real.clone();
            decoy.block.txs = txs;
            let pre = PreVerified::default();
            check_signatures_ahead(&n.ledger, &pre, 0, &[entry(1, &decoy)]);
            let waiting = pre.clone();
            let counted = tokio::task::spawn_blocking(move || waiting.take(&hash)).await.unwrap();
            assert!(!counted, "a decoy of {} transactions counted", decoy.block.txs.len());
        }
        // So the real block is checked at apply, and refused.
        let v = check(&n.ledger, 1, &real, &Skipped::default(), false, NOW).unwrap();
        assert!(refused(&v, "has a signature that does not verify"), "{v:?}");
    }
}
