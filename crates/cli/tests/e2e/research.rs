//! The research export through the CLI: a member of a researcher organisation exports, for a
//! project, the patients whose research grant to its organisation is in force, and nobody
//! else (no grant, a revoked grant, another organisation's grant); the export opens only with
//! the member's wallet, holds no name, phone, date of birth, Patient-ID, PMR-ID or account id
//! (every byte of every file is scanned), covers only the granted categories, and keeps
//! pseudonyms within a project and changes them across projects; each exported patient's trail
//! shows exactly one export with the project. Non-members and removed members are refused.

use std::{collections::BTreeSet, path::Path};

use crate::{
    attacks::enrol,
    consent::{account_of, id},
    harness::*,
    organisations::{Organisation, organisation, record},
    registry::cast,
};

/// Runs `research export` as `wallet` for `project` into `out`; its JSON summary.
pub(crate) fn export(
    wallet: &str,
    project: &str,
    out: &Path,
    env: &[(&str, &str)],
) -> serde_json::Value {
    let out = out.display().to_string();
    let text = ok(
        &["research", "export", "--wallet", wallet, "--project", project, "-o", &out, "--json"],
        env,
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Opens the export in `dir` as `wallet` into `out`; every file's text by name.
fn open(wallet: &str, dir: &Path, out: &Path) -> Vec<(String, String)> {
    let (d, o) = (dir.display().to_string(), out.display().to_string());
    ok(&["research", "open", "--wallet", wallet, &d, "-o", &o], &[]);
    let mut files: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            // (A `.dcm` image is binary: its text is for the scans, which look for strings.)
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
            (e.file_name().to_string_lossy().into_owned(), text)
        })
        .collect();
    files.sort();
    files
}

/// Every byte of every file under `dir` (raw, as on disk).
fn every_byte(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        all.extend(std::fs::read(e.unwrap().path()).unwrap());
    }
    all
}

/// The Patient ids of an opened export.
/// Whether `secret` is in `text`. A short number (a Patient-ID) counts only standing alone, not
/// inside a longer run of letters and digits: a hex pseudonym or random ciphertext holds any
/// given five digits about once in a thousand exports, which is not a leak.
fn leaks(text: &str, secret: &str) -> bool {
    let short_number = secret.len() < 12 && secret.bytes().all(|b| b.is_ascii_digit());
    if !short_number {
        return text.contains(secret);
    }
    let bytes = text.as_bytes();
    text.match_indices(secret).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + secret.len()).copied();
        ![before, after].into_iter().flatten().any(|b| b.is_ascii_alphanumeric())
    })
}

#[test]
fn a_number_leaks_only_standing_alone() {
    assert!(leaks("{\"id\":\"10423\"}", "10423"));
    assert!(leaks("urn:medledger:patient-id:10423", "10423"));
    assert!(!leaks("9f10423ab", "10423"));
    assert!(leaks("Ann Other, 9f", "Ann Other"));
}

fn patient_ids(files: &[(String, String)]) -> BTreeSet<String> {
    let (_, text) = files.iter().find(|(n, _)| n == "Patient.ndjson").expect("Patient.ndjson");
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().into()
        })
        .collect()
}

/// The research export events with `project` in `patient`'s trail.
fn exports_in_trail(patient: &str, project: &str, env: &[(&str, &str)]) -> usize {
    let trail: serde_json::Value =
        serde_json::from_str(&ok(&["audit", "trail", "--wallet", patient, "--json"], env)).unwrap();
    trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"]["research_export"]["project"] == project)
        .count()
}

