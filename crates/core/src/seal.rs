//! Leader seals: the Raft leader signs every block it proposes with its node key, over the
//! chain id, its Raft term and the block's header hash. Every node checks the seal before it
//! applies a block, so each block in the Raft log is attributable to the node that proposed
//! it; and two sealed headers that one proposer signed for one height, one predecessor and
//! one term, yet differ, prove that the proposer equivocated ([`Equivocation`]). (An honest
//! leader signs at most one block per height and predecessor in a term: it builds each block
//! on the one before it, and after a block was skipped it rebuilds on what was applied.)

use serde::{Deserialize, Serialize};

use crate::{
    Hash,
    block::{Block, BlockHeader},
    encoding::{self, DecodeError},
    keys::{BadSignature, PublicKey, Signature, SigningKey, namespace},
};

/// The proposer's signature on a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSeal {
    /// The proposing node's id (its admission on the ledger; 1 is the genesis node).
    pub proposer: u64,
    /// The Raft term in which it proposed the block.
    pub term: u64,
    /// Its node key's signature in [`namespace::BLOCK_SEAL`] over [`SealStatement`].
    pub signature: Signature,
}

/// What a seal signs.
#[derive(Serialize)]
struct SealStatement<'a> {
    chain_id: &'a str,
    proposer: u64,
    term: u64,
    header: Hash,
}

fn statement(chain_id: &str, proposer: u64, term: u64, header: &BlockHeader) -> Vec<u8> {
    encoding::encode(&SealStatement { chain_id, proposer, term, header: header.hash() })
}

impl BlockSeal {
    /// `key`'s seal, as node `proposer` in `term`, on `header`.
    pub fn sign(
        chain_id: &str,
        proposer: u64,
        term: u64,
        header: &BlockHeader,
        key: &SigningKey,
    ) -> Self {
        let signature =
            key.sign(namespace::BLOCK_SEAL, &statement(chain_id, proposer, term, header));
        BlockSeal { proposer, term, signature }
    }

    /// Checks that `key` made this seal on `header` in `chain_id`.
    pub fn verify(
        &self,
        chain_id: &str,
        header: &BlockHeader,
        key: &PublicKey,
    ) -> Result<(), BadSignature> {
        key.verify(
            namespace::BLOCK_SEAL,
            &statement(chain_id, self.proposer, self.term, header),
            &self.signature,
        )
    }
}

/// A block and its proposer's seal: what a Raft entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBlock {
    /// The block.
    pub block: Block,
    /// The proposer's seal on its header.
    pub seal: BlockSeal,
}

impl SealedBlock {
    /// Seals `block` as node `proposer` in `term`.
    pub fn seal(block: Block, chain_id: &str, proposer: u64, term: u64, key: &SigningKey) -> Self {
        let seal = BlockSeal::sign(chain_id, proposer, term, &block.header, key);
        SealedBlock { block, seal }
    }

    /// The header and seal alone: what an equivocation is proven with.
    pub fn sealed_header(&self) -> SealedHeader {
        SealedHeader { header: self.block.header, seal: self.seal }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Decodes a sealed block, refusing oversize or non-canonical input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        encoding::decode("sealed block", bytes, crate::block::MAX_BLOCK_BYTES + 1024)
    }
}

/// A block header and its proposer's seal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedHeader {
    /// The header.
    pub header: BlockHeader,
    /// The seal on it.
    pub seal: BlockSeal,
}

/// Two sealed headers offered as proof that a proposer signed two different blocks for one
/// height, one predecessor and one term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    /// One header.
    pub a: SealedHeader,
    /// The other.
    pub b: SealedHeader,
}

