//! Conformance: the canonical encoding and hashes of known transactions, blocks and
//! checkpoints are pinned here. If one of these fails, the wire or storage format changed:
//! that must be a deliberate, versioned act (existing ledgers would no longer verify).

mod signatures;

use medledger_core::{
    Hash,
    block::{Checkpoint, Created, Genesis, Outcome, Refusal, Tip},
    encoding::{self, DecodeError},
    ids::{AccountId, PatientId},
    keys::{DecryptionKey, SigningKey, namespace},
    tx::{
        AdmitHospital, CaseTx, MAX_TX_BYTES, RegisterPatient, RegistryTx, SealedRef,
        SignedTransaction, Transaction, TxBody,
        cases::{appended_head, case_id, opened_head},
    },
};

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed([n; 32])
}

fn sample_admit() -> SignedTransaction {
    let regulator = key(1);
    Transaction {
        chain_id: "medledger-test".into(),
        signer: AccountId::from_initial_key(&regulator.public_key()),
        nonce: 1,
        body: TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
            key: key(2).public_key(),
            encryption_key: DecryptionKey::from_bytes([3; 32]).public_key(),
            registration_id: "GOV-123".into(),
            name: "St. Mary's".into(),
            city: "Leeds".into(),
            specialisation: "cardiology".into(),
            contact: SealedRef { blob: Hash::of(b"blob"), commitment: Hash::of(b"commitment") },
        })),
    }
    .sign(&regulator)
}

fn sample_register() -> SignedTransaction {
    let hospital = key(2);
    Transaction {
        chain_id: "medledger-test".into(),
        signer: AccountId::from_initial_key(&hospital.public_key()),
        nonce: 7,
        body: TxBody::Registry(RegistryTx::RegisterPatient(RegisterPatient {
            key: key(4).public_key(),
            encryption_key: DecryptionKey::from_bytes([5; 32]).public_key(),
            details: SealedRef { blob: Hash::of(b"d"), commitment: Hash::of(b"dc") },
            attendant: SealedRef { blob: Hash::of(b"a"), commitment: Hash::of(b"ac") },
        })),
    }
    .sign(&hospital)
}

fn sample_alert() -> SignedTransaction {
    use medledger_core::tx::{
        DeviceTx,
        devices::{Alert, Metric, Severity},
    };
    let device = key(6);
    Transaction {
        chain_id: "medledger-test".into(),
        signer: AccountId::from_initial_key(&device.public_key()),
        nonce: 3,
        body: TxBody::Devices(DeviceTx::Alert(Alert {
            session: Hash::of(b"session"),
            seq: 42,
            metric: Metric::Spo2,
            severity: Severity::Critical,
            reading: Hash::of(b"sealed reading"),
            thresholds: Some(Hash::of(b"thresholds")),
        })),
    }
    .sign(&device)
}

fn sample_break_glass(code: medledger_core::tx::emergency::ReasonCode) -> SignedTransaction {
    use medledger_core::tx::EmergencyTx;
    let doctor = key(10);
    Transaction {
        chain_id: "medledger-test".into(),
        signer: AccountId::from_initial_key(&doctor.public_key()),
        nonce: 2,
        body: TxBody::Emergency(EmergencyTx::BreakGlass {
            patient: AccountId::from_initial_key(&key(4).public_key()),
            code,
            reason: vec![0xA5; 310],
        }),
    }
    .sign(&doctor)
}

#[test]
fn pinned_break_glass_with_a_coded_reason_and_a_sealed_text() {
    // Security review M6/M7: the reason is a code from the list and ciphertext; this pins
    // the new encoding (a deliberate change: the plaintext reason is gone).
    use medledger_core::tx::emergency::ReasonCode;
    let tx = sample_break_glass(ReasonCode::LifeThreateningBleed);
    assert_eq!(tx.hash().to_hex(), PINNED_BREAK_GLASS);
    assert_eq!(SignedTransaction::decode(&tx.encode()).unwrap(), tx);
    // The code is one of the list: its variant index follows the patient's account id in the
    // body; any other value does not decode, so the node refuses it before anything else.
    let body = encoding::encode(&tx.tx.body);
    let mut unknown = body.clone();
    let at = body.len() - 310 - 2 - 1;
    assert_eq!(body[at], 1, "the code's index");
    unknown[at] = 9;
    assert!(encoding::decode::<TxBody>("body", &unknown, MAX_TX_BYTES).is_err());
    assert!(encoding::decode::<TxBody>("body", &body, MAX_TX_BYTES).is_ok());
}

