//! The security report's attacks (2026-11-30) against a real node, each checking that what
//! broke then is refused now: unauthenticated log spam (H3), floods of denials and refusals
//! (M5, H3), reads by a suspended hospital's doctors (M1), revocations that lag on reads
//! (M2), and oracles before authentication (M3).

use medledger_client::{Wallet, tx::build};
use medledger_core::{
    encoding,
    ids::AccountId,
    tx::{
        ConsentTx, SignedTransaction, TxBody,
        consent::{AccessTx, Action, Purpose, RecordCategory, Resource, Scope, Validity},
    },
};

use crate::{
    harness::*,
    http_refusals::admit_body,
    registry::{Cast, cast},
};

fn chain(node: &Node) -> String {
    node.health()["chain_id"].as_str().unwrap().to_owned()
}

fn batch(node: &Node, txs: &[SignedTransaction]) -> Vec<serde_json::Value> {
    let body = encoding::encode(&txs.to_vec());
    let r = http(node.port, "POST", "/v1/transactions/batch", &body).expect("POST batch");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().unwrap().clone()
}

fn is_receipt(item: &serde_json::Value) -> bool {
    item.get("receipt").is_some()
}

fn code(item: &serde_json::Value) -> String {
    item["error"]["code"].as_str().unwrap_or_default().to_owned()
}

fn unlock(wallet: &str) -> (medledger_client::Identity, AccountId) {
    let mut w = Wallet::load(wallet).unwrap();
    (w.unlock(PASS).unwrap(), w.account())
}

fn lab_access(patient: AccountId) -> TxBody {
    TxBody::Access(AccessTx {
        resource: Resource {
            patient,
            category: Some(RecordCategory::LabReport),
            record: None,
            case: None,
        },
        action: Action::Read,
        purpose: Purpose::Treatment,
    })
}

/// The cast's doctor adds a record of `category` holding `content`; returns its PMR-ID.
fn add_record(
    dir: &std::path::Path,
    c: &Cast,
    env: &[(&str, &str)],
    category: &str,
    content: &[u8],
) -> String {
    let file = dir.join(format!("{category}.bin"));
    std::fs::write(&file, content).unwrap();
    let out = ok(
        &["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id]
            .into_iter()
            .chain(["--file", &file.display().to_string(), "--category", category])
            .chain(["--date", "2021-01-26", "--title", "A record"])
            .collect::<Vec<_>>(),
        env,
    );
    out["record ".len() + out.find("record ").unwrap()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// H3: transactions signed by a key that is not the account's active key never reach the
/// log, through either submission route; a registered identity whose transactions keep
/// being refused is stopped at admission.
#[test]
fn forged_and_refused_floods_do_not_fill_the_log() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c: Cast = cast(tmp.path(), &node);
    let chain = chain(&node);
    let regulator = Wallet::load(node.regulator_wallet()).unwrap().account();

    // Anyone can sign "as the regulator" with a fresh key: nothing is ordered.
    let impostor = medledger_client::Identity::generate("impostor");
    let forged: Vec<_> = (0..200u64)
        .map(|i| build(&impostor, regulator, &chain, 1_000_000_000 + i, admit_body("Spam")))
        .collect();
    let size = node.log_size();
    let items = batch(&node, &forged);
    assert_eq!(items.len(), 200);
    for item in &items {
        assert!(!is_receipt(item), "a forged transaction was ordered: {item}");
        assert_eq!(code(item), "refused", "{item}");
        assert!(item["error"]["outcome"]["refused"]["reason"].get("key_not_active").is_some());
    }
    let r = http(node.port, "POST", "/v1/transactions", &forged[0].encode()).unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(node.log_size(), size, "no forged transaction reached the log");

    // A registered hospital sends grants it has no right to make (only the patient may):
    // each is ordered and refused, until its allowance of refusals is spent; then even a
    // good transaction waits.
    let (hospital, hospital_account) = unlock(&c.hospital);
    let (_, patient) = unlock(&c.patient);
    let refused: Vec<_> = (0..40u64)
        .map(|i| {
            let grant = ConsentTx::Grant {
                patient,
                grantee: AccountId([i as u8 + 1; 20]),
                scope: Scope::All,
                purpose: Purpose::Treatment,
                validity: Validity { not_before_ms: 0, expires_at_ms: u64::MAX },
            };
            build(&hospital, hospital_account, &chain, 3, TxBody::Consent(grant))
        })
        .collect();
    let items = batch(&node, &refused);
    assert!(items.iter().all(is_receipt), "admitted before the allowance was known spent");
    let later = build(&hospital, hospital_account, &chain, 3, admit_body("Later"));
    let r = http(node.port, "POST", "/v1/transactions", &later.encode()).unwrap();
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["code"], "too_many_refusals", "{}", r.text());
}

/// M5: a batch of denied accesses commits at most the reader's allowance of denials into the
/// patient's trail; the rest are refused before they are ordered.
#[test]
fn a_batch_of_denied_accesses_is_limited_like_denied_reads() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let chain = chain(&node);
    let (doctor, doctor_account) = unlock(&c.doctor);
    let (_, patient) = unlock(&c.patient);
    let size = node.log_size();
    let txs: Vec<_> = (1..=25u64)
        .map(|n| build(&doctor, doctor_account, &chain, n, lab_access(patient)))
        .collect();
    let items = batch(&node, &txs);
    let ordered = items.iter().filter(|i| is_receipt(i)).count();
    assert_eq!(ordered, 10, "only ten denials a minute reach the trail: {items:?}");
    assert!(items.iter().filter(|i| !is_receipt(i)).all(|i| code(i) == "too_many_denials"));
    assert_eq!(node.log_size(), size + 10);
}

