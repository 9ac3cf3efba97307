//! Building signed transactions from an unlocked identity.

use medledger_core::{
    ids::AccountId,
    tx::{SignedTransaction, Transaction, TxBody},
};

use crate::keystore::Identity;

/// Builds and signs a transaction: `signer` is the account (from the wallet, stable across key
/// rotation), `nonce` must exceed the account's last committed nonce, and the identity's
/// current signing key must be the account's active key for the ledger to apply it.
pub fn build(
    identity: &Identity,
    signer: AccountId,
    chain_id: &str,
    nonce: u64,
    body: TxBody,
) -> SignedTransaction {
    Transaction { chain_id: chain_id.to_owned(), signer, nonce, body }.sign(&identity.signing)
}

#[cfg(test)]
mod tests {
    use medledger_core::tx::RegistryTx;

    use super::*;

    #[test]
    fn builds_a_verifiable_transaction() {
        let id = Identity::generate("alice");
        let new_key = medledger_core::keys::SigningKey::generate().public_key();
        let body = TxBody::Registry(RegistryTx::RotateKey { new_key });
        let tx = build(&id, id.initial_account(), "medledger-test", 5, body.clone());
        tx.verify_signature().unwrap();
        assert_eq!(tx.public_key, id.signing.public_key());
        assert_eq!(tx.tx.signer, id.initial_account());
        assert_eq!(tx.tx.chain_id, "medledger-test");
        assert_eq!(tx.tx.nonce, 5);
        assert_eq!(tx.tx.body, body);
        assert_eq!(SignedTransaction::decode(&tx.encode()).unwrap(), tx);
    }
}
