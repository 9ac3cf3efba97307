//! Researcher and insurer organisations through the CLI: the regulator admits them, each adds
//! a member from the member's own acceptance, a patient grants the researcher research access
//! to lab reports, and the member reads under that grant only what a research export of its own
//! named (nothing before it), and then not for another purpose, not outside the scope, not
//! under a deny rule, not while the organisation is suspended, not after revocation or removal;
//! the insurer's member and non-members never.

use std::path::Path;

use crate::{
    harness::*,
    records::pmr_of,
    registry::{cast, identity, wallet},
};

/// Admits an organisation of `kind` named `name` for the wallet `org` (regulator).
pub(crate) fn admit(node: &Node, org: &str, kind: &str, name: &str) -> String {
    let out = ok(
        &["organisation", "admit", "--wallet", &node.regulator(), "--identity", &identity(org)]
            .into_iter()
            .chain(["--kind", kind, "--name", name, "--contact", "ethics@example.org", "--json"])
            .collect::<Vec<_>>(),
        &[("MEDLEDGER_NODE", node.url.as_str())],
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("organisation admit --json");
    v["account"].as_str().expect("account").to_owned()
}

/// The member card `member` prints to join `org_account`.
pub(crate) fn card(member: &str, org_account: &str) -> String {
    ok(
        &["organisation", "member", "accept", "--wallet", member, "--organisation", org_account],
        &[],
    )
    .trim()
    .to_owned()
}

/// `org` adds `member` (from the member's card); the member's account.
pub(crate) fn add_member(
    org: &str,
    member: &str,
    org_account: &str,
    env: &[(&str, &str)],
) -> String {
    let card = card(member, org_account);
    let out =
        ok(&["organisation", "member", "add", "--wallet", org, "--identity", &card, "--json"], env);
    let v: serde_json::Value = serde_json::from_str(&out).expect("member add --json");
    v["account"].as_str().expect("account").to_owned()
}

/// An organisation the regulator admitted, with one member added from its card: the wallets
/// and the accounts.
pub(crate) struct Organisation {
    pub(crate) wallet: String,
    pub(crate) account: String,
    pub(crate) member: String,
    pub(crate) member_account: String,
}

/// Makes the wallets `names.0` (the organisation) and `names.1` (its member) in `dir`, has the
/// regulator admit the organisation as `kind` named `name`, and adds the member.
pub(crate) fn organisation(
    dir: &Path,
    node: &Node,
    kind: &str,
    name: &str,
    names: (&str, &str),
) -> Organisation {
    let url = node.url.as_str();
    let wallet = crate::registry::wallet(dir, names.0, url);
    let member = crate::registry::wallet(dir, names.1, url);
    let account = admit(node, &wallet, kind, name);
    let member_account = add_member(&wallet, &member, &account, &[("MEDLEDGER_NODE", url)]);
    Organisation { wallet, account, member, member_account }
}

/// A record of `category` the doctor adds for the patient; its PMR-ID.
pub(crate) fn record(
    dir: &Path,
    doctor: &str,
    patient_id: &str,
    category: &str,
    date: &str,
) -> String {
    let file = dir.join(format!("{category}.txt"));
    std::fs::write(&file, format!("{category} of {date}: all within range")).unwrap();
    let file = file.display().to_string();
    let out = ok(
        &["record", "add", "--wallet", doctor, "--patient", patient_id, "--file", &file]
            .into_iter()
            .chain(["--category", category, "--date", date, "--title", category])
            .collect::<Vec<_>>(),
        &[],
    );
    pmr_of(&out)
}

/// Reads `pmr` as `wallet` for `purpose` into `dir`; the command's output, or its error.
pub(crate) fn read(dir: &Path, wallet: &str, pmr: &str, purpose: &str) -> Result<String, String> {
    let out = dir.join(format!("read-{pmr}"));
    let _ = std::fs::remove_file(&out);
    let o = cli(
        &["record", "get", pmr, "--wallet", wallet, "--purpose", purpose, "-o"]
            .into_iter()
            .chain([out.display().to_string().as_str()])
            .collect::<Vec<_>>(),
        &[],
    );
    if o.status.success() {
        let bytes = std::fs::read(&out).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        assert!(!out.exists(), "a refused read left {}", out.display());
        Err(show(&o))
    }
}

/// `r` is a refused read: the ledger denied the access, the signer may not act, or the record
/// is not even visible to the reader.
fn denied(r: Result<String, String>, why: &str) {
    const REFUSALS: [&str; 4] =
        ["access denied", "suspended", "not the active key", "or you may not see it"];
    match r {
        Ok(content) => panic!("{why}: read {content:?}"),
        Err(e) => assert!(REFUSALS.iter().any(|r| e.contains(r)), "{why}: {e}"),
    }
}

#[test]
fn organisations_through_the_cli() {
    let tmp = tempdir();
    let dir = tmp.path();
    let node = Node::start(&dir.join("data"));
    let url = node.url.as_str();
    let env = [("MEDLEDGER_NODE", url)];
    let c = cast(dir, &node);
    let lab = wallet(dir, "cohort-lab", url);
    let ana = wallet(dir, "ana", url);
    let insurer = wallet(dir, "insurer", url);
    let ivo = wallet(dir, "ivo", url);

    // Only the regulator admits an organisation.
    let err = fails(
        &["organisation", "admit", "--wallet", &c.hospital, "--identity", &identity(&lab)]
            .into_iter()
            .chain(["--kind", "researcher", "--name", "Cohort Lab"])
            .collect::<Vec<_>>(),
        &env,
    );
    assert!(err.contains("unauthorised"), "{err}");
    let lab_account = admit(&node, &lab, "researcher", "Cohort Lab");
    let insurer_account = admit(&node, &insurer, "insurer", "Shield Mutual");

    // A member is added from its own acceptance, by its organisation only.
    let err = fails(
        &["organisation", "member", "add", "--wallet", &lab, "--identity", &identity(&ana)],
        &env,
    );
    assert!(err.contains("member accept"), "{err}");
    let err = fails(
        &["organisation", "member", "add", "--wallet", &c.doctor]
            .into_iter()
            .chain(["--identity", &card(&ana, &lab_account)])
            .collect::<Vec<_>>(),
        &env,
    );
    assert!(err.contains("unauthorised"), "{err}");
    // A card made out to the insurer does not make ana a member of the lab.
    let err = fails(
        &["organisation", "member", "add", "--wallet", &lab]
            .into_iter()
            .chain(["--identity", &card(&ana, &insurer_account)])
            .collect::<Vec<_>>(),
        &env,
    );
    assert!(err.contains("did not accept"), "{err}");
    let ana_account = add_member(&lab, &ana, &lab_account, &env);
    let ivo_account = add_member(&insurer, &ivo, &insurer_account, &env);

    let list: serde_json::Value = serde_json::from_str(&ok(
        &["organisation", "list", "--wallet", &c.patient, "--json"],
        &env,
    ))
    .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let lab_entry = list.iter().find(|o| o["account"] == lab_account.as_str()).unwrap();
    assert_eq!(lab_entry["kind"], "Researcher");
    assert_eq!(lab_entry["name"], "Cohort Lab");
    assert_eq!(lab_entry["members"][0]["account"], ana_account.as_str());
    assert_eq!(lab_entry["members"][0]["name"], "ana");
    let text = ok(&["organisation", "list", "--wallet", &c.patient], &env);
    assert!(text.contains("Cohort Lab") && text.contains("Shield Mutual"), "{text}");

    // Two records; the patient grants the lab research access to imaging only. No key is
    // wrapped to the lab or its member: a research export's member gets the keys of what it
    // named, after it, from the patient.
    let labs = record(dir, &c.doctor, &c.patient_id, "imaging", "2024-03-01");
    let report = record(dir, &c.doctor, &c.patient_id, "lab-report", "2024-03-02");
    let grant_args = |grantee: &str, purpose: &str| -> Vec<String> {
        ["consent", "grant", "--wallet", &c.patient, "--grantee", grantee]
            .into_iter()
            .chain(["--purpose", purpose, "--scope", "categories:imaging"])
            .map(str::to_owned)
            .collect()
    };
    let args = grant_args(&lab_account, "research");
    let out = ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env);
    assert!(out.contains("no record key wrapped"), "{out}");
    assert!(!out.contains("wrapped to member"), "{out}");
    let grant = out.lines().find_map(|l| l.strip_prefix("id ")).unwrap().trim().to_owned();
    // A researcher is granted research only.
    let args = grant_args(&lab_account, "insurance");
    let err = fails(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env);
    assert!(err.contains("Research only"), "{err}");

    // A research grant is no licence to read the records as they are, nor to see them: the
    // member reads the image only once a research export of its own names it (M2), and for
    // research only; the lab itself never. Before that the record is not even shown.
    let err = read(dir, &ana, &labs, "research").unwrap_err();
    assert!(err.contains("no record") && err.contains("may not see it"), "{err}");
    let summary = crate::research::export(&ana, "cardio-2026", &dir.join("export"), &env);
    assert_eq!(summary["patients"], 1, "{summary}");
    // The export named the image, and the ledger would let the member read it, but no key
    // reached the member: the patient releases the keys of what the export named, once.
    let err = read(dir, &ana, &labs, "research").unwrap_err();
    assert!(err.contains("key"), "{err}");
    let release = || -> serde_json::Value {
        let out = ok(&["research", "release", "--wallet", &c.patient, "--json"], &env);
        serde_json::from_str(&out).unwrap()
    };
    let released = release();
    let keys = released["released"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{released}");
    assert_eq!(
        (keys[0]["pmr"].as_str(), keys[0]["member"].as_str()),
        (Some(&*labs), Some(&*ana_account))
    );
    assert_eq!(release()["released"].as_array().unwrap().len(), 0, "released twice");
    let content = read(dir, &ana, &labs, "research").unwrap();
    assert!(content.contains("imaging of 2024-03-01"), "{content}");
    denied(read(dir, &ana, &labs, "insurance"), "another purpose");
    denied(read(dir, &ana, &labs, "treatment"), "treatment");
    denied(read(dir, &ana, &report, "research"), "outside the scope");
    // The lab's own account, the insurer's member, the insurer: not under the lab's grant.
    let err = read(dir, &lab, &labs, "research").unwrap_err();
    assert!(err.contains("no record") && err.contains("may not see it"), "{err}");
    for (who, purpose) in [(&ivo, "research"), (&ivo, "insurance"), (&insurer, "research")] {
        denied(read(dir, who, &labs, purpose), "not a member of the lab");
    }
    let insurer_entry = list.iter().find(|o| o["account"] == insurer_account.as_str()).unwrap();
    assert_eq!(insurer_entry["members"][0]["account"], ivo_account.as_str());

    // A deny rule for every researcher wins; removed, the grant works again.
    let out = ok(&["consent", "deny", "--wallet", &c.patient, "--role", "researcher"], &env);
    let rule = out.lines().find_map(|l| l.strip_prefix("id ")).unwrap().trim().to_owned();
    denied(read(dir, &ana, &labs, "research"), "a deny rule");
    ok(&["consent", "undeny", "--wallet", &c.patient, &rule], &env);
    read(dir, &ana, &labs, "research").unwrap();

    // Suspended, the lab's member is refused; reinstated, it reads nothing an export from
    // before the suspension named, until a new export names it.
    let reg = node.regulator();
    let err = fails(
        &["organisation", "suspend", &lab_account, "--wallet", &c.hospital, "--reason", "x"],
        &env,
    );
    assert!(err.contains("unauthorised"), "{err}");
    ok(&["organisation", "suspend", &lab_account, "--wallet", &reg, "--reason", "audit"], &env);
    denied(read(dir, &ana, &labs, "research"), "suspended organisation");
    ok(&["organisation", "reinstate", &lab_account, "--wallet", &reg], &env);
    let err = read(dir, &ana, &labs, "research").unwrap_err();
    assert!(err.contains("may not see it"), "{err}");
    crate::research::export(&ana, "cardio-2026", &dir.join("export-reinstated"), &env);
    read(dir, &ana, &labs, "research").unwrap();

    // Revoked, the grant opens nothing; a new grant opens nothing the old export named, until
    // an export under it does.
    ok(&["consent", "revoke", &grant, "--wallet", &c.patient], &env);
    denied(read(dir, &ana, &labs, "research"), "revoked grant");
    let args = grant_args(&lab_account, "research");
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env);
    denied(read(dir, &ana, &labs, "research"), "a grant given after the export");
    crate::research::export(&ana, "cardio-2026", &dir.join("export-again"), &env);
    read(dir, &ana, &labs, "research").unwrap();

    // Only the lab removes its member; removed, the member reads nothing.
    let err =
        fails(&["organisation", "member", "remove", &ana_account, "--wallet", &insurer], &env);
    assert!(err.contains("unauthorised"), "{err}");
    ok(&["organisation", "member", "remove", &ana_account, "--wallet", &lab], &env);
    denied(read(dir, &ana, &labs, "research"), "removed member");
    let list: serde_json::Value = serde_json::from_str(&ok(
        &["organisation", "list", "--wallet", &c.patient, "--json"],
        &env,
    ))
    .unwrap();
    let lab_entry =
        list.as_array().unwrap().iter().find(|o| o["account"] == lab_account.as_str()).unwrap();
    assert!(lab_entry["members"][0]["removed_at"].is_u64(), "{lab_entry}");
}
