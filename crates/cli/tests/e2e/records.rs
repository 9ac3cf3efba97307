//! Encrypted records end to end: a doctor adds a file, the patient reads it back through the
//! audited read path; unauthorised, revoked and corrupted reads release nothing; truncated
//! and mismatched uploads store nothing; erasure destroys the blobs and keeps the token.

use medledger_client::{ClientError, HttpError, NodeClient, Signer, Wallet};
use medledger_core::{
    Hash,
    ids::AccountId,
    tx::{
        TxBody,
        consent::{AccessTx, Action, Purpose, RecordCategory, Resource},
    },
};

use crate::{harness::*, registry::cast};

pub(crate) fn pmr_of(out: &str) -> String {
    let start = out.find("record ").expect("a record line") + "record ".len();
    out[start..].split_whitespace().next().unwrap().to_owned()
}

fn trail_kinds(wallet: &str, env: &[(&str, &str)]) -> Vec<String> {
    let out = ok(&["audit", "trail", "--wallet", wallet, "--json"], env);
    let events: serde_json::Value = serde_json::from_str(&out).unwrap();
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (kind, body) = e["kind"].as_object().unwrap().iter().next().unwrap();
            match body["decision"].as_object().and_then(|d| d.keys().next()) {
                Some(d) => format!("{kind}:{d}"),
                None => kind.clone(),
            }
        })
        .collect()
}

