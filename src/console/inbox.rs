//! The console's inbox page (`/console/inbox`, in [`super::PAGES`]): its
//! script. The page lists the agents' inbox (`GET /admin/…/inbox`),
//! refetched whenever the server-sent events of `…/inbox/events` say it
//! changed, and takes, answers and closes conversations through the admin
//! API with the session's CSRF token.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

const INBOX_JS: &str = include_str!("assets/inbox.js");

/// The page's own routes: its script.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console/inbox.js", web::get().to(script));
}

/// `GET /console/inbox.js` (no session needed: it holds nothing but code).
pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(INBOX_JS)
}
