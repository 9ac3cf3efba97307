//! `apply`: a block in, receipts out. Envelope checks (signature, chain, duplicate, signer,
//! key, nonce, suspension) come first and are the same for every transaction kind; then the
//! body's handler runs. A refused transaction writes nothing; an applied one also advances the
//! signer's nonce.

use medledger_core::{
    Hash,
    block::{
        Block, BlockError, BlockHeader, Genesis, MAX_BLOCK_TXS, Outcome, Receipt, Refusal, Tip,
    },
    encoding,
    tx::{Role, SignedTransaction, TxBody},
};
use rayon::prelude::*;
use redb::{ReadableDatabase, ReadableTable};

use crate::{Ledger, LedgerError, registry, stages::Stage, state::*};

/// Checks every transaction's signature in batches ([`SignedTransaction::verify_signatures`]),
/// one per core. `skip(i)` says that transaction `i` was already verified by this node (at
/// admission), so that a node verifies each signature once. `verdicts[i]` is what checking
/// transaction `i` alone would say, however the batches fall.
pub fn verify_signatures(
    txs: &[SignedTransaction],
    skip: impl Fn(usize) -> bool + Sync,
) -> Vec<bool> {
    let todo: Vec<usize> = (0..txs.len()).filter(|&i| !skip(i)).collect();
    let mut verdicts = vec![true; txs.len()];
    // One batch per core: a batch's cost per signature falls as it grows, and two cores
    // share a 1,024-transaction block evenly.
    let chunk = todo.len().div_ceil(rayon::current_num_threads()).max(MIN_BATCH);
    let checked: Vec<Vec<bool>> = todo
        .par_chunks(chunk)
        .map(|part| {
            let batch: Vec<&SignedTransaction> = part.iter().map(|&i| &txs[i]).collect();
            SignedTransaction::verify_signatures(&batch)
        })
        .collect();
    for (i, ok) in todo.into_iter().zip(checked.into_iter().flatten()) {
        verdicts[i] = ok;
    }
    verdicts
}

/// Batches smaller than this are not worth splitting across cores.
const MIN_BATCH: usize = 32;

/// Applies the transactions of the block `header` heads (`encoded` are their stored bytes,
/// `signature_ok` their signatures' verdicts) to the state tables, keeping `digest` current:
/// their state changes, `tx_index` and receipts (the caller stores the transactions, the
/// header and the tip). What a block does to the state, for [`Ledger::apply_block`] and for a
/// snapshot's import, which replays the blocks it adds rather than trust its sender's rows.
pub(crate) fn apply_txs(
    tables: &mut Tables<'_>,
    genesis: &Genesis,
    header: &BlockHeader,
    txs: &[SignedTransaction],
    encoded: &[Vec<u8>],
    signature_ok: &[bool],
    digest: &mut Digests,
) -> Result<Vec<Receipt>, LedgerError> {
    let first_index = header.log_size - txs.len() as u64;
    let mut receipts = Vec::with_capacity(txs.len());
    for (i, tx) in txs.iter().enumerate() {
        let log_index = first_index + i as u64;
        let tx_hash = Hash::of(&encoded[i]);
        // A transaction is a duplicate only of one that was applied: a refused one may be sent
        // again once its cause is fixed (its nonce was not consumed).
        let applied_before = applied_before(tables, &tx_hash)?;
        let mut state = StateTxn {
            tables,
            digest: *digest,
            height: header.height,
            time_ms: header.time_ms,
            tx_hash,
        };
        let outcome = match apply_tx(&mut state, genesis, tx, signature_ok[i], applied_before)? {
            Ok(created) => {
                *digest = state.digest;
                Outcome::Applied { created }
            }
            Err(reason) => Outcome::Refused { reason },
        };
        // The index names a transaction's applied occurrence, or else its first.
        if matches!(outcome, Outcome::Applied { .. }) || tables.tx_index.get(&tx_hash.0)?.is_none()
        {
            let at = (header.height, i as u32, log_index);
            Write { tables, digests: digest }.tx_index().put(&tx_hash.0, at)?;
        }
        Write { tables, digests: digest }
            .receipts()
            .put(log_index, encoding::encode(&outcome).as_slice())?;
        receipts.push(Receipt { tx_hash, height: header.height, log_index, outcome });
    }
    Ok(receipts)
}

