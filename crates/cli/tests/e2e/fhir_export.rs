//! `medledger export --fhir`: a patient's whole record as a FHIR R4 Bundle, parsed back with
//! the R4 model; what it holds (records with content, grants in force and revoked, a deny
//! rule, an allowed and a denied read, a break-glass started and ended) and what it must never
//! hold (keys, another patient's data); and the refusal of a wallet that is not a patient's.

use fhir::r4::resources::{Bundle, Resource};
use fhir::r4::validate::Validate;
use medledger_client::Wallet;
use serde_json::Value;

use crate::{
    attacks::enrol, consent::id, emergency::id_of, harness::*, organisations, records::pmr_of,
    registry::cast,
};

pub(crate) fn add_record(
    doctor: &str,
    patient: &str,
    file: &std::path::Path,
    category: &str,
    date: &str,
    env: &[(&str, &str)],
) -> String {
    let out = ok(
        &["record", "add", "--wallet", doctor, "--patient", patient]
            .into_iter()
            .chain(["--file", &file.display().to_string(), "--category", category])
            .chain(["--date", date])
            .collect::<Vec<_>>(),
        env,
    );
    pmr_of(&out)
}

pub(crate) fn of_type<'a>(entries: &'a [Value], t: &str) -> Vec<&'a Value> {
    entries.iter().map(|e| &e["resource"]).filter(|r| r["resourceType"] == t).collect()
}

fn codes(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Object(o) => {
            if let Some(Value::String(c)) = o.get("code") {
                out.push(c.clone());
            }
            o.values().for_each(|x| out.extend(codes(x)));
        }
        Value::Array(a) => a.iter().for_each(|x| out.extend(codes(x))),
        _ => {}
    }
    out
}

