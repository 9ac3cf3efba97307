//! Devices end to end through the CLI and a real node: registration, consent-gated
//! thresholds, a session, `device simulate` streaming readings whose alert reaches the doctor's
//! hospital on its event stream within a second, the audited, decrypted read; and a SIGKILL of
//! the device's gateway between an abnormal reading and its alert that loses nothing and
//! commits the alert exactly once.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use medledger_client::{NodeClient, Signer, Wallet};
use medledger_core::audit::AuditKind;

use crate::{
    harness::*,
    registry::{Cast, cast, identity, wallet},
};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The value after `label` on a line of `out`.
fn field(out: &str, label: &str) -> String {
    let start = out.find(label).unwrap_or_else(|| panic!("no `{label}` in:\n{out}")) + label.len();
    out[start..].split_whitespace().next().unwrap().to_owned()
}

/// A network with a patient's pulse oximeter, a doctor consented to and its thresholds, and an
/// open session naming the doctor.
pub(crate) struct Setup {
    pub(crate) c: Cast,
    pub(crate) device_wallet: String,
    pub(crate) device: String,
    pub(crate) session: String,
    /// The session's public key, as `device session start` printed it.
    pub(crate) public_key: String,
    grant: String,
    url: String,
}

pub(crate) fn setup(dir: &std::path::Path, node: &Node) -> Setup {
    let c = cast(dir, node);
    let url = node.url.clone();
    let env = [("MEDLEDGER_NODE", url.as_str())];
    let device_wallet = wallet(dir, "oximeter", &url);
    let out = ok(
        &[
            "device",
            "register",
            "--wallet",
            &c.patient,
            "--identity",
            &identity(&device_wallet),
            "--kind",
            "pulse-oximeter",
            "--serial",
            "PO-2231-77",
            "--model",
            "Oxi 3",
        ],
        &env,
    );
    let device = account(&out);
    // Without the patient's consent the doctor cannot set thresholds.
    let err = fails(
        &["device", "thresholds", "set", "--wallet", &c.doctor, "--device", &device]
            .into_iter()
            .chain(["--heart-rate", "50..110,40..140"])
            .collect::<Vec<_>>(),
        &env,
    );
    assert!(err.contains("grant") || err.contains("consent"), "{err}");
    let out = ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &c.doctor_account]
            .into_iter()
            .chain(["--scope", "categories:device_data"])
            .collect::<Vec<_>>(),
        &env,
    );
    let grant = field(&out, "id ");
    let out = ok(
        &["device", "thresholds", "set", "--wallet", &c.doctor, "--device", &device]
            .into_iter()
            .chain(["--heart-rate", "50..110,40..140", "--spo2", "92..100,88..100"])
            .collect::<Vec<_>>(),
        &env,
    );
    assert!(out.contains("thresholds set"), "{out}");
    let out = ok(
        &["device", "session", "start", "--wallet", &c.patient, "--device", &device]
            .into_iter()
            .chain(["--doctor", c.doctor_account.as_str()])
            .collect::<Vec<_>>(),
        &env,
    );
    let session = field(&out, "session: ");
    let public_key = field(&out, "session public key: ");
    Setup { c, device_wallet, device, session, public_key, grant, url }
}

/// A `medledger device simulate --json` child whose stdout lines arrive on a channel.
struct Simulator {
    child: Child,
    lines: mpsc::Receiver<(String, u64)>,
    /// Every JSON line read so far.
    seen: Vec<serde_json::Value>,
}

impl Simulator {
    fn start(s: &Setup, state: &std::path::Path, args: &[&str], fault: Option<&str>) -> Self {
        let mut cmd = Command::new(bin());
        cmd.args(["device", "simulate", "--wallet", &s.device_wallet, "--json"])
            .arg("--state-dir")
            .arg(state)
            .args(args)
            .env_remove("MEDLEDGER_WALLET")
            .env("MEDLEDGER_NODE", &s.url)
            .env("MEDLEDGER_PASSPHRASE", PASS)
            .env("MEDLEDGER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match fault {
            Some(f) => cmd.env("MEDLEDGER_DEVICE_FAULT", f),
            None => cmd.env_remove("MEDLEDGER_DEVICE_FAULT"),
        };
        let mut child = cmd.spawn().expect("spawn the simulator");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((line, now_ms())).is_err() {
                    break;
                }
            }
        });
        Simulator { child, lines, seen: Vec::new() }
    }

    /// The next JSON line for which `want` holds; panics after `limit`.
    fn until(
        &mut self,
        limit: Duration,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (line, _) = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("the simulator printed nothing matching within {limit:?}")
            });
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            self.seen.push(v.clone());
            if want(&v) {
                return v;
            }
        }
    }

    /// Every JSON line it printed, once it exits; asserts it succeeded.
    fn finish(mut self) -> Vec<serde_json::Value> {
        let mut out = std::mem::take(&mut self.seen);
        while let Ok((line, _)) = self.lines.recv_timeout(LIMIT) {
            if let Ok(v) = serde_json::from_str(&line) {
                out.push(v);
            }
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the simulator failed: {status}; printed {out:?}");
        out
    }

    /// SIGKILL.
    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The alerts committed in a session, from the node (as the patient).
fn session_view(s: &Setup) -> serde_json::Value {
    let env = [("MEDLEDGER_NODE", s.url.as_str())];
    let out = ok(
        &["device", "session", "list", "--wallet", &s.c.patient, "--device", &s.device, "--json"],
        &env,
    );
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    list.as_array().unwrap().iter().find(|v| v["id"] == s.session.as_str()).unwrap().clone()
}

/// The device alerts in an account's event stream, from the start.
fn alert_events(wallet_path: &str, url: &str) -> Vec<(u64, u64)> {
    let mut w = Wallet::load(wallet_path).unwrap();
    let identity = w.unlock(PASS).unwrap();
    let me = w.account();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client =
            NodeClient::new(url).unwrap().signed_by(Signer::new(identity.signing.clone(), me));
        let mut alerts = Vec::new();
        // Read what is there: stop at a keep-alive-free pause by bounding the wait.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            client.watch(me, None, |e| {
                if let AuditKind::DeviceAlert { seq, .. } = e.kind {
                    alerts.push((e.seq, seq));
                }
                true
            }),
        )
        .await;
        alerts
    })
}