/// Pseudo-random bytes (xorshift), so that the file does not compress or repeat.
fn content(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn records_are_encrypted_audited_and_erasable() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let plain = content(3 * 1024 * 1024 + 123);
    let file = tmp.path().join("scan.dcm");
    std::fs::write(&file, &plain).unwrap();
    let file_s = file.display().to_string();

    // The doctor adds a record for the patient (by Patient-ID); its PMR-ID is the Patient-ID
    // and the visit date.
    let out = ok(
        &["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id, "--file", &file_s]
            .into_iter()
            .chain(["--category", "imaging", "--date", "2021-01-26", "--title", "MRI knee"])
            .collect::<Vec<_>>(),
        &env,
    );
    let pmr = pmr_of(&out);
    assert_eq!(pmr, format!("{}26012021", c.patient_id), "{out}");
    assert!(out.contains("CID bafkrei"), "{out}");
    // The vault holds ciphertext only: the plaintext appears in no stored file.
    let vault = node.dir.join("vault");
    for entry in std::fs::read_dir(&vault).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(64).any(|w| w == &plain[1000..1064]),
                "plaintext found in {}",
                path.display()
            );
        }
    }

    // The patient reads it back: decrypted here, CID checked, provenance verified.
    let back = tmp.path().join("back.dcm");
    let out = ok(
        &["record", "get", &pmr, "--wallet", &c.patient, "-o", &back.display().to_string()],
        &env,
    );
    assert_eq!(std::fs::read(&back).unwrap(), plain, "{out}");
    assert!(out.contains("MRI knee"), "{out}");
    assert!(out.contains("provenance: written by Dr. Ada Quill"), "{out}");
    let listed = ok(&["record", "list", "--wallet", &c.patient, "--json"], &env);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["pmr"], pmr.as_str(), "{listed}");
    assert_eq!(listed[0]["category"], "imaging");

    // The author has no grant to read it: denied, the denial committed, nothing written.
    let doc_out = tmp.path().join("doctor.dcm");
    let doc_out_s = doc_out.display().to_string();
    let before = trail_kinds(&c.patient, &env);
    let err = fails(&["record", "get", &pmr, "--wallet", &c.doctor, "-o", &doc_out_s], &env);
    assert!(err.contains("access denied"), "{err}");
    assert!(!doc_out.exists() && !doc_out.with_extension("partial").exists());
    let after = trail_kinds(&c.patient, &env);
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert_eq!(after.last().unwrap(), "access:deny");

    // A grant lets the doctor read; after revocation nothing more is served.
    let granted = ok(
        &[
            "consent",
            "grant",
            "--wallet",
            &c.patient,
            "--grantee",
            &c.doctor_account,
            "--scope",
            "all",
        ],
        &env,
    );
    let grant_id = granted
        .split_whitespace()
        .find(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("a grant id in {granted}"))
        .to_owned();
    ok(&["record", "get", &pmr, "--wallet", &c.doctor, "-o", &doc_out_s], &env);
    assert_eq!(std::fs::read(&doc_out).unwrap(), plain);
    std::fs::remove_file(&doc_out).unwrap();
    ok(&["consent", "revoke", "--wallet", &c.patient, &grant_id], &env);
    let err = fails(&["record", "get", &pmr, "--wallet", &c.doctor, "-o", &doc_out_s], &env);
    assert!(err.contains("access denied"), "{err}");
    assert!(!doc_out.exists());
    let kinds = trail_kinds(&c.patient, &env);
    let reads: Vec<&str> =
        kinds.iter().map(String::as_str).filter(|k| k.starts_with("access:")).collect();
    assert_eq!(reads, ["access:allow", "access:deny", "access:allow", "access:deny"], "{kinds:?}");

    // A grant to a doctor who holds no key of the record wraps the key to them in the
    // patient's wallet, so the grant can be used.
    let colleague = crate::registry::wallet(tmp.path(), "colleague", &node.url);
    let out = ok(
        &["doctor", "onboard", "--wallet", &c.hospital]
            .into_iter()
            .chain(["--identity", &crate::registry::identity(&colleague)])
            .chain(["--registration-number", "GMC-7654321", "--name", "Dr. Lin"])
            .chain(["--specialisation", "radiology"])
            .collect::<Vec<_>>(),
        &env,
    );
    let colleague_account = crate::harness::account(&out);
    let col_out = tmp.path().join("colleague.dcm");
    let col_out_s = col_out.display().to_string();
    let err = fails(&["record", "get", &pmr, "--wallet", &colleague, "-o", &col_out_s], &env);
    assert!(err.contains("no record"), "a stranger does not even see the token: {err}");
    let granted = ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &colleague_account]
            .into_iter()
            .chain(["--scope", &format!("records:{pmr}")])
            .collect::<Vec<_>>(),
        &env,
    );
    assert!(granted.contains("data keys of 1 record(s) wrapped"), "{granted}");
    ok(&["record", "get", &pmr, "--wallet", &colleague, "-o", &col_out_s], &env);
    assert_eq!(std::fs::read(&col_out).unwrap(), plain);

    // One flipped byte in the stored ciphertext: the read is refused, the damage reported,
    // nothing served and no access logged.
    let mut patient_wallet = Wallet::load(&c.patient).unwrap();
    let patient_identity = patient_wallet.unlock(PASS).unwrap();
    let signer = Signer::new(patient_identity.signing.clone(), patient_wallet.account());
    let client = NodeClient::new(&node.url).unwrap().signed_by(signer);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let record = rt.block_on(client.record(&pmr)).unwrap().unwrap();
    let blob = vault.join(record.content.to_hex());
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    let before = trail_kinds(&c.patient, &env);
    let err = fails(&["record", "get", &pmr, "--wallet", &c.patient, "-o", &doc_out_s], &env);
    assert!(err.contains("damaged"), "{err}");
    assert!(!doc_out.exists());
    assert_eq!(trail_kinds(&c.patient, &env), before, "no access event without bytes");
    bytes[mid] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();

    // A truncated upload, and bytes that do not match the announced hash: nothing stored.
    let whole = content(200_000);
    let announced = Hash::of(&whole);
    let truncated = whole[..150_000].to_vec();
    match rt.block_on(client.upload(reqwest::Body::from(truncated.clone()), Some(&announced))) {
        Err(ClientError::Http(HttpError::Refused { code, .. })) => assert_eq!(code, "cid_mismatch"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!vault.join(announced.to_hex()).exists());
    assert!(!vault.join(Hash::of(&truncated).to_hex()).exists());
    let leftovers: Vec<_> = std::fs::read_dir(&vault)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // An access naming the wrong category is denied as a false declaration (a category grant
    // cannot be fooled), even the patient's own, and nothing is served.
    let access = rt.block_on(async {
        let me: AccountId = patient_wallet.account();
        let nonce = client.account(&me).await.unwrap().unwrap().nonce.expect("own nonce") + 1;
        let chain = client.genesis().await.unwrap().chain_id;
        medledger_client::tx::build(
            &patient_identity,
            me,
            &chain,
            nonce,
            TxBody::Access(AccessTx {
                resource: Resource {
                    patient: record.patient,
                    category: Some(RecordCategory::LabReport),
                    record: Some(pmr.clone()),
                    case: None,
                },
                action: Action::Read,
                purpose: Purpose::Treatment,
            }),
        )
    });
    match rt.block_on(client.read_record(&pmr, &access)) {
        Err(ClientError::Http(HttpError::Refused { status: 403, code, message, .. }))
            if code == "denied" && message.contains("a false declaration") => {}
        other => panic!("expected a denial, got {other:?}"),
    }

    // Erasure: the token stays, marked erased; the vault loses the blobs; reads stop.
    let out = ok(&["record", "erase", &pmr, "--wallet", &c.patient, "--yes"], &env);
    assert!(out.contains("erased"), "{out}");
    let meta_blob = vault.join(record.metadata.to_hex());
    let deadline = std::time::Instant::now() + LIMIT;
    while (blob.exists() || meta_blob.exists()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!blob.exists(), "the ciphertext survived erasure");
    assert!(!meta_blob.exists(), "the metadata survived erasure");
    let listed = ok(&["record", "list", "--wallet", &c.patient], &env);
    assert!(listed.contains("erased"), "{listed}");
    let err = fails(&["record", "get", &pmr, "--wallet", &c.patient, "-o", &doc_out_s], &env);
    assert!(err.contains("erased"), "{err}");

    // Every proof still verifies, offline.
    let mut node = node;
    node.stop();
    let out = cli(&["verify", "--data-dir", &node.dir.display().to_string()], &[]);
    assert!(out.status.success() && stdout(&out).contains("ledger OK"), "{}", show(&out));
}

