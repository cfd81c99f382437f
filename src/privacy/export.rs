//! What we keep of a conversation (the message history) and the copy of
//! everything about a contact that they, or the support team for them,
//! can ask for: the export (GDPR Art. 15 and 20, CCPA's right to know),
//! in the versioned format `docs/export-schema.json` describes.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::crypto::seal::Sealer;
use crate::domain::ContactKey;
use crate::domain::inbound::Input;
use crate::domain::outbound::Outgoing;
use crate::domain::outbound::{Job, Message};
use crate::store::{Store, StoreError};

/// The export format's version (`docs/export-schema.json`).
pub const SCHEMA: &str = "whatsify-export/1";

/// The most history entries an export holds (far above what retention
/// leaves for one contact).
pub const HISTORY_LIMIT: usize = 1_000_000;

/// Who wrote a history entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The customer wrote to us.
    In,
    /// We answered (queued for sending).
    Out,
}

/// One message of the history (sealed in the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    /// When (Unix s): the customer's message time, or when we queued ours.
    pub at: u64,
    pub direction: Direction,
    /// The message type (`text`, `interactive`, `image`, `template`, …).
    pub kind: String,
    /// The text, the chosen option, or the caption; none for media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Our job id (outgoing), to find its delivery state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// The context history entries are sealed under.
pub fn history_context(contact: &ContactKey) -> Vec<u8> {
    format!("history:{contact}").into_bytes()
}

/// The history entry of a customer's message.
pub fn inbound(at: u64, kind: &str, input: &Input) -> HistoryItem {
    let text = match input {
        Input::Text(t) => Some(t.clone()),
        Input::Choice { title, .. } => Some(title.clone()),
        _ => None,
    };
    HistoryItem {
        at,
        direction: Direction::In,
        kind: kind.to_owned(),
        text,
        job: None,
    }
}

/// The history entry of a message we queued (none for a read receipt).
pub fn outbound(job: &Job) -> Option<HistoryItem> {
    let text = match &job.message {
        Message::MarkRead { .. } | Message::Erase | Message::Hook { .. } => return None,
        Message::Flow { message } => match message {
            Outgoing::Text { body, .. }
            | Outgoing::Buttons { body, .. }
            | Outgoing::List { body, .. } => Some(body.clone()),
            other => serde_json::to_value(other)
                .ok()
                .and_then(|v| v["caption"].as_str().map(str::to_owned)),
        },
        Message::Media { caption, .. } => caption.clone(),
        Message::Template { name, .. } => Some(format!("template: {name}")),
        Message::CampaignTemplate { template } => Some(format!(
            "template: {}",
            template["name"].as_str().unwrap_or("")
        )),
        Message::Reaction { emoji, .. } => Some(emoji.clone()),
        Message::Export => Some("a copy of your data".to_owned()),
    };
    Some(HistoryItem {
        at: job.created_at,
        direction: Direction::Out,
        kind: job.message.kind().to_owned(),
        text,
        job: Some(job.id.clone()),
    })
}

/// What the export says about how the data is used (GDPR Art. 15: the
/// purposes, how long, to whom).
pub fn processing(retention_days: u32) -> Value {
    json!({
        "purposes": [
            { "purpose": "service", "what": "answering your messages and requests", "basis": "you wrote to us (service is implied)" },
            { "purpose": "marketing", "what": "offers and promotions", "basis": "your explicit consent, which you can withdraw at any time with STOP" }
        ],
        "retention": {
            "messages_and_profile_days": retention_days,
            "conversation_state": "until the conversation ends or has been idle for the session time",
            "delivery_records_days": 30,
            "consent_history": "kept as evidence of your choices",
            "after_that": "only anonymous statistics with no identifier"
        },
        "recipients": [
            "Meta Platforms (WhatsApp Business Platform), which carries the messages",
            "the business's support staff, when you ask for a person"
        ],
        "your_rights": "MY DATA sends you this copy; PRIVACY opens the privacy menu, where you can correct your name; STOP ends promotions and START brings them back"
    })
}

