//! Offline verification of what a node says (DESIGN invariant 3): that a transaction is in the
//! log a trusted node signed, that a newer signed checkpoint extends an older one, and that an
//! account's encryption key (or a device session's key, or a patient's emergency key) is the
//! one its registration (or the session's start, or the profile's transaction) put on the
//! ledger.

use medledger_api::{AccountKeyProof, TxProofResponse};
use medledger_core::{
    Hash,
    block::{BlockHeader, Checkpoint, Created, Genesis, Outcome, Receipt, SignedCheckpoint},
    ids::AccountId,
    keys::{EncryptionKey, PublicKey},
    merkle::{self, ConsistencyProof, InclusionProof},
    tx::{EmergencyTx, MAX_TX_BYTES, RegistryTx, SignedTransaction, TxBody, devices::DeviceTx},
};

use crate::error::{ClientError, ProofError};

fn check_signature(cp: &SignedCheckpoint, trusted: &PublicKey) -> Result<(), ClientError> {
    cp.verify(trusted).map_err(|_| {
        ClientError::Proof(ProofError::UntrustedCheckpoint { signer: cp.signer, trusted: *trusted })
    })
}

/// Verifies a transaction proof against a trusted node key and returns the transaction.
///
/// Checks that the transaction hashes to the receipt's hash, that the checkpoint is signed by
/// `trusted_node_key`, that the inclusion proof is for the receipt's log index in the
/// checkpoint's log, and that it leads from the transaction to the checkpoint's root. Also
/// checks that the receipt, block header and checkpoint agree with each other.
pub fn verify_tx_proof(
    resp: &TxProofResponse,
    trusted_node_key: &PublicKey,
) -> Result<SignedTransaction, ClientError> {
    let receipt = &resp.receipt;
    let invalid = |reason: String| {
        ClientError::Proof(ProofError::InvalidProof { tx_hash: receipt.tx_hash, reason })
    };

    if resp.tx_hex.len() > 2 * MAX_TX_BYTES {
        return Err(invalid(format!("transaction is longer than {MAX_TX_BYTES} bytes")));
    }
    let bytes =
        hex::decode(&resp.tx_hex).map_err(|e| invalid(format!("tx_hex is not hex: {e}")))?;
    let tx = decode_receipted(&bytes, receipt)?;
    check_signature(&resp.checkpoint, trusted_node_key)?;
    check_inclusion(&bytes, receipt, &resp.header, &resp.inclusion, &resp.checkpoint.checkpoint)?;
    Ok(tx)
}

/// Verifies that the transaction `bytes`, with its receipt, block header and inclusion proof,
/// is in the log of checkpoint `cp`, whose signature the caller has checked (once, for many
/// transactions proven against the same checkpoint). Returns the transaction. Does not check
/// the transaction's own signature.
pub fn verify_inclusion(
    bytes: &[u8],
    receipt: &Receipt,
    header: &BlockHeader,
    inclusion: &InclusionProof,
    cp: &Checkpoint,
) -> Result<SignedTransaction, ClientError> {
    let tx = decode_receipted(bytes, receipt)?;
    check_inclusion(bytes, receipt, header, inclusion, cp)?;
    Ok(tx)
}

/// Decodes a transaction and checks that it is the one the receipt is for.
fn decode_receipted(bytes: &[u8], receipt: &Receipt) -> Result<SignedTransaction, ClientError> {
    let invalid = |reason: String| {
        ClientError::Proof(ProofError::InvalidProof { tx_hash: receipt.tx_hash, reason })
    };
    let tx = SignedTransaction::decode(bytes).map_err(|e| invalid(e.to_string()))?;
    let hash = tx.hash();
    if hash != receipt.tx_hash {
        return Err(invalid(format!(
            "the transaction's bytes hash to {hash}, not to the receipt's hash"
        )));
    }
    Ok(tx)
}

/// Checks that the receipt, header and checkpoint agree on the transaction's place in the log,
/// and that the inclusion proof leads from it to the checkpoint's root.
fn check_inclusion(
    bytes: &[u8],
    receipt: &Receipt,
    header: &BlockHeader,
    inclusion: &InclusionProof,
    cp: &Checkpoint,
) -> Result<(), ClientError> {
    let invalid = |reason: String| {
        ClientError::Proof(ProofError::InvalidProof { tx_hash: receipt.tx_hash, reason })
    };
    // The receipt, header and checkpoint must describe the same place in the log.
    if header.height != receipt.height {
        return Err(invalid(format!(
            "the receipt says block {}, the header is of block {}",
            receipt.height, header.height
        )));
    }
    let block_start = header.log_size.checked_sub(u64::from(header.tx_count));
    if !block_start
        .is_some_and(|start| start <= receipt.log_index && receipt.log_index < header.log_size)
    {
        return Err(invalid(format!(
            "log index {} is not inside block {} (log size {} after its {} transactions)",
            receipt.log_index, header.height, header.log_size, header.tx_count
        )));
    }
    if header.height > cp.height || header.log_size > cp.log_size {
        return Err(invalid(format!(
            "block {} (log size {}) is newer than the checkpoint (height {}, log size {})",
            header.height, header.log_size, cp.height, cp.log_size
        )));
    }
    if inclusion.tree_size != cp.log_size {
        return Err(invalid(format!(
            "the inclusion proof is for a log of {} entries, the checkpoint is of {}",
            inclusion.tree_size, cp.log_size
        )));
    }
    if inclusion.leaf_index != receipt.log_index {
        return Err(invalid(format!(
            "the inclusion proof is for log index {}, the receipt says {}",
            inclusion.leaf_index, receipt.log_index
        )));
    }
    inclusion
        .verify(&merkle::leaf_hash(bytes), &cp.log_root)
        .map_err(|e| invalid(format!("inclusion proof against the checkpoint root: {e}")))
}

/// What a wallet trusts, authenticated under its passphrase: the network (chain id and genesis
/// hash) and the node key that signs its checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TrustAnchor {
    /// The node key whose checkpoints are trusted.
    pub node_key: PublicKey,
    /// The network's chain id.
    pub chain_id: String,
    /// The hash of the network's genesis (which names the regulator's keys).
    pub genesis: Hash,
}