impl Ledger {
    /// Applies `block` and returns one receipt per transaction. `signature_ok[i]` is the result
    /// of checking transaction `i`'s signature (see [`verify_signatures`]). `marker` is stored
    /// atomically with the block. Everything is committed before this returns (and fsynced,
    /// unless [`Ledger::set_durable_every`] relaxed that); on error nothing is.
    pub fn apply_block(
        &self,
        block: &Block,
        signature_ok: &[bool],
        marker: &[u8],
    ) -> Result<Vec<Receipt>, LedgerError> {
        self.apply_block_with_seal(block, None, signature_ok, marker)
    }

    /// [`Ledger::apply_block`], storing `seal` (if any) with the block.
    pub(crate) fn apply_block_with_seal(
        &self,
        block: &Block,
        seal: Option<&medledger_core::seal::BlockSeal>,
        signature_ok: &[bool],
        marker: &[u8],
    ) -> Result<Vec<Receipt>, LedgerError> {
        if signature_ok.len() != block.txs.len() {
            return Err(LedgerError::BadQuery(
                "one signature result per transaction is needed".into(),
            ));
        }
        let encoded: Vec<Vec<u8>> = block.txs.iter().map(SignedTransaction::encode).collect();
        let leaves: Vec<Hash> =
            encoded.iter().map(|e| medledger_core::merkle::leaf_hash(e)).collect();
        self.verdict.refuse_if_corrupt()?;
        let mut writer = self.writer.lock().expect("writer lock poisoned");
        let mut tip: Tip = writer.tip.clone();
        tip.check_and_advance(&block.header, &leaves)?;

        let executing = std::time::Instant::now();
        let mut txn = self.db.begin_write()?;
        let durable = writer.since_durable + 1 >= writer.durable_every;
        if !durable {
            txn.set_durability(redb::Durability::None)?;
        }
        let first_index = block.header.log_size - block.txs.len() as u64;
        // `check_and_advance` refused a block over MAX_BLOCK_TXS: a position in it fits a u32.
        const _: () = assert!(MAX_BLOCK_TXS <= u32::MAX as usize);
        let mut digest = writer.digest;
        let receipts;
        {
            let mut txs_table = txn.open_table(TXS)?;
            for (i, tx) in encoded.iter().enumerate() {
                txs_table.insert(first_index + i as u64, tx.as_slice())?;
            }
            let mut tables = Tables::open(&txn)?;
            // A stored seal is always good: judged here too, against the nodes admitted before
            // the block (the caller judged it already to decide the block; this keeps the
            // ledger's own promise whoever calls).
            if let Some(seal) = seal {
                let seals = txn.open_table(SEALS)?;
                let previous = crate::nodes::seals::stored_term(&seals, block.header.height - 1)?;
                drop(seals);
                crate::judge_seal(&self.genesis.chain_id, &block.header, seal, previous, |id| {
                    node_by_id(&tables.nodes, &self.genesis, id)
                })?
                .map_err(|fault| BlockError::Seal {
                    height: block.header.height,
                    reason: fault.to_string(),
                })?;
            }
            receipts = apply_txs(
                &mut tables,
                &self.genesis,
                &block.header,
                &block.txs,
                &encoded,
                signature_ok,
                &mut digest,
            )?;
            txn.open_table(BLOCKS)?
                .insert(block.header.height, encoding::encode(&block.header).as_slice())?;
            if let Some(seal) = seal {
                txn.open_table(SEALS)?.insert(
                    block.header.height,
                    crate::nodes::seals::encode_seal(seal).as_slice(),
                )?;
            }
            // The roots of the log's chunks this block completes, with the block (the log in
            // memory takes them once it commits).
            let log = self.log.read().expect("log lock poisoned");
            let mut chunks = txn.open_table(LOG_CHUNKS)?;
            for (i, root) in log.completed_by(&leaves).into_iter().enumerate() {
                chunks.insert(log.chunks() + i as u64, &root.0)?;
            }
            drop(log);
            let mut meta = txn.open_table(META)?;
            meta.insert(
                META_TIP,
                encoding::encode(&(tip.height, tip.hash, tip.time_ms)).as_slice(),
            )?;
            meta.insert(META_STATE_DIGEST, digest.state.as_slice())?;
            meta.insert(META_INDEX_DIGEST, digest.index.as_slice())?;
            meta.insert(META_APPLIED_MARKER, marker)?;
        }
        // The node's fault tests inject a failed commit (an I/O error or a failed fsync) here.
        #[cfg(feature = "failpoints")]
        fail::fail_point!("ledger-commit", |_| Err(LedgerError::Storage(
            "injected I/O error committing the block (failpoint ledger-commit)".into()
        )));
        let committing = std::time::Instant::now();
        self.stages.add(Stage::Execute, committing - executing);
        txn.commit()?;
        let merkle = std::time::Instant::now();
        self.stages
            .add(if durable { Stage::DurableCommit } else { Stage::Commit }, merkle - committing);

        *self.committed_tip.write().expect("tip lock poisoned") = tip.clone();
        writer.tip = tip;
        writer.digest = digest;
        writer.since_durable = if durable { 0 } else { writer.since_durable + 1 };
        let mut log = self.log.write().expect("log lock poisoned");
        debug_assert_eq!(log.len(), first_index, "the Merkle log and the block disagree");
        for leaf in leaves {
            log.push(leaf);
        }
        debug_assert_eq!(log.len(), block.header.log_size, "the log does not end at the header");
        drop(log);
        self.stages.add(Stage::Merkle, merkle.elapsed());
        Ok(receipts)
    }

