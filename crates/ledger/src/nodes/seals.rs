//! Block seals as the ledger keeps them: the proposing node's signature on each block
//! ([`medledger_core::seal`]) is stored with the block (`seals`, by height), so that every
//! block a ledger holds stays attributable to the node that proposed it: after a restart, in
//! a snapshot sent to another node, and to `medledger verify`.
//!
//! One rule judges a seal, wherever it is met ([`judge_seal`]): as a log entry
//! (`raft::blocks::check` in the node), when the block is applied, in a snapshot's replay, and
//! in `verify`'s replay. It is judged against the nodes the ledger had admitted *before* the
//! block: the proposer must be one of them, its key must have made the seal, and it must have
//! been active (a suspended or removed node's blocks are never applied); and its Raft term may
//! not be earlier than the term of the block before it (Raft orders entries by term, and a
//! block is applied only in the term it was sealed for), so that two sealed blocks for one
//! height in one term stay the proof of an equivocation.

use medledger_core::{
    block::BlockHeader,
    encoding,
    seal::{BlockSeal, SealedBlock},
};
use redb::ReadableDatabase;

use crate::{
    Ledger, LedgerError,
    state::{NodeEntry, NodeStatus, SEALS, decode_entry},
};

/// Why a seal is not good for its block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealFault {
    /// The seal names a node the ledger never admitted.
    #[error("it is sealed by node {0}, which the ledger never admitted")]
    Unknown(u64),
    /// The named node's key did not make the seal (over this chain, term and header).
    #[error("its seal does not verify under node {proposer}'s key {key}")]
    BadSignature {
        /// The node the seal names.
        proposer: u64,
        /// That node's key.
        key: medledger_core::keys::PublicKey,
    },
    /// The named node was suspended or removed before the block: its blocks are not applied.
    #[error("its proposer node {proposer} is {}", status.name())]
    Inactive {
        /// The node the seal names.
        proposer: u64,
        /// Where it stood.
        status: NodeStatus,
    },
    /// Sealed for a Raft term earlier than the block before it.
    #[error(
        "it is sealed for Raft term {term}, earlier than the term {previous} of the block before it"
    )]
    TermBack {
        /// The seal's term.
        term: u64,
        /// The term of the seal of the block before it.
        previous: u64,
    },
}

/// Judges `seal` on `header` in `chain_id`, where `node(id)` is node `id` as the ledger knew it
/// before the block and `previous_term` the term of the stored seal of the block before it (if
/// that block has one). The proposer's entry when the seal is good.
pub fn judge_seal(
    chain_id: &str,
    header: &BlockHeader,
    seal: &BlockSeal,
    previous_term: Option<u64>,
    node: impl FnOnce(u64) -> Result<Option<NodeEntry>, LedgerError>,
) -> Result<Result<NodeEntry, SealFault>, LedgerError> {
    let Some(proposer) = node(seal.proposer)? else {
        return Ok(Err(SealFault::Unknown(seal.proposer)));
    };
    if seal.verify(chain_id, header, &proposer.node_key).is_err() {
        return Ok(Err(SealFault::BadSignature {
            proposer: seal.proposer,
            key: proposer.node_key,
        }));
    }
    if proposer.status != NodeStatus::Active {
        return Ok(Err(SealFault::Inactive { proposer: seal.proposer, status: proposer.status }));
    }
    if let Some(previous) = previous_term
        && seal.term < previous
    {
        return Ok(Err(SealFault::TermBack { term: seal.term, previous }));
    }
    Ok(Ok(proposer))
}

/// Largest stored seal.
pub(crate) const MAX_SEAL_BYTES: usize = 256;

/// Decodes a stored seal.
pub(crate) fn decode_seal(bytes: &[u8]) -> Result<BlockSeal, LedgerError> {
    decode_entry("block seal", bytes)
}

