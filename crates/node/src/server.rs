//! The connection loop in front of the HTTP API. Nothing here is authenticated yet, so every
//! resource a stranger can hold is bounded: connections overall and per client IP (one beyond
//! either cap is closed at once, not queued), the time to send a request's headers (which also
//! closes an idle keep-alive connection), the time between two pieces of a body, and the size of
//! the read buffer. At shutdown it stops accepting, asks every connection to finish its current
//! response and closes those still open after a grace period.
//!
//! With TLS (`medledger up --tls`) each connection first completes a TLS 1.3 handshake
//! (bounded by the header-read timeout, and run on the connection's own task so that a slow
//! client holds only its own slot). A client may show no certificate (a wallet); one that does
//! must prove an active node key of the ledger ([`medledger_tls::server_config`]), and its
//! requests carry that key as a [`TlsPeer`] extension.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::Router;
use hyper::{body::Incoming, service::Service};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore, sync::watch, task::JoinSet};
use tower_http::timeout::RequestBodyTimeout;

use crate::metrics::Metrics;

/// On a TLS connection: the node key its client proved it holds, if it showed a certificate
/// (another node; a wallet shows none). Absent on a plain HTTP connection.
#[derive(Clone, Debug)]
pub struct TlsPeer(pub Option<medledger_core::keys::PublicKey>);

/// How a request arrived: `Some` over TLS (with the key its client proved, if any), `None`
/// over plain HTTP.
#[derive(Clone, Debug)]
pub struct Arrival(pub Option<TlsPeer>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Arrival {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Arrival(parts.extensions.get::<TlsPeer>().cloned()))
    }
}

/// A service that marks every request of a TLS connection with its [`TlsPeer`].
#[derive(Clone, Debug)]
struct WithPeer<S> {
    inner: S,
    peer: TlsPeer,
}

impl<S: Service<hyper::Request<Incoming>>> Service<hyper::Request<Incoming>> for WithPeer<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        self.inner.call(request)
    }
}

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

/// Serves `router` on `listener` (over TLS with `tls`) under `limits` until `shutdown` turns
/// true (or its sender is dropped); then drains the connections for at most
/// `limits.shutdown_grace`.
pub async fn run(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
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
        let mut stop = shutdown.clone();
        let (http, service) = (http.clone(), TowerToHyperService::new(service.clone()));
        let tls = tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let handshake_timeout = limits.header_read_timeout;
        let metrics = metrics.clone();
        connections.spawn(async move {
            let _held = (permit, slot);
            let Some(acceptor) = tls else {
                return serve(&http, TokioIo::new(stream), service, &mut stop).await;
            };
            let stream =
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        metrics.tls_handshakes_failed.inc();
                        tracing::debug!(%peer, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        metrics.tls_handshakes_failed.inc();
                        return;
                    }
                };
            let key = medledger_tls::peer_key(stream.get_ref().1.peer_certificates());
            let service = WithPeer { inner: service, peer: TlsPeer(key) };
            serve(&http, TokioIo::new(stream), service, &mut stop).await;
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

/// Serves one connection until it closes, or until `stop` turns true: then the response in
/// flight is finished (event streams end on the same signal) and the connection closed.
async fn serve<I, S>(
    http: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    stop: &mut watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = http.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stopped(stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Completes when `stop` turns true or its sender is gone.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
