//! The operator console (issue 9), served by `whatsify serve` at
//! `/console`: pages and their script and style are built into the binary
//! (no Node step, no third-party host), under a strict
//! Content-Security-Policy.
//!
//! Sign-in takes the admin token. The session is an opaque random id in an
//! `HttpOnly`, `SameSite=Strict` cookie (`Secure` over TLS) that expires;
//! nothing personal is kept in cookies or local storage. The session's
//! record (CSRF token, simulator conversation) is kept in the store, so
//! every instance on one Redis honours it. The pages call the
//! admin API with that cookie: a request that changes something must also
//! carry the session's CSRF token (`X-CSRF-Token`), which the page reads
//! from a `<meta>` tag, so another site cannot forge it. Signed-out
//! requests get the sign-in page (pages) or 401 (the API).

pub mod diagram;
mod inbox;
mod requests;
mod signin;

pub use signin::{enrol, enrol_form, sign_in, sign_in_form, sign_out};

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::http::auth::SignedIn;
use crate::http::error::{Answer, ApiError};
use crate::http::session::{Sim, csrf_ok, save, session_of};
use crate::state::AppState;
use signin::sign_in_page;

/// How long a console session lasts from sign-in.
pub const SESSION_LIFE: Duration = Duration::from_secs(8 * 3600);
/// Most bytes of a simulator request.
const SIM_BODY_MAX: usize = 16 * 1024;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const LAYOUT_HTML: &str = include_str!("assets/layout.html");
const OVERVIEW_MAIN: &str = include_str!("assets/overview.main.html");
const CONTACTS_MAIN: &str = include_str!("assets/contacts.main.html");
const REQUESTS_MAIN: &str = include_str!("assets/requests.main.html");
const CAMPAIGNS_MAIN: &str = include_str!("assets/campaigns.main.html");
const AUDIT_MAIN: &str = include_str!("assets/audit.main.html");
const FLOWS_MAIN: &str = include_str!("assets/flows.main.html");
const ACCOUNT_MAIN: &str = include_str!("assets/account.main.html");
const INBOX_MAIN: &str = include_str!("assets/inbox.main.html");

