//! What a patient reads: names beside account ids, dates in local time, no Debug text in the
//! audit trail and in `watch`, transferred records still listed, erasure confirmed before it
//! happens, and the doctor directory's key status.

use crate::{harness::*, registry::cast};

/// Rust Debug renderings that must never reach a patient.
const DEBUG_TEXT: [&str; 6] = ["Treatment", "LabReport", "Allow(", "Deny(", "Some(", "Ownership"];

#[test]
fn patients_read_names_local_times_and_plain_words() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let url = node.url.as_str();
    // A zone with a half-hour offset, so that local time cannot be mistaken for UTC.
    let env = [("MEDLEDGER_NODE", url), ("TZ", "Asia/Kolkata")];
    let file = tmp.path().join("bloods.txt");
    std::fs::write(&file, b"Hb 13.5 g/dL").unwrap();
    let out = ok(
        &["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id, "--json"]
            .into_iter()
            .chain(["--file", &file.display().to_string(), "--category", "lab_report"])
            .collect::<Vec<_>>(),
        &env,
    );
    let pmr = serde_json::from_str::<serde_json::Value>(&out).unwrap()["pmr"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&["consent", "grant", "--wallet", &c.patient, "--grantee", &c.doctor_account], &env);
    let back = tmp.path().join("back.txt").display().to_string();
    ok(&["record", "get", &pmr, "--wallet", &c.doctor, "-o", &back], &env);

    // The audit trail: names from the directory, times in the local zone, words not Debug.
    let trail = ok(&["audit", "trail", "--wallet", &c.patient], &env);
    assert!(trail.contains(&format!("{} (Dr. Ada Quill)", c.doctor_account)), "{trail}");
    assert!(trail.contains(&format!("{} (St. Elsewhere)", c.hospital_account)), "{trail}");
    assert!(trail.contains("+05:30"), "no local time in:\n{trail}");
    assert!(trail.contains("lab report") && trail.contains("for treatment"), "{trail}");
    for debug in DEBUG_TEXT {
        assert!(!trail.contains(debug), "Debug text {debug:?} in the audit trail:\n{trail}");
    }
    // Grants show their end in local time, not epoch milliseconds.
    let who = ok(&["consent", "who-can-see", "--wallet", &c.patient], &env);
    assert!(who.contains("(Dr. Ada Quill)") && who.contains("+05:30"), "{who}");
    assert!(!who.contains(" ms"), "{who}");

    // `watch` says what happened, with names and local times, as the trail does.
    let watched = ok(&["watch", "--wallet", &c.patient, "--from-start", "--count", "3"], &env);
    assert!(watched.contains("granted") && watched.contains("(Dr. Ada Quill)"), "{watched}");
    assert!(watched.contains("+05:30"), "{watched}");
    for debug in DEBUG_TEXT {
        assert!(!watched.contains(debug), "Debug text {debug:?} in watch:\n{watched}");
    }

    // A record transferred to a delegate still shows in the patient's list, with its holder.
    ok(&["consent", "delegate", &c.hospital_account, "--wallet", &c.patient], &env);
    ok(&["record", "transfer", &pmr, "--to", &c.hospital_account, "--wallet", &c.patient], &env);
    let listed = ok(&["record", "list", "--wallet", &c.patient], &env);
    let row = listed
        .lines()
        .find(|l| l.starts_with(&pmr))
        .unwrap_or_else(|| panic!("the transferred record is not listed:\n{listed}"));
    assert!(row.contains("transferred to") && row.contains("(St. Elsewhere)"), "{row}");
    let listed = ok(&["record", "list", "--wallet", &c.patient, "--json"], &env);
    assert!(listed.contains(&pmr), "{listed}");

    // Erasure asks first: with stdin not a terminal and no --yes, nothing is erased.
    let err = fails(&["record", "erase", &pmr, "--wallet", &c.patient], &env);
    assert!(err.contains("--yes") && err.contains("nothing was erased"), "{err}");
    let listed = ok(&["record", "list", "--wallet", &c.patient], &env);
    assert!(!listed.contains("erased"), "{listed}");
    ok(&["record", "erase", &pmr, "--wallet", &c.patient, "--yes"], &env);
    let listed = ok(&["record", "list", "--wallet", &c.patient], &env);
    assert!(listed.contains("erased"), "{listed}");

    // The doctor directory shows each doctor's key status.
    let doctors = ok(&["doctor", "list", "--wallet", &c.patient], &env);
    let row = doctors.lines().find(|l| l.starts_with(&c.doctor_account)).unwrap();
    assert!(row.contains("active") && row.contains("(St. Elsewhere)"), "{row}");
    ok(&["key", "revoke", &c.doctor_account, "--wallet", &c.hospital], &env);
    let doctors = ok(&["doctor", "list", "--wallet", &c.patient], &env);
    let row = doctors.lines().find(|l| l.starts_with(&c.doctor_account)).unwrap();
    assert!(row.contains("revoked"), "{row}");
    let doctors = ok(&["doctor", "list", "--wallet", &c.patient, "--json"], &env);
    let doctors: serde_json::Value = serde_json::from_str(&doctors).unwrap();
    assert_eq!(doctors[0]["key_status"], "revoked", "{doctors}");
}
