//! The client's errors: [`ClientError`], which every fallible call returns, aggregating one
//! typed error per area (the keystore, the HTTP transport, proofs, sealing, records, devices,
//! sealed blobs and case exports), each with enough context to act on. A caller that acts on
//! one area matches its variant (`ClientError::Http(HttpError::Refused { status, code, .. })`);
//! the messages are the same whichever way an error is reached.

use std::{io, path::PathBuf};

use medledger_api::ErrorCode;
use medledger_core::{
    Hash,
    block::Outcome,
    keys::{EncryptionKey, PublicKey},
};
use reqwest::StatusCode;

use crate::{cases::CaseFault, envelope::RecordFault, sealed_blob::SealedBlobError};

/// Everything that can go wrong in the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", "rename"...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// An argument was refused before anything was done.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which argument.
        what: &'static str,
        /// Why.
        reason: String,
    },

    /// The operating system's random source failed.
    #[error("the operating system's random source failed: {reason}")]
    Random {
        /// The error.
        reason: String,
    },

    /// The wallet file, its passphrase or a public identity card.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),

    /// The node: unreachable, refusing, or answering what the API does not promise.
    #[error(transparent)]
    Http(#[from] HttpError),

    /// What the node proves does not verify.
    #[error(transparent)]
    Proof(#[from] ProofError),

    /// Sealing to recipients, or wrapping and unwrapping keys.
    #[error(transparent)]
    Seal(#[from] SealError),

    /// Record metadata or a case's description or entry could not be sealed, or does not
    /// open.
    #[error(transparent)]
    SealedBlob(#[from] SealedBlobError),

    /// Record encryption, decryption, metadata or key shares.
    #[error(transparent)]
    Record(#[from] RecordError),

    /// A case export does not verify; the fault names the first problem.
    #[error("case export: {0}")]
    CaseExport(#[from] CaseFault),

    /// Device readings, thresholds or the gateway.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

impl ClientError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io { action, path: path.into(), source }
    }
}

/// The wallet file and its unlocking: creation, format, passphrase, tampering, locking, and
/// public identity cards.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// `Wallet::create` found a file where the new wallet was to go.
    #[error(
        "a wallet already exists at {}; refusing to overwrite it (move it away or choose another path)",
        path.display()
    )]
    WalletExists {
        /// Where.
        path: PathBuf,
    },

    /// A wallet file could not be parsed, or is of an unknown format or version.
    #[error("{} is not a usable medledger wallet: {reason}", path.display())]
    WalletFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The passphrase does not unlock the wallet.
    #[error("wrong passphrase for wallet {wallet:?}")]
    WrongPassphrase {
        /// The wallet's name.
        wallet: String,
    },

    /// The passphrase was right but the wallet's contents do not authenticate or do not agree
    /// with each other: the file was altered or corrupted.
    #[error(
        "the wallet file has been tampered with (or is corrupted): wallet {wallet:?}: {reason}; \
         nothing in it was used"
    )]
    WalletTampered {
        /// The wallet's name.
        wallet: String,
        /// What failed.
        reason: String,
    },

    /// The wallet file was replaced since this process unlocked it (a new passphrase, a
    /// rotated key, another wallet at its path): its state is not read into the unlocked one.
    #[error(
        "wallet {wallet:?} was changed since it was unlocked here (a new passphrase or key, or \
         another wallet at its path): unlock it again"
    )]
    WalletChanged {
        /// The wallet's name.
        wallet: String,
    },

    /// The wallet's state (node pin, last checkpoint) is authenticated under the passphrase,
    /// so it can be read or saved only once the wallet is unlocked.
    #[error("wallet {wallet:?} is locked: unlock it with its passphrase first")]
    WalletLocked {
        /// The wallet's name.
        wallet: String,
    },

    /// Argon2 key derivation failed (bad parameters).
    #[error("passphrase key derivation failed: {reason}")]
    Kdf {
        /// Argon2's complaint.
        reason: String,
    },

    /// A string is not a public identity card.
    #[error(
        "not a medledger public identity ({reason}): expected \
         mlid1:<64 hex signing key>:<64 hex encryption key>, got {input:?}"
    )]
    BadPublicIdentity {
        /// The input (shortened if long).
        input: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Talking to a node: a bad URL, no answer, a refusal (with the server's code), or an answer
/// that is not what the API promises.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A node URL is not usable.
    #[error("bad node URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why it is refused.
        reason: String,
    },

    /// No response from the node.
    #[error(
        "cannot reach the medledger node at {url}: {reason}. Is a node running there? \
         Start the node, or check the node URL"
    )]
    Unreachable {
        /// The URL requested.
        url: String,
        /// The connection error.
        reason: String,
    },

    /// The node answered with an error status. With `code == ErrorCode::Refused` and an
    /// `outcome` of status refused, the ledger itself refused the transaction.
    #[error("{}", refused_message(*status, code, message, outcome.as_ref()))]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's machine-readable code ([`ErrorCode::HttpError`] if the body was not an
        /// error body, [`ErrorCode::Unknown`] for a code from a newer node).
        code: ErrorCode,
        /// The server's message.
        message: String,
        /// For a transaction, its outcome when the ledger ordered or refused it.
        outcome: Option<Outcome>,
    },

    /// The node answered 2xx with a body that is not what the API promises.
    #[error("unexpected response from {url}: {reason}")]
    BadResponse {
        /// The URL requested.
        url: String,
        /// What is wrong with the response.
        reason: String,
    },
}