#[test]
fn pinned_device_alert() {
    // Appending the device variants (after the emergency and case ones) left the earlier
    // encodings as they were (above); this pins the device alert's own.
    assert_eq!(sample_alert().hash().to_hex(), PINNED_ALERT);
    let bytes = sample_alert().encode();
    assert_eq!(SignedTransaction::decode(&bytes).unwrap(), sample_alert());
    sample_alert().verify_signature().unwrap();
}

fn sample_node_admit() -> SignedTransaction {
    use medledger_core::tx::NodeTx;
    let regulator = key(1);
    Transaction {
        chain_id: "medledger-test".into(),
        signer: AccountId::from_initial_key(&regulator.public_key()),
        nonce: 9,
        body: TxBody::Nodes(NodeTx::Admit {
            node_key: key(11).public_key(),
            address: "http://127.0.0.2:7301".into(),
            hospital: AccountId::from_initial_key(&key(2).public_key()),
        }),
    }
    .sign(&regulator)
}

#[test]
fn pinned_node_admission() {
    // The node membership family is appended after the device variants, so every earlier
    // encoding is unchanged (pinned above); this pins a node admission's own.
    assert_eq!(sample_node_admit().hash().to_hex(), PINNED_NODE_ADMIT);
    let bytes = sample_node_admit().encode();
    assert_eq!(SignedTransaction::decode(&bytes).unwrap(), sample_node_admit());
    sample_node_admit().verify_signature().unwrap();
    // The family's index follows the device family's (6).
    let body = encoding::encode(&sample_node_admit().tx.body);
    assert_eq!(body[0], 7);
}

fn sample_organisation_txs() -> [SignedTransaction; 2] {
    use medledger_core::tx::{AddMember, AdmitOrganisation, OrganisationKind};
    let (regulator, org) = (key(1), key(12));
    let org_account = AccountId::from_initial_key(&org.public_key());
    let admit = Transaction {
        chain_id: "medledger-test".into(),
        signer: AccountId::from_initial_key(&regulator.public_key()),
        nonce: 10,
        body: TxBody::Registry(RegistryTx::AdmitOrganisation(AdmitOrganisation {
            key: org.public_key(),
            encryption_key: DecryptionKey::from_bytes([13; 32]).public_key(),
            kind: OrganisationKind::Insurer,
            name: "Shield Mutual".into(),
            contact: SealedRef { blob: Hash::of(b"oc"), commitment: Hash::of(b"occ") },
        })),
    }
    .sign(&regulator);
    let member = AddMember::accept(
        &key(14),
        &org_account,
        DecryptionKey::from_bytes([15; 32]).public_key(),
        "Dr. Rao",
    );
    let add = Transaction {
        chain_id: "medledger-test".into(),
        signer: org_account,
        nonce: 1,
        body: TxBody::Registry(RegistryTx::AddMember(member)),
    }
    .sign(&org);
    [admit, add]
}

#[test]
fn pinned_organisation_admission_and_member() {
    // The organisation variants are appended to the registry family, so every earlier
    // registry encoding is unchanged (pinned above); these pin their own, the member key's
    // acceptance (namespace `medledger/v1/membership`) included.
    let [admit, add] = sample_organisation_txs();
    assert_eq!(admit.hash().to_hex(), PINNED_ADMIT_ORGANISATION);
    assert_eq!(add.hash().to_hex(), PINNED_ADD_MEMBER);
    for tx in [admit, add.clone()] {
        assert_eq!(SignedTransaction::decode(&tx.encode()).unwrap(), tx);
        tx.verify_signature().unwrap();
    }
    let body = encoding::encode(&add.tx.body);
    assert_eq!((body[0], body[1]), (0, 11), "the registry family, its twelfth variant");
    let TxBody::Registry(RegistryTx::AddMember(m)) = &add.tx.body else { unreachable!() };
    m.verify_acceptance(&add.tx.signer).unwrap();
}

#[test]
fn pinned_transaction_hashes() {
    // Ed25519 signatures are deterministic, so the whole signed encoding is pinned.
    assert_eq!(sample_admit().hash().to_hex(), PINNED_ADMIT);
    assert_eq!(sample_register().hash().to_hex(), PINNED_REGISTER);
    assert_eq!(AccountId::from_initial_key(&key(1).public_key()).to_string(), PINNED_ACCOUNT);
}

