//! `GET /healthz` (the process answers) and `GET /readyz` (the store is
//! reachable; later also: flows loaded).

use actix_web::{HttpResponse, web};

use crate::startup::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().body("ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            HttpResponse::ServiceUnavailable().body("store unreachable")
        }
    }
}