/// M1 and M2: a suspended hospital's doctor reads nothing; a revoked grant stops showing at
/// once, without waiting for another block.
#[test]
fn suspension_and_revocation_bite_on_signed_reads_at_once() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let (doctor, doctor_account) = unlock(&c.doctor);
    let (_, patient) = unlock(&c.patient);
    let grants = format!("/v1/consent/grants?patient={patient}");
    let get =
        |path: &str| signed_http(node.port, &doctor.signing, doctor_account, "GET", path, b"");

    let out = ok(
        &[
            "consent",
            "grant",
            "--wallet",
            &c.patient,
            "--grantee",
            &c.doctor_account,
            "--scope",
            "categories:lab_report",
        ],
        &env,
    );
    let line = out.lines().find(|l| l.starts_with("id ")).unwrap_or_else(|| panic!("{out}"));
    let grant = line[3..].trim().to_owned();
    assert_eq!(grant.len(), 64, "{out}");
    assert_eq!(get(&grants).unwrap().json().as_array().unwrap().len(), 1);
    ok(&["consent", "revoke", &grant, "--wallet", &c.patient], &env);
    // The revocation is the tip's last transaction; no block has followed it.
    let r = get(&grants).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().as_array().unwrap().len(), 0, "a revoked grant still shows: {}", r.text());

    let records = format!("/v1/records?patient={patient}");
    assert_eq!(get(&records).unwrap().status, 200);
    ok(
        &[
            "hospital",
            "suspend",
            &c.hospital_account,
            "--reason",
            "licence withdrawn",
            "--wallet",
            &node.regulator(),
            "--node",
            &node.url,
        ],
        &[],
    );
    for path in [&records, &grants, &format!("/v1/emergency/{patient}")] {
        let r = get(path).unwrap();
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert_eq!(r.json()["code"], "suspended", "{path}: {}", r.text());
    }
}

