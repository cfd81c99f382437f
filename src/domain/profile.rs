//! What whatsify keeps about a contact, sealed in the store: the
//! [`Profile`] (kept beyond one conversation) and the [`Conversation`]
//! (the flow [`Session`] and where replies go), with the contexts each is
//! sealed under.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ContactKey;
use super::outbound::Recipient;

/// A contact's place in the flows. Stored per contact; ids (not indexes),
/// so that a reload of the flows keeps sessions meaningful.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub flow: String,
    pub step: String,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Failed answers so far at the current `ask`.
    #[serde(default)]
    pub retries: u32,
    /// When the current step times out (Unix seconds).
    #[serde(default)]
    pub deadline: Option<u64>,
    /// Last input (Unix seconds), for `flows.session_ttl`.
    pub last_active: u64,
}

/// What the engine may read about the contact (and what flows may change).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactView {
    pub name: Option<String>,
    pub tags: BTreeSet<String>,
}

/// What a contact's conversation keeps between messages (sealed in the
/// store as its session).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub session: Option<Session>,
    /// Where the last message came from, for replies a timeout triggers.
    #[serde(default)]
    pub recipient: Option<Recipient>,
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// When the customer last wrote to that number (Unix s): the start of
    /// the 24-hour window replies rely on.
    #[serde(default)]
    pub last_inbound: Option<u64>,
    /// The flow steps run while handling this claim (anonymous statistics;
    /// never stored with the session).
    #[serde(skip)]
    pub steps_run: Vec<String>,
    /// The flows that ended while handling this claim, with the variables
    /// they collected (for `flow.completed`; never stored).
    #[serde(skip)]
    pub completed: Vec<(String, BTreeMap<String, String>)>,
}

/// What whatsify keeps about a contact beyond one conversation: sealed in
/// the store, kept `privacy.retention_days` after the contact's last
/// message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The contact as flows see it: the name (one the customer chose wins
    /// over their WhatsApp profile name) and tags.
    #[serde(default)]
    pub contact: ContactView,
    /// The name on the customer's WhatsApp profile, as Meta last sent it.
    #[serde(default)]
    pub whatsapp_name: Option<String>,
    /// The customer chose `contact.name` (a flow's name step).
    #[serde(default)]
    pub name_chosen: bool,
    /// The customer's first and latest message (Unix s).
    #[serde(default)]
    pub first_seen: Option<u64>,
    #[serde(default)]
    pub last_seen: Option<u64>,
    /// The privacy policy version the contact was last shown (or that was
    /// in force at their first message).
    #[serde(default)]
    pub policy_version: Option<String>,
    /// Marketing consent as this contact's messages have set it so far
    /// (the ledger is the record; this decides the confirmations).
    #[serde(default)]
    pub marketing: Option<bool>,
    /// When the last opt-out and opt-in confirmations were sent (Unix s):
    /// a command that changes nothing is not confirmed twice in 24 h.
    #[serde(default)]
    pub opt_out_confirmed_at: Option<u64>,
    #[serde(default)]
    pub opt_in_confirmed_at: Option<u64>,
    /// When the customer asked to erase their data (the buttons to
    /// confirm are valid `privacy.erase_confirm_minutes`).
    #[serde(default)]
    pub erase_asked_at: Option<u64>,
    /// What the audit log holds of the erasure requests (an unconfirmed
    /// one is audited once a day).
    #[serde(default, skip_serializing_if = "is_default")]
    pub erase_audit: EraseAudit,
    /// The second and evidence of the customer's last STOP (or "Stop
    /// promotions"), recorded or not: a START in that same second loses to
    /// it, as the ledger's rule has it, even when that STOP was a repeat
    /// that changed nothing and so is not on record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrew: Option<(u64, String)>,
    /// When a copy of their data was last queued (one a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_asked_at: Option<u64>,
    /// Since when a person has the conversation (a flow's `handoff`):
    /// flows do not answer until the agent closes it.
    #[serde(default)]
    pub handed_off_at: Option<u64>,
    /// Where the contact's messages go (their wa_id, or their
    /// business-scoped user id): campaigns addressed by tag or to every
    /// consenting contact reach them through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
    /// Every id the customer's messages came with (their number and their
    /// business-scoped user id, when Meta gave them): the export lists
    /// both. Sealed with the rest of the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The CRM and helpdesk receivers events about the contact were queued
    /// for: an erasure or a rectification reaches each of them, and the
    /// contact's copy of their data names them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub shared_with: BTreeSet<String>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// What the audit log holds of a contact's erasure requests (kept in the
/// sealed profile).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EraseAudit {
    /// When a request was last audited (Unix s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    /// The request waiting for its answer was audited.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

/// The context a contact's profile is sealed under.
pub fn profile_context(contact: &ContactKey) -> Vec<u8> {
    format!("profile:{contact}").into_bytes()
}

/// The context a contact's session is sealed under.
pub fn session_context(contact: &ContactKey) -> Vec<u8> {
    format!("session:{contact}").into_bytes()
}
