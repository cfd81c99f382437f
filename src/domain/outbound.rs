//! What whatsify sends: the message kinds the Cloud API takes (a flow
//! step's [`Outgoing`], templates, media, reactions, read receipts), who
//! they go to, and the [`Job`] the outbox holds (sealed) for each.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A message to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outgoing {
    Text {
        body: String,
        preview_url: bool,
    },
    Buttons {
        body: String,
        header: Option<String>,
        footer: Option<String>,
        buttons: Vec<(String, String)>,
    },
    List {
        body: String,
        header: Option<String>,
        footer: Option<String>,
        button: String,
        sections: Vec<ListSection>,
    },
    Media {
        kind: String,
        link: String,
        caption: Option<String>,
        filename: Option<String>,
    },
    Template {
        name: String,
        language: String,
        params: Vec<String>,
        marketing: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListSection {
    pub title: Option<String>,
    /// (id, title, description)
    pub rows: Vec<(String, String, Option<String>)>,
}

/// Who a message goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipient {
    /// A phone number (wa_id, digits).
    WaId(String),
    /// A business-scoped user id, for customers Meta gives no number for.
    UserId(String),
}

/// Why a message is sent: it decides the pacing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// An answer to the customer (a flow's reply): sent at once.
    #[default]
    Reply,
    /// Business-initiated (campaigns, notifications): paced per recipient.
    Business,
}

/// A media object: an uploaded media id or a public link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaRef {
    Id(String),
    Link(String),
}

/// A body parameter of a template (positional, or named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateParam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub text: String,
}

/// What a message says, in the kinds the Cloud API sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// What a flow step says (text, buttons, list, media by link, simple
    /// template).
    Flow { message: Outgoing },
    /// Image or document (or video, audio, sticker) by uploaded id or link.
    Media {
        media: String,
        source: MediaRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
    },
    /// An approved template with its components.
    Template {
        name: String,
        language: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<(String, MediaRef)>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        body: Vec<TemplateParam>,
        /// Payloads of the quick-reply buttons, by index.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        quick_replies: Vec<String>,
        #[serde(default)]
        marketing: bool,
    },
    /// A campaign's approved template, as Meta's `template` object (name,
    /// language, components), its parameters already filled in for the
    /// contact.
    CampaignTemplate { template: Value },
    /// A reaction to one of the customer's messages (empty emoji removes it).
    Reaction { message_id: String, emoji: String },
    /// Marks the customer's message (and the earlier ones) as read.
    MarkRead { message_id: String },
    /// A copy of the customer's data ("MY DATA"): built when its turn
    /// comes (never stored), uploaded as a JSON file and sent as a
    /// document.
    Export,
    /// Not a message: erase everything kept about the contact, once the
    /// messages queued before it (the final confirmation) are out.
    Erase,
    /// Not a message: an event for a CRM or helpdesk receiver (see
    /// [`crate::integrations`]), in that receiver's own queue for the
    /// contact. `body` is exactly what is signed and sent: it holds only
    /// the fields the receiver may have, named in `fields`.
    Hook {
        /// The receiver's configured name.
        receiver: String,
        /// The event (`contact.created`, …).
        event: String,
        /// The contact the event is about (pseudonymous).
        contact: String,
        body: String,
        fields: Vec<String>,
    },
}

impl Message {
    /// Free-form messages need the 24-hour window; templates do not, and a
    /// read receipt is not a message.
    pub fn needs_window(&self) -> bool {
        !matches!(
            self,
            Message::Template { .. }
                | Message::CampaignTemplate { .. }
                | Message::MarkRead { .. }
                | Message::Erase
                | Message::Hook { .. }
                | Message::Flow {
                    message: Outgoing::Template { .. }
                }
        )
    }

    /// The kind, as recorded against the message.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Flow { message } => match message {
                Outgoing::Text { .. } => "text",
                Outgoing::Buttons { .. } | Outgoing::List { .. } => "interactive",
                Outgoing::Media { kind, .. } if kind == "document" => "document",
                Outgoing::Media { .. } => "image",
                Outgoing::Template { .. } => "template",
            },
            Message::Media { .. } => "media",
            Message::Template { .. } | Message::CampaignTemplate { .. } => "template",
            Message::Reaction { .. } => "reaction",
            Message::MarkRead { .. } => "read",
            Message::Export => "export",
            Message::Erase => "erase",
            Message::Hook { .. } => "hook",
        }
    }
}

/// One message to send, as the outbox holds it (sealed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique; sent as `biz_opaque_callback_data` to match statuses.
    pub id: String,
    /// The business number the customer wrote to; replies leave from it.
    pub phone_number_id: String,
    pub to: Recipient,
    pub message: Message,
    /// When the job was queued (Unix seconds).
    pub created_at: u64,
    #[serde(default)]
    pub origin: Origin,
    /// The customer's last message to this number when the job was queued
    /// (Unix seconds): the start of the 24-hour window the job relies on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_at: Option<u64>,
    /// The consent the message needs (`marketing` for promotions): checked
    /// against the contact's ledger right before sending, so a message
    /// queued before a STOP is not sent after it, and a contact with no
    /// record gets none (it fails closed). `None`: a service message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}
