//! Blocks, receipts, genesis and checkpoints (signed tree heads).
//!
//! A block orders a batch of transactions. Every transaction in a committed block is appended
//! to the Merkle log, whether the ledger applied or refused it: the log records what was
//! submitted and ordered, and each receipt records what it did.

use serde::{Deserialize, Serialize};

use crate::{
    Hash,
    encoding::{self, DecodeError},
    ids::{AccountId, PatientId},
    keys::{BadSignature, EncryptionKey, PublicKey, Signature, SigningKey, namespace},
    merkle::{self, Frontier},
    tx::SignedTransaction,
};

/// Most transactions in one block.
pub const MAX_BLOCK_TXS: usize = 8192;
/// Largest encoded block.
pub const MAX_BLOCK_BYTES: usize = MAX_BLOCK_TXS * crate::tx::MAX_TX_BYTES;

/// The network's first, unsigned statement: its chain id and the regulator's and first node's
/// keys. Its hash is the `prev_hash` of block 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Names the network; every transaction carries it.
    pub chain_id: String,
    /// Wall-clock time of creation, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The regulator's signing key.
    pub regulator_key: PublicKey,
    /// The regulator's encryption key.
    pub regulator_encryption_key: EncryptionKey,
    /// The key with which the first node signs checkpoints.
    pub node_key: PublicKey,
}

impl Genesis {
    /// The genesis hash.
    pub fn hash(&self) -> Hash {
        Hash::of_parts(&[b"medledger/v1/genesis", &encoding::encode(self)])
    }

    /// The regulator's account id.
    pub fn regulator(&self) -> AccountId {
        AccountId::from_initial_key(&self.regulator_key)
    }
}

/// A block header: everything a light client needs to chain blocks and check the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// 1 for the first block after genesis.
    pub height: u64,
    /// Hash of the previous header (of genesis for height 1).
    pub prev_hash: Hash,
    /// The proposer's clock, milliseconds since the Unix epoch; never earlier than the previous
    /// block's. Ledger time: expiries are decided by it.
    pub time_ms: u64,
    /// Number of transactions in the block.
    pub tx_count: u32,
    /// Merkle root (RFC 9162) over this block's transactions.
    pub tx_root: Hash,
    /// Size of the whole transaction log after this block.
    pub log_size: u64,
    /// Root of the whole transaction log after this block.
    pub log_root: Hash,
}

impl BlockHeader {
    /// The block's hash.
    pub fn hash(&self) -> Hash {
        Hash::of_parts(&[b"medledger/v1/block", &encoding::encode(self)])
    }
}

/// A header and its transactions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The transactions, in order.
    pub txs: Vec<SignedTransaction>,
}

/// Why a block is not a valid successor of a given tip.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    /// Wrong height.
    #[error("block height {got} does not follow {tip}")]
    Height {
        /// The tip's height.
        tip: u64,
        /// The block's height.
        got: u64,
    },
    /// Wrong previous hash.
    #[error(
        "block {height} does not chain to the previous block: prev_hash {got}, expected {expected}"
    )]
    PrevHash {
        /// Height of the offending block.
        height: u64,
        /// Expected previous hash.
        expected: Hash,
        /// Stated previous hash.
        got: Hash,
    },
    /// Time went backwards.
    #[error("block {height} time {got} ms is earlier than the previous block's {prev} ms")]
    Time {
        /// Height of the offending block.
        height: u64,
        /// Previous block time.
        prev: u64,
        /// This block's time.
        got: u64,
    },
    /// Header fields disagree with the transactions.
    #[error("block {height}: header {field} does not match its transactions")]
    Contents {
        /// Height of the offending block.
        height: u64,
        /// Which field.
        field: &'static str,
    },
    /// Its proposer's seal is not good for it (see the ledger's `judge_seal`).
    #[error("block {height}: {reason}")]
    Seal {
        /// Height of the offending block.
        height: u64,
        /// Why.
        reason: String,
    },
    /// Too many transactions.
    #[error("block {height} holds {count} transactions, more than {MAX_BLOCK_TXS}")]
    TooManyTxs {
        /// Height of the offending block.
        height: u64,
        /// How many.
        count: usize,
    },
}

