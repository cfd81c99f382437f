//! One contact, as the support team sees it: `GET /admin/contacts/{id}`
//! (profile and consent), `DELETE` (erasure), `/export` (the MY DATA
//! copy) and `/messages` (delivery records). Every look is audited.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::{admin_access, contact_sealer, known, nothing_kept, open_profile};
use crate::http::auth::ContactPath;
use crate::http::error::Answer;
use crate::state::AppState;

/// `GET /admin/contacts/{id}`: the contact's profile and consent.
pub async fn contact(
    ContactPath(contact, business, caller): ContactPath,
    state: web::Data<AppState>,
) -> Answer {
    let ledger = state.store.consent(&contact).await?;
    let windows = state.store.windows(&contact).await?;
    let profile = open_profile(&state, &contact).await?;
    if profile.is_none() && ledger.is_empty() {
        return Err(nothing_kept());
    }
    tracing::info!(contact = %contact, "admin: contact viewed");
    admin_access(&state, &contact, &business, "profile and consent", &caller).await;
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
    Ok(HttpResponse::Ok().json(json!({
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
    })))
}

/// `DELETE /admin/contacts/{id}`: erases everything kept about the
/// contact, as a confirmed DELETE MY DATA does; 202 while the contact is
/// under a legal hold (the erasure waits for its end).
pub async fn erase(
    ContactPath(contact, business, caller): ContactPath,
    state: web::Data<AppState>,
) -> Answer {
    known(&state, &contact).await?;
    match erase_for_support(&state, &contact, &business, &caller, None).await? {
        Erasure::Done => {
            Ok(HttpResponse::Ok().json(json!({ "contact": contact.as_str(), "erased": true })))
        }
        Erasure::Held => Ok(HttpResponse::Accepted().json(json!({
            "contact": contact.as_str(),
            "erased": false,
            "held": true,
            "message": HELD_MESSAGE,
        }))),
    }
}

/// What the support team is told of an erasure asked while the contact is
/// held.
pub const HELD_MESSAGE: &str = "The contact's data is under a legal hold: nothing was erased. \
The request is recorded and will be carried out when the hold is lifted.";

/// What became of an erasure the support team carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    /// Everything kept about the contact is gone.
    Done,
    /// The contact is under a legal hold: the request is recorded and
    /// waits for its end; nothing was erased.
    Held,
}

/// Carries out an erasure asked of the support team (the admin API, the
/// privacy desk), audited as the caller's with the request's `reference`
/// when there is one. The one place such an erasure happens; while the
/// contact is under a legal hold it is only recorded (`erasure_held`).
pub async fn erase_for_support(
    state: &AppState,
    contact: &crate::domain::ContactKey,
    business: &crate::domain::BusinessId,
    caller: &crate::domain::operator::Caller,
    reference: Option<&str>,
) -> Result<Erasure, crate::http::error::ApiError> {
    use crate::domain::hold::Asker;
    let now = crate::clock::now_secs();
    let detail = match reference {
        Some(r) => format!("through the support team, request {r}"),
        None => "through the support team".to_owned(),
    };
    let by = caller.audit_name();
    let request = erasure_event("erasure_request", (contact, business), &detail, &by, now);
    crate::privacy::audit::note(state.store.as_ref(), &state.audit, request).await;
    let asker = Asker::Support {
        caller: by.clone(),
        reference: reference.map(str::to_owned),
    };
    let ctx = super::hold::ctx(state);
    if crate::privacy::hold::note_waiting(ctx, (business, contact), asker, now).await? {
        return Ok(Erasure::Held);
    }
    carry_out(state, (contact, business), &detail, &by, now).await?;
    Ok(Erasure::Done)
}

/// An audit entry of the support team's erasure of `contact`.
fn erasure_event(
    kind: &str,
    (contact, business): (&crate::domain::ContactKey, &crate::domain::BusinessId),
    detail: &str,
    by: &str,
    now: u64,
) -> crate::domain::audit::AuditEvent {
    crate::domain::audit::AuditEvent {
        at: now,
        kind: kind.to_owned(),
        contact: Some(contact.as_str().to_owned()),
        actor: crate::domain::audit::Actor::Admin,
        detail: Some(detail.to_owned()),
        business: business.tag(),
        by: Some(by.to_owned()),
    }
}