    /// Runs `tx` against committed state exactly as the next block would (at the next height,
    /// at `time_ms` raised to the tip's time, with the real `apply` code) in a write
    /// transaction that is then aborted: the exact outcome, applied (with what it would create)
    /// or the exact refusal, and nothing written, as the first transaction of the next block
    /// (what it creates may depend on what comes before it there: a registration's Patient-ID
    /// on the transactions before it). It waits for a block being applied, so it sees the
    /// state that block leaves. The caller has checked the signature.
    pub fn simulate(&self, tx: &SignedTransaction, time_ms: u64) -> Result<Simulated, LedgerError> {
        let writer = self.writer.lock().expect("writer lock poisoned");
        let height = writer.tip.height + 1;
        let time_ms = time_ms.max(writer.tip.time_ms);
        let tx_hash = tx.hash();
        let txn = self.db.begin_write()?;
        let outcome = {
            let mut tables = Tables::open(&txn)?;
            let applied_before = applied_before(&tables, &tx_hash)?;
            let mut state =
                StateTxn { tables: &mut tables, digest: writer.digest, height, time_ms, tx_hash };
            match apply_tx(&mut state, &self.genesis, tx, true, applied_before)? {
                Ok(created) => Outcome::Applied { created },
                Err(reason) => Outcome::Refused { reason },
            }
        };
        txn.abort()?;
        Ok(Simulated { tx_hash, height, time_ms, outcome })
    }

    /// The envelope checks against committed state, run at admission so that nothing that
    /// fails them is ever ordered: a transaction reaches the log only if it is signed by the
    /// active key of a registered account, on this chain, with a fresh nonce, by an account
    /// that may act (not suspended; a device only for device transactions). A key rotation
    /// still in the queue does not help an old or new key at admission: the client retries
    /// once it is committed. `apply` re-checks everything and is the authority.
    pub fn precheck(&self, tx: &SignedTransaction) -> Result<(), Refusal> {
        self.precheck_with(tx, |_, _| false)
    }

