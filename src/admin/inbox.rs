//! The agents' inbox: the handed-off conversations of a business, oldest
//! waiting first, with the recent conversation of each, and an agent
//! taking one.
//!
//! - `GET /admin/businesses/{b}/inbox` (and `/admin/inbox` when one
//!   business is served): the list; each conversation shown is audited.
//! - `GET …/inbox/events`: the list as server-sent events, live (see
//!   `inbox_events`).
//! - `POST …/inbox/{id}/take`: the caller takes the conversation (409
//!   naming who has it when someone else took it first).
//!
//! Replying and closing are `POST …/contacts/{id}/messages` and
//! `…/handoff/close` ([`super::agent`]).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::{admin_access, contact_sealer, open_profile};
use crate::domain::outbound::Recipient;
use crate::domain::waiting::{Taken, Waiting, kind};
use crate::domain::{BusinessId, ContactKey};
use crate::http::auth::{Operator, business_of};
use crate::http::error::{Answer, ApiError};
use crate::inbox::waiting::{Change, open, update};
use crate::state::AppState;
use crate::store::StoreError;

/// How many history entries each conversation shows (both ways).
pub const RECENT: usize = 20;

/// The routes of the inbox, unprefixed (the one business served) and
/// under `/admin/businesses/{business}`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    for prefix in ["/admin", "/admin/businesses/{business}"] {
        cfg.route(&format!("{prefix}/inbox"), web::get().to(list))
            .route(
                &format!("{prefix}/inbox/events"),
                web::get().to(super::inbox_events::events),
            )
            .route(&format!("{prefix}/inbox/{{id}}/take"), web::post().to(take));
    }
}

/// The business's waiting conversations as the index keeps them, oldest
/// waiting first (records that do not open are left out).
pub(super) async fn waiting(
    state: &AppState,
    business: &BusinessId,
) -> Result<Vec<(ContactKey, Waiting, Vec<u8>)>, StoreError> {
    let mut list: Vec<(ContactKey, Waiting, Vec<u8>)> = state
        .store
        .docs(&kind(business))
        .await?
        .into_iter()
        .filter_map(|(id, sealed)| {
            let w = open(&state.keyring, business, &id, &sealed)?;
            Some((ContactKey::parse(&id)?, w, sealed))
        })
        .collect();
    list.sort_by(|a, b| (a.1.since, a.0.as_str()).cmp(&(b.1.since, b.0.as_str())));
    Ok(list)
}

/// The operators' emails, looked up once per listing.
#[derive(Default)]
pub(super) struct Emails(HashMap<String, Option<String>>);

impl Emails {
    async fn of(&mut self, state: &AppState, id: &str) -> Option<String> {
        if let Some(known) = self.0.get(id) {
            return known.clone();
        }
        let accounts = crate::http::auth::accounts(state);
        let email = accounts.get(id).await.ok().flatten().map(|a| a.email);
        self.0.insert(id.to_owned(), email.clone());
        email
    }

    /// Who took it: their id and email (`null` when no one did).
    pub(super) async fn taken(&mut self, state: &AppState, taken: Option<&Taken>) -> Value {
        match taken {
            None => Value::Null,
            Some(t) => {
                let email = self.of(state, &t.by).await;
                json!({ "id": t.by, "email": email, "at": t.at })
            }
        }
    }
}

/// Whether the 24-hour window is open at `now`, and until when.
fn window(last: Option<u64>, now: u64) -> Value {
    let until = last.map(|at| at + crate::domain::waiting::WINDOW_SECS);
    json!({ "open": until.is_some_and(|u| u > now), "until": until })
}

/// A conversation as the event stream shows it: no personal data (the
/// contact's pseudonymous key, times, who has it).
pub(super) async fn light(
    state: &AppState,
    (contact, w): (&ContactKey, &Waiting),
    emails: &mut Emails,
) -> Value {
    json!({
        "contact": contact.as_str(),
        "waiting_since": w.since,
        "last_customer_message": w.last_inbound,
        "last_activity": w.last_activity,
        "window": window(w.last_inbound, state.clock.now()),
        "taken_by": emails.taken(state, w.taken.as_ref()).await,
    })
}

/// The contact's last [`RECENT`] history entries, opened.
async fn recent(state: &AppState, contact: &ContactKey) -> Result<Vec<Value>, StoreError> {
    let Some(sealer) = contact_sealer(state, contact).await? else {
        return Ok(Vec::new());
    };
    let context = crate::privacy::export::history_context(contact);
    Ok(state
        .store
        .recent_history(contact, RECENT)
        .await?
        .iter()
        .filter_map(|(_, sealed)| {
            let plain = sealer.open(sealed, &context).ok()?;
            let h: crate::privacy::export::HistoryItem = serde_json::from_slice(&plain).ok()?;
            Some(json!({"at": h.at, "direction": h.direction, "kind": h.kind, "text": h.text}))
        })
        .collect())
}

