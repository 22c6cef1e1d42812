//! Request handlers: admission, liveness and readiness.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use std::sync::Arc;

use crate::admission;
use crate::engine::Engine;
use crate::inventory::Readiness;

fn text(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// Reads the body within the size limit and the body timeout.
async fn read_body(state: &AppState, request: Request) -> Result<Bytes, Response> {
    let limit = state.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        text(
            StatusCode::BAD_REQUEST,
            format!("request body exceeds the {limit}-byte limit"),
        )
    };
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let body: Body = request.into_body();
    match tokio::time::timeout(
        state.limits.body_read_timeout,
        axum::body::to_bytes(body, limit),
    )
    .await
    {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(err)) => {
            // to_bytes reports both a broken stream and the limit; tell them apart.
            let length_limit = std::error::Error::source(&err)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            if length_limit {
                Err(too_large())
            } else {
                Err(text(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read request body: {err}"),
                ))
            }
        }
        Err(_) => Err(text(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {}s",
                state.limits.body_read_timeout.as_secs()
            ),
        )),
    }
}

/// Bodies up to this size are decided on the async worker that read them: a typical object
/// (a few KiB) takes tens of microseconds, less than the two thread switches a hand-off to the
/// blocking pool costs, and nothing waits behind it long enough to matter.
pub const DECIDE_INLINE_MAX_BYTES: usize = 64 * 1024;

/// Decides one body. A large one is evaluated off the async workers: a huge object takes
/// milliseconds of CPU, and must not stall probes and other requests meanwhile. `None` only if
/// the evaluation panicked.
async fn decide(
    engine: &Arc<Engine>,
    body: &Bytes,
) -> Option<Result<admission::Reply, admission::BadReview>> {
    if body.len() <= DECIDE_INLINE_MAX_BYTES {
        // A panic (a bug) answers 500 as a dead blocking task did, not a dropped connection.
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            admission::respond(engine, body)
        }))
        .ok();
    }
    let (engine, body) = (engine.clone(), body.clone());
    tokio::task::spawn_blocking(move || admission::respond(&engine, &body))
        .await
        .ok()
}

pub async fn validate(State(state): State<AppState>, request: Request) -> Response {
    let start = Instant::now();
    let body = match read_body(&state, request).await {
        Ok(body) => body,
        Err(response) => {
            tracing::warn!(
                status = response.status().as_u16(),
                "rejected admission request body"
            );
            return response;
        }
    };
    let engine = state.engine.load_full();
    // Subscribe before deciding, so a change between the decision and the wait is not missed.
    let mut changes = engine.inventory().changes();
    let Some(mut outcome) = decide(&engine, &body).await else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "evaluation failed".to_string(),
        );
    };
    if let Some(changes) = changes.as_mut() {
        let deadline = tokio::time::Instant::now() + state.limits.missing_secret_grace;
        while let Ok(reply) = &outcome {
            let waiting_for_secret =
                reply.summary.decision == "deny" && reply.summary.rules.contains(&"secret-ref");
            if !waiting_for_secret
                || !matches!(
                    tokio::time::timeout_at(deadline, changes.changed()).await,
                    Ok(Ok(()))
                )
            {
                break;
            }
            match decide(&engine, &body).await {
                Some(next) => outcome = next,
                None => break,
            }
        }
    }
    match outcome {
        Ok(reply) => {
            state
                .metrics
                .observe(&reply.summary, start.elapsed().as_secs_f64());
            let s = &reply.summary;
            tracing::info!(
                uid = ?s.uid,
                kind = ?s.kind,
                namespace = ?s.namespace,
                name = ?s.name,
                operation = s.operation,
                decision = s.decision,
                rules = %s.rules.join(","),
                dry_run = s.dry_run,
                latency_ms = admission::elapsed_ms(start),
                "admission decision"
            );
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                reply.body,
            )
                .into_response()
        }
        Err(err) => {
            tracing::warn!(error = %err, "rejected malformed AdmissionReview");
            text(StatusCode::BAD_REQUEST, err.to_string())
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .render(state.engine.load().inventory().as_ref());
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

pub async fn healthz() -> Response {
    text(StatusCode::OK, "ok".to_string())
}

/// Ready to decide: serving (not shutting down) and the inventory has synced.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if !state.ready.load(Ordering::SeqCst) {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down".to_string(),
        );
    }
    match state.engine.load().inventory().readiness() {
        Readiness::Ready => text(StatusCode::OK, "ready".to_string()),
        Readiness::NotReady(reason) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}"),
        ),
    }
}
