//! SIGKILL under load: every acknowledged transaction survives (DESIGN invariant 7).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use medledger_api::BatchItem;
use medledger_client::{NodeClient, Wallet, proof::verify_tx_proof, tx::build};
use medledger_core::{
    Hash,
    block::Outcome,
    ids::AccountId,
    keys::{DecryptionKey, SigningKey},
    tx::{RegisterPatient, RegistryTx, SealedRef, Transaction, TxBody},
};

use crate::{harness::*, http_refusals::admit_body};

const HOSPITALS: usize = 20;

fn sealed(tag: &str) -> SealedRef {
    SealedRef {
        blob: Hash::of(tag.as_bytes()),
        commitment: Hash::of(format!("c/{tag}").as_bytes()),
    }
}

#[test]
fn kill_minus_9_under_load_loses_no_acknowledged_transaction() {
    let tmp = tempdir();
    let mut node = Node::start(&tmp.path().join("data"));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut wallet = Wallet::load(node.regulator_wallet()).unwrap();
    let regulator = wallet.unlock(PASS).unwrap();
    // Reads are signed; the regulator reads here.
    let client = NodeClient::new(&node.url)
        .unwrap()
        .signed_by(medledger_client::Signer::new(regulator.signing.clone(), wallet.account()));
    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();

    // Admit the hospitals in one batch.
    let seeds: Vec<[u8; 32]> =
        (0..HOSPITALS).map(|_| *SigningKey::generate().expose_secret()).collect();
    let keys: Vec<SigningKey> = seeds.iter().map(|s| SigningKey::from_seed(*s)).collect();
    let admits: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let TxBody::Registry(RegistryTx::AdmitHospital(mut a)) =
                admit_body(&format!("Load Hospital {i}"))
            else {
                unreachable!()
            };
            a.key = k.public_key();
            build(
                &regulator,
                wallet.account(),
                &chain,
                1 + i as u64,
                TxBody::Registry(RegistryTx::AdmitHospital(a)),
            )
        })
        .collect();
    let items = rt
        .block_on(async { tokio::time::timeout(LIMIT, client.submit_batch(&admits)).await })
        .expect("admission timed out");
    for item in items.expect("admit the hospitals") {
        assert!(
            matches!(&item, BatchItem::Receipt(r) if matches!(r.outcome, Outcome::Applied { .. })),
            "admission not applied: {item:?}"
        );
    }

    // Load: one task per hospital, one registration in flight each, nonces in order.
    let acked: Arc<Mutex<Vec<Hash>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (h, key) in keys.into_iter().enumerate() {
        let (client, chain, acked, count, stop) =
            (client.clone(), chain.clone(), acked.clone(), count.clone(), stop.clone());
        tasks.push(rt.spawn(async move {
            let signer = AccountId::from_initial_key(&key.public_key());
            let mut errors = 0u32;
            for nonce in 1u64.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let tag = format!("{h}/{nonce}");
                let body = TxBody::Registry(RegistryTx::RegisterPatient(RegisterPatient {
                    key: SigningKey::generate().public_key(),
                    encryption_key: DecryptionKey::generate().public_key(),
                    details: sealed(&format!("d/{tag}")),
                    attendant: sealed(&format!("a/{tag}")),
                }));
                let tx = Transaction { chain_id: chain.clone(), signer, nonce, body }.sign(&key);
                match client.submit(&tx).await {
                    Ok(r) if matches!(r.outcome, Outcome::Applied { .. }) => {
                        assert_eq!(r.tx_hash, tx.hash());
                        acked.lock().unwrap().push(r.tx_hash);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    // After the kill: the node is gone; this hospital is done.
                    Ok(_) | Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            errors
        }));
    }

    // Let it run for ~1.5 s (and until a fair number are acknowledged), then SIGKILL it with
    // requests in flight.
    let started = Instant::now();
    while (started.elapsed() < Duration::from_millis(1500) || count.load(Ordering::SeqCst) < 50)
        && count.load(Ordering::SeqCst) < 5000
    {
        assert!(
            started.elapsed() < LIMIT,
            "only {} acknowledgements in {LIMIT:?}",
            count.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    node.kill9();
    stop.store(true, Ordering::SeqCst);
    let mut failed = 0;
    for t in tasks {
        failed += rt
            .block_on(async { tokio::time::timeout(LIMIT, t).await })
            .expect("a load task hung")
            .expect("a load task panicked");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 50, "too few acknowledgements to be a test: {}", acked.len());
    eprintln!(
        "{} acknowledged before SIGKILL; {failed} of {HOSPITALS} hospitals saw an error",
        acked.len()
    );

    // Restart on the same directory: every acknowledged transaction is there, applied, provable.
    node.restart();
    let genesis = rt
        .block_on(async { tokio::time::timeout(LIMIT, client.genesis()).await })
        .unwrap()
        .unwrap();
    let log_size = node.log_size();
    assert!(log_size >= (HOSPITALS + acked.len()) as u64, "log size {log_size} < acknowledged");
    rt.block_on(async {
        for hash in &acked {
            let resp = tokio::time::timeout(LIMIT, client.transaction(hash))
                .await
                .expect("GET transaction timed out")
                .unwrap_or_else(|e| {
                    panic!("acknowledged transaction {hash} lost after SIGKILL: {e}")
                });
            assert_eq!(&resp.receipt.tx_hash, hash);
            assert!(
                matches!(resp.receipt.outcome, Outcome::Applied { .. }),
                "{hash}: {:?}",
                resp.receipt.outcome
            );
            verify_tx_proof(&resp, &genesis.node_key)
                .unwrap_or_else(|e| panic!("{hash}: proof: {e}"));
        }
    });

    // The restarted node takes new work: each hospital's next nonce follows what survived.
    rt.block_on(async {
        for (h, seed) in seeds.iter().enumerate().take(3) {
            let key = SigningKey::from_seed(*seed);
            let signer = AccountId::from_initial_key(&key.public_key());
            // Only the hospital itself is told its nonce.
            let own = NodeClient::new(&node.url)
                .unwrap()
                .signed_by(medledger_client::Signer::new(key.clone(), signer));
            let nonce = own
                .account(&signer)
                .await
                .unwrap()
                .expect("the hospital survived")
                .nonce
                .expect("the hospital's own nonce")
                + 1;
            let body = TxBody::Registry(RegistryTx::RegisterPatient(RegisterPatient {
                key: SigningKey::generate().public_key(),
                encryption_key: DecryptionKey::generate().public_key(),
                details: sealed(&format!("d/after/{h}")),
                attendant: sealed(&format!("a/after/{h}")),
            }));
            let tx = Transaction { chain_id: chain.clone(), signer, nonce, body }.sign(&key);
            // The node starts producing blocks only once Raft has re-applied its log, so the
            // first write after the restart must be ordered at once.
            let r =
                tokio::time::timeout(LIMIT, client.submit(&tx)).await.expect("submit timed out");
            let r =
                r.unwrap_or_else(|e| panic!("hospital {h} cannot continue after the restart: {e}"));
            assert!(matches!(r.outcome, Outcome::Applied { .. }), "{r:?}");
        }
    });
    let status = node.stop().expect("the node was running");
    assert!(status.success(), "the node exited with {status} on SIGINT\n{}", node.log_text());
    let out = cli(&["verify", "--data-dir", &node.dir.display().to_string()], &[]);
    assert!(out.status.success(), "verify after the crash failed\n{}", show(&out));
    assert!(stdout(&out).contains("ledger OK"), "{}", show(&out));
}
