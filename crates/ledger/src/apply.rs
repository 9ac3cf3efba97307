//! `apply`: a block in, receipts out. Envelope checks (signature, chain, duplicate, signer,
//! key, nonce, suspension) come first and are the same for every transaction kind; then the
//! body's handler runs. A refused transaction writes nothing; an applied one also advances the
//! signer's nonce.

use medledger_core::{
    Hash,
    block::{Block, Outcome, Receipt, Refusal, Tip},
    encoding,
    tx::{Role, SignedTransaction, TxBody},
};
use rayon::prelude::*;
use redb::{ReadableDatabase, ReadableTable, TableHandle};

use crate::{Ledger, LedgerError, registry, state::*};

/// Checks every transaction's signature, spread over all cores. `skip(i)` says that
/// transaction `i` was already verified by this node (at admission), so that a node verifies
/// each signature once.
pub fn verify_signatures(
    txs: &[SignedTransaction],
    skip: impl Fn(usize) -> bool + Sync,
) -> Vec<bool> {
    txs.par_iter()
        .enumerate()
        .with_min_len(64)
        .map(|(i, t)| skip(i) || t.verify_signature().is_ok())
        .collect()
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
        if signature_ok.len() != block.txs.len() {
            return Err(LedgerError::BadQuery(
                "one signature result per transaction is needed".into(),
            ));
        }
        let encoded: Vec<Vec<u8>> = block.txs.iter().map(SignedTransaction::encode).collect();
        let leaves: Vec<Hash> =
            encoded.iter().map(|e| medledger_core::merkle::leaf_hash(e)).collect();
        let mut writer = self.writer.lock().expect("writer lock poisoned");
        let mut tip: Tip = writer.tip.clone();
        tip.check_and_advance(&block.header, &leaves)?;

        let mut txn = self.db.begin_write()?;
        let durable = writer.since_durable + 1 >= writer.durable_every;
        if !durable {
            txn.set_durability(redb::Durability::None)?;
        }
        let first_index = block.header.log_size - block.txs.len() as u64;
        let mut receipts = Vec::with_capacity(block.txs.len());
        let mut digest = writer.digest;
        {
            let mut txs_table = txn.open_table(TXS)?;
            let mut receipts_table = txn.open_table(RECEIPTS)?;
            let mut tables = Tables::open(&txn)?;
            for (i, tx) in block.txs.iter().enumerate() {
                let log_index = first_index + i as u64;
                let tx_hash = Hash::of(&encoded[i]);
                let mut state = StateTxn {
                    tables: &mut tables,
                    digest,
                    height: block.header.height,
                    time_ms: block.header.time_ms,
                    tx_hash,
                };
                let outcome = match apply_tx(&mut state, self.chain_id(), tx, signature_ok[i])? {
                    Ok(created) => {
                        digest = state.digest;
                        Outcome::Applied { created }
                    }
                    Err(reason) => Outcome::Refused { reason },
                };
                if tables.tx_index.get(&tx_hash.0)?.is_none() {
                    tables
                        .tx_index
                        .insert(&tx_hash.0, (block.header.height, i as u32, log_index))?;
                }
                txs_table.insert(log_index, encoded[i].as_slice())?;
                let outcome_bytes = encoding::encode(&outcome);
                receipts_table.insert(log_index, outcome_bytes.as_slice())?;
                xor_into(
                    &mut digest,
                    &entry_digest(RECEIPTS.name(), &log_index.to_be_bytes(), &outcome_bytes),
                );
                receipts.push(Receipt { tx_hash, height: block.header.height, log_index, outcome });
            }
            txn.open_table(BLOCKS)?
                .insert(block.header.height, encoding::encode(&block.header).as_slice())?;
            let mut meta = txn.open_table(META)?;
            meta.insert(
                META_TIP,
                encoding::encode(&(tip.height, tip.hash, tip.time_ms)).as_slice(),
            )?;
            meta.insert(META_STATE_DIGEST, digest.as_slice())?;
            meta.insert(META_APPLIED_MARKER, marker)?;
        }
        // The node's fault tests inject a failed commit (an I/O error or a failed fsync) here.
        #[cfg(feature = "failpoints")]
        fail::fail_point!("ledger-commit", |_| Err(LedgerError::Storage(
            "injected I/O error committing the block (failpoint ledger-commit)".into()
        )));
        txn.commit()?;

        writer.tip = tip;
        writer.digest = digest;
        writer.since_durable = if durable { 0 } else { writer.since_durable + 1 };
        let mut log = self.log.write().expect("log lock poisoned");
        for leaf in leaves {
            log.push(leaf);
        }
        Ok(receipts)
    }

    /// The envelope checks whose failure no pending transaction can cure, against committed
    /// state: what a node runs at admission to refuse a hopeless transaction at once, before
    /// it is ordered. A stale nonce stays stale (nonces only grow); the wrong chain stays
    /// wrong; an unknown signer is refused too (an account is created by a transaction its
    /// holder must see committed before using it). Whether the key is active is left to
    /// `apply`: a key rotation queued just before may make it so. `apply` re-checks everything
    /// and is the authority.
    pub fn precheck(&self, tx: &SignedTransaction) -> Result<(), Refusal> {
        let read = || -> Result<Result<(), Refusal>, LedgerError> {
            if tx.tx.chain_id != self.chain_id() {
                return Ok(Err(Refusal::WrongChain {
                    expected: self.chain_id().to_owned(),
                    got: tx.tx.chain_id.clone(),
                }));
            }
            let read = self.db.begin_read()?;
            let accounts = read.open_table(ACCOUNTS)?;
            let Some(account) = accounts.get(&tx.tx.signer.0)? else {
                return Ok(Err(Refusal::UnknownSigner { signer: tx.tx.signer }));
            };
            let account: Account = decode_entry("account", account.value())?;
            if tx.tx.nonce <= account.nonce {
                return Ok(Err(Refusal::StaleNonce { last: account.nonce, got: tx.tx.nonce }));
            }
            Ok(Ok(()))
        };
        // A storage failure here is not the client's fault; let apply decide.
        read().unwrap_or(Ok(()))
    }
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

