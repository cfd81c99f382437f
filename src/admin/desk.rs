//! The privacy desk: requests that reached the support team by email,
//! phone or letter, logged and carried out through the admin API (see
//! [`crate::domain::desk`] for the rules and `docs/privacy.md`).
//!
//! - `POST /admin/desk` (an admin): logs a request `{kind, contact,
//!   channel, reference, received}`; 201 with it.
//! - `GET /admin/desk`, `GET /admin/desk/{id}` (an admin or an auditor):
//!   the business's requests, with their deadline and state. They hold no
//!   personal data: the contact's pseudonymous key and the reference.
//! - `POST /admin/desk/{id}/export|rectify|erase|object|restrict|close`
//!   (an admin): carrying it out ([`super::desk_acts`]).
//!
//! Each under `/admin/businesses/{business}` too. Every act is audited
//! with the request's reference.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::BODY_MAX;
use super::desk_acts;
use crate::domain::BusinessId;
use crate::domain::desk::DeskRequest;
use crate::http::auth::{Operator, business_of};
use crate::http::error::{Answer, ApiError};
use crate::privacy::desk::Desk;
use crate::state::AppState;

/// The desk's routes, unprefixed (the one business served) and under
/// `/admin/businesses/{business}`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    for prefix in ["/admin", "/admin/businesses/{business}"] {
        cfg.service(
            web::resource(format!("{prefix}/desk"))
                .route(web::post().to(log))
                .route(web::get().to(list)),
        )
        .route(&format!("{prefix}/desk/{{id}}"), web::get().to(show))
        .route(
            &format!("{prefix}/desk/{{id}}/export"),
            web::post().to(desk_acts::export),
        )
        .route(
            &format!("{prefix}/desk/{{id}}/rectify"),
            web::post().to(desk_acts::rectify),
        )
        .route(
            &format!("{prefix}/desk/{{id}}/erase"),
            web::post().to(desk_acts::erase),
        )
        .route(
            &format!("{prefix}/desk/{{id}}/object"),
            web::post().to(desk_acts::object),
        )
        .route(
            &format!("{prefix}/desk/{{id}}/restrict"),
            web::post().to(desk_acts::restrict),
        )
        .route(
            &format!("{prefix}/desk/{{id}}/close"),
            web::post().to(desk_acts::close),
        );
    }
}

/// The desk over the state's store, keys and audit chain.
pub(super) fn desk(state: &AppState) -> Desk<'_> {
    Desk {
        store: state.store.as_ref(),
        keyring: &state.keyring,
        audit: &state.audit,
    }
}

/// The legal deadline of `business`'s requests, in days.
pub fn deadline_days(state: &AppState, business: &BusinessId) -> u32 {
    state.businesses.deadline_days(business)
}

pub use crate::privacy::desk::view;

/// The body of `POST /admin/desk`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LogBody {
    #[serde(default)]
    kind: String,
    /// The customer's wa_id or business-scoped user id.
    #[serde(default)]
    contact: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    received: String,
}

/// `POST /admin/desk`: logs a request that reached the support team.
pub async fn log(
    op: Operator,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let business = business_of(&req, &state)?;
    let shape = "{\"kind\", \"contact\", \"channel\", \"reference\", \"received\": \"YYYY-MM-DD\"}";
    let body: LogBody = crate::http::body::json(&req, payload, &state, (BODY_MAX, shape)).await?;
    let contact = crate::http::auth::contact_of(body.contact.trim(), &business, &state)
        .ok_or_else(|| {
            ApiError::bad_request(
                "contact must be the customer's WhatsApp number in digits (wa_id) or their business-scoped user id",
            )
        })?;
    let contact = crate::store::links::canonical(state.store.as_ref(), contact).await?;
    let draft = crate::domain::desk::Draft {
        kind: &body.kind,
        channel: &body.channel,
        reference: &body.reference,
        received: &body.received,
    };
    let now = state.clock.now();
    let by = op.caller.audit_name();
    let id = crate::privacy::desk::new_id();
    let days = deadline_days(&state, &business);
    let r = crate::domain::desk::log(&draft, (&id, contact.as_str()), days, (now, &by))
        .map_err(ApiError::BadRequest)?;
    desk(&state).add(&business, &r).await?;
    let what = format!(
        "{} by {}, received {}, due {}",
        r.kind.as_str(),
        r.channel.as_str(),
        r.received,
        r.deadline
    );
    let audit = ("desk_request_logged", what.as_str());
    desk(&state).audit(&business, &r, audit, (now, &by)).await;
    tracing::info!(contact = %contact, kind = r.kind.as_str(), "desk: request logged");
    Ok(HttpResponse::Created().json(view(&r, now)))
}

/// `GET /admin/desk`: the business's requests, the open ones first
/// (oldest received on top), with the deadline in force.
pub async fn list(_op: Operator, req: HttpRequest, state: web::Data<AppState>) -> Answer {
    let business = business_of(&req, &state)?;
    let now = state.clock.now();
    let mut list = desk(&state).list(&business).await?;
    list.sort_by_key(|r| !r.state.is_open());
    Ok(HttpResponse::Ok().json(json!({
        "business": business.as_str(),
        "deadline_days": deadline_days(&state, &business),
        "requests": list.iter().map(|r| view(r, now)).collect::<Vec<_>>(),
    })))
}

/// The request `{id}` of the business (404 when it has none).
pub(super) async fn find(
    state: &AppState,
    business: &BusinessId,
    id: &str,
) -> Result<DeskRequest, ApiError> {
    desk(state)
        .get(business, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such desk request for this business"))
}

/// `GET /admin/desk/{id}`: one request with its history.
pub async fn show(_op: Operator, req: HttpRequest, state: web::Data<AppState>) -> Answer {
    let business = business_of(&req, &state)?;
    let id = req.match_info().get("id").unwrap_or_default().to_owned();
    let r = find(&state, &business, &id).await?;
    Ok(HttpResponse::Ok().json(view(&r, state.clock.now())))
}

/// The 409 of an act on a request already closed.
pub(super) fn closed() -> ApiError {
    ApiError::Refused(
        StatusCode::CONFLICT,
        "this request is closed; log a new one if the customer asks again".into(),
    )
}