/// The chain tip a block is checked against: the last header's height, hash and time, and the
/// log's frontier.
#[derive(Clone, Debug)]
pub struct Tip {
    /// Height of the last block (0 at genesis).
    pub height: u64,
    /// Hash of the last header (the genesis hash at genesis).
    pub hash: Hash,
    /// Time of the last block (genesis time at genesis).
    pub time_ms: u64,
    /// The log after the last block.
    pub log: Frontier,
}

impl Tip {
    /// The tip at genesis.
    pub fn genesis(genesis: &Genesis) -> Self {
        Tip { height: 0, hash: genesis.hash(), time_ms: genesis.time_ms, log: Frontier::new() }
    }

    /// Builds the next block from `txs` at `time_ms` (raised to the tip's time if earlier), and
    /// advances the tip past it. Used by the proposer.
    pub fn propose(&mut self, time_ms: u64, txs: Vec<SignedTransaction>) -> Block {
        let leaves: Vec<Hash> = txs.iter().map(|t| merkle::leaf_hash(&t.encode())).collect();
        let header = self.next_header(time_ms.max(self.time_ms), &leaves);
        self.advance(&header, &leaves);
        Block { header, txs }
    }

    fn next_header(&self, time_ms: u64, leaves: &[Hash]) -> BlockHeader {
        let mut block_tree = Frontier::new();
        let mut log = self.log.clone();
        for leaf in leaves {
            block_tree.push(*leaf);
            log.push(*leaf);
        }
        BlockHeader {
            height: self.height + 1,
            prev_hash: self.hash,
            time_ms,
            tx_count: u32::try_from(leaves.len()).unwrap_or(u32::MAX),
            tx_root: block_tree.root(),
            log_size: log.len(),
            log_root: log.root(),
        }
    }

    fn advance(&mut self, header: &BlockHeader, leaves: &[Hash]) {
        for leaf in leaves {
            self.log.push(*leaf);
        }
        self.height = header.height;
        self.hash = header.hash();
        self.time_ms = header.time_ms;
    }

    /// Checks that a block with header `h`, whose transactions hash to `leaves`, validly
    /// follows this tip, and if so advances past it. Changes nothing on error.
    pub fn check_and_advance(
        &mut self,
        h: &BlockHeader,
        leaves: &[Hash],
    ) -> Result<(), BlockError> {
        if leaves.len() > MAX_BLOCK_TXS {
            return Err(BlockError::TooManyTxs { height: h.height, count: leaves.len() });
        }
        if h.height != self.height + 1 {
            return Err(BlockError::Height { tip: self.height, got: h.height });
        }
        if h.prev_hash != self.hash {
            return Err(BlockError::PrevHash {
                height: h.height,
                expected: self.hash,
                got: h.prev_hash,
            });
        }
        if h.time_ms < self.time_ms {
            return Err(BlockError::Time { height: h.height, prev: self.time_ms, got: h.time_ms });
        }
        let expected = self.next_header(h.time_ms, leaves);
        for (field, ok) in [
            ("tx_count", expected.tx_count == h.tx_count),
            ("tx_root", expected.tx_root == h.tx_root),
            ("log_size", expected.log_size == h.log_size),
            ("log_root", expected.log_root == h.log_root),
        ] {
            if !ok {
                return Err(BlockError::Contents { height: h.height, field });
            }
        }
        self.advance(h, leaves);
        Ok(())
    }
}