/// Applies one transaction. `Ok(Err(refusal))` means refused with nothing written.
fn apply_tx(
    state: &mut StateTxn<'_, '_>,
    chain_id: &str,
    tx: &SignedTransaction,
    signature_ok: bool,
) -> Result<Result<Option<medledger_core::block::Created>, Refusal>, LedgerError> {
    if !signature_ok {
        return Ok(Err(Refusal::BadSignature));
    }
    if tx.tx.chain_id != chain_id {
        return Ok(Err(Refusal::WrongChain {
            expected: chain_id.to_owned(),
            got: tx.tx.chain_id.clone(),
        }));
    }
    if let Some(log_index) = state.logged_at(&state.tx_hash)? {
        return Ok(Err(Refusal::Duplicate { log_index }));
    }
    let signer = tx.tx.signer;
    let Some(account) = state.account(&signer)? else {
        return Ok(Err(Refusal::UnknownSigner { signer }));
    };
    if let Err(refusal) = check_key_and_nonce(&account, tx) {
        return Ok(Err(refusal));
    }
    if account.suspended {
        return Ok(Err(Refusal::Suspended { account: signer }));
    }
    if account.role == Role::Doctor
        && let Some(hospital) = account.hospital
        && state.account(&hospital)?.is_some_and(|h| h.suspended)
    {
        return Ok(Err(Refusal::Suspended { account: hospital }));
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
    let result = match &tx.tx.body {
        TxBody::Registry(r) => registry::apply(state, &signer, &account, r)?,
        TxBody::Consent(c) => crate::consent::apply(state, &signer, &account, c)?,
        TxBody::Access(a) => crate::consent::access(state, &signer, a)?,
        TxBody::Records(r) => crate::records::apply(state, &signer, &account, r)?,
        TxBody::Emergency(e) => crate::emergency::apply(state, &signer, &account, e)?,
        TxBody::Cases(c) => crate::cases::apply(state, &signer, &account, c)?,
        TxBody::Devices(d) => crate::devices::apply(state, &signer, &account, d)?,
    };
    if result.is_ok() {
        // Re-read: the handler may have changed the signer's own account (a key rotation).
        let mut updated = state.account(&signer)?.unwrap_or(account);
        updated.nonce = tx.tx.nonce;
        state.put_account(&signer, &updated)?;
    }
    Ok(result)
}
