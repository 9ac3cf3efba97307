//! Registry flows driven through the `medledger` CLI only.

use std::path::Path;

use crate::harness::*;

/// Wallets and accounts of a small network: a hospital, one of its doctors, one patient.
pub(crate) struct Cast {
    pub(crate) hospital: String,
    pub(crate) doctor: String,
    pub(crate) patient: String,
    pub(crate) hospital_account: String,
    pub(crate) doctor_account: String,
    pub(crate) patient_id: String,
}

pub(crate) fn wallet(dir: &Path, name: &str, node: &str) -> String {
    let path = dir.join(format!("{name}.wallet.json")).display().to_string();
    let out = ok(&["wallet", "create", "--out", &path, "--name", name, "--node", node], &[]);
    assert!(out.contains("identity: "), "{out}");
    path
}

pub(crate) fn identity(wallet: &str) -> String {
    ok(&["wallet", "show", "--wallet", wallet, "--identity-only"], &[]).trim().to_owned()
}

fn hospitals(node: &str, wallet: &str) -> serde_json::Value {
    serde_json::from_str(&ok(
        &["hospital", "list", "--node", node, "--wallet", wallet, "--json"],
        &[],
    ))
    .expect("hospital list --json")
}

fn doctors(node: &str, wallet: &str) -> serde_json::Value {
    serde_json::from_str(&ok(
        &["doctor", "list", "--node", node, "--wallet", wallet, "--json"],
        &[],
    ))
    .expect("doctor list --json")
}

/// The Patient-ID that `patient register` printed.
pub(crate) fn patient_id_of(out: &str) -> String {
    let start = out.find("Patient-ID ").unwrap_or_else(|| panic!("no Patient-ID in:\n{out}")) + 11;
    let patient_id: String = out[start..].chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(patient_id.len(), 5, "a Patient-ID has 5 digits:\n{out}");
    patient_id
}

/// Creates the hospital's wallet and has the regulator admit it ("St. Elsewhere"): the
/// wallet's path and the hospital's account.
pub(crate) fn admitted_hospital(dir: &Path, node: &Node) -> (String, String) {
    let url = node.url.as_str();
    let reg = node.regulator();
    let hospital = wallet(dir, "hospital", url);
    let out = ok(
        &[
            "hospital",
            "admit",
            "--wallet",
            &reg,
            "--node",
            url,
            "--identity",
            &identity(&hospital),
            "--registration-id",
            "GOV-4711",
            "--name",
            "St. Elsewhere",
            "--city",
            "Leeds",
            "--specialisation",
            "cardiology",
            "--contact",
            "+44 113 000 0000",
        ],
        &[],
    );
    let hospital_account = account(&out);
    tx_hash(&out);
    (hospital, hospital_account)
}

/// Creates a wallet for patient `name` and has `hospital` register them: the wallet's path and
/// the patient's account.
pub(crate) fn register_patient(
    dir: &Path,
    node: &str,
    hospital: &str,
    name: &str,
) -> (String, String) {
    let patient = wallet(dir, &name.replace([' ', '.'], ""), node);
    ok(
        &["patient", "register", "--wallet", hospital, "--name", name]
            .into_iter()
            .chain(["--identity", &identity(&patient)])
            .chain(["--date-of-birth", "1990-01-01", "--phone", "0799"])
            .chain(["--attendant-name", "T. Tranger", "--attendant-phone", "0798"])
            .chain(["--attendant-relationship", "parent"])
            .collect::<Vec<_>>(),
        &[("MEDLEDGER_NODE", node)],
    );
    let account = crate::consent::account_of(&patient);
    (patient, account)
}

