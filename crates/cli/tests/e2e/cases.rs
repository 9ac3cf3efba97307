//! Case logs end to end: a doctor opens a case, two doctors write in it, it is sealed,
//! exported and verified offline; doctors the patient did not authorise are refused, nothing
//! is added after the seal, and `case verify` names a reordered, an altered and a missing
//! entry in a tampered export.

use std::path::Path;

use medledger_client::{
    Wallet,
    cases::{read_export, write_export},
};
use medledger_core::tx::{
    TxBody,
    consent::{AccessTx, Action, Purpose, RecordCategory, Resource},
};

use crate::{harness::*, registry::cast};

fn account_of(wallet: &str) -> String {
    Wallet::load(wallet).unwrap().account().to_string()
}

/// The word after `prefix` in `out`.
/// Opens a case for the cast's patient as the cast's doctor, titled `title`: its id.
pub(crate) fn open_case(c: &crate::registry::Cast, env: &[(&str, &str)], title: &str) -> String {
    let out = ok(
        &["case", "open", "--wallet", &c.doctor, "--patient", &c.patient_id, "--title", title],
        env,
    );
    word_after(&out, "case ")
}

pub(crate) fn word_after(out: &str, prefix: &str) -> String {
    let start =
        out.find(prefix).unwrap_or_else(|| panic!("no {prefix:?} in:\n{out}")) + prefix.len();
    out[start..].split_whitespace().next().unwrap().to_owned()
}

fn trail_kinds(wallet: &str, env: &[(&str, &str)]) -> Vec<String> {
    let out = ok(&["audit", "trail", "--wallet", wallet, "--json"], env);
    let events: serde_json::Value = serde_json::from_str(&out).unwrap();
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_object().unwrap().keys().next().unwrap().clone())
        .collect()
}

/// The patient's last audit event that is an access to a case.
fn last_case_access(patient: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let out = ok(&["audit", "trail", "--wallet", patient, "--json"], env);
    let events: serde_json::Value = serde_json::from_str(&out).unwrap();
    events
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["kind"]["access"]["resource"]["case"].is_string())
        .unwrap_or_else(|| panic!("no case access in the trail: {out}"))
        .clone()
}

/// A sealed case written by two doctors, exported to `file`: returns the case id.
struct Written {
    case: String,
    hospital: String,
    doctor: String,
    second: String,
    patient: String,
}

fn write_case(dir: &Path, node: &Node, entries: &[(&str, &str)], file: &Path) -> Written {
    let c = cast(dir, node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    // A second doctor, at the same hospital.
    let second = crate::registry::wallet(dir, "second", &node.url);
    ok(
        &[
            "doctor",
            "onboard",
            "--wallet",
            &c.hospital,
            "--identity",
            &crate::registry::identity(&second),
            "--registration-number",
            "GMC-7654321",
            "--name",
            "Dr. Sam Okafor",
            "--specialisation",
            "anaesthesia",
        ],
        &env,
    );
    let out = ok(
        &["case", "open", "--wallet", &c.doctor, "--patient", &c.patient_id]
            .into_iter()
            .chain(["--title", "Coronary bypass", "--notes", "triple bypass, elective"])
            .collect::<Vec<_>>(),
        &env,
    );
    let case = word_after(&out, "case ");
    assert_eq!(case, format!("C{}-1", c.patient_id), "{out}");

    // The second doctor is not authorised yet: refused, and cannot even see the case.
    let err = fails(&["case", "append", &case, "--wallet", &second, "--text", "early"], &env);
    assert!(err.contains(&format!("no case {case}")), "{err}");

    // The patient authorises them for this case and shares the case key with them.
    let second_account = account_of(&second);
    let scope = format!("case:{case}");
    ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &second_account]
            .into_iter()
            .chain(["--scope", &scope, "--purpose", "treatment", "--days", "30"])
            .collect::<Vec<_>>(),
        &env,
    );
    ok(&["case", "share", &case, "--wallet", &c.patient, "--with", &second_account], &env);

    for (i, (who, text)) in entries.iter().enumerate() {
        let wallet = if *who == "second" { &second } else { &c.doctor };
        let out = ok(&["case", "append", &case, "--wallet", wallet, "--text", text], &env);
        assert!(out.contains(&format!("entry {} appended to case {case}", i + 1)), "{out}");
    }
    let out = ok(&["case", "seal", &case, "--wallet", &c.doctor], &env);
    assert!(out.contains(&format!("sealed with {} entries", entries.len())), "{out}");
    let file_s = file.display().to_string();
    let out = ok(&["case", "export", &case, "--wallet", &c.patient, "-o", &file_s], &env);
    assert!(out.contains("written to"), "{out}");
    Written { case, hospital: c.hospital, doctor: c.doctor, second, patient: c.patient }
}