/// Why two sealed headers do not prove an equivocation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotEquivocation {
    /// The two are the same block.
    #[error("the two headers are the same block")]
    SameBlock,
    /// They differ in proposer, term, height or predecessor: an honest node can sign both.
    #[error("the two headers differ in {0}, which an honest proposer may do")]
    Differ(&'static str),
    /// A seal does not verify under the key given.
    #[error("a seal does not verify: {0}")]
    BadSeal(#[from] BadSignature),
}

impl Equivocation {
    /// Checks that `key` (node `a.seal.proposer`'s key on `chain_id`) sealed both headers and
    /// that they prove an equivocation.
    pub fn check(&self, chain_id: &str, key: &PublicKey) -> Result<(), NotEquivocation> {
        let (a, b) = (&self.a, &self.b);
        if a.header.hash() == b.header.hash() {
            return Err(NotEquivocation::SameBlock);
        }
        for (field, same) in [
            ("proposer", a.seal.proposer == b.seal.proposer),
            ("term", a.seal.term == b.seal.term),
            ("height", a.header.height == b.header.height),
            ("previous block", a.header.prev_hash == b.header.prev_hash),
        ] {
            if !same {
                return Err(NotEquivocation::Differ(field));
            }
        }
        a.seal.verify(chain_id, &a.header, key)?;
        b.seal.verify(chain_id, &b.header, key)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        block::{Genesis, Tip},
        keys::DecryptionKey,
    };

    fn genesis(node: &SigningKey) -> Genesis {
        Genesis {
            chain_id: "seal-test".into(),
            time_ms: 1,
            regulator_key: SigningKey::generate().public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: node.public_key(),
        }
    }

    #[test]
    fn a_seal_verifies_only_for_its_chain_proposer_term_header_and_key() {
        let key = SigningKey::generate();
        let g = genesis(&key);
        let block = Tip::genesis(&g).propose(5, Vec::new());
        let sealed = SealedBlock::seal(block.clone(), &g.chain_id, 1, 7, &key);
        let header = sealed.block.header;
        assert_eq!(sealed.seal.verify("seal-test", &header, &key.public_key()), Ok(()));
        assert_eq!(SealedBlock::decode(&sealed.encode()).unwrap(), sealed);

        let other_key = SigningKey::generate().public_key();
        assert!(sealed.seal.verify("seal-test", &header, &other_key).is_err(), "another key");
        assert!(sealed.seal.verify("other-chain", &header, &key.public_key()).is_err(), "chain");
        let mut other = header;
        other.time_ms += 1;
        assert!(sealed.seal.verify("seal-test", &other, &key.public_key()).is_err(), "header");
        for seal in [BlockSeal { proposer: 2, ..sealed.seal }, BlockSeal { term: 8, ..sealed.seal }]
        {
            assert!(seal.verify("seal-test", &header, &key.public_key()).is_err(), "{seal:?}");
        }
    }

    #[test]
    fn two_blocks_sealed_for_one_height_predecessor_and_term_prove_an_equivocation() {
        let key = SigningKey::generate();
        let g = genesis(&key);
        let tip = Tip::genesis(&g);
        let seal = |time: u64, term: u64, proposer: u64, k: &SigningKey| {
            SealedBlock::seal(tip.clone().propose(time, Vec::new()), "seal-test", proposer, term, k)
                .sealed_header()
        };
        let pk = key.public_key();
        let proof = Equivocation { a: seal(5, 3, 1, &key), b: seal(6, 3, 1, &key) };
        assert_eq!(proof.check("seal-test", &pk), Ok(()));

        // What an honest proposer may sign, or what does not prove anything.
        let same = Equivocation { a: seal(5, 3, 1, &key), b: seal(5, 3, 1, &key) };
        assert_eq!(same.check("seal-test", &pk), Err(NotEquivocation::SameBlock));
        let terms = Equivocation { a: seal(5, 3, 1, &key), b: seal(6, 4, 1, &key) };
        assert_eq!(terms.check("seal-test", &pk), Err(NotEquivocation::Differ("term")));
        let proposers = Equivocation { a: seal(5, 3, 1, &key), b: seal(6, 3, 2, &key) };
        assert_eq!(proposers.check("seal-test", &pk), Err(NotEquivocation::Differ("proposer")));
        let mut next = tip.clone();
        next.propose(5, Vec::new());
        let later = SealedBlock::seal(next.propose(6, Vec::new()), "seal-test", 1, 3, &key);
        let heights = Equivocation { a: seal(5, 3, 1, &key), b: later.sealed_header() };
        assert_eq!(heights.check("seal-test", &pk), Err(NotEquivocation::Differ("height")));
        let mut elsewhere = tip.clone();
        elsewhere.hash = Hash::of(b"another predecessor");
        let fork = SealedBlock::seal(elsewhere.propose(6, Vec::new()), "seal-test", 1, 3, &key);
        let preds = Equivocation { a: seal(5, 3, 1, &key), b: fork.sealed_header() };
        assert_eq!(preds.check("seal-test", &pk), Err(NotEquivocation::Differ("previous block")));
        // Signed by someone else: not the proposer's doing.
        let forged =
            Equivocation { a: seal(5, 3, 1, &key), b: seal(6, 3, 1, &SigningKey::generate()) };
        assert!(matches!(forged.check("seal-test", &pk), Err(NotEquivocation::BadSeal(_))));
    }
}
