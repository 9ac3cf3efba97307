//! medledger client SDK and wallet: an encrypted keystore, sealing of personal details,
//! record encryption and key splitting, transaction building, an HTTP client for the node API,
//! and offline verification of the node's proofs. Secrets stay in this process: they are
//! encrypted at rest, zeroised in memory and never printed.
#![warn(missing_docs)]

pub mod cases;
pub mod checkpoints;
pub mod devices;
pub mod emergency;
pub mod envelope;
pub mod error;
pub mod fs;
pub mod gateway;
pub mod http;
pub mod keystore;
pub mod nodes;
pub mod pinning;
pub mod proof;
mod rand;
pub mod records;
pub mod seal;
pub mod sealed_blob;
pub mod sharing;
pub mod tx;

pub use error::{
    ClientError, DeviceError, HttpError, KeystoreError, ProofError, RecordError, SealError,
};
pub use http::{NodeClient, Signer};
pub use keystore::{Identity, KdfParams, Wallet, parse_public_identity};