#[test]
fn pinned_block_and_checkpoint() {
    let genesis = Genesis {
        chain_id: "medledger-test".into(),
        time_ms: 1_700_000_000_000,
        regulator_key: key(1).public_key(),
        regulator_encryption_key: DecryptionKey::from_bytes([9; 32]).public_key(),
        node_key: key(8).public_key(),
    };
    assert_eq!(genesis.hash().to_hex(), PINNED_GENESIS);
    let mut tip = Tip::genesis(&genesis);
    let block = tip.propose(1_700_000_001_000, vec![sample_admit(), sample_register()]);
    assert_eq!(block.header.hash().to_hex(), PINNED_BLOCK);
    let cp = Checkpoint {
        chain_id: genesis.chain_id.clone(),
        height: 1,
        time_ms: block.header.time_ms,
        log_size: 2,
        log_root: block.header.log_root,
    }
    .sign(&key(8));
    assert_eq!(Hash::of(&encoding::encode(&cp)).to_hex(), PINNED_CHECKPOINT);
    cp.verify(&key(8).public_key()).unwrap();
    assert!(cp.verify(&key(9).public_key()).is_err(), "another node key is refused");
}

fn sample_append() -> SignedTransaction {
    let doctor = key(6);
    Transaction {
        chain_id: "medledger-test".into(),
        signer: AccountId::from_initial_key(&doctor.public_key()),
        nonce: 3,
        body: TxBody::Cases(CaseTx::Append {
            case: case_id(85437, 1),
            prev: Hash::of(b"prev"),
            entry: Hash::of(b"entry"),
        }),
    }
    .sign(&doctor)
}

#[test]
fn pinned_case_transaction_and_chain() {
    // The chain's hashes are a format too: exported cases are checked against them offline.
    assert_eq!(sample_append().hash().to_hex(), PINNED_APPEND);
    let (patient, doctor) = (AccountId([1; 20]), AccountId([2; 20]));
    let first = opened_head("C85437-1", &patient, &doctor, &Hash::of(b"description"), 4, 1_000);
    assert_eq!(first.to_hex(), PINNED_OPENED_HEAD);
    let next = appended_head(&first, &Hash::of(b"entry"), &doctor, 5, 2_000);
    assert_eq!(next.to_hex(), PINNED_APPENDED_HEAD);
}

#[test]
fn transactions_round_trip_and_verify() {
    for tx in [sample_admit(), sample_register(), sample_append()] {
        let bytes = tx.encode();
        assert_eq!(SignedTransaction::decode(&bytes).unwrap(), tx);
        tx.verify_signature().unwrap();
    }
}

#[test]
fn receipts_round_trip_in_the_canonical_encoding() {
    for outcome in [
        Outcome::Applied {
            created: Some(Created::Patient {
                account: AccountId([1; 20]),
                patient_id: PatientId(85437),
            }),
        },
        Outcome::Refused { reason: Refusal::StaleNonce { last: 4, got: 3 } },
        Outcome::Refused { reason: Refusal::Unauthorised { reason: "x".into() } },
    ] {
        let bytes = encoding::encode(&outcome);
        assert_eq!(encoding::decode::<Outcome>("receipt", &bytes, 1024).unwrap(), outcome);
    }
}