/// Drops an index entry whose profile is no longer handed off, unless it
/// changed since it was read (a new handoff).
async fn drop_stale(
    state: &AppState,
    business: &BusinessId,
    contact: &ContactKey,
    read: &[u8],
) -> Result<(), StoreError> {
    let kind = kind(business);
    if state.store.doc(&kind, contact.as_str()).await?.as_deref() == Some(read) {
        state.store.drop_doc(&kind, contact.as_str()).await?;
        tracing::info!(contact = %contact, "stale inbox entry dropped");
    }
    Ok(())
}

/// `GET /admin/businesses/{b}/inbox`: the waiting conversations, oldest
/// first, each with the customer's number and name and the recent
/// conversation. Each one shown is audited.
pub async fn list(op: Operator, req: HttpRequest, state: web::Data<AppState>) -> Answer {
    let business = business_of(&req, &state)?;
    let mut emails = Emails::default();
    let mut out = Vec::new();
    for (contact, w, sealed) in waiting(&state, &business).await? {
        let profile = open_profile(&state, &contact).await?;
        let Some(profile) = profile.filter(|p| p.handed_off_at.is_some()) else {
            drop_stale(&state, &business, &contact, &sealed).await?;
            continue;
        };
        let mut view = light(&state, (&contact, &w), &mut emails).await;
        // The windows the store keeps are the ones replies are held to.
        let last = (state.store.windows(&contact).await?.iter())
            .map(|(_, at)| *at)
            .max()
            .max(w.last_inbound);
        let (wa_id, user_id) = match &profile.recipient {
            Some(Recipient::WaId(w)) => (Some(w.clone()), profile.user_id.clone()),
            Some(Recipient::UserId(u)) => (profile.wa_id.clone(), Some(u.clone())),
            None => (profile.wa_id.clone(), profile.user_id.clone()),
        };
        view["last_customer_message"] = json!(last);
        view["window"] = window(last, state.clock.now());
        view["wa_id"] = json!(wa_id);
        view["user_id"] = json!(user_id);
        view["name"] = json!(profile.contact.name.or(profile.whatsapp_name));
        view["recent"] = json!(recent(&state, &contact).await?);
        admin_access(
            &state,
            &contact,
            &business,
            "inbox: conversation shown",
            &op.caller,
        )
        .await;
        out.push(view);
    }
    Ok(HttpResponse::Ok().json(json!({ "business": business.as_str(), "conversations": out })))
}

/// The contact a `…/inbox/{id}` route names: its contact key, or the
/// customer's wa_id or business-scoped user id.
async fn contact_in(
    req: &HttpRequest,
    state: &AppState,
    business: &BusinessId,
) -> Result<ContactKey, ApiError> {
    let id = req.match_info().get("id").unwrap_or("");
    if let Some(key) = ContactKey::parse(id) {
        return Ok(key);
    }
    let key =
        crate::http::auth::contact_of(id, business, state).ok_or_else(crate::http::auth::bad_id)?;
    Ok(crate::store::links::canonical(state.store.as_ref(), key).await?)
}

/// What taking found.
enum Took {
    NotWaiting,
    Mine(Waiting),
    Theirs(Taken),
}

/// `POST /admin/businesses/{b}/inbox/{id}/take`: the caller takes the
/// conversation (compare-and-swap: two agents at once, one wins). Taking
/// it again is fine; one someone else has is 409 naming them.
pub async fn take(op: Operator, req: HttpRequest, state: web::Data<AppState>) -> Answer {
    let business = business_of(&req, &state)?;
    let contact = contact_in(&req, &state, &business).await?;
    let me = op.caller.operator_id().unwrap_or("root").to_owned();
    let now = state.clock.now();
    let mut took = Took::NotWaiting;
    let at = (&business, contact.as_str());
    update(
        state.store.as_ref(),
        &state.keyring,
        at,
        |found| match found {
            None => {
                took = Took::NotWaiting;
                Change::Keep
            }
            Some(w) => match &w.taken {
                Some(t) if t.by != me => {
                    took = Took::Theirs(t.clone());
                    Change::Keep
                }
                Some(_) => {
                    took = Took::Mine(w.clone());
                    Change::Keep
                }
                None => {
                    let mut w = w.clone();
                    w.taken = Some(Taken {
                        by: me.clone(),
                        at: now,
                    });
                    took = Took::Mine(w.clone());
                    Change::Put(w)
                }
            },
        },
    )
    .await?;
    let mut emails = Emails::default();
    match took {
        Took::NotWaiting => Err(ApiError::not_found(
            "this conversation is not waiting in the inbox",
        )),
        Took::Theirs(t) => {
            let who = emails.of(&state, &t.by).await.unwrap_or(t.by);
            Err(ApiError::Refused(
                StatusCode::CONFLICT,
                format!("already taken by {who}"),
            ))
        }
        Took::Mine(w) => {
            admin_access(&state, &contact, &business, "inbox: taken", &op.caller).await;
            tracing::info!(contact = %contact, "admin: inbox conversation taken");
            let view = light(&state, (&contact, &w), &mut emails).await;
            Ok(HttpResponse::Ok().json(view))
        }
    }
}
