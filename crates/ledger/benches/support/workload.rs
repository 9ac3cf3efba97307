//! The registry workload of the ledger's benchmarks and examples: hospitals admitted, then
//! blocks of patient registrations from many hospitals (included with `#[path]`; in a folder
//! of its own so that cargo does not take it for a benchmark).

use medledger_core::{
    Hash,
    block::{Block, Genesis, Tip},
    ids::AccountId,
    keys::{DecryptionKey, SigningKey},
    seal::SealedBlock,
    tx::{
        AdmitHospital, RegisterPatient, RegistryTx, SealedRef, SignedTransaction, Transaction,
        TxBody,
    },
};
use medledger_ledger::Ledger;

/// Transactions per block.
pub const BLOCK: usize = 1024;
const HOSPITALS: usize = 64;

/// Sealed details with a blob of their own (each blob belongs to one owner: the ledger
/// refuses a registration naming another's).
fn sealed() -> SealedRef {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    SealedRef { blob: Hash::of(&n.to_be_bytes()), commitment: Hash::of(b"c") }
}

fn tx(key: &SigningKey, nonce: u64, body: RegistryTx) -> SignedTransaction {
    Transaction {
        chain_id: "bench".into(),
        signer: AccountId::from_initial_key(&key.public_key()),
        nonce,
        body: TxBody::Registry(body),
    }
    .sign(key)
}

/// The workload's genesis.
pub fn genesis() -> Genesis {
    let regulator = SigningKey::from_seed([1; 32]);
    Genesis {
        chain_id: "bench".into(),
        time_ms: 0,
        regulator_key: regulator.public_key(),
        regulator_encryption_key: DecryptionKey::from_bytes([2; 32]).public_key(),
        node_key: node_key().public_key(),
    }
}

/// The genesis node's key: it seals every block of the workload, as a network's leader does.
fn node_key() -> SigningKey {
    SigningKey::from_seed([3; 32])
}

/// `block` sealed by the genesis node (node 1), in term 1: a block as a network applies it,
/// which a snapshot may carry.
pub fn seal(block: &Block) -> SealedBlock {
    SealedBlock::seal(block.clone(), "bench", 1, 1, &node_key())
}

/// An in-memory ledger with the hospitals admitted, its tip, and the hospitals' keys.
pub fn setup() -> (Ledger, Tip, Vec<SigningKey>) {
    let ledger = Ledger::in_memory(genesis()).unwrap();
    let (tip, hospitals) = admit_hospitals(&ledger);
    (ledger, tip, hospitals)
}

/// Admits the hospitals into `ledger` (of [`genesis`]), in block 1: its tip and their keys.
pub fn admit_hospitals(ledger: &Ledger) -> (Tip, Vec<SigningKey>) {
    let regulator = SigningKey::from_seed([1; 32]);
    let mut tip = Tip::genesis(&genesis());
    let hospitals: Vec<SigningKey> = (0..HOSPITALS).map(|_| SigningKey::generate()).collect();
    let admits: Vec<_> = hospitals
        .iter()
        .enumerate()
        .map(|(i, h)| {
            tx(
                &regulator,
                i as u64 + 1,
                RegistryTx::AdmitHospital(AdmitHospital {
                    key: h.public_key(),
                    encryption_key: DecryptionKey::generate().public_key(),
                    registration_id: format!("R{i}"),
                    name: format!("H{i}"),
                    city: "C".into(),
                    specialisation: "S".into(),
                    contact: sealed(),
                }),
            )
        })
        .collect();
    let block = tip.propose(1, admits);
    ledger.apply_sealed_block(&seal(&block), &vec![true; block.txs.len()], &[]).unwrap();
    (tip, hospitals)
}

/// Block `round`'s registrations (rounds count from 0, each hospital's nonces in order).
pub fn registrations(hospitals: &[SigningKey], round: u64) -> Vec<SignedTransaction> {
    (0..BLOCK)
        .map(|i| {
            let h = &hospitals[i % hospitals.len()];
            let nonce = round * (BLOCK / hospitals.len()) as u64 + (i / hospitals.len()) as u64 + 1;
            tx(
                h,
                nonce,
                RegistryTx::RegisterPatient(RegisterPatient {
                    key: SigningKey::generate().public_key(),
                    encryption_key: DecryptionKey::generate().public_key(),
                    details: sealed(),
                    attendant: sealed(),
                }),
            )
        })
        .collect()
}