#[test]
fn a_patient_exports_their_whole_record_as_a_fhir_r4_bundle() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let c = cast(dir, &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];

    // Another patient of the same hospital, with a record of their own: none of it may leak.
    let (_other, other_account) = enrol(
        dir,
        &node,
        "other-patient",
        &["patient", "register", "--wallet", &c.hospital, "--name", "Ann Other"]
            .into_iter()
            .chain(["--date-of-birth", "1970-03-04", "--phone", "0711 OTHERPHONE"])
            .chain(["--attendant-name", "B. Other", "--attendant-phone", "0712"])
            .chain(["--attendant-relationship", "sibling"])
            .collect::<Vec<_>>(),
    );
    let secret = dir.join("other.txt");
    std::fs::write(&secret, b"OTHER-PATIENT-SECRET").unwrap();
    let other_pmr =
        add_record(&c.doctor, &other_account, &secret, "lab_report", "2026-02-01", &env);

    // The patient's records: a lab report and a psychiatric note.
    let lab = dir.join("bloods.txt");
    std::fs::write(&lab, b"Hb 13.5 g/dL").unwrap();
    let lab_pmr = add_record(&c.doctor, &c.patient_id, &lab, "lab_report", "2026-03-01", &env);
    let psy = dir.join("psy.txt");
    std::fs::write(&psy, b"PSY session note").unwrap();
    let psy_pmr = add_record(&c.doctor, &c.patient_id, &psy, "psychiatry", "2026-03-02", &env);

    // Consent: a grant to the doctor in force, one to the hospital revoked, and a deny rule
    // that keeps the doctor from psychiatry.
    let grant = id(&ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &c.doctor_account],
        &env,
    ));
    let revoked = id(&ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &c.hospital_account]
            .into_iter()
            .chain(["--purpose", "insurance", "--scope", "categories:lab-report", "--days", "7"])
            .collect::<Vec<_>>(),
        &env,
    ));
    ok(&["consent", "revoke", &revoked, "--wallet", &c.patient], &env);
    let rule = id(&ok(
        &["consent", "deny", "--wallet", &c.patient, "--grantee", &c.doctor_account]
            .into_iter()
            .chain(["--category", "psychiatry"])
            .collect::<Vec<_>>(),
        &env,
    ));

    // Reads: the lab report is allowed; the psychiatric note is denied (and logged).
    let out = dir.join("read.txt").display().to_string();
    ok(&["record", "get", &lab_pmr, "--wallet", &c.doctor, "-o", &out], &env);
    fails(&["record", "get", &psy_pmr, "--wallet", &c.doctor, "-o", &out], &env);

    // A break-glass, declared and ended.
    ok(&["emergency", "profile", "--wallet", &c.patient, "--blood-type", "O-"], &env);
    let bg = id_of(&ok(
        &["emergency", "break-glass", "--wallet", &c.doctor, "--patient", &c.patient_id]
            .into_iter()
            .chain(["--code", "unconscious", "--reason", "unconscious after a road accident"])
            .collect::<Vec<_>>(),
        &env,
    ));
    ok(&["emergency", "end", "--wallet", &c.doctor, "--break-glass", &bg], &env);

    // The export, with content.
    let path = dir.join("bundle.json");
    let path_s = path.display().to_string();
    let summary = ok(
        &["export", "--wallet", &c.patient, "--fhir", "-o", &path_s, "--content", "--json"],
        &env,
    );
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["path"], path_s.as_str());
    assert_eq!(summary["fhir_version"], "4.0.1");
    assert_eq!(summary["unread"], serde_json::json!([]), "{summary}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the export holds plaintext: owner only");
    }
    let text = std::fs::read_to_string(&path).unwrap();

    // Through the R4 model: it parses, re-serialises to the same JSON, and validates; so
    // does every entry as a resource.
    let bundle: Bundle = serde_json::from_str(&text).unwrap();
    assert!(bundle.validate().is_empty(), "{:?}", bundle.validate());
    let as_json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&bundle).unwrap(), as_json);
    assert_eq!(as_json["type"], "collection");
    let entries = as_json["entry"].as_array().unwrap().clone();
    for e in &entries {
        let r: Resource = serde_json::from_value(e["resource"].clone()).unwrap();
        assert!(r.validate().is_empty(), "{}: {:?}", e["resource"]["resourceType"], r.validate());
    }

    // Counts: the summary's and the bundle's agree; the trail after the export has exactly
    // the bundle's AuditEvents (the export's own reads included).
    let trail: Value =
        serde_json::from_str(&ok(&["audit", "trail", "--wallet", &c.patient, "--json"], &env))
            .unwrap();
    let trail = trail.as_array().unwrap();
    for (t, n) in [
        ("Patient", 1),
        ("DocumentReference", 2),
        ("Binary", 2),
        ("Provenance", 2),
        ("Consent", 3),
        ("AuditEvent", trail.len()),
    ] {
        assert_eq!(of_type(&entries, t).len(), n, "{t}");
        assert_eq!(summary["resources"][t], n, "{t}: {summary}");
    }
    assert_eq!(summary["total"], entries.len());
    assert_eq!(of_type(&entries, "Practitioner")[0]["name"][0]["text"], "Dr. Ada Quill");
    assert!(of_type(&entries, "Organization").iter().any(|o| o["name"] == "St. Elsewhere"));

    // The patient, from the sealed details opened by the wallet.
    let p = of_type(&entries, "Patient")[0];
    assert_eq!(p["name"][0]["text"], "Jane Roe");
    assert_eq!(p["birthDate"], "1980-01-02");
    assert_eq!(p["contact"][0]["name"]["text"], "John Roe");
    assert!(
        p["identifier"].as_array().unwrap().iter().any(|i| i["value"] == c.patient_id.as_str())
    );

    // Each record: its CID, and its decrypted content as a Binary.
    let docs = of_type(&entries, "DocumentReference");
    let lab_doc = docs.iter().find(|d| d["masterIdentifier"]["value"] == lab_pmr.as_str()).unwrap();
    assert!(
        lab_doc["content"][0]["attachment"]["url"].as_str().unwrap().starts_with("ipfs://bafkrei")
    );
    assert!(codes(&lab_doc["category"]).contains(&"lab_report".to_owned()));
    let binaries = of_type(&entries, "Binary");
    let bin_url = lab_doc["content"][1]["attachment"]["url"].as_str().unwrap();
    let bin = binaries
        .iter()
        .find(|b| format!("urn:uuid:{}", b["id"].as_str().unwrap()) == bin_url)
        .unwrap();
    assert_eq!(bin["data"], data_encoding::BASE64.encode(b"Hb 13.5 g/dL"));

    // Consent: the grant in force, the revoked one, the deny rule.
    let consents = of_type(&entries, "Consent");
    let by_id = |v: &str| *consents.iter().find(|c| c["identifier"][0]["value"] == v).unwrap();
    assert_eq!(by_id(&grant)["status"], "active");
    assert_eq!(by_id(&grant)["provision"]["type"], "permit");
    assert!(codes(&by_id(&grant)["provision"]["actor"]).contains(&"IRCP".to_owned()));
    assert_eq!(by_id(&revoked)["status"], "inactive");
    assert!(codes(&by_id(&revoked)["provision"]["purpose"]).contains(&"HPAYMT".to_owned()));
    assert_eq!(by_id(&rule)["provision"]["type"], "deny");
    assert!(codes(&by_id(&rule)["provision"]["code"]).contains(&"psychiatry".to_owned()));

    // Audit: the denied read (outcome 4), break-glass started and ended with BTG.
    let audits = of_type(&entries, "AuditEvent");
    let denied: Vec<_> = audits.iter().filter(|a| a["outcome"] == "4").collect();
    assert!(
        denied.iter().any(|a| a["outcomeDesc"].as_str().unwrap().contains(&rule)),
        "no denied read naming the deny rule"
    );
    for subtype in ["110127", "110138"] {
        let a = audits
            .iter()
            .find(|a| a["subtype"][0]["code"] == subtype)
            .unwrap_or_else(|| panic!("no AuditEvent of subtype {subtype}"));
        assert_eq!(a["type"]["code"], "110113");
        assert!(codes(&a["purposeOfEvent"]).contains(&"BTG".to_owned()));
    }
    // The export's own reads are in it: one allowed read of each record by the patient, as
    // the patient's own access (PATRQT), not as treatment.
    let own_reads = audits
        .iter()
        .filter(|a| {
            a["action"] == "R"
                && a["outcome"] == "0"
                && a["agent"][0]["who"]["display"] == "Jane Roe"
                && codes(&a["purposeOfEvent"]).contains(&"PATRQT".to_owned())
                && !codes(&a["purposeOfEvent"]).contains(&"TREAT".to_owned())
        })
        .count();
    assert_eq!(own_reads, 2);

    // Nothing of the other patient, and no key material of anyone's wallet.
    for leak in [
        other_account.as_str(),
        other_pmr.as_str(),
        "Ann Other",
        "OTHERPHONE",
        "OTHER-PATIENT-SECRET",
    ] {
        assert!(!text.contains(leak), "{leak} is in the export");
    }
    let other_b64 = data_encoding::BASE64.encode(b"OTHER-PATIENT-SECRET");
    assert!(!text.contains(&other_b64[..20]));
    for wallet in [&c.patient, &c.doctor, &c.hospital] {
        let identity = Wallet::load(wallet).unwrap().unlock(PASS).unwrap();
        for secret in [identity.signing.expose_secret(), identity.decryption.expose_secret()] {
            for encoded in [
                hex::encode(secret),
                data_encoding::BASE64.encode(secret),
                data_encoding::BASE64URL_NOPAD.encode(secret),
            ] {
                assert!(!text.contains(&encoded), "a secret key of {wallet} is in the export");
            }
        }
    }

    // Without --content: no Binary, no plaintext, and no read of any record.
    let before = trail.len();
    let bare = dir.join("bare.json").display().to_string();
    let s: Value = serde_json::from_str(&ok(
        &["export", "--wallet", &c.patient, "--fhir", "-o", &bare, "--json"],
        &env,
    ))
    .unwrap();
    assert!(s["resources"].get("Binary").is_none(), "{s}");
    let bare_text = std::fs::read_to_string(&bare).unwrap();
    assert!(!bare_text.contains(&data_encoding::BASE64.encode(b"Hb 13.5 g/dL")));
    let after: Value =
        serde_json::from_str(&ok(&["audit", "trail", "--wallet", &c.patient, "--json"], &env))
            .unwrap();
    assert_eq!(after.as_array().unwrap().len(), before, "an export without content reads nothing");
}