    /// [`Ledger::precheck`], where `pending_key(account, key)` says that a key change of the
    /// account, signed by its active key and admitted but not yet committed, installs `key`:
    /// a signer may go on under its new key while the rotation is in the queue.
    pub fn precheck_with(
        &self,
        tx: &SignedTransaction,
        pending_key: impl Fn(&medledger_core::ids::AccountId, &medledger_core::keys::PublicKey) -> bool,
    ) -> Result<(), Refusal> {
        let read = || -> Result<Result<(), Refusal>, LedgerError> {
            if tx.tx.chain_id != self.chain_id() {
                return Ok(Err(Refusal::WrongChain {
                    expected: self.chain_id().to_owned(),
                    got: tx.tx.chain_id.clone(),
                }));
            }
            let read = self.db.begin_read()?;
            let accounts = read.open_table(ACCOUNTS)?;
            let account_of = |id: &medledger_core::ids::AccountId| {
                accounts
                    .get(&id.0)?
                    .map(|a| decode_entry::<Account>("account", a.value()))
                    .transpose()
            };
            check_envelope(tx, account_of, |key| pending_key(&tx.tx.signer, key))
        };
        // A storage failure here is the node's fault, not the client's: refuse without
        // ordering (the client may retry), never let an unchecked transaction through.
        read().unwrap_or_else(|e| {
            Err(Refusal::Invalid { reason: format!("the node could not check the sender: {e}") })
        })
    }
}

/// What [`Ledger::simulate`] found: the outcome `tx` would have in a block at `height` and
/// `time_ms` following committed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Simulated {
    /// The transaction's hash.
    pub tx_hash: Hash,
    /// The height of the block it was run in (the next one).
    pub height: u64,
    /// That block's time.
    pub time_ms: u64,
    /// Applied (with what it would create) or the exact refusal.
    pub outcome: Outcome,
}

/// The log index of an earlier applied occurrence of the transaction `tx_hash`, if any: a
/// transaction is a duplicate only of one that was applied (a refused one may be sent again
/// once its cause is fixed; its nonce was not consumed).
fn applied_before(tables: &Tables<'_>, tx_hash: &Hash) -> Result<Option<u64>, LedgerError> {
    Ok(match tables.tx_index.get(&tx_hash.0)? {
        Some(at) => {
            let at = at.value().2;
            tables
                .receipts
                .get(at)?
                .map(|o| decode_entry::<Outcome>("receipt", o.value()))
                .transpose()?
                .filter(|o| matches!(o, Outcome::Applied { .. }))
                .map(|_| at)
        }
        None => None,
    })
}

/// The suspended party that stops `id` from acting: itself, a doctor's hospital or a
/// member's organisation.
pub(crate) fn suspended_party(
    id: &medledger_core::ids::AccountId,
    account: &Account,
    account_of: impl Fn(&medledger_core::ids::AccountId) -> Result<Option<Account>, LedgerError>,
) -> Result<Option<medledger_core::ids::AccountId>, LedgerError> {
    if account.suspended {
        return Ok(Some(*id));
    }
    if account.role == Role::Doctor
        && let Some(hospital) = account.hospital
        && account_of(&hospital)?.is_some_and(|h| h.suspended)
    {
        return Ok(Some(hospital));
    }
    if account.role == Role::Member
        && let Some(organisation) = account.authority
        && account_of(&organisation)?.is_some_and(|o| o.suspended)
    {
        return Ok(Some(organisation));
    }
    Ok(None)
}