/// Checks of what the node proves: checkpoints, inclusion and consistency proofs, and the
/// keys the wallet encrypts to.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The node gave an encryption key for an account that the ledger does not prove: nothing
    /// may be wrapped or sealed to it.
    #[error(
        "refusing to use the encryption key the node gave for account {account}: {reason}. \
         Nothing was wrapped or sealed to it (the node, or something between it and this \
         wallet, may be substituting keys)"
    )]
    UnprovenKey {
        /// Whose key.
        account: medledger_core::ids::AccountId,
        /// What failed.
        reason: String,
    },

    /// A checkpoint is not signed by the trusted node key.
    #[error(
        "checkpoint is signed by {signer}, and does not verify under the trusted node key {trusted}"
    )]
    UntrustedCheckpoint {
        /// The key the checkpoint names.
        signer: PublicKey,
        /// The key the wallet trusts.
        trusted: PublicKey,
    },

    /// A transaction proof does not verify.
    #[error("proof of transaction {tx_hash} does not verify: {reason}")]
    InvalidProof {
        /// The transaction the proof is for (per its receipt).
        tx_hash: Hash,
        /// What failed.
        reason: String,
    },

    /// A newer checkpoint does not extend an older one.
    #[error(
        "INCONSISTENT LEDGER HISTORY: the node's history (log size {new_size}) does not extend \
         the history this wallet saw before (log size {old_size}): {reason}. This is a possible \
         fork or rewrite of the ledger; do not trust this node until it is explained"
    )]
    InconsistentCheckpoint {
        /// Log size of the checkpoint the wallet saw before.
        old_size: u64,
        /// Log size of the new checkpoint.
        new_size: u64,
        /// What failed.
        reason: String,
    },

    /// A checkpoint is signed by a node key whose admission by the regulator of the pinned
    /// network is not proven (or that the regulator removed): nothing it signed is trusted.
    #[error(
        "refusing checkpoints signed by node key {key}: {reason}. Only the genesis node's key \
         and keys the pinned network's regulator admitted are trusted"
    )]
    UnadmittedNode {
        /// The key that signed the checkpoint.
        key: PublicKey,
        /// What failed.
        reason: String,
    },

    /// Two admitted nodes (or one node at two times) signed checkpoints of histories that are
    /// not one history: one of them serves a forked or rewritten ledger.
    #[error("INCONSISTENT LEDGER HISTORY: {0}")]
    ForkedNode(Box<Disagreement>),
}

/// Two checkpoints that are not of one history: the node that served the new one and the one
/// whose checkpoint the wallet remembered, with what each signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    /// The node that served the new checkpoint.
    pub node: u64,
    /// Its key.
    pub key: PublicKey,
    /// Its checkpoint's height.
    pub height: u64,
    /// Its checkpoint's log size.
    pub log_size: u64,
    /// Its checkpoint's log root.
    pub log_root: Hash,
    /// The node whose checkpoint, remembered by the wallet, it disagrees with.
    pub seen_node: u64,
    /// That node's key.
    pub seen_key: PublicKey,
    /// The remembered checkpoint's height.
    pub seen_height: u64,
    /// The remembered checkpoint's log size.
    pub seen_log_size: u64,
    /// The remembered checkpoint's log root.
    pub seen_log_root: Hash,
    /// What failed.
    pub reason: String,
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self;
        write!(
            f,
            "node {} (key {}) serves a history that disagrees with the checkpoint of node {} \
             (key {}) this wallet saw before: node {} signed height {}, log size {}, root {}; \
             node {} signed height {}, log size {}, root {}: {}. One of them serves a forked or \
             rewritten ledger; do not trust node {} until it is explained, and keep this \
             wallet as evidence",
            d.node,
            d.key,
            d.seen_node,
            d.seen_key,
            d.node,
            d.height,
            d.log_size,
            d.log_root,
            d.seen_node,
            d.seen_height,
            d.seen_log_size,
            d.seen_log_root,
            d.reason,
            d.node
        )
    }
}