/// The audited reads (AuditEvents of action R) in the trail of `patient` (wallet), from the
/// patient's own export.
fn reads_in_trail(dir: &std::path::Path, patient: &str, env: &[(&str, &str)]) -> Vec<Value> {
    let mine = dir.join("mine.json").display().to_string();
    ok(&["export", "--wallet", patient, "--fhir", "-o", &mine], env);
    let mine: Value = serde_json::from_str(&std::fs::read_to_string(&mine).unwrap()).unwrap();
    let entries = mine["entry"].as_array().unwrap().clone();
    of_type(&entries, "AuditEvent").into_iter().filter(|a| a["action"] == "R").cloned().collect()
}

/// `export --fhir --patient` by `wallet` into `path` (with `--content` if `content`): the
/// command's arguments.
fn grantee_args(wallet: &str, patient_id: &str, path: &str, content: bool) -> Vec<String> {
    ["export", "--wallet", wallet, "--fhir", "-o", path, "--patient", patient_id, "--json"]
        .into_iter()
        .chain(content.then_some("--content"))
        .map(str::to_owned)
        .collect()
}

/// Runs `args`: the bundle it wrote (parsed, validated), or the error; a refusal writes nothing.
fn grantee_export(args: &[String], path: &std::path::Path) -> Result<Vec<Value>, String> {
    let _ = std::fs::remove_file(path);
    let o = cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    if !o.status.success() {
        assert!(!path.exists(), "a refused export wrote {}", path.display());
        return Err(show(&o));
    }
    let text = std::fs::read_to_string(path).unwrap();
    let bundle: Bundle = serde_json::from_str(&text).unwrap();
    assert!(bundle.validate().is_empty(), "{:?}", bundle.validate());
    let as_json: Value = serde_json::from_str(&text).unwrap();
    Ok(as_json["entry"].as_array().unwrap().clone())
}

