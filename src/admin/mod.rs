//! The admin API (`/admin/...`), behind `Authorization: Bearer
//! {admin.token}`. With no token configured it does not exist (404).
//!
//! - `GET /admin/contacts/{id}`: the contact's profile (names, tags, first
//!   and last message, the privacy policy version they were shown) and
//!   consent: the state of each purpose and the whole ledger. 404 when
//!   nothing is kept about the contact.
//! - `DELETE /admin/contacts/{id}`: erases everything kept about the
//!   contact at once (a request made through the support team), as a
//!   confirmed DELETE MY DATA does; 404 when nothing is kept.
//! - `GET /admin/contacts/{id}/export`: the same copy of their data the
//!   customer gets with MY DATA (`docs/export-schema.json`).
//! - `GET /admin/contacts/{id}/messages`: the delivery record of each
//!   message sent to the contact (state, kind, error code; never the
//!   content). `{id}` is the wa_id or the business-scoped user id.
//! - `GET /admin/outbox/dead-letters`: messages given up after every
//!   attempt failed, with the last error.
//! - `/admin/campaigns…`, `/admin/stats`: see [`campaigns`] and `stats`.
//! - `/admin/desk…`: the privacy desk, requests that reached the support
//!   team by email, phone or letter (see [`desk`]).
//!
//! Every route also exists under `/admin/businesses/{business}`, for that
//! business's contacts, campaigns, audit entries, statistics and dead
//! letters only (404 for a business that does not exist). Unprefixed,
//! the routes are the one business's when one is served, and answer 409
//! naming the prefixed route when several are.
//! - `GET /admin/audit?contact=&kind=&from=&to=&limit=&before=&verify=`:
//!   the privacy audit log, newest first, a page at a time, filtered, with
//!   what was checked of its hash chain and which requests have been open
//!   for more than 7 days (see the `audit_log` module).
//!
//! Every look at one contact's data is itself an audit event.

mod agent;
mod audit_log;
pub mod campaigns;
mod consent;
mod contacts;
mod dead_letters;
pub mod desk;
mod desk_acts;
mod hold;
pub mod inbox;
mod inbox_events;
pub mod offboard;
pub mod operators;
mod stats;

pub use agent::{agent_message, close_handoff};
pub use audit_log::audit;
pub use consent::record_consent;
pub use contacts::{Erasure, contact, conversation, erase, erase_for_support, export, messages};
pub use dead_letters::dead_letters;
pub use stats::stats;

/// The routes of one contact, under `/admin/contacts` and under
/// `/admin/businesses/{business}/contacts`.
pub fn contact_routes(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::web;
    cfg.route("/{id}", web::get().to(contact))
        .route("/{id}", web::delete().to(erase))
        .route("/{id}/consent", web::post().to(record_consent))
        .route("/{id}/messages", web::post().to(agent_message))
        .route("/{id}/messages", web::get().to(messages))
        .route("/{id}/handoff/close", web::post().to(close_handoff))
        .route("/{id}/export", web::get().to(export))
        .route("/{id}/conversation", web::get().to(conversation));
    hold::routes(cfg);
}

/// The routes of one business's campaigns, audit log, statistics and dead
/// letters: under `/admin/businesses/{business}`, and unprefixed under
/// `/admin` (the one business served; 409 with several). Each is a
/// resource of its own, not a scope, so that no other
/// `/admin/businesses/{business}…` route is shadowed.
pub fn business_routes(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::web;
    for prefix in ["/admin", "/admin/businesses/{business}"] {
        cfg.service(
            web::resource(format!("{prefix}/campaigns"))
                .route(web::post().to(campaigns::create))
                .route(web::get().to(campaigns::list)),
        )
        .service(
            web::resource(format!("{prefix}/campaigns/{{id}}"))
                .route(web::get().to(campaigns::show))
                .route(web::delete().to(campaigns::cancel)),
        )
        .route(&format!("{prefix}/audit"), web::get().to(audit))
        .route(&format!("{prefix}/stats"), web::get().to(stats))
        .route(
            &format!("{prefix}/outbox/dead-letters"),
            web::get().to(dead_letters),
        );
    }
}

