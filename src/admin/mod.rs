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
//! - `GET /admin/audit?contact=&kind=&from=&to=&limit=&before=&verify=`:
//!   the privacy audit log, newest first, a page at a time, filtered, with
//!   what was checked of its hash chain and which requests have been open
//!   for more than 7 days (see the `audit_log` module).
//!
//! Every look at one contact's data is itself an audit event.

mod audit_log;
pub mod campaigns;
mod consent;
pub mod throttle;

pub use consent::record_consent;

pub use audit_log::audit;

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::audit::{Actor, Event};

use crate::domain::ContactId;
use crate::outbox::sender::{Letter, dead_context};
use crate::startup::AppState;

/// Most bytes of an admin request body (a campaign's may be larger).
pub const BODY_MAX: usize = 256 * 1024;

/// Most dead letters listed at once.
const DEAD_LETTERS_LIMIT: usize = 500;

fn error(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

/// `None` when the caller may go on; else the answer to give.
pub(crate) async fn authorize(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    let Some(token) = state.admin_token.get() else {
        return Some(HttpResponse::NotFound().finish());
    };
    // The console's pages call this API with their session cookie (and
    // the CSRF token for anything that changes something).
    if crate::console::allows(req, state).await {
        return None;
    }
    let refused = || {
        HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Bearer"))
            .json(json!({ "error": "a valid admin bearer token is required" }))
    };
    // No credential at all is no guess.
    let Some(header) = req.headers().get("authorization") else {
        return Some(refused());
    };
    let addr = throttle::client(req);
    if let Err(wait) = state.throttle.check(addr) {
        return Some(throttle::too_many(wait));
    }
    let given = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare digests, so neither the content nor the length leaks.
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(token.expose_secret().as_bytes());
    if bool::from(a.ct_eq(&b)) {
        state.throttle.succeeded(addr);
        None
    } else {
        throttle::refused(req, state, "bearer").await;
        Some(refused())
    }
}

/// Reads an authorised request's body (at most `max` bytes, within
/// `server.body_timeout`); else the answer to give (413, 408 or 400).
pub(crate) async fn body_of(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    max: usize,
) -> Result<web::Bytes, HttpResponse> {
    use actix_web::ResponseError as _;
    crate::body::read(req, payload, max, state.body_timeout)
        .await
        .map_err(|e| e.error_response())
}

fn contact_of(id: &str, state: &AppState) -> Option<crate::domain::ContactKey> {
    let id = ContactId::from_parts(
        id.chars().all(|c| c.is_ascii_digit()).then_some(id),
        (!id.chars().all(|c| c.is_ascii_digit())).then_some(id),
    )?;
    Some(state.pseudonymizer.contact_key(&id))
}

/// The contact's data key, when it has one. A key the master keys in
/// force cannot unwrap is an error (503): an export or a view without the
/// sealed data would look complete and be wrong.
async fn contact_sealer(
    state: &AppState,
    contact: &crate::domain::ContactKey,
) -> Result<Option<crate::privacy::crypto::Sealer>, crate::store::StoreError> {
    match state.store.data_key(contact).await? {
        None => Ok(None),
        Some(wrapped) => state.keyring.unwrap(contact, &wrapped).map(Some).map_err(|e| {
            crate::store::StoreError::Corrupt(format!(
                "the contact's data key cannot be unwrapped ({e}); is every master key in force configured?"
            ))
        }),
    }
}

fn unavailable(e: crate::store::StoreError) -> HttpResponse {
    tracing::error!(error = %e, "admin: store unavailable");
    error(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "store unavailable",
    )
}

/// `Some(404)` when nothing is kept about the contact (no profile, no
/// consent ledger), `Some(503)` when the store cannot say; `None`: known.
async fn unknown(state: &AppState, contact: &crate::domain::ContactKey) -> Option<HttpResponse> {
    match (
        state.store.profile(contact).await,
        state.store.consent(contact).await,
    ) {
        (Ok(p), Ok(l)) if p.is_some() || !l.is_empty() => None,
        (Ok(_), Ok(_)) => Some(error(
            actix_web::http::StatusCode::NOT_FOUND,
            "nothing is kept about this contact",
        )),
        (Err(e), _) | (_, Err(e)) => Some(unavailable(e)),
    }
}

/// The contact a `/admin/contacts/{id}…` request names, once the caller
/// is authorized; else the answer to give (404/401, or 400 for a bad id).
async fn one_contact(
    req: &HttpRequest,
    path: &str,
    state: &AppState,
) -> Result<crate::domain::ContactKey, Box<HttpResponse>> {
    if let Some(denied) = authorize(req, state).await {
        return Err(Box::new(denied));
    }
    let key = contact_of(path, state).ok_or_else(|| Box::new(bad_id()))?;
    // Either of a customer's ids names their one contact.
    crate::store::links::canonical(state.store.as_ref(), key)
        .await
        .map_err(|e| Box::new(unavailable(e)))
}

fn bad_id() -> HttpResponse {
    error(
        actix_web::http::StatusCode::BAD_REQUEST,
        "the id must be a wa_id (digits) or a business-scoped user id",
    )
}

async fn admin_access(state: &AppState, contact: &crate::domain::ContactKey, what: &str) {
    use crate::privacy::audit::note;
    let event = Event {
        at: crate::clock::now_secs(),
        kind: "admin_access".into(),
        contact: Some(contact.as_str().to_owned()),
        actor: Actor::Admin,
        detail: Some(what.to_owned()),
    };
    note(state.store.as_ref(), &state.audit, event).await;
}

/// The days `GET /admin/stats` covers (YYYY-MM-DD, UTC, inclusive).
#[derive(Debug, serde::Deserialize)]
pub struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
}

