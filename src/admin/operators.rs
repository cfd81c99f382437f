//! Operators and their API tokens, over the admin API.
//!
//! - `GET /admin/operators` (owner): every operator: id, email, role,
//!   businesses, enrolled, disabled, created, last sign-in.
//! - `POST /admin/operators` (owner) `{"email", "role", "businesses": []}`:
//!   201 with the operator and their one-time enrolment link (24 h).
//! - `POST /admin/operators/{id}/disable`, `…/reset` (owner): their
//!   sessions and tokens end at once; a reset answers a new link.
//! - `GET /admin/tokens`, `POST /admin/tokens` `{"name", "days"}` (the
//!   token shown once), `DELETE /admin/tokens/{id}`: the caller's own API
//!   tokens (an owner may revoke anyone's).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::domain::BusinessId;
use crate::domain::operator::Role;
use crate::http::auth::{Operator, accounts};
use crate::http::error::{Answer, ApiError};
use crate::operators::{Account, OperatorError, tokens};
use crate::state::AppState;

const BODY_MAX: usize = 16 * 1024;

impl From<OperatorError> for ApiError {
    fn from(e: OperatorError) -> ApiError {
        match e {
            OperatorError::Invalid(m) => ApiError::bad_request(m),
            OperatorError::NoSuchOperator => ApiError::not_found("no such operator"),
            OperatorError::Store(e) => ApiError::Store(e),
        }
    }
}

/// What the API shows of an account (never its hashes or secret).
pub fn view(a: &Account) -> serde_json::Value {
    json!({
        "id": a.id,
        "email": a.email,
        "role": a.role.as_str(),
        "businesses": a.businesses,
        "enrolled": a.enrolled(),
        "disabled": a.disabled,
        "created": a.created,
        "last_sign_in": a.last_sign_in,
    })
}

/// The link an enrolment token opens: under `console.public_url` when
/// set, else the path on this server.
pub fn enrolment_link(base: Option<&str>, token: &str) -> String {
    let base = base.unwrap_or("").trim_end_matches('/');
    format!("{base}/console/enrol/{token}")
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body must be {shape}: {e}")))
}

/// `GET /admin/operators`.
pub async fn list(_: Operator, state: web::Data<AppState>) -> Answer {
    let all = accounts(&state).all().await?;
    Ok(HttpResponse::Ok().json(json!({ "operators": all.iter().map(view).collect::<Vec<_>>() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOperator {
    email: String,
    role: String,
    #[serde(default)]
    businesses: Vec<String>,
}

/// Checks the role and businesses of a new operator against the settings.
pub fn role_and_businesses(
    state: &AppState,
    role: &str,
    businesses: &[String],
) -> Result<(Role, Vec<BusinessId>), ApiError> {
    let role = Role::parse(role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "role must be one of owner, admin, agent, auditor, not \"{role}\""
        ))
    })?;
    let mut ids = Vec::new();
    for b in businesses {
        let id = state
            .businesses
            .get(b)
            .map(|b| b.id.clone())
            .ok_or_else(|| ApiError::bad_request(format!("no business has the id \"{b}\"")))?;
        ids.push(id);
    }
    Ok((role, ids))
}

/// `POST /admin/operators`.
pub async fn add(
    op: Operator,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let body = crate::http::body::of(&req, payload, &state, BODY_MAX).await?;
    let new: NewOperator = parse(
        &body,
        r#"{"email": "...", "role": "agent", "businesses": ["..."]}"#,
    )?;
    let (role, businesses) = role_and_businesses(&state, &new.role, &new.businesses)?;
    let by = op.caller.audit_name();
    let (account, token) = accounts(&state)
        .add(&new.email, role, businesses, &by)
        .await?;
    Ok(HttpResponse::Created().json(json!({
        "operator": view(&account),
        "enrolment_url": enrolment_link(state.public_url.as_deref(), &token),
        "enrolment_expires_in_seconds": crate::operators::ENROLMENT_LIFE,
    })))
}

async fn account_by_id(state: &AppState, id: &str) -> Result<Account, ApiError> {
    accounts(state)
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such operator"))
}

/// `POST /admin/operators/{id}/disable`.
pub async fn disable(op: Operator, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    let account = account_by_id(&state, &path).await?;
    if op.caller.operator_id() == Some(account.id.as_str()) {
        return Err(ApiError::Refused(
            StatusCode::CONFLICT,
            "you cannot disable yourself".into(),
        ));
    }
    let by = op.caller.audit_name();
    let account = accounts(&state).disable(&account.email, &by).await?;
    Ok(HttpResponse::Ok().json(json!({ "operator": view(&account) })))
}

/// `POST /admin/operators/{id}/reset`.
pub async fn reset(op: Operator, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    let account = account_by_id(&state, &path).await?;
    let by = op.caller.audit_name();
    let (account, token) = accounts(&state).reset(&account.email, &by).await?;
    Ok(HttpResponse::Ok().json(json!({
        "operator": view(&account),
        "enrolment_url": enrolment_link(state.public_url.as_deref(), &token),
    })))
}

/// The operator a token route acts for: root has no account of its own.
async fn me(state: &AppState, op: &Operator) -> Result<Account, ApiError> {
    let Some(id) = op.caller.operator_id() else {
        return Err(ApiError::Refused(
            StatusCode::CONFLICT,
            "the admin token has no API tokens of its own: sign in as an operator".into(),
        ));
    };
    account_by_id(state, id).await
}

/// `GET /admin/tokens`: the caller's tokens.
pub async fn my_tokens(op: Operator, state: web::Data<AppState>) -> Answer {
    let me = me(&state, &op).await?;
    let list: Vec<serde_json::Value> = tokens::all(&accounts(&state))
        .await?
        .iter()
        .filter(|t| t.operator == me.id)
        .map(tokens::Token::view)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "tokens": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    #[serde(default = "a_year")]
    days: u64,
}

fn a_year() -> u64 {
    tokens::MAX_DAYS
}

/// `POST /admin/tokens`: a new token, shown once.
pub async fn create_token(
    op: Operator,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let me = me(&state, &op).await?;
    let body = crate::http::body::of(&req, payload, &state, BODY_MAX).await?;
    let new: NewToken = parse(&body, r#"{"name": "...", "days": 90}"#)?;
    let (token, secret) = tokens::create(&accounts(&state), &me, &new.name, new.days).await?;
    let mut shown = token.view();
    shown["token"] = json!(secret);
    Ok(HttpResponse::Created().json(shown))
}

/// `DELETE /admin/tokens/{id}`: revokes one of the caller's tokens (an
/// owner: anyone's).
pub async fn revoke_token(
    op: Operator,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Answer {
    let accounts = accounts(&state);
    let id = path.into_inner();
    let token = tokens::all(&accounts)
        .await?
        .into_iter()
        .find(|t| t.id == id);
    let mine = |t: &tokens::Token| {
        op.caller.role == Role::Owner || op.caller.operator_id() == Some(t.operator.as_str())
    };
    let Some(token) = token.filter(mine) else {
        return Err(ApiError::not_found("no such token"));
    };
    tokens::revoke(&accounts, &token, &op.caller.audit_name()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/operators")
            .route(web::get().to(list))
            .route(web::post().to(add)),
    )
    .route("/admin/operators/{id}/disable", web::post().to(disable))
    .route("/admin/operators/{id}/reset", web::post().to(reset))
    .service(
        web::resource("/admin/tokens")
            .route(web::get().to(my_tokens))
            .route(web::post().to(create_token)),
    )
    .route("/admin/tokens/{id}", web::delete().to(revoke_token));
}
