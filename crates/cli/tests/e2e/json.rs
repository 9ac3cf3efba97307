//! Scripts read JSON, never text: the whole chain from wallets to a break-glass driven through
//! `--json` only, and every listing in the command tree (found from `--help`, so that a new
//! listing without `--json` fails here) printing valid JSON.

use std::path::Path;

use serde_json::Value;

use crate::harness::*;

/// Runs the CLI with `--json` appended and parses its stdout as one JSON document.
fn json(args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = ok(&args, env);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("`medledger {}` printed no JSON ({e}):\n{out}", args.join(" ")))
}

fn text(v: &Value, field: &str) -> String {
    match &v[field] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("no `{field}` in {v} (found {other})"),
    }
}

fn new_wallet(dir: &Path, name: &str, env: &[(&str, &str)]) -> (String, Value) {
    let path = dir.join(format!("{name}.wallet.json")).display().to_string();
    let node = env[0].1;
    let v = json(&["wallet", "create", "--out", &path, "--name", name, "--node", node], &[]);
    assert_eq!(v["name"], name, "{v}");
    assert_eq!(v["pinned"], true, "{v}");
    (path, v)
}

/// The ids the chain produced, for the listings.
struct Chain {
    regulator: String,
    hospital: String,
    patient: String,
    patient_account: String,
    device: String,
    pmr: String,
}

fn chain(dir: &Path, node: &Node) -> Chain {
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let regulator = node.regulator();
    let (hospital, h) = new_wallet(dir, "hospital", &env);
    let (doctor, d) = new_wallet(dir, "doctor", &env);
    let (patient, p) = new_wallet(dir, "patient", &env);
    let (device_wallet, dv) = new_wallet(dir, "device", &env);
    let shown = json(&["wallet", "show", "--wallet", &hospital], &env);
    assert_eq!(shown["account"], h["account"], "{shown}");

    let admitted = json(
        &["hospital", "admit", "--wallet", &regulator, "--identity", &text(&h, "identity")]
            .into_iter()
            .chain(["--registration-id", "GOV-1", "--name", "St. Json", "--city", "Leeds"])
            .chain(["--specialisation", "cardiology", "--contact", "+44 113 000 0000"])
            .collect::<Vec<_>>(),
        &env,
    );
    assert_eq!(admitted["account"], h["account"], "{admitted}");
    assert_eq!(text(&admitted, "tx_hash").len(), 64, "{admitted}");
    assert!(admitted["height"].as_u64().unwrap() > 0, "{admitted}");

    let onboarded = json(
        &["doctor", "onboard", "--wallet", &hospital, "--identity", &text(&d, "identity")]
            .into_iter()
            .chain(["--registration-number", "GMC-1", "--name", "Dr. Json"])
            .chain(["--specialisation", "cardiology"])
            .collect::<Vec<_>>(),
        &env,
    );
    assert_eq!(onboarded["account"], d["account"], "{onboarded}");
    let doctor_account = text(&onboarded, "account");

    let registered = json(
        &["patient", "register", "--wallet", &hospital, "--identity", &text(&p, "identity")]
            .into_iter()
            .chain(["--name", "Jay Son", "--date-of-birth", "1990-03-04"])
            .chain(["--attendant-name", "Kay Son", "--attendant-phone", "+44 7700 900000"])
            .chain(["--attendant-relationship", "sibling"])
            .collect::<Vec<_>>(),
        &env,
    );
    assert_eq!(registered["account"], p["account"], "{registered}");
    let patient_id = text(&registered, "patient_id");
    let patient_account = text(&registered, "account");

    let granted =
        json(&["consent", "grant", "--wallet", &patient, "--grantee", &doctor_account], &env);
    assert_eq!(text(&granted, "id").len(), 64, "{granted}");
    let requested =
        json(&["consent", "request", "--wallet", &doctor, "--patient", &patient_account], &env);
    assert_eq!(text(&requested, "id").len(), 64, "{requested}");

    let file = dir.join("note.txt");
    std::fs::write(&file, b"blood pressure 120/80").unwrap();
    let added = json(
        &["record", "add", "--wallet", &doctor, "--patient", &patient_id]
            .into_iter()
            .chain(["--file", &file.display().to_string(), "--category", "lab_report"])
            .collect::<Vec<_>>(),
        &env,
    );
    let pmr = text(&added, "pmr");
    assert!(pmr.starts_with(&patient_id), "{added}");

    let opened = json(
        &["case", "open", "--wallet", &doctor, "--patient", &patient_id, "--title", "Checkup"],
        &env,
    );
    assert!(!text(&opened, "case").is_empty(), "{opened}");
    assert_eq!(text(&opened, "head").len(), 64, "{opened}");

    let device = json(
        &["device", "register", "--wallet", &patient, "--identity", &text(&dv, "identity")]
            .into_iter()
            .chain(["--kind", "pulse-oximeter", "--serial", "PO-1"])
            .collect::<Vec<_>>(),
        &env,
    );
    assert_eq!(device["device"], dv["account"], "{device}");
    assert_eq!(device["patient"], patient_account.as_str(), "{device}");
    let device_account = text(&device, "device");
    let session = json(
        &["device", "session", "start", "--wallet", &patient, "--device", &device_account],
        &env,
    );
    assert_eq!(text(&session, "session").len(), 64, "{session}");
    assert!(!text(&session, "public_key").is_empty(), "{session}");
    let _ = device_wallet;

    let bg = json(
        &["emergency", "break-glass", "--wallet", &doctor, "--patient", &patient_id]
            .into_iter()
            .chain(["--code", "unconscious", "--reason", "collapsed in the waiting room"])
            .collect::<Vec<_>>(),
        &env,
    );
    assert_eq!(text(&bg, "id").len(), 64, "{bg}");
    Chain { regulator, hospital, patient, patient_account, device: device_account, pmr }
}

