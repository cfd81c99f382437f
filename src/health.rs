//! `GET /healthz` (the process answers) and `GET /readyz` (it can take
//! webhooks: the store is reachable and it is not shutting down).
//!
//! `/readyz` also says when sending is paused for a business number (its
//! breaker is open: Meta refused the access token or its permissions).
//! That stays 200: webhooks are still taken and queued, and every instance
//! shares the pause, so failing readiness would only stop the intake too.
//! The body is JSON: `{"status": "ready" | "sending_paused", "paused": [...]}`.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::startup::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
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
