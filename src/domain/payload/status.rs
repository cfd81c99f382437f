//! Statuses of the messages we sent (sent, delivered, read, failed…),
//! with their conversation and pricing, and the customer's preferences
//! changed in WhatsApp itself.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{MetaError, UnixTime};

/// The state of a message we sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum StatusKind {
    Sent,
    Delivered,
    Read,
    Failed,
    Played,
    Other(String),
}

impl From<String> for StatusKind {
    fn from(s: String) -> Self {
        match s.as_str() {
            "sent" => StatusKind::Sent,
            "delivered" => StatusKind::Delivered,
            "read" => StatusKind::Read,
            "failed" => StatusKind::Failed,
            "played" => StatusKind::Played,
            _ => StatusKind::Other(s),
        }
    }
}

impl From<StatusKind> for String {
    fn from(k: StatusKind) -> Self {
        k.as_str().to_owned()
    }
}

impl StatusKind {
    pub fn as_str(&self) -> &str {
        match self {
            StatusKind::Sent => "sent",
            StatusKind::Delivered => "delivered",
            StatusKind::Read => "read",
            StatusKind::Failed => "failed",
            StatusKind::Played => "played",
            StatusKind::Other(s) => s,
        }
    }
}

/// A status update for a message we sent.
#[derive(Clone, Serialize, Deserialize)]
pub struct Status {
    /// Our message's wamid.
    pub id: String,
    pub status: StatusKind,
    pub timestamp: UnixTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_participant_id: Option<String>,
    /// Echo of what we sent with the message: our outbox job id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_opaque_callback_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Conversation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<MetaError>,
    /// Keys we do not model (e.g. `recipient_identity_key_hash`), kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_timestamp: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<ConversationOrigin>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationOrigin {
    #[serde(rename = "type")]
    pub kind: String,
}

optional_fields! {
    #[derive(Debug)]
    pub struct Pricing {
        billable: bool,
        pricing_model: String,
        #[serde(rename = "type")]
        kind: String,
        category: String,
    }
}

/// A customer stopped or resumed a category of messages in WhatsApp itself.
#[derive(Clone, Serialize, Deserialize)]
pub struct UserPreference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `marketing_messages`.
    pub category: String,
    /// `stop` or `resume`.
    pub value: String,
    pub timestamp: UnixTime,
}

opaque_debug!(Status, UserPreference);
