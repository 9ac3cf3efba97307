//! `medledger patient amend` (issue 10 item 6): the registering hospital corrects a patient's
//! sealed details; `patient show` opens the corrected details for the patient, the fields not
//! given are kept, and the patient's trail records the correction. Bad dates, an empty
//! amendment and another signer are refused with nothing changed.

use crate::{harness::*, registry::cast};

#[test]
fn the_registering_hospital_amends_a_patients_details() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let pid = c.patient_id.as_str();

    // Bad input is refused before anything is sent.
    let size = node.log_size();
    for bad in ["02/01/1980", "2090-13-45", "2999-01-01"] {
        let err = fails(
            &["patient", "amend", pid, "--wallet", &c.hospital, "--date-of-birth", bad],
            &env,
        );
        assert!(err.contains("date"), "{bad}: {err}");
    }
    let err = fails(&["patient", "amend", pid, "--wallet", &c.hospital], &env);
    assert!(err.contains("nothing to amend"), "{err}");
    // Only the registering hospital.
    let err = fails(&["patient", "amend", pid, "--wallet", &c.doctor, "--name", "Mallory"], &env);
    assert!(err.contains("only the hospital that registered"), "{err}");
    assert_eq!(node.log_size(), size, "a refused amendment reached the log");

    let out = ok(
        &[
            "patient",
            "amend",
            pid,
            "--wallet",
            &c.hospital,
            "--name",
            "Jane Doe",
            "--date-of-birth",
            "1981-02-03",
            "--attendant-phone",
            "+44 7700 900999",
        ],
        &env,
    );
    assert!(out.contains("patient details amended"), "{out}");

    // The patient sees the corrected details, with what was not given kept.
    let shown = ok(&["patient", "show", pid, "--wallet", &c.patient], &env);
    let details = shown.lines().find(|l| l.starts_with("details")).unwrap_or_default();
    assert!(details.contains("Jane Doe") && details.contains("1981-02-03"), "{shown}");
    assert!(details.contains("+44 7700 900123"), "the phone was not kept:\n{shown}");
    assert!(details.contains("matches the ledger's commitment"), "{shown}");
    let attendant = shown.lines().find(|l| l.starts_with("attendant")).unwrap_or_default();
    assert!(attendant.contains("John Roe") && attendant.contains("+44 7700 900999"), "{shown}");
    assert!(!shown.contains("Jane Roe"), "the old name is still shown:\n{shown}");

    // The patient's trail records who amended it.
    let trail = ok(&["audit", "trail", "--wallet", &c.patient, "--json"], &env);
    let events: serde_json::Value = serde_json::from_str(&trail).unwrap();
    let amended: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"].get("patient_amended").is_some())
        .collect();
    assert_eq!(amended.len(), 1, "{trail}");
    assert_eq!(amended[0]["actor"], c.hospital_account.as_str(), "{trail}");
}
