//! The operator console (issue 9), served by `whatsify serve` at
//! `/console`: pages and their script and style are built into the binary
//! (no Node step, no third-party host), under a strict
//! Content-Security-Policy.
//!
//! Sign-in takes the admin token. The session is an opaque random id in an
//! `HttpOnly`, `SameSite=Strict` cookie (`Secure` over TLS) that expires;
//! nothing personal is kept in cookies or local storage. The pages call the
//! admin API with that cookie: a request that changes something must also
//! carry the session's CSRF token (`X-CSRF-Token`), which the page reads
//! from a `<meta>` tag, so another site cannot forge it. Signed-out
//! requests get the sign-in page (pages) or 401 (the API).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::startup::AppState;

/// How long a console session lasts from sign-in.
pub const SESSION_LIFE: Duration = Duration::from_secs(8 * 3600);
/// The session cookie's name.
pub const COOKIE: &str = "whatsify_console";
/// Sessions one instance keeps at most (the oldest go first).
const MAX_SESSIONS: usize = 1000;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const SIGN_IN_HTML: &str = include_str!("assets/sign-in.html");
const LAYOUT_HTML: &str = include_str!("assets/layout.html");
const OVERVIEW_MAIN: &str = include_str!("assets/overview.main.html");
const CONTACTS_MAIN: &str = include_str!("assets/contacts.main.html");

/// The signed-in pages: (path, title, body).
const PAGES: [(&str, &str, &str); 2] = [
    ("/console", "Overview", OVERVIEW_MAIN),
    ("/console/contacts", "Contacts", CONTACTS_MAIN),
];
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// One signed-in operator's session.
#[derive(Clone)]
struct Session {
    expires: Instant,
    csrf: String,
}

/// This instance's console sessions (in memory: an operator signs in
/// again after a restart, or on another instance without sticky
/// sessions).
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<String, Session>>>);

fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    fn start(&self) -> (String, String) {
        let id = random_id();
        let csrf = random_id();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                expires: now + SESSION_LIFE,
                csrf: csrf.clone(),
            },
        );
        (id, csrf)
    }

    fn get(&self, id: &str) -> Option<Session> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    fn end(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// The CSRF token of the request's session, if it has a live one.
    fn of(&self, req: &HttpRequest) -> Option<(String, Session)> {
        let id = req.cookie(COOKIE)?.value().to_owned();
        let s = self.get(&id)?;
        Some((id, s))
    }

    /// Whether the request is signed in; a request that changes something
    /// must also carry the session's CSRF token.
    pub fn allows(&self, req: &HttpRequest) -> bool {
        let Some((_, session)) = self.of(req) else {
            return false;
        };
        if req.method() == actix_web::http::Method::GET
            || req.method() == actix_web::http::Method::HEAD
        {
            return true;
        }
        let given = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        same(given, &session.csrf)
    }
}

/// Compares digests, so neither content nor length leaks.
fn same(a: &str, b: &str) -> bool {
    bool::from(Sha256::digest(a.as_bytes()).ct_eq(&Sha256::digest(b.as_bytes())))
}

fn page(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "same-origin"))
        .body(body)
}

/// A signed-in page: the layout (navigation, sign-out, the session's CSRF
/// token) around the page's body. Signed out: the sign-in page.
fn signed_in(req: &HttpRequest, state: &AppState, path: &str) -> HttpResponse {
    if state.admin_token.get().is_none() {
        return HttpResponse::NotFound().finish();
    }
    let Some((_, session)) = state.console.of(req) else {
        return sign_in_page("");
    };
    let Some((_, title, body)) = PAGES.iter().find(|(p, _, _)| *p == path) else {
        return HttpResponse::NotFound().finish();
    };
    let nav: String = PAGES
        .iter()
        .map(|(p, t, _)| {
            let current = if *p == path {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"{p}\"{current}>{t}</a>")
        })
        .collect();
    page(
        LAYOUT_HTML
            .replace("{{title}}", title)
            .replace("{{nav}}", &nav)
            .replace("{{main}}", body)
            .replace("{{csrf}}", &session.csrf),
    )
}

