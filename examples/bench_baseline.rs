//! Bench-only baseline webhook for `make bench`: the same TLS and HTTP stack as
//! `applyguard serve` (rustls configured by `applyguard::tls`, hyper-util's auto connection
//! builder with the same HTTP/1 and HTTP/2 settings, axum routing, the same first-bytes wait and
//! body limit), answering "allowed" after parsing the AdmissionReview with
//! `applyguard::admission::parse` and encoding the response with `applyguard::admission::encode`.
//! It runs no rule, reads no inventory, logs nothing per request, keeps no metrics and does not
//! track connection activity for the idle timeout, so the load test's ratio applyguard / baseline
//! is the cost of everything `serve` adds to the transport: the decision, the log line, metrics
//! and connection bookkeeping.
//!
//! ```sh
//! cargo run --release --example bench_baseline -- --listen 127.0.0.1:9443 \
//!     --tls-cert certs/tls.crt --tls-key certs/tls.key
//! ```
//!
//! It stops on SIGTERM or Ctrl-C. Not a webhook to deploy: it allows everything.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kube::core::admission::AdmissionResponse;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use applyguard::server::{Limits, shutdown_signal};
use applyguard::{admission, tls};

/// The allocator `applyguard serve` uses, so the comparison is of the work, not of allocators.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    listen: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
}

fn usage() -> ExitCode {
    eprintln!("usage: bench_baseline --listen ADDR --tls-cert PEM --tls-key PEM");
    ExitCode::from(2)
}

fn parse_args() -> Option<Args> {
    let mut listen = None;
    let mut cert = None;
    let mut key = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next()?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().ok()?),
            "--tls-cert" => cert = Some(PathBuf::from(value)),
            "--tls-key" => key = Some(PathBuf::from(value)),
            _ => return None,
        }
    }
    Some(Args {
        listen: listen?,
        cert: cert?,
        key: key?,
    })
}

fn main() -> ExitCode {
    let Some(args) = parse_args() else {
        return usage();
    };
    let loaded = match tls::load_pair(&args.cert, &args.key) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("bench_baseline: {err}");
            return ExitCode::FAILURE;
        }
    };
    let config = match tls::server_config(tls::CertStore::new(loaded.key)) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("bench_baseline: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The same runtime `applyguard serve` builds: multi-threaded, one worker per core.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bench_baseline: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args.listen, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench_baseline: cannot listen on {}: {err}", args.listen);
            ExitCode::FAILURE
        }
    }
}

fn text(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// Parse, allow, encode: what any webhook must do at the least.
async fn validate(request: Request) -> Response {
    let limits = Limits::default();
    let body: Body = request.into_body();
    let bytes = match tokio::time::timeout(
        limits.body_read_timeout,
        axum::body::to_bytes(body, limits.max_body_bytes),
    )
    .await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {err}"),
            );
        }
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                "request body timeout".to_string(),
            );
        }
    };
    match admission::parse(&bytes) {
        Ok(request) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            admission::encode(AdmissionResponse::from(&request)),
        )
            .into_response(),
        Err(err) => text(StatusCode::BAD_REQUEST, err.to_string()),
    }
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok".to_string())
}

/// The accept loop of `applyguard::server::Server::run`, with the baseline's routes.
async fn serve(addr: SocketAddr, config: rustls::ServerConfig) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!(
        "bench_baseline: serving HTTPS on {}",
        listener.local_addr()?
    );
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let limits = Limits::default();
    let router = Router::new()
        .route("/validate", post(validate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(healthz));
    let service = TowerToHyperService::new(router);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(_) => {
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
            let Ok(Ok(mut tls)) =
                tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await
            else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let mut first = vec![0u8; 8 * 1024];
            let n = match tokio::time::timeout(limits.header_read_timeout, tls.read(&mut first))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(n)) => n,
            };
            first.truncate(n);
            let io = TokioIo::new(applyguard::server::prefixed::Prefixed::new(first, tls));
            let builder = applyguard::server::connection_builder(&limits, h2);
            let conn = builder.serve_connection(io, service);
            let _ = watcher.watch(conn).await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown()).await;
    Ok(())
}