/// Checks that `proof` shows `account`'s encryption key as the ledger holds it, and returns
/// the key; only then may anything be wrapped or sealed to it.
///
/// An encryption key is set once, by the transaction that registers the account. So the proof
/// must carry that transaction, included in the log under a checkpoint signed by `signer` (the
/// pinned genesis node's key or an admitted node's), correctly signed, for this chain,
/// registering exactly `account` (its first signing key derives the account id) with exactly this encryption key. For the regulator, whose keys
/// are in genesis, `genesis` (served by the node) must hash to the pinned genesis hash.
///
/// What this does not prove: the receipt's outcome is not covered by the Merkle log, so a
/// node could present a *refused* registration naming the same account as applied. See
/// SECURITY.md (H5) for what bounds that.
pub fn verify_account_key(
    proof: &AccountKeyProof,
    account: &AccountId,
    anchor: &TrustAnchor,
    signer: &PublicKey,
    genesis: Option<&Genesis>,
) -> Result<EncryptionKey, ClientError> {
    let refuse =
        |reason: String| ClientError::Proof(ProofError::UnprovenKey { account: *account, reason });
    if proof.account != *account {
        return Err(refuse(format!("the node answered for account {}", proof.account)));
    }
    let Some(registration) = &proof.registration else {
        // Only genesis accounts (the regulator) have no registration transaction.
        let genesis = genesis
            .ok_or_else(|| refuse("the node gave no registration transaction for it".into()))?;
        if genesis.hash() != anchor.genesis {
            return Err(refuse(format!(
                "the node gave no registration transaction, and its genesis {} is not the \
                 pinned genesis {}",
                genesis.hash(),
                anchor.genesis
            )));
        }
        if genesis.regulator() != *account
            || genesis.regulator_encryption_key != proof.encryption_key
        {
            return Err(refuse(
                "the node gave no registration transaction, and genesis names another \
                 regulator or another regulator key"
                    .into(),
            ));
        }
        return Ok(proof.encryption_key);
    };
    let tx = signed_for_this_chain(registration, anchor, signer)
        .map_err(|e| refuse(format!("its registration is not proven: {e}")))?;
    let (first_key, encryption_key) = match &tx.tx.body {
        TxBody::Registry(RegistryTx::AdmitHospital(t)) => (t.key, t.encryption_key),
        TxBody::Registry(RegistryTx::OnboardDoctor(t)) => (t.key, t.encryption_key),
        TxBody::Registry(RegistryTx::RegisterPatient(t)) => (t.key, t.encryption_key),
        TxBody::Registry(RegistryTx::AdmitOrganisation(t)) => (t.key, t.encryption_key),
        TxBody::Registry(RegistryTx::AddMember(t)) => (t.key, t.encryption_key),
        TxBody::Devices(DeviceTx::Register(t)) => (t.key, t.encryption_key),
        other => {
            return Err(refuse(format!(
                "the transaction offered as its registration is a {}",
                other.kind()
            )));
        }
    };
    if AccountId::from_initial_key(&first_key) != *account {
        return Err(refuse(format!(
            "the transaction offered as its registration registers account {}",
            AccountId::from_initial_key(&first_key)
        )));
    }
    match &registration.receipt.outcome {
        Outcome::Applied {
            created:
                Some(Created::Account { account: made } | Created::Patient { account: made, .. }),
        } if made == account => {}
        other => {
            return Err(refuse(format!(
                "the receipt of its registration does not say it created the account: {other:?}"
            )));
        }
    }
    if encryption_key != proof.encryption_key {
        return Err(refuse(format!(
            "the node says its key is {}, but its registration on the ledger set {}",
            proof.encryption_key, encryption_key
        )));
    }
    Ok(encryption_key)
}

/// What an account's proven registration made it, as far as the wallet must know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registered {
    /// An organisation (admitted by the regulator), of this kind.
    Organisation(medledger_core::tx::OrganisationKind),
    /// A member of this organisation: its `AddMember` was signed by the organisation and
    /// carries the member's valid acceptance.
    MemberOf(AccountId),
    /// A patient registered by this hospital (`RegisterPatient`, signed by it).
    PatientOf(AccountId),
    /// A hospital (admitted by the regulator).
    Hospital,
    /// A device of this patient (registered by `DeviceTx::Register`).
    DeviceOf(AccountId),
    /// A doctor of this hospital (onboarded by it, `OnboardDoctor`).
    DoctorOf(AccountId),
    /// Anything else.
    Other,
}

/// What [`verify_registration`] proves of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRegistration {
    /// Its encryption key, as its registration set it.
    pub key: EncryptionKey,
    /// What its registration made it.
    pub registered: Registered,
    /// Who signed the registration, and what they must be proven to be.
    pub registrar: RegisteredBy,
    /// The name it was registered under (a hospital's, doctor's, organisation's or member's;
    /// a patient's details are sealed, a device has none): what a wallet shows beside the
    /// account id, rather than a name from the node's directory.
    pub name: Option<String>,
}

/// [`verify_account_key`], what the proven registration made the account and named it, and
/// who signed it with what they must be proven to be ([`Registrar`]; `None` for the genesis
/// regulator, which has no registration): the caller proves that signer before it trusts the
/// key.
pub fn verify_registration(
    proof: &AccountKeyProof,
    account: &AccountId,
    anchor: &TrustAnchor,
    signer: &PublicKey,
    genesis: Option<&Genesis>,
) -> Result<VerifiedRegistration, ClientError> {
    let key = verify_account_key(proof, account, anchor, signer, genesis)?;
    let Some(registration) = &proof.registration else {
        let name = Some("the regulator".to_owned());
        return Ok(VerifiedRegistration {
            key,
            registered: Registered::Other,
            registrar: None,
            name,
        });
    };
    let refuse =
        |reason: String| ClientError::Proof(ProofError::UnprovenKey { account: *account, reason });
    let tx = signed_for_this_chain(registration, anchor, signer)
        .map_err(|e| refuse(format!("its registration is not proven: {e}")))?;
    let registered = match &tx.tx.body {
        TxBody::Registry(RegistryTx::AdmitOrganisation(a)) => Registered::Organisation(a.kind),
        TxBody::Registry(RegistryTx::AddMember(m))
            if m.verify_acceptance(&tx.tx.signer).is_ok() =>
        {
            Registered::MemberOf(tx.tx.signer)
        }
        TxBody::Registry(RegistryTx::RegisterPatient(_)) => Registered::PatientOf(tx.tx.signer),
        TxBody::Registry(RegistryTx::AdmitHospital(_)) => Registered::Hospital,
        TxBody::Devices(DeviceTx::Register(r)) => Registered::DeviceOf(r.patient),
        TxBody::Registry(RegistryTx::OnboardDoctor(_)) => Registered::DoctorOf(tx.tx.signer),
        _ => Registered::Other,
    };
    let registrar = Registrar::of(&tx.tx.body).map(|needs| (tx.tx.signer, needs));
    let name = match &tx.tx.body {
        TxBody::Registry(RegistryTx::AdmitHospital(t)) => Some(t.name.clone()),
        TxBody::Registry(RegistryTx::OnboardDoctor(t)) => Some(t.name.clone()),
        TxBody::Registry(RegistryTx::AdmitOrganisation(t)) => Some(t.name.clone()),
        TxBody::Registry(RegistryTx::AddMember(t)) => Some(t.name.clone()),
        _ => None,
    };
    Ok(VerifiedRegistration { key, registered, registrar, name })
}

