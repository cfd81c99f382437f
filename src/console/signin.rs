//! Signing in and out of the console, and enrolling.
//!
//! - `GET /console/sign-in`, `POST /console/sign-in`: an operator's email,
//!   password and the current code of their authenticator (form fields
//!   `email`, `password`, `code`); or, as break-glass, the admin token
//!   (field `token`: the session acts as the owner, audited as `root`).
//!   Failures are slowed down and then refused for a while, per address
//!   (this instance) and per account (every instance): 429 with
//!   `Retry-After`.
//! - `POST /console/sign-out` (with the CSRF token).
//! - `GET /console/enrol/{token}`, `POST /console/enrol/{token}`: the
//!   one-time link an owner's `operator add` or `reset` printed: choose a
//!   password and enrol an authenticator (its key as a QR code drawn by
//!   the server).

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{SESSION_LIFE, html_escape, page, tls};
use crate::http::auth::accounts;
use crate::http::error::{Answer, ApiError};
use crate::http::session::{
    COOKIE, Session, allows, credential_id, random_id, same, save, store_key,
};
use crate::operators::signin::Refusal;
use crate::state::AppState;

/// Most bytes of a sign-in or enrolment form.
const FORM_MAX: usize = 4 * 1024;

const SIGN_IN_HTML: &str = include_str!("assets/sign-in.html");
const ENROL_HTML: &str = include_str!("assets/enrol.html");

pub(super) fn sign_in_page(message: &str) -> HttpResponse {
    page(SIGN_IN_HTML.replace("{{message}}", &html_escape(message)))
}

fn with_status(mut answer: HttpResponse, status: StatusCode) -> HttpResponse {
    *answer.status_mut() = status;
    answer
}

fn too_many(message: &str, wait_secs: u64) -> HttpResponse {
    let mut answer = with_status(sign_in_page(message), StatusCode::TOO_MANY_REQUESTS);
    answer.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(wait_secs.max(1)),
    );
    answer
}

/// Whether the console exists: an admin token or an operator.
pub(super) async fn console_on(state: &AppState) -> Result<bool, ApiError> {
    if state.admin_token.get().is_some() {
        return Ok(true);
    }
    Ok(!state
        .store
        .docs(crate::operators::ACCOUNTS)
        .await?
        .is_empty())
}

/// `GET /console/sign-in`.
pub async fn sign_in_form(state: web::Data<AppState>) -> Answer {
    if !console_on(&state).await? {
        return Err(ApiError::Off);
    }
    Ok(sign_in_page(""))
}

#[derive(Deserialize)]
pub struct SignIn {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

/// A form posted from another site is refused (login CSRF).
fn cross_site(req: &HttpRequest) -> bool {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return false;
    };
    let info = req.connection_info();
    origin != format!("{}://{}", info.scheme(), info.host())
}

async fn form<T: for<'de> Deserialize<'de>>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Option<T>, ApiError> {
    let body = crate::http::body::of(req, payload, state, FORM_MAX).await?;
    Ok(std::str::from_utf8(&body)
        .ok()
        .and_then(|text| web::Query::<T>::from_query(text).ok())
        .map(web::Query::into_inner))
}

/// `POST /console/sign-in`: an operator's credentials, or the admin token,
/// start a session.
pub async fn sign_in(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    if !console_on(&state).await? {
        return Err(ApiError::Off);
    }
    let Some(form) = form::<SignIn>(&req, payload, &state).await? else {
        return Ok(HttpResponse::BadRequest().body(
            "The form must carry email, password and code, or the token (application/x-www-form-urlencoded).",
        ));
    };
    if cross_site(&req) {
        return Ok(HttpResponse::Forbidden().body("cross-site sign-in refused"));
    }
    let addr = crate::http::throttle::client(&req);
    if let Err(wait) = state.throttle.check(addr) {
        let secs = crate::http::error::retry_after(wait).parse().unwrap_or(60);
        return Ok(too_many(
            &format!("Too many failed sign-ins from here. Try again in {secs} seconds."),
            secs,
        ));
    }
    let session = match &form.token {
        Some(token) => root_session(&req, &state, token).await,
        None => operator_session(&req, &state, &form).await,
    };
    let session = match session {
        Ok(s) => s,
        Err(answer) => return Ok(answer),
    };
    state.throttle.succeeded(addr);
    start(&req, &state, &session).await
}

/// The admin token's session (root), or the answer refusing it.
async fn root_session(
    req: &HttpRequest,
    state: &AppState,
    token: &str,
) -> Result<Session, HttpResponse> {
    let right = state.admin_token.get();
    match right {
        Some(right) if same(token, right.expose_secret()) => {
            Ok(new_session(credential_id(Some(&right)), None, 0))
        }
        _ => {
            crate::http::throttle::refused(req, state, "sign-in").await;
            // The break-glass form stays open to try again.
            let page = SIGN_IN_HTML
                .replace("{{message}}", "That token is not the admin token.")
                .replace("<details>", "<details open>");
            Err(super::page(page))
        }
    }
}