/// M3: an audited read with a broken signature is refused for its signature before anything
/// about what it names is looked up (the answer was 404 for a missing PMR-ID and 410 for an
/// erased one), and nothing is ordered.
#[test]
fn unauthenticated_read_probes_learn_nothing() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let chain = chain(&node);
    let (doctor, doctor_account) = unlock(&c.doctor);
    let (_, patient) = unlock(&c.patient);
    let size = node.log_size();
    let mut answers = Vec::new();
    for pmr in [format!("{}01012020", c.patient_id), "9999901012020".to_string()] {
        let body = TxBody::Access(AccessTx {
            resource: Resource {
                patient,
                category: Some(RecordCategory::LabReport),
                record: Some(pmr.clone()),
                case: None,
            },
            action: Action::Read,
            purpose: Purpose::Treatment,
        });
        let mut tx = build(&doctor, doctor_account, &chain, 1, body);
        tx.signature.0[3] ^= 1;
        let r = http(node.port, "POST", &format!("/v1/records/{pmr}/read"), &tx.encode()).unwrap();
        answers.push((r.status, r.json()["code"].clone()));
    }
    let mut tx = build(
        &doctor,
        doctor_account,
        &chain,
        1,
        TxBody::Emergency(medledger_core::tx::EmergencyTx::ReadProfile { patient }),
    );
    tx.signature.0[3] ^= 1;
    let r =
        http(node.port, "POST", &format!("/v1/emergency/{patient}/read"), &tx.encode()).unwrap();
    answers.push((r.status, r.json()["code"].clone()));
    for a in &answers {
        assert_eq!(a, &(400, serde_json::json!("bad_signature")), "{answers:?}");
    }
    assert_eq!(node.log_size(), size);
}

/// M9: a lost vault index makes nothing public: `GET /v1/blobs/{hash}` serves only the sealed
/// registration details the ledger names, decided from the ledger, before and after the
/// index is rebuilt.
#[test]
fn a_lost_vault_index_does_not_make_record_blobs_public() {
    let tmp = tempdir();
    let mut node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let pmr = add_record(
        tmp.path(),
        &c,
        &env,
        "lab_report",
        b"haemoglobin 13.5 g/dL; the patient's secret",
    );
    let (doctor, doctor_account) = unlock(&c.doctor);
    let (outsider, outsider_account) = unlock(&c.hospital);
    let token = signed_http(
        node.port,
        &doctor.signing,
        doctor_account,
        "GET",
        &format!("/v1/records/{pmr}"),
        b"",
    )
    .unwrap()
    .json();
    let content = token["content"].as_str().unwrap().to_owned();
    let blob = format!("/v1/blobs/{content}");
    let fetch = |port| signed_http(port, &outsider.signing, outsider_account, "GET", &blob, b"");
    assert_eq!(fetch(node.port).unwrap().status, 404);

    node.stop();
    std::fs::remove_file(node.dir.join("vault").join("index.redb")).unwrap();
    node.restart();
    let r = fetch(node.port).unwrap();
    assert_eq!(r.status, 404, "record ciphertext served after the index was rebuilt: {}", r.text());
}

/// L5: an access that names a record with another category than its own (to borrow a grant
/// for that category) is denied as a false declaration without a byte of the record being
/// served; each denial is committed to the patient's trail, where the patient sees the probe,
/// and counts against the reader's allowance of denied reads: once ten are spent in a minute
/// the next is refused as too many, and not ordered.
#[test]
fn a_false_category_counts_against_the_denial_allowance() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let pmr = add_record(tmp.path(), &c, &env, "imaging", b"MRI brain: no abnormality");
    // The doctor may read lab reports only.
    ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &c.doctor_account]
            .into_iter()
            .chain(["--scope", "categories:lab_report"])
            .collect::<Vec<_>>(),
        &env,
    );
    let chain = chain(&node);
    let (doctor, doctor_account) = unlock(&c.doctor);
    let (_, patient) = unlock(&c.patient);
    let false_category = TxBody::Access(AccessTx {
        resource: Resource {
            patient,
            category: Some(RecordCategory::LabReport),
            record: Some(pmr.clone()),
            case: None,
        },
        action: Action::Read,
        purpose: Purpose::Treatment,
    });
    let size = node.log_size();
    let mut answers = Vec::new();
    for n in 0..11u64 {
        let tx = build(&doctor, doctor_account, &chain, 1_000 + n, false_category.clone());
        let r = http(node.port, "POST", &format!("/v1/records/{pmr}/read"), &tx.encode()).unwrap();
        assert!(!r.text().contains("MRI brain"), "record content served: {}", r.text());
        answers.push((r.status, r.json()["code"].as_str().unwrap_or_default().to_owned()));
    }
    let denied = (403, "denied".to_owned());
    assert!(answers[..10].iter().all(|a| *a == denied), "{answers:?}");
    assert_eq!(answers[10], (429, "too_many_denials".to_owned()), "{answers:?}");
    assert_eq!(node.log_size(), size + 10, "the ten denials were ordered, the 11th was not");
    // The patient sees each probe in their trail, in words.
    let trail = ok(&["audit", "trail", "--wallet", &c.patient], &env);
    let probe = format!("read record {pmr} for treatment: DENIED (a false declaration");
    assert_eq!(trail.matches(&probe).count(), 10, "{trail}");
}