fn temp_files(vault: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(vault)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect()
}

pub(crate) fn blob_files(vault: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(vault)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect();
    names.sort();
    names
}

#[test]
fn kill_minus_9_during_an_upload_and_during_a_read() {
    let tmp = tempdir();
    let mut node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let file = tmp.path().join("study.dcm");
    std::fs::write(&file, content(8 * 1024 * 1024)).unwrap();
    let out = ok(
        &["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id]
            .into_iter()
            .chain(["--file", &file.display().to_string(), "--category", "imaging"])
            .collect::<Vec<_>>(),
        &env,
    );
    let pmr = pmr_of(&out);
    let vault = node.dir.join("vault");
    let blobs_before = blob_files(&vault);

    let mut patient_wallet = Wallet::load(&c.patient).unwrap();
    let identity = patient_wallet.unlock(PASS).unwrap();
    let me = patient_wallet.account();
    let client =
        NodeClient::new(&node.url).unwrap().signed_by(Signer::new(identity.signing.clone(), me));
    let rt = tokio::runtime::Runtime::new().unwrap();

    // An upload in progress is a temporary file; SIGKILL leaves no blob behind, and the
    // restarted node removes the temporary file.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let body =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        );
    let upload = {
        let client = client.clone();
        rt.spawn(async move { client.upload(reqwest::Body::wrap_stream(body), None).await })
    };
    rt.block_on(tx.send(Ok(bytes::Bytes::from(content(1024 * 1024))))).unwrap();
    let deadline = std::time::Instant::now() + LIMIT;
    while temp_files(&vault).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!temp_files(&vault).is_empty(), "the upload never started");
    node.kill9();
    assert!(rt.block_on(upload).unwrap().is_err(), "an upload cut by SIGKILL must fail");
    drop(tx);
    node.restart();
    assert!(temp_files(&vault).is_empty(), "temporary files survived the restart");
    assert_eq!(blob_files(&vault), blobs_before, "a partial upload became a blob");

    // A read whose bytes started flowing was committed before the first byte: after SIGKILL
    // mid-stream, the access event is in the trail.
    let trail = |c: &NodeClient| rt.block_on(c.audit_trail(&me, None)).unwrap();
    let before = trail(&client).len();
    let record = rt.block_on(client.record(&pmr)).unwrap().unwrap();
    let access = rt.block_on(async {
        let nonce = client.account(&me).await.unwrap().unwrap().nonce.expect("own nonce") + 1;
        let chain = client.genesis().await.unwrap().chain_id;
        medledger_client::tx::build(
            &identity,
            me,
            &chain,
            nonce,
            TxBody::Access(AccessTx {
                resource: Resource {
                    patient: me,
                    category: Some(record.category),
                    record: Some(pmr.clone()),
                    case: None,
                },
                action: Action::Read,
                purpose: Purpose::Treatment,
            }),
        )
    });
    let mut stream = rt.block_on(client.read_record(&pmr, &access)).unwrap();
    let first = rt.block_on(stream.chunk()).unwrap().expect("some ciphertext");
    assert!(!first.is_empty());
    node.kill9();
    assert!(
        rt.block_on(async {
            while stream.chunk().await?.is_some() {}
            Ok::<_, ClientError>(())
        })
        .is_err()
    );
    node.restart();
    let after = trail(&client);
    assert_eq!(after.len(), before + 1, "exactly the one read was logged");
    let last = serde_json::to_value(&after.last().unwrap().kind).unwrap();
    assert_eq!(last["access"]["resource"]["record"], pmr.as_str(), "{last}");
    assert_eq!(last["access"]["decision"]["allow"], "ownership", "{last}");
}