#[test]
fn a_case_is_written_by_two_doctors_sealed_exported_and_verified() {
    let tmp = tempdir();
    let mut node = Node::start(&tmp.path().join("data"));
    let url = node.url.clone();
    let env = [("MEDLEDGER_NODE", url.as_str())];
    let file = tmp.path().join("case.export");
    let w = write_case(
        tmp.path(),
        &node,
        &[
            ("doctor", "Day 0: admitted, consent for CABG"),
            ("second", "Anaesthesia: uneventful induction"),
            ("doctor", "Day 1: extubated, stable"),
        ],
        &file,
    );
    let case = &w.case;

    // The patient was notified of each step.
    let kinds = trail_kinds(&w.patient, &env);
    let case_kinds: Vec<&str> =
        kinds.iter().map(String::as_str).filter(|k| k.starts_with("case")).collect();
    assert_eq!(
        case_kinds,
        ["case_opened", "case_key_shared", "case_entry_appended", "case_entry_appended"]
            .into_iter()
            .chain(["case_entry_appended", "case_sealed"])
            .collect::<Vec<_>>(),
        "{kinds:?}"
    );

    // Nothing is added after the seal; a correction is a follow-up case.
    let err = fails(&["case", "append", case, "--wallet", &w.doctor, "--text", "late"], &env);
    assert!(err.contains("sealed"), "{err}");
    let out = ok(
        &["case", "open", "--wallet", &w.doctor, "--patient", &account_of(&w.patient)]
            .into_iter()
            .chain(["--title", "Correction", "--follow-up-of", case])
            .collect::<Vec<_>>(),
        &env,
    );
    let follow_up = word_after(&out, "case ");
    let listed = ok(&["case", "list", "--wallet", &w.patient, "--json"], &env);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["follow_ups"][0], follow_up.as_str(), "{listed}");
    assert_eq!(listed[1]["follow_up_of"], case.as_str(), "{listed}");
    // A doctor let into the follow-up alone sees it, but not which case it follows up (a
    // Case-ID carries the Patient-ID and a count): the link is left out, as a record's to
    // versions the reader may not see.
    let (consultant, consultant_account) =
        crate::wallet_trust::onboard(tmp.path(), &node, &w.hospital, "consultant");
    ok(
        &["consent", "grant", "--wallet", &w.patient, "--grantee", &consultant_account]
            .into_iter()
            .chain(["--scope", &format!("case:{follow_up}")])
            .collect::<Vec<_>>(),
        &env,
    );
    let (rt, client) = crate::wallet_trust::client_of(&consultant, &node);
    let seen = rt.block_on(client.case(&follow_up)).unwrap().expect("the follow-up is seen");
    assert_eq!(seen.follow_up_of, None, "the consultant was shown the case it follows up");
    assert!(rt.block_on(client.case(case)).unwrap().is_none(), "the prior case is not seen");
    let (rt, client) = crate::wallet_trust::client_of(&w.patient, &node);
    let prior = rt.block_on(client.case(case)).unwrap().unwrap();
    assert_eq!(prior.follow_ups, vec![follow_up.clone()], "the patient sees both");
    // The second doctor, let into the first case alone, is not shown its follow-up.
    let (rt, client) = crate::wallet_trust::client_of(&w.second, &node);
    let prior = rt.block_on(client.case(case)).unwrap().expect("the first case is seen");
    assert!(prior.follow_ups.is_empty(), "shown a follow-up: {:?}", prior.follow_ups);

    // A crash (kill -9) and restart loses nothing: the node re-applies what its ledger file
    // had not made durable, and the case reads back whole.
    node.restart();

    // The patient reads the whole case, decrypted and verified here.
    let out = ok(&["case", "show", case, "--wallet", &w.patient], &env);
    for text in ["Coronary bypass", "triple bypass", "uneventful induction", "extubated"] {
        assert!(out.contains(text), "{text} missing:\n{out}");
    }
    assert!(out.contains("Dr. Sam Okafor") && out.contains("Dr. Ada Quill"), "{out}");
    assert!(out.contains("3 entries, sealed at block"), "{out}");
    // The second doctor, holding the key, reads it too.
    let out = ok(&["case", "show", case, "--wallet", &w.second, "--json"], &env);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["entries"][1]["text"], "Anaesthesia: uneventful induction", "{shown}");
    // H2: the key is not enough. A deny rule naming the second doctor stops their next read of
    // the case's content at once, though they hold the key and wrote in it.
    let second_account = account_of(&w.second);
    ok(&["consent", "deny", "--wallet", &w.patient, "--grantee", &second_account], &env);
    let err = fails(&["case", "show", case, "--wallet", &w.second], &env);
    assert!(err.contains("access denied"), "{err}");
    let denial = last_case_access(&w.patient, &env);
    assert_eq!(denial["actor"], second_account.as_str(), "{denial}");
    assert!(denial["kind"]["access"]["decision"].get("deny").is_some(), "{denial}");
    let out = ok(&["case", "show", case, "--wallet", &w.patient], &env);
    assert!(out.contains("uneventful induction"), "the patient still reads it:\n{out}");

    // Offline: the node is stopped; the wallet's trusted node key is all that is needed.
    drop(node);
    let file_s = file.display().to_string();
    let out = ok(&["case", "verify", &file_s, "--wallet", &w.patient], &[]);
    assert!(out.contains(&format!("case {case}: 3 entries, sealed at block")), "{out}");
    assert!(out.contains("every entry present and in order"), "{out}");
    // Another node key does not vouch for it.
    let other = "11".repeat(32);
    let err = fails(&["case", "verify", &file_s, "--node-key", &other], &[]);
    assert!(err.contains("not from the trusted node"), "{err}");
}

