//! Carrying out a privacy desk request (an admin): each act fits one kind
//! of request, is refused on a closed one (409), is noted in the
//! request's history and audited with its reference.
//!
//! - `export` `{deliver: "download"|"whatsapp"}` (access): the copy MY
//!   DATA gives, downloaded (the JSON) or sent to the customer as a
//!   document — only inside the 24-hour window (409 outside it).
//! - `rectify` `{name?, tags?}` (rectification): corrects the profile,
//!   in order with the customer's messages (202).
//! - `erase` (erasure): the support team's erasure
//!   ([`super::erase_for_support`]); the request waits when a legal hold
//!   stops it.
//! - `object` (objection), `restrict` (restriction): the marketing
//!   consent withdrawn, so no campaign reaches the customer.
//! - `close` `{outcome: "done" | "refused: <reason>"}`: any request.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::BODY_MAX;
use super::desk::{closed, desk, find, view};
use crate::domain::desk::{DeskRequest, Kind, State};
use crate::domain::inbound::AgentAction;
use crate::domain::{BusinessId, ContactKey};
use crate::http::auth::{Operator, business_of};
use crate::http::error::{Answer, ApiError};
use crate::state::AppState;

/// The open request `{id}` of the business the route is about.
async fn pending(
    state: &AppState,
    req: &HttpRequest,
) -> Result<(BusinessId, DeskRequest), ApiError> {
    let business = business_of(req, state)?;
    let id = req.match_info().get("id").unwrap_or_default();
    let r = find(state, &business, id).await?;
    if !r.state.is_open() {
        return Err(closed());
    }
    Ok((business, r))
}

/// The open request `{id}`, of `kind`, about a contact something is kept
/// about (404 otherwise).
async fn to_carry_out(
    state: &AppState,
    req: &HttpRequest,
    kind: Kind,
) -> Result<(BusinessId, DeskRequest, ContactKey), ApiError> {
    let (business, r) = pending(state, req).await?;
    if r.kind != kind {
        return Err(ApiError::Refused(
            StatusCode::CONFLICT,
            format!(
                "this is a request of kind {}, not {}: carry out what the customer asked for, or close it",
                r.kind.as_str(),
                kind.as_str()
            ),
        ));
    }
    let contact = ContactKey::parse(&r.contact).ok_or_else(|| {
        ApiError::from(crate::store::StoreError::Corrupt(
            "a desk request names no contact".into(),
        ))
    })?;
    super::known(state, &contact).await.map_err(|_| {
        ApiError::not_found(
            "nothing is kept about this contact (erased already?): close the request with its outcome",
        )
    })?;
    Ok((business, r, contact))
}

