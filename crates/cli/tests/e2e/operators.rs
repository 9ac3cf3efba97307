//! What an operator sees: `/metrics` per route (by template) with status codes and latency
//! histograms, vault bytes and open event streams; and `medledger up` on a port already in use
//! failing clearly before it creates anything or prints "Next steps".

use std::time::{Duration, Instant};

use medledger_client::{NodeClient, Signer, Wallet};

use crate::harness::*;

/// The value of the sample line `name{labels}` (or `name` alone) in a metrics text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn scrape(node: &Node) -> String {
    let r = http(node.port, "GET", "/metrics", b"").expect("GET /metrics");
    assert_eq!(r.status, 200);
    r.text()
}

#[test]
fn metrics_count_requests_by_route_and_status_with_latency_vault_bytes_and_streams() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    // Two signed reads of the hospital directory (200), one unsigned (401).
    for _ in 0..2 {
        assert_eq!(node.regulator_get("/v1/hospitals").status, 200);
    }
    assert_eq!(http(node.port, "GET", "/v1/hospitals", b"").unwrap().status, 401);
    // An account id in the path is not a label: the route template is.
    let stranger = "ab".repeat(20);
    let r = http(node.port, "GET", &format!("/v1/accounts/{stranger}"), b"").unwrap();
    assert_eq!(r.status, 401);
    // A path no route serves counts as `unmatched`.
    assert_eq!(http(node.port, "GET", "/no/such/path", b"").unwrap().status, 404);

    // A blob in the vault and an open event stream, as the regulator.
    let mut wallet = Wallet::load(node.regulator_wallet()).unwrap();
    let identity = wallet.unlock(PASS).unwrap();
    let account = wallet.account();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = NodeClient::new(&node.url)
        .unwrap()
        .signed_by(Signer::new(identity.signing.clone(), account));
    let stored = rt.block_on(client.put_blob(vec![7u8; 1000])).unwrap();
    assert_eq!(stored.size, 1000);
    let stream = rt.spawn({
        let client = client.clone();
        async move { client.watch(account, None, |_| true).await }
    });
    // The stream is counted once the node has taken it (bounded wait, not a speed assertion).
    let deadline = Instant::now() + LIMIT;
    let metrics = loop {
        let m = scrape(&node);
        if sample(&m, "medledger_event_streams_open") == Some(1.0) || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    stream.abort();

    let count = |route: &str, method: &str, status: u16| {
        sample(
            &metrics,
            &format!(
                "medledger_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(count("/v1/hospitals", "GET", 200), Some(2.0), "{metrics}");
    assert_eq!(count("/v1/hospitals", "GET", 401), Some(1.0), "{metrics}");
    assert_eq!(count("/v1/accounts/{id}", "GET", 401), Some(1.0), "{metrics}");
    assert_eq!(count("unmatched", "GET", 404), Some(1.0), "{metrics}");
    assert_eq!(count("/v1/blobs", "PUT", 200), Some(1.0), "{metrics}");
    assert!(!metrics.contains(&stranger), "a raw path became a label:\n{metrics}");
    // One latency histogram per route and method, over every status.
    let hist = "medledger_http_request_duration_seconds";
    let labels = "{route=\"/v1/hospitals\",method=\"GET\"}";
    assert_eq!(sample(&metrics, &format!("{hist}_count{labels}")), Some(3.0), "{metrics}");
    assert!(
        sample(
            &metrics,
            &format!("{hist}_bucket{{le=\"+Inf\",route=\"/v1/hospitals\",method=\"GET\"}}")
        )
        .or_else(|| sample(
            &metrics,
            &format!("{hist}_bucket{{route=\"/v1/hospitals\",method=\"GET\",le=\"+Inf\"}}")
        )) == Some(3.0),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "medledger_event_streams_open"), Some(1.0), "{metrics}");
    assert!(sample(&metrics, "medledger_vault_bytes").unwrap_or(0.0) >= 1000.0, "{metrics}");
}

#[test]
fn up_on_a_port_in_use_fails_clearly_before_creating_anything_or_printing_next_steps() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let other = tmp.path().join("other");
    let o = cli_within(
        &[
            "up",
            "--data-dir",
            &other.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{}", node.port),
        ],
        &[],
        LIMIT,
    );
    assert!(!o.status.success(), "{}", show(&o));
    let err = stderr(&o);
    assert!(err.contains("already in use") && err.contains("--listen"), "{err}");
    assert!(!err.contains("Next steps") && !stdout(&o).contains("Next steps"), "{}", show(&o));
    assert!(
        !other.join("genesis.json").exists(),
        "a network was created for a node that cannot serve"
    );
    // The running node is untouched.
    assert_eq!(node.health()["status"], "ok");
}