/// Registers another identity through the CLI and returns its wallet and account: a patient
/// of `hospital`, a doctor of `hospital`, or a device of `patient`.
pub(crate) fn enrol(
    dir: &std::path::Path,
    node: &Node,
    name: &str,
    how: &[&str],
) -> (String, String) {
    let w = crate::registry::wallet(dir, name, &node.url);
    let identity = crate::registry::identity(&w);
    let args: Vec<&str> = how.iter().copied().chain(["--identity", &identity]).collect();
    ok(&args, &[("MEDLEDGER_NODE", &node.url)]);
    let account = unlock(&w).1.to_string();
    (w, account)
}

/// M4: a Patient-ID maps to an account and hospital only for those with a reason the ledger
/// can check. A device and an unrelated patient get the answer of a missing Patient-ID for a
/// real one, and their probes spend the denial allowance (429 after it); an unrelated doctor
/// is refused until the patient grants them something, or while they hold the card's code;
/// the patient, the hospital and its doctor look the patient up as before.
#[test]
fn patient_ids_cannot_be_enumerated() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let c = cast(dir, &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let (other_wallet, _) = enrol(
        dir,
        &node,
        "other-patient",
        &["patient", "register", "--wallet", &c.hospital, "--name", "Ann Other"]
            .into_iter()
            .chain(["--date-of-birth", "1970-03-04", "--phone", "0711"])
            .chain(["--attendant-name", "B. Other", "--attendant-phone", "0712"])
            .chain(["--attendant-relationship", "sibling"])
            .collect::<Vec<_>>(),
    );
    let (device_wallet, _) = enrol(
        dir,
        &node,
        "oximeter",
        &["device", "register", "--wallet", &c.patient, "--kind", "pulse-oximeter"]
            .into_iter()
            .chain(["--serial", "PO-1", "--model", "Oxi 3"])
            .collect::<Vec<_>>(),
    );
    let pid = c.patient_id.as_str();
    let missing = if pid == "99999" { "99998" } else { "99999" };
    // Wallets are unlocked once each (a passphrase costs seconds): probes follow each other
    // as fast as an attacker's would, well within the allowance's refill of one every 6 s.
    let unlocked: std::collections::HashMap<String, _> =
        [&c.patient, &c.hospital, &c.doctor, &device_wallet, &other_wallet]
            .into_iter()
            .map(|w| (w.clone(), unlock(w)))
            .collect();
    let lookup = |wallet: &str, id: &str| {
        let (identity, account) = match unlocked.get(wallet) {
            Some((identity, account)) => (identity.clone(), *account),
            None => unlock(wallet),
        };
        signed_http(
            node.port,
            &identity.signing,
            account,
            "GET",
            &format!("/v1/patients/{id}"),
            b"",
        )
        .unwrap()
    };

    // Those with a reason see the patient.
    for w in [&c.patient, &c.hospital, &c.doctor] {
        let r = lookup(w, pid);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["hospital"], c.hospital_account.as_str());
    }

    // A device and an unrelated patient: a real Patient-ID answers exactly like a missing one.
    for w in [&device_wallet, &other_wallet] {
        let real = lookup(w, pid);
        let none = lookup(w, missing);
        assert_eq!(real.status, 404, "{}", real.text());
        assert_eq!(none.status, 404, "{}", none.text());
        assert_eq!(
            real.text().replace(pid, "ID"),
            none.text().replace(missing, "ID"),
            "a real Patient-ID must answer like a missing one"
        );
        // Nor does the account's public entry give the Patient-ID away.
        let (identity, account) = &unlocked[w.as_str()];
        let (identity, account) = (identity.clone(), *account);
        let patient_account = unlocked[c.patient.as_str()].1;
        let r = signed_http(
            node.port,
            &identity.signing,
            account,
            "GET",
            &format!("/v1/accounts/{patient_account}"),
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json()["patient_id"].is_null(), "{}", r.text());
        // Probing spends the allowance of denials: 429 within it, for real IDs too.
        let mut limited = false;
        for n in 0..12 {
            let r = lookup(w, &(10_000 + n).to_string());
            if r.status == 429 {
                assert_eq!(r.json()["code"], "too_many_denials", "{}", r.text());
                limited = true;
                break;
            }
            assert_eq!(r.status, 404, "{}", r.text());
        }
        assert!(limited, "probing Patient-IDs was never limited");
        assert_eq!(lookup(w, pid).status, 429);
    }

    // A doctor of another hospital: not until the patient grants them something.
    let (hospital2, _) = enrol(
        dir,
        &node,
        "hospital2",
        &["hospital", "admit", "--wallet", &node.regulator(), "--registration-id", "GOV-9"]
            .into_iter()
            .chain(["--name", "Elsewhere General", "--city", "York"])
            .chain(["--specialisation", "emergency", "--contact", "0800"])
            .collect::<Vec<_>>(),
    );
    let (doctor2, doctor2_account) = enrol(
        dir,
        &node,
        "doctor2",
        &["doctor", "onboard", "--wallet", &hospital2, "--registration-number", "GMC-99"]
            .into_iter()
            .chain(["--name", "Dr. Far", "--specialisation", "emergency medicine"])
            .collect::<Vec<_>>(),
    );
    assert_eq!(lookup(&doctor2, pid).status, 404);
    // The card's code is a reason: the emergency read resolves the Patient-ID with it.
    let out =
        ok(&["emergency", "profile", "--wallet", &c.patient, "--blood-type", "O-", "--json"], &env);
    let code: serde_json::Value = serde_json::from_str(&out).unwrap();
    let code = code["code"].as_str().unwrap();
    let out =
        ok(&["emergency", "read", "--wallet", &doctor2, "--patient", pid, "--code", code], &env);
    assert!(out.contains("O-"), "{out}");
    let wrong = format!("AAAA{}", &code[4..]);
    let err = fails(
        &["emergency", "read", "--wallet", &doctor2, "--patient", pid, "--code", &wrong],
        &env,
    );
    assert!(err.contains("no patient with Patient-ID"), "{err}");
    // A grant is a reason.
    ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &doctor2_account]
            .into_iter()
            .chain(["--scope", "all", "--days", "1"])
            .collect::<Vec<_>>(),
        &env,
    );
    let r = lookup(&doctor2, pid);
    assert_eq!(r.status, 200, "{}", r.text());
    let out = ok(&["patient", "show", pid, "--wallet", &doctor2], &env);
    assert!(out.contains(pid), "{out}");
}

