//! `medledger bench` against a live node.

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