/// Who signed a registration, and what they must be proven to be (`None`: no registration,
/// the genesis regulator).
pub type RegisteredBy = Option<(AccountId, Registrar)>;

/// Who the ledger lets sign a registration of a kind: a registration whose receipt the node
/// reports as applied counts only if its signer is proven to be that (the receipt is the
/// node's word, and a refused registration is in the log too, so anyone could otherwise sign
/// one naming another's signing key beside their own encryption key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registrar {
    /// The regulator named in the pinned genesis (hospitals and organisations).
    Regulator,
    /// A hospital (doctors and patients).
    Hospital,
    /// An organisation (its members).
    Organisation,
    /// A registered account (a device: its patient, their delegate or a hospital).
    Registered,
}

impl Registrar {
    /// Who may sign `body`, a registration; `None` for what registers no account.
    pub fn of(body: &TxBody) -> Option<Registrar> {
        Some(match body {
            TxBody::Registry(RegistryTx::AdmitHospital(_) | RegistryTx::AdmitOrganisation(_)) => {
                Registrar::Regulator
            }
            TxBody::Registry(RegistryTx::OnboardDoctor(_) | RegistryTx::RegisterPatient(_)) => {
                Registrar::Hospital
            }
            TxBody::Registry(RegistryTx::AddMember(_)) => Registrar::Organisation,
            TxBody::Devices(DeviceTx::Register(_)) => Registrar::Registered,
            _ => return None,
        })
    }

    /// Whether an account proven to be `signer` (`None`: not proven registered), or the
    /// genesis regulator when `regulator` says so, may sign such a registration.
    pub fn allows(self, regulator: bool, signer: Option<Registered>) -> bool {
        match self {
            Registrar::Regulator => regulator,
            Registrar::Hospital => signer == Some(Registered::Hospital),
            Registrar::Organisation => matches!(signer, Some(Registered::Organisation(_))),
            Registrar::Registered => regulator || signer.is_some(),
        }
    }
}

/// The transaction of `proof`, included in the log under a checkpoint signed by `signer` (a
/// node key the caller trusts: the pinned genesis node's, or one whose admission by the pinned
/// regulator is proven, see [`crate::NodeClient::admitted_signer`]), validly signed and for the
/// pinned chain: what every key the wallet encrypts to must come from.
fn signed_for_this_chain(
    proof: &TxProofResponse,
    anchor: &TrustAnchor,
    signer: &PublicKey,
) -> Result<SignedTransaction, String> {
    let tx = verify_tx_proof(proof, signer).map_err(|e| e.to_string())?;
    tx.verify_signature().map_err(|e| format!("its transaction is not validly signed: {e}"))?;
    if tx.tx.chain_id != anchor.chain_id {
        return Err(format!(
            "its transaction is for chain {:?}, not {:?}",
            tx.tx.chain_id, anchor.chain_id
        ));
    }
    Ok(tx)
}

/// [`signed_for_this_chain`], of exactly transaction `expected`, with a receipt that says it
/// applied (the outcome is not covered by the Merkle log: see [`verify_account_key`]).
pub fn applied_transaction(
    proof: &TxProofResponse,
    expected: &Hash,
    anchor: &TrustAnchor,
    signer: &PublicKey,
) -> Result<SignedTransaction, String> {
    let tx = signed_for_this_chain(proof, anchor, signer)?;
    if tx.hash() != *expected {
        return Err(format!("the node offered transaction {}", tx.hash()));
    }
    if !matches!(proof.receipt.outcome, Outcome::Applied { .. }) {
        return Err(format!(
            "the receipt of its transaction does not say it applied: {:?}",
            proof.receipt.outcome
        ));
    }
    Ok(tx)
}

/// Checks that `proof` is the transaction that started `session` on `device`, and returns the
/// session's public key as that transaction put it on the ledger; only then may readings be
/// sealed to it.
///
/// A session's id is the hash of the `StartSession` transaction that opened it, and its key is
/// set once, by that transaction. So the proof must be of exactly that transaction, included
/// in the log under a checkpoint signed by `signer` (the pinned genesis node's key or an
/// admitted node's), correctly signed, for this chain, naming `device`, with a receipt that says it applied (the same bound as
/// [`verify_account_key`]: the outcome is not covered by the Merkle log).
pub fn verify_session_key(
    proof: &TxProofResponse,
    session: &Hash,
    device: &AccountId,
    anchor: &TrustAnchor,
    signer: &PublicKey,
) -> Result<EncryptionKey, ClientError> {
    Ok(verify_session_start(proof, session, device, anchor, signer)?.0)
}

/// [`verify_session_key`], and who signed the session's start: the caller proves that it is
/// the device's patient (the ledger refuses anyone else's start, but a refused start is in the
/// log too, and its receipt is the node's word).
pub fn verify_session_start(
    proof: &TxProofResponse,
    session: &Hash,
    device: &AccountId,
    anchor: &TrustAnchor,
    signer: &PublicKey,
) -> Result<(EncryptionKey, AccountId), ClientError> {
    let refuse = |reason: String| {
        ClientError::Proof(ProofError::UnprovenKey {
            account: *device,
            reason: format!("the key of session {session} is not proven: {reason}"),
        })
    };
    let tx = applied_transaction(proof, session, anchor, signer).map_err(refuse)?;
    let TxBody::Devices(DeviceTx::StartSession(start)) = &tx.tx.body else {
        return Err(refuse(format!("its transaction is a {}", tx.tx.body.kind())));
    };
    if start.device != *device {
        return Err(refuse(format!("it was started on device {}", start.device)));
    }
    Ok((start.public_key, tx.tx.signer))
}

/// Checks that `proof` is the transaction `id` that declared a break-glass, and returns its
/// patient and its doctor (the signer) as that transaction put them on the ledger: a custodian
/// re-wraps its escrow piece to that doctor only. A break-glass's id is the hash of the
/// transaction that declared it; the proof must be of exactly that transaction, included in
/// the log under a checkpoint signed by `signer` (the pinned genesis node's key or an
/// admitted node's), correctly signed, for this chain, with a receipt that says it applied
/// (the same bound as [`verify_account_key`]).
pub fn verify_break_glass(
    proof: &TxProofResponse,
    id: &Hash,
    anchor: &TrustAnchor,
    signer: &PublicKey,
) -> Result<(AccountId, AccountId), ClientError> {
    let refuse = |reason: String| {
        ClientError::Proof(ProofError::InvalidProof {
            tx_hash: *id,
            reason: format!("it does not prove break-glass {id}: {reason}"),
        })
    };
    let tx = applied_transaction(proof, id, anchor, signer).map_err(refuse)?;
    let TxBody::Emergency(EmergencyTx::BreakGlass { patient, .. }) = &tx.tx.body else {
        return Err(refuse(format!("its transaction is a {}", tx.tx.body.kind())));
    };
    Ok((*patient, tx.tx.signer))
}

