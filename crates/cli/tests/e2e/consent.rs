//! Consent through the CLI: grant, revoke, request, approve, decline, deny rules, delegates,
//! and the refusals that must change nothing.

use crate::{harness::*, registry::cast};

pub(crate) fn account_of(wallet: &str) -> String {
    let out = ok(&["wallet", "show", "--wallet", wallet, "--json"], &[]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("wallet show --json");
    v["account"].as_str().expect("account").to_owned()
}

pub(crate) fn id(out: &str) -> String {
    let line =
        out.lines().find(|l| l.starts_with("id ")).unwrap_or_else(|| panic!("no id in:\n{out}"));
    line[3..].trim().to_owned()
}

#[test]
fn consent_through_the_cli() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let patient_account = account_of(&c.patient);

    // The patient grants the doctor lab reports for 7 days, then revokes. The category is
    // spelled as `record add --category` takes it (`lab_report` works too).
    let out = ok(
        &[
            "consent",
            "grant",
            "--wallet",
            &c.patient,
            "--grantee",
            &c.doctor_account,
            "--scope",
            "categories:lab-report",
            "--days",
            "7",
        ],
        &env,
    );
    let grant = id(&out);
    assert_eq!(grant.len(), 64, "{out}");
    // The doctor cannot revoke the patient's grant; the patient can, once.
    let err = fails(&["consent", "revoke", &grant, "--wallet", &c.doctor], &env);
    assert!(err.contains("unauthorised"), "{err}");
    ok(&["consent", "revoke", &grant, "--wallet", &c.patient], &env);
    let err = fails(&["consent", "revoke", &grant, "--wallet", &c.patient], &env);
    assert!(err.contains("already revoked"), "{err}");
    // Revoked, and blocks on: no longer among who can see, listed as over.
    ok(&["consent", "grant", "--wallet", &c.patient, "--grantee", &c.hospital_account], &env);
    let who = ok(&["consent", "who-can-see", "--wallet", &c.patient], &env);
    let (now, over) = who.split_once("no longer in force:").expect(&who);
    assert!(!now.contains(&grant), "{who}");
    let line = over.lines().find(|l| l.contains(&grant)).expect(&who);
    assert!(line.ends_with("(revoked)"), "{line}");

    // A doctor cannot grant access to someone else's records.
    let err = fails(
        &[
            "consent",
            "grant",
            "--wallet",
            &c.doctor,
            "--patient",
            &patient_account,
            "--grantee",
            &c.hospital_account,
        ],
        &env,
    );
    assert!(err.contains("unauthorised"), "{err}");

    // The doctor asks; the doctor cannot approve their own request; the patient approves.
    let out = ok(
        &[
            "consent",
            "request",
            "--wallet",
            &c.doctor,
            "--patient",
            &patient_account,
            "--purpose",
            "treatment",
        ],
        &env,
    );
    let request = id(&out);
    let err = fails(&["consent", "approve", &request, "--wallet", &c.doctor], &env);
    assert!(err.contains("unauthorised"), "{err}");
    let out = ok(
        &["consent", "approve", &request, "--wallet", &c.patient, "--scope", "all", "--days", "1"],
        &env,
    );
    assert_eq!(id(&out).len(), 64);
    let err = fails(&["consent", "decline", &request, "--wallet", &c.patient], &env);
    assert!(err.contains("already answered"), "{err}");

    // Deny rules: an empty one is refused before anything is sent; a real one is added and
    // removed.
    let err = fails(&["consent", "deny", "--wallet", &c.patient], &env);
    assert!(err.contains("needs"), "{err}");
    let out = ok(&["consent", "deny", "--wallet", &c.patient, "--category", "psychiatry"], &env);
    let rule = id(&out);
    ok(&["consent", "undeny", &rule, "--wallet", &c.patient], &env);
    let err = fails(&["consent", "undeny", &rule, "--wallet", &c.patient], &env);
    assert!(err.contains("not found"), "{err}");

    // Bad input is explained.
    let err = fails(
        &[
            "consent",
            "grant",
            "--wallet",
            &c.patient,
            "--grantee",
            &c.doctor_account,
            "--scope",
            "everything",
        ],
        &env,
    );
    assert!(err.contains("not a scope"), "{err}");

    // A delegate (the hospital here, for the test) can grant on the patient's behalf once named.
    let err = fails(
        &[
            "consent",
            "grant",
            "--wallet",
            &c.hospital,
            "--patient",
            &patient_account,
            "--grantee",
            &c.doctor_account,
        ],
        &env,
    );
    assert!(err.contains("unauthorised"), "{err}");
    ok(&["consent", "delegate", &c.hospital_account, "--wallet", &c.patient], &env);
    // L7: scoped to records only, the delegate may not grant; who-can-see says so.
    let grant_by_delegate = [
        "consent",
        "grant",
        "--wallet",
        &c.hospital,
        "--patient",
        &patient_account,
        "--grantee",
        &c.doctor_account,
    ];
    let scope = |powers: &'static str| {
        let (delegate, wallet) = (c.hospital_account.as_str(), c.patient.as_str());
        vec!["consent", "delegate", delegate, "--powers", powers, "--wallet", wallet]
    };
    let bad = fails(&scope("records,everything"), &env);
    assert!(bad.contains("not a list of powers"), "{bad}");
    ok(&scope("records"), &env);
    let who = ok(&["consent", "who-can-see", "--wallet", &c.patient], &env);
    assert!(who.contains("(may: records)"), "{who}");
    let err = fails(&grant_by_delegate, &env);
    assert!(err.contains("without the consent power"), "{err}");
    ok(&scope("all"), &env);
    let who = ok(&["consent", "who-can-see", "--wallet", &c.patient], &env);
    assert!(who.contains("(may: consent, records, emergency)"), "{who}");
    ok(
        &[
            "consent",
            "grant",
            "--wallet",
            &c.hospital,
            "--patient",
            &patient_account,
            "--grantee",
            &c.doctor_account,
        ],
        &env,
    );
    ok(&["consent", "delegate", &c.hospital_account, "--remove", "--wallet", &c.patient], &env);
    let err = fails(
        &[
            "consent",
            "grant",
            "--wallet",
            &c.hospital,
            "--patient",
            &patient_account,
            "--grantee",
            &c.doctor_account,
        ],
        &env,
    );
    assert!(err.contains("unauthorised"), "{err}");
}