#[test]
fn research_export_through_the_cli() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let url = node.url.as_str();
    let env = [("MEDLEDGER_NODE", url)];
    let c = cast(dir, &node);
    let cohort = organisation(dir, &node, "researcher", "Cohort Lab", ("cohort-lab", "ana"));
    let Organisation {
        wallet: lab,
        account: lab_account,
        member: ana,
        member_account: ana_account,
    } = cohort;
    let other = organisation(dir, &node, "researcher", "Elsewhere Lab", ("elsewhere-lab", "oli"));
    let (elsewhere_account, oli) = (other.account, other.member);

    // Four more patients: Ann grants the lab everything, Ned nothing, Rita grants and revokes,
    // Otto grants another organisation.
    let people = [
        ("ann", "Ann Other", "1931-03-04", "0711 555 0101"),
        ("ned", "Ned Nogrant", "1975-05-06", "0711 555 0202"),
        ("rita", "Rita Revoked", "1982-07-08", "0711 555 0303"),
        ("otto", "Otto Elsewhere", "1990-09-10", "0711 555 0404"),
    ];
    let mut wallets = Vec::new();
    let mut secrets: Vec<String> = ["Jane Roe", "John Roe", "+44 7700 900123", "+44 7700 900456"]
        .into_iter()
        .chain(["1980-01-02", "St. Elsewhere", "GOV-4711", "Dr. Ada Quill", "GMC-1234567"])
        .chain([c.patient_id.as_str(), &c.hospital_account, &c.doctor_account])
        .chain([lab_account.as_str(), &ana_account, &elsewhere_account, &account_of(&c.patient)])
        .map(str::to_owned)
        .collect();
    for (name, full, dob, phone) in people {
        let (w, account) = enrol(
            dir,
            &node,
            name,
            &["patient", "register", "--wallet", &c.hospital, "--name", full]
                .into_iter()
                .chain(["--date-of-birth", dob, "--phone", phone])
                .chain(["--attendant-name", "A. Tendant", "--attendant-phone", "0712 999"])
                .chain(["--attendant-relationship", "sibling"])
                .collect::<Vec<_>>(),
        );
        secrets.extend([full, dob, phone].map(str::to_owned));
        secrets.push(account.clone());
        wallets.push((w, account));
    }
    let patient_of = |i: usize| -> (&str, &str) { (&wallets[i].0, &wallets[i].1) };
    // Every patient has a lab report and an imaging record.
    let mut pmrs = Vec::new();
    for patient in [c.patient_id.as_str()].into_iter().chain(wallets.iter().map(|w| w.1.as_str())) {
        for (category, date) in [("lab-report", "2024-03-01"), ("imaging", "2024-03-02")] {
            pmrs.push(record(dir, &c.doctor, patient, category, date));
        }
    }
    secrets.extend(pmrs.iter().cloned());
    secrets.extend(["2024-03-01", "2024-03-02", "lab-report of"].map(str::to_owned));
    let grant = |patient: &str, grantee: &str, scope: &str| {
        id(&ok(
            &["consent", "grant", "--wallet", patient, "--grantee", grantee]
                .into_iter()
                .chain(["--purpose", "research", "--scope", scope])
                .collect::<Vec<_>>(),
            &env,
        ))
    };
    grant(&c.patient, &lab_account, "categories:lab-report");
    grant(patient_of(0).0, &lab_account, "all");
    let revoked = grant(patient_of(2).0, &lab_account, "all");
    ok(&["consent", "revoke", &revoked, "--wallet", patient_of(2).0], &env);
    grant(patient_of(3).0, &elsewhere_account, "all");

    // Outside any researcher organisation: refused, and nothing is written.
    let refused_dir = dir.join("refused");
    for who in [&c.doctor, &lab, &c.patient] {
        let err = fails(
            &["research", "export", "--wallet", who, "--project", "cardio-2026", "-o"]
                .into_iter()
                .chain([refused_dir.display().to_string().as_str()])
                .collect::<Vec<_>>(),
            &env,
        );
        assert!(err.contains("researcher organisation"), "{err}");
    }

    // A research grant shows the lab's member none of the patient's records as they are
    // (PMR-IDs, dates, authors), before an export or after it, nor one by its id; the export
    // reads what it planned through its own audited listing.
    let listed = |who: &str| {
        let args = ["record", "list", "--wallet", who, "--patient", patient_of(0).1, "--json"];
        serde_json::from_str::<serde_json::Value>(&ok(&args, &env)).unwrap()
    };
    assert_eq!(listed(&c.doctor).as_array().map(Vec::len), Some(2), "the author sees both");
    assert_eq!(listed(&ana), serde_json::json!([]), "the member sees a listing before any export");
    let ann_lab = &pmrs[2];
    let err = fails(&["record", "history", ann_lab, "--wallet", &ana], &env);
    assert!(err.contains("no record"), "{err}");

    // The lab's member exports Jane (her lab report only) and Ann (both records).
    let out1 = dir.join("export-1");
    let summary = export(&ana, "cardio-2026", &out1, &env);
    // After it: the one record it may now read for a day, Ann's image (the content the rule
    // set exports), and nothing else.
    let after = listed(&ana);
    let after: Vec<_> = after.as_array().unwrap().iter().map(|r| r["pmr"].clone()).collect();
    assert_eq!(after, [serde_json::json!(pmrs[3])], "the member's listing after its export");
    assert_eq!(summary["patients"], 2, "{summary}");
    assert_eq!(summary["refused"], 0, "{summary}");
    assert_eq!(summary["counts"]["Patient"], 2, "{summary}");
    assert_eq!(summary["counts"]["DocumentReference"], 3, "imaging of Jane is outside her grant");
    assert_eq!(summary["rule_set"], "safe-harbor-1");
    let files = open(&ana, &out1, &dir.join("plain-1"));
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["DocumentReference.ndjson", "Patient.ndjson", "manifest.json"]);
    let manifest: serde_json::Value = serde_json::from_str(&files[2].1).unwrap();
    assert_eq!(manifest["requiresAccessToken"], false);
    assert_eq!(manifest["extension"]["urn:medledger:research"]["ruleSet"], "safe-harbor-1");
    // Nothing in the opened files finds the export's access events on the ledger (and so the
    // cohort by account): not the project, the height, the plans' digest or a transaction.
    let opened = String::from_utf8_lossy(&every_byte(&dir.join("plain-1"))).into_owned();
    for linkable in ["cardio-2026", summary["plans"].as_str().unwrap()] {
        assert!(!opened.contains(linkable), "{linkable} is in the opened export");
    }
    assert!(!opened.contains(&format!("\"height\": {}", summary["height"])), "{opened}");
    assert_eq!(manifest["output"].as_array().unwrap().len(), 2, "{manifest}");
    assert!(files[0].1.contains("imaging") && files[0].1.contains("\"2024\""), "{}", files[0].1);
    // No identifier in any byte, opened or not.
    for bytes in [every_byte(&dir.join("plain-1")), every_byte(&out1)] {
        let text = String::from_utf8_lossy(&bytes);
        for s in &secrets {
            assert!(!leaks(&text, s), "{s:?} is in the export");
        }
    }
    // Each exported patient's trail shows the export once; the others' never.
    assert_eq!(exports_in_trail(&c.patient, "cardio-2026", &env), 1);
    assert_eq!(exports_in_trail(patient_of(0).0, "cardio-2026", &env), 1);
    for (i, person) in people.iter().enumerate().skip(1) {
        assert_eq!(exports_in_trail(patient_of(i).0, "cardio-2026", &env), 0, "{}", person.1);
    }
    let text = ok(&["audit", "trail", "--wallet", &c.patient], &env);
    assert!(text.contains("RESEARCH EXPORT for project cardio-2026"), "{text}");

    // Only the exporter's wallet opens it.
    let err = fails(
        &["research", "open", "--wallet", &oli, &out1.display().to_string(), "-o"]
            .into_iter()
            .chain([dir.join("plain-oli").display().to_string().as_str()])
            .collect::<Vec<_>>(),
        &[],
    );
    assert!(err.contains("not exported by this wallet"), "{err}");

    // Pseudonyms: the same within the project, others in another project. Run again the
    // same day with the same plans, the export names the events it committed (its wallet's
    // journal, confirmed by the ledger's listing) rather than adding a second to each trail.
    let first = patient_ids(&files);
    let again = export(&ana, "cardio-2026", &dir.join("export-2"), &env);
    assert_eq!(
        (again["patients"].as_u64(), again["height"].as_u64()),
        (Some(2), summary["height"].as_u64())
    );
    assert_eq!(exports_in_trail(&c.patient, "cardio-2026", &env), 1, "a second event");
    assert_eq!(patient_ids(&open(&ana, &dir.join("export-2"), &dir.join("plain-2"))), first);
    export(&ana, "neuro-2027", &dir.join("export-3"), &env);
    let other = patient_ids(&open(&ana, &dir.join("export-3"), &dir.join("plain-3")));
    assert_eq!(other.len(), 2);
    assert!(other.is_disjoint(&first), "{other:?} {first:?}");

    // Another organisation's member exports only the patient who granted it.
    let summary = export(&oli, "cardio-2026", &dir.join("export-oli"), &env);
    assert_eq!(summary["patients"], 1, "{summary}");
    assert_eq!(exports_in_trail(patient_of(3).0, "cardio-2026", &env), 1);
    assert_eq!(exports_in_trail(&c.patient, "cardio-2026", &env), 1, "ana's export only");

    // Removed, the member exports nothing.
    ok(&["organisation", "member", "remove", &ana_account, "--wallet", &lab], &env);
    let err = fails(
        &["research", "export", "--wallet", &ana, "--project", "cardio-2026", "-o"]
            .into_iter()
            .chain([dir.join("export-4").display().to_string().as_str()])
            .collect::<Vec<_>>(),
        &env,
    );
    assert!(err.contains("researcher organisation"), "{err}");
}

