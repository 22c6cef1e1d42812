//! The HTTPS server: rustls on a TCP listener, HTTP/1.1 and HTTP/2 via hyper, routes via axum,
//! with timeouts for slow clients and a bounded graceful shutdown.

mod handlers;
mod prefixed;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::engine::Engine;
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
}

/// The routes: `POST /validate`, `GET /healthz`, `GET /readyz`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(handlers::validate))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .with_state(state)
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

    /// Serves until `shutdown` completes, then drains: not ready, stop accepting, let in-flight
    /// requests finish within `shutdown_timeout`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            acceptor,
            state,
        } = self;
        let limits = state.limits.clone();
        let ready = state.ready.clone();
        let service = TowerToHyperService::new(router(state));
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        ready.store(true, Ordering::SeqCst);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
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
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let service = service.clone();
            let watcher = graceful.watcher();
            let limits = limits.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp))
                    .await
                {
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
                // Wait for the first bytes ourselves: hyper's timers only start once a
                // protocol is running, and a client that sends nothing must not hold a slot.
                let mut tls = tls;
                let mut first = vec![0u8; 8 * 1024];
                let n = match tokio::time::timeout(limits.header_read_timeout, tls.read(&mut first))
                    .await
                {
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
                // ALPN decides the protocol; without ALPN, HTTP/1.1 (h2 over TLS needs ALPN).
                let builder = if h2 {
                    builder.http2_only()
                } else {
                    builder.http1_only()
                };
                let conn = builder.serve_connection(io, service);
                if let Err(err) = watcher.watch(conn).await {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
            });
        }
        ready.store(false, Ordering::SeqCst);
        tracing::info!("shutting down: not ready; draining in-flight requests");
        if !limits.shutdown_delay.is_zero() {
            tokio::time::sleep(limits.shutdown_delay).await;
        }
        drop(listener);
        match tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!(
                timeout_secs = limits.shutdown_timeout.as_secs(),
                "shutdown timeout reached; closing remaining connections"
            ),
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