/// The envelope checks common to every kind, after the signature, chain and duplicate
/// checks: a registered signer, its active key, a fresh nonce, not suspended (nor a doctor's
/// hospital), and a device signing only what a device may.
fn check_envelope(
    tx: &SignedTransaction,
    account_of: impl Fn(&medledger_core::ids::AccountId) -> Result<Option<Account>, LedgerError>,
    pending_key: impl Fn(&medledger_core::keys::PublicKey) -> bool,
) -> Result<Result<(), Refusal>, LedgerError> {
    let signer = tx.tx.signer;
    let Some(account) = account_of(&signer)? else {
        return Ok(Err(Refusal::UnknownSigner { signer }));
    };
    match check_key_and_nonce(&account, tx) {
        Err(Refusal::KeyNotActive { .. }) if pending_key(&tx.public_key) => {
            if tx.tx.nonce <= account.nonce {
                return Ok(Err(Refusal::StaleNonce { last: account.nonce, got: tx.tx.nonce }));
            }
        }
        Err(refusal) => return Ok(Err(refusal)),
        Ok(()) => {}
    }
    if let Some(account) = suspended_party(&signer, &account, &account_of)? {
        return Ok(Err(Refusal::Suspended { account }));
    }
    // A device signs its own readings, alerts and session ends, and may rotate its key;
    // nothing else (no consent, no accesses that would fill a patient's trail).
    if account.role == Role::Device
        && !matches!(
            &tx.tx.body,
            TxBody::Devices(_) | TxBody::Registry(medledger_core::tx::RegistryTx::RotateKey { .. })
        )
    {
        return Ok(Err(Refusal::Unauthorised {
            reason: format!(
                "a device signs only device transactions and its own key rotation, not {}",
                tx.tx.body.kind()
            ),
        }));
    }
    Ok(Ok(()))
}

fn check_key_and_nonce(account: &Account, tx: &SignedTransaction) -> Result<(), Refusal> {
    if account.key != Some(tx.public_key) {
        return Err(Refusal::KeyNotActive { signer: tx.tx.signer, key: tx.public_key });
    }
    if tx.tx.nonce <= account.nonce {
        return Err(Refusal::StaleNonce { last: account.nonce, got: tx.tx.nonce });
    }
    Ok(())
}

/// Refuses a transaction that names a blob it may not: one it names twice, one that was
/// erased, or one that already belongs to something (a record, case, emergency profile,
/// device session or registration; [`crate::state::blobs::holder_in`]). Each blob belongs to
/// one owner, so that erasing or replacing one owner's blob never deletes another's bytes. The
/// one exception: an amendment of a patient keeps the sealed blob it does not change.
/// `erased_at` and `holder` read the state: the block's open tables when applying, committed
/// state at admission ([`Ledger::check_blob_owners`]).
pub(crate) fn check_blobs(
    body: &TxBody,
    erased_at: impl Fn(&Hash) -> Result<Option<u64>, LedgerError>,
    holder: impl Fn(&Hash) -> Result<Option<String>, LedgerError>,
) -> Result<Result<(), Refusal>, LedgerError> {
    let blobs = body.blobs();
    let invalid = |reason| Ok(Err(Refusal::Invalid { reason }));
    let mut sorted: Vec<&Hash> = blobs.iter().map(|b| &b.hash).collect();
    sorted.sort_unstable();
    if let Some(pair) = sorted.windows(2).find(|w| w[0] == w[1]) {
        let hash = *pair[0];
        let role = blobs.iter().find(|b| b.hash == hash).map_or("", |b| b.role.name());
        return invalid(format!(
            "the {role} blob {hash} is named twice: each blob belongs to one place"
        ));
    }
    for blob in &blobs {
        let (role, hash) = (blob.role.name(), blob.hash);
        // Erasure is for good: content that was erased is never named again (a replayed
        // mint, a case entry or profile pointing at it), so no node stores it again.
        if let Some(height) = erased_at(&hash)? {
            return invalid(format!(
                "the {role} blob {hash} belongs to a record erased at block {height}: erased content is never stored again"
            ));
        }
        if let Some(holder) = holder(&hash)?
            && own_slot(body, blob.role).is_none_or(|slot| slot != holder)
        {
            return invalid(format!(
                "the {role} blob {hash} already belongs to {holder}: each blob belongs to one owner"
            ));
        }
    }
    Ok(Ok(()))
}