fn sign_in_page(message: &str) -> HttpResponse {
    page(SIGN_IN_HTML.replace("{{message}}", &html_escape(message)))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whether the request came over TLS (directly or, as the proxy says,
/// through it).
fn tls(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// `GET /console`: the overview, or the sign-in page when signed out.
pub async fn overview(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    signed_in(&req, &state, "/console")
}

/// `GET /console/contacts`: find a contact, see and export their data,
/// erase it (or the sign-in page when signed out).
pub async fn contacts(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    signed_in(&req, &state, "/console/contacts")
}

/// `GET /console/sign-in`.
pub async fn sign_in_form(state: web::Data<AppState>) -> HttpResponse {
    if state.admin_token.get().is_none() {
        return HttpResponse::NotFound().finish();
    }
    sign_in_page("")
}

#[derive(Deserialize)]
pub struct SignIn {
    token: String,
}

/// `POST /console/sign-in`: the admin token starts a session.
pub async fn sign_in(
    req: HttpRequest,
    form: web::Form<SignIn>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(token) = state.admin_token.get() else {
        return HttpResponse::NotFound().finish();
    };
    // A sign-in form posted from another site is refused (login CSRF).
    if let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    {
        let info = req.connection_info();
        let own = format!("{}://{}", info.scheme(), info.host());
        if origin != own {
            return HttpResponse::Forbidden().body("cross-site sign-in refused");
        }
    }
    if !same(&form.token, token.expose_secret()) {
        tracing::warn!("console: sign-in refused");
        return sign_in_page("That token is not the admin token.");
    }
    let (id, _) = state.console.start();
    let cookie = Cookie::build(COOKIE, id)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(tls(&req))
        .max_age(actix_web::cookie::time::Duration::seconds(
            SESSION_LIFE.as_secs() as i64,
        ))
        .finish();
    tracing::info!("console: signed in");
    HttpResponse::SeeOther()
        .cookie(cookie)
        .insert_header((header::LOCATION, "/console"))
        .finish()
}

/// `POST /console/sign-out` (with the CSRF token).
pub async fn sign_out(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !state.console.allows(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    if let Some((id, _)) = state.console.of(&req) {
        state.console.end(&id);
    }
    let mut gone = Cookie::build(COOKIE, "").path("/").finish();
    gone.make_removal();
    HttpResponse::NoContent().cookie(gone).finish()
}

/// `GET /console/app.js` and `/console/style.css` (no session needed:
/// they hold nothing but code).
pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(APP_JS)
}

pub async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(STYLE_CSS)
}

/// `GET /console/api/overview`: today's counters, the outbox backlog, dead
/// letters, paused numbers and the last webhook, for the overview page.
pub async fn overview_data(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !state.console.allows(&req) {
        return HttpResponse::Unauthorized().json(serde_json::json!({"error": "sign in first"}));
    }
    let today = crate::store::stats::today();
    let store = state.store.as_ref();
    let now_ms = crate::store::now_ms();
    let data = async {
        let stats = store.stats(std::slice::from_ref(&today)).await?;
        let (depth, oldest) = store.backlog(crate::store::Lane::Outbox).await?;
        let dead = store.dead_letters(1000).await?.len();
        let breakers = store.breakers().await?;
        Ok::<_, crate::store::StoreError>((stats, depth, oldest, dead, breakers))
    };
    match data.await {
        Ok((stats, depth, oldest, dead, breakers)) => {
            let day = stats.get(&today).cloned().unwrap_or_default();
            let n = |k: &str| day.get(k).copied().unwrap_or(0);
            let last = state
                .last_webhook
                .load(std::sync::atomic::Ordering::Relaxed);
            HttpResponse::Ok().json(serde_json::json!({
                "day": today,
                "messages_in": n(crate::store::stats::MESSAGES_IN),
                "messages_out": n(crate::store::stats::MESSAGES_OUT),
                "opt_outs": n(crate::store::stats::OPT_OUTS),
                "opt_ins": n(crate::store::stats::OPT_INS),
                "exports": n(crate::store::stats::EXPORTS),
                "erasures": n(crate::store::stats::ERASURES),
                "outbox_depth": depth,
                "outbox_oldest_seconds": oldest.map(|t| now_ms.saturating_sub(t) / 1000),
                "dead_letters": dead,
                "paused_numbers": breakers.iter().map(|(n, b)| serde_json::json!({"phone_number_id": n, "code": b.code, "since": b.since})).collect::<Vec<_>>(),
                "last_webhook_at": (last > 0).then_some(last),
            }))
        }
        Err(e) => {
            tracing::error!(error = %e, "console: store unavailable");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"error": "the store is unavailable; try again"}))
        }
    }
}