#[test]
fn verify_names_a_reordered_an_altered_and_a_missing_entry() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let file = tmp.path().join("case.export");
    let w = write_case(
        tmp.path(),
        &node,
        &[("doctor", "one"), ("second", "two"), ("doctor", "three"), ("second", "four")],
        &file,
    );
    drop(node);
    let good = read_export(&file).unwrap();
    let tampered = tmp.path().join("tampered.export");
    let tampered_s = tampered.display().to_string();
    let verify = |export: &medledger_api::CaseExport| -> String {
        write_export(&tampered, export).unwrap();
        fails(&["case", "verify", &tampered_s, "--wallet", &w.patient], &[])
    };

    // Reordered: entries 2 and 3 swapped.
    let mut e = good.clone();
    e.entries.swap(1, 2);
    let err = verify(&e);
    assert!(
        err.contains("entries are reordered: position 2 holds entry 3, where entry 2 belongs"),
        "{err}"
    );

    // Altered content: one byte of the third entry's ciphertext.
    let mut e = good.clone();
    let blob = e.entries[2].blob.as_mut().unwrap();
    blob[40] ^= 1;
    let err = verify(&e);
    assert!(err.contains("entry 3 was altered: its content hashes to"), "{err}");

    // Altered transaction: one byte of the second entry's signed append.
    let mut e = good.clone();
    let tx = &mut e.entries[1].tx.tx;
    let last = tx.len() - 1;
    tx[last] ^= 1;
    let err = verify(&e);
    assert!(err.contains("entry 2 was altered"), "{err}");

    // Missing: the second entry dropped; then the last.
    let mut e = good.clone();
    e.entries.remove(1);
    let err = verify(&e);
    assert!(err.contains("entry 2 is missing"), "{err}");
    let mut e = good.clone();
    e.entries.pop();
    let err = verify(&e);
    assert!(
        err.contains("entry 4 is missing: the seal covers 4 entries, the export holds 3"),
        "{err}"
    );

    // A change the chain does not show (the seal's block time) breaks the node's signature.
    let mut e = good.clone();
    e.seal.as_mut().unwrap().header.time_ms += 1;
    let err = verify(&e);
    assert!(err.contains("changed after the node signed it"), "{err}");

    // The untouched export still verifies.
    write_export(&tampered, &good).unwrap();
    let out = ok(&["case", "verify", &tampered_s, "--wallet", &w.patient], &[]);
    assert!(out.contains("4 entries, sealed"), "{out}");
}