/// The blob files in a node's vault.
fn vault_blobs(node: &Node) -> usize {
    std::fs::read_dir(node.dir.join("vault"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit())
        })
        .count()
}

/// M8: a device may not store sealed details with `PUT /v1/blobs` (it registers nobody), and
/// an account over its role's quota gets 507 `quota_exceeded` with nothing stored, through
/// both upload routes.
#[test]
fn blob_uploads_are_limited_by_role_and_quota() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start_with(&dir.join("data"), free_port(), &["--quota-patient-mb", "1"]);
    let c = cast(dir, &node);
    let (device_wallet, _) = enrol(
        dir,
        &node,
        "oximeter",
        &["device", "register", "--wallet", &c.patient, "--kind", "pulse-oximeter"]
            .into_iter()
            .chain(["--serial", "PO-1", "--model", "Oxi 3"])
            .collect::<Vec<_>>(),
    );
    let put = |wallet: &str, bytes: &[u8]| {
        let (identity, account) = unlock(wallet);
        signed_http(node.port, &identity.signing, account, "PUT", "/v1/blobs", bytes).unwrap()
    };
    let before = vault_blobs(&node);
    let r = put(&device_wallet, b"a device filling the disk");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(vault_blobs(&node), before, "a refused upload stored something");

    // The patient's quota is 1 MiB here: 600 KiB fits once, not twice.
    let first = vec![1u8; 600 * 1024];
    let r = put(&c.patient, &first);
    assert_eq!(r.status, 200, "{}", r.text());
    let before = vault_blobs(&node);
    let second = vec![2u8; 600 * 1024];
    let r = put(&c.patient, &second);
    assert_eq!(r.status, 507, "{}", r.text());
    assert_eq!(r.json()["code"], "quota_exceeded", "{}", r.text());
    assert!(r.text().contains("quota"), "{}", r.text());
    assert_eq!(vault_blobs(&node), before, "an upload over the quota stored something");
    // The streamed upload counts against the same quota.
    // (Its signature covers no body: a streaming client cannot hash it up front.)
    let (identity, account) = unlock(&c.patient);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let auth = medledger_core::request::RequestAuth::sign(
        &identity.signing,
        account,
        "POST",
        "/v1/vault",
        b"",
        now,
        [7; 16],
    );
    let header = auth.to_header();
    let r = request(
        node.port,
        "POST",
        "/v1/vault",
        &second,
        &[(medledger_core::request::HEADER, &header)],
    )
    .unwrap();
    assert_eq!(r.status, 507, "{}", r.text());
    assert_eq!(vault_blobs(&node), before);
    // A hospital's quota is far larger.
    let r = put(&c.hospital, &second);
    assert_eq!(r.status, 200, "{}", r.text());
}