/// The term of the seal stored for the block at `height`, if it has one.
pub(crate) fn stored_term(
    seals: &impl redb::ReadableTable<u64, &'static [u8]>,
    height: u64,
) -> Result<Option<u64>, LedgerError> {
    seals.get(height)?.map(|v| decode_seal(v.value()).map(|s| s.term)).transpose()
}

/// Encodes a seal as stored.
pub(crate) fn encode_seal(seal: &BlockSeal) -> Vec<u8> {
    encoding::encode(seal)
}

impl Ledger {
    /// [`Ledger::apply_block`] for a block that came sealed (a Raft entry): the seal, which
    /// the caller has judged ([`judge_seal`]), is stored with the block.
    pub fn apply_sealed_block(
        &self,
        sealed: &SealedBlock,
        signature_ok: &[bool],
        marker: &[u8],
    ) -> Result<Vec<medledger_core::block::Receipt>, LedgerError> {
        self.apply_block_with_seal(&sealed.block, Some(&sealed.seal), signature_ok, marker)
    }

    /// The seal stored with the block at `height`: `None` for a height not applied, or a
    /// block applied without one (outside a network: tests, tools).
    pub fn seal(&self, height: u64) -> Result<Option<BlockSeal>, LedgerError> {
        let read = self.db.begin_read()?;
        let seals = match read.open_table(SEALS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        seals.get(height)?.map(|v| decode_seal(v.value())).transpose()
    }
}

#[cfg(test)]
mod tests {
    //! The rule itself, for every standing a proposer may have.

    use medledger_core::{Hash, keys::SigningKey};

    use super::*;

    fn header() -> BlockHeader {
        BlockHeader {
            height: 7,
            prev_hash: Hash::of(b"block 6"),
            time_ms: 70,
            tx_count: 0,
            tx_root: Hash::of(b"none"),
            log_size: 12,
            log_root: Hash::of(b"log"),
        }
    }

    fn node(key: &SigningKey, status: NodeStatus) -> NodeEntry {
        NodeEntry {
            id: 2,
            node_key: key.public_key(),
            address: "http://127.0.0.2:7301".into(),
            hospital: None,
            status,
            admitted_at: 3,
        }
    }

    fn judge(
        seal: &BlockSeal,
        previous: Option<u64>,
        entry: Option<NodeEntry>,
    ) -> Result<NodeEntry, SealFault> {
        judge_seal("seal-test", &header(), seal, previous, |id| {
            assert_eq!(id, seal.proposer);
            Ok(entry)
        })
        .unwrap()
    }

    #[test]
    fn a_seal_is_good_only_from_an_admitted_active_node_in_a_term_that_does_not_go_back() {
        let key = SigningKey::generate();
        let seal = BlockSeal::sign("seal-test", 2, 5, &header(), &key);
        let active = node(&key, NodeStatus::Active);
        assert_eq!(judge(&seal, None, Some(active.clone())), Ok(active.clone()));
        assert_eq!(judge(&seal, Some(5), Some(active.clone())), Ok(active.clone()));
        assert_eq!(judge(&seal, None, None), Err(SealFault::Unknown(2)));
        let other = node(&SigningKey::generate(), NodeStatus::Active);
        assert!(matches!(judge(&seal, None, Some(other)), Err(SealFault::BadSignature { .. })));
        let elsewhere = BlockSeal::sign("another-chain", 2, 5, &header(), &key);
        assert!(matches!(
            judge(&elsewhere, None, Some(active.clone())),
            Err(SealFault::BadSignature { .. })
        ));
        for status in [NodeStatus::Suspended, NodeStatus::Removed] {
            assert_eq!(
                judge(&seal, None, Some(node(&key, status))),
                Err(SealFault::Inactive { proposer: 2, status })
            );
        }
        assert_eq!(
            judge(&seal, Some(6), Some(active)),
            Err(SealFault::TermBack { term: 5, previous: 6 })
        );
        let removed = SealFault::Inactive { proposer: 2, status: NodeStatus::Removed };
        assert_eq!(removed.to_string(), "its proposer node 2 is removed");
    }
}
