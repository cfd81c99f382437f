//! What comes in: the inbox event (a customer's message, a status, a
//! preference, an agent's action) as the inbox holds it, and the
//! [`Input`] the flow engine reads of a message.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::outbound::Message as OutboundMessage;
use crate::domain::payload::{Contact, Message, MessageKind, Raw, Status, UserPreference};

/// What the inbox holds (sealed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxEvent {
    Message(Box<InboundMessage>),
    Status(StatusUpdate),
    Preference(PreferenceChange),
    System(SystemEvent),
    /// A person of the business acting on a handed-off conversation
    /// (through the admin API), queued in order with the customer's
    /// messages.
    Agent(AgentEvent),
}

/// What an agent did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentEvent {
    /// When the admin API took it (Unix s).
    pub at: u64,
    pub action: AgentAction,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentAction {
    /// A message to the customer (free-form text or a template).
    Message { message: OutboundMessage },
    /// The handoff is over: flows answer again.
    Close,
    /// The privacy desk corrects the profile at the customer's request
    /// (GDPR Art. 16): the name they gave, the tags (`None`: unchanged).
    Rectify {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        tags: Option<std::collections::BTreeSet<String>>,
    },
}

/// Where and when an event came in: the WhatsApp Business Account and
/// number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Arrival {
    pub waba_id: String,
    pub phone_number_id: String,
    pub display_phone_number: String,
    /// When we received it (Unix seconds).
    pub received_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundMessage {
    pub origin: Arrival,
    /// The sender as `contacts[]` describes them (ids at least).
    pub contact: Raw<Contact>,
    pub message: Raw<Message>,
    /// Marketing consent this message gave (`true`, START) or withdrew
    /// (`false`, STOP), as decided and recorded at ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<bool>,
    /// The grant it carried (`consent: Some(true)`) was refused at ingress:
    /// beyond [`crate::domain::consent::GRANTS_PER_DAY`], not recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grant_refused: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub origin: Arrival,
    pub status: Raw<Status>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreferenceChange {
    pub origin: Arrival,
    pub contact: Raw<Contact>,
    pub preference: Raw<UserPreference>,
    /// A Resume refused at ingress (see [`InboundMessage::grant_refused`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grant_refused: bool,
}

/// Something that concerns no single contact, or that we could not route
/// or read: account-level errors (`errors`), unknown fields, unreadable
/// changes or items, keys we do not model.
#[derive(Clone, Serialize, Deserialize)]
pub struct SystemEvent {
    pub waba_id: String,
    pub field: String,
    pub received_at: u64,
    /// What it holds: `value`, `errors`, `item` or `other_keys`.
    pub kind: String,
    /// The change's value, the errors, or the item, as Meta sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Box<RawValue>>,
    /// Why it landed here, for an operator (never shown in logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl std::fmt::Debug for SystemEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemEvent")
            .field("field", &self.field)
            .field("kind", &self.kind)
            .field("bytes", &self.value.as_ref().map(|v| v.get().len()))
            .finish_non_exhaustive()
    }
}

impl InboxEvent {
    /// The business number the event came to (none for a system event).
    pub fn phone_number_id(&self) -> Option<&str> {
        match self {
            InboxEvent::Message(m) => Some(&m.origin.phone_number_id),
            InboxEvent::Status(s) => Some(&s.origin.phone_number_id),
            InboxEvent::Preference(p) => Some(&p.origin.phone_number_id),
            _ => None,
        }
    }

    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            InboxEvent::Message(_) => "message",
            InboxEvent::Status(_) => "status",
            InboxEvent::Preference(_) => "preference",
            InboxEvent::System(_) => "system",
            InboxEvent::Agent(_) => "agent",
        }
    }
}

/// An inbound event, as the engine sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A text message.
    Text(String),
    /// A button or list reply (`id`, `title`), or a template quick reply
    /// (payload as `id`, button text as `title`).
    Choice { id: String, title: String },
    /// Something a flow cannot read: an image, a sticker, an unknown type.
    Unreadable,
    /// Time passed: fire a due timeout.
    Tick,
}

/// What the engine sees of an inbound message.
pub fn input_of(message: &Message) -> Input {
    match &message.kind {
        MessageKind::Text(t) => Input::Text(t.body.clone()),
        MessageKind::Interactive(i) => match (&i.button_reply, &i.list_reply) {
            (Some(c), _) | (None, Some(c)) => Input::Choice {
                id: c.id.clone(),
                title: c.title.clone(),
            },
            _ => Input::Unreadable,
        },
        MessageKind::Button(b) => Input::Choice {
            id: b.payload.clone(),
            title: b.text.clone(),
        },
        _ => Input::Unreadable,
    }
}