/// The PMR-IDs of a bundle's DocumentReferences.
fn documents(entries: &[Value]) -> Vec<String> {
    of_type(entries, "DocumentReference")
        .iter()
        .map(|d| d["masterIdentifier"]["value"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_insurers_member_exports_what_its_organisations_grant_covers_while_active() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let url = node.url.as_str();
    let env = [("MEDLEDGER_NODE", url)];
    let c = cast(dir, &node);
    let shield =
        organisations::organisation(dir, &node, "insurer", "Shield Mutual", ("insurer", "ivo"));
    let (insurer, insurer_account) = (shield.wallet, shield.account);
    let (ivo, ivo_account) = (shield.member, shield.member_account);
    let lab = organisations::record(dir, &c.doctor, &c.patient_id, "lab-report", "2026-03-01");
    let scan = organisations::record(dir, &c.doctor, &c.patient_id, "imaging", "2026-03-02");
    let path = dir.join("member.json");
    let path_s = path.display().to_string();
    let (with, without) = (
        grantee_args(&ivo, &c.patient_id, &path_s, true),
        grantee_args(&ivo, &c.patient_id, &path_s, false),
    );

    // No grant to the insurer yet: the member may not even look the patient up.
    let err = grantee_export(&with, &path).unwrap_err();
    assert!(err.contains("no patient with Patient-ID") && err.contains("look up"), "{err}");

    let out = ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &insurer_account]
            .into_iter()
            .chain(["--purpose", "insurance", "--scope", "categories:lab-report"])
            .collect::<Vec<_>>(),
        &env,
    );
    assert!(out.contains(&format!("wrapped to member {ivo_account}")), "{out}");
    let grant = id(&out);

    // Metadata only: the covered record and the grant, nothing read.
    let entries = grantee_export(&without, &path).unwrap();
    assert_eq!(documents(&entries), std::slice::from_ref(&lab));
    assert!(of_type(&entries, "Binary").is_empty());
    assert_eq!(of_type(&entries, "Consent")[0]["identifier"][0]["value"], grant.as_str());
    assert!(reads_in_trail(dir, &c.patient, &env).is_empty());

    // With content: the lab report alone, read once for insurance (HPAYMT) in the trail.
    let entries = grantee_export(&with, &path).unwrap();
    assert_eq!(documents(&entries), std::slice::from_ref(&lab));
    let binaries = of_type(&entries, "Binary");
    assert_eq!(binaries.len(), 1);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&scan), "the imaging record is in the member's export");
    let bytes = data_encoding::BASE64.decode(binaries[0]["data"].as_str().unwrap().as_bytes());
    assert!(String::from_utf8(bytes.unwrap()).unwrap().contains("lab-report of 2026-03-01"));
    let reads = reads_in_trail(dir, &c.patient, &env);
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert!(codes(&reads[0]["purposeOfEvent"]).contains(&"HPAYMT".to_owned()));
    assert!(serde_json::to_string(&reads[0]["entity"]).unwrap().contains(&lab));

    // The insurer suspended: its member exports nothing; reinstated, it does again.
    let reg = node.regulator();
    ok(&["organisation", "suspend", &insurer_account, "--wallet", &reg, "--reason", "x"], &env);
    for args in [&with, &without] {
        let err = grantee_export(args, &path).unwrap_err();
        assert!(err.contains("suspended"), "{err}");
    }
    ok(&["organisation", "reinstate", &insurer_account, "--wallet", &reg], &env);
    assert_eq!(documents(&grantee_export(&without, &path).unwrap()), [lab]);

    // Removed, the member exports nothing (its key is revoked for good).
    ok(&["organisation", "member", "remove", &ivo_account, "--wallet", &insurer], &env);
    for args in [&with, &without] {
        let err = grantee_export(args, &path).unwrap_err();
        assert!(err.contains("not the active key"), "{err}");
    }
    assert_eq!(reads_in_trail(dir, &c.patient, &env).len(), 1);
}