impl Block {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }
    /// Decodes a block, refusing oversize or non-canonical input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        encoding::decode("block", bytes, MAX_BLOCK_BYTES)
    }
    /// The Merkle leaf hashes of the block's transactions, in order.
    pub fn leaf_hashes(&self) -> Vec<Hash> {
        self.txs.iter().map(|t| merkle::leaf_hash(&t.encode())).collect()
    }

    /// Whether the transactions are the ones the header commits to (their number and
    /// `tx_root`): only then does something checked of the transactions hold for every block
    /// with this header's hash.
    pub fn transactions_match_header(&self) -> bool {
        let mut tree = Frontier::new();
        for leaf in self.leaf_hashes() {
            tree.push(leaf);
        }
        u32::try_from(self.txs.len()).is_ok_and(|n| n == self.header.tx_count)
            && tree.root() == self.header.tx_root
    }
}

/// What applying a transaction did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The transaction's id.
    pub tx_hash: Hash,
    /// Block that holds it.
    pub height: u64,
    /// Its position in the Merkle log.
    pub log_index: u64,
    /// Applied, or refused with the reason.
    pub outcome: Outcome,
}

/// The result of one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The transaction changed the state.
    Applied {
        /// What it created, if anything a caller needs to know (a new account, a Patient-ID).
        created: Option<Created>,
    },
    /// The transaction was refused and changed nothing.
    Refused {
        /// Why.
        reason: Refusal,
    },
}

/// Something a transaction created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Created {
    /// A new account.
    Account {
        /// Its id.
        account: AccountId,
    },
    /// A registered patient.
    Patient {
        /// The patient's account.
        account: AccountId,
        /// The assigned Patient-ID.
        patient_id: PatientId,
    },
    /// A grant, access request or deny rule, named by the id of the transaction that made it.
    Consent {
        /// Its id.
        id: Hash,
    },
    /// An access was decided and recorded in the patient's audit trail.
    Access {
        /// The decision.
        decision: crate::tx::consent::Decision,
        /// The audit event's sequence number.
        event: u64,
    },
    /// A record token was minted.
    Record {
        /// Its PMR-ID.
        pmr: String,
    },
    /// A record was erased: the custodian deletes these blobs from its vault.
    Erased {
        /// Its PMR-ID.
        pmr: String,
        /// The ciphertext, metadata and wrapped-key blobs to destroy.
        blobs: Vec<Hash>,
    },
    /// A break-glass was declared.
    BreakGlass {
        /// Its id (the transaction's hash).
        id: Hash,
        /// When its window closes, block time.
        until_ms: u64,
    },
    /// A custodian's share release was decided (and recorded in the patient's trail).
    ShareRelease {
        /// The decision on the reader.
        decision: crate::tx::consent::Decision,
        /// The audit event's sequence number.
        event: u64,
    },
    /// A case was opened.
    Case {
        /// Its id.
        case: String,
        /// Its first head.
        head: Hash,
    },
    /// An entry was appended to the case its transaction names.
    CaseEntry {
        /// The entry's number in the case, from 1.
        seq: u64,
        /// The case's head after it.
        head: Hash,
    },
    /// The case its transaction names was sealed.
    CaseSealed {
        /// How many entries it holds.
        entries: u64,
        /// The sealed head.
        head: Hash,
    },
    /// A device measurement session started, named by the id of the transaction that started
    /// it.
    DeviceSession {
        /// Its id.
        id: Hash,
    },
    /// A device's thresholds were set, named by the id of the transaction that set them.
    Thresholds {
        /// Their id.
        id: Hash,
    },
    /// A device alert was committed and its audit event (which notifies the patient, the
    /// responsible doctors and their hospitals) recorded.
    DeviceAlert {
        /// The audit event's sequence number.
        event: u64,
    },
    /// A node was admitted to the network.
    Node {
        /// The id the ledger assigned it (2, 3, ...; the genesis node is 1).
        id: u64,
    },
    /// A research export was allowed and recorded in the patient's audit trail (appended
    /// last, keeping earlier tags).
    ResearchExport {
        /// The audit event's sequence number.
        event: u64,
    },
}

