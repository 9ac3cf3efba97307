//! `medledger cluster up`: a 3-node network of real processes in one command. Every node
//! becomes a voter, `cluster status` agrees from any node, SIGTERM stops every node, and a
//! second `cluster up` over the same directory starts the same network again.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use crate::harness::*;

/// How long the network may take to form (three start-ups, two admissions and joins).
const FORM: Duration = Duration::from_secs(150);

/// A port P with P, P+1 and P+2 free on 127.0.0.1 a moment ago.
fn three_free_ports() -> u16 {
    loop {
        let p = free_port();
        let free = |q: u16| TcpListener::bind(("127.0.0.1", q)).is_ok();
        if p < 65000 && free(p + 1) && free(p + 2) {
            return p;
        }
    }
}

/// `cluster up` running; killed (with its nodes, by their own drop guard) if the test fails.
struct ClusterUp(Child);

impl Drop for ClusterUp {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `cluster up --json` (with `extra` arguments) and returns it with the status it
/// printed once formed.
fn cluster_up(dir: &Path, base: u16, extra: &[&str]) -> (ClusterUp, serde_json::Value) {
    let mut child = Command::new(bin())
        .args(["cluster", "up", "--nodes", "3", "--base-port", &base.to_string(), "--json"])
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .env("MEDLEDGER_PASSPHRASE", PASS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn medledger cluster up");
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // The status is pretty-printed: collect lines until the outer object closes.
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if line == "}" {
                let _ = tx.send(text.clone());
            }
        }
    });
    let (etx, erx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = etx.send(line);
        }
    });
    let guard = ClusterUp(child);
    match rx.recv_timeout(FORM) {
        Ok(text) => (guard, serde_json::from_str(&text).expect("cluster up printed JSON")),
        Err(_) => {
            let log: Vec<String> = erx.try_iter().collect();
            panic!("the network did not form within {FORM:?}:\n{}", log.join("\n"));
        }
    }
}

fn voters(status: &serde_json::Value) -> usize {
    status["members"].as_array().map_or(0, |m| m.iter().filter(|m| m["role"] == "voter").count())
}

/// Sends SIGTERM to `cluster up` and waits for it; every node's port then refuses connections.
fn stop(mut up: ClusterUp, base: u16) {
    let sent = Command::new("kill").arg("-TERM").arg(up.0.id().to_string()).status();
    assert!(sent.is_ok_and(|s| s.success()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = up.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "cluster up did not stop within 60 s of SIGTERM");
        thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "cluster up exited with {status}");
    for port in base..base + 3 {
        assert!(
            http(port, "GET", "/health", b"").is_err(),
            "the node on port {port} outlived cluster up"
        );
    }
}

#[test]
fn cluster_up_starts_three_voters_stops_them_all_and_starts_again() {
    let tmp = tempdir();
    let dir = tmp.path().join("net");
    let base = three_free_ports();
    let (up, status) = cluster_up(&dir, base, &[]);
    assert_eq!(voters(&status), 3, "{status}");
    assert!(dir.join("regulator.wallet.json").exists());
    for i in 0..3 {
        assert!(dir.join(format!("node-{i}")).is_dir(), "node-{i}'s data directory");
    }
    // Any node answers for the network: the last one sees the same leader and three voters.
    let last = format!("http://127.0.0.1:{}", base + 2);
    let seen = ok(&["cluster", "status", "--node", &last, "--json"], &[]);
    let seen: serde_json::Value = serde_json::from_str(seen.trim()).unwrap();
    assert_eq!(voters(&seen), 3, "{seen}");
    assert_eq!(seen["leader"], status["leader"], "{seen} vs {status}");
    stop(up, base);

    // The same directory again: the same network (nothing admitted twice), three voters.
    let (up, again) = cluster_up(&dir, base, &[]);
    assert_eq!(voters(&again), 3, "{again}");
    let ids = |s: &serde_json::Value| {
        let mut v: Vec<u64> =
            s["members"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&again), ids(&status), "the restarted network has the same members");
    stop(up, base);
}

#[test]
fn cluster_up_with_tls_forms_three_voters_that_talk_only_tls_and_a_wallet_checks_them_all() {
    let tmp = tempdir();
    let dir = tmp.path().join("net");
    let base = three_free_ports();
    let (up, status) = cluster_up(&dir, base, &["--tls"]);
    assert_eq!(voters(&status), 3, "{status}");
    for m in status["members"].as_array().unwrap() {
        assert!(m["url"].as_str().unwrap().starts_with("https://"), "{status}");
    }
    for port in base..base + 3 {
        assert!(
            http(port, "GET", "/health", b"").map_or(true, |r| r.status != 200),
            "the node on port {port} answered plain HTTP"
        );
    }
    // The regulator's wallet, pinned to the genesis node's key, checks every node through the
    // last one, each over TLS under the key the ledger admitted.
    let wallet = dir.join("regulator.wallet.json").display().to_string();
    let last = format!("https://127.0.0.1:{}", base + 2);
    let out = ok(&["network", "check", "--wallet", &wallet, "--node", &last, "--json"], &[]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let verdicts = verdicts(&report);
    assert_eq!(verdicts.len(), 3, "{report}");
    assert!(verdicts.iter().all(|v| *v == "ok" || *v == "lagging"), "{report}");
    stop(up, base);
}