#[test]
fn a_researcher_organisation_and_its_member_export_nothing_here() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let url = node.url.as_str();
    let env = [("MEDLEDGER_NODE", url)];
    let c = cast(dir, &node);
    let cohort =
        organisations::organisation(dir, &node, "researcher", "Cohort Lab", ("cohort-lab", "ana"));
    organisations::record(dir, &c.doctor, &c.patient_id, "lab-report", "2026-03-01");
    ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &cohort.account]
            .into_iter()
            .chain(["--purpose", "research", "--scope", "categories:lab-report"])
            .collect::<Vec<_>>(),
        &env,
    );
    let path = dir.join("member.json");
    let path_s = path.display().to_string();
    // With content or without, the lab and its member: refused, pointing at the research
    // export; no file, no read in the patient's trail.
    for who in [&cohort.member, &cohort.wallet] {
        for content in [true, false] {
            let args = grantee_args(who, &c.patient_id, &path_s, content);
            let err = grantee_export(&args, &path).unwrap_err();
            assert!(
                err.contains("exports for research only") && err.contains("research export"),
                "{err}"
            );
            assert!(!path.exists(), "a refused export wrote {path_s}");
        }
    }
    assert!(reads_in_trail(dir, &c.patient, &env).is_empty());
}

#[test]
fn a_wallet_that_is_not_a_patient_s_is_refused_and_nothing_is_written() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let path = tmp.path().join("bundle.json");
    let path_s = path.display().to_string();
    for (wallet, role) in [(&c.doctor, "doctor"), (&c.hospital, "hospital")] {
        let err = fails(&["export", "--wallet", wallet, "--fhir", "-o", &path_s], &env);
        assert!(err.contains("only a patient's wallet") && err.contains(role), "{err}");
        assert!(!path.exists(), "a refused export wrote {path_s}");
    }
    // No format, no export.
    let err = fails(&["export", "--wallet", &c.patient, "-o", &path_s], &env);
    assert!(err.contains("--fhir"), "{err}");
    assert!(!path.exists());
}

#[test]
fn a_grantee_exports_what_its_grants_cover_read_for_their_purpose() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let c = cast(dir, &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    // The doctor wrote both records (and so sees both listed), but the patient's grant covers
    // lab reports only, for research.
    let lab = dir.join("bloods.txt");
    std::fs::write(&lab, b"Hb 13.5 g/dL").unwrap();
    let lab_pmr = add_record(&c.doctor, &c.patient_id, &lab, "lab_report", "2026-03-01", &env);
    let psy = dir.join("psy.txt");
    std::fs::write(&psy, b"PSY session note").unwrap();
    let psy_pmr = add_record(&c.doctor, &c.patient_id, &psy, "psychiatry", "2026-03-02", &env);
    let path = dir.join("grantee.json");
    let path_s = path.display().to_string();
    let export = ["export", "--wallet", &c.doctor, "--fhir", "-o", &path_s, "--content"];
    let patient_id = c.patient_id.as_str();
    let with_patient = |_: &str| {
        export.iter().copied().chain(["--patient", patient_id, "--json"]).collect::<Vec<&str>>()
    };

    // No grant yet: refused, nothing written.
    let err = fails(&with_patient(&c.patient_id), &env);
    assert!(err.contains("no grant") && err.contains("in force"), "{err}");
    assert!(!path.exists());

    let grant = id(&ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &c.doctor_account]
            .into_iter()
            .chain(["--purpose", "research", "--scope", "categories:lab-report"])
            .collect::<Vec<_>>(),
        &env,
    ));
    let summary: Value = serde_json::from_str(&ok(&with_patient(&c.patient_id), &env)).unwrap();
    assert_eq!(summary["unread"], serde_json::json!([]), "{summary}");
    let text = std::fs::read_to_string(&path).unwrap();
    let bundle: Bundle = serde_json::from_str(&text).unwrap();
    assert!(bundle.validate().is_empty(), "{:?}", bundle.validate());
    let as_json: Value = serde_json::from_str(&text).unwrap();
    let entries = as_json["entry"].as_array().unwrap().clone();
    let docs = of_type(&entries, "DocumentReference");
    assert_eq!(docs.len(), 1, "{text}");
    assert_eq!(docs[0]["masterIdentifier"]["value"], lab_pmr.as_str());
    assert_eq!(
        of_type(&entries, "Binary")[0]["data"],
        data_encoding::BASE64.encode(b"Hb 13.5 g/dL")
    );
    assert_eq!(of_type(&entries, "Consent")[0]["identifier"][0]["value"], grant.as_str());
    assert!(of_type(&entries, "AuditEvent").is_empty());
    for leak in [psy_pmr.as_str(), "PSY session note", "Jane Roe", "1980-01-02"] {
        assert!(!text.contains(leak), "{leak} is in the grantee's export");
    }
    assert!(!text.contains(&data_encoding::BASE64.encode(b"PSY session note")));

    // The read was audited with the grant's purpose (research), once, and only of the lab
    // report: the patient's own export shows it.
    let reads: Vec<_> = reads_in_trail(dir, &c.patient, &env)
        .into_iter()
        .filter(|a| a["agent"][0]["who"]["display"] == "Dr. Ada Quill")
        .collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert!(codes(&reads[0]["purposeOfEvent"]).contains(&"HRESCH".to_owned()));
    assert!(serde_json::to_string(&reads[0]["entity"]).unwrap().contains(&lab_pmr));

    // Revoked: refused clearly, and the old file is left as it was (nothing newly written).
    std::fs::remove_file(&path).unwrap();
    ok(&["consent", "revoke", &grant, "--wallet", &c.patient], &env);
    let err = fails(&with_patient(&c.patient_id), &env);
    assert!(err.contains("no grant") && err.contains("revoked or expired"), "{err}");
    assert!(!path.exists());
    // A patient's wallet exports its own record only.
    let err = fails(
        &["export", "--wallet", &c.patient, "--fhir", "-o", &path_s, "--patient", &c.patient_id],
        &env,
    );
    assert!(err.contains("leave out --patient"), "{err}");
}

