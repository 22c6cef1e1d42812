//! The HTTPS server: rustls on a TCP listener, HTTP/1.1 and HTTP/2 via hyper, routes via axum,
//! with timeouts for slow clients and a bounded graceful shutdown.

mod handlers;
pub mod prefixed;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::middleware;
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::engine::Engine;
use crate::metrics::Metrics;
use prefixed::Prefixed;

/// Limits that keep one client from hurting the others.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest AdmissionReview body accepted (kube-apiserver's own limit is 3 MiB of object).
    pub max_body_bytes: usize,
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// HTTP/1 request headers must arrive within this.
    pub header_read_timeout: Duration,
    /// The request body must arrive within this.
    pub body_read_timeout: Duration,
    /// On shutdown, in-flight requests get this long to finish.
    pub shutdown_timeout: Duration,
    /// On shutdown, report not-ready for this long before refusing new connections, so that
    /// Service endpoints drop this replica first.
    pub shutdown_delay: Duration,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A connection with nothing in flight for this long is closed (HTTP/2 clients would
    /// otherwise hold their slot forever by answering pings).
    pub idle_timeout: Duration,
    /// When a request is denied only because a Secret is missing from the watch cache, wait up
    /// to this long for the cache to change and decide again: `kubectl apply -f dir/` sends
    /// the Secret and the Deployment milliseconds apart. Zero disables it.
    pub missing_secret_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(20),
            shutdown_delay: Duration::ZERO,
            max_connections: 4096,
            idle_timeout: Duration::from_secs(120),
            missing_secret_grace: Duration::from_secs(1),
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<ArcSwap<Engine>>,
    /// Ready to decide: set once serving, cleared when shutdown starts.
    pub ready: Arc<AtomicBool>,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
}

/// The routes: `POST /validate`, `GET /healthz`, `GET /readyz`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(handlers::validate))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .with_state(state)
}

/// The plain-HTTP operations port: `GET /metrics`, `/healthz`, `/readyz`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(handlers::metrics))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .with_state(state)
}

/// Serves the operations port until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(err) = axum::serve(listener, metrics_router(state))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(error = %err, "metrics server failed");
    }
}

/// A bound, not yet running, HTTPS server.
pub struct Server {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: AppState,
}

impl Server {
    /// Binds `addr`; the TLS configuration has already been checked by the caller.
    pub async fn bind(
        addr: SocketAddr,
        tls: rustls::ServerConfig,
        state: AppState,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Server {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            state,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then drains: report not-ready at once, keep serving
    /// for `shutdown_delay` (so endpoints drop this replica while it still answers), then stop
    /// accepting and let in-flight requests finish within `shutdown_timeout`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            acceptor,
            state,
        } = self;
        let limits = state.limits.clone();
        let ready = state.ready.clone();
        let router = router(state);
        let (stop_tx, stop_rx) = watch::channel(false);
        let max = u32::try_from(limits.max_connections)
            .unwrap_or(u32::MAX)
            .max(1);
        let slots = Arc::new(Semaphore::new(max as usize));
        ready.store(true, Ordering::SeqCst);
        tokio::pin!(shutdown);
        let mut drain: Option<Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = &mut shutdown, if drain.is_none() => {
                    drain = Some(begin_drain(&ready, limits.shutdown_delay));
                    continue;
                }
                () = wait(&mut drain) => break,
            };
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown, if drain.is_none() => {
                    drain = Some(begin_drain(&ready, limits.shutdown_delay));
                    continue;
                }
                () = wait(&mut drain) => break,
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(serve_connection(
                tcp,
                peer,
                acceptor.clone(),
                router.clone(),
                limits.clone(),
                stop_rx.clone(),
                permit,
            ));
        }
        ready.store(false, Ordering::SeqCst);
        drop(listener);
        tracing::info!("stopped accepting; draining in-flight requests");
        let _ = stop_tx.send(true);
        // Every connection holds a slot until it ends: all slots back means all done.
        match tokio::time::timeout(limits.shutdown_timeout, slots.acquire_many(max)).await {
            Ok(_) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!(
                timeout_secs = limits.shutdown_timeout.as_secs(),
                "shutdown timeout reached; closing remaining connections"
            ),
        }
    }
}

/// Shutdown has begun: report not-ready at once, and return the delay during which the server
/// keeps serving so that endpoints drop this replica first.
fn begin_drain(ready: &AtomicBool, delay: Duration) -> Pin<Box<tokio::time::Sleep>> {
    ready.store(false, Ordering::SeqCst);
    tracing::info!(
        delay_secs = delay.as_secs(),
        "shutting down: not ready; still serving during the delay"
    );
    Box::pin(tokio::time::sleep(delay))
}

/// Resolves when the drain delay (if started) has passed; never before it starts.
async fn wait(drain: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match drain {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// When the connection last finished a request, and how many it has in flight.
struct Activity {
    in_flight: AtomicUsize,
    last: std::sync::Mutex<Instant>,
}

impl Activity {
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        self.last
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or(Duration::ZERO)
    }
}

async fn track(
    State(activity): State<Arc<Activity>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    activity.in_flight.fetch_add(1, Ordering::SeqCst);
    let response = next.run(request).await;
    if let Ok(mut last) = activity.last.lock() {
        *last = Instant::now();
    }
    activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

/// The HTTP side of a connection: the protocol ALPN chose (HTTP/1.1 without ALPN: h2 over TLS
/// needs it), header timeout, keep-alive pings, stream cap.
pub fn connection_builder(limits: &Limits, h2: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    }
}

/// One client connection: TLS handshake and first bytes under timeouts, then HTTP/1.1 or
/// HTTP/2 by ALPN, closed gracefully when idle too long or when the server stops.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    // Wait for the first bytes ourselves: hyper's timers only start once a protocol is
    // running, and a client that sends nothing must not hold a slot.
    let mut tls = tls;
    let mut first = vec![0u8; 8 * 1024];
    let n = match tokio::time::timeout(limits.header_read_timeout, tls.read(&mut first)).await {
        Ok(Ok(0)) => return,
        Ok(Ok(n)) => n,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "read failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "no request within the header timeout");
            return;
        }
    };
    first.truncate(n);
    let io = TokioIo::new(Prefixed::new(first, tls));
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last: std::sync::Mutex::new(Instant::now()),
    });
    let service = TowerToHyperService::new(
        router.layer(middleware::from_fn_with_state(activity.clone(), track)),
    );
    let builder = connection_builder(&limits, h2);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut check = tokio::time::interval(limits.idle_timeout.max(Duration::from_millis(40)) / 4);
    let mut closing = false;
    // After a graceful close of an idle connection, a peer that never acknowledges the
    // GOAWAY (or never reads) is dropped after this long.
    let grace = limits.idle_timeout.min(Duration::from_secs(10));
    let mut deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                // In-flight requests finish; the server's shutdown timeout bounds the rest.
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = check.tick(), if !closing => {
                // HTTP/2 clients answer keep-alive pings forever; an idle one must not keep
                // its slot, so close it (gracefully: GOAWAY, nothing in flight is cut).
                if activity.idle_for() >= limits.idle_timeout {
                    tracing::debug!(%peer, "closing idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    deadline = Some(Box::pin(tokio::time::sleep(grace)));
                }
            }
            () = wait(&mut deadline) => {
                if activity.in_flight.load(Ordering::SeqCst) == 0 {
                    tracing::debug!(%peer, "idle connection did not close; dropping it");
                    return;
                }
                deadline = Some(Box::pin(tokio::time::sleep(grace)));
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C"),
        () = term => tracing::info!("received SIGTERM"),
    }
}