/// Builds the export of a contact: profile, consent state and history,
/// message history (decrypted), conversation state, privacy requests,
/// how the data is used, and the `disclosures` to authorities the customer
/// may be told of at `now`. `id` is the customer's own id (their number, or
/// their business-scoped user id): the copy is theirs.
pub async fn build(
    store: &dyn Store,
    sealer: Option<&Sealer>,
    contact: &ContactKey,
    id: &str,
    retention_days: u32,
    disclosures: &[crate::domain::hold::Disclosure],
    now: u64,
) -> Result<Value, StoreError> {
    // Without a data key nothing sealed can be read (and none was kept).
    let open = |sealed: &[u8], context: &[u8]| sealer.and_then(|k| k.open(sealed, context).ok());
    let profile: Option<crate::domain::profile::Profile> = store
        .profile(contact)
        .await?
        .and_then(|s| open(&s, &crate::domain::profile::profile_context(contact)))
        .and_then(|p| serde_json::from_slice(&p).ok());
    let ledger = store.consent(contact).await?;
    let deliveries = store.deliveries(contact).await?;
    let state_of = |job: &str| {
        deliveries
            .iter()
            .find(|d| d.job == job)
            .map(|d| serde_json::to_value(d.state).unwrap_or_default())
    };
    let messages: Vec<Value> = store
        .history(contact, HISTORY_LIMIT)
        .await?
        .iter()
        .filter_map(|(_, sealed)| {
            let plain = open(sealed, &history_context(contact))?;
            let item: HistoryItem = serde_json::from_slice(&plain).ok()?;
            let mut v = serde_json::to_value(&item).ok()?;
            if let Some(state) = item.job.as_deref().and_then(state_of) {
                v["state"] = state;
            }
            Some(v)
        })
        .collect();
    // The log before the contact's first trace cannot name them.
    let since = profile
        .as_ref()
        .and_then(|p| p.first_seen)
        .into_iter()
        .chain(ledger.first().map(|c| c.at))
        .min()
        .unwrap_or(0);
    let requests = privacy_events(store, contact, since).await?;
    let conversation: Option<crate::domain::profile::Conversation> = store
        .session(contact)
        .await?
        .and_then(|s| open(&s, &crate::domain::profile::session_context(contact)))
        .and_then(|p| serde_json::from_slice(&p).ok());
    let conversation = conversation.and_then(|c| c.session).map(|s| {
        json!({
            "flow": s.flow,
            "step": s.step,
            "variables": s.vars,
            "last_active": s.last_active,
        })
    });
    let marketing = crate::domain::consent::state(&ledger, crate::domain::consent::MARKETING);
    Ok(json!({
        "schema": SCHEMA,
        "generated_at": now,
        "contact": {
            "id": id,
            "ids": known_ids(id, profile.as_ref()),
            "pseudonymous_id": contact.as_str(),
            "name": profile.as_ref().and_then(|p| p.contact.name.clone()),
            "name_chosen_by_you": profile.as_ref().is_some_and(|p| p.name_chosen),
            "whatsapp_name": profile.as_ref().and_then(|p| p.whatsapp_name.clone()),
            "tags": profile.as_ref().map(|p| p.contact.tags.clone()).unwrap_or_default(),
            "first_message_at": profile.as_ref().and_then(|p| p.first_seen),
            "last_message_at": profile.as_ref().and_then(|p| p.last_seen),
            "privacy_policy_version_shown": profile.as_ref().and_then(|p| p.policy_version.clone()),
        },
        "consent": {
            "marketing": {
                "granted": marketing.is_some_and(|c| c.granted),
                "since": marketing.map(|c| c.at),
                "source": marketing.map(|c| c.source.clone()),
            },
            "history": ledger.iter().map(|c| json!({
                "purpose": c.purpose,
                "granted": c.granted,
                "at": c.at,
                "source": c.source,
                "policy_version": c.policy_version,
            })).collect::<Vec<_>>(),
        },
        "messages": messages,
        "conversation": conversation,
        "privacy_requests": requests,
        "processing": processing(retention_days),
        // The CRM and helpdesk tools (by their configured names) that got
        // data about the contact: GDPR Art. 15(1)(c) and 19.
        "shared_with": profile.as_ref().map(|p| p.shared_with.clone()).unwrap_or_default(),
        // Disclosures to authorities, unless the law forbids telling yet.
        "disclosures": disclosures
            .iter()
            .filter(|d| d.told_at(now))
            .map(|d| json!({ "what": d.what, "to": d.to, "legal_basis": d.legal_basis, "date": d.date }))
            .collect::<Vec<_>>(),
    }))
}

/// Every id the customer is known by: the one asked with, and those their
/// messages came with (number and business-scoped user id, when known).
fn known_ids(id: &str, profile: Option<&crate::domain::profile::Profile>) -> Value {
    let asked_wa = crate::domain::WaId::parse(id).map(|w| w.as_str().to_owned());
    let asked_user = crate::domain::UserId::parse(id).map(|u| u.as_str().to_owned());
    let wa_id = profile.and_then(|p| p.wa_id.clone()).or(asked_wa);
    let user_id = profile.and_then(|p| p.user_id.clone()).or(asked_user);
    json!({ "wa_id": wa_id, "user_id": user_id })
}

/// Audit entries read at once while looking for a contact's events.
const AUDIT_PAGE: usize = 1_000;
/// How far before the contact's first trace the log is still read (clocks
/// of several instances differ a little).
const AUDIT_SLACK_SECS: u64 = 3600;

/// The contact's privacy events in the audit log (requests, consent,
/// notices), oldest first: read newest first, page by page, back to
/// `since`, so an export costs the contact's time with us, not the log's.
async fn privacy_events(
    store: &dyn Store,
    contact: &ContactKey,
    since: u64,
) -> Result<Vec<Value>, StoreError> {
    const KINDS: [&str; 5] = [
        "_request",
        "_completed",
        "_declined",
        "consent_",
        "policy_notice",
    ];
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = store.audit_page(before, AUDIT_PAGE).await?;
        let done = page.len() < AUDIT_PAGE
            || page
                .last()
                .is_none_or(|e| e.event.at.saturating_add(AUDIT_SLACK_SECS) < since);
        out.extend(
            page.iter()
                .filter(|e| e.event.contact.as_deref() == Some(contact.as_str()))
                .filter(|e| KINDS.iter().any(|k| e.event.kind.contains(k)))
                .map(|e| json!({ "at": e.event.at, "kind": e.event.kind, "by": e.event.actor })),
        );
        match page.last() {
            Some(last) if !done && last.seq > 1 => before = Some(last.seq),
            _ => break,
        }
    }
    out.reverse();
    Ok(out)
}