impl Ledger {
    /// [`check_blobs`] against committed state: what admission refuses before ordering a
    /// transaction the ledger would refuse for the blobs it names.
    pub fn check_blob_owners(&self, body: &TxBody) -> Result<Result<(), Refusal>, LedgerError> {
        let read = self.db.begin_read()?;
        let erased = read.open_table(ERASED_BLOBS)?;
        let (refs, devices, registrations) = (
            read.open_table(BLOB_REFS)?,
            read.open_table(DEVICE_BLOBS)?,
            read.open_table(REGISTRATION_BLOBS)?,
        );
        check_blobs(
            body,
            |h| Ok(erased.get(&h.0)?.map(|v| v.value())),
            |h| crate::state::blobs::holder_in(&refs, &devices, &registrations, h),
        )
    }
}

/// The owner a blob of `role` named by `body` would have, where the transaction may name the
/// blob that slot holds already: only a patient's amendment, which keeps the sealed blob it
/// does not change.
fn own_slot(body: &TxBody, role: medledger_core::tx::BlobRole) -> Option<String> {
    use crate::state::blobs::owner;
    use medledger_core::tx::{BlobRole, RegistryTx};
    match (body, role) {
        (TxBody::Registry(RegistryTx::AmendPatient(a)), BlobRole::PatientDetails) => {
            Some(owner::patient_details(a.patient))
        }
        (TxBody::Registry(RegistryTx::AmendPatient(a)), BlobRole::AttendantDetails) => {
            Some(owner::attendant(a.patient))
        }
        _ => None,
    }
}

/// Applies one transaction. `Ok(Err(refusal))` means refused with nothing written.
/// `applied_before` is the log index of an earlier applied occurrence of the same bytes.
fn apply_tx(
    state: &mut StateTxn<'_, '_>,
    genesis: &Genesis,
    tx: &SignedTransaction,
    signature_ok: bool,
    applied_before: Option<u64>,
) -> Result<Result<Option<medledger_core::block::Created>, Refusal>, LedgerError> {
    if !signature_ok {
        return Ok(Err(Refusal::BadSignature));
    }
    let chain_id = genesis.chain_id.as_str();
    if tx.tx.chain_id != chain_id {
        return Ok(Err(Refusal::WrongChain {
            expected: chain_id.to_owned(),
            got: tx.tx.chain_id.clone(),
        }));
    }
    if let Some(log_index) = applied_before {
        return Ok(Err(Refusal::Duplicate { log_index }));
    }
    let signer = tx.tx.signer;
    if let Err(refusal) = check_envelope(tx, |id| state.account(id), |_| false)? {
        return Ok(Err(refusal));
    }
    let blobs_ok = check_blobs(&tx.tx.body, |h| state.erased_at(h), |h| state.blob_holder(h))?;
    if let Err(refusal) = blobs_ok {
        return Ok(Err(refusal));
    }
    let account = state.account(&signer)?.ok_or_else(|| {
        LedgerError::Corrupt(format!("account {signer} vanished within a transaction"))
    })?;
    let result = match &tx.tx.body {
        TxBody::Registry(r) => registry::apply(state, &signer, &account, r)?,
        TxBody::Consent(c) => crate::consent::apply(state, &signer, &account, c)?,
        TxBody::Access(a) => crate::access::apply(state, &signer, a)?,
        TxBody::Records(r) => crate::records::apply(state, &signer, &account, r)?,
        TxBody::Emergency(e) => crate::emergency::apply(state, &signer, &account, e)?,
        TxBody::Cases(c) => crate::cases::apply(state, &signer, &account, c)?,
        TxBody::Devices(d) => crate::devices::apply(state, &signer, &account, d)?,
        TxBody::Nodes(n) => crate::nodes::apply(state, genesis, &account, n)?,
        TxBody::ResearchExport(r) => crate::research::apply(state, &signer, &account, r)?,
    };
    if result.is_ok() {
        // Re-read: the handler may have changed the signer's own account (a key rotation).
        let mut updated = state.account(&signer)?.unwrap_or(account);
        updated.nonce = tx.tx.nonce;
        state.put_account(&signer, &updated)?;
    }
    Ok(result)
}