/// pydicom's CT test file (the test command installs pydicom from PyPI).
fn pydicom_ct_file() -> std::path::PathBuf {
    let out = std::process::Command::new("python3")
        .args(["-c", "import os, pydicom; print(os.path.dirname(pydicom.__file__))"])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "pydicom is not installed: scripts/test.sh installs it");
    let dir = String::from_utf8(out.stdout).unwrap();
    Path::new(dir.trim()).join("data/test_files/CT_small.dcm")
}

/// The research export carries DICOM content de-identified (PS3.15 Annex E) and nothing else:
/// the member reads the imaging records only once its export is committed (each read in the
/// patient's trail); a DICOM scan becomes a `.dcm` file its DocumentReference points at, which
/// pydicom (an independent reader) finds de-identified with its pixels unchanged; a non-DICOM
/// imaging record is withheld and said so.
#[test]
fn a_research_export_carries_dicom_content_de_identified_and_nothing_else() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let url = node.url.as_str();
    let env = [("MEDLEDGER_NODE", url)];
    let c = cast(dir, &node);
    let cohort = organisation(dir, &node, "researcher", "Cohort Lab", ("cohort-lab", "ana"));
    let (ana, lab_account) = (cohort.member, cohort.account);
    let ct = pydicom_ct_file();
    let out = ok(
        &["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id, "--file"]
            .into_iter()
            .chain([ct.display().to_string().as_str(), "--category", "imaging"])
            .chain(["--date", "2024-03-02", "--title", "CT chest"])
            .collect::<Vec<_>>(),
        &[],
    );
    let scan = crate::records::pmr_of(&out);
    let note = record(dir, &c.doctor, &c.patient_id, "imaging", "2024-03-03");
    let granted = ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &lab_account]
            .into_iter()
            .chain(["--purpose", "research", "--scope", "categories:imaging"])
            .collect::<Vec<_>>(),
        &env,
    );
    id(&granted);
    // Before the export the grant opens nothing as it is, nor shows it.
    let err = crate::organisations::read(dir, &ana, &scan, "research").unwrap_err();
    assert!(err.contains("may not see it"), "{err}");

    // The first export names both images, but the grant wrapped no key to the member: their
    // content is withheld, unread. The patient releases the keys of what it named; an export
    // again within the day carries the image.
    let first = export(&ana, "imaging-2026", &dir.join("first"), &env);
    assert_eq!((first["patients"].as_u64(), first["images"].as_u64()), (Some(1), Some(0)));
    let unreleased = first["withheld"].as_array().unwrap();
    assert_eq!(unreleased.len(), 2, "{first}");
    assert!(unreleased.iter().all(|w| w["reason"].as_str().unwrap().contains("not released")));
    let released = ok(&["research", "release", "--wallet", &c.patient, "--json"], &env);
    let released: serde_json::Value = serde_json::from_str(&released).unwrap();
    assert_eq!(released["released"].as_array().unwrap().len(), 2, "{released}");
    let out_dir = dir.join("export");
    let summary = export(&ana, "imaging-2026", &out_dir, &env);
    assert_eq!(summary["patients"], 1, "{summary}");
    assert_eq!(summary["images"], 1, "{summary}");
    // The second run named the first run's export: one event in the trail.
    assert_eq!(exports_in_trail(&c.patient, "imaging-2026", &env), 1);
    let withheld = summary["withheld"].as_array().unwrap();
    assert_eq!(withheld.len(), 1, "{summary}");
    assert_eq!(withheld[0]["pmr"], note.as_str());
    assert!(withheld[0]["reason"].as_str().unwrap().contains("not DICOM"), "{summary}");
    let files = open(&ana, &out_dir, &dir.join("plain"));
    let image: Vec<&String> =
        files.iter().map(|(n, _)| n).filter(|n| n.ends_with(".dcm")).collect();
    assert_eq!(image.len(), 1, "{files:?}");
    let (_, docs) = files.iter().find(|(n, _)| n == "DocumentReference.ndjson").unwrap();
    assert!(docs.contains(&format!("\"url\":\"{}\"", image[0])), "{docs}");
    assert!(docs.contains("application/dicom") && docs.contains("content not exported"), "{docs}");
    let dcm = dir.join("plain").join(image[0]);
    let bytes = std::fs::read(&dcm).unwrap();
    for identifier in ["CompressedSamples", "1CT1", scan.as_str(), c.patient_id.as_str()] {
        assert!(!leaks(&String::from_utf8_lossy(&bytes), identifier), "{identifier} in the image");
    }
    let check = "import sys, pydicom\n\
        a, b = pydicom.dcmread(sys.argv[1]), pydicom.dcmread(sys.argv[2])\n\
        assert b.PatientIdentityRemoved == 'YES', b.PatientIdentityRemoved\n\
        assert str(b.PatientName) != str(a.PatientName) and b.PatientID != a.PatientID\n\
        assert b.StudyInstanceUID != a.StudyInstanceUID and b.SOPInstanceUID != a.SOPInstanceUID\n\
        assert b.PixelData == a.PixelData\n";
    let checked = std::process::Command::new("python3")
        .args(["-c", check, &ct.display().to_string(), &dcm.display().to_string()])
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));

    // The patient's trail shows the exports and the two reads the second made, for research
    // (the first read nothing).
    let trail: serde_json::Value =
        serde_json::from_str(&ok(&["audit", "trail", "--wallet", &c.patient, "--json"], &env))
            .unwrap();
    let research_reads = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let access = &e["kind"]["access"];
            access["purpose"] == "research" && access["decision"]["allow"].is_object()
        })
        .count();
    assert_eq!(research_reads, 2, "{trail}");
}

