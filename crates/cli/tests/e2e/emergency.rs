//! Emergency access end to end: the patient's profile and card code, a read with the code, and
//! break-glass by a doctor with no grant: escrow release by the custodian, the profile and a
//! record opened under it, and the hospital's review.

use medledger_client::Wallet;

use crate::{harness::*, registry::cast};

fn code_of(out: &str) -> String {
    out.lines()
        .map(str::trim)
        .find(|l| {
            let groups: Vec<&str> = l.split('-').collect();
            groups.len() == 13
                && groups
                    .iter()
                    .all(|g| !g.is_empty() && g.chars().all(|c| c.is_ascii_alphanumeric()))
        })
        .unwrap_or_else(|| panic!("no code in:\n{out}"))
        .to_owned()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub(crate) fn id_of(out: &str) -> String {
    out.split_whitespace()
        .find(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no id in:\n{out}"))
        .to_owned()
}

#[test]
fn the_card_code_and_break_glass_open_the_profile_and_records_with_every_step_logged() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let url = node.url.as_str();
    let env = [("MEDLEDGER_NODE", url)];
    let pid = c.patient_id.as_str();

    let out = ok(
        &["emergency", "profile", "--wallet", &c.patient, "--blood-type", "O-"]
            .into_iter()
            .chain(["--allergies", "penicillin,latex", "--conditions", "asthma"])
            .chain(["--contacts", "John Roe +44 0700", "--open-records"])
            .chain(["--custodians", &c.hospital_account, "--threshold", "1"])
            .collect::<Vec<_>>(),
        &env,
    );
    let code = code_of(&out);
    assert!(out.contains('█') || out.contains('▀') || out.contains('▄'), "a QR code:\n{out}");

    // A record written after the profile is also wrapped to the emergency key.
    let file = tmp.path().join("ecg.pdf");
    std::fs::write(&file, b"ECG 2026-11-21: sinus rhythm").unwrap();
    let out = ok(
        &["record", "add", "--wallet", &c.doctor, "--patient", pid]
            .into_iter()
            .chain(["--file", &file.display().to_string(), "--category", "lab-report"])
            .collect::<Vec<_>>(),
        &env,
    );
    let pmr = out.split_whitespace().nth(1).unwrap().to_owned();

    // The code opens the profile; a wrong code reads nothing.
    let out =
        ok(&["emergency", "read", "--wallet", &c.doctor, "--patient", pid, "--code", &code], &env);
    assert!(out.contains("penicillin") && out.contains("O-"), "{out}");
    let wrong = code.replacen(&code[..4], "AAAA", 1);
    let err = fails(
        &["emergency", "read", "--wallet", &c.doctor, "--patient", pid, "--code", &wrong],
        &env,
    );
    assert!(err.contains("not patient"), "{err}");
    let trail = ok(&["audit", "trail", "--wallet", &c.patient], &env);
    assert_eq!(trail.matches("EMERGENCY PROFILE READ").count(), 1, "{trail}");

    // Break-glass needs a reason.
    let colleague = crate::registry::wallet(tmp.path(), "colleague", url);
    ok(
        &["doctor", "onboard", "--wallet", &c.hospital]
            .into_iter()
            .chain(["--identity", &crate::registry::identity(&colleague)])
            .chain(["--registration-number", "GMC-1111111", "--name", "Dr. Night"])
            .chain(["--specialisation", "emergency medicine"])
            .collect::<Vec<_>>(),
        &env,
    );
    // M6: a coded reason from the list and a text of at least 20 characters; the wallet
    // refuses anything less and nothing is ordered.
    let size = node.log_size();
    let declare = |code: &str, reason: &str| {
        ["emergency", "break-glass", "--wallet", &colleague, "--patient", pid]
            .into_iter()
            .chain(["--code", code, "--reason", reason])
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    for short in [" ", "unconscious", "   fell down stairs   "] {
        let err = fails(&args(&declare("unconscious", short)), &env);
        assert!(err.contains("at least 20"), "{short:?}: {err}");
    }
    let err = fails(&args(&declare("bored", "unconscious after a road accident")), &env);
    assert!(err.contains("not a break-glass reason code"), "{err}");
    assert_eq!(node.log_size(), size, "a refused declaration reached the log");
    let reason = "unconscious after a road accident";
    let out = ok(&args(&declare("unconscious", reason)), &env);
    let bg = id_of(&out);
    // M7: the reason is nowhere in the data directory in plaintext.
    let files = files_under(&node.dir);
    assert!(files.len() > 3, "the node's data directory holds {} files", files.len());
    for (path, bytes) in files {
        assert!(
            !bytes.windows(b"road accident".len()).any(|w| w == b"road accident"),
            "the reason is in plaintext in {}",
            path.display()
        );
    }
    // The patient, the hospital and the regulator open it; the declaring doctor cannot.
    for w in [&c.patient, &c.hospital, &node.regulator()] {
        let out = ok(&["emergency", "show", "--wallet", w, "--break-glass", &bg], &env);
        assert!(out.contains("unconscious: \"unconscious after a road accident\""), "{out}");
    }
    let out = ok(&["emergency", "show", "--wallet", &colleague, "--break-glass", &bg], &env);
    assert!(out.contains("not for this wallet") && !out.contains("road accident"), "{out}");
    // The transaction is served to its parties only: an unrelated registered patient gets
    // the answer of a hash that is not there.
    let (stranger, _) =
        crate::registry::register_patient(tmp.path(), url, &c.hospital, "S. Tranger");
    // The operator's log has the break-glass at info, with its code but never its reason.
    let log = node.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("BREAK-GLASS declared"))
        .unwrap_or_else(|| panic!("no break-glass in the node's log:\n{log}"));
    assert!(line.contains(" INFO ") && line.contains("unconscious"), "{line}");
    assert!(!log.contains("road accident"), "the reason is in the node's log:\n{log}");
    let get_tx = |wallet: &str, hash: &str| {
        let mut w = medledger_client::Wallet::load(wallet).unwrap();
        let identity = w.unlock(PASS).unwrap();
        signed_http(
            node.port,
            &identity.signing,
            w.account(),
            "GET",
            &format!("/v1/transactions/{hash}"),
            b"",
        )
        .unwrap()
    };
    let missing = "ab".repeat(32);
    let (hidden, none) = (get_tx(&stranger, &bg), get_tx(&stranger, &missing));
    assert_eq!((hidden.status, none.status), (404, 404), "{}", hidden.text());
    assert_eq!(hidden.text().replace(&bg, "H"), none.text().replace(&missing, "H"));
    for w in [&c.patient, &c.hospital, &colleague, &node.regulator()] {
        assert_eq!(get_tx(w, &bg).status, 200, "{w}");
    }
    // The hospital sees it awaiting review; the patient's trail has it.
    let reviews = ok(&["emergency", "reviews", "--wallet", &c.hospital], &env);
    assert!(reviews.contains(&bg), "{reviews}");
    let trail = ok(&["audit", "trail", "--wallet", &c.patient], &env);
    assert!(trail.contains("BREAK-GLASS") && trail.contains("road accident"), "{trail}");

    // M6: what only the break-glass opens is not shown by the plain (unaudited) GETs, listed
    // or by id; the audited overview lists it, and the patient's trail shows that read;
    // `record get --break-glass` finds the token through that overview.
    let patient_account = Wallet::load(&c.patient).unwrap().account().to_string();
    let listed = ok(
        &["record", "list", "--wallet", &colleague, "--patient", &patient_account, "--json"],
        &env,
    );
    assert!(!listed.contains(&pmr), "an unaudited list under break-glass: {listed}");
    // Nor named by its id: the signed GET of the token answers as for a missing record.
    let get_record = |id: &str| {
        let mut w = Wallet::load(&colleague).unwrap();
        let identity = w.unlock(PASS).unwrap();
        let path = format!("/v1/records/{id}");
        signed_http(node.port, &identity.signing, w.account(), "GET", &path, b"").unwrap()
    };
    let missing_pmr = format!("{pmr}-9");
    let (hidden, none) = (get_record(&pmr), get_record(&missing_pmr));
    assert_eq!((hidden.status, none.status), (404, 404), "{}", hidden.text());
    assert_eq!(hidden.text().replace(&pmr, "P"), none.text().replace(&missing_pmr, "P"));
    let out = ok(&["emergency", "overview", "--wallet", &colleague, "--patient", pid], &env);
    assert!(out.contains(&format!("record {pmr}")), "{out}");
    let trail = ok(&["audit", "trail", "--wallet", &c.patient], &env);
    assert!(
        trail.contains(&format!("read all records for emergency: ALLOWED (break-glass {bg})")),
        "{trail}"
    );

    // Without the custodian's release the key cannot be recovered.
    let back = tmp.path().join("ecg-back.pdf");
    let back_s = back.display().to_string();
    let err = fails(&["emergency", "open", "--wallet", &colleague, "--break-glass", &bg], &env);
    assert!(err.contains("0 of the 1"), "{err}");
    // Only the custodian releases.
    let err = fails(&["emergency", "release", "--wallet", &c.doctor, "--break-glass", &bg], &env);
    assert!(err.contains("only those a break-glass concerns"), "{err}");
    let err = fails(&["emergency", "release", "--wallet", &c.patient, "--break-glass", &bg], &env);
    assert!(err.contains("holds no escrow piece"), "{err}");
    ok(&["emergency", "release", "--wallet", &c.hospital, "--break-glass", &bg], &env);
    let out = ok(&["emergency", "open", "--wallet", &colleague, "--break-glass", &bg], &env);
    assert!(out.contains("asthma") && out.contains("latex"), "{out}");
    ok(&["record", "get", &pmr, "--wallet", &colleague, "--break-glass", &bg, "-o", &back_s], &env);
    assert_eq!(std::fs::read(&back).unwrap(), b"ECG 2026-11-21: sinus rhythm");

    // Ended, the break-glass opens nothing more; the hospital files its review.
    ok(&["emergency", "end", "--wallet", &colleague, "--break-glass", &bg], &env);
    std::fs::remove_file(&back).unwrap();
    let err = fails(
        &["record", "get", &pmr, "--wallet", &colleague, "--break-glass", &bg, "-o", &back_s],
        &env,
    );
    // (Reads are decided now, at the next block: the ended break-glass no longer even shows
    // the record.)
    assert!(err.contains("denied") || err.contains("may not see it"), "{err}");
    ok(
        &["emergency", "review", "--wallet", &c.hospital, "--break-glass", &bg]
            .into_iter()
            .chain(["--finding", "justified: patient unconscious"])
            .collect::<Vec<_>>(),
        &env,
    );
    let reviews = ok(&["emergency", "reviews", "--wallet", &c.hospital], &env);
    assert!(reviews.contains("no break-glass awaits"), "{reviews}");
    // The finding is sealed too; the patient reads it.
    let out = ok(&["emergency", "show", "--wallet", &c.patient, "--break-glass", &bg], &env);
    assert!(out.contains("justified: patient unconscious"), "{out}");
    let files = files_under(&node.dir);
    assert!(files.len() > 3, "the node's data directory holds {} files", files.len());
    for (path, bytes) in files {
        assert!(
            !bytes.windows(b"justified".len()).any(|w| w == b"justified"),
            "the finding is in plaintext in {}",
            path.display()
        );
    }
}

/// Every file under `dir`, recursively, with its bytes. The node keeps writing while this
/// looks (Raft log segments, files replaced by rename): a file or directory gone by the time
/// it is read holds nothing any more and is passed over; any other error fails the test.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if gone(&e) => return Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
            continue;
        }
        match std::fs::read(&path) {
            Ok(bytes) => out.push((path, bytes)),
            Err(e) if gone(&e) => {}
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
    out
}