/// Sealing to recipients with HPKE and wrapping keys: details, record keys and key shares.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Details could not be sealed.
    #[error("cannot seal details: {reason}")]
    Details {
        /// Why.
        reason: String,
    },

    /// Bytes are not a well-formed sealed blob.
    #[error("malformed sealed blob: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },

    /// No recipient entry of a sealed blob opens with the given key.
    #[error(
        "cannot open sealed blob with the key for {recipient}: it is not sealed to this key, \
         or it was altered"
    )]
    NotARecipient {
        /// The public half of the key that was tried.
        recipient: EncryptionKey,
    },

    /// A record key or a custodian share could not be wrapped to a recipient.
    #[error("cannot wrap the key: {reason}")]
    KeyWrap {
        /// Why.
        reason: String,
    },

    /// A wrapped record key or custodian share does not open.
    #[error(
        "the wrapped key does not open with the key for {recipient}: it was wrapped to another \
         key or for another record, or it was altered"
    )]
    KeyUnwrap {
        /// The public half of the key that was tried.
        recipient: EncryptionKey,
    },
}

/// Record encryption and decryption, metadata, and key shares.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A record could not be encrypted.
    #[error("cannot encrypt the record: {reason}")]
    Encrypt {
        /// Why.
        reason: String,
    },

    /// A record's ciphertext does not decrypt: it is not a record, the key is not its data key,
    /// or it was altered, cut short or extended. Plaintext already written out must be
    /// discarded.
    #[error("cannot decrypt the record: {fault}")]
    Decrypt {
        /// What is wrong with the ciphertext.
        fault: RecordFault,
    },

    /// Reading the input or writing the output of record encryption or decryption failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done ("read the plaintext", "write the ciphertext"...).
        action: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// A record's metadata could not be sealed, or does not open.
    #[error("record metadata: {reason}")]
    Metadata {
        /// What is wrong.
        reason: String,
    },

    /// Key shares do not recombine into the record key.
    #[error("cannot recombine the record key: {reason}")]
    KeyShares {
        /// What is wrong with the shares.
        reason: String,
    },
}

/// Device readings, thresholds and the device gateway.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Device readings could not be sealed, or a sealed batch does not open or does not match
    /// its header.
    #[error("device readings: {reason}")]
    Readings {
        /// What is wrong.
        reason: String,
    },

    /// Thresholds are invalid, or sealed thresholds do not open or do not match the ledger.
    #[error("thresholds: {reason}")]
    Thresholds {
        /// What is wrong.
        reason: String,
    },

    /// A device gateway cannot go on: its device or session is not usable, or the ledger
    /// refused what it sent.
    #[error("device gateway: {reason}")]
    Gateway {
        /// What happened.
        reason: String,
    },
}

fn refused_message(
    status: u16,
    code: &ErrorCode,
    message: &str,
    outcome: Option<&Outcome>,
) -> String {
    match outcome {
        Some(Outcome::Refused { reason }) => {
            format!("the ledger refused the transaction: {reason} ({message})")
        }
        _ => format!("the node answered {status} ({code}): {message}"),
    }
}

impl HttpError {
    /// The refusal in an error answer: the server's [`medledger_api::ErrorBody`] (code,
    /// message, outcome), or, for a body that is not one, code `http_error` and the start of the
    /// body as the message. The one place the client reads the server's error codes.
    pub(crate) fn refusal(status: StatusCode, body: &[u8]) -> Self {
        match serde_json::from_slice::<medledger_api::ErrorBody>(body) {
            Ok(e) => HttpError::Refused {
                status: status.as_u16(),
                code: e.code,
                message: e.message,
                outcome: e.outcome,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let mut message: String = text.trim().chars().take(500).collect();
                if message.is_empty() {
                    message = status.canonical_reason().unwrap_or("no message").to_owned();
                }
                HttpError::Refused {
                    status: status.as_u16(),
                    code: ErrorCode::HttpError,
                    message,
                    outcome: None,
                }
            }
        }
    }
}