#[test]
fn an_abnormal_reading_reaches_the_doctors_hospital_within_a_second_and_reads_back() {
    let tmp = tempdir();
    let mut node = Node::start(&tmp.path().join("data"));
    let s = setup(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", s.url.as_str())];
    let mut hospital_wallet = Wallet::load(&s.c.hospital).unwrap();
    let hospital = hospital_wallet.account();

    // The hospital watches its event stream while the device streams 40 readings, the 12th an
    // anomaly.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (seen_tx, seen_rx) = mpsc::channel();
    let watcher = {
        let url = s.url.clone();
        let identity = hospital_wallet.unlock(PASS).unwrap();
        rt.spawn(async move {
            let client = NodeClient::new(&url)
                .unwrap()
                .signed_by(Signer::new(identity.signing.clone(), hospital));
            let _ = client
                .watch(hospital, None, |e| {
                    if matches!(e.kind, AuditKind::DeviceAlert { .. }) {
                        let _ = seen_tx.send((e, now_ms()));
                        return false;
                    }
                    true
                })
                .await;
        })
    };
    thread::sleep(Duration::from_millis(300));
    let state = tmp.path().join("oximeter-state");
    let mut sim = Simulator::start(
        &s,
        &state,
        &["--rate", "20", "--count", "40", "--anomaly-rate", "0", "--anomaly-at", "12"]
            .into_iter()
            .chain(["--batch-ms", "400", "--seed", "7"])
            .collect::<Vec<_>>(),
        None,
    );
    let abnormal = sim.until(LIMIT, |v| v["type"] == "reading" && !v["severity"].is_null());
    let taken = abnormal["time_ms"].as_u64().unwrap();
    let (event, arrived) = seen_rx.recv_timeout(LIMIT).expect("the hospital saw no alert");
    let lag = arrived.saturating_sub(taken);
    assert!(lag < 1000, "the hospital saw the alert {lag} ms after the reading was taken");
    let AuditKind::DeviceAlert { seq, metric, severity, device, .. } = &event.kind else {
        unreachable!()
    };
    assert_eq!(*seq, abnormal["seq"].as_u64().unwrap());
    assert_eq!(serde_json::to_value(metric).unwrap(), abnormal["metric"]);
    assert_eq!(serde_json::to_value(severity).unwrap(), abnormal["severity"]);
    assert_eq!(device.to_string(), s.device);
    // The alert carries no value.
    let json = serde_json::to_string(&event).unwrap();
    let value = abnormal["value"].as_f64().unwrap();
    assert!(!json.contains(&value.to_string()), "the value leaked into the event: {json}");
    rt.block_on(async { tokio::time::timeout(LIMIT, watcher).await }).unwrap().unwrap();
    let printed = sim.finish();
    let alerts: Vec<_> = printed.iter().filter(|v| v["type"] == "alert").collect();
    assert_eq!(alerts.len(), 1, "{printed:?}");
    let batched: u64 =
        printed.iter().filter(|v| v["type"] == "batch").map(|v| v["count"].as_u64().unwrap()).sum();
    assert_eq!(batched, 39, "the other readings went in batches: {printed:?}");

    // The doctor (wrapped the session key) and the patient read them back, decrypted; the
    // hospital, with no grant and no key, is denied.
    for reader in [&s.c.doctor, &s.c.patient] {
        let out = ok(
            &["device", "readings", "--wallet", reader, "--session", &s.session, "--json"],
            &env,
        );
        let lines: Vec<serde_json::Value> =
            out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 40, "{out}");
        assert_eq!(
            lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect::<Vec<_>>(),
            (1..=40).collect::<Vec<_>>()
        );
        let alerted: Vec<_> = lines.iter().filter(|l| !l["alert"].is_null()).collect();
        assert_eq!(alerted.len(), 1);
        assert_eq!(alerted[0]["value"].as_f64().unwrap(), value);
    }
    let err =
        fails(&["device", "readings", "--wallet", &s.c.hospital, "--session", &s.session], &env);
    assert!(err.contains("no session"), "{err}");
    // Once the patient revokes the doctor's grant, the doctor's read is denied (and recorded).
    ok(&["consent", "revoke", &s.grant, "--wallet", &s.c.patient], &env);
    let err =
        fails(&["device", "readings", "--wallet", &s.c.doctor, "--session", &s.session], &env);
    assert!(err.contains("denied"), "{err}");
    // The operator's log (info level, no colour codes in a file) names the alert's metric and
    // severity, and the denied read as denied with the doctor who asked, not as unsigned.
    let log = node.log_text();
    assert!(!log.contains('\x1b'), "colour codes in a log that is not a terminal:\n{log}");
    let alert_line = log.lines().find(|l| l.contains("device alert")).unwrap_or_else(|| {
        panic!("no device alert in the node's log:\n{log}");
    });
    assert!(alert_line.contains(" INFO "), "{alert_line}");
    assert!(alert_line.contains("metric=") && alert_line.contains("severity="), "{alert_line}");
    let doctor = Wallet::load(&s.c.doctor).unwrap().account().to_string();
    let denied = log
        .lines()
        .find(|l| l.contains("request denied") && l.contains("code=denied"))
        .unwrap_or_else(|| panic!("no denied read in the node's log:\n{log}"));
    assert!(denied.contains(" INFO "), "{denied}");
    assert!(denied.contains(&doctor) && !denied.contains("unsigned"), "{denied}");
    // The reads, and the denial, are in the patient's audit trail.
    let trail = ok(&["audit", "trail", "--wallet", &s.c.patient, "--json"], &env);
    assert!(trail.matches("device_data").count() >= 3, "{trail}");
    assert!(trail.contains("no_grant"), "{trail}");
    // The patient sees the device with its serial (opened here), thresholds and session.
    let list = ok(&["device", "list", "--wallet", &s.c.patient], &env);
    assert!(list.contains("PO-2231-77") && list.contains(&s.session), "{list}");

    // The patient ends the session; the device's next readings are refused.
    ok(&["device", "session", "end", &s.session, "--wallet", &s.c.patient], &env);
    let err = fails(
        &[
            "device",
            "simulate",
            "--wallet",
            &s.device_wallet,
            "--session",
            &s.session,
            "--count",
            "3",
        ],
        &env,
    );
    assert!(err.contains("takes no more readings"), "{err}");

    // Offline verification replays every device transaction.
    node.stop();
    let out = ok(&["verify", "--data-dir", &node.dir.display().to_string()], &[]);
    assert!(out.contains("ledger OK"), "{out}");
}