/// Issue 10 item 2: with `--open-records`, break-glass opens every record of the patient,
/// whenever it was minted and whoever reads. Record A is written before the profile (the
/// patient's wallet wraps it to the emergency key when the profile is saved), record B after
/// (the mint wraps it); the doctor who wrote both reads them under break-glass with their own
/// key, a second doctor with the escrowed emergency key.
#[test]
fn break_glass_opens_records_minted_before_and_after_the_profile_for_any_doctor() {
    use crate::wallet_trust::{KeySwappingProxy, Lie};
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let url = node.url.as_str();
    let env = [("MEDLEDGER_NODE", url)];
    let pid = c.patient_id.as_str();
    let add = |name: &str, content: &[u8]| {
        let file = tmp.path().join(name);
        std::fs::write(&file, content).unwrap();
        let out = ok(
            &["record", "add", "--wallet", &c.doctor, "--patient", pid]
                .into_iter()
                .chain(["--file", &file.display().to_string(), "--category", "lab-report"])
                .chain(["--date", "2021-01-26"])
                .collect::<Vec<_>>(),
            &env,
        );
        out.split_whitespace().nth(1).unwrap().to_owned()
    };
    let a = add("a.txt", b"A: written before the emergency profile");
    let out = ok(
        &["emergency", "profile", "--wallet", &c.patient, "--blood-type", "A+"]
            .into_iter()
            .chain(["--open-records", "--custodians", &c.hospital_account])
            .collect::<Vec<_>>(),
        &env,
    );
    assert!(out.contains("1 existing record(s) wrapped to the emergency key"), "{out}");
    let b = add("b.txt", b"B: written after the emergency profile");
    let (_, stranger) =
        crate::registry::register_patient(tmp.path(), url, &c.hospital, "S. Tranger");

    let colleague = crate::registry::wallet(tmp.path(), "colleague", url);
    ok(
        &["doctor", "onboard", "--wallet", &c.hospital]
            .into_iter()
            .chain(["--identity", &crate::registry::identity(&colleague)])
            .chain(["--registration-number", "GMC-2222222", "--name", "Dr. Night"])
            .chain(["--specialisation", "emergency medicine"])
            .collect::<Vec<_>>(),
        &env,
    );
    for reader in [&c.doctor, &colleague] {
        // Without break-glass neither may read (no grant); the colleague may not even see
        // that the record exists.
        let probe = tmp.path().join("probe.txt").display().to_string();
        let err = fails(&["record", "get", &a, "--wallet", reader, "-o", &probe], &env);
        assert!(err.contains("denied") || err.contains("may not see it"), "{err}");
        let out = ok(
            &["emergency", "break-glass", "--wallet", reader, "--patient", pid]
                .into_iter()
                .chain(["--code", "unable-to-consent"])
                .chain(["--reason", "unconscious in the emergency department"])
                .collect::<Vec<_>>(),
            &env,
        );
        let bg = id_of(&out);
        ok(&["emergency", "release", "--wallet", &c.hospital, "--break-glass", &bg], &env);
        for (pmr, content) in [
            (&a, &b"A: written before the emergency profile"[..]),
            (&b, &b"B: written after the emergency profile"[..]),
        ] {
            let back = tmp.path().join(format!("{pmr}.back"));
            let back_s = back.display().to_string();
            // The colleague, who may not see the record, finds it through the audited overview:
            // the first read goes through a node whose view of the break-glass names another
            // patient, and the access still names the patient the declaration proves.
            let proxy = (pmr == &a && *reader == colleague).then(|| {
                KeySwappingProxy::lying(
                    node.port,
                    Lie::Swap {
                        victim: crate::consent::account_of(&c.patient),
                        attacker: stranger.clone(),
                        only: "/v1/emergency/break-glass/".into(),
                    },
                )
            });
            let via = proxy.as_ref().map_or(url, |p| p.url.as_str());
            let out = ok(
                &["record", "get", pmr, "--wallet", reader, "--break-glass", &bg, "-o", &back_s],
                &[("MEDLEDGER_NODE", via)],
            );
            assert!(proxy.is_none_or(|p| p.lies() > 0), "the proxy did not lie");
            assert!(out.contains("verified"), "{out}");
            assert_eq!(std::fs::read(&back).unwrap(), content, "{pmr} read by {reader}");
            std::fs::remove_file(&back).unwrap();
        }
        ok(&["emergency", "end", "--wallet", reader, "--break-glass", &bg], &env);
    }
}

