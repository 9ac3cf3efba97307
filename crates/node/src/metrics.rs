//! Prometheus metrics of the node: transactions, commit latency, storage, and per route (by
//! its template, so that ids in paths cannot grow the label set) request counts by status and
//! latency histograms; vault bytes and open event streams.

use std::sync::Arc;

use medledger_ledger::{
    Ledger,
    stages::{Stage, StageTimes},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text::encode},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::Gauge,
        histogram::Histogram,
    },
    registry::Registry,
};

/// Labels of a request count: the route template (`/v1/records/{pmr}`, not the raw path), the
/// method and the status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template, or `unmatched` for a path no route serves.
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// The status code answered.
    pub status: u16,
}

/// Labels of a latency histogram: the route template and the method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route template.
    pub route: String,
    /// The HTTP method.
    pub method: String,
}

/// The label of a stage of taking blocks.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

/// The ledger's stage times ([`StageTimes`]), read at each scrape.
#[derive(Debug)]
struct Stages(Arc<Ledger>);

/// One counter family over the stages: `value` of each stage, labelled by the stage.
fn stage_family<N: prometheus_client::encoding::EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl Fn(Stage) -> N,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for stage in Stage::ALL {
        let labels = StageLabels { stage: stage.label() };
        ConstCounter::new(value(stage)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Stages {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let times: &StageTimes = self.0.stages();
        stage_family(
            &mut encoder,
            "block_stage_seconds",
            "Cumulative seconds spent in each stage of taking blocks: verify (signatures, at \
             admission or of a block this node did not propose), execute, commit (no fsync), \
             durable_commit (with fsync), merkle",
            |stage| times.seconds(stage),
        )?;
        stage_family(
            &mut encoder,
            "block_stage_runs",
            "How many times each stage of taking blocks ran",
            |stage| times.runs(stage),
        )
    }
}

/// Bucket bounds (seconds) of the request latency histograms.
const LATENCY_BUCKETS: [f64; 12] =
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The node's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Transactions admitted and queued for a block.
    pub admitted: Counter,
    /// Transactions turned away before ordering (malformed, bad signature, precheck).
    pub rejected: Counter,
    /// Transactions applied.
    pub applied: Counter,
    /// Transactions refused by the ledger.
    pub refused: Counter,
    /// Seconds from admission to receipt.
    pub commit_latency: Histogram,
    /// Height of the tip.
    pub height: Gauge,
    /// Requests refused as unauthenticated (401) or forbidden (403).
    pub denied_requests: Counter,
    /// Connections closed at once because the node or the client's IP had too many open.
    pub connections_refused: Counter,
    /// TLS connections closed because the handshake failed or timed out (a client certificate
    /// of a key that is no active node, a client that does not speak TLS 1.3, or a stall).
    pub tls_handshakes_failed: Counter,
    /// Requests answered, by route template, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Seconds from a request's arrival to its response head, by route template and method.
    pub request_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Event streams (`GET /v1/events/{account}`) open now.
    pub event_streams: Gauge,
    /// Bytes of blobs in the vault, updated when rendered.
    vault_bytes: Gauge,
    /// Peak resident memory of the process (Linux; 0 elsewhere), updated when rendered.
    peak_resident: Gauge,
    /// Free bytes of the data directory's file system, updated when rendered.
    disk_free: Gauge,
    /// The free-space reserve below which writes are refused.
    disk_reserve: Gauge,
    /// 1 once a storage fault stops the node.
    storage_fault: Gauge,
}