/// The signed-in pages: (path, title, body).
pub const PAGES: [(&str, &str, &str); 8] = [
    ("/console", "Overview", OVERVIEW_MAIN),
    ("/console/inbox", "Inbox", INBOX_MAIN),
    ("/console/contacts", "Contacts", CONTACTS_MAIN),
    ("/console/requests", "Privacy requests", REQUESTS_MAIN),
    ("/console/campaigns", "Campaigns", CAMPAIGNS_MAIN),
    ("/console/audit", "Audit", AUDIT_MAIN),
    ("/console/flows", "Flows", FLOWS_MAIN),
    ("/console/account", "Account", ACCOUNT_MAIN),
];
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

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
async fn signed_in(req: &HttpRequest, state: &AppState, path: &str) -> HttpResponse {
    match signin::console_on(state).await {
        Ok(true) => {}
        Ok(false) => return HttpResponse::NotFound().finish(),
        Err(e) => return actix_web::ResponseError::error_response(&e),
    }
    let Some((_, session)) = session_of(req, state).await else {
        return sign_in_page("");
    };
    let Some(caller) = crate::http::session::caller(req, state).await else {
        return sign_in_page("");
    };
    let Some((_, title, body)) = PAGES.iter().find(|(p, _, _)| *p == path) else {
        return HttpResponse::NotFound().finish();
    };
    let may = |p: &str| {
        let need = crate::http::access::needed(&actix_web::http::Method::GET, p);
        caller.role.may(need.perm)
    };
    if !may(path) {
        let mut answer = page(format!(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Not for your role · whatsify console</title>\
             <link rel='stylesheet' href='/console/style.css'></head><body><main><h1>Not for your role</h1>\
             <p>Your role ({}) does not open this page. <a href='/console'>Back to the overview</a>.</p></main></body></html>",
            caller.role.as_str()
        ));
        *answer.status_mut() = actix_web::http::StatusCode::FORBIDDEN;
        return answer;
    }
    let nav: String = PAGES
        .iter()
        .filter(|(p, _, _)| may(p))
        .map(|(p, t, _)| {
            let current = if *p == path {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"{p}\"{current}>{t}</a>")
        })
        .collect();
    let who = match caller.operator_id() {
        None => "root (admin token)".to_owned(),
        Some(id) => match crate::http::auth::accounts(state).get(id).await {
            Ok(Some(a)) => format!("{} · {}", a.email, a.role.as_str()),
            _ => caller.role.as_str().to_owned(),
        },
    };
    page(
        LAYOUT_HTML
            .replace("{{title}}", title)
            .replace("{{nav}}", &nav)
            .replace("{{main}}", body)
            .replace("{{csrf}}", &session.csrf)
            .replace("{{who}}", &html_escape(&who))
            .replace("{{role}}", caller.role.as_str()),
    )
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

/// The console's routes: every page in [`PAGES`], sign-in and out, the
/// script and style, and the pages' own API.
pub fn routes(cfg: &mut web::ServiceConfig) {
    for (path, _, _) in PAGES {
        cfg.route(path, web::get().to(page_at));
    }
    cfg.route("/console/sign-in", web::get().to(sign_in_form))
        .route("/console/sign-in", web::post().to(sign_in))
        .route("/console/sign-out", web::post().to(sign_out))
        .route("/console/enrol/{token}", web::get().to(enrol_form))
        .route("/console/enrol/{token}", web::post().to(enrol))
        .route("/console/app.js", web::get().to(script))
        .configure(inbox::routes)
        .configure(requests::routes)
        .route("/console/style.css", web::get().to(style))
        .route("/console/api/overview", web::get().to(overview_data))
        .route(
            "/console/api/requests",
            web::get().to(requests::requests_data),
        )
        .route("/console/api/flows", web::get().to(flows_data))
        .route("/console/api/simulator", web::post().to(simulate))
        .route("/console/flows/{id}/diagram.svg", web::get().to(diagram));
}

/// `GET` of a page in [`PAGES`] (the sign-in page when signed out).
pub async fn page_at(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    signed_in(&req, &state, req.path()).await
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
pub async fn overview_data(
    signed: SignedIn,
    chosen: web::Query<Chosen>,
    state: web::Data<AppState>,
) -> Answer {
    let business = chosen.business(&state, &signed.caller)?;
    let today = crate::store::stats::today();
    let store = state.store.as_ref();
    let now_ms = crate::clock::now_ms();
    let data = async {
        let stats = store.stats(std::slice::from_ref(&today)).await?;
        let (depth, oldest) = store.backlog(crate::store::Lane::Outbox).await?;
        let dead = store.dead_letters(1000).await?.len();
        let breakers = store.breakers().await?;
        Ok::<_, crate::store::StoreError>((stats, depth, oldest, dead, breakers))
    };
    let (stats, depth, oldest, dead, breakers) = data.await.map_err(ApiError::console)?;
    // The business chosen, or every business's added up.
    let stats = match &business {
        Some(b) => crate::store::stats::of_business(&stats, &b.id),
        None => crate::store::stats::of_all(&stats),
    };
    let day = stats.get(&today).cloned().unwrap_or_default();
    let n = |k: &str| day.get(k).copied().unwrap_or(0);
    let last = state
        .last_webhook
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok(HttpResponse::Ok().json(serde_json::json!({
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
    })))
}

/// 503 while no flows are loaded.
fn no_flows() -> ApiError {
    ApiError::Refused(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "no flows are loaded".into(),
    )
}

/// A flow file's id, read without the rest of its checks.
/// `?business=`: the business a console page shows (none: the whole
/// service, or the one business served).
#[derive(Deserialize)]
pub struct Chosen {
    business: Option<String>,
}

impl Chosen {
    /// The business chosen: 404 for an id no business has. None chosen:
    /// the whole service for a caller who serves every business, else the
    /// first of theirs (the switcher offers the others).
    fn business(
        &self,
        state: &AppState,
        caller: &crate::domain::operator::Caller,
    ) -> Result<Option<crate::config::businesses::Business>, ApiError> {
        match self.business.as_deref().filter(|b| !b.is_empty()) {
            None => Ok(caller
                .businesses
                .as_ref()
                .and_then(|list| list.iter().find_map(|b| state.businesses.get(b.as_str())))
                .cloned()),
            Some(id) => state
                .businesses
                .get(id)
                .cloned()
                .map(Some)
                .ok_or_else(|| ApiError::not_found("no such business")),
        }
    }
}

#[derive(Deserialize)]
struct FlowId {
    id: String,
}

/// `GET /console/api/flows`: the flow files on disk with their validation
/// errors (`file:line:col: message`), and the flows in force (the last
/// good set, when the files on disk have errors).
pub async fn flows_data(
    signed: SignedIn,
    chosen: web::Query<Chosen>,
    state: web::Data<AppState>,
) -> Answer {
    let business = chosen.business(&state, &signed.caller)?;
    let (shared, dir) = match (&business, &state.flow_sets) {
        (Some(b), Some(sets)) => {
            let number = b.phone_number_ids.first().map_or("", String::as_str);
            (sets.shared_for(number).clone(), b.flows_dir.clone())
        }
        _ => match state.flows.clone() {
            Some(shared) => (shared, state.flows_dir.clone()),
            None => return Err(no_flows()),
        },
    };
    let checked = web::block(move || {
        let errors = crate::flow::load_dir(&dir).err().unwrap_or_default();
        let mut files: Vec<(String, Option<String>)> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.is_file()
                            && p.extension().is_some_and(|x| {
                                x.eq_ignore_ascii_case("yaml") || x.eq_ignore_ascii_case("yml")
                            })
                    })
                    .map(|p| {
                        let id = std::fs::read_to_string(&p)
                            .ok()
                            .and_then(|t| serde_saphyr::from_str::<FlowId>(&t).ok())
                            .map(|f| f.id);
                        (file_name(&p), id)
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        (errors, files)
    })
    .await;
    let Ok((errors, files)) = checked else {
        return Err(ApiError::Refused(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the flow files could not be checked".into(),
        ));
    };
    let flows = shared.current();
    let error_text = |e: &crate::flow::FlowError| {
        let mut shown = e.clone();
        shown.file = std::path::PathBuf::from(file_name(&e.file));
        shown.to_string()
    };
    let in_force = |id: &str| {
        flows.by_id.get(id).map(|&i| {
            let mut keywords: Vec<&str> = flows
                .keywords
                .iter()
                .filter(|(_, f)| **f == i)
                .map(|(k, _)| k.as_str())
                .collect();
            keywords.sort_unstable();
            serde_json::json!({
                "steps": flows.flows[i].steps.len(),
                "keywords": keywords,
                "default": flows.default == i,
                "outline": diagram::outline(&flows, i),
            })
        })
    };
    let mut rows: Vec<serde_json::Value> = files
        .iter()
        .map(|(name, id)| {
            let mine: Vec<String> = errors
                .iter()
                .filter(|e| file_name(&e.file) == *name)
                .map(error_text)
                .collect();
            serde_json::json!({
                "file": name,
                "flow": id,
                "errors": mine,
                "in_force": id.as_deref().and_then(in_force),
            })
        })
        .collect();
    // Flows in force whose file is gone or no longer names them.
    for f in &flows.flows {
        if !files
            .iter()
            .any(|(_, id)| id.as_deref() == Some(f.id.as_str()))
        {
            rows.push(serde_json::json!({
                "file": null, "flow": f.id, "errors": [], "in_force": in_force(&f.id),
            }));
        }
    }
    let other: Vec<String> = errors
        .iter()
        .filter(|e| !files.iter().any(|(name, _)| file_name(&e.file) == *name))
        .map(error_text)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "valid": errors.is_empty(),
        "generation": shared.generation(),
        "reload_failures": shared.failures(),
        "files": rows,
        "errors": other,
    })))
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `GET /console/flows/{id}/diagram.svg`: the diagram of a flow in force.
pub async fn diagram(_: SignedIn, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    let Some(shared) = &state.flows else {
        return Err(ApiError::Off);
    };
    let flows = shared.current();
    let svg = flows
        .by_id
        .get(path.as_str())
        .and_then(|&i| diagram::svg(&flows, i))
        .ok_or_else(|| ApiError::not_found("no such flow"))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "image/svg+xml"))
        .insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'none'"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(svg))
}