/// The most days one statistics answer covers.
const STATS_MAX_DAYS: u64 = crate::store::stats::KEEP_DAYS;

/// `GET /admin/stats`: the anonymous daily counters (default: the last 30
/// days). They name no contact, so reading them is not audited.
pub async fn stats(
    req: HttpRequest,
    query: web::Query<StatsQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    use crate::store::stats::{day, parse_day};
    if let Some(denied) = authorize(&req, &state).await {
        return denied;
    }
    let today = crate::clock::now_secs() / 86_400;
    let parse = |v: &Option<String>, default: u64| match v {
        None => Some(default),
        Some(t) => parse_day(t),
    };
    let to = parse(&query.to, today);
    let from = to.and_then(|to| parse(&query.from, to.saturating_sub(29)));
    let (Some(from), Some(to)) = (from, to) else {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "from and to are days written YYYY-MM-DD (UTC)",
        );
    };
    if from > to || to - from >= STATS_MAX_DAYS {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            &format!("from must not be after to, and at most {STATS_MAX_DAYS} days apart"),
        );
    }
    let days: Vec<String> = (from..=to).map(|d| day(d * 86_400)).collect();
    match state.store.stats(&days).await {
        Ok(counts) => HttpResponse::Ok().json(json!({
            "from": day(from * 86_400),
            "to": day(to * 86_400),
            "days": counts,
        })),
        Err(e) => unavailable(e),
    }
}

pub async fn contact(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let contact = match one_contact(&req, &path, &state).await {
        Ok(c) => c,
        Err(answer) => return *answer,
    };
    let (profile, ledger, windows) = match (
        state.store.profile(&contact).await,
        state.store.consent(&contact).await,
        state.store.windows(&contact).await,
    ) {
        (Ok(p), Ok(l), Ok(w)) => (p, l, w),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return unavailable(e),
    };
    let sealer = match contact_sealer(&state, &contact).await {
        Ok(k) => k,
        Err(e) => return unavailable(e),
    };
    let profile: Option<crate::worker::Profile> = profile.and_then(|sealed| {
        sealer
            .as_ref()?
            .open(&sealed, &crate::worker::profile_context(&contact))
            .ok()
            .and_then(|plain| serde_json::from_slice(&plain).ok())
    });
    if profile.is_none() && ledger.is_empty() {
        return error(
            actix_web::http::StatusCode::NOT_FOUND,
            "nothing is kept about this contact",
        );
    }
    tracing::info!(contact = %contact, "admin: contact viewed");
    admin_access(&state, &contact, "profile and consent").await;
    let mut purposes: Vec<&str> = ledger
        .iter()
        .map(|c| c.purpose.as_str())
        .filter(|p| *p != crate::domain::consent::POLICY_NOTICE)
        .collect();
    purposes.sort_unstable();
    purposes.dedup();
    if !purposes.contains(&crate::domain::consent::MARKETING) {
        purposes.insert(0, crate::domain::consent::MARKETING);
    }
    let mut consent: serde_json::Map<String, serde_json::Value> = purposes
        .iter()
        .map(|p| {
            let latest = crate::domain::consent::state(&ledger, p);
            (
                (*p).to_owned(),
                json!({
                    "granted": latest.is_some_and(|c| c.granted),
                    "since": latest.map(|c| c.at),
                    "source": latest.map(|c| c.source.clone()),
                    "policy_version": latest.map(|c| c.policy_version.clone()),
                }),
            )
        })
        .collect();
    if let Some(p) = profile.as_ref().filter(|p| p.first_seen.is_some()) {
        // Answering the customer needs no more than their writing to us.
        consent.insert(
            "service".into(),
            json!({ "granted": true, "since": p.first_seen, "source": "implied: the contact wrote to us" }),
        );
    }
    HttpResponse::Ok().json(json!({
        "contact": contact.as_str(),
        "profile": profile.map(|p| json!({
            "name": p.contact.name,
            "name_chosen_by_customer": p.name_chosen,
            "whatsapp_name": p.whatsapp_name,
            "tags": p.contact.tags,
            "first_seen": p.first_seen,
            "last_seen": p.last_seen,
            "policy_version_shown": p.policy_version,
            "handed_off_since": p.handed_off_at,
        })),
        "consent": consent,
        "ledger": ledger,
        "windows": windows
            .iter()
            .map(|(number, at)| json!({ "phone_number_id": number, "last_message_at": at }))
            .collect::<Vec<_>>(),
    }))
}