/// Why a transaction was refused. Every refusal changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The transaction names another network.
    #[error("wrong chain id: this network is {expected:?}, the transaction is for {got:?}")]
    WrongChain {
        /// This network's chain id.
        expected: String,
        /// The transaction's.
        got: String,
    },
    /// The signer has no account.
    #[error("unknown signer {signer}")]
    UnknownSigner {
        /// The signer.
        signer: AccountId,
    },
    /// The signing key is not the signer's active key (revoked, rotated away, or foreign).
    #[error("key {key} is not the active key of {signer}")]
    KeyNotActive {
        /// The signer.
        signer: AccountId,
        /// The key used.
        key: PublicKey,
    },
    /// The nonce was used already (a replay or a duplicate).
    #[error("replayed nonce {got}: the last nonce of this signer was {last}")]
    StaleNonce {
        /// The signer's last committed nonce.
        last: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// This exact transaction is already in the log.
    #[error("duplicate: this transaction is already in the log at index {log_index}")]
    Duplicate {
        /// Where the first copy is.
        log_index: u64,
    },
    /// The signer may not do this.
    #[error("unauthorised: {reason}")]
    Unauthorised {
        /// What authority was missing.
        reason: String,
    },
    /// The signer, or the account it acts for, is suspended.
    #[error("suspended: {account}")]
    Suspended {
        /// The suspended account.
        account: AccountId,
    },
    /// Something named does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What.
        what: String,
    },
    /// It exists already.
    #[error("already exists: {what}")]
    AlreadyExists {
        /// What.
        what: String,
    },
    /// The body is invalid (a field too long or empty).
    #[error("invalid: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// The case is sealed: nothing can be appended to it, nor can it be sealed again.
    #[error(
        "case {case} was sealed at block {height}: nothing can be added to it; a correction goes in a follow-up case"
    )]
    CaseSealed {
        /// The case.
        case: String,
        /// Height of the seal.
        height: u64,
    },
    /// The transaction names a head that is no longer the case's head: another entry was
    /// appended since its author looked.
    #[error(
        "stale head: case {case} is at head {head}, not at the head the transaction names; read the case again"
    )]
    StaleHead {
        /// The case.
        case: String,
        /// Its current head.
        head: Hash,
    },
    /// Device readings whose sequence numbers were committed already (a replay, or a reading
    /// older than the last committed batch).
    #[error(
        "replayed reading: sequence {got} of session {session} is already committed (the last committed batch ends at {last})"
    )]
    ReplayedReading {
        /// The session.
        session: Hash,
        /// The end of the session's last committed batch.
        last: u64,
        /// The offending sequence number (the first of a batch).
        got: u64,
    },
    /// A device session that no longer takes readings (ended or expired), or a retired device.
    #[error("session {session} is not open: {reason}")]
    SessionNotOpen {
        /// The session.
        session: Hash,
        /// Ended, expired, or the device retired, and when.
        reason: String,
    },
}

/// A signed tree head: a node's statement that the log had this size and root at this height.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The network.
    pub chain_id: String,
    /// Block height.
    pub height: u64,
    /// Block time.
    pub time_ms: u64,
    /// Log size.
    pub log_size: u64,
    /// Log root.
    pub log_root: Hash,
}

/// A checkpoint and a node's signature over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// The statement.
    pub checkpoint: Checkpoint,
    /// The node key that signed it.
    pub signer: PublicKey,
    /// Signature in the checkpoint namespace.
    pub signature: Signature,
}

impl Checkpoint {
    /// Signs the checkpoint with a node key.
    pub fn sign(self, key: &SigningKey) -> SignedCheckpoint {
        let signature = key.sign(namespace::CHECKPOINT, &encoding::encode(&self));
        SignedCheckpoint { checkpoint: self, signer: key.public_key(), signature }
    }
}

impl SignedCheckpoint {
    /// Checks the signature, and that it was made by `trusted`.
    pub fn verify(&self, trusted: &PublicKey) -> Result<(), BadSignature> {
        if &self.signer != trusted {
            return Err(BadSignature(self.signer));
        }
        self.signer.verify(
            namespace::CHECKPOINT,
            &encoding::encode(&self.checkpoint),
            &self.signature,
        )
    }
}
