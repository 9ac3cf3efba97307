//! medledger core: the types every other crate shares (identities, keys, transactions, blocks,
//! receipts), their one canonical encoding, signatures with a namespace per message kind, and
//! the RFC 9162 Merkle log math. No I/O, no async, no clock: everything here is a pure function
//! of its inputs, so that every node computes the same bytes and hashes.
#![warn(missing_docs)]

pub mod audit;
pub mod block;
pub mod cid;
pub mod encoding;
pub mod hash;
pub mod ids;
pub mod keys;
pub mod merkle;
pub mod request;
pub mod seal;
pub mod tx;

pub use cid::Cid;
pub use hash::Hash;