pub async fn erase(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    use crate::privacy::audit::note;
    let contact = match one_contact(&req, &path, &state).await {
        Ok(c) => c,
        Err(answer) => return *answer,
    };
    if let Some(answer) = unknown(&state, &contact).await {
        return answer;
    }
    let now = crate::clock::now_secs();
    let event = |kind: &str| Event {
        at: now,
        kind: kind.to_owned(),
        contact: Some(contact.as_str().to_owned()),
        actor: Actor::Admin,
        detail: Some("through the support team".into()),
    };
    note(state.store.as_ref(), &state.audit, event("erasure_request")).await;
    // Every CRM or helpdesk tool that got data about the contact hears of
    // the erasure (GDPR Art. 19), before the profile naming them goes.
    if let Err(e) = tell_erased(&state, &contact, now).await {
        return unavailable(e);
    }
    // The data key is destroyed with the rest; this process forgets it too.
    state.keyring.forget(&contact);
    // With every id the customer is known by (their links too).
    state.contact_links.forget(&contact);
    match state.store.erase_contact(&contact, now).await {
        Ok(aliases) => aliases.iter().for_each(|a| state.keyring.forget(a)),
        Err(e) => return unavailable(e),
    }
    crate::metrics::global()
        .events
        .with_label_values(&[crate::store::stats::ERASURES])
        .inc();
    tracing::info!(contact = %contact, "admin: contact erased");
    note(
        state.store.as_ref(),
        &state.audit,
        event("erasure_completed"),
    )
    .await;
    HttpResponse::Ok().json(json!({ "contact": contact.as_str(), "erased": true }))
}

/// Queues `contact.erased` for the receivers the contact's data was shared
/// with (and those that take the event).
async fn tell_erased(
    state: &AppState,
    contact: &crate::domain::ContactKey,
    now: u64,
) -> Result<(), crate::store::StoreError> {
    use crate::integrations::{Event, EventKind, Field};
    if state.hooks.receivers().is_empty() {
        return Ok(());
    }
    let sealer = contact_sealer(state, contact).await?;
    let profile: Option<crate::worker::Profile> =
        match (state.store.profile(contact).await?, sealer) {
            (Some(sealed), Some(sealer)) => sealer
                .open(&sealed, &crate::worker::profile_context(contact))
                .ok()
                .and_then(|plain| serde_json::from_slice(&plain).ok()),
            _ => None,
        };
    let profile = profile.unwrap_or_default();
    let phone = match &profile.recipient {
        Some(crate::outbox::Recipient::WaId(w)) => json!(w),
        _ => serde_json::Value::Null,
    };
    let event = Event::new(
        format!("{contact}.admin.{}.contact.erased", uuid::Uuid::new_v4()),
        EventKind::ContactErased,
        contact.clone(),
        now,
    )
    .with(Field::PhoneNumber, phone);
    state
        .hooks
        .emit(
            state.store.as_ref(),
            &state.keyring,
            &state.pseudonymizer,
            &event,
            &profile.shared_with,
        )
        .await?;
    Ok(())
}

