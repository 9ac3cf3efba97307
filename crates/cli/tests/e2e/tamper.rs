//! A flipped bit in the stored ledger is caught offline by `verify` and at start by `up`.

use std::path::Path;

use crate::harness::*;

const NAME: &[u8] = b"Zyxwvut General";

/// Flips the lowest bit of the first byte of every occurrence of `needle`; returns how many.
fn flip_every(path: &Path, needle: &[u8]) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let hits: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    for &i in &hits {
        bytes[i] ^= 0x01;
    }
    std::fs::write(path, &bytes).unwrap();
    hits.len()
}

#[test]
fn a_flipped_byte_on_disk_is_detected_by_verify_and_by_the_node() {
    let tmp = tempdir();
    let data = tmp.path().join("data");
    let mut node = Node::start(&data);
    let hospital = tmp.path().join("h.wallet.json").display().to_string();
    ok(&["wallet", "create", "--out", &hospital, "--name", "h"], &[]);
    let card = ok(&["wallet", "show", "--wallet", &hospital, "--identity-only"], &[]);
    let out = ok(
        &[
            "hospital",
            "admit",
            "--wallet",
            &node.regulator(),
            "--identity",
            card.trim(),
            "--registration-id",
            "GOV-1",
            "--name",
            "Zyxwvut General",
            "--city",
            "Leeds",
            "--specialisation",
            "general",
            "--contact",
            "x",
        ],
        &[],
    );
    assert!(out.contains("hospital admitted"), "{out}");
    let status = node.stop().expect("running");
    assert!(status.success(), "the node exited with {status} on SIGINT\n{}", node.log_text());

    let copy = tmp.path().join("copy");
    copy_dir(&data, &copy);
    let flipped = flip_every(&copy.join("ledger.redb"), NAME);
    assert!(flipped >= 1, "the hospital's name is not in ledger.redb");
    eprintln!("flipped {flipped} occurrences of {:?}", String::from_utf8_lossy(NAME));
    assert_eq!(flip_every(&copy.join("ledger.redb"), NAME), 0, "every occurrence was flipped");

    let copy_s = copy.display().to_string();
    let out = cli(&["verify", "--data-dir", &copy_s], &[]);
    assert!(
        !out.status.success(),
        "verify accepted a tampered ledger ({flipped} bytes flipped)\n{}",
        show(&out)
    );
    assert!(stderr(&out).contains("FAILED"), "{}", show(&out));
    assert!(!stdout(&out).contains("ledger OK"), "{}", show(&out));

    let port = free_port().to_string();
    let out = cli_within(
        &["up", "--data-dir", &copy_s, "--listen", &format!("127.0.0.1:{port}")],
        &[],
        LIMIT,
    );
    assert!(!out.status.success(), "the node started on a tampered ledger\n{}", show(&out));
    assert!(stderr(&out).contains("corrupt"), "{}", show(&out));

    // The untouched original is fine, offline and online.
    let out = cli(&["verify", "--data-dir", &data.display().to_string()], &[]);
    assert!(out.status.success() && stdout(&out).contains("ledger OK"), "{}", show(&out));
    node.restart();
    let list = node.regulator_get("/v1/hospitals").text();
    assert!(list.contains("Zyxwvut General"), "{list}");

    // Once 300 more transactions have filled the log's first chunks, the admission lies in a
    // chunk the node does not read to start: it starts, finds the change in its background
    // check, reports it and stops.
    let wallet = node.regulator();
    ok(&["bench", "tx", "--wallet", &wallet, "--node", &node.url, "--txs", "300"], &[]);
    let status = node.stop().expect("running");
    assert!(status.success(), "the node exited with {status} on SIGINT\n{}", node.log_text());
    let later = tmp.path().join("later");
    copy_dir(&data, &later);
    assert!(flip_every(&later.join("ledger.redb"), NAME) >= 1);
    let port = free_port().to_string();
    let out = cli_within(
        &[
            "up",
            "--data-dir",
            &later.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        &[],
        LIMIT,
    );
    assert!(!out.status.success(), "the node went on serving a tampered ledger\n{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("failed its check at start") && err.contains("corrupt"), "{}", show(&out));
}