/// `GET /admin/businesses`: the businesses served, each with its numbers
/// and its flows in force.
pub async fn businesses(
    op: crate::http::auth::Operator,
    state: actix_web::web::Data<AppState>,
) -> crate::http::error::Answer {
    let counts: std::collections::HashMap<String, u64> =
        state.store.member_counts().await?.into_iter().collect();
    let mut removals = std::collections::HashMap::new();
    for (id, bytes) in state.store.removals().await? {
        if let Ok(r) = serde_json::from_slice::<crate::offboard::Removal>(&bytes) {
            removals.insert(id, offboard::view(&r));
        }
    }
    let list: Vec<serde_json::Value> = state
        .businesses
        .all()
        .iter()
        .filter(|b| op.caller.serves(&b.id))
        .map(|b| {
            // The flows in force for the business (its first number's).
            let number = b.phone_number_ids.first().map_or("", String::as_str);
            let flows: Vec<String> = state.flow_sets.as_ref().map_or_else(Vec::new, |f| {
                f.for_number(number)
                    .flows
                    .iter()
                    .map(|f| f.id.clone())
                    .collect()
            });
            serde_json::json!({
                "id": b.id.as_str(),
                "name": b.name,
                "phone_number_ids": b.phone_number_ids,
                "waba_id": b.waba_id,
                "own_app": b.app_secret.is_some(),
                "flows_dir": b.flows_dir.display().to_string(),
                "flows": flows,
                "policy_version": b.policy_version,
                "contacts": counts.get(b.id.as_str()).copied().unwrap_or(0),
                "removal": removals.remove(b.id.as_str()),
            })
        })
        .collect();
    // Businesses removed whose entry is gone from the settings.
    let gone: Vec<serde_json::Value> = match op.caller.businesses {
        None => removals.into_values().collect(),
        Some(_) => Vec::new(),
    };
    Ok(actix_web::HttpResponse::Ok()
        .json(serde_json::json!({ "businesses": list, "removed": gone })))
}

use crate::domain::ContactKey;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::StoreError;

/// Most bytes of an admin request body (a campaign's may be larger).
pub const BODY_MAX: usize = 256 * 1024;

/// The contact's data key, when it has one. A key the master keys in
/// force cannot unwrap is an error (503): an export or a view without the
/// sealed data would look complete and be wrong.
async fn contact_sealer(
    state: &AppState,
    contact: &ContactKey,
) -> Result<Option<crate::crypto::seal::Sealer>, StoreError> {
    match state.store.data_key(contact).await? {
        None => Ok(None),
        Some(wrapped) => state.keyring.unwrap(contact, &wrapped).map(Some).map_err(|e| {
            StoreError::Corrupt(format!(
                "the contact's data key cannot be unwrapped ({e}); is every master key in force configured?"
            ))
        }),
    }
}

/// 404 when nothing is kept about the contact (no profile, no consent
/// ledger); 503 when the store cannot say.
async fn known(state: &AppState, contact: &ContactKey) -> Result<(), ApiError> {
    let profile = state.store.profile(contact).await?;
    let ledger = state.store.consent(contact).await?;
    if profile.is_some() || !ledger.is_empty() {
        Ok(())
    } else {
        Err(nothing_kept())
    }
}

fn nothing_kept() -> ApiError {
    ApiError::not_found("nothing is kept about this contact")
}

/// The contact's profile, opened with its data key; `None` when there is
/// none or it does not open.
async fn open_profile(
    state: &AppState,
    contact: &ContactKey,
) -> Result<Option<crate::domain::profile::Profile>, StoreError> {
    let sealer = contact_sealer(state, contact).await?;
    Ok(match (state.store.profile(contact).await?, sealer) {
        (Some(sealed), Some(sealer)) => sealer
            .open(&sealed, &crate::domain::profile::profile_context(contact))
            .ok()
            .and_then(|plain| serde_json::from_slice(&plain).ok()),
        _ => None,
    })
}

async fn admin_access(
    state: &AppState,
    contact: &ContactKey,
    business: &crate::domain::BusinessId,
    what: &str,
    caller: &crate::domain::operator::Caller,
) {
    use crate::domain::audit::{Actor, AuditEvent};
    use crate::privacy::audit::note;
    let event = AuditEvent {
        at: crate::clock::now_secs(),
        kind: "admin_access".into(),
        contact: Some(contact.as_str().to_owned()),
        actor: Actor::Admin,
        detail: Some(what.to_owned()),
        business: business.tag(),
        by: Some(caller.audit_name()),
    };
    note(state.store.as_ref(), &state.audit, event).await;
}

/// Tells the integration receivers about an operator's change to a
/// contact: every receiver subscribed to the event, and those the contact
/// shared their data with (`shared_with`).
async fn notify(
    state: &AppState,
    event: &crate::integrations::HookEvent,
    shared_with: &std::collections::BTreeSet<String>,
) -> Result<(), StoreError> {
    let s = state.store.as_ref();
    (state.hooks)
        .emit(s, &state.keyring, &state.pseudonymizer, event, shared_with)
        .await?;
    Ok(())
}
