//! The simulation's invariants, checked on each running node's ledger after every step:
//! no two nodes hold different blocks at one height, and every acknowledged transaction is in
//! the ledger of every node that has reached the height its receipt names.

use std::collections::BTreeMap;

use medledger_core::{Hash, block::Receipt};
use medledger_ledger::Ledger;

/// The block hash first seen at each height, and the node it was seen on. A block seen once
/// stays the only block allowed at its height for the rest of the run, even after the node it
/// was seen on crashed.
#[derive(Debug, Default)]
pub(super) struct Heights(BTreeMap<u64, (u64, Hash)>);

/// How far a node's ledger was checked: the height and the block hash there. Blocks are
/// chained by hash, so while the node still holds that block there, nothing below it changed
/// and the next check starts above it.
pub(super) type Checked = Option<(u64, Hash)>;

/// Checks node `node`'s `ledger` against the blocks seen so far and the receipts `acked`
/// (above `checked`, when the node still holds the block checked last; from height 1 when
/// `checked` is `None`); returns each violation in a sentence (empty: all holds) and how far
/// it checked. Blocks it holds at heights not seen before are recorded.
pub(super) fn check_node(
    seen: &mut Heights,
    node: u64,
    ledger: &Ledger,
    acked: &[Receipt],
    checked: Checked,
) -> (Vec<String>, Checked) {
    let mut violations = Vec::new();
    let tip = ledger.tip();
    let still = |(height, hash): (u64, Hash)| matches!(ledger.header(height), Ok(Some(h)) if h.hash() == hash);
    let from = checked.filter(|c| c.0 <= tip.height && still(*c)).map_or(0, |c| c.0);
    let tip = tip.height;
    for height in from + 1..=tip {
        let header = match ledger.header(height) {
            Ok(Some(h)) => h,
            Ok(None) => {
                violations
                    .push(format!("node {node}: no block at height {height} below its tip {tip}"));
                continue;
            }
            Err(e) => {
                violations.push(format!("node {node}: reading block {height}: {e}"));
                continue;
            }
        };
        let hash = header.hash();
        match seen.0.get(&height) {
            Some((first, h)) if *h != hash => violations.push(format!(
                "node {node} holds block {hash} at height {height}, node {first} held block {h}: two nodes committed different blocks at one height"
            )),
            Some(_) => {}
            None => {
                seen.0.insert(height, (node, hash));
            }
        }
    }
    for receipt in acked.iter().filter(|r| r.height > from && r.height <= tip) {
        match ledger.transaction(&receipt.tx_hash) {
            Ok(Some(record)) if record.receipt == *receipt => {}
            Ok(Some(record)) => violations.push(format!(
                "node {node}: acknowledged transaction {} is at height {} with outcome {:?}, but its receipt said height {} with {:?}",
                receipt.tx_hash, record.receipt.height, record.receipt.outcome, receipt.height, receipt.outcome
            )),
            Ok(None) => violations.push(format!(
                "node {node} is at height {tip} but lost acknowledged transaction {} (committed at height {})",
                receipt.tx_hash, receipt.height
            )),
            Err(e) => violations.push(format!("node {node}: looking up {}: {e}", receipt.tx_hash)),
        }
    }
    let reached = match ledger.header(tip) {
        Ok(Some(h)) if violations.is_empty() && tip > 0 => Some((tip, h.hash())),
        _ => None,
    };
    (violations, reached)
}

#[cfg(test)]
mod tests {
    use medledger_core::{
        block::{Genesis, Tip},
        ids::AccountId,
        keys::{DecryptionKey, SigningKey},
        tx::{AdmitHospital, RegistryTx, SealedRef, SignedTransaction, Transaction, TxBody},
    };

    use super::*;

    fn admission(genesis: &Genesis, regulator: &SigningKey, name: &str) -> SignedTransaction {
        Transaction {
            chain_id: genesis.chain_id.clone(),
            signer: AccountId::from_initial_key(&regulator.public_key()),
            nonce: 1,
            body: TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
                key: SigningKey::generate().public_key(),
                encryption_key: DecryptionKey::generate().public_key(),
                registration_id: format!("GOV-{name}"),
                name: name.into(),
                city: "Leeds".into(),
                specialisation: "general".into(),
                contact: SealedRef { blob: Hash::of(name.as_bytes()), commitment: Hash::of(b"c") },
            })),
        }
        .sign(regulator)
    }

    /// Two ledgers of one network whose block 1 differs (each holds another admission), and
    /// the receipt ledger `a` gave for its block.
    fn forked() -> (Ledger, Ledger, Vec<Receipt>) {
        let regulator = SigningKey::generate();
        let genesis = Genesis {
            chain_id: "sim-check".into(),
            time_ms: 1,
            regulator_key: regulator.public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: SigningKey::generate().public_key(),
        };
        let a = Ledger::in_memory(genesis.clone()).unwrap();
        let b = Ledger::in_memory(genesis.clone()).unwrap();
        let block =
            |name| Tip::genesis(&genesis).propose(2, vec![admission(&genesis, &regulator, name)]);
        let receipts = a.apply_block(&block("A"), &[true], b"").unwrap();
        b.apply_block(&block("B"), &[true], b"").unwrap();
        (a, b, receipts)
    }

    /// The checker reports two nodes holding different blocks at one height (from height 1,
    /// and when the block it checked last on a node is no longer there), and an acknowledged
    /// transaction missing from a node that has reached its height: a checker that always
    /// passed would fail this test.
    #[test]
    fn a_fork_and_a_lost_acknowledged_transaction_are_reported() {
        let (a, b, acked) = forked();
        let mut seen = Heights::default();
        let (found, checked_a) = check_node(&mut seen, 1, &a, &acked, None);
        assert_eq!(found, Vec::<String>::new());
        assert_eq!(checked_a, Some((1, a.header(1).unwrap().unwrap().hash())));

        // Node 2 holds another block at height 1: a fork, and node 1's receipt is not there.
        let (found, checked_b) = check_node(&mut seen, 2, &b, &acked, None);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("two nodes committed different blocks at one height"),
            "{found:?}"
        );
        assert!(found[1].contains("lost acknowledged transaction"), "{found:?}");
        assert_eq!(checked_b, None, "a node with a violation is checked from height 1 again");

        // The lost transaction alone (no block seen before on any node) is reported too.
        let (found, _) = check_node(&mut Heights::default(), 2, &b, &acked, None);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("lost acknowledged transaction"), "{found:?}");

        // A node checked up to a block it no longer holds is checked again from height 1.
        let mut seen = Heights::default();
        check_node(&mut seen, 1, &a, &[], None);
        let (found, _) = check_node(&mut seen, 2, &b, &[], checked_a);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("different blocks"), "{found:?}");

        // A node behind a receipt's height is not yet expected to hold it.
        let behind = Ledger::in_memory(a.genesis().clone()).unwrap();
        let (found, _) = check_node(&mut Heights::default(), 3, &behind, &acked, None);
        assert_eq!(found, Vec::<String>::new());
    }
}
