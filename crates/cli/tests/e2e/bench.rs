//! `medledger bench` and `medledger bench-cases` against a live node.

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
        &["bench-cases", "--wallet", &node.regulator(), "--node", &node.url]
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
