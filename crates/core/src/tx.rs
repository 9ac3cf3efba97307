//! The transaction envelope (chain id, signer, nonce, body, signature) and the transaction
//! bodies. One enum variant per kind; the registry kinds live in [`registry`], the others in
//! [`consent`], [`records`], [`emergency`], [`cases`], [`devices`] and [`nodes`]; organisations' bodies in
//! [`organisations`]; the research export in [`research`].

pub mod blobs;
pub mod cases;
pub mod consent;
pub mod devices;
pub mod emergency;
pub mod nodes;
pub mod organisations;
pub mod records;
pub mod registry;
pub mod research;

use serde::{Deserialize, Serialize};

use crate::{
    Hash,
    encoding::{self, DecodeError},
    ids::AccountId,
    keys::{BadSignature, PublicKey, Signature, SigningKey, Verifier, namespace},
};

pub use blobs::{BlobRef, BlobRole};
pub use cases::CaseTx;
pub use consent::{ConsentTx, DelegatePowers};
pub use devices::DeviceTx;
pub use emergency::EmergencyTx;
pub use nodes::NodeTx;
pub use organisations::{AddMember, AdmitOrganisation};
pub use records::RecordTx;
pub use registry::*;

/// Largest accepted encoded signed transaction, in bytes.
pub const MAX_TX_BYTES: usize = 16 * 1024;
/// Longest accepted chain id.
pub const MAX_CHAIN_ID_LEN: usize = 64;

/// What a transaction does. New capabilities (consent, records, cases, devices) add variants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxBody {
    /// Identities: hospitals, doctors, patients, keys.
    Registry(RegistryTx),
    /// Consent: grants, requests, deny rules, delegates.
    Consent(ConsentTx),
    /// An access to a patient's records, decided and audited when applied.
    Access(consent::AccessTx),
    /// Record tokens: mint, approve, transfer, share a key, erase.
    Records(RecordTx),
    /// Emergency access: profiles, break-glass, escrow releases, reviews.
    Emergency(EmergencyTx),
    /// Case-wise treatment logs: open, append, seal, share the case key.
    Cases(CaseTx),
    /// Devices: registration, measurement sessions, thresholds, readings and alerts.
    Devices(DeviceTx),
    /// Node membership: the regulator admits, suspends, reinstates and removes nodes.
    Nodes(NodeTx),
    /// A member of a researcher organisation's de-identified export of one patient's data for
    /// a project, decided and audited when applied. (Appended last: the encoding is postcard,
    /// so earlier variants keep their tags and old chains still decode.)
    ResearchExport(research::ResearchExportTx),
}

impl TxBody {
    /// Whether a node simulates this kind (`POST /v1/transactions/simulate`). Not an access, a
    /// research export, a custodian's release of a key share or a case key's share: each is a
    /// decision of `authorize` that, simulated, no patient's trail would record. A wallet
    /// submits these without simulating.
    pub fn is_simulated(&self) -> bool {
        !matches!(
            self,
            TxBody::Access(_)
                | TxBody::ResearchExport(_)
                | TxBody::Records(RecordTx::ReleaseShare { .. })
                | TxBody::Cases(CaseTx::ShareKey { .. })
        )
    }

    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            TxBody::Registry(r) => r.kind(),
            TxBody::Consent(c) => c.kind(),
            TxBody::Access(_) => "access",
            TxBody::Records(r) => r.kind(),
            TxBody::Emergency(e) => e.kind(),
            TxBody::Cases(c) => c.kind(),
            TxBody::Devices(d) => d.kind(),
            TxBody::Nodes(n) => n.kind(),
            TxBody::ResearchExport(_) => "research_export",
        }
    }
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The network this transaction is for; a transaction for another chain is refused.
    pub chain_id: String,
    /// The account that signs and pays for it in nonce.
    pub signer: AccountId,
    /// Strictly greater than the signer's last committed nonce: makes every transaction unique
    /// and refuses replays.
    pub nonce: u64,
    /// What it does.
    pub body: TxBody,
}

impl Transaction {
    /// Signs the transaction with `key`, whose public half must be the signer's active key.
    pub fn sign(self, key: &SigningKey) -> SignedTransaction {
        let signature = key.sign(namespace::TRANSACTION, &encoding::encode(&self));
        SignedTransaction { tx: self, public_key: key.public_key(), signature }
    }
}

/// A transaction with its signature and the key that made it. The ledger checks that the key is
/// the signer's active key; the signature itself can be checked without any state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTransaction {
    /// The signed content.
    pub tx: Transaction,
    /// The key that signed it.
    pub public_key: PublicKey,
    /// Ed25519 over the namespaced canonical encoding of `tx`.
    pub signature: Signature,
}

impl SignedTransaction {
    /// Checks the signature (strict Ed25519). Says nothing about whether the key belongs to the
    /// signer: that needs ledger state.
    pub fn verify_signature(&self) -> Result<(), BadSignature> {
        self.public_key.verify(namespace::TRANSACTION, &encoding::encode(&self.tx), &self.signature)
    }

    /// [`SignedTransaction::verify_signature`] with the signing key already decompressed (for
    /// many transactions by one key). Fails if `verifier` is for another key.
    pub fn verify_signature_with(&self, verifier: &Verifier) -> Result<(), BadSignature> {
        if verifier.public_key() != self.public_key {
            return Err(BadSignature(self.public_key));
        }
        verifier.verify(namespace::TRANSACTION, &encoding::encode(&self.tx), &self.signature)
    }

    /// [`SignedTransaction::verify_signature`] for many transactions in one batch
    /// ([`crate::keys::verify_batch`]): `verdicts[i]` is exactly what `txs[i]` alone would get.
    pub fn verify_signatures(txs: &[&SignedTransaction]) -> Vec<bool> {
        let messages: Vec<Vec<u8>> = txs.iter().map(|t| encoding::encode(&t.tx)).collect();
        let items: Vec<_> = txs
            .iter()
            .zip(&messages)
            .map(|(t, m)| (t.public_key, namespace::TRANSACTION, &m[..], t.signature))
            .collect();
        crate::keys::verify_batch(&items)
    }

    /// The canonical encoding: what is stored, hashed into the Merkle log and sent.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Decodes a signed transaction, refusing oversize or non-canonical input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let tx: Self = encoding::decode("transaction", bytes, MAX_TX_BYTES)?;
        if tx.tx.chain_id.len() > MAX_CHAIN_ID_LEN {
            return Err(DecodeError::Malformed {
                what: "transaction",
                reason: format!("chain id longer than {MAX_CHAIN_ID_LEN} bytes"),
            });
        }
        Ok(tx)
    }

    /// The transaction's id: SHA-256 of its canonical encoding.
    pub fn hash(&self) -> Hash {
        Hash::of(&self.encode())
    }
}