pub async fn export(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = path.into_inner();
    let contact = match one_contact(&req, &id, &state).await {
        Ok(c) => c,
        Err(answer) => return *answer,
    };
    if let Some(answer) = unknown(&state, &contact).await {
        return answer;
    }
    admin_access(&state, &contact, "export").await;
    let sealer = match contact_sealer(&state, &contact).await {
        Ok(k) => k,
        Err(e) => return unavailable(e),
    };
    match crate::privacy::export::build(
        state.store.as_ref(),
        sealer.as_ref(),
        &contact,
        &id,
        state.retention_days,
        crate::clock::now_secs(),
    )
    .await
    {
        Ok(doc) => HttpResponse::Ok().json(doc),
        Err(e) => unavailable(e),
    }
}

/// The body of `POST /admin/contacts/{id}/messages`: exactly one of a
/// text and a template.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentMessage {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    template: Option<AgentTemplate>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTemplate {
    name: String,
    language: TemplateLanguage,
    /// The body's parameters, in order.
    #[serde(default)]
    body_parameters: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateLanguage {
    code: String,
}

/// The longest text WhatsApp takes.
const TEXT_MAX: usize = 4096;

/// Queues an agent's action in the contact's inbox, in order with the
/// customer's messages (the worker carries it out under the contact's
/// lease), sealed under the contact's data key.
async fn queue_agent_event(
    state: &AppState,
    contact: &crate::domain::ContactKey,
    action: crate::webhook::events::AgentAction,
) -> Result<(), HttpResponse> {
    let Some(wrapped) = state.store.data_key(contact).await.map_err(unavailable)? else {
        return Err(error(
            actix_web::http::StatusCode::NOT_FOUND,
            "nothing is kept about this contact",
        ));
    };
    let sealer = state
        .keyring
        .unwrap(contact, &wrapped)
        .map_err(|_| unavailable(crate::store::StoreError::Corrupt("data key".into())))?;
    let event = crate::webhook::events::Event::Agent(crate::webhook::events::AgentEvent {
        at: crate::clock::now_secs(),
        action,
    });
    let queue = crate::store::Queue::Contact(contact.clone());
    let plain = serde_json::to_vec(&event)
        .map_err(|e| unavailable(crate::store::StoreError::Corrupt(e.to_string())))?;
    let sealed = sealer
        .seal(&plain, queue.name().as_bytes())
        .map_err(|e| unavailable(crate::store::StoreError::Corrupt(e.to_string())))?;
    let appended = state
        .store
        .append(vec![crate::store::InboxEntry {
            queue,
            dedup: format!("agent:{}", uuid::Uuid::new_v4()),
            sealed,
            consent: None,
            refused: None,
            key: Some(crate::store::EntryKey {
                wrapped,
                fresh: false,
                ttl: crate::privacy::keys::data_key_ttl(state.retention_days),
            }),
        }])
        .await
        .map_err(unavailable)?;
    if appended.first() != Some(&crate::store::Appended::New) {
        // The key changed under us (an erasure): nothing was queued.
        return Err(error(
            actix_web::http::StatusCode::CONFLICT,
            "the contact changed meanwhile (erased?); nothing was queued",
        ));
    }
    state.wake.inbox.push(contact.clone());
    Ok(())
}

/// `POST /admin/contacts/{id}/messages`: an agent answers a customer,
/// free-form within the 24-hour window, with a template outside it.
pub async fn agent_message(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    use crate::outbox::{Message, TemplateParam};
    let contact = match one_contact(&req, &path, &state).await {
        Ok(c) => c,
        Err(answer) => return *answer,
    };
    let body = match body_of(&req, payload, &state, BODY_MAX).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let bad = |m: &str| error(actix_web::http::StatusCode::BAD_REQUEST, m);
    let body: AgentMessage = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return bad(&format!(
                "the body must be {{\"text\": \"...\"}} or {{\"template\": {{\"name\", \"language\": {{\"code\"}}, \"body_parameters\": [...]}}}}: {e}"
            ));
        }
    };
    let message = match (body.text, body.template) {
        (Some(text), None) => {
            let n = text.chars().count();
            if text.trim().is_empty() || n > TEXT_MAX {
                return bad(&format!(
                    "text must have 1 to {TEXT_MAX} characters ({n} given)"
                ));
            }
            let windows = match state.store.windows(&contact).await {
                Ok(w) => w,
                Err(e) => return unavailable(e),
            };
            let last = windows.iter().map(|(_, at)| *at).max();
            let now = state.clock.now();
            if last.is_none_or(|at| at + 24 * 3600 <= now) {
                return error(
                    actix_web::http::StatusCode::CONFLICT,
                    "outside the 24-hour window (the customer last wrote more than 24 hours ago): send an approved template instead",
                );
            }
            Message::Flow {
                message: crate::flow::engine::Outgoing::Text {
                    body: text,
                    preview_url: false,
                },
            }
        }
        (None, Some(t)) => {
            if t.name.is_empty() || t.language.code.is_empty() {
                return bad("template.name and template.language.code must not be empty");
            }
            Message::Template {
                name: t.name,
                language: t.language.code,
                header: None,
                body: t
                    .body_parameters
                    .into_iter()
                    .map(|text| TemplateParam { name: None, text })
                    .collect(),
                quick_replies: Vec::new(),
                marketing: false,
            }
        }
        _ => return bad("give exactly one of text and template"),
    };
    let kind = message.kind();
    if let Err(answer) = queue_agent_event(
        &state,
        &contact,
        crate::webhook::events::AgentAction::Message { message },
    )
    .await
    {
        return answer;
    }
    admin_access(&state, &contact, "agent message").await;
    tracing::info!(contact = %contact, kind, "admin: agent message queued");
    HttpResponse::Accepted().json(json!({ "contact": contact.as_str(), "queued": true }))
}