/// Kills the gateway at `fault`, then restarts it; the alert must be on the ledger once.
fn crash_at(fault: &str, committed_before_restart: bool) {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let s = setup(tmp.path(), &node);
    let state = tmp.path().join("oximeter-state");
    let mut sim = Simulator::start(
        &s,
        &state,
        &["--rate", "50", "--count", "100", "--anomaly-rate", "0", "--anomaly-at", "7"],
        Some(fault),
    );
    let stalled = sim.until(LIMIT, |v| v["type"] == "fault");
    let seq = stalled["seq"].as_u64().unwrap();
    sim.kill9();

    let before = session_view(&s);
    assert_eq!(before["alerts"].as_u64().unwrap(), u64::from(committed_before_restart), "{before}");
    // The restarted gateway delivers the outbox first, then goes on numbering after it.
    let sim = Simulator::start(
        &s,
        &state,
        &["--rate", "50", "--count", "5", "--anomaly-rate", "0"],
        None,
    );
    let printed = sim.finish();
    let alerts: Vec<_> = printed.iter().filter(|v| v["type"] == "alert").collect();
    assert_eq!(alerts.len(), 1, "{printed:?}");
    assert_eq!(alerts[0]["seq"].as_u64().unwrap(), seq);
    assert_eq!(alerts[0]["already"].as_bool().unwrap(), committed_before_restart, "{printed:?}");
    let readings: Vec<u64> = printed
        .iter()
        .filter(|v| v["type"] == "reading")
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert!(readings.iter().all(|r| *r > seq), "numbering continues after the alert: {readings:?}");

    let after = session_view(&s);
    assert_eq!(after["alerts"].as_u64().unwrap(), 1, "exactly one alert: {after}");
    // Exactly one alert event, for that reading, on the hospital's and the doctor's streams.
    for w in [&s.c.hospital, &s.c.doctor, &s.c.patient] {
        let events = alert_events(w, &s.url);
        assert_eq!(events.iter().map(|(_, q)| *q).collect::<Vec<_>>(), [seq], "{w}: {events:?}");
    }
}

#[test]
fn a_crash_after_the_alert_is_queued_and_before_it_is_sent_loses_nothing() {
    crash_at("stall-before-submit", false);
}

#[test]
fn a_crash_after_the_alert_is_committed_does_not_send_it_twice() {
    crash_at("stall-after-commit", true);
}