/// Checks that `proof` is the transaction `set_by` that set `patient`'s emergency profile, and
/// returns the emergency key as that transaction put it on the ledger; only then may record
/// keys be wrapped to it.
///
/// The emergency profile view names the transaction that set the profile in force. So the
/// proof must be of exactly that transaction, included in the log under a checkpoint signed by
/// `signer` (the pinned genesis node's key or an admitted node's), correctly signed, for this
/// chain, setting the profile of `patient`,
/// with a receipt that says it applied (the same bound as [`verify_account_key`]: the outcome
/// is not covered by the Merkle log). What this does not prove: that no later profile replaced
/// it (a node could serve an older, proven profile of the same patient).
pub fn verify_emergency_key(
    proof: &TxProofResponse,
    set_by: &Hash,
    patient: &AccountId,
    anchor: &TrustAnchor,
    signer: &PublicKey,
) -> Result<EncryptionKey, ClientError> {
    Ok(verify_emergency_profile(proof, set_by, patient, anchor, signer)?.emergency_key)
}

/// [`verify_emergency_key`], returning the whole profile the transaction set: its key, and
/// whether the patient lets break-glass open their records.
pub fn verify_emergency_profile(
    proof: &TxProofResponse,
    set_by: &Hash,
    patient: &AccountId,
    anchor: &TrustAnchor,
    signer: &PublicKey,
) -> Result<medledger_core::tx::emergency::EmergencyProfile, ClientError> {
    let refuse = |reason: String| {
        ClientError::Proof(ProofError::UnprovenKey {
            account: AccountId::emergency_of(patient),
            reason: format!("the emergency key of patient {patient} is not proven: {reason}"),
        })
    };
    let tx = applied_transaction(proof, set_by, anchor, signer).map_err(refuse)?;
    let TxBody::Emergency(EmergencyTx::SetProfile { patient: of, profile }) = tx.tx.body else {
        return Err(refuse(format!("its transaction is a {}", tx.tx.body.kind())));
    };
    if of != *patient {
        return Err(refuse(format!("it set the profile of {of}")));
    }
    // Anyone may sign a profile for a patient: the ledger refuses it, yet it is in the log,
    // and its receipt is the node's word. Only the patient's own counts (a delegate's cannot
    // be told apart here: the patient sets it again).
    if tx.tx.signer != *patient {
        return Err(refuse(format!(
            "it was set by {}, not by the patient (only a profile the patient signed is used)",
            tx.tx.signer
        )));
    }
    Ok(profile)
}

/// Checks that `new` extends `old`: both signed by `trusted`, the same chain, neither log size
/// nor height nor time going backwards, and `proof` leading from `old`'s root to `new`'s root.
///
/// Fails with [`crate::error::ProofError::UntrustedCheckpoint`] for a bad signature, and with
/// [`crate::error::ProofError::InconsistentCheckpoint`] for anything else: the node's history does not
/// extend what the caller saw before.
pub fn check_consistency(
    old: &SignedCheckpoint,
    new: &SignedCheckpoint,
    proof: &ConsistencyProof,
    trusted: &PublicKey,
) -> Result<(), ClientError> {
    check_signature(old, trusted)?;
    check_signature(new, trusted)?;
    let (o, n) = (&old.checkpoint, &new.checkpoint);
    extends(o, n, Some(proof)).map_err(|reason| {
        ClientError::Proof(ProofError::InconsistentCheckpoint {
            old_size: o.log_size,
            new_size: n.log_size,
            reason,
        })
    })
}

