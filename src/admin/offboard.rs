//! `DELETE /admin/businesses/{business}?confirm={business}` and
//! `GET /admin/businesses/{business}/removal`: taking a business off the
//! system (see [`crate::offboard`]).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::domain::BusinessId;
use crate::domain::audit::Actor;
use crate::http::auth::Operator;
use crate::http::error::{Answer, ApiError};
use crate::offboard::{Removal, Remover};
use crate::state::AppState;

/// How long the request waits for the removal to finish before it
/// answers 202 (the removal goes on; poll its record).
const WAIT: Duration = Duration::from_secs(20);

#[derive(serde::Deserialize)]
pub struct Confirm {
    confirm: Option<String>,
}

/// The business of the path: configured, or with a removal on record
/// (its entry may be gone from the settings already); its numbers.
async fn business_in_path(
    state: &AppState,
    id: &str,
) -> Result<(BusinessId, Vec<String>, Option<Removal>), ApiError> {
    let no_such = || ApiError::not_found(format!("no business has the id \"{id}\""));
    let business = BusinessId::parse(id).ok_or_else(no_such)?;
    let record = crate::offboard::removal(state.store.as_ref(), &business).await?;
    match (state.businesses.get(id), record) {
        (Some(b), record) => Ok((business, b.phone_number_ids.clone(), record)),
        (None, Some(r)) => Ok((business, r.numbers.clone(), Some(r))),
        (None, None) => Err(no_such()),
    }
}

/// The removal as the API shows it.
pub fn view(r: &Removal) -> serde_json::Value {
    json!({
        "business": r.business,
        "status": if r.is_done() { "removed" } else { "removing" },
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "deleted": r.deleted,
    })
}

/// `DELETE /admin/businesses/{business}?confirm={business}`.
pub async fn remove(
    op: Operator,
    path: web::Path<String>,
    query: web::Query<Confirm>,
    state: web::Data<AppState>,
) -> Answer {
    let id = path.into_inner();
    let (business, numbers, _) = business_in_path(&state, &id).await?;
    if query.confirm.as_deref() != Some(id.as_str()) {
        return Err(ApiError::bad_request(format!(
            "removing a business deletes every record it owns and cannot be undone: repeat its id as ?confirm={id}"
        )));
    }
    let state = state.into_inner();
    let removal = {
        let remover = remover(&state, op.by());
        remover.begin(&business, &numbers).await?
    };
    // Its webhooks are discarded from now on, here at once and on the
    // other instances within `offboard::removed::REFRESH`.
    state.removed.insert(business.as_str(), &numbers);
    let task = {
        let (state, by) = (state.clone(), op.by());
        tokio::spawn(async move { remover(&state, by).finish(removal).await })
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut now = match tokio::time::timeout(WAIT, task).await {
        Ok(Ok(result)) => Some(result?),
        Ok(Err(_)) => {
            return Err(ApiError::Store(crate::store::StoreError::Unavailable(
                "the removal stopped".into(),
            )));
        }
        Err(_) => None,
    };
    // Carried on by another instance (or this one's background task,
    // which held its lease first): wait for it, as long as the rest of
    // the wait allows.
    while !now.as_ref().is_some_and(Removal::is_done) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        now = crate::offboard::removal(state.store.as_ref(), &business).await?;
    }
    match now {
        Some(done) if done.is_done() => Ok(HttpResponse::Ok().json(view(&done))),
        going => Ok(HttpResponse::Accepted()
            .insert_header(("Location", format!("/admin/businesses/{id}/removal")))
            .json(going.as_ref().map(view))),
    }
}

fn remover(state: &AppState, by: Option<String>) -> Remover<'_> {
    Remover {
        store: state.store.as_ref(),
        keyring: &state.keyring,
        audit: &state.audit,
        clock: &state.clock,
        hooks: &state.hooks,
        actor: Actor::Admin,
        by,
    }
}

/// `GET /admin/businesses/{business}/removal`: how far its removal got.
pub async fn status(_: Operator, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    let id = path.into_inner();
    let (_, _, record) = business_in_path(&state, &id).await?;
    match record {
        Some(r) => Ok(HttpResponse::Ok().json(view(&r))),
        None => Err(ApiError::not_found(format!(
            "business \"{id}\" is not being removed"
        ))),
    }
}