/// An operator's session, or the answer refusing it.
async fn operator_session(
    req: &HttpRequest,
    state: &AppState,
    form: &SignIn,
) -> Result<Session, HttpResponse> {
    let (email, password, code) = (
        form.email.as_deref().unwrap_or(""),
        form.password.as_deref().unwrap_or(""),
        form.code.as_deref().unwrap_or(""),
    );
    match crate::operators::signin::sign_in(&accounts(state), email, password, code).await {
        Ok(account) => Ok(new_session(
            String::new(),
            Some(account.id),
            account.generation,
        )),
        Err(Refusal::Wrong) => {
            crate::http::throttle::refused(req, state, "sign-in").await;
            Err(with_status(
                sign_in_page("Wrong email, password or code."),
                StatusCode::UNAUTHORIZED,
            ))
        }
        Err(Refusal::Wait(secs, locked)) => Err(too_many(
            &if locked {
                format!(
                    "This account is locked after too many failed sign-ins. Try again in {} minutes.",
                    secs.div_ceil(60)
                )
            } else {
                format!("Too many failed sign-ins for this account. Try again in {secs} seconds.")
            },
            secs,
        )),
        Err(Refusal::Store(e)) => {
            tracing::error!(error = %e, "console: sign-in not checked");
            Err(with_status(
                sign_in_page("The store is unavailable; try signing in again in a moment."),
                StatusCode::SERVICE_UNAVAILABLE,
            ))
        }
    }
}

fn new_session(credential: String, operator: Option<String>, generation: u64) -> Session {
    Session {
        expires: crate::clock::now_secs() + SESSION_LIFE.as_secs(),
        csrf: random_id(),
        credential,
        operator,
        generation,
        sim: None,
    }
}

/// Stores the session and answers with its cookie, to the overview.
async fn start(req: &HttpRequest, state: &AppState, session: &Session) -> Answer {
    let id = random_id();
    if let Err(e) = save(state, &id, session).await {
        tracing::error!(error = %e, "console: session not stored");
        return Ok(HttpResponse::ServiceUnavailable()
            .body("The store is unavailable; try signing in again in a moment."));
    }
    let cookie = Cookie::build(COOKIE, id)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.secure_cookie || tls(req))
        .max_age(actix_web::cookie::time::Duration::seconds(
            SESSION_LIFE.as_secs() as i64,
        ))
        .finish();
    tracing::info!(
        operator = session.operator.as_deref().unwrap_or("root"),
        "console: signed in"
    );
    Ok(HttpResponse::SeeOther()
        .cookie(cookie)
        .insert_header((header::LOCATION, "/console"))
        .finish())
}

/// `POST /console/sign-out` (with the CSRF token).
pub async fn sign_out(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !allows(&req, &state).await {
        return HttpResponse::Unauthorized().finish();
    }
    if let Some(id) = req.cookie(COOKIE)
        && let Err(e) = state
            .store
            .end_console_session(&store_key(id.value()))
            .await
    {
        tracing::error!(error = %e, "console: session not ended");
        return HttpResponse::ServiceUnavailable().finish();
    }
    let mut gone = Cookie::build(COOKIE, "").path("/").finish();
    gone.make_removal();
    HttpResponse::NoContent().cookie(gone).finish()
}

/// The enrolment page of a live link, with `message`.
async fn enrol_page(state: &AppState, token: &str, message: &str, status: StatusCode) -> Answer {
    let Some((enrolment, account)) = accounts(state).enrolment(token).await? else {
        return Ok(with_status(
            page(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Enrol · whatsify console</title>\
                 <link rel=\"stylesheet\" href=\"/console/style.css\"></head><body class=\"sign-in\"><main>\
                 <h1>This link does not work</h1><p>Enrolment links work once, for 24 hours. Ask an owner for a new one.</p>\
                 </main></body></html>"
                    .to_owned(),
            ),
            StatusCode::NOT_FOUND,
        ));
    };
    let link = crate::operators::totp::link(&enrolment.secret, &account.email);
    let qr =
        base64::engine::general_purpose::STANDARD.encode(crate::operators::totp::qr_svg(&link));
    let html = ENROL_HTML
        .replace("{{email}}", &html_escape(&account.email))
        .replace("{{role}}", account.role.as_str())
        .replace("{{message}}", &html_escape(message))
        .replace("{{token}}", &html_escape(token))
        .replace("{{qr}}", &qr)
        .replace("{{secret}}", &enrolment.secret);
    // The link's token never leaves this site: `page` answers with
    // `Referrer-Policy: same-origin`.
    Ok(with_status(page(html), status))
}

/// `GET /console/enrol/{token}`.
pub async fn enrol_form(path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    enrol_page(&state, &path, "", StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct Enrol {
    password: String,
    #[serde(default)]
    password2: Option<String>,
    code: String,
}

/// `POST /console/enrol/{token}`: the password and the first code; then
/// the operator signs in.
pub async fn enrol(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let token = path.into_inner();
    if cross_site(&req) {
        return Ok(HttpResponse::Forbidden().body("cross-site enrolment refused"));
    }
    let Some(form) = form::<Enrol>(&req, payload, &state).await? else {
        return enrol_page(
            &state,
            &token,
            "Fill in the password twice and the code.",
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    if form
        .password2
        .as_deref()
        .is_some_and(|p| p != form.password)
    {
        return enrol_page(
            &state,
            &token,
            "The two passwords differ.",
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    match accounts(&state)
        .enrol(&token, &form.password, &form.code)
        .await
    {
        Ok(_) => Ok(with_status(
            sign_in_page("You are enrolled. Sign in with your email, password and a new code."),
            StatusCode::OK,
        )),
        Err(crate::operators::OperatorError::Invalid(m)) => {
            enrol_page(&state, &token, &m, StatusCode::BAD_REQUEST).await
        }
        Err(e) => Err(e.into()),
    }
}