/// Creates wallets, admits the hospital, onboards the doctor, registers the patient.
pub(crate) fn cast(dir: &Path, node: &Node) -> Cast {
    let url = node.url.as_str();
    let (hospital, hospital_account) = admitted_hospital(dir, node);
    let doctor = wallet(dir, "doctor", url);
    let patient = wallet(dir, "patient", url);

    let out = ok(
        &[
            "doctor",
            "onboard",
            "--wallet",
            &hospital,
            "--identity",
            &identity(&doctor),
            "--registration-number",
            "GMC-1234567",
            "--name",
            "Dr. Ada Quill",
            "--specialisation",
            "cardiology",
        ],
        &[("MEDLEDGER_NODE", url)],
    );
    let doctor_account = account(&out);

    let out = ok(
        &[
            "patient",
            "register",
            "--wallet",
            &hospital,
            "--identity",
            &identity(&patient),
            "--name",
            "Jane Roe",
            "--date-of-birth",
            "1980-01-02",
            "--phone",
            "+44 7700 900123",
            "--attendant-name",
            "John Roe",
            "--attendant-phone",
            "+44 7700 900456",
            "--attendant-relationship",
            "spouse",
        ],
        &[],
    );
    let patient_id = patient_id_of(&out);
    Cast { hospital, doctor, patient, hospital_account, doctor_account, patient_id }
}

#[test]
fn registry_happy_path_through_the_cli() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let url = node.url.as_str();
    let c = cast(tmp.path(), &node);

    let h = hospitals(url, &c.patient);
    let h = h.as_array().expect("a JSON array");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["account"], c.hospital_account.as_str());
    assert_eq!(h[0]["name"], "St. Elsewhere");
    assert_eq!(h[0]["city"], "Leeds");
    assert_eq!(h[0]["registration_id"], "GOV-4711");
    assert_eq!(h[0]["suspended"], false);
    let d = doctors(url, &c.patient);
    let d = d.as_array().expect("a JSON array");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["account"], c.doctor_account.as_str());
    assert_eq!(d[0]["hospital"], c.hospital_account.as_str());
    assert_eq!(d[0]["name"], "Dr. Ada Quill");
    assert_eq!(d[0]["registration_number"], "GMC-1234567");
    let only = ok(
        &["doctor", "list", "--node", url, "--wallet", &c.doctor, "--json"]
            .into_iter()
            .chain(["--hospital", c.hospital_account.as_str()])
            .collect::<Vec<_>>(),
        &[],
    );
    assert!(only.contains(&c.doctor_account), "{only}");

    // A doctor's wallet sees the registration but not the sealed details; the patient's
    // wallet opens them and checks them against the ledger's commitments. An unsigned read of
    // the registration is refused.
    let sealed = ok(&["patient", "show", &c.patient_id, "--node", url, "--wallet", &c.doctor], &[]);
    assert!(sealed.contains("sealed"), "{sealed}");
    assert!(
        !sealed.contains("Jane Roe"),
        "details must not be readable by anyone but the patient and hospital:\n{sealed}"
    );
    let unsigned = http(node.port, "GET", &format!("/v1/patients/{}", c.patient_id), b"").unwrap();
    assert_eq!(unsigned.status, 401, "{}", unsigned.text());
    let unsigned = http(node.port, "GET", "/v1/hospitals", b"").unwrap();
    assert_eq!(unsigned.status, 401, "{}", unsigned.text());
    let opened = ok(&["patient", "show", &c.patient_id, "--wallet", &c.patient], &[]);
    assert!(opened.contains("Jane Roe") && opened.contains("1980-01-02"), "{opened}");
    assert!(opened.contains("John Roe") && opened.contains("spouse"), "{opened}");
    assert_eq!(opened.matches("matches").count(), 2, "details and attendant both match:\n{opened}");
    assert!(opened.contains(&c.hospital_account), "{opened}");

    // The doctor rotates its key and can still act with the new one.
    let before = std::fs::read_to_string(&c.doctor).unwrap();
    let rotated = ok(&["key", "rotate", "--wallet", &c.doctor], &[]);
    assert!(rotated.contains("key rotated"), "{rotated}");
    assert_ne!(
        before,
        std::fs::read_to_string(&c.doctor).unwrap(),
        "the wallet file holds the new key"
    );
    let again = ok(&["key", "rotate", "--wallet", &c.doctor], &[]);
    let rotate_tx = tx_hash(&again);
    let shown = ok(&["wallet", "show", "--wallet", &c.doctor, "--json", "--ledger"], &[]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["account"], c.doctor_account.as_str(), "the account id survives rotation");
    assert_eq!(shown["ledger"]["nonce"], 2, "{shown}");

    // Inclusion proof, then consistency with the checkpoint the wallet recorded.
    let first = ok(&["proof", &rotate_tx, "--wallet", &c.hospital], &[]);
    assert!(first.contains("proof verified"), "{first}");
    assert!(first.contains("first checkpoint"), "{first}");
    let more = ok(&["key", "rotate", "--wallet", &c.hospital], &[]);
    let second = ok(&["proof", &tx_hash(&more), "--wallet", &c.hospital], &[]);
    assert!(second.contains("proof verified"), "{second}");
    assert!(second.contains("consistent with the checkpoint this wallet saw last"), "{second}");
    // A hash the ledger does not hold is an error, not a proof.
    let missing = fails(&["proof", &"ab".repeat(32), "--wallet", &c.hospital], &[]);
    assert!(missing.contains("no transaction"), "{missing}");
}

