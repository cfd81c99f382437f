//! An inbound message: the envelope every type shares, and what it
//! carries by its `type` ([`MessageKind`]), an unknown type kept as sent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    ButtonTap, Context, Interactive, Location, Media, MetaError, Order, Reaction, Referral,
    SharedContact, System, Text, UnixTime, Unsupported,
};

/// An inbound message.
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "RawMessage", into = "RawMessage")]
pub struct Message {
    /// The sender's wa_id; absent for username users Meta withholds it for.
    pub from: Option<String>,
    /// The sender's business-scoped user id.
    pub from_user_id: Option<String>,
    pub id: String,
    pub timestamp: UnixTime,
    pub context: Option<Context>,
    pub referral: Option<Referral>,
    pub errors: Vec<MetaError>,
    pub kind: MessageKind,
    /// Keys we do not model (e.g. `from_parent_user_id`), kept as sent.
    pub extra: Map<String, Value>,
}

/// What a message carries, by its `type`.
#[derive(Clone)]
pub enum MessageKind {
    Text(Text),
    Image(Media),
    Audio(Media),
    Video(Media),
    Document(Media),
    Sticker(Media),
    Location(Location),
    Contacts(Vec<SharedContact>),
    Interactive(Interactive),
    /// A quick-reply tap on a template button.
    Button(ButtonTap),
    Reaction(Reaction),
    Order(Order),
    System(System),
    Unsupported(Option<Unsupported>),
    /// A type we do not know (yet): its name and its object, kept as sent.
    Unknown {
        type_name: String,
        body: Option<Value>,
    },
}

impl MessageKind {
    /// The `type` string Meta uses for this kind.
    pub fn type_name(&self) -> &str {
        match self {
            MessageKind::Text(_) => "text",
            MessageKind::Image(_) => "image",
            MessageKind::Audio(_) => "audio",
            MessageKind::Video(_) => "video",
            MessageKind::Document(_) => "document",
            MessageKind::Sticker(_) => "sticker",
            MessageKind::Location(_) => "location",
            MessageKind::Contacts(_) => "contacts",
            MessageKind::Interactive(_) => "interactive",
            MessageKind::Button(_) => "button",
            MessageKind::Reaction(_) => "reaction",
            MessageKind::Order(_) => "order",
            MessageKind::System(_) => "system",
            MessageKind::Unsupported(_) => "unsupported",
            MessageKind::Unknown { type_name, .. } => type_name,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct RawMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from_user_id: Option<String>,
    id: String,
    timestamp: UnixTime,
    #[serde(rename = "type")]
    type_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<Context>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referral: Option<Referral>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    errors: Vec<MetaError>,
    /// Every other key, among them the object named by `type`.
    #[serde(flatten)]
    rest: Map<String, Value>,
}

fn take<T: serde::de::DeserializeOwned>(rest: &mut Map<String, Value>, key: &str) -> Option<T> {
    rest.get(key)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .inspect(|_| {
            rest.remove(key);
        })
}

impl From<RawMessage> for Message {
    fn from(raw: RawMessage) -> Self {
        let RawMessage {
            from,
            from_user_id,
            id,
            timestamp,
            type_name,
            context,
            referral,
            errors,
            mut rest,
        } = raw;
        let r = &mut rest;
        let known = match type_name.as_str() {
            "text" => take(r, "text").map(MessageKind::Text),
            "image" => take(r, "image").map(MessageKind::Image),
            "audio" => take(r, "audio").map(MessageKind::Audio),
            "video" => take(r, "video").map(MessageKind::Video),
            "document" => take(r, "document").map(MessageKind::Document),
            "sticker" => take(r, "sticker").map(MessageKind::Sticker),
            "location" => take(r, "location").map(MessageKind::Location),
            "contacts" => take(r, "contacts").map(MessageKind::Contacts),
            "interactive" => take(r, "interactive").map(MessageKind::Interactive),
            "button" => take(r, "button").map(MessageKind::Button),
            "reaction" => take(r, "reaction").map(MessageKind::Reaction),
            "order" => take(r, "order").map(MessageKind::Order),
            "system" => take(r, "system").map(MessageKind::System),
            "unsupported" => Some(MessageKind::Unsupported(take(r, "unsupported"))),
            _ => None,
        };
        let kind = known.unwrap_or_else(|| MessageKind::Unknown {
            body: rest.remove(&type_name),
            type_name,
        });
        Message {
            from,
            from_user_id,
            id,
            timestamp,
            context,
            referral,
            errors,
            kind,
            extra: rest,
        }
    }
}

impl From<Message> for RawMessage {
    fn from(m: Message) -> Self {
        let mut rest = m.extra;
        let type_name = m.kind.type_name().to_owned();
        let body = match m.kind {
            MessageKind::Text(v) => serde_json::to_value(v).ok(),
            MessageKind::Image(v)
            | MessageKind::Audio(v)
            | MessageKind::Video(v)
            | MessageKind::Document(v)
            | MessageKind::Sticker(v) => serde_json::to_value(v).ok(),
            MessageKind::Location(v) => serde_json::to_value(v).ok(),
            MessageKind::Contacts(v) => serde_json::to_value(v).ok(),
            MessageKind::Interactive(v) => serde_json::to_value(v).ok(),
            MessageKind::Button(v) => serde_json::to_value(v).ok(),
            MessageKind::Reaction(v) => serde_json::to_value(v).ok(),
            MessageKind::Order(v) => serde_json::to_value(v).ok(),
            MessageKind::System(v) => serde_json::to_value(v).ok(),
            MessageKind::Unsupported(v) => v.and_then(|v| serde_json::to_value(v).ok()),
            MessageKind::Unknown { body, .. } => body,
        };
        if let Some(body) = body {
            rest.insert(type_name.clone(), body);
        }
        RawMessage {
            from: m.from,
            from_user_id: m.from_user_id,
            id: m.id,
            timestamp: m.timestamp,
            type_name,
            context: m.context,
            referral: m.referral,
            errors: m.errors,
            rest,
        }
    }
}

opaque_debug!(Message, MessageKind);