/// The cast's patient sets an emergency profile whose key piece the cast's hospital keeps,
/// and `doctor` declares break-glass on them: the declaration's id.
fn custodied_break_glass(c: &crate::registry::Cast, doctor: &str, env: &[(&str, &str)]) -> String {
    ok(
        &["emergency", "profile", "--wallet", &c.patient, "--blood-type", "A+"]
            .into_iter()
            .chain(["--custodians", &c.hospital_account])
            .collect::<Vec<_>>(),
        env,
    );
    let out = ok(
        &["emergency", "break-glass", "--wallet", doctor, "--patient", &c.patient_id]
            .into_iter()
            .chain(["--code", "unconscious", "--reason", "unconscious after a road accident"])
            .collect::<Vec<_>>(),
        env,
    );
    id_of(&out)
}

/// A custodian releases its piece to the doctor the declaring transaction names, proven
/// against its trust anchor, never to the one the node's view names: a relay that puts
/// another doctor in every answer gets nothing released.
#[test]
fn a_custodian_releases_only_to_the_doctor_the_declaration_proves() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let url = node.url.as_str();
    let env = [("MEDLEDGER_NODE", url)];
    let colleague = crate::registry::wallet(tmp.path(), "colleague", url);
    let onboarded = ok(
        &["doctor", "onboard", "--wallet", &c.hospital]
            .into_iter()
            .chain(["--identity", &crate::registry::identity(&colleague)])
            .chain(["--registration-number", "GMC-2222222", "--name", "Dr. Night"])
            .chain(["--specialisation", "emergency medicine"])
            .collect::<Vec<_>>(),
        &env,
    );
    let colleague_account = account(&onboarded);
    let bg = custodied_break_glass(&c, &colleague, &env);
    // The relay names the hospital's other doctor wherever the declaring one appears.
    let proxy = crate::wallet_trust::KeySwappingProxy::start(
        node.port,
        colleague_account.clone(),
        c.doctor_account.clone(),
    );
    let size = node.log_size();
    let release = ["emergency", "release", "--wallet", &c.hospital, "--break-glass", &bg];
    let err = fails(&release.into_iter().chain(["--node", &proxy.url]).collect::<Vec<_>>(), &[]);
    assert!(err.contains("nothing was released"), "{err}");
    assert_eq!(node.log_size(), size, "a release reached the log");
    // Straight from the node: released to the declaring doctor, who opens the profile.
    let out = ok(&release, &env);
    assert!(out.contains(&format!("released to doctor {colleague_account}")), "{out}");
    let out = ok(&["emergency", "open", "--wallet", &colleague, "--break-glass", &bg], &env);
    assert!(out.contains("A+"), "{out}");
}