/// `research release` wraps keys only to an export's signer whom the ledger proves a member of
/// a researcher organisation, and only under research grants of the patient's own that its
/// transactions prove. Anyone can sign an export; the ledger refuses it, yet it is in the log.
/// A node that puts such exports in the patient's trail, each served as applied (one signed by
/// a researcher's member whose organisation holds no grant of the patient's, one by a doctor),
/// gets no key released and nothing stored: each export is passed over, saying why.
#[test]
fn a_release_goes_only_to_a_proven_researcher_under_the_patients_own_grant() {
    use crate::wallet_trust::{KeySwappingProxy, Lie, client_of, onboard, refused_served_applied};
    use medledger_client::Wallet;
    use medledger_core::{
        audit::{AuditEvent, AuditKind},
        encoding,
        tx::{
            TxBody,
            consent::RecordCategory,
            research::{PlannedRecord, ResearchExportTx, plan_digest},
        },
    };
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let c = cast(dir, &node);
    let cohort = organisation(dir, &node, "researcher", "Cohort Lab", ("cohort-lab", "ana"));
    let (doctor, _) = onboard(dir, &node, &c.hospital, "mallory");
    record(dir, &c.doctor, &c.patient_id, "imaging", "2024-03-03");
    let (rt, client) = client_of(&c.patient, &node);
    let me = Wallet::load(&c.patient).unwrap().account();
    let planned: Vec<PlannedRecord> = rt
        .block_on(client.records_of_patient(&me))
        .unwrap()
        .into_iter()
        .map(|r| PlannedRecord { pmr: r.pmr, category: r.category, content: r.content })
        .collect();
    let (project, rule_set) = ("imaging-2026", "safe-harbor-1");
    let categories = vec![RecordCategory::Imaging];
    let body = ResearchExportTx {
        patient: me,
        categories: categories.clone(),
        project: project.into(),
        rule_set: rule_set.into(),
        plan: plan_digest(project, rule_set, &me, &categories, &planned),
    };
    let mut trail = rt.block_on(client.audit_trail_all(&me, None)).unwrap();
    let mut lies = Vec::new();
    for signer in [&cohort.member, &doctor] {
        let export = TxBody::ResearchExport(body.clone());
        let (tx, proof) = refused_served_applied(&node, signer, export, &c.patient);
        let last = trail.last().unwrap().clone();
        trail.push(AuditEvent {
            seq: last.seq + 1,
            height: proof.receipt.height,
            time_ms: last.time_ms,
            tx_hash: tx,
            actor: Wallet::load(signer).unwrap().account(),
            patient: me,
            kind: AuditKind::ResearchExport {
                project: project.into(),
                categories: categories.clone(),
                rule_set: rule_set.into(),
                plan: body.plan,
                grants: Vec::new(),
            },
        });
        lies.push(Lie::Answer {
            path: format!("/v1/transactions/{tx}"),
            body: serde_json::to_vec(&proof).unwrap(),
        });
    }
    lies.push(Lie::Answer { path: format!("/v1/audit/{me}"), body: encoding::encode(&trail) });
    let proxy = KeySwappingProxy::lying(node.port, Lie::All(lies));
    let out = ok(
        &["research", "release", "--wallet", &c.patient, "--json"],
        &[("MEDLEDGER_NODE", proxy.url.as_str())],
    );
    assert!(proxy.lies() >= 3, "the proxy did not lie: {out}");
    let released: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(released["released"].as_array().unwrap().len(), 0, "{released}");
    let passed = released["passed_over"].to_string();
    assert!(
        passed.contains(&format!(
            "no research grant of yours to {} covering imaging is proven",
            cohort.account
        )),
        "{passed}"
    );
    let doctor_account = Wallet::load(&doctor).unwrap().account();
    assert!(
        passed.contains(&format!(
            "its signer {doctor_account} is not proven a member of a researcher organisation"
        )),
        "{passed}"
    );
    let seen = proxy.seen();
    assert!(!seen.iter().any(|r| r.starts_with("PUT ")), "a key was stored: {seen:?}");
}