/// The subcommands `medledger <path> --help` lists (without `help`).
fn subcommands(path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let out = ok(&args, &[]);
    let Some(start) = out.find("Commands:") else { return Vec::new() };
    out[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let name = l.split_whitespace().next()?;
            (l.starts_with("  ") && name != "help").then(|| name.to_owned())
        })
        .collect()
}

/// Every leaf command with the first line of its help, found from `--help`.
fn leaves(path: Vec<String>, out: &mut Vec<(String, String)>) {
    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
    let subs = subcommands(&refs);
    if subs.is_empty() {
        let help = ok(&[refs.as_slice(), &["--help"]].concat(), &[]);
        out.push((path.join(" "), help.lines().next().unwrap_or_default().to_owned()));
        return;
    }
    for s in subs {
        let mut p = path.clone();
        p.push(s);
        leaves(p, out);
    }
}

#[test]
fn the_whole_chain_runs_on_json_and_every_listing_prints_json() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = chain(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];

    // How to run each listing of the tree; a listing missing here fails the test below.
    let args: Vec<(&str, Vec<&str>)> = vec![
        ("hospital list", vec!["--wallet", &c.patient]),
        ("doctor list", vec!["--wallet", &c.patient]),
        ("organisation list", vec!["--wallet", &c.patient]),
        ("consent who-can-see", vec!["--wallet", &c.patient]),
        ("consent grants", vec!["--wallet", &c.patient, "--patient", &c.patient_account]),
        ("audit trail", vec!["--wallet", &c.patient]),
        ("audit counts", vec!["--wallet", &c.regulator]),
        ("record list", vec!["--wallet", &c.patient]),
        ("record history", vec![&c.pmr, "--wallet", &c.patient]),
        ("case list", vec!["--wallet", &c.patient]),
        ("device list", vec!["--wallet", &c.patient]),
        ("device session list", vec!["--wallet", &c.patient, "--device", &c.device]),
        ("emergency reviews", vec!["--wallet", &c.hospital]),
        ("emergency overview", vec!["--wallet", &c.patient, "--patient", &c.patient_account]),
        // Public: no wallet (the node comes from MEDLEDGER_NODE).
        ("node list", vec![]),
    ];
    let mut all = Vec::new();
    leaves(Vec::new(), &mut all);
    let listings: Vec<&(String, String)> = all
        .iter()
        .filter(|(path, about)| {
            path.ends_with(" list")
                || about.starts_with("List")
                || ["consent who-can-see", "consent grants", "audit trail", "audit counts"]
                    .contains(&path.as_str())
                || path == "record history"
        })
        .collect();
    assert_eq!(listings.len(), args.len(), "listings in the tree: {listings:?}");
    for (path, _) in listings {
        let (_, extra) = args
            .iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("a new listing `medledger {path}`: add it here"));
        let mut full: Vec<&str> = path.split(' ').collect();
        full.extend(extra.iter().copied());
        let v = json(&full, &env);
        assert!(v.is_array() || v.is_object(), "`medledger {path} --json`: {v}");
    }
}
