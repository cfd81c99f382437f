//! Legal holds and disclosures to authorities, for one contact (under
//! `/admin/contacts/{id}` and `/admin/businesses/{business}/contacts/{id}`):
//!
//! - `POST …/hold` `{reason, reference}`: places a hold (201; 409 when
//!   one is there). The contact's data is kept whatever its age, and an
//!   erasure asked meanwhile waits.
//! - `GET …/hold`: the hold and the erasures waiting for its end (404
//!   when the contact is not held).
//! - `DELETE …/hold`: lifts it and carries out the waiting erasures.
//! - `POST …/disclosures` `{what, to, legal_basis, date, secret_until?}`:
//!   records a disclosure (201 with the record).
//! - `GET …/disclosures`: the contact's disclosures, oldest first.
//!
//! Every change is audited (see [`crate::privacy::hold`]).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{BODY_MAX, admin_access, known};
use crate::domain::hold::{DisclosureRequest, HoldRequest};
use crate::http::auth::ContactPath;
use crate::http::error::{Answer, ApiError};
use crate::privacy::hold::{self as holds, Ctx};
use crate::state::AppState;

/// The routes of one contact's hold and disclosures (see
/// [`super::contact_routes`]).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/{id}/hold", web::post().to(place))
        .route("/{id}/hold", web::get().to(show))
        .route("/{id}/hold", web::delete().to(lift))
        .route("/{id}/disclosures", web::post().to(disclose))
        .route("/{id}/disclosures", web::get().to(list));
}

/// The store, master keys and audit chain of the application.
pub(super) fn ctx(state: &AppState) -> Ctx<'_> {
    Ctx {
        store: state.store.as_ref(),
        keyring: &state.keyring,
        audit: &state.audit,
    }
}

/// `POST …/hold`: places a legal hold on the contact.
pub async fn place(
    ContactPath(contact, business, caller): ContactPath,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let shape = "{\"reason\": \"...\", \"reference\": \"...\"}";
    let asked: HoldRequest =
        crate::http::body::json(&req, payload, &state, (BODY_MAX, shape)).await?;
    let hold = asked.hold(crate::clock::now_secs(), &caller.audit_name())?;
    known(&state, &contact).await?;
    match holds::place(ctx(&state), (&business, &contact), hold.clone()).await? {
        Ok(()) => Ok(HttpResponse::Created().json(json!({
            "contact": contact.as_str(),
            "hold": hold,
        }))),
        Err(there) => Err(ApiError::Refused(
            StatusCode::CONFLICT,
            format!(
                "the contact is already under a legal hold (reference {}, since {}); lift it first to place another",
                there.reference, there.since
            ),
        )),
    }
}

/// `GET …/hold`: the hold and the erasures waiting for its end.
pub async fn show(
    ContactPath(contact, business, caller): ContactPath,
    state: web::Data<AppState>,
) -> Answer {
    let store = state.store.as_ref();
    let Some(hold) = holds::hold_of(store, &state.keyring, (&business, &contact)).await? else {
        return Err(ApiError::not_found("the contact is not under a legal hold"));
    };
    admin_access(&state, &contact, &business, "legal hold", &caller).await;
    Ok(HttpResponse::Ok().json(json!({
        "contact": contact.as_str(),
        "hold": {
            "reason": hold.reason,
            "reference": hold.reference,
            "since": hold.since,
            "by": hold.by,
        },
        "waiting_erasures": hold.waiting,
    })))
}

/// `DELETE …/hold`: lifts the hold; the erasures that waited for it are
/// carried out (once: one erasure takes everything), each asker named in
/// the audit log.
pub async fn lift(
    ContactPath(contact, business, caller): ContactPath,
    state: web::Data<AppState>,
) -> Answer {
    let now = crate::clock::now_secs();
    let keep = u64::from(state.retention_days) * 86_400;
    let whose = (&business, &contact);
    let Some(mut hold) = holds::release(ctx(&state), whose, keep, now).await? else {
        return Err(ApiError::not_found("the contact is not under a legal hold"));
    };
    let by = caller.audit_name();
    if hold.waiting.is_empty() {
        // An erasure noted while the hold was being released waits no
        // longer either.
        let store = state.store.as_ref();
        if let Some(again) = holds::hold_of(store, &state.keyring, whose).await? {
            hold = again;
        }
    }
    let erased = !hold.waiting.is_empty();
    if erased {
        let askers: Vec<String> = hold.waiting.iter().map(|w| w.asked_by.describe()).collect();
        let detail = format!(
            "legal hold {} lifted: {}",
            hold.reference,
            askers.join("; ")
        );
        super::contacts::carry_out(&state, (&contact, &business), &detail, &by, now).await?;
        super::desk_acts::hold_lifted(&state, (&business, &contact), &by).await?;
    }
    holds::finish_lift(ctx(&state), whose, &hold, by, now).await?;
    Ok(HttpResponse::Ok().json(json!({
        "contact": contact.as_str(),
        "lifted": true,
        "waiting_erasures": hold.waiting.len(),
        "erased": erased,
    })))
}

/// `POST …/disclosures`: records a disclosure to an authority.
pub async fn disclose(
    ContactPath(contact, business, caller): ContactPath,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let shape = "{\"what\": \"...\", \"to\": \"...\", \"legal_basis\": \"...\", \"date\": \"YYYY-MM-DD\", \"secret_until\": \"YYYY-MM-DD\" (optional)}";
    let asked: DisclosureRequest =
        crate::http::body::json(&req, payload, &state, (BODY_MAX, shape)).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = crate::clock::now_secs();
    let disclosure = asked.disclosure(id, now, &caller.audit_name())?;
    known(&state, &contact).await?;
    if !holds::record_disclosure(ctx(&state), (&business, &contact), &disclosure).await? {
        return Err(ApiError::Refused(
            StatusCode::CONFLICT,
            format!(
                "the contact has {} disclosures recorded already, the most kept",
                crate::domain::hold::DISCLOSURES_MAX
            ),
        ));
    }
    Ok(HttpResponse::Created().json(json!({
        "contact": contact.as_str(),
        "disclosure": disclosure,
    })))
}

/// `GET …/disclosures`: the contact's disclosures, oldest first, each
/// saying whether the customer may be told of it yet.
pub async fn list(
    ContactPath(contact, business, caller): ContactPath,
    state: web::Data<AppState>,
) -> Answer {
    let store = state.store.as_ref();
    let list = holds::disclosures(store, &state.keyring, (&business, &contact)).await?;
    admin_access(&state, &contact, &business, "disclosures", &caller).await;
    let now = crate::clock::now_secs();
    let shown: Vec<serde_json::Value> = list
        .iter()
        .map(|d| {
            let mut v = json!(d);
            v["told"] = json!(d.told_at(now));
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "contact": contact.as_str(),
        "disclosures": shown,
    })))
}