/// Issue 11 item 2 (H2): reading a case is a committed access event, like reading a record.
/// A grantee's read is in the patient's trail with the reader; once the grant is revoked the
/// next read is denied and the denial is in the trail too; an access naming another case or
/// a record is refused before anything is ordered.
#[test]
fn case_reads_are_access_events_in_the_patients_trail() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let c = cast(tmp.path(), &node);
    let case = open_case(&c, &env, "Knee arthroscopy");
    ok(&["case", "append", &case, "--wallet", &c.doctor, "--text", "Day 0: admitted"], &env);

    // A reader: a doctor with a grant for this case and the case key, who writes nothing.
    let reader = crate::registry::wallet(tmp.path(), "reader", &node.url);
    ok(
        &["doctor", "onboard", "--wallet", &c.hospital]
            .into_iter()
            .chain(["--identity", &crate::registry::identity(&reader)])
            .chain(["--registration-number", "GMC-1112223", "--name", "Dr. Reed"])
            .chain(["--specialisation", "orthopaedics"])
            .collect::<Vec<_>>(),
        &env,
    );
    let reader_account = account_of(&reader);
    let granted = ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &reader_account]
            .into_iter()
            .chain(["--scope", &format!("case:{case}"), "--purpose", "treatment"])
            .chain(["--days", "30"])
            .collect::<Vec<_>>(),
        &env,
    );
    let grant = granted
        .split_whitespace()
        .find(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("a grant id in {granted}"))
        .to_owned();
    ok(&["case", "share", &case, "--wallet", &c.patient, "--with", &reader_account], &env);

    let out = ok(&["case", "show", &case, "--wallet", &reader], &env);
    assert!(out.contains("Day 0: admitted"), "{out}");
    let read = last_case_access(&c.patient, &env);
    assert_eq!(read["actor"], reader_account.as_str(), "{read}");
    assert_eq!(read["kind"]["access"]["resource"]["case"], case.as_str(), "{read}");
    assert!(read["kind"]["access"]["decision"].get("allow").is_some(), "{read}");
    let shown = ok(&["audit", "trail", "--wallet", &c.patient], &env);
    assert!(
        shown.contains(&format!("read case {case} for treatment: ALLOWED by grant {grant}")),
        "the trail shows the case read:\n{shown}"
    );

    // Revoked: the key is still in the reader's wallet, but the next read is denied, and the
    // denial is in the patient's trail.
    ok(&["consent", "revoke", "--wallet", &c.patient, &grant], &env);
    let err = fails(&["case", "show", &case, "--wallet", &reader], &env);
    assert!(err.contains("access denied"), "{err}");
    let denial = last_case_access(&c.patient, &env);
    assert_eq!(denial["actor"], reader_account.as_str(), "{denial}");
    assert!(denial["kind"]["access"]["decision"].get("deny").is_some(), "{denial}");
    assert!(denial["seq"].as_u64() > read["seq"].as_u64(), "{denial}");

    // An access naming another case, or a record, does not open this case: refused as
    // malformed, even for the patient, and nothing is ordered.
    let mut w = Wallet::load(&c.patient).unwrap();
    let patient = w.account();
    let identity = w.unlock(PASS).unwrap();
    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
    let other_case = format!("C{}-2", c.patient_id);
    let record = format!("{}01012020", c.patient_id);
    let size = node.log_size();
    for (case_named, record_named) in [(Some(other_case), None), (None, Some(record))] {
        let access = TxBody::Access(AccessTx {
            resource: Resource {
                patient,
                category: record_named.as_ref().map(|_| RecordCategory::LabReport),
                record: record_named,
                case: case_named,
            },
            action: Action::Read,
            purpose: Purpose::Treatment,
        });
        let tx = medledger_client::tx::build(&identity, patient, &chain, 1_000_000, access);
        let r = http(node.port, "POST", &format!("/v1/cases/{case}/read"), &tx.encode()).unwrap();
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["code"], "malformed", "{}", r.text());
    }
    assert_eq!(node.log_size(), size, "a mismatched access is not ordered");
}

/// `case show` says the read is logged before it verifies what the node serves: the read is
/// committed either way. Here a relay rewrites, in every answer, the case a follow-up
/// follows: the follow-up's export no longer verifies, yet the logged read is reported.
#[test]
fn a_case_read_is_reported_logged_even_when_what_is_served_does_not_verify() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let c = cast(tmp.path(), &node);
    let open = |extra: &[&str]| {
        let out = ok(
            &["case", "open", "--wallet", &c.doctor, "--patient", &c.patient_id]
                .into_iter()
                .chain(extra.iter().copied())
                .collect::<Vec<_>>(),
            &env,
        );
        word_after(&out, "case ")
    };
    let first = open(&["--title", "Knee arthroscopy"]);
    ok(&["case", "seal", &first, "--wallet", &c.doctor], &env);
    let case = open(&["--title", "Correction", "--follow-up-of", &first]);
    let other = format!("C{}-9", c.patient_id);
    let proxy = crate::wallet_trust::KeySwappingProxy::start(node.port, first.clone(), other);
    let err = fails(&["case", "show", &case, "--wallet", &c.patient, "--node", &proxy.url], &[]);
    assert!(err.contains(&format!("read of case {case} logged: audit event")), "{err}");
    assert!(err.contains("does NOT verify"), "{err}");
    // The read is in the patient's trail indeed.
    let read = last_case_access(&c.patient, &env);
    assert_eq!(read["kind"]["access"]["resource"]["case"], case.as_str(), "{read}");
}
