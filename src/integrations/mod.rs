//! Sharing with the business's CRM and helpdesk (issue 8): the events a
//! subscriber may receive, the fields an event may carry, and what one
//! subscriber is allowed to see of it.
//!
//! Data minimisation is the rule here: an event is built with everything
//! it could carry, and [`Subscriber::payload`] keeps only the fields that
//! subscriber's configuration lists. A field not listed never leaves. The
//! pseudonymous contact id is the one exception: it names no one, and a
//! receiver needs it to tell contacts apart and to act on
//! `contact.erased`.
//!
//! The body is the Standard Webhooks envelope, `{"type", "timestamp",
//! "data"}`, signed as [`signing`] describes.

pub mod signing;

use std::collections::BTreeMap;
use std::str::FromStr;

use secrecy::SecretBox;
use serde::Serialize;
use serde_json::Value;

use crate::domain::ContactKey;

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

/// One thing that happened to one contact, with everything it could tell
/// a subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub contact: ContactKey,
    /// When it happened (Unix s).
    pub at: u64,
    pub data: BTreeMap<Field, Value>,
}

impl Event {
    pub fn new(kind: EventKind, contact: ContactKey, at: u64) -> Self {
        Event {
            kind,
            contact,
            at,
            data: BTreeMap::new(),
        }
    }

    /// Adds `value` as `field` (a null value adds nothing).
    pub fn with(mut self, field: Field, value: Value) -> Self {
        if !value.is_null() {
            self.data.insert(field, value);
        }
        self
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
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("events", &self.events)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

/// What a subscriber gets of an event: the body to sign and send, and the
/// names of the fields it carries (for the audit log; never the values).
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub body: Vec<u8>,
    pub fields: Vec<&'static str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: BTreeMap<&'static str, &'a Value>,
}

impl Subscriber {
    /// Whether this subscriber takes `kind` at all.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }

    /// The body this subscriber receives for `event`, holding only the
    /// fields its configuration lists (and the pseudonymous contact id);
    /// `None` when it does not take this kind of event.
    pub fn payload(&self, event: &Event) -> Option<Payload> {
        if !self.wants(event.kind) {
            return None;
        }
        let contact = Value::String(event.contact.as_str().to_owned());
        let mut data: BTreeMap<&'static str, &Value> = BTreeMap::new();
        data.insert("contact_id", &contact);
        let mut fields = Vec::new();
        for (field, value) in &event.data {
            if self.fields.contains(field) {
                data.insert(field.name(), value);
                fields.push(field.name());
            }
        }
        let timestamp = time::OffsetDateTime::from_unix_timestamp(event.at as i64)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let body = serde_json::to_vec(&Envelope {
            kind: event.kind.name(),
            timestamp,
            data,
        })
        .ok()?;
        Some(Payload { body, fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subscriber(events: &[EventKind], fields: &[Field]) -> Subscriber {
        Subscriber {
            name: "crm".into(),
            url: "https://crm.example/hooks".parse().expect("url"),
            key: SecretBox::new(Box::new(vec![7; 32])),
            events: events.to_vec(),
            fields: fields.to_vec(),
        }
    }

    fn contact() -> ContactKey {
        ContactKey::parse("0123456789abcdef0123456789abcdef").expect("key")
    }

    #[test]
    fn names_round_trip_and_unknown_ones_say_what_is_known() {
        for k in EventKind::ALL {
            assert_eq!(k.name().parse::<EventKind>(), Ok(k));
        }
        for f in Field::ALL {
            assert_eq!(f.name().parse::<Field>(), Ok(f));
        }
        let err = "contact.deleted".parse::<EventKind>().expect_err("unknown");
        assert!(err.contains("contact.erased"), "{err}");
        let err = "phone".parse::<Field>().expect_err("unknown");
        assert!(err.contains("phone_number"), "{err}");
    }

    #[test]
    fn a_subscriber_gets_only_the_fields_it_lists() {
        let event = Event::new(EventKind::MessageReceived, contact(), 1_764_000_000)
            .with(Field::PhoneNumber, json!("16505550101"))
            .with(Field::Name, json!("Ana Pérez"))
            .with(Field::Text, json!("my card ends 4242"));
        let crm = subscriber(&[EventKind::MessageReceived], &[Field::Name]);
        let p = crm.payload(&event).expect("wanted");
        let raw = String::from_utf8(p.body.clone()).expect("utf-8");
        assert!(!raw.contains("16505550101"), "{raw}");
        assert!(!raw.contains("4242"), "{raw}");
        let v: Value = serde_json::from_slice(&p.body).expect("json");
        assert_eq!(v["type"], "message.received");
        assert_eq!(v["timestamp"], "2025-11-24T16:00:00Z");
        assert_eq!(
            v["data"],
            json!({"contact_id": contact().as_str(), "name": "Ana Pérez"})
        );
        assert_eq!(p.fields, ["name"]);

        let desk = subscriber(
            &[EventKind::MessageReceived],
            &[Field::PhoneNumber, Field::Text],
        );
        let v: Value =
            serde_json::from_slice(&desk.payload(&event).expect("wanted").body).expect("json");
        assert_eq!(v["data"]["phone_number"], "16505550101");
        assert_eq!(v["data"]["text"], "my card ends 4242");
        assert!(v["data"].get("name").is_none());

        assert!(
            subscriber(&[EventKind::ContactErased], &Field::ALL)
                .payload(&event)
                .is_none(),
            "an event it did not subscribe to"
        );
    }
}