#[test]
fn the_output_path_is_replaced_never_followed_and_a_directory_is_refused() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let c = cast(dir, &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    // A symlink at -o (planted by someone who can write to the directory) pointing at a file
    // of the user's: the link is replaced by the export, the file it pointed at is untouched.
    #[cfg(unix)]
    {
        let victim = dir.join("victim.txt");
        std::fs::write(&victim, b"keep me").unwrap();
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        ok(&["export", "--wallet", &c.patient, "--fhir", "-o", &link.display().to_string()], &env);
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        let _: Bundle = serde_json::from_str(&std::fs::read_to_string(&link).unwrap()).unwrap();
    }
    // A directory at -o: refused, and no temporary file is left beside it.
    let out = dir.join("outdir");
    std::fs::create_dir(&out).unwrap();
    let before: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    fails(&["export", "--wallet", &c.patient, "--fhir", "-o", &out.display().to_string()], &env);
    let after: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before.len(), after.len(), "{after:?}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

/// `device simulate` of `count` readings into `session` (reading `anomaly` of them abnormal):
/// the readings it printed (`type` reading), each with its `seq`, `time_ms`, `metric`, `value`
/// (as the device sealed it) and `severity`.
fn simulate(
    s: &crate::devices::Setup,
    state: &std::path::Path,
    session: &str,
    count: u64,
    anomaly: u64,
    env: &[(&str, &str)],
) -> Vec<Value> {
    let (count, anomaly, state) =
        (count.to_string(), anomaly.to_string(), state.display().to_string());
    let out = ok(
        &["device", "simulate", "--wallet", &s.device_wallet, "--session", session, "--json"]
            .into_iter()
            .chain(["--rate", "50", "--count", &count, "--anomaly-rate", "0"])
            .chain(["--anomaly-at", &anomaly, "--batch-ms", "200", "--seed", "7"])
            .chain(["--state-dir", &state])
            .collect::<Vec<_>>(),
        env,
    );
    let printed: Vec<Value> = out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    printed.into_iter().filter(|v| v["type"] == "reading").collect()
}

/// A session on the setup's device started by the patient's own transaction, whose secret
/// key is wrapped to some other key than the patient's (as a faulty or hostile client of a
/// delegate could: the ledger checks who a copy is for, not what it holds). Its id.
fn session_the_patient_cannot_open(s: &crate::devices::Setup, node: &Node) -> String {
    use medledger_client::{NodeClient, Signer, devices, records, tx::build};
    use medledger_core::{
        block::{Created, Outcome},
        encoding,
        keys::DecryptionKey,
        tx::{DeviceTx, TxBody, devices::StartSession, records::KeyRef},
    };
    let mut wallet = Wallet::load(&s.c.patient).unwrap();
    let identity = wallet.unlock(PASS).unwrap();
    let patient = wallet.account();
    let device = s.device.parse().unwrap();
    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = NodeClient::new(&node.url)
            .unwrap()
            .signed_by(Signer::new(identity.signing.clone(), patient));
        let secret = DecryptionKey::generate();
        let stranger = DecryptionKey::generate().public_key();
        let wrapped = devices::wrap_session_key(&secret, &stranger, &device).unwrap();
        let blob = records::upload_small(&client, encoding::encode(&wrapped)).await.unwrap();
        let nonce = client.account(&patient).await.unwrap().unwrap().nonce.unwrap() + 1;
        let start = StartSession {
            device,
            public_key: secret.public_key(),
            expires_at_ms: None,
            doctor: None,
            keys: vec![KeyRef { recipient: patient, blob }],
        };
        let tx = build(
            &identity,
            patient,
            &chain,
            nonce,
            TxBody::Devices(DeviceTx::StartSession(start)),
        );
        let receipt = client.submit(&tx).await.unwrap();
        let Outcome::Applied { created: Some(Created::DeviceSession { id }) } = receipt.outcome
        else {
            panic!("no session started: {receipt:?}");
        };
        id.to_string()
    })
}

