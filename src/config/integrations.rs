//! `[[integrations.webhooks]]`: the CRM and helpdesk receivers, checked
//! and turned into subscribers.

use std::str::FromStr;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Deserialize;

use super::{ConfigError, transport};

/// `[[integrations.webhooks]]`: the CRM and helpdesk receivers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntegrations {
    #[serde(default)]
    pub(super) webhooks: Vec<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    name: String,
    url: String,
    secret: SecretString,
    events: Vec<String>,
    #[serde(default)]
    fields: Vec<String>,
    /// The business whose contacts' events it receives (none: every
    /// business's).
    #[serde(default)]
    business: Option<String>,
}

impl RawWebhook {
    pub(super) fn validate(self, index: usize) -> Result<std::sync::Arc<Subscriber>, ConfigError> {
        let name = self.name.clone();
        let invalid = |problem: String| ConfigError::Webhook {
            index,
            name: name.clone(),
            problem,
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(invalid(
                "name must be 1 to 64 letters, digits, - or _".into(),
            ));
        }
        let url: reqwest::Url = self
            .url
            .parse()
            .map_err(|_| invalid("url is not a URL".into()))?;
        let loopback = transport::is_loopback(&url);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(invalid(
                    "url must be https:// (plain http only to this machine)".into(),
                ));
            }
        }
        let key =
            key_of(self.secret.expose_secret()).map_err(|why| invalid(format!("secret: {why}")))?;
        if self.events.is_empty() {
            return Err(invalid("events is empty: list what it receives".into()));
        }
        let mut events = Vec::new();
        for e in &self.events {
            events.push(e.parse().map_err(invalid)?);
        }
        let mut fields = Vec::new();
        for f in &self.fields {
            fields.push(f.parse().map_err(invalid)?);
        }
        if let Some(b) = &self.business
            && crate::domain::BusinessId::parse(b).is_none()
        {
            return Err(invalid(
                "business must be a business id (1 to 32 of a-z, 0-9, -)".into(),
            ));
        }
        Ok(std::sync::Arc::new(Subscriber {
            business: self.business,
            name: self.name,
            url,
            key: SecretBox::new(Box::new(key)),
            events,
            fields,
        }))
    }
}

/// What happened, as a subscriber's `events` list names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    ContactCreated,
    ConsentChanged,
    FlowCompleted,
    HandoffRequested,
    MessageReceived,
    ExportRequested,
    ContactRectified,
    ContactErased,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::ContactCreated,
        EventKind::ConsentChanged,
        EventKind::FlowCompleted,
        EventKind::HandoffRequested,
        EventKind::MessageReceived,
        EventKind::ExportRequested,
        EventKind::ContactRectified,
        EventKind::ContactErased,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::ContactCreated => "contact.created",
            EventKind::ConsentChanged => "consent.changed",
            EventKind::FlowCompleted => "flow.completed",
            EventKind::HandoffRequested => "handoff.requested",
            EventKind::MessageReceived => "message.received",
            EventKind::ExportRequested => "privacy.export_requested",
            EventKind::ContactRectified => "contact.rectified",
            EventKind::ContactErased => "contact.erased",
        }
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown event {s:?} (known: {})", known.join(", "))
            })
    }
}

/// A piece of an event's data, as a subscriber's `fields` list names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The customer's WhatsApp number (`wa_id`): only to subscribers that
    /// list it.
    PhoneNumber,
    /// The customer's name (their WhatsApp profile name, or as corrected).
    Name,
    /// Consent: the purpose, whether granted, the source and the policy
    /// version (`consent.changed`), or every purpose's state.
    Consent,
    /// The contact's tags.
    Tags,
    /// The flow and step an event comes from (no personal data).
    Flow,
    /// The variables a flow collected (`flow.completed`).
    Variables,
    /// A message's text (`message.received`).
    Text,
    /// The recent conversation, both ways (`handoff.requested`).
    Conversation,
    /// Which fields a rectification changed (their names, not values).
    Changed,
}

impl Field {
    pub const ALL: [Field; 9] = [
        Field::PhoneNumber,
        Field::Name,
        Field::Consent,
        Field::Tags,
        Field::Flow,
        Field::Variables,
        Field::Text,
        Field::Conversation,
        Field::Changed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::PhoneNumber => "phone_number",
            Field::Name => "name",
            Field::Consent => "consent",
            Field::Tags => "tags",
            Field::Flow => "flow",
            Field::Variables => "variables",
            Field::Text => "text",
            Field::Conversation => "conversation",
            Field::Changed => "changed",
        }
    }
}

impl FromStr for Field {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Field::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
                format!("unknown field {s:?} (known: {})", known.join(", "))
            })
    }
}

/// A configured receiver (`[[integrations.webhooks]]`).
pub struct Subscriber {
    /// Names it in the audit log and the admin API (never a secret).
    pub name: String,
    pub url: reqwest::Url,
    /// The HMAC key: the `whsec_` secret's base64-decoded bytes.
    pub key: SecretBox<Vec<u8>>,
    pub events: Vec<EventKind>,
    pub fields: Vec<Field>,
    /// The business whose contacts' events it receives (`None`: every
    /// business's: the service's own CRM).
    pub business: Option<String>,
}

impl Subscriber {
    /// Whether it receives the events of a contact of `business` (`None`:
    /// not on record, read as the `default` business's).
    pub fn serves(&self, business: Option<&str>) -> bool {
        match &self.business {
            None => true,
            Some(b) => b == business.unwrap_or(crate::domain::BusinessId::DEFAULT),
        }
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("events", &self.events)
            .field("fields", &self.fields)
            .field("business", &self.business)
            .finish_non_exhaustive()
    }
}

/// The fewest key bytes a secret may have (the specification asks for
/// 24 to 64).
pub const MIN_KEY_BYTES: usize = 24;
pub const MAX_KEY_BYTES: usize = 64;

/// The key of a `whsec_…` secret; the error says what is wrong with it
/// (never the secret).
pub fn key_of(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or("it must start with whsec_ (then the key in base64)")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "what follows whsec_ is not base64".to_owned())?;
    if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
        return Err(format!(
            "its key is {} bytes; it must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    Ok(key)
}