/// `POST /admin/contacts/{id}/handoff/close`: the agent is done; flows
/// answer the customer again.
pub async fn close_handoff(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let contact = match one_contact(&req, &path, &state).await {
        Ok(c) => c,
        Err(answer) => return *answer,
    };
    if let Err(answer) =
        queue_agent_event(&state, &contact, crate::webhook::events::AgentAction::Close).await
    {
        return answer;
    }
    tracing::info!(contact = %contact, "admin: handoff closed");
    HttpResponse::Accepted().json(json!({ "contact": contact.as_str(), "closed": true }))
}

pub async fn messages(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let contact = match one_contact(&req, &path, &state).await {
        Ok(c) => c,
        Err(answer) => return *answer,
    };
    admin_access(&state, &contact, "delivery records").await;
    match state.store.deliveries(&contact).await {
        Ok(records) => HttpResponse::Ok().json(json!({
            "contact": contact.as_str(),
            "messages": records,
        })),
        Err(e) => {
            tracing::error!(error = %e, "admin: store unavailable");
            error(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable",
            )
        }
    }
}

pub async fn dead_letters(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(denied) = authorize(&req, &state).await {
        return denied;
    }
    let letters = match state.store.dead_letters(DEAD_LETTERS_LIMIT).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin: store unavailable");
            return error(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable",
            );
        }
    };
    let mut sealers = std::collections::HashMap::new();
    for d in &letters {
        if !sealers.contains_key(&d.contact) {
            match contact_sealer(&state, &d.contact).await {
                Ok(k) => sealers.insert(d.contact.clone(), k),
                Err(e) => return unavailable(e),
            };
        }
    }
    let items: Vec<_> = letters
        .iter()
        .map(|d| {
            let letter: Option<Letter> = sealers
                .get(&d.contact)
                .and_then(Option::as_ref)
                .and_then(|k| k.open(&d.entry.sealed, &dead_context(&d.contact)).ok())
                .and_then(|p| serde_json::from_slice(&p).ok());
            match letter {
                // An integration event its receiver never took: named by
                // the receiver, the event and the contact it is about.
                Some(Letter {
                    job: Some(job),
                    attempts,
                    reason,
                    at,
                    ..
                }) if matches!(job.message, crate::outbox::Message::Hook { .. }) => {
                    let crate::outbox::Message::Hook {
                        receiver,
                        event,
                        contact,
                        ..
                    } = &job.message
                    else {
                        return json!({});
                    };
                    json!({
                        "contact": contact,
                        "job": job.id,
                        "kind": "hook",
                        "receiver": receiver,
                        "event": event,
                        "queued_at": job.created_at,
                        "attempts": attempts,
                        "reason": reason,
                        "at": at,
                    })
                }
                Some(l) => json!({
                    "contact": d.contact.as_str(),
                    "job": l.job.as_ref().map(|j| j.id.clone()),
                    "kind": l.job.as_ref().map(|j| j.message.kind()),
                    "phone_number_id": l.job.as_ref().map(|j| j.phone_number_id.clone()),
                    "queued_at": l.job.as_ref().map(|j| j.created_at),
                    "attempts": l.attempts,
                    "code": l.code,
                    "reason": l.reason,
                    "at": l.at,
                }),
                None => json!({
                    "contact": d.contact.as_str(),
                    "reason": "this dead letter cannot be opened with the current key",
                }),
            }
        })
        .collect();
    HttpResponse::Ok().json(json!({ "dead_letters": items }))
}