/// A custodian releases its piece only for a declaration whose signer the ledger proves a
/// doctor: anyone can sign a break-glass (the ledger refuses it, yet it is in the log), and a
/// node can serve it as applied. A registered patient's declaration, served so, gets nothing
/// released and nothing stored or sent.
#[test]
fn a_custodian_releases_nothing_for_a_declaration_no_doctor_signed() {
    use crate::wallet_trust::{KeySwappingProxy, Lie, client_of};
    use medledger_client::Wallet;
    use medledger_core::{block::Outcome, tx::SignedTransaction};
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let url = node.url.as_str();
    let env = [("MEDLEDGER_NODE", url)];
    let bg = custodied_break_glass(&c, &c.doctor, &env);
    let (stranger, _) =
        crate::registry::register_patient(tmp.path(), url, &c.hospital, "S. Tranger");
    // The stranger signs the same declaration.
    let (rt, client) = client_of(&c.patient, &node);
    let real = rt.block_on(client.transaction(&bg.parse().unwrap())).unwrap();
    let body = SignedTransaction::decode(&hex::decode(&real.tx_hex).unwrap()).unwrap().tx.body;
    let mut w = Wallet::load(&stranger).unwrap();
    let id = w.unlock(PASS).unwrap();
    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
    let forged = medledger_client::tx::build(&id, w.account(), &chain, 1, body);
    let _ = http(node.port, "POST", "/v1/transactions", &forged.encode()).unwrap();
    let mut proof = rt.block_on(client.transaction(&forged.hash())).expect("in the log");
    assert!(matches!(proof.receipt.outcome, Outcome::Refused { .. }), "{:?}", proof.receipt);
    proof.receipt.outcome = real.receipt.outcome.clone();
    let view = rt.block_on(client.break_glass(&bg.parse().unwrap())).unwrap();
    let mut view = serde_json::to_value(&view).unwrap();
    let forged_id = forged.hash().to_string();
    view["id"] = serde_json::Value::from(forged_id.as_str());
    view["doctor"] = serde_json::Value::from(w.account().to_string());
    let lie = Lie::All(vec![
        Lie::Answer {
            path: format!("/v1/emergency/break-glass/{forged_id}"),
            body: serde_json::to_vec(&view).unwrap(),
        },
        Lie::Answer {
            path: format!("/v1/transactions/{forged_id}"),
            body: serde_json::to_vec(&proof).unwrap(),
        },
    ]);
    let proxy = KeySwappingProxy::lying(node.port, lie);
    let size = node.log_size();
    let release = ["emergency", "release", "--wallet", &c.hospital, "--break-glass", &forged_id];
    let err = fails(&release.into_iter().chain(["--node", &proxy.url]).collect::<Vec<_>>(), &[]);
    assert!(proxy.lies() >= 2, "the proxy did not lie: {err}");
    assert!(err.contains("nothing was released"), "{err}");
    assert!(
        err.contains(&format!(
            "declared by {}, whom the ledger does not prove a doctor",
            w.account()
        )),
        "{err}"
    );
    proxy.sent_nothing("the release");
    assert_eq!(node.log_size(), size, "a release reached the log");
}
