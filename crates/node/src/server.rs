//! The connection loop in front of the HTTP API. Nothing here is authenticated yet, so every
//! resource a stranger can hold is bounded: connections overall and per client IP (one beyond
//! either cap is closed at once, not queued), the time to send a request's headers (which also
//! closes an idle keep-alive connection), the time between two pieces of a body, and the size of
//! the read buffer. At shutdown it stops accepting, asks every connection to finish its current
//! response and closes those still open after a grace period.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore, sync::watch, task::JoinSet};
use tower_http::timeout::RequestBodyTimeout;

use crate::metrics::Metrics;

/// hyper's read buffer per connection: enough for any header block the API accepts.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Limits on what clients, authenticated or not, can hold on the node.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections, all clients together.
    pub max_connections: usize,
    /// Open connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Time for a client to send a request's headers, counted from when the connection opens or
    /// its previous response ends: it also closes idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// Time for a buffered body (a transaction, a batch, a blob, a read) to arrive completely,
    /// and the longest pause between two pieces of a streamed upload.
    pub body_read_timeout: Duration,
    /// Batch and blob bodies (up to 16 MiB and 2 MiB) being received or handled at once; more
    /// wait for a turn (their bytes stay in the kernel's socket buffers meanwhile).
    pub max_large_bodies: usize,
    /// Other buffered bodies (up to 64 KiB) being received or handled at once.
    pub max_small_bodies: usize,
    /// Open event streams per account.
    pub max_event_streams_per_account: usize,
    /// At shutdown, how long requests in flight may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 2048,
            max_connections_per_ip: 256,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_large_bodies: 4,
            max_small_bodies: 256,
            max_event_streams_per_account: 4,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Open connections per client IP.
#[derive(Debug, Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// One open connection of an IP, given back when dropped.
#[derive(Debug)]
struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn try_take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<IpSlot> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(IpSlot { table: self.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` turns true (or its sender is
/// dropped); then drains the connections for at most `limits.shutdown_grace`.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::<PerIp>::default();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .max_buf_size(READ_BUFFER_BYTES);
    let service = RequestBodyTimeout::new(router, limits.body_read_timeout);
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or the peer left before we accepted: back off
                    // briefly rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            drop(stream);
            continue;
        };
        let Some(slot) = per_ip.try_take(peer.ip(), limits.max_connections_per_ip) else {
            metrics.connections_refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()));
        let mut stop = shutdown.clone();
        connections.spawn(async move {
            let _held = (permit, slot);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stopped(&mut stop) => {
                    // Finish the response in flight (event streams end on the same signal),
                    // then close.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            "closing the connections still open after the grace period"
        );
        connections.shutdown().await;
    }
}

/// Completes when `stop` turns true or its sender is gone.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
