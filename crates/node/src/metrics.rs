//! Prometheus metrics of the node.

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

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
