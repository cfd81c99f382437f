//! `GET /healthz` (the process answers) and `GET /readyz` (it can take
//! webhooks: the store is reachable and it is not shutting down).
//!
//! `/readyz` also says when sending is paused for a business number (its
//! breaker is open: Meta refused the access token or its permissions).
//! That stays 200: webhooks are still taken and queued, and every instance
//! shares the pause, so failing readiness would only stop the intake too.
//! The body is JSON: `{"status": "ready" | "sending_paused", "paused": [...]}`.
//!
//! The details (`paused`) and `/metrics` are for operators: on
//! `server.bind` they need the admin credential, and on the optional
//! `server.ops_bind` listener (which serves only these three routes, for a
//! monitoring network) they are open. `/healthz` and readiness's status
//! are open everywhere, for load balancers.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::json;

use crate::http::error::{Answer, ApiError};
use crate::state::AppState;

/// Marks the app behind the `server.ops_bind` listener.
#[derive(Clone, Copy)]
struct OpsListener;

/// Binds `addr` and builds the operations listener: `/healthz`, `/readyz`
/// and `/metrics`, with their details open. Answers its port and the
/// server, to be run.
pub fn ops_server(
    addr: &str,
    state: web::Data<AppState>,
) -> std::io::Result<(u16, actix_web::dev::Server)> {
    let listener = std::net::TcpListener::bind(addr)?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::Data::new(OpsListener))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((port, server))
}

/// `Ok` when the request may see operators' details (it came in on the
/// operations listener, or carries the admin credential).
pub async fn operator(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    if req.app_data::<web::Data<OpsListener>>().is_some() {
        return Ok(());
    }
    crate::http::auth::authorize(req, state).await.map(|_| ())
}

/// `GET /metrics`: the Prometheus text format ([`crate::metrics`]).
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Answer {
    operator(&req, &state).await?;
    match crate::metrics::global()
        .render(state.store.as_ref(), crate::clock::now_ms())
        .await
    {
        Ok(text) => Ok(HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(text)),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: store unavailable");
            Ok(HttpResponse::ServiceUnavailable().body("store unavailable\n"))
        }
    }
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

pub async fn readyz(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if state.shutdown.is_stopping() {
        return HttpResponse::ServiceUnavailable().json(json!({ "status": "shutting_down" }));
    }
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "not ready");
        return HttpResponse::ServiceUnavailable().json(json!({ "status": "store_unreachable" }));
    }
    let paused = match state.store.breakers().await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            return HttpResponse::ServiceUnavailable()
                .json(json!({ "status": "store_unreachable" }));
        }
    };
    let status = if paused.is_empty() {
        "ready"
    } else {
        "sending_paused"
    };
    if operator(&req, &state).await.is_err() {
        return HttpResponse::Ok().json(json!({ "status": status }));
    }
    HttpResponse::Ok().json(json!({
        "status": status,
        "paused": paused.iter().map(|(number, b)| json!({
            "phone_number_id": number,
            "code": b.code,
            "reason": format!("Meta refused the access token or its permissions ({})", b.reason),
            "since": b.since,
            "next_probe": b.probe_at,
        })).collect::<Vec<_>>(),
    }))
}