/// A button or list row the simulated customer taps.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimChoice {
    id: String,
    title: String,
}

/// `POST /console/api/simulator`: one of `{"text": …}`, `{"choice":
/// {"id", "title"}}` or `{"reset": true, "name"?: …}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimInput {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    choice: Option<SimChoice>,
    #[serde(default)]
    reset: bool,
    #[serde(default)]
    name: Option<String>,
}

/// The longest text the simulator takes (WhatsApp's own limit).
const SIM_TEXT_MAX: usize = 4096;

/// `POST /console/api/simulator`: chats with the flows in force as a
/// customer would, through the real engine, in a throwaway conversation
/// kept with the console session: nothing is stored, sent or audited, and
/// no real contact is touched. Privacy commands are named, not run (in a
/// real chat whatsify answers them before the flows).
pub async fn simulate(
    signed: SignedIn,
    req: HttpRequest,
    payload: web::Payload,
    chosen: web::Query<Chosen>,
    state: web::Data<AppState>,
) -> Answer {
    use crate::domain::inbound::Input;
    use crate::domain::profile::ContactView;
    // One read of the session: it is checked and then carried on.
    let Some((id, mut held)) = session_of(&req, &state)
        .await
        .filter(|(_, s)| csrf_ok(&req, s))
    else {
        return Err(ApiError::SignInFirst);
    };
    let body = crate::http::body::of(&req, payload, &state, SIM_BODY_MAX).await?;
    // The chosen business's flows, else `flows.dir`'s.
    let shared = match (chosen.business(&state, &signed.caller)?, &state.flow_sets) {
        (Some(b), Some(sets)) => {
            let number = b.phone_number_ids.first().map_or("", String::as_str);
            sets.shared_for(number).clone()
        }
        _ => state.flows.clone().ok_or_else(no_flows)?,
    };
    let bad = |m: &str| Err(ApiError::bad_request(m));
    let input: SimInput = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => {
            return bad(&format!(
                "the body must be {{\"text\": \"...\"}}, {{\"choice\": {{\"id\": \"...\", \"title\": \"...\"}}}} or {{\"reset\": true, \"name\": \"...\"}}: {e}"
            ));
        }
    };
    if input.reset {
        let name = input
            .name
            .map(|n| n.trim().chars().take(64).collect::<String>())
            .filter(|n| !n.is_empty());
        held.sim = Some(Sim {
            session: None,
            contact: ContactView {
                name,
                tags: Default::default(),
            },
            offered: Vec::new(),
        });
        save(&state, &id, &held).await.map_err(ApiError::console)?;
        return Ok(HttpResponse::Ok().json(serde_json::json!({"effects": [], "at": null})));
    }
    let flows = shared.current();
    let (input, privacy) = match (input.text, input.choice) {
        (Some(t), None) => {
            if t.trim().is_empty() || t.chars().count() > SIM_TEXT_MAX {
                return bad("text must be 1 to 4096 characters");
            }
            let cmd = crate::privacy::keywords::classify(&t, &flows.privacy);
            (Input::Text(t), cmd)
        }
        (None, Some(c)) => {
            if c.id.is_empty() || c.id.len() > 256 || c.title.chars().count() > 256 {
                return bad("choice must have an id and a title of at most 256 characters");
            }
            let cmd = crate::privacy::keywords::classify_choice(&c.id, &c.title, &flows.privacy);
            (
                Input::Choice {
                    id: c.id,
                    title: c.title,
                },
                cmd,
            )
        }
        _ => return bad("send exactly one of text, choice or reset"),
    };
    if let Some(cmd) = privacy {
        return Ok(HttpResponse::Ok().json(serde_json::json!({
            "effects": [],
            "privacy_command": cmd.name(),
            "at": null,
        })));
    }
    let now = state.clock.now();
    let ttl = state.session_ttl;
    let sim = held.sim.take().unwrap_or(Sim {
        session: None,
        contact: ContactView::default(),
        offered: Vec::new(),
    });
    let mut conv = crate::flow::transcript::Conversation::new(&flows, sim.contact, ttl);
    conv.session = sim.session;
    conv.offered = sim.offered;
    conv.now = now;
    let effects = conv.input(&input);
    let at = conv
        .session
        .as_ref()
        .map(|s| serde_json::json!({"flow": s.flow, "step": s.step}));
    held.sim = Some(Sim {
        session: conv.session,
        contact: conv.contact,
        offered: conv.offered,
    });
    save(&state, &id, &held).await.map_err(ApiError::console)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "effects": effects, "at": at })))
}