#[test]
fn a_patient_s_export_has_an_observation_per_device_reading_read_and_audited() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let s = crate::devices::setup(dir, &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let patient_account = Wallet::load(&s.c.patient).unwrap().account().to_string();

    // The pulse oximeter's first session: 12 readings, the 5th abnormal (an alert).
    let first = simulate(&s, &dir.join("state-1"), &s.session, 12, 5, &env);
    assert_eq!(first.len(), 12, "{first:?}");
    let abnormal: Vec<_> = first.iter().filter(|r| !r["severity"].is_null()).collect();
    assert_eq!(abnormal.len(), 1, "{first:?}");
    ok(&["device", "session", "end", &s.session, "--wallet", &s.c.patient], &env);
    // A second session, whose key the patient's wallet cannot open: 4 readings, the 3rd
    // abnormal.
    let sealed = session_the_patient_cannot_open(&s, &node);
    let second = simulate(&s, &dir.join("state-2"), &sealed, 4, 3, &env);
    assert_eq!(second.len(), 4, "{second:?}");
    let sealed_alert = second.iter().find(|r| !r["severity"].is_null()).unwrap();

    let path = dir.join("bundle.json");
    let path_s = path.display().to_string();
    let o = cli(&["export", "--wallet", &s.c.patient, "--fhir", "-o", &path_s, "--json"], &env);
    assert!(o.status.success(), "{}", show(&o));
    let err = stderr(&o);
    // Progress, one line per session read; the session that did not open is said so.
    assert!(err.contains(&format!("reading device session 1 of 2: {}", s.session)), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("warning: device session")
            && l.contains(&sealed)
            && l.contains("without its readings")
            && l.contains("cannot open the session's key")),
        "{err}"
    );
    let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["device_readings"], 12, "{summary}");
    assert_eq!(summary["device_sessions_read"], 1, "{summary}");
    assert_eq!(summary["unopened_sessions"], serde_json::json!([sealed]), "{summary}");
    assert_eq!(summary["resources"]["Observation"], 13, "{summary}");

    let text = std::fs::read_to_string(&path).unwrap();
    let bundle: Bundle = serde_json::from_str(&text).unwrap();
    assert!(bundle.validate().is_empty(), "{:?}", bundle.validate());
    let as_json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&bundle).unwrap(), as_json);
    let entries = as_json["entry"].as_array().unwrap().clone();
    let observations = of_type(&entries, "Observation");
    assert_eq!(observations.len(), 13);
    let of_reading = |session: &str, seq: &Value| {
        let key = format!("{session}/{seq}");
        let found: Vec<_> =
            observations.iter().filter(|o| o["identifier"][0]["value"] == key.as_str()).collect();
        assert_eq!(found.len(), 1, "observations of {key}");
        *found[0]
    };
    let patient_ref = format!("urn:uuid:{}", medledger_fhir::uuid("Patient", &patient_account));
    for r in &first {
        let o = of_reading(&s.session, &r["seq"]);
        let (loinc, ucum) = match r["metric"].as_str().unwrap() {
            "heart_rate" => ("8867-4", "/min"),
            "spo2" => ("59408-5", "%"),
            other => panic!("a pulse oximeter measured {other}"),
        };
        assert_eq!(o["status"], "final");
        assert_eq!(o["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(o["code"]["coding"][0]["system"], "http://loinc.org");
        assert_eq!(o["code"]["coding"][0]["code"], loinc, "{o}");
        let q = &o["valueQuantity"];
        assert_eq!(q["system"], "http://unitsofmeasure.org", "{o}");
        assert_eq!(q["code"], ucum, "{o}");
        // The value as the device sealed it, digit for digit.
        assert_eq!(q["value"].to_string(), r["value"].to_string(), "{o}");
        assert_eq!(
            o["effectiveDateTime"],
            medledger_fhir::instant(r["time_ms"].as_u64().unwrap()).unwrap(),
            "{o}"
        );
        assert_eq!(o["subject"]["reference"], patient_ref.as_str());
        assert_eq!(o["device"]["identifier"]["value"], s.device.as_str());
        let interpretation = o["interpretation"][0]["coding"][0]["code"].as_str();
        match r["severity"].as_str() {
            None => assert!(o.get("interpretation").is_none(), "{o}"),
            Some("critical") => assert_eq!(interpretation, Some("AA"), "{o}"),
            Some(_) => assert_eq!(interpretation, Some("A"), "{o}"),
        }
        assert!(o.get("dataAbsentReason").is_none(), "{o}");
    }
    // The sealed session: its alert only, without a value; none of its readings.
    let o = of_reading(&sealed, &sealed_alert["seq"]);
    assert!(o.get("valueQuantity").is_none(), "{o}");
    assert_eq!(o["dataAbsentReason"]["coding"][0]["code"], "unknown", "{o}");
    assert!(o["interpretation"][0]["coding"][0]["code"].is_string(), "{o}");
    assert_eq!(
        observations
            .iter()
            .filter(|o| o["identifier"][0]["value"].as_str().unwrap().starts_with(&sealed))
            .count(),
        1
    );

    // The reads are audited accesses of the patient's device data, purpose other, in the
    // trail: one for each session (the sealed one's was served before its key failed to open),
    // as many as the summary says.
    let trail: Value =
        serde_json::from_str(&ok(&["audit", "trail", "--wallet", &s.c.patient, "--json"], &env))
            .unwrap();
    let reads = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let a = &e["kind"]["access"];
            e["actor"] == patient_account.as_str()
                && a["resource"]["category"] == "device_data"
                && a["purpose"] == "other"
                && a["decision"].get("allow").is_some()
        })
        .count();
    assert_eq!(reads, 2, "{trail}");
    assert_eq!(summary["device_reads"], 2, "{summary}");
    // The bundle's AuditEvents include them (the trail is read after them).
    assert_eq!(of_type(&entries, "AuditEvent").len(), trail.as_array().unwrap().len());

    // The doctor the first session names, whose grant covers device data, exports that
    // session's readings, read for the grant's purpose; the second session (not wrapped to
    // it) is not read at all.
    let shared = dir.join("shared.json");
    let args = grantee_args(&s.c.doctor, &s.c.patient_id, &shared.display().to_string(), false);
    let o = cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env);
    assert!(o.status.success(), "{}", show(&o));
    let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["device_readings"], 12, "{summary}");
    assert_eq!(summary["unopened_sessions"], serde_json::json!([]), "{summary}");
    let shared: Value = serde_json::from_str(&std::fs::read_to_string(&shared).unwrap()).unwrap();
    let shared = shared["entry"].as_array().unwrap().clone();
    let theirs = of_type(&shared, "Observation");
    assert_eq!(theirs.len(), 12);
    for r in &first {
        let key = format!("{}/{}", s.session, r["seq"]);
        let o = theirs.iter().find(|o| o["identifier"][0]["value"] == key.as_str()).unwrap();
        assert_eq!(o["valueQuantity"]["value"].to_string(), r["value"].to_string(), "{o}");
    }
    let trail: Value =
        serde_json::from_str(&ok(&["audit", "trail", "--wallet", &s.c.patient, "--json"], &env))
            .unwrap();
    let doctors: Vec<_> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["actor"] == s.c.doctor_account.as_str()
                && e["kind"]["access"]["resource"]["category"] == "device_data"
        })
        .collect();
    assert_eq!(doctors.len(), 1, "{doctors:?}");
    assert_eq!(doctors[0]["kind"]["access"]["purpose"], "treatment", "{doctors:?}");
}