/// Erases everything kept about the contact now (no hold is checked: the
/// caller did, or is lifting it), audited `erasure_completed` with
/// `detail` as `by`'s.
pub(super) async fn carry_out(
    state: &AppState,
    (contact, business): (&crate::domain::ContactKey, &crate::domain::BusinessId),
    detail: &str,
    by: &str,
    now: u64,
) -> Result<(), crate::http::error::ApiError> {
    // Every CRM or helpdesk tool that got data about the contact hears of
    // the erasure (GDPR Art. 19), before the profile naming them goes.
    tell_erased(state, contact, now).await?;
    // The data key is destroyed with the rest; this process forgets it too.
    state.keyring.forget(contact);
    // With every id the customer is known by (their links too).
    state.contact_links.forget(contact);
    let aliases = state.store.erase_contact(contact, business, now).await?;
    aliases.iter().for_each(|a| state.keyring.forget(a));
    // Gone from the agents' inbox too, and their disclosures.
    let waiting = crate::domain::waiting::kind(business);
    state.store.drop_doc(&waiting, contact.as_str()).await?;
    crate::privacy::hold::forget(state.store.as_ref(), (business, contact)).await?;
    crate::metrics::global().event(business, crate::store::stats::ERASURES);
    tracing::info!(contact = %contact, "admin: contact erased");
    let done = erasure_event("erasure_completed", (contact, business), detail, by, now);
    crate::privacy::audit::note(state.store.as_ref(), &state.audit, done).await;
    Ok(())
}

/// Queues `contact.erased` for the receivers the contact's data was shared
/// with (and those that take the event).
async fn tell_erased(
    state: &AppState,
    contact: &crate::domain::ContactKey,
    now: u64,
) -> Result<(), crate::store::StoreError> {
    use crate::integrations::{EventKind, Field, HookEvent};
    if state.hooks.receivers().is_empty() {
        return Ok(());
    }
    let profile = open_profile(state, contact).await?.unwrap_or_default();
    let phone = match &profile.recipient {
        Some(crate::domain::outbound::Recipient::WaId(w)) => json!(w),
        _ => serde_json::Value::Null,
    };
    let event = HookEvent::new(
        format!("{contact}.admin.{}.contact.erased", uuid::Uuid::new_v4()),
        EventKind::ContactErased,
        contact.clone(),
        now,
    )
    .with(Field::PhoneNumber, phone);
    super::notify(state, &event, &profile.shared_with).await
}

/// `GET /admin/contacts/{id}/export`: the copy of their data the
/// customer gets with MY DATA.
pub async fn export(
    ContactPath(contact, business, caller): ContactPath,
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Answer {
    let id = req.match_info().get("id").unwrap_or_default().to_owned();
    known(&state, &contact).await?;
    admin_access(&state, &contact, &business, "export", &caller).await;
    let doc = export_of(&state, (&business, &contact), &id).await?;
    Ok(HttpResponse::Ok().json(doc))
}

/// The copy of their data the customer gets with MY DATA, naming them by
/// `id` (their wa_id or business-scoped user id); built, never stored.
pub(super) async fn export_of(
    state: &AppState,
    (business, contact): (&crate::domain::BusinessId, &crate::domain::ContactKey),
    id: &str,
) -> Result<serde_json::Value, crate::http::error::ApiError> {
    let sealer = contact_sealer(state, contact).await?;
    let (store, keyring) = (state.store.as_ref(), &state.keyring);
    let disclosures =
        crate::privacy::hold::disclosures(store, keyring, (business, contact)).await?;
    let doc = crate::privacy::export::build(
        state.store.as_ref(),
        sealer.as_ref(),
        contact,
        id,
        state.retention_days,
        &disclosures,
        crate::clock::now_secs(),
    )
    .await?;
    Ok(doc)
}

/// `GET /admin/contacts/{id}/messages`: the delivery record of each
/// message sent to the contact (never the content).
pub async fn messages(
    ContactPath(contact, business, caller): ContactPath,
    state: web::Data<AppState>,
) -> Answer {
    admin_access(&state, &contact, &business, "delivery records", &caller).await;
    let records = state.store.deliveries(&contact).await?;
    Ok(HttpResponse::Ok().json(json!({
        "contact": contact.as_str(),
        "messages": records,
    })))
}

/// How many messages `GET /admin/contacts/{id}/conversation` shows.
pub const RECENT: usize = 20;

/// The contact's last `limit` messages, both ways, opened with their data
/// key (none when the contact has no key).
pub async fn recent_conversation(
    state: &AppState,
    contact: &crate::domain::ContactKey,
    limit: usize,
) -> Result<Vec<crate::privacy::export::HistoryItem>, crate::store::StoreError> {
    let Some(sealer) = super::contact_sealer(state, contact).await? else {
        return Ok(Vec::new());
    };
    let context = crate::privacy::export::history_context(contact);
    Ok(state
        .store
        .recent_history(contact, limit)
        .await?
        .iter()
        .filter_map(|(_, sealed)| serde_json::from_slice(&sealer.open(sealed, &context).ok()?).ok())
        .collect())
}

/// `GET /admin/contacts/{id}/conversation`: the last 20 messages, both
/// ways (for agents: a contact's recent conversation without the whole
/// export). Recorded in the audit log.
pub async fn conversation(
    ContactPath(contact, business, caller): ContactPath,
    state: web::Data<AppState>,
) -> Answer {
    super::known(&state, &contact).await?;
    admin_access(&state, &contact, &business, "recent conversation", &caller).await;
    let messages = recent_conversation(&state, &contact, RECENT).await?;
    Ok(HttpResponse::Ok().json(json!({
        "contact": contact.as_str(),
        "messages": messages,
    })))
}
