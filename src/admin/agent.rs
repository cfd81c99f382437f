//! An agent answers a customer in a handoff: `POST
//! /admin/contacts/{id}/messages` (a text inside the 24-hour window, a
//! template outside it) and `POST /admin/contacts/{id}/handoff/close`.
//! Both are queued in the contact's inbox, in order with the customer's
//! messages.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{BODY_MAX, admin_access, nothing_kept};
use crate::domain::ContactKey;
use crate::http::auth::ContactPath;
use crate::http::error::{Answer, ApiError};
use crate::state::AppState;
use crate::store::StoreError;

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
pub(super) async fn queue_agent_event(
    state: &AppState,
    contact: &ContactKey,
    action: crate::domain::inbound::AgentAction,
) -> Result<(), ApiError> {
    let Some(wrapped) = state.store.data_key(contact).await? else {
        return Err(nothing_kept());
    };
    let corrupt = |e: String| ApiError::from(StoreError::Corrupt(e));
    let sealer = state
        .keyring
        .unwrap(contact, &wrapped)
        .map_err(|_| corrupt("data key".into()))?;
    let event = crate::domain::inbound::InboxEvent::Agent(crate::domain::inbound::AgentEvent {
        at: crate::clock::now_secs(),
        action,
    });
    let queue = crate::store::Queue::Contact(contact.clone());
    let plain = serde_json::to_vec(&event).map_err(|e| corrupt(e.to_string()))?;
    let sealed = sealer
        .seal(&plain, queue.name().as_bytes())
        .map_err(|e| corrupt(e.to_string()))?;
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
                ttl: crate::crypto::keyring::data_key_ttl(state.retention_days),
            }),
        }])
        .await?;
    if appended.first() != Some(&crate::store::Appended::New) {
        // The key changed under us (an erasure): nothing was queued.
        return Err(ApiError::Refused(
            StatusCode::CONFLICT,
            "the contact changed meanwhile (erased?); nothing was queued".into(),
        ));
    }
    state.wake.inbox.push(contact.clone());
    Ok(())
}

/// `POST /admin/contacts/{id}/messages`: an agent answers a customer,
/// free-form within the 24-hour window, with a template outside it.
pub async fn agent_message(
    ContactPath(contact, business, caller): ContactPath,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let body = crate::http::body::of(&req, payload, &state, BODY_MAX).await?;
    let message = message_of(&body, &state, &contact).await?;
    let kind = message.kind();
    queue_agent_event(
        &state,
        &contact,
        crate::domain::inbound::AgentAction::Message { message },
    )
    .await?;
    admin_access(&state, &contact, &business, "agent message", &caller).await;
    tracing::info!(contact = %contact, kind, "admin: agent message queued");
    Ok(HttpResponse::Accepted().json(json!({ "contact": contact.as_str(), "queued": true })))
}

/// The message an agent's request body asks for: a text inside the
/// 24-hour window, or a template.
async fn message_of(
    body: &[u8],
    state: &AppState,
    contact: &ContactKey,
) -> Result<crate::domain::outbound::Message, ApiError> {
    use crate::domain::outbound::{Message, TemplateParam};
    let bad = |m: &str| Err(ApiError::bad_request(m));
    let body: AgentMessage = match serde_json::from_slice(body) {
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
            let windows = state.store.windows(contact).await?;
            let last = windows.iter().map(|(_, at)| *at).max();
            let now = state.clock.now();
            if last.is_none_or(|at| at + 24 * 3600 <= now) {
                return Err(ApiError::Refused(
                    StatusCode::CONFLICT,
                    "outside the 24-hour window (the customer last wrote more than 24 hours ago): send an approved template instead".into(),
                ));
            }
            Message::Flow {
                message: crate::domain::outbound::Outgoing::Text {
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
    Ok(message)
}

/// `POST /admin/contacts/{id}/handoff/close`: the agent is done; flows
/// answer the customer again.
pub async fn close_handoff(
    ContactPath(contact, business, caller): ContactPath,
    state: web::Data<AppState>,
) -> Answer {
    queue_agent_event(&state, &contact, crate::domain::inbound::AgentAction::Close).await?;
    // Gone from the agents' inbox at once (the worker removes it too).
    let waiting = crate::domain::waiting::kind(&business);
    state.store.drop_doc(&waiting, contact.as_str()).await?;
    admin_access(&state, &contact, &business, "handoff closed", &caller).await;
    tracing::info!(contact = %contact, "admin: handoff closed");
    Ok(HttpResponse::Accepted().json(json!({ "contact": contact.as_str(), "closed": true })))
}
