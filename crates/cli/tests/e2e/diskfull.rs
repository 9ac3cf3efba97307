//! Disk full (issue 16), on a data directory that is a real small tmpfs. With a reserve, filled
//! under load (transactions and uploads) and by a filler file: below the reserve every write is
//! refused with 507 `disk_full` and nothing changes; reads are served and `/health` says why;
//! once the filler is deleted writes resume without a restart; after a clean stop `medledger
//! verify` passes and every acknowledged transaction is there. Without a reserve, filled to the
//! last byte: the Raft log or the ledger meets ENOSPC, the node reports the storage fault and
//! exits non-zero; a restart recovers every acknowledged transaction.

use std::{
    fs,
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use medledger_client::{ClientError, HttpError, NodeClient, Signer, Wallet, tx::build};
use medledger_core::{Hash, block::Outcome, tx::SignedTransaction};

use crate::{harness::*, http_refusals::admit_body};

const RESERVE_MIB: u64 = 8;
const MIB: u64 = 1024 * 1024;

/// Whether `r` is the refusal of a full disk, with its message.
fn is_disk_full<T: std::fmt::Debug>(r: &Result<T, ClientError>) -> bool {
    match r {
        Err(ClientError::Http(HttpError::Refused { status: 507, code, message, .. }))
            if code == "disk_full" =>
        {
            assert!(message.starts_with("the node's disk is full"), "{message}");
            true
        }
        _ => false,
    }
}

/// `medledger_disk_free_bytes` from /metrics.
pub(crate) fn free_bytes(node: &Node) -> u64 {
    let m = http(node.port, "GET", "/metrics", b"").expect("GET /metrics").text();
    let line = m
        .lines()
        .find(|l| l.starts_with("medledger_disk_free_bytes "))
        .unwrap_or_else(|| panic!("no medledger_disk_free_bytes in /metrics:\n{m}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    getrandom::fill(&mut v).unwrap();
    v
}

#[test]
fn a_full_disk_refuses_writes_with_507_serves_reads_and_resumes_when_space_returns() {
    let small = SmallFs::mount(48);
    let reserve = RESERVE_MIB.to_string();
    let mut node = Node::start_with(&small.path(), free_port(), &["--disk-reserve-mb", &reserve]);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut wallet = Wallet::load(node.regulator_wallet()).unwrap();
    let regulator = Arc::new(wallet.unlock(PASS).unwrap());
    let client = NodeClient::new(&node.url)
        .unwrap()
        .signed_by(Signer::new(regulator.signing.clone(), wallet.account()));
    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
    let admit = {
        let (regulator, chain, account) = (regulator.clone(), chain.clone(), wallet.account());
        move |nonce: u64| -> SignedTransaction {
            build(&regulator, account, &chain, nonce, admit_body(&format!("Full {nonce}")))
        }
    };

    // Load: admissions and 256 KiB uploads, one after the other, until told to stop. A refusal
    // for a full disk consumes no nonce, so the same one is tried again; any other failure is
    // a finding.
    let acked: Arc<Mutex<Vec<Hash>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, acked, stop, admit) =
            (client.clone(), acked.clone(), stop.clone(), admit.clone());
        rt.spawn(async move {
            let (mut nonce, mut refused, mut uploaded) = (1u64, 0u32, 0u32);
            while !stop.load(Ordering::SeqCst) {
                let tx = admit(nonce);
                let r = tokio::time::timeout(LIMIT, client.submit(&tx)).await.expect("submit hung");
                match &r {
                    Ok(receipt) => {
                        assert!(matches!(receipt.outcome, Outcome::Applied { .. }), "{receipt:?}");
                        acked.lock().unwrap().push(tx.hash());
                        nonce += 1;
                    }
                    _ if is_disk_full(&r) => refused += 1,
                    Err(e) => panic!("a write under load failed other than for a full disk: {e}"),
                }
                let body = reqwest::Body::from(random(256 * 1024));
                let r = tokio::time::timeout(LIMIT, client.upload(body, None))
                    .await
                    .expect("upload hung");
                match &r {
                    Ok(_) => uploaded += 1,
                    _ if is_disk_full(&r) => refused += 1,
                    Err(e) => panic!("an upload under load failed other than for a full disk: {e}"),
                }
                if refused > 0 {
                    // Full: keep knocking, gently.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            (nonce, refused, uploaded)
        })
    };

    // Fill the file system with a filler file, under that load, to below the reserve (but not
    // to the last byte: the reserve is what keeps the Raft log out of ENOSPC).
    let filler_path = small.path().join("filler");
    let mut filler = fs::File::create(&filler_path).unwrap();
    let started = Instant::now();
    while free_bytes(&node) > (RESERVE_MIB / 2) * MIB {
        assert!(started.elapsed() < LIMIT, "could not fill the file system within {LIMIT:?}");
        filler.write_all(&random(MIB as usize / 2)).unwrap();
        filler.sync_all().unwrap();
    }
    // Let the load meet the full disk for a moment, then stop it.
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline && !load.is_finished() {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    let (nonce, refused, uploaded) =
        rt.block_on(async { tokio::time::timeout(LIMIT, load).await }).expect("load hung").unwrap();
    let acked_under_load = acked.lock().unwrap().clone();
    eprintln!(
        "{} transactions acknowledged and {uploaded} uploads stored under load; {refused} refused as disk full",
        acked_under_load.len()
    );
    assert!(refused > 0, "the load never met the full disk");

    // Below the reserve: every kind of write is refused with 507 and changes nothing.
    let account_nonce = |c: &NodeClient| {
        rt.block_on(c.account(&wallet.account()))
            .unwrap()
            .expect("the regulator's account")
            .nonce
            .expect("the regulator's own nonce")
    };
    let nonce_before = account_nonce(&client);
    assert_eq!(nonce_before + 1, nonce);
    let tx = admit(nonce);
    let r = rt.block_on(client.submit(&tx));
    assert!(is_disk_full(&r), "a transaction on a full disk: {r:?}");
    if let Err(ClientError::Http(HttpError::Refused { message, .. })) = &r {
        assert!(message.contains(&format!("{RESERVE_MIB} MB reserved")), "{message}");
    }
    let r = rt.block_on(client.submit_batch(std::slice::from_ref(&tx)));
    assert!(is_disk_full(&r), "a batch on a full disk: {r:?}");
    let r = rt.block_on(client.upload(reqwest::Body::from(random(64 * 1024)), None));
    assert!(is_disk_full(&r), "an upload on a full disk: {r:?}");
    let r = rt.block_on(client.put_blob(random(1024)));
    assert!(is_disk_full(&r), "a sealed-details blob on a full disk: {r:?}");
    assert_eq!(account_nonce(&client), nonce_before, "a refused write changed the ledger");
    let vault = node.dir.join("vault");
    let temps = fs::read_dir(&vault)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(temps, 0, "refused uploads left temporary files in {}", vault.display());

    // Reads are served; /health and /metrics say why; the log warned.
    if let Some(first) = acked_under_load.first() {
        let proof = rt.block_on(client.transaction(first)).expect("read an acknowledged tx");
        assert_eq!(&proof.receipt.tx_hash, first);
    }
    rt.block_on(client.checkpoint()).expect("the checkpoint is served on a full disk");
    let health = node.health();
    assert_eq!(health["status"], "disk_full", "{health}");
    let reason = health["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the node's disk is full: ") && reason.contains("MB free"),
        "{reason}"
    );
    let metrics = http(node.port, "GET", "/metrics", b"").unwrap().text();
    assert!(
        metrics.contains(&format!("medledger_disk_reserve_bytes {}", RESERVE_MIB * MIB)),
        "{metrics}"
    );
    assert!(free_bytes(&node) < RESERVE_MIB * MIB);
    assert!(
        node.log_text().contains("nearly full"),
        "no low-space warning in the log\n{}",
        node.log_text()
    );

    // Space returns: writes resume by themselves, without a restart.
    drop(filler);
    fs::remove_file(&filler_path).unwrap();
    let started = Instant::now();
    let receipt = loop {
        let r = rt.block_on(client.submit(&tx));
        match r {
            Ok(receipt) => break receipt,
            Err(_) if is_disk_full(&r) && started.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("writes did not resume once space returned: {e}"),
        }
    };
    assert!(matches!(receipt.outcome, Outcome::Applied { .. }), "{receipt:?}");
    rt.block_on(client.upload(reqwest::Body::from(random(64 * 1024)), None))
        .expect("uploads resume once space returns");
    assert_eq!(node.health()["status"], "ok");
    let mut all_acked = acked_under_load;
    all_acked.push(tx.hash());

    // A clean stop; the full offline verification passes; nothing acknowledged is lost.
    let status = node.stop().expect("the node was running");
    assert!(status.success(), "the node exited with {status}\n{}", node.log_text());
    let out = cli(&["verify", "--data-dir", &node.dir.display().to_string()], &[]);
    assert!(out.status.success(), "verify after the full disk failed\n{}", show(&out));
    node.restart();
    for hash in &all_acked {
        let proof = rt
            .block_on(client.transaction(hash))
            .unwrap_or_else(|e| panic!("acknowledged transaction {hash} lost: {e}"));
        assert!(matches!(proof.receipt.outcome, Outcome::Applied { .. }), "{hash}");
    }
}

#[test]
fn with_no_reserve_enospc_in_the_raft_log_or_ledger_stops_the_node_and_a_restart_recovers() {
    let small = SmallFs::mount(32);
    let mut node = Node::start_with(&small.path(), free_port(), &["--disk-reserve-mb", "0"]);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut wallet = Wallet::load(node.regulator_wallet()).unwrap();
    let regulator = wallet.unlock(PASS).unwrap();
    let client = NodeClient::new(&node.url)
        .unwrap()
        .signed_by(Signer::new(regulator.signing.clone(), wallet.account()));
    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
    let admit = |nonce: u64| {
        build(&regulator, wallet.account(), &chain, nonce, admit_body(&format!("Enospc {nonce}")))
    };
    let mut acked = Vec::new();
    let mut nonce = 1;
    for _ in 0..5 {
        let tx = admit(nonce);
        rt.block_on(client.submit(&tx)).expect("a write before the disk fills");
        acked.push(tx.hash());
        nonce += 1;
    }

    // Fill the file system to the last byte: nothing keeps a reserve.
    let mut filler = fs::File::create(small.path().join("filler")).unwrap();
    let chunk = random(64 * 1024);
    loop {
        match filler.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling the file system: {e}"),
        }
    }
    drop(filler);

    // Write until the Raft log or the ledger meets ENOSPC (they reuse free pages first):
    // every answer is an applied receipt, until the storage fault.
    let started = Instant::now();
    let fault = loop {
        assert!(started.elapsed() < LIMIT, "no storage fault within {LIMIT:?} on a full disk");
        let batch: Vec<SignedTransaction> = (nonce..nonce + 50).map(admit).collect();
        let items = match rt.block_on(client.submit_batch(&batch)) {
            Ok(items) => items,
            Err(ClientError::Http(HttpError::Refused { status: 503, code, message, .. }))
                if code == "storage_fault" =>
            {
                break message;
            }
            Err(e) => panic!("a write on a full disk failed other than by a storage fault: {e}"),
        };
        let mut failed = None;
        for (tx, item) in batch.iter().zip(items) {
            match item {
                medledger_api::BatchItem::Receipt(r) => {
                    assert!(matches!(r.outcome, Outcome::Applied { .. }), "{r:?}");
                    acked.push(tx.hash());
                    nonce += 1;
                }
                medledger_api::BatchItem::Error(e) => {
                    assert_eq!(e.code, "storage_fault", "{e:?}");
                    failed = Some(e.message);
                    break;
                }
            }
        }
        if let Some(message) = failed {
            break message;
        }
    };
    assert!(fault.contains("storage fault"), "{fault}");
    eprintln!("{} acknowledged before the fault: {fault}", acked.len());
    // /health says why at once (the node answers it for a moment before it stops)...
    let r = http(node.port, "GET", "/health", b"").expect("GET /health after the fault");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["status"], "storage_fault", "{}", r.text());
    // ...and the node stops by itself, non-zero, saying why.
    let status = node.wait_exit();
    assert!(!status.success(), "the node exited with {status} after a storage fault");
    let log = node.log_text();
    assert!(log.contains("storage fault, the node stopped"), "{log}");

    // Space returns; a restart recovers every acknowledged transaction; the ledger verifies.
    fs::remove_file(small.path().join("filler")).unwrap();
    node.restart();
    for hash in &acked {
        let proof = rt
            .block_on(client.transaction(hash))
            .unwrap_or_else(|e| panic!("acknowledged transaction {hash} lost: {e}"));
        assert!(matches!(proof.receipt.outcome, Outcome::Applied { .. }), "{hash}");
    }
    let next =
        rt.block_on(client.account(&wallet.account())).unwrap().unwrap().nonce.expect("own nonce")
            + 1;
    rt.block_on(client.submit(&admit(next))).expect("a write after the restart");
    let status = node.stop().expect("the node was running");
    assert!(status.success(), "the node exited with {status}\n{}", node.log_text());
    let out = cli(&["verify", "--data-dir", &node.dir.display().to_string()], &[]);
    assert!(out.status.success(), "verify after the storage fault failed\n{}", show(&out));
}
