//! Block production on the leader: admitted transactions queue here; the producer takes
//! everything queued (up to a block's limit) whenever a pipeline slot is free, builds the next
//! block on its own view of the tip, and proposes it through Raft. Transactions that arrive
//! while earlier blocks are being committed form the next block: group commit, one fsync per
//! block, with up to [`PIPELINE`] blocks in flight. Each block is sealed with this node's key
//! for the current Raft term ([`medledger_core::seal`]). Each waiter gets its own receipt once
//! the block is applied (and so durable).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use medledger_core::{
    block::{MAX_BLOCK_TXS, Receipt},
    keys::SigningKey,
    seal::SealedBlock,
    tx::SignedTransaction,
};
use medledger_ledger::Ledger;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::raft::{BlockResult, PreVerified, Raft};

/// Blocks proposed but not yet applied, at most.
pub const PIPELINE: u32 = 2;
/// Admitted transactions waiting for a block, at most; beyond that the node answers "busy".
pub const QUEUE: usize = 200_000;

/// Why an admitted transaction got no receipt.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    /// Raft refused the proposal (not the leader, or shutting down).
    #[error("the node could not order the transaction: {0}")]
    NotOrdered(String),
    /// The block was skipped by every node; resubmit.
    #[error("the block was rejected ({0}); resubmit the transaction")]
    BlockRejected(String),
}

/// A transaction waiting for its receipt.
#[derive(Debug)]
pub struct Submission {
    /// The transaction, signature already checked.
    pub tx: SignedTransaction,
    /// Where its receipt goes.
    pub reply: oneshot::Sender<Result<Receipt, ProduceError>>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Who seals the blocks: this node's id and key.
#[derive(Clone, Debug)]
pub struct Proposer {
    /// The node's id.
    pub id: u64,
    /// Its node key.
    pub key: Arc<SigningKey>,
}

/// Runs the producer until the queue's senders are all dropped.
pub async fn run(
    raft: Raft,
    ledger: Arc<Ledger>,
    preverified: PreVerified,
    proposer: Proposer,
    mut queue: mpsc::Receiver<Submission>,
) {
    let chain_id = ledger.genesis().chain_id.clone();
    let seal = |block| {
        // A leader's term does not change while it leads; should it have changed, the block
        // is skipped on every node as sealed for another term, and its senders resubmit.
        let term = raft.metrics().borrow().current_term;
        SealedBlock::seal(block, &chain_id, proposer.id, term, &proposer.key)
    };
    let slots = Arc::new(Semaphore::new(PIPELINE as usize));
    let resync = Arc::new(AtomicBool::new(false));
    let mut tip = ledger.tip();
    while let Some(first) = queue.recv().await {
        if slots.available_permits() == PIPELINE as usize {
            // Nothing in flight: applied state is the tip (in a cluster, blocks another leader
            // ordered while this node followed are applied here too).
            tip = ledger.tip();
        }
        if resync.swap(false, Ordering::SeqCst) {
            // A block was rejected or not ordered: wait for every block in flight, then
            // rebuild the view of the tip from applied state. (Should a block fail while we
            // wait for a slot below, its successor is rejected too and the next turn resyncs.)
            let Ok(all) = slots.acquire_many(PIPELINE).await else { break };
            tip = ledger.tip();
            drop(all);
        }
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let next = Next { tip: &mut tip, queue: &mut queue, seal: &seal };
        propose_next(permit, next, first, &raft, &preverified, &resync).await;
    }
}

/// What the next block is built from: the producer's view of the tip, the queue, and how it
/// is sealed.
struct Next<'a, S> {
    tip: &'a mut medledger_core::block::Tip,
    queue: &'a mut mpsc::Receiver<Submission>,
    seal: &'a S,
}

async fn propose_next<S: Fn(medledger_core::block::Block) -> SealedBlock>(
    permit: tokio::sync::OwnedSemaphorePermit,
    Next { tip, queue, seal }: Next<'_, S>,
    first: Submission,
    raft: &Raft,
    preverified: &PreVerified,
    resync: &Arc<AtomicBool>,
) {
    let mut txs = vec![first.tx];
    let mut waiters = vec![first.reply];
    while txs.len() < MAX_BLOCK_TXS {
        match queue.try_recv() {
            Ok(s) => {
                txs.push(s.tx);
                waiters.push(s.reply);
            }
            Err(_) => break,
        }
    }
    let block = tip.propose(now_ms(), txs);
    let hash = block.header.hash();
    preverified.note(hash);
    let pending = match raft.client_write_ff(seal(block)).await {
        Ok(rx) => rx,
        Err(fatal) => {
            let e = ProduceError::NotOrdered(fatal.to_string());
            for w in waiters {
                let _ = w.send(Err(e.clone()));
            }
            resync.store(true, Ordering::SeqCst);
            return;
        }
    };
    let resync = resync.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let outcome = match pending.await {
            Ok(Ok(resp)) => match resp.data {
                BlockResult::Applied(receipts) => Ok(receipts),
                BlockResult::Rejected(reason) => Err(ProduceError::BlockRejected(reason)),
            },
            Ok(Err(e)) => Err(ProduceError::NotOrdered(e.to_string())),
            Err(_) => Err(ProduceError::NotOrdered("raft shut down".into())),
        };
        match outcome {
            Ok(receipts) => {
                for (w, r) in waiters.into_iter().zip(receipts) {
                    let _ = w.send(Ok(r));
                }
            }
            Err(e) => {
                resync.store(true, Ordering::SeqCst);
                for w in waiters {
                    let _ = w.send(Err(e.clone()));
                }
            }
        }
    });
}