#[test]
fn malformed_oversized_and_trailing_input_is_refused() {
    let bytes = sample_admit().encode();
    assert!(matches!(
        SignedTransaction::decode(&bytes[..bytes.len() - 1]),
        Err(DecodeError::Malformed { .. })
    ));
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(matches!(SignedTransaction::decode(&extra), Err(DecodeError::TrailingBytes { .. })));
    assert!(matches!(
        SignedTransaction::decode(&vec![0u8; MAX_TX_BYTES + 1]),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(SignedTransaction::decode(b"\xff\xff\xff\xff\xff\xff").is_err());
    assert!(SignedTransaction::decode(&[]).is_err());
}

#[test]
fn an_overlong_varint_is_not_a_second_encoding_of_the_same_transaction() {
    // The nonce (7) is the first byte where nonces 7 and 9 encode differently; 0x87 0x00 is 7
    // again as an overlong varint. postcard alone would accept it, and the transaction would
    // then have two encodings (two hashes) for one signature.
    let canonical = sample_register().encode();
    let mut other = sample_register();
    other.tx.nonce = 9;
    let at = canonical.iter().zip(other.encode()).position(|(a, b)| *a != b).unwrap();
    assert_eq!(canonical[at], 7);
    let mut overlong = canonical[..at].to_vec();
    overlong.extend_from_slice(&[0x87, 0x00]);
    overlong.extend_from_slice(&canonical[at + 1..]);
    assert!(matches!(SignedTransaction::decode(&overlong), Err(DecodeError::NotCanonical { .. })));
    assert_eq!(SignedTransaction::decode(&canonical).unwrap().encode(), canonical);
}

#[test]
fn any_flipped_bit_breaks_the_signature_or_the_decoding() {
    let bytes = sample_register().encode();
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        if let Ok(tx) = SignedTransaction::decode(&b) {
            assert!(tx.verify_signature().is_err(), "flip at byte {i} still verifies");
        }
    }
}

#[test]
fn signatures_are_bound_to_their_namespace() {
    let k = key(1);
    let sig = k.sign(namespace::TRANSACTION, b"message");
    assert!(k.public_key().verify(namespace::TRANSACTION, b"message", &sig).is_ok());
    assert!(k.public_key().verify(namespace::CHECKPOINT, b"message", &sig).is_err());
    assert!(k.public_key().verify(namespace::TRANSACTION, b"messagf", &sig).is_err());
}

const PINNED_ADMIT: &str = "d563c18b93d0da39b3eba00f307ff96c0f1242600b0dc43a81f0c2e67b0b1fec";
const PINNED_REGISTER: &str = "06eb7af63534d67afbccc535fc66aafe593124cd3308689f674ae076e4fd7bfd";
const PINNED_ACCOUNT: &str = "08ce6ce7449a93d70dacc28d59e49b431cd43237";
const PINNED_GENESIS: &str = "e21febe73606240e90b5bcb6237147ccac6ac92b106547f911ba72efe751291c";
const PINNED_BLOCK: &str = "12b336c6cc2f7cf52288ca0899bdf84ea54d8a71003bcc3099243e2093c21aa9";
const PINNED_CHECKPOINT: &str = "560a5f97ae6e68978e2465f375cc54ca3cbe297431aff152ccbec071f68ae1f7";
const PINNED_APPEND: &str = "a5a7bb0e0bdf7e308188ab3ae5c0034d9ce35756c9367c3a88c2162ab13c1321";
const PINNED_OPENED_HEAD: &str = "468a4dca2b04b16ac5069fcf67698183dd8e70a371123328c54cda911cc2a908";
const PINNED_APPENDED_HEAD: &str =
    "940f860935ec513beaf792891e5585324d96a91dd8160b359b95909dba860885";
const PINNED_BREAK_GLASS: &str = "04ec1a6608ab20e89768bc92b04750d9dedefb658c4be4924be14f74db3cfa72";
const PINNED_ALERT: &str = "468de78f43ea7d5db3b691b7c6f820226d9eecc73f730b39b1d19a9cfc78ceae";
const PINNED_ADMIT_ORGANISATION: &str =
    "519ebe1d4dccf0041da6d260b163c5583e5fae455ac48ded037d1b98021e74e1";
const PINNED_ADD_MEMBER: &str = "7aeefabeaa65dd07bcefae957bd66441181e30d3e12397038fa2b85b46ab8554";
const PINNED_NODE_ADMIT: &str = "b3e0565a72e6037db3cc17cf6a032db3fa66dc2c0b6694f7468a6970e94378ce";

fn sample_research_export() -> SignedTransaction {
    use medledger_core::tx::{
        consent::RecordCategory,
        research::{PlannedRecord, ResearchExportTx, plan_digest},
    };
    let member = key(14);
    let patient = AccountId::from_initial_key(&key(3).public_key());
    let categories = vec![RecordCategory::LabReport, RecordCategory::Imaging];
    let record = PlannedRecord {
        pmr: "PMR-1".into(),
        category: RecordCategory::LabReport,
        content: Hash::of(b"ciphertext"),
    };
    let plan = plan_digest("cardio-2026", "safe-harbor-1", &patient, &categories, &[record]);
    Transaction {
        chain_id: "medledger-test".into(),
        signer: AccountId::from_initial_key(&member.public_key()),
        nonce: 2,
        body: TxBody::ResearchExport(ResearchExportTx {
            patient,
            categories,
            project: "cardio-2026".into(),
            rule_set: "safe-harbor-1".into(),
            plan,
        }),
    }
    .sign(&member)
}

#[test]
fn pinned_research_export() {
    // The research export is appended after the node membership family (7), so every earlier
    // encoding is unchanged (pinned above); this pins its own, and its plan digest.
    let tx = sample_research_export();
    assert_eq!(tx.hash().to_hex(), PINNED_RESEARCH_EXPORT);
    let TxBody::ResearchExport(body) = &tx.tx.body else { unreachable!() };
    assert_eq!(body.plan.to_hex(), PINNED_RESEARCH_PLAN);
    assert_eq!(SignedTransaction::decode(&tx.encode()).unwrap(), tx);
    tx.verify_signature().unwrap();
    assert_eq!(encoding::encode(&tx.tx.body)[0], 8);
}

const PINNED_RESEARCH_EXPORT: &str =
    "3e0fe1ed2f19ad8c018283f93693b919062384cb4cd9494a1f05e7c0245c2283";
const PINNED_RESEARCH_PLAN: &str =
    "a415dedadc533a3fc0eac4067a325f151871f009aecdec1282be7e1c40fbc0d9";