impl Metrics {
    /// Registers every metric, and the stage times of `ledger` (read at each scrape).
    pub fn for_ledger(ledger: Arc<Ledger>) -> Self {
        let mut metrics = Self::new();
        metrics.registry.register_collector(Box::new(Stages(ledger)));
        metrics
    }

    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("medledger");
        let admitted = Counter::default();
        let rejected = Counter::default();
        let applied = Counter::default();
        let refused = Counter::default();
        let commit_latency =
            Histogram::new([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]);
        let height = Gauge::default();
        let denied_requests = Counter::default();
        let connections_refused = Counter::default();
        let tls_handshakes_failed = Counter::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_latency =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let event_streams = Gauge::default();
        let vault_bytes = Gauge::default();
        let peak_resident = Gauge::default();
        let disk_free = Gauge::default();
        let disk_reserve = Gauge::default();
        let storage_fault = Gauge::default();
        registry.register(
            "disk_free_bytes",
            "Free bytes of the data directory's file system",
            disk_free.clone(),
        );
        registry.register(
            "disk_reserve_bytes",
            "Free space below which the node refuses transactions and uploads",
            disk_reserve.clone(),
        );
        registry.register(
            "storage_fault",
            "1 once a failed write or fsync of the Raft log or ledger stops the node",
            storage_fault.clone(),
        );
        registry.register(
            "tx_admitted",
            "Transactions admitted and queued for a block",
            admitted.clone(),
        );
        registry.register(
            "tx_rejected",
            "Transactions turned away before ordering",
            rejected.clone(),
        );
        registry.register("tx_applied", "Transactions applied by the ledger", applied.clone());
        registry.register("tx_refused", "Transactions refused by the ledger", refused.clone());
        registry.register(
            "commit_latency_seconds",
            "Time from admission to durable receipt",
            commit_latency.clone(),
        );
        registry.register("height", "Height of the chain tip", height.clone());
        registry.register(
            "denied_requests",
            "Requests refused as unauthenticated or forbidden",
            denied_requests.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once because the node or the client's IP had too many open",
            connections_refused.clone(),
        );
        registry.register(
            "tls_handshakes_failed",
            "TLS connections closed because the handshake failed or timed out",
            tls_handshakes_failed.clone(),
        );
        registry.register(
            "http_requests",
            "Requests answered, by route template, method and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response head, by route template and method",
            request_latency.clone(),
        );
        registry.register("event_streams_open", "Event streams open now", event_streams.clone());
        registry.register("vault_bytes", "Bytes of blobs in the vault", vault_bytes.clone());
        registry.register(
            "process_peak_resident_bytes",
            "Peak resident memory of the node process",
            peak_resident.clone(),
        );
        Self {
            registry,
            admitted,
            rejected,
            applied,
            refused,
            commit_latency,
            height,
            denied_requests,
            connections_refused,
            tls_handshakes_failed,
            requests,
            request_latency,
            event_streams,
            vault_bytes,
            peak_resident,
            disk_free,
            disk_reserve,
            storage_fault,
        }
    }

    /// Records free space, the reserve and whether a storage fault happened, for rendering.
    pub fn set_storage(&self, free: u64, reserve: u64, fault: bool) {
        self.disk_free.set(i64::try_from(free).unwrap_or(i64::MAX));
        self.disk_reserve.set(i64::try_from(reserve).unwrap_or(i64::MAX));
        self.storage_fault.set(i64::from(fault));
    }

    /// Records the bytes held in the vault, for rendering.
    pub fn set_vault_bytes(&self, bytes: u64) {
        self.vault_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Counts one answered request and its latency.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let (route, method) = (route.to_owned(), method.to_owned());
        self.request_latency
            .get_or_create(&RouteLabels { route: route.clone(), method: method.clone() })
            .observe(seconds);
        self.requests.get_or_create(&RequestLabels { route, method, status }).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.peak_resident.set(peak_resident_bytes() as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The process's peak resident set (`VmHWM` in `/proc/self/status`), or 0 where unknown.
pub fn peak_resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// The method as a label: the standard ones by name, any other as `other`, so that a client
/// inventing methods cannot grow the label set either.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Middleware: counts every request by its route template, method and status, and observes its
/// latency to the response head. A path no route serves is labelled `unmatched`, so that a
/// scan of random paths adds one label set, not one per path.
pub async fn count_requests(
    axum::extract::State(metrics): axum::extract::State<std::sync::Arc<Metrics>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = method_label(request.method()).to_owned();
    let response = next.run(request).await;
    metrics.observe_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_label() {
        let invented = axum::http::Method::from_bytes(b"FROBNICATE").unwrap();
        assert_eq!(method_label(&invented), "other");
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
    }

    /// The value of the first sample line starting with `prefix`.
    fn sample(text: &str, prefix: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn block_stages_are_scraped_from_the_ledger() {
        use medledger_core::{
            block::{Genesis, Tip},
            keys::{DecryptionKey, SigningKey},
        };
        let genesis = Genesis {
            chain_id: "metrics".into(),
            time_ms: 0,
            regulator_key: SigningKey::from_seed([1; 32]).public_key(),
            regulator_encryption_key: DecryptionKey::from_bytes([2; 32]).public_key(),
            node_key: SigningKey::from_seed([3; 32]).public_key(),
        };
        let ledger = Arc::new(Ledger::in_memory(genesis.clone()).unwrap());
        let m = Metrics::for_ledger(ledger.clone());
        let before = m.render();
        assert_eq!(sample(&before, "medledger_block_stage_runs_total{stage=\"execute\"}"), 0.0);
        let mut tip = Tip::genesis(&genesis);
        for height in 1..=3 {
            let block = tip.propose(height, Vec::new());
            ledger.apply_block(&block, &[], &[]).unwrap();
        }
        let text = m.render();
        for stage in ["execute", "merkle"] {
            let runs = format!("medledger_block_stage_runs_total{{stage=\"{stage}\"}}");
            assert_eq!(sample(&text, &runs), 3.0, "{stage}");
            let secs = format!("medledger_block_stage_seconds_total{{stage=\"{stage}\"}}");
            assert!(sample(&text, &secs) > 0.0, "{stage}: {text}");
        }
        // The in-memory ledger commits every block durably (durable_every is 1).
        let commits = sample(&text, "medledger_block_stage_runs_total{stage=\"durable_commit\"}")
            + sample(&text, "medledger_block_stage_runs_total{stage=\"commit\"}");
        assert_eq!(commits, 3.0);
        assert_eq!(sample(&text, "medledger_block_stage_runs_total{stage=\"verify\"}"), 0.0);
    }

    #[test]
    fn requests_are_counted_by_route_method_and_status() {
        let m = Metrics::new();
        m.observe_request("/v1/records/{pmr}", "GET", 403, 0.003);
        m.observe_request("/v1/records/{pmr}", "GET", 403, 0.004);
        let text = m.render();
        assert!(
            text.contains(
                "medledger_http_requests_total{route=\"/v1/records/{pmr}\",method=\"GET\",status=\"403\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "medledger_http_request_duration_seconds_count{route=\"/v1/records/{pmr}\",method=\"GET\"} 2"
            ),
            "{text}"
        );
    }
}