/// Why checkpoint `new` does not extend `old`, if it does not: the same chain; neither height,
/// time nor log size going back; at one height the same checkpoint; at one log size the same
/// root; and otherwise `proof` (from `old`'s size to `new`'s) leading from `old`'s root to
/// `new`'s. The one check of two checkpoints against each other, whether one node signed both
/// ([`check_consistency`]) or two ([`crate::checkpoints::check_against_seen`]).
pub(crate) fn extends(
    old: &Checkpoint,
    new: &Checkpoint,
    proof: Option<&ConsistencyProof>,
) -> Result<(), String> {
    let (o, n) = (old, new);
    if o.chain_id != n.chain_id {
        return Err(format!(
            "the new checkpoint is for chain {:?}, the old one for {:?}",
            n.chain_id, o.chain_id
        ));
    }
    if n.height < o.height {
        return Err(format!("the height went back from {} to {}", o.height, n.height));
    }
    if n.height == o.height {
        return if n == o {
            Ok(())
        } else {
            Err(format!("two different checkpoints for height {}", n.height))
        };
    }
    if n.time_ms < o.time_ms {
        return Err(format!("block time went back from {} to {} ms", o.time_ms, n.time_ms));
    }
    if n.log_size < o.log_size {
        return Err("the log shrank".into());
    }
    if n.log_size == o.log_size {
        return if n.log_root == o.log_root {
            Ok(())
        } else {
            Err(format!(
                "two different roots for the same log size: {} before, {} now",
                o.log_root, n.log_root
            ))
        };
    }
    if o.log_size == 0 {
        // The empty log is a prefix of every log; RFC 9162 has no proof for it.
        return if o.log_root == merkle::empty_root() {
            Ok(())
        } else {
            Err("the old checkpoint claims a non-empty root for an empty log".into())
        };
    }
    let proof = proof.ok_or("no consistency proof")?;
    if proof.old_size != o.log_size || proof.new_size != n.log_size {
        return Err(format!(
            "the consistency proof is from size {} to {}, the checkpoints are of sizes {} and {}",
            proof.old_size, proof.new_size, o.log_size, n.log_size
        ));
    }
    proof
        .verify(&o.log_root, &n.log_root)
        .map_err(|e| format!("the consistency proof does not verify: {e}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use medledger_core::{keys::SigningKey, merkle::MerkleLog, tx::Transaction};

    use super::*;

    const CHAIN: &str = "medledger-test";

    fn txs(n: u64, salt: u64) -> Vec<SignedTransaction> {
        let key = SigningKey::from_seed([7; 32]);
        (0..n)
            .map(|i| {
                Transaction {
                    chain_id: CHAIN.into(),
                    signer: AccountId::from_initial_key(&key.public_key()),
                    nonce: i + 1 + salt,
                    body: TxBody::Registry(RegistryTx::RotateKey { new_key: key.public_key() }),
                }
                .sign(&key)
            })
            .collect()
    }

    fn log_of(txs: &[SignedTransaction]) -> MerkleLog {
        let mut log = MerkleLog::new();
        for tx in txs {
            log.push(merkle::leaf_hash(&tx.encode()));
        }
        log
    }

    fn checkpoint(log: &MerkleLog, size: u64, height: u64, node: &SigningKey) -> SignedCheckpoint {
        Checkpoint {
            chain_id: CHAIN.into(),
            height,
            time_ms: 1_700_000_000_000 + height,
            log_size: size,
            log_root: log.root_at(size).unwrap(),
        }
        .sign(node)
    }

    /// A proof for transaction `index` of 7, all in block 1, against a checkpoint of the log.
    fn proof_response(node: &SigningKey, index: u64) -> (TxProofResponse, Vec<SignedTransaction>) {
        let txs = txs(7, 0);
        let log = log_of(&txs);
        let tx = &txs[usize::try_from(index).unwrap()];
        let resp = TxProofResponse {
            tx_hex: hex::encode(tx.encode()),
            receipt: Receipt {
                tx_hash: tx.hash(),
                height: 1,
                log_index: index,
                outcome: Outcome::Applied { created: None },
            },
            header: BlockHeader {
                height: 1,
                prev_hash: Hash::default(),
                time_ms: 1_700_000_000_001,
                tx_count: 7,
                tx_root: log.root(),
                log_size: 7,
                log_root: log.root(),
            },
            checkpoint: checkpoint(&log, 7, 1, node),
            inclusion: log.inclusion_proof(index, 7).unwrap(),
        };
        (resp, txs)
    }

    fn assert_invalid(r: Result<SignedTransaction, ClientError>, what: &str) {
        match r {
            Err(
                ClientError::Proof(ProofError::InvalidProof { .. })
                | ClientError::Proof(ProofError::UntrustedCheckpoint { .. }),
            ) => {}
            other => panic!("{what}: expected rejection, got {other:?}"),
        }
    }

    #[test]
    fn good_proofs_pass() {
        let node = SigningKey::generate();
        for index in 0..7 {
            let (resp, txs) = proof_response(&node, index);
            let tx = verify_tx_proof(&resp, &node.public_key()).unwrap();
            assert_eq!(tx, txs[usize::try_from(index).unwrap()]);
        }
    }

    #[test]
    fn wrong_node_key_is_rejected() {
        let node = SigningKey::generate();
        let (resp, _) = proof_response(&node, 3);
        let other = SigningKey::generate().public_key();
        let err = verify_tx_proof(&resp, &other).unwrap_err();
        assert!(matches!(err, ClientError::Proof(ProofError::UntrustedCheckpoint { .. })), "{err}");

        // A checkpoint re-signed by another key that claims to be the node is refused too.
        let mut forged = resp.clone();
        forged.checkpoint = resp.checkpoint.checkpoint.clone().sign(&SigningKey::generate());
        forged.checkpoint.signer = node.public_key();
        assert_invalid(verify_tx_proof(&forged, &node.public_key()), "forged signature");
    }

    #[test]
    fn tampered_tx_byte_is_rejected() {
        let node = SigningKey::generate();
        let (resp, _) = proof_response(&node, 2);
        let bytes = hex::decode(&resp.tx_hex).unwrap();
        for i in [0, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = resp.clone();
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            bad.tx_hex = hex::encode(&b);
            assert_invalid(verify_tx_proof(&bad, &node.public_key()), &format!("byte {i}"));
            // Even with the receipt's hash updated to match, the Merkle proof fails.
            if let Ok(tx) = SignedTransaction::decode(&b) {
                bad.receipt.tx_hash = tx.hash();
                assert_invalid(
                    verify_tx_proof(&bad, &node.public_key()),
                    &format!("rehashed byte {i}"),
                );
            }
        }
    }

    #[test]
    fn wrong_index_is_rejected() {
        let node = SigningKey::generate();
        let (resp, _) = proof_response(&node, 2);
        let mut bad = resp.clone();
        bad.receipt.log_index = 3;
        assert_invalid(verify_tx_proof(&bad, &node.public_key()), "receipt index");
        let mut bad = resp.clone();
        bad.inclusion.leaf_index = 3;
        assert_invalid(verify_tx_proof(&bad, &node.public_key()), "proof index");
        // Both moved together: the path is for index 2, so the root does not match.
        bad.receipt.log_index = 3;
        assert_invalid(verify_tx_proof(&bad, &node.public_key()), "both indices");
        let mut bad = resp;
        bad.inclusion.tree_size = 6;
        assert_invalid(verify_tx_proof(&bad, &node.public_key()), "tree size");
    }

    #[test]
    fn tampered_root_is_rejected() {
        let node = SigningKey::generate();
        let (resp, _) = proof_response(&node, 5);
        // Changing the root breaks the signature...
        let mut bad = resp.clone();
        bad.checkpoint.checkpoint.log_root.0[0] ^= 1;
        assert_invalid(verify_tx_proof(&bad, &node.public_key()), "root, old signature");
        // ...and a correctly signed checkpoint of another root fails the inclusion proof.
        let mut cp = resp.checkpoint.checkpoint.clone();
        cp.log_root.0[0] ^= 1;
        bad.checkpoint = cp.sign(&node);
        assert_invalid(verify_tx_proof(&bad, &node.public_key()), "root, signed");
        // So does a tampered path.
        let mut bad = resp;
        bad.inclusion.path[0].0[31] ^= 1;
        assert_invalid(verify_tx_proof(&bad, &node.public_key()), "path");
    }

    #[test]
    fn consistent_checkpoints_pass() {
        let node = SigningKey::generate();
        let log = log_of(&txs(13, 0));
        let trusted = node.public_key();
        for old in 1..=13u64 {
            for new in old..=13u64 {
                let (a, b) = (checkpoint(&log, old, old, &node), checkpoint(&log, new, new, &node));
                let proof = log.consistency_proof(old, new).unwrap();
                check_consistency(&a, &b, &proof, &trusted).unwrap();
            }
        }
        // From the empty log.
        let empty = checkpoint(&MerkleLog::new(), 0, 0, &node);
        let proof = ConsistencyProof { old_size: 0, new_size: 13, path: vec![] };
        check_consistency(&empty, &checkpoint(&log, 13, 13, &node), &proof, &trusted).unwrap();
    }

    #[test]
    fn inconsistent_checkpoints_are_rejected() {
        let node = SigningKey::generate();
        let trusted = node.public_key();
        let honest = txs(10, 0);
        let log = log_of(&honest);
        let old = checkpoint(&log, 6, 6, &node);

        // A log whose prefix differs: entry 3 replaced.
        let mut rewritten = honest.clone();
        rewritten[3] = txs(1, 100).remove(0);
        let forked = log_of(&rewritten);
        let new = checkpoint(&forked, 10, 10, &node);
        let proof = forked.consistency_proof(6, 10).unwrap();
        let err = check_consistency(&old, &new, &proof, &trusted).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Proof(ProofError::InconsistentCheckpoint {
                    old_size: 6,
                    new_size: 10,
                    ..
                })
            ),
            "{err}"
        );
        assert!(err.to_string().contains("possible fork or rewrite"), "{err}");

        // Same size, different root.
        let same_size = checkpoint(&forked, 6, 7, &node);
        let proof = ConsistencyProof { old_size: 6, new_size: 6, path: vec![] };
        assert!(matches!(
            check_consistency(&old, &same_size, &proof, &trusted),
            Err(ClientError::Proof(ProofError::InconsistentCheckpoint { .. }))
        ));

        // Shrinking log, going-back height, other chain, wrong proof sizes.
        let good = checkpoint(&log, 10, 10, &node);
        let good_proof = log.consistency_proof(6, 10).unwrap();
        let smaller = checkpoint(&log, 5, 11, &node);
        assert!(matches!(
            check_consistency(&old, &smaller, &good_proof, &trusted),
            Err(ClientError::Proof(ProofError::InconsistentCheckpoint { .. }))
        ));
        let mut lower = good.checkpoint.clone();
        lower.height = 5;
        assert!(matches!(
            check_consistency(&old, &lower.sign(&node), &good_proof, &trusted),
            Err(ClientError::Proof(ProofError::InconsistentCheckpoint { .. }))
        ));
        let mut other_chain = good.checkpoint.clone();
        other_chain.chain_id = "elsewhere".into();
        assert!(matches!(
            check_consistency(&old, &other_chain.sign(&node), &good_proof, &trusted),
            Err(ClientError::Proof(ProofError::InconsistentCheckpoint { .. }))
        ));
        let wrong_sizes = log.consistency_proof(5, 10).unwrap();
        assert!(matches!(
            check_consistency(&old, &good, &wrong_sizes, &trusted),
            Err(ClientError::Proof(ProofError::InconsistentCheckpoint { .. }))
        ));
        // Equivocation: another checkpoint for the same height.
        let mut twin = old.checkpoint.clone();
        twin.time_ms += 1;
        let proof = ConsistencyProof { old_size: 6, new_size: 6, path: vec![] };
        assert!(matches!(
            check_consistency(&old, &twin.sign(&node), &proof, &trusted),
            Err(ClientError::Proof(ProofError::InconsistentCheckpoint { .. }))
        ));

        // And the honest extension still passes; a foreign signer does not.
        check_consistency(&old, &good, &good_proof, &trusted).unwrap();
        let foreign = good.checkpoint.clone().sign(&SigningKey::generate());
        assert!(matches!(
            check_consistency(&old, &foreign, &good_proof, &trusted),
            Err(ClientError::Proof(ProofError::UntrustedCheckpoint { .. }))
        ));
    }

    /// A registration of a new patient account by a hospital, proven in a log of 5 under a
    /// checkpoint signed by `node`: (proof, the patient's account, the anchor).
    pub(crate) fn key_proof(node: &SigningKey) -> (AccountKeyProof, AccountId, TrustAnchor) {
        use medledger_core::{
            keys::DecryptionKey,
            tx::{RegisterPatient, SealedRef},
        };
        let hospital = SigningKey::from_seed([9; 32]);
        let patient = SigningKey::generate();
        let account = AccountId::from_initial_key(&patient.public_key());
        let encryption_key = DecryptionKey::generate().public_key();
        let sealed = SealedRef { blob: Hash::of(b"d"), commitment: Hash::of(b"c") };
        let registration = Transaction {
            chain_id: CHAIN.into(),
            signer: AccountId::from_initial_key(&hospital.public_key()),
            nonce: 1,
            body: TxBody::Registry(RegistryTx::RegisterPatient(RegisterPatient {
                key: patient.public_key(),
                encryption_key,
                details: sealed,
                attendant: sealed,
            })),
        }
        .sign(&hospital);
        let created =
            Created::Patient { account, patient_id: medledger_core::ids::PatientId(12345) };
        let resp = proven(&registration, node, Outcome::Applied { created: Some(created) });
        let anchor = TrustAnchor {
            node_key: node.public_key(),
            chain_id: CHAIN.into(),
            genesis: Hash::of(b"genesis"),
        };
        (AccountKeyProof { account, encryption_key, registration: Some(resp) }, account, anchor)
    }

    fn assert_unproven(r: Result<EncryptionKey, ClientError>, what: &str) {
        match r {
            Err(ClientError::Proof(ProofError::UnprovenKey { .. })) => {}
            other => panic!("{what}: expected the key to be refused, got {other:?}"),
        }
    }

    /// A registration names who signed it and what that signer must be proven to be: the
    /// hospital that registered the patient here. Every kind's registrar, and what each
    /// accepts: a registration signed by anyone else is refused whatever its receipt says.
    #[test]
    fn a_registration_counts_only_when_signed_by_whom_the_ledger_lets_register_it() {
        let node = SigningKey::generate();
        let (proof, account, anchor) = key_proof(&node);
        let VerifiedRegistration { registered, registrar, name, .. } =
            verify_registration(&proof, &account, &anchor, &anchor.node_key, None).unwrap();
        let hospital = AccountId::from_initial_key(&SigningKey::from_seed([9; 32]).public_key());
        assert_eq!(registered, Registered::PatientOf(hospital));
        // A patient's registration names nobody in the clear.
        assert_eq!(name, None);
        assert_eq!(registrar, Some((hospital, Registrar::Hospital)));

        use Registered::*;
        use medledger_core::tx::OrganisationKind::{Insurer, Researcher};
        let proven = [
            None,
            Some(Other),
            Some(PatientOf(hospital)),
            Some(Hospital),
            Some(Organisation(Researcher)),
            Some(Organisation(Insurer)),
            Some(MemberOf(hospital)),
        ];
        for signer in proven {
            assert!(!Registrar::Regulator.allows(false, signer), "{signer:?}");
            assert_eq!(Registrar::Hospital.allows(false, signer), signer == Some(Hospital));
            assert_eq!(
                Registrar::Organisation.allows(false, signer),
                matches!(signer, Some(Organisation(_))),
                "{signer:?}"
            );
            assert_eq!(Registrar::Registered.allows(false, signer), signer.is_some());
        }
        // The genesis regulator admits hospitals and organisations, and registers no doctor,
        // patient or member.
        assert!(Registrar::Regulator.allows(true, None));
        assert!(!Registrar::Hospital.allows(true, None));
        assert!(!Registrar::Organisation.allows(true, None));

        // What registers no account has no registrar.
        let revoke = medledger_core::tx::ConsentTx::Revoke { grant: Hash::of(b"g") };
        assert_eq!(Registrar::of(&TxBody::Consent(revoke)), None);
    }

    #[test]
    fn a_registered_key_is_proven() {
        let node = SigningKey::generate();
        let (proof, account, anchor) = key_proof(&node);
        assert_eq!(
            verify_account_key(&proof, &account, &anchor, &anchor.node_key, None).unwrap(),
            proof.encryption_key
        );
    }

    #[test]
    fn a_swapped_or_unproven_key_is_refused() {
        use medledger_core::keys::DecryptionKey;
        let node = SigningKey::generate();
        let (good, account, anchor) = key_proof(&node);
        let attacker = DecryptionKey::generate().public_key();

        // The key swapped in the answer, the registration left alone.
        let mut p = good.clone();
        p.encryption_key = attacker;
        let err = verify_account_key(&p, &account, &anchor, &anchor.node_key, None).unwrap_err();
        assert!(err.to_string().contains("refusing to use the encryption key"), "{err}");
        assert_unproven(Err(err), "swapped key");

        // The key swapped everywhere it appears, the transaction too: its hash no longer matches.
        let mut p = good.clone();
        let reg = p.registration.as_mut().unwrap();
        reg.tx_hex = reg.tx_hex.replace(&good.encryption_key.to_string(), &attacker.to_string());
        assert_ne!(reg.tx_hex, good.registration.as_ref().unwrap().tx_hex);
        p.encryption_key = attacker;
        assert_unproven(
            verify_account_key(&p, &account, &anchor, &anchor.node_key, None),
            "swapped everywhere",
        );

        // Asked for another account, or for the right account by another answer.
        let other = AccountId([7; 20]);
        assert_unproven(
            verify_account_key(&good, &other, &anchor, &anchor.node_key, None),
            "other account",
        );
        let mut p = good.clone();
        p.account = other;
        assert_unproven(
            verify_account_key(&p, &other, &anchor, &anchor.node_key, None),
            "registration of another",
        );

        // Another node key, another chain.
        let foreign =
            TrustAnchor { node_key: SigningKey::generate().public_key(), ..anchor.clone() };
        assert_unproven(
            verify_account_key(&good, &account, &foreign, &foreign.node_key, None),
            "foreign node",
        );
        let elsewhere = TrustAnchor { chain_id: "elsewhere".into(), ..anchor.clone() };
        assert_unproven(
            verify_account_key(&good, &account, &elsewhere, &elsewhere.node_key, None),
            "other chain",
        );

        // A receipt that does not say the account was created.
        let mut p = good.clone();
        p.registration.as_mut().unwrap().receipt.outcome = Outcome::Applied { created: None };
        assert_unproven(
            verify_account_key(&p, &account, &anchor, &anchor.node_key, None),
            "no creation",
        );

        // Some other proven transaction offered as the registration.
        let (mut p, _, _) = key_proof(&node);
        p.account = account;
        p.encryption_key = good.encryption_key;
        assert_unproven(
            verify_account_key(&p, &account, &anchor, &anchor.node_key, None),
            "another registration",
        );

        // No registration at all: only the pinned genesis' regulator may have none.
        let mut p = good.clone();
        p.registration = None;
        assert_unproven(
            verify_account_key(&p, &account, &anchor, &anchor.node_key, None),
            "no registration",
        );
    }

    /// A proven `SetProfile` of a patient, at index 1 of 4 in block 1.
    fn profile_proof(node: &SigningKey) -> (TxProofResponse, Hash, AccountId, TrustAnchor) {
        profile_proof_signed(node, None)
    }

    /// [`profile_proof`], the profile signed by `by` instead of the patient.
    fn profile_proof_signed(
        node: &SigningKey,
        by: Option<&SigningKey>,
    ) -> (TxProofResponse, Hash, AccountId, TrustAnchor) {
        use medledger_core::{
            keys::DecryptionKey,
            tx::{EmergencyTx, emergency::EmergencyProfile},
        };
        let patient = SigningKey::generate();
        let account = AccountId::from_initial_key(&patient.public_key());
        let signer = by.unwrap_or(&patient);
        let set = Transaction {
            chain_id: CHAIN.into(),
            signer: AccountId::from_initial_key(&signer.public_key()),
            nonce: 1,
            body: TxBody::Emergency(EmergencyTx::SetProfile {
                patient: account,
                profile: EmergencyProfile {
                    profile: Hash::of(b"sealed profile"),
                    key_check: Hash::of(b"check"),
                    emergency_key: DecryptionKey::generate().public_key(),
                    open_records: true,
                    escrow: vec![],
                    threshold: 0,
                },
            }),
        }
        .sign(signer);
        let mut all = txs(3, 0);
        all.insert(1, set.clone());
        let log = log_of(&all);
        let resp = TxProofResponse {
            tx_hex: hex::encode(set.encode()),
            receipt: Receipt {
                tx_hash: set.hash(),
                height: 1,
                log_index: 1,
                outcome: Outcome::Applied { created: None },
            },
            header: BlockHeader {
                height: 1,
                prev_hash: Hash::default(),
                time_ms: 1_700_000_000_001,
                tx_count: 4,
                tx_root: log.root(),
                log_size: 4,
                log_root: log.root(),
            },
            checkpoint: checkpoint(&log, 4, 1, node),
            inclusion: log.inclusion_proof(1, 4).unwrap(),
        };
        let anchor = TrustAnchor {
            node_key: node.public_key(),
            chain_id: CHAIN.into(),
            genesis: Hash::of(b"genesis"),
        };
        (resp, set.hash(), account, anchor)
    }

    #[test]
    fn the_emergency_key_is_proven_only_by_the_transaction_that_set_the_profile() {
        use medledger_core::{keys::DecryptionKey, tx::EmergencyTx};
        let node = SigningKey::generate();
        let (good, set_by, patient, anchor) = profile_proof(&node);
        let tx = SignedTransaction::decode(&hex::decode(&good.tx_hex).unwrap()).unwrap();
        let TxBody::Emergency(EmergencyTx::SetProfile { profile, .. }) = &tx.tx.body else {
            unreachable!()
        };
        let key = profile.emergency_key;
        assert_eq!(
            verify_emergency_key(&good, &set_by, &patient, &anchor, &anchor.node_key).unwrap(),
            key
        );

        // The key swapped in the transaction: its hash no longer matches.
        let attacker = DecryptionKey::generate().public_key();
        let mut p = good.clone();
        p.tx_hex = p.tx_hex.replace(&key.to_string(), &attacker.to_string());
        assert_ne!(p.tx_hex, good.tx_hex);
        let err =
            verify_emergency_key(&p, &set_by, &patient, &anchor, &anchor.node_key).unwrap_err();
        assert!(err.to_string().contains("refusing to use the encryption key"), "{err}");
        // Another proven transaction than the one the view names; another patient.
        let (other, other_hash, _, _) = profile_proof(&node);
        assert_unproven(
            verify_emergency_key(&other, &set_by, &patient, &anchor, &anchor.node_key),
            "other tx",
        );
        assert_unproven(
            verify_emergency_key(&other, &other_hash, &patient, &anchor, &anchor.node_key),
            "another patient's profile",
        );
        // A proven transaction of another kind.
        let (rotate, rotated) = proof_response(&node, 3);
        assert_unproven(
            verify_emergency_key(&rotate, &rotated[3].hash(), &patient, &anchor, &anchor.node_key),
            "another kind",
        );
        // Another node key, another chain, a refused receipt.
        let foreign =
            TrustAnchor { node_key: SigningKey::generate().public_key(), ..anchor.clone() };
        assert_unproven(
            verify_emergency_key(&good, &set_by, &patient, &foreign, &foreign.node_key),
            "foreign node",
        );
        let elsewhere = TrustAnchor { chain_id: "elsewhere".into(), ..anchor.clone() };
        assert_unproven(
            verify_emergency_key(&good, &set_by, &patient, &elsewhere, &elsewhere.node_key),
            "other chain",
        );
        let mut p = good.clone();
        p.receipt.outcome =
            Outcome::Refused { reason: medledger_core::block::Refusal::BadSignature };
        assert_unproven(
            verify_emergency_key(&p, &set_by, &patient, &anchor, &anchor.node_key),
            "refused",
        );
        // A profile of the patient's that someone else signed (the ledger refuses it, but it is
        // in the log, and this receipt says applied).
        let stranger = SigningKey::generate();
        let (forged, forged_by, patient, anchor) = profile_proof_signed(&node, Some(&stranger));
        let err = verify_emergency_key(&forged, &forged_by, &patient, &anchor, &anchor.node_key)
            .unwrap_err();
        assert!(err.to_string().contains("not by the patient"), "{err}");
    }

    #[test]
    fn the_regulator_key_is_proven_by_the_pinned_genesis_only() {
        use medledger_core::keys::DecryptionKey;
        let node = SigningKey::generate();
        let regulator = SigningKey::generate();
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            time_ms: 1,
            regulator_key: regulator.public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: node.public_key(),
        };
        let anchor = TrustAnchor {
            node_key: node.public_key(),
            chain_id: CHAIN.into(),
            genesis: genesis.hash(),
        };
        let account = genesis.regulator();
        let proof = AccountKeyProof {
            account,
            encryption_key: genesis.regulator_encryption_key,
            registration: None,
        };
        assert_eq!(
            verify_account_key(&proof, &account, &anchor, &anchor.node_key, Some(&genesis))
                .unwrap(),
            genesis.regulator_encryption_key
        );
        // A served genesis with another regulator encryption key is not the pinned one.
        let mut forged = genesis.clone();
        forged.regulator_encryption_key = DecryptionKey::generate().public_key();
        let swapped =
            AccountKeyProof { encryption_key: forged.regulator_encryption_key, ..proof.clone() };
        assert_unproven(
            verify_account_key(&swapped, &account, &anchor, &anchor.node_key, Some(&forged)),
            "forged genesis",
        );
        assert_unproven(
            verify_account_key(&swapped, &account, &anchor, &anchor.node_key, Some(&genesis)),
            "swapped key",
        );
    }

    /// `tx` proven as transaction 2 of 5 in block 1, under a checkpoint signed by `node`.
    fn proven(tx: &SignedTransaction, node: &SigningKey, outcome: Outcome) -> TxProofResponse {
        let mut all = txs(4, 0);
        all.insert(2, tx.clone());
        let log = log_of(&all);
        TxProofResponse {
            tx_hex: hex::encode(tx.encode()),
            receipt: Receipt { tx_hash: tx.hash(), height: 1, log_index: 2, outcome },
            header: BlockHeader {
                height: 1,
                prev_hash: Hash::default(),
                time_ms: 1_700_000_000_001,
                tx_count: 5,
                tx_root: log.root(),
                log_size: 5,
                log_root: log.root(),
            },
            checkpoint: checkpoint(&log, 5, 1, node),
            inclusion: log.inclusion_proof(2, 5).unwrap(),
        }
    }

    #[test]
    fn a_session_key_is_proven_by_its_start_and_nothing_else() {
        use medledger_core::{keys::DecryptionKey, tx::devices::StartSession};
        let node = SigningKey::generate();
        let anchor = TrustAnchor {
            node_key: node.public_key(),
            chain_id: CHAIN.into(),
            genesis: Hash::default(),
        };
        let patient = SigningKey::generate();
        let device = AccountId([4; 20]);
        let key = DecryptionKey::generate().public_key();
        let start = |device: AccountId, chain: &str| {
            Transaction {
                chain_id: chain.into(),
                signer: AccountId::from_initial_key(&patient.public_key()),
                nonce: 1,
                body: TxBody::Devices(DeviceTx::StartSession(StartSession {
                    device,
                    public_key: key,
                    expires_at_ms: None,
                    doctor: None,
                    keys: Vec::new(),
                })),
            }
            .sign(&patient)
        };
        let applied = Outcome::Applied { created: None };
        let good = start(device, CHAIN);
        let proof = proven(&good, &node, applied.clone());
        assert_eq!(
            verify_session_key(&proof, &good.hash(), &device, &anchor, &anchor.node_key).unwrap(),
            key
        );

        // Another session's start, another device's, another chain's, a refused one, another
        // transaction altogether, and a proof under a foreign node key are all refused.
        let other = start(device, CHAIN);
        let other = Transaction { nonce: 2, ..other.tx }.sign(&patient);
        let refused = |r: Result<EncryptionKey, ClientError>, what: &str| {
            assert!(
                matches!(r, Err(ClientError::Proof(ProofError::UnprovenKey { .. }))),
                "{what}: {r:?}"
            );
        };
        refused(
            verify_session_key(
                &proven(&other, &node, applied.clone()),
                &good.hash(),
                &device,
                &anchor,
                &anchor.node_key,
            ),
            "another session",
        );
        let elsewhere = start(AccountId([5; 20]), CHAIN);
        refused(
            verify_session_key(
                &proven(&elsewhere, &node, applied.clone()),
                &elsewhere.hash(),
                &device,
                &anchor,
                &anchor.node_key,
            ),
            "another device",
        );
        let foreign_chain = start(device, "elsewhere");
        refused(
            verify_session_key(
                &proven(&foreign_chain, &node, applied.clone()),
                &foreign_chain.hash(),
                &device,
                &anchor,
                &anchor.node_key,
            ),
            "another chain",
        );
        let not_applied = Outcome::Refused { reason: medledger_core::block::Refusal::BadSignature };
        refused(
            verify_session_key(
                &proven(&good, &node, not_applied),
                &good.hash(),
                &device,
                &anchor,
                &anchor.node_key,
            ),
            "a refused start",
        );
        let rotation = &txs(1, 9)[0];
        refused(
            verify_session_key(
                &proven(rotation, &node, applied.clone()),
                &rotation.hash(),
                &device,
                &anchor,
                &anchor.node_key,
            ),
            "not a session start",
        );
        let stranger = SigningKey::generate();
        refused(
            verify_session_key(
                &proven(&good, &stranger, applied),
                &good.hash(),
                &device,
                &anchor,
                &anchor.node_key,
            ),
            "a foreign node key",
        );
    }
}