#[test]
fn a_split_key_needs_the_custodians_and_they_release_only_to_authorised_readers() {
    use crate::registry::{identity, wallet};
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let url = node.url.as_str();
    let env = [("MEDLEDGER_NODE", url)];
    // A second hospital, as the other custodian.
    let second = wallet(tmp.path(), "second", url);
    let out = ok(
        &["hospital", "admit", "--wallet", &node.regulator(), "--identity", &identity(&second)]
            .into_iter()
            .chain(["--registration-id", "GOV-2", "--name", "Second", "--city", "York"])
            .chain(["--specialisation", "oncology", "--contact", "+44 0"])
            .collect::<Vec<_>>(),
        &env,
    );
    let second_account = crate::harness::account(&out);
    let file = tmp.path().join("lab.pdf");
    std::fs::write(&file, content(300_000)).unwrap();
    let custodians = format!("{},{second_account}", c.hospital_account);
    let out = ok(
        &["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id]
            .into_iter()
            .chain(["--file", &file.display().to_string(), "--category", "lab-report"])
            .chain(["--custodians", &custodians, "--threshold", "2"])
            .collect::<Vec<_>>(),
        &env,
    );
    let pmr = pmr_of(&out);
    // Each custodian, named in the mint, may see the mint (a custodian proves the record by
    // it before it releases its share); a hospital that is no custodian may not.
    let mint: String = out[out.find(", tx ").expect("the mint's hash") + 5..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    ok(&["proof", &mint, "--wallet", &second], &env);
    let third = wallet(tmp.path(), "third", url);
    ok(
        &["hospital", "admit", "--wallet", &node.regulator(), "--identity", &identity(&third)]
            .into_iter()
            .chain(["--registration-id", "GOV-3", "--name", "Third", "--city", "Leeds"])
            .chain(["--specialisation", "oncology", "--contact", "+44 1"])
            .collect::<Vec<_>>(),
        &env,
    );
    let err = fails(&["proof", &mint, "--wallet", &third], &env);
    assert!(err.contains("404") || err.contains("no transaction"), "{err}");
    let patient_account = Wallet::load(&c.patient).unwrap().account().to_string();
    let back = tmp.path().join("back.pdf");
    let back_s = back.display().to_string();

    // The patient alone holds only the essential share.
    let err = fails(&["record", "get", &pmr, "--wallet", &c.patient, "-o", &back_s], &env);
    assert!(err.contains("0 of the 2 custodian shares"), "{err}");
    assert!(!back.exists());

    // A custodian refuses a reader the ledger does not authorise (the doctor has no grant):
    // the refusal is audited and nothing is released.
    let err =
        fails(&["record", "release", &pmr, "--wallet", &second, "--to", &c.doctor_account], &env);
    assert!(err.contains("did not authorise"), "{err}");
    let trail = ok(&["audit", "trail", "--wallet", &c.patient], &env);
    assert!(trail.contains("REFUSED"), "{trail}");
    // Only a custodian may release.
    let err =
        fails(&["record", "release", &pmr, "--wallet", &c.doctor, "--to", &patient_account], &env);
    assert!(err.contains("not a custodian"), "{err}");

    // One custodian is not enough; both are.
    ok(&["record", "release", &pmr, "--wallet", &c.hospital, "--to", &patient_account], &env);
    let err = fails(&["record", "get", &pmr, "--wallet", &c.patient, "-o", &back_s], &env);
    assert!(err.contains("1 of the 2"), "{err}");
    ok(&["record", "release", &pmr, "--wallet", &second, "--to", &patient_account], &env);
    ok(&["record", "get", &pmr, "--wallet", &c.patient, "-o", &back_s], &env);
    assert_eq!(std::fs::read(&back).unwrap(), content(300_000));
}

/// A DICOM file is recognised by its bytes, whatever its name: filed under another category
/// than imaging it is refused before anything is uploaded or signed (a grant limited to lab
/// reports must not reach an image), and filed as imaging it is stored as application/dicom.
#[test]
fn a_dicom_file_is_recognised_by_its_bytes_and_added_only_as_imaging() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let mut dicom = vec![0u8; 128];
    dicom.extend_from_slice(b"DICM");
    dicom.extend_from_slice(&content(4096));
    let file = tmp.path().join("results.pdf");
    std::fs::write(&file, &dicom).unwrap();
    let file_s = file.display().to_string();
    let add = |category: &str| {
        ["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id, "--file", &file_s]
            .into_iter()
            .chain(["--category", category, "--date", "2021-01-26"])
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let args = add("lab-report");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let blobs_before = blob_files(&node.dir.join("vault"));
    let err = fails(&args, &env);
    assert!(err.contains("is a DICOM file: add it with the category imaging"), "{err}");
    assert_eq!(blob_files(&node.dir.join("vault")), blobs_before, "nothing was uploaded");
    let listed = ok(&["record", "list", "--wallet", &c.patient, "--json"], &env);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&listed).unwrap(), serde_json::json!([]));

    let args = add("imaging");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pmr = pmr_of(&ok(&args, &env));
    let back = tmp.path().join("back");
    let out = ok(
        &["record", "get", &pmr, "--wallet", &c.patient, "-o", &back.display().to_string()],
        &env,
    );
    assert!(out.contains("(application/dicom)"), "{out}");
    assert_eq!(std::fs::read(&back).unwrap(), dicom);
}
