//! `medledger bench <tx|records|cases|devices>` against a live node, each with small counts;
//! `medledger bench` without a subcommand is `bench tx`.

use crate::harness::*;

#[test]
fn bench_reports_json() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let out = cli_within(
        &[
            "bench",
            "--wallet",
            &node.regulator(),
            "--node",
            &node.url,
            "--txs",
            "2000",
            "--hospitals",
            "16",
            "--concurrency",
            "4",
            "--batch",
            "32",
            "--json",
        ],
        &[],
        std::time::Duration::from_secs(90),
    );
    assert!(out.status.success(), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object: {e}\n{}", show(&out)));
    let number =
        |k: &str| report[k].as_f64().unwrap_or_else(|| panic!("{k} is not a number: {report}"));
    assert!(number("tx_per_s") > 0.0, "{report}");
    let (p50, p99) = (number("p50_ms"), number("p99_ms"));
    assert!(p50 > 0.0 && p99 >= p50, "{report}");
    // The benchmark's work is on the ledger: its hospitals plus the measured transactions.
    let committed = report["committed"].as_u64().unwrap_or(0);
    assert!(committed > 0, "{report}");
    assert!(node.log_size() >= 16 + committed, "{report} vs {}", node.health());
}

#[test]
fn bench_cases_builds_exports_and_verifies_a_case() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let out = cli_within(
        &["bench", "cases", "--wallet", &node.regulator(), "--node", &node.url]
            .into_iter()
            .chain(["--entries", "30", "--runs", "2", "--json"])
            .collect::<Vec<_>>(),
        &[],
        std::time::Duration::from_secs(90),
    );
    assert!(out.status.success(), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object: {e}\n{}", show(&out)));
    assert_eq!(report["entries"], 30, "{report}");
    assert!(report["verify_min_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{report}");
    assert!(report["export_bytes"].as_u64().is_some_and(|b| b > 30 * 100), "{report}");
}

/// Runs `medledger bench <args>` against `node` and parses its one JSON object.
fn bench_json(node: &Node, args: &[&str]) -> serde_json::Value {
    let wallet = node.regulator();
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend(["--wallet", wallet.as_str(), "--node", node.url.as_str(), "--json"]);
    let out = cli_within(&all, &[], std::time::Duration::from_secs(90));
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object: {e}\n{}", show(&out)))
}

#[test]
fn bench_tx_is_the_default_and_takes_the_same_options() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let report = bench_json(
        &node,
        &[
            "tx",
            "--txs",
            "300",
            "--hospitals",
            "4",
            "--concurrency",
            "2",
            "--batch",
            "16",
            "--consent",
        ],
    );
    assert_eq!(report["consent"], true, "{report}");
    // Every pre-signed transaction committed (grants, revocations and accesses among them).
    assert!(report["committed"].as_u64().is_some_and(|c| c > 0), "{report}");
    assert_eq!(report["committed"], report["txs"], "{report}");
}

#[test]
fn bench_records_uploads_and_reads_back() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let report = bench_json(
        &node,
        &[
            "records",
            "--large-mib",
            "1",
            "--small-kib",
            "4",
            "--reads",
            "8",
            "--readers",
            "2",
            "--trail-events",
            "20",
        ],
    );
    assert_eq!(report["large_bytes"], 1 << 20, "{report}");
    assert_eq!(report["reads"], 8, "{report}");
    // The 20 access events and the grant that lets them be allowed.
    assert_eq!(report["trail_events"], 21, "{report}");
    assert!(report["reads_per_s"].as_f64().is_some_and(|r| r > 0.0), "{report}");
}

#[test]
fn bench_records_pull_reads_run_the_hook_between_adding_and_reading_and_stop_if_it_fails() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    // The hook sees one content hash per record, each a blob this node holds.
    let vault = node.dir.join("vault").display().to_string();
    let hook = format!(
        "test $(wc -l < \"$MEDLEDGER_BENCH_BLOBS\") -eq 3 && \
         while read -r h; do test -s \"{vault}/$h\" || exit 1; done < \"$MEDLEDGER_BENCH_BLOBS\""
    );
    let args = |hook: &str| -> Vec<String> {
        [
            "records",
            "--large-mib",
            "0",
            "--reads",
            "0",
            "--trail-events",
            "0",
            "--small-kib",
            "64",
            "--pull-reads",
            "3",
            "--read-node",
            &node.url,
            "--before-reads",
            hook,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let hooked = args(&hook);
    let report = bench_json(&node, &hooked.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(report["pull_reads"], 3, "{report}");
    assert_eq!(report["small_bytes"], 64 * 1024, "{report}");
    assert!(report["pull_read_p50_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{report}");
    // A hook that fails stops the bench before any read.
    let failing = args("exit 3");
    let wallet = node.regulator();
    let mut all: Vec<&str> = vec!["bench"];
    all.extend(failing.iter().map(String::as_str));
    all.extend(["--wallet", &wallet, "--node", &node.url, "--json"]);
    let err = fails(&all, &[]);
    assert!(err.contains("--before-reads command failed"), "{err}");
}

#[test]
fn bench_devices_ingests_readings_and_alerts() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let report = bench_json(
        &node,
        &[
            "devices",
            "--devices",
            "2",
            "--rate",
            "20",
            "--duration",
            "3",
            "--anomaly-rate",
            "0.05",
            "--batch-ms",
            "500",
            "--seed",
            "7",
        ],
    );
    assert_eq!(report["devices"], 2, "{report}");
    assert!(report["generated"].as_u64().is_some_and(|g| g > 0), "{report}");
    assert!(report["committed_in_run"].as_u64().is_some_and(|c| c > 0), "{report}");
    assert!(report["batches"].as_u64().is_some_and(|b| b > 0), "{report}");
}

#[test]
fn bench_tx_spreads_over_a_node_list_and_refuses_a_node_of_another_network() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("a"));
    // The same node under two spellings: the load is spread client by client over the list.
    let both = format!("{},{}/", node.url, node.url);
    let wallet = node.regulator();
    let args = ["bench", "tx", "--wallet", &wallet, "--node", &both, "--txs", "200"];
    let out = cli_within(
        &[&args[..], &["--hospitals", "4", "--concurrency", "4", "--batch", "8", "--json"]]
            .concat(),
        &[],
        std::time::Duration::from_secs(90),
    );
    assert!(out.status.success(), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["nodes"].as_array().map(Vec::len), Some(2), "{report}");
    assert_eq!(report["committed"], report["txs"], "{report}");

    // A second node with a genesis of its own: refused before anything is sent.
    let other = Node::start(&tmp.path().join("b"));
    let height_before = other.health()["height"].clone();
    let mixed = format!("{},{}", node.url, other.url);
    let out = cli_within(
        &["bench", "tx", "--wallet", &wallet, "--node", &mixed, "--txs", "50", "--json"],
        &[],
        std::time::Duration::from_secs(60),
    );
    assert!(!out.status.success(), "{}", show(&out));
    assert!(stderr(&out).contains("serves another network"), "{}", show(&out));
    assert_eq!(other.health()["height"], height_before, "nothing reached the other network");
}