/// H5's key proof is no new window on a patient: `GET /v1/emergency/{patient}/key-proof` (the
/// transaction that set the profile, with its proof) answers exactly those who may see the
/// profile (the patient, delegates, custodians, active doctors), and refuses an unrelated
/// patient like the profile view does.
#[test]
fn the_emergency_key_proof_is_served_only_to_those_who_may_see_the_profile() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let c = cast(dir, &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    ok(&["emergency", "profile", "--wallet", &c.patient, "--blood-type", "O-"], &env);
    let (stranger, _) = enrol(
        dir,
        &node,
        "stranger",
        &["patient", "register", "--wallet", &c.hospital, "--name", "S. Tranger"]
            .into_iter()
            .chain(["--date-of-birth", "1980-02-03", "--phone", "0721"])
            .chain(["--attendant-name", "T. Tranger", "--attendant-phone", "0722"])
            .chain(["--attendant-relationship", "parent"])
            .collect::<Vec<_>>(),
    );
    let patient = unlock(&c.patient).1;
    let get = |wallet: &str, path: &str| {
        let (identity, account) = unlock(wallet);
        signed_http(node.port, &identity.signing, account, "GET", path, b"").unwrap()
    };
    let proof = format!("/v1/emergency/{patient}/key-proof");
    let view = format!("/v1/emergency/{patient}");
    for w in [&c.patient, &c.doctor] {
        let r = get(w, &proof);
        assert_eq!(r.status, 200, "{}", r.text());
        let set_by = get(w, &view).json()["set_by"].as_str().unwrap().to_owned();
        assert_eq!(r.json()["receipt"]["tx_hash"], set_by.as_str(), "{}", r.text());
    }
    for path in [&proof, &view] {
        let r = get(&stranger, path);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(r.json()["tx_hex"].is_null(), "{}", r.text());
    }
}