/// Notes `what` in the request's history (and its new state, if any) and
/// audits it as `audit`. 409 when it was closed meanwhile.
async fn acted(
    state: &AppState,
    (business, r): (&BusinessId, &DeskRequest),
    (audit, what): (&str, &str),
    new_state: Option<State>,
    op: &Operator,
) -> Result<DeskRequest, ApiError> {
    let now = state.clock.now();
    let by = op.caller.audit_name();
    let changed = desk(state)
        .update(business, &r.id, |r| {
            if !r.state.is_open() {
                return Err(closed());
            }
            r.act(now, &by, what);
            if let Some(s) = new_state {
                r.state = s;
            }
            Ok(())
        })
        .await?;
    let r =
        changed.ok_or_else(|| ApiError::not_found("no such desk request for this business"))??;
    desk(state)
        .audit(business, &r, (audit, what), (now, &by))
        .await;
    Ok(r)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportBody {
    deliver: String,
}

/// `POST /admin/desk/{id}/export`: the customer's copy of their data,
/// downloaded or sent to them on WhatsApp.
pub async fn export(
    op: Operator,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let shape = "{\"deliver\": \"download\" | \"whatsapp\"}";
    let body: ExportBody =
        crate::http::body::json(&req, payload, &state, (BODY_MAX, shape)).await?;
    if !matches!(body.deliver.as_str(), "download" | "whatsapp") {
        return Err(ApiError::bad_request(format!("the body must be {shape}")));
    }
    let (business, r, contact) = to_carry_out(&state, &req, Kind::Access).await?;
    if body.deliver == "whatsapp" {
        let windows = state.store.windows(&contact).await?;
        let last = windows.iter().map(|(_, at)| *at).max();
        if last.is_none_or(|at| at + crate::domain::waiting::WINDOW_SECS <= state.clock.now()) {
            return Err(ApiError::Refused(
                StatusCode::CONFLICT,
                "the customer has not written in the last 24 hours, and WhatsApp allows no document outside that window: download the export and send it to them another way".into(),
            ));
        }
        let message = crate::domain::outbound::Message::Export;
        super::agent::queue_agent_event(&state, &contact, AgentAction::Message { message }).await?;
        let what = "export sent to the customer on WhatsApp";
        let r = acted(&state, (&business, &r), ("desk_export", what), None, &op).await?;
        tracing::info!(contact = %contact, "desk: export queued for the customer");
        let now = state.clock.now();
        return Ok(
            HttpResponse::Accepted().json(json!({ "queued": true, "request": view(&r, now) }))
        );
    }
    let profile = super::open_profile(&state, &contact)
        .await?
        .unwrap_or_default();
    let id = profile
        .wa_id
        .or(profile.user_id)
        .unwrap_or_else(|| contact.as_str().to_owned());
    super::admin_access(&state, &contact, &business, "export", &op.caller).await;
    let doc = super::contacts::export_of(&state, (&business, &contact), &id).await?;
    let what = "export downloaded by the support team";
    acted(&state, (&business, &r), ("desk_export", what), None, &op).await?;
    tracing::info!(contact = %contact, "desk: export downloaded");
    Ok(HttpResponse::Ok().json(doc))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RectifyBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The longest name, tag and list of tags accepted.
const NAME_MAX: usize = 100;
const TAG_MAX: usize = 50;
const TAGS_MAX: usize = 50;

/// Checks a rectification: the fields it changes, or what to fix.
fn rectification(
    body: RectifyBody,
) -> Result<(Option<String>, Option<std::collections::BTreeSet<String>>), String> {
    let name = body.name.map(|n| n.trim().to_owned());
    if name.as_ref().is_some_and(|n| {
        n.is_empty() || n.chars().count() > NAME_MAX || n.chars().any(char::is_control)
    }) {
        return Err(format!("name must be 1 to {NAME_MAX} printable characters"));
    }
    let tags = match body.tags {
        None => None,
        Some(list) => {
            let bad = |t: &String| {
                t.is_empty() || t.chars().count() > TAG_MAX || t.chars().any(char::is_whitespace)
            };
            if list.len() > TAGS_MAX || list.iter().any(bad) {
                return Err(format!(
                    "tags must be at most {TAGS_MAX} words of 1 to {TAG_MAX} characters, without spaces"
                ));
            }
            Some(list.into_iter().collect())
        }
    };
    if name.is_none() && tags.is_none() {
        return Err("give what to correct: name and/or tags".into());
    }
    Ok((name, tags))
}

/// `POST /admin/desk/{id}/rectify`: corrects the profile's name and tags.
pub async fn rectify(
    op: Operator,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let shape = "{\"name\": \"...\", \"tags\": [\"...\"]} (either or both)";
    let body: RectifyBody =
        crate::http::body::json(&req, payload, &state, (BODY_MAX, shape)).await?;
    let (name, tags) = rectification(body).map_err(ApiError::BadRequest)?;
    let (business, r, contact) = to_carry_out(&state, &req, Kind::Rectification).await?;
    // Field names only: the values are the customer's.
    let fields: Vec<&str> = [name.as_ref().map(|_| "name"), tags.as_ref().map(|_| "tags")]
        .into_iter()
        .flatten()
        .collect();
    let action = AgentAction::Rectify { name, tags };
    super::agent::queue_agent_event(&state, &contact, action).await?;
    let what = format!("rectified {}", fields.join(" and "));
    let r = acted(
        &state,
        (&business, &r),
        ("desk_rectified", &what),
        None,
        &op,
    )
    .await?;
    tracing::info!(contact = %contact, "desk: rectification queued");
    let now = state.clock.now();
    Ok(HttpResponse::Accepted().json(json!({ "queued": true, "request": view(&r, now) })))
}

/// `POST /admin/desk/{id}/erase`: erases the contact (the request waits
/// when a legal hold stops the erasure).
pub async fn erase(op: Operator, req: HttpRequest, state: web::Data<AppState>) -> Answer {
    let (business, r, contact) = to_carry_out(&state, &req, Kind::Erasure).await?;
    let reference = Some(r.reference.as_str());
    let outcome = super::erase_for_support(&state, &contact, &business, &op.caller, reference);
    let r = if outcome.await? == super::Erasure::Done {
        let what = "contact erased";
        acted(&state, (&business, &r), ("desk_erased", what), None, &op).await?
    } else {
        let what = "erasure waiting on a legal hold";
        let held = Some(State::Held);
        acted(
            &state,
            (&business, &r),
            ("desk_erasure_held", what),
            held,
            &op,
        )
        .await?
    };
    let now = state.clock.now();
    Ok(HttpResponse::Ok()
        .json(json!({ "erased": r.state != State::Held, "request": view(&r, now) })))
}

/// After a legal hold on `contact` was lifted and their data erased:
/// the desk's erasure requests that waited on it are open again, their
/// history saying the contact is erased, for the admin to close.
pub(super) async fn hold_lifted(
    state: &AppState,
    (business, contact): (&BusinessId, &ContactKey),
    by: &str,
) -> Result<(), crate::store::StoreError> {
    let now = state.clock.now();
    let what = "contact erased when the legal hold was lifted";
    let waiting = desk(state).list(business).await?.into_iter().filter(|r| {
        r.state == State::Held && r.kind == Kind::Erasure && r.contact == contact.as_str()
    });
    for r in waiting {
        let changed = desk(state)
            .update(business, &r.id, |r| {
                if r.state != State::Held {
                    return Err(());
                }
                r.act(now, by, what);
                r.state = State::Open;
                Ok(())
            })
            .await?;
        if let Some(Ok(r)) = changed {
            desk(state)
                .audit(business, &r, ("desk_erased", what), (now, by))
                .await;
        }
    }
    Ok(())
}

/// The marketing consent withdrawn at the desk, audited as `audit`.
async fn withdraw(
    op: Operator,
    req: HttpRequest,
    state: web::Data<AppState>,
    (kind, audit, what): (Kind, &str, &str),
) -> Answer {
    let (business, r, contact) = to_carry_out(&state, &req, kind).await?;
    let reference = format!("desk {}", r.reference);
    let caller = &op.caller;
    super::consent::record(&state, (&contact, &business, caller), false, &reference).await?;
    let r = acted(&state, (&business, &r), (audit, what), None, &op).await?;
    let now = state.clock.now();
    Ok(HttpResponse::Ok().json(json!({ "marketing": false, "request": view(&r, now) })))
}

/// `POST /admin/desk/{id}/object`: the customer objects to direct
/// marketing (GDPR Art. 21): their marketing consent is withdrawn.
pub async fn object(op: Operator, req: HttpRequest, state: web::Data<AppState>) -> Answer {
    let what = ("marketing consent withdrawn (objection)", Kind::Objection);
    withdraw(op, req, state, (what.1, "desk_objection", what.0)).await
}

/// `POST /admin/desk/{id}/restrict`: the customer asks to restrict the
/// processing of their data (GDPR Art. 18): no campaign reaches them.
pub async fn restrict(op: Operator, req: HttpRequest, state: web::Data<AppState>) -> Answer {
    let what = "processing restricted: marketing consent withdrawn, no campaign reaches them";
    withdraw(
        op,
        req,
        state,
        (Kind::Restriction, "desk_restriction", what),
    )
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    outcome: String,
}

/// `POST /admin/desk/{id}/close`: closes a request with its outcome.
pub async fn close(
    op: Operator,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let shape = "{\"outcome\": \"done\" | \"refused: <the reason>\"}";
    let body: CloseBody = crate::http::body::json(&req, payload, &state, (BODY_MAX, shape)).await?;
    let (new_state, outcome) =
        crate::domain::desk::outcome(&body.outcome).map_err(ApiError::BadRequest)?;
    let (business, r) = pending(&state, &req).await?;
    let now = state.clock.now();
    let by = op.caller.audit_name();
    let changed = desk(&state)
        .update(&business, &r.id, |r| {
            if !r.state.is_open() {
                return Err(closed());
            }
            r.close(new_state, outcome.clone(), (now, &by));
            Ok(())
        })
        .await?;
    let r =
        changed.ok_or_else(|| ApiError::not_found("no such desk request for this business"))??;
    // The state only: a refusal's reason is free text.
    let what = format!("closed: {}", new_state.as_str());
    desk(&state)
        .audit(&business, &r, ("desk_closed", &what), (now, &by))
        .await;
    Ok(HttpResponse::Ok().json(view(&r, now)))
}