#[test]
fn refusals_through_the_cli_change_nothing() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let url = node.url.as_str();
    let reg = node.regulator();
    let c = cast(tmp.path(), &node);
    let listings = || (hospitals(url, &reg), doctors(url, &reg));
    let baseline = listings();

    // A doctor cannot admit hospitals.
    let stranger = wallet(tmp.path(), "stranger", url);
    let admit = |by: &str| {
        fails(
            &[
                "hospital",
                "admit",
                "--wallet",
                by,
                "--identity",
                &identity(&stranger),
                "--registration-id",
                "GOV-666",
                "--name",
                "Shady Clinic",
                "--city",
                "Nowhere",
                "--specialisation",
                "none",
                "--contact",
                "nobody",
            ],
            &[],
        )
    };
    let err = admit(&c.doctor);
    assert!(err.contains("unauthorised"), "{err}");
    assert_eq!(listings(), baseline, "a refused admission changed the directory");

    // A patient cannot onboard doctors.
    let onboard = |by: &str, reg_no: &str| {
        fails(
            &[
                "doctor",
                "onboard",
                "--wallet",
                by,
                "--identity",
                &identity(&stranger),
                "--registration-number",
                reg_no,
                "--name",
                "Dr. Nobody",
                "--specialisation",
                "quackery",
            ],
            &[],
        )
    };
    let err = onboard(&c.patient, "GMC-0000001");
    assert!(err.contains("unauthorised"), "{err}");
    assert_eq!(listings(), baseline, "a refused onboarding changed the directory");

    // The hospital revokes its doctor's key: the doctor can no longer sign.
    let revoked = ok(&["key", "revoke", &c.doctor_account, "--wallet", &c.hospital], &[]);
    assert!(revoked.contains("key revoked"), "{revoked}");
    let doctor_wallet_before = std::fs::read(&c.doctor).unwrap();
    let err = fails(&["key", "rotate", "--wallet", &c.doctor], &[]);
    assert!(err.contains("not the active key"), "{err}");
    assert_eq!(
        std::fs::read(&c.doctor).unwrap(),
        doctor_wallet_before,
        "a refused rotation changed the wallet"
    );
    let doc = ok(&["wallet", "show", "--wallet", &c.doctor, "--json"], &[]);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert!(doc["ledger"]["key"].is_null(), "the doctor's key is revoked: {doc}");
    // The directory shows the revocation, and nothing the refusals tried.
    let mut expected = baseline;
    expected.1[0]["key_status"] = "revoked".into();
    assert_eq!(listings(), expected);

    // The regulator suspends the hospital: it can no longer onboard.
    let out = ok(
        &[
            "hospital",
            "suspend",
            &c.hospital_account,
            "--reason",
            "audit pending",
            "--wallet",
            &reg,
            "--node",
            url,
        ],
        &[],
    );
    assert!(out.contains("hospital suspended"), "{out}");
    let (suspended_h, suspended_d) = listings();
    assert_eq!(suspended_h[0]["suspended"], true, "{suspended_h}");
    assert_eq!(suspended_d, expected.1);
    let err = onboard(&c.hospital, "GMC-0000002");
    assert!(err.contains("suspended"), "{err}");
    assert_eq!(
        listings(),
        (suspended_h.clone(), expected.1.clone()),
        "a refused onboarding changed the directory"
    );

    // Reinstated, it can again.
    ok(&["hospital", "reinstate", &c.hospital_account, "--wallet", &reg, "--node", url], &[]);
    assert_eq!(listings(), expected);
    let out = ok(
        &[
            "doctor",
            "onboard",
            "--wallet",
            &c.hospital,
            "--identity",
            &identity(&stranger),
            "--registration-number",
            "GMC-0000003",
            "--name",
            "Dr. Newcomer",
            "--specialisation",
            "oncology",
        ],
        &[],
    );
    assert!(out.contains("doctor onboarded"), "{out}");
    assert_eq!(doctors(url, &reg).as_array().unwrap().len(), 2);
}

/// Issue 10 item 6: dates of birth `02/01/1980` and `2090-13-45` were registered (the details
/// are sealed, so the wallet checks them before sealing); a record dated 2031 was minted; the
/// same registration number was onboarded twice. Each is refused with a clear error, and the
/// identity stays unregistered until a valid date is given.
#[test]
fn bad_dates_and_a_duplicate_registration_number_are_refused() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let url = node.url.as_str();
    let env = [("MEDLEDGER_NODE", url)];
    let c = cast(tmp.path(), &node);
    let newcomer = wallet(tmp.path(), "newcomer", url);
    let register = |dob: &str| {
        cli(
            &["patient", "register", "--wallet", &c.hospital, "--identity", &identity(&newcomer)]
                .into_iter()
                .chain(["--name", "N. Ewcomer", "--date-of-birth", dob])
                .chain(["--attendant-name", "A", "--attendant-phone", "1"])
                .chain(["--attendant-relationship", "sibling"])
                .collect::<Vec<_>>(),
            &env,
        )
    };
    for (dob, why) in [
        ("02/01/1980", "not a date of the form YYYY-MM-DD"),
        ("2090-13-45", "not a valid calendar date"),
        ("2023-02-29", "not a valid calendar date"),
        ("2090-01-01", "in the future"),
    ] {
        let o = register(dob);
        assert!(!o.status.success(), "{dob} was accepted\n{}", show(&o));
        assert!(stderr(&o).contains(why), "{dob}: {}", show(&o));
    }
    let o = register("1980-01-02");
    assert!(o.status.success(), "{}", show(&o));

    // A record dated in the future.
    let file = tmp.path().join("note.txt");
    std::fs::write(&file, b"note").unwrap();
    let err = fails(
        &["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id]
            .into_iter()
            .chain(["--file", &file.display().to_string(), "--category", "other"])
            .chain(["--date", "2031-01-01"])
            .collect::<Vec<_>>(),
        &env,
    );
    assert!(err.contains("in the future"), "{err}");

    // The cast's doctor has GMC-1234567; another doctor with that number, however spelt.
    let twin = wallet(tmp.path(), "twin", url);
    let err = fails(
        &["doctor", "onboard", "--wallet", &c.hospital, "--identity", &identity(&twin)]
            .into_iter()
            .chain(["--registration-number", "gmc 1234567", "--name", "Dr. Twin"])
            .chain(["--specialisation", "cardiology"])
            .collect::<Vec<_>>(),
        &env,
    );
    assert!(err.contains("registration number"), "{err}");
    let d = doctors(url, &c.patient);
    assert_eq!(d.as_array().map(Vec::len), Some(1), "{d:?}");
}
