//! Splits a verified delivery into inbox events, each routed to its queue
//! with a de-duplication key.
//!
//! A delivery is handled whole: every entry, change, message, status and
//! preference becomes an event. Messages are keyed by their wamid, statuses
//! by (wamid, status), preferences by (contact, category, value, time), and
//! account-level or unknown changes by a hash of their content.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::payload::{
    Change, Contact, Message, MessagesValue, MetaError, Notification, Status, UserPreference,
};
use crate::domain::ContactId;
use crate::privacy::pseudonym::Pseudonymizer;
use crate::store::Queue;

/// What the inbox holds (sealed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Message(Box<InboundMessage>),
    Status(StatusUpdate),
    Preference(PreferenceChange),
    System(SystemEvent),
}

/// Where an event came in: the WhatsApp Business Account and number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Origin {
    pub waba_id: String,
    pub phone_number_id: String,
    pub display_phone_number: String,
    /// When we received it (Unix seconds).
    pub received_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundMessage {
    pub origin: Origin,
    /// The sender as `contacts[]` describes them (ids at least).
    pub contact: Contact,
    pub message: Message,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub origin: Origin,
    pub status: Status,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreferenceChange {
    pub origin: Origin,
    pub contact: Contact,
    pub preference: UserPreference,
}

/// Something that concerns no single contact, or that we could not route:
/// account-level errors, unknown fields, unreadable changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemEvent {
    pub waba_id: String,
    pub field: String,
    pub received_at: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<MetaError>,
    /// The change's value (or the item) as Meta sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Box<RawValue>>,
    /// Why it landed here, for an operator (never shown in logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Event {
    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Event::Message(_) => "message",
            Event::Status(_) => "status",
            Event::Preference(_) => "preference",
            Event::System(_) => "system",
        }
    }
}

/// An event with its queue and de-duplication key.
#[derive(Debug, Clone)]
pub struct Routed {
    pub queue: Queue,
    pub dedup: String,
    pub event: Event,
}

fn content_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

fn system(
    pseudo: &Pseudonymizer,
    waba_id: &str,
    field: &str,
    received_at: u64,
    errors: Vec<MetaError>,
    value: Option<Box<RawValue>>,
    note: Option<String>,
) -> Routed {
    let errors_json = serde_json::to_string(&errors).unwrap_or_default();
    let raw = value.as_ref().map(|v| v.get()).unwrap_or("");
    let dedup = pseudo.tag(
        "dedup-system",
        &content_hash(&[
            waba_id.as_bytes(),
            field.as_bytes(),
            errors_json.as_bytes(),
            raw.as_bytes(),
        ]),
    );
    Routed {
        queue: Queue::System,
        dedup,
        event: Event::System(SystemEvent {
            waba_id: waba_id.to_owned(),
            field: field.to_owned(),
            received_at,
            errors,
            value,
            note,
        }),
    }
}

fn raw_json<T: Serialize>(v: &T) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(v).ok()
}

/// Splits a delivery into routed events, in the order Meta listed them.
pub fn split(n: Notification, pseudo: &Pseudonymizer, received_at: u64) -> Vec<Routed> {
    let mut out = Vec::new();
    for entry in n.entry {
        let waba = entry.id;
        for change in entry.changes {
            match change {
                Change::Messages(v) => split_messages(*v, &waba, pseudo, received_at, &mut out),
                Change::UserPreferences(v) => {
                    let origin = Origin {
                        waba_id: waba.clone(),
                        phone_number_id: v.metadata.phone_number_id,
                        display_phone_number: v.metadata.display_phone_number,
                        received_at,
                    };
                    for p in v.user_preferences {
                        let id = ContactId::from_parts(p.wa_id.as_deref(), p.user_id.as_deref());
                        let Some(id) = id else {
                            out.push(system(
                                pseudo,
                                &waba,
                                "user_preferences",
                                received_at,
                                Vec::new(),
                                raw_json(&p),
                                Some("preference without a valid wa_id or user_id".into()),
                            ));
                            continue;
                        };
                        let contact =
                            find_contact(&v.contacts, p.wa_id.as_deref(), p.user_id.as_deref());
                        let dedup = pseudo.tag(
                            "dedup-preference",
                            &format!(
                                "{}\0{}\0{}\0{}",
                                id.canonical(),
                                p.category,
                                p.value,
                                p.timestamp.0
                            ),
                        );
                        out.push(Routed {
                            queue: Queue::Contact(pseudo.contact_key(&id)),
                            dedup,
                            event: Event::Preference(PreferenceChange {
                                origin: origin.clone(),
                                contact,
                                preference: p,
                            }),
                        });
                    }
                }
                Change::Unknown { field, value } => out.push(system(
                    pseudo,
                    &waba,
                    &field,
                    received_at,
                    Vec::new(),
                    Some(value),
                    None,
                )),
                Change::Unreadable {
                    field,
                    value,
                    error,
                } => out.push(system(
                    pseudo,
                    &waba,
                    &field,
                    received_at,
                    Vec::new(),
                    Some(value),
                    Some(format!("unreadable: {error}")),
                )),
            }
        }
    }
    out
}

/// The `contacts[]` entry for a sender, or one made of the ids we have.
fn find_contact(contacts: &[Contact], wa_id: Option<&str>, user_id: Option<&str>) -> Contact {
    contacts
        .iter()
        .find(|c| {
            (wa_id.is_some() && c.wa_id.as_deref() == wa_id)
                || (user_id.is_some() && c.user_id.as_deref() == user_id)
        })
        .cloned()
        .unwrap_or_else(|| Contact {
            wa_id: wa_id.map(str::to_owned),
            user_id: user_id.map(str::to_owned),
            ..Contact::default()
        })
}

fn split_messages(
    v: MessagesValue,
    waba: &str,
    pseudo: &Pseudonymizer,
    received_at: u64,
    out: &mut Vec<Routed>,
) {
    let origin = Origin {
        waba_id: waba.to_owned(),
        phone_number_id: v.metadata.phone_number_id.clone(),
        display_phone_number: v.metadata.display_phone_number.clone(),
        received_at,
    };
    if !v.errors.is_empty() {
        out.push(system(
            pseudo,
            waba,
            "messages",
            received_at,
            v.errors,
            None,
            None,
        ));
    }
    for m in v.messages {
        let mut contact = find_contact(&v.contacts, m.from.as_deref(), m.from_user_id.as_deref());
        if contact.wa_id.is_none() && contact.user_id.is_none() && v.contacts.len() == 1 {
            contact = v.contacts[0].clone();
        }
        let id = ContactId::from_parts(
            m.from.as_deref().or(contact.wa_id.as_deref()),
            m.from_user_id.as_deref().or(contact.user_id.as_deref()),
        );
        let Some(id) = id else {
            out.push(system(
                pseudo,
                waba,
                "messages",
                received_at,
                Vec::new(),
                raw_json(&m),
                Some("message without a valid sender id".into()),
            ));
            continue;
        };
        out.push(Routed {
            queue: Queue::Contact(pseudo.contact_key(&id)),
            dedup: pseudo.tag("dedup-message", &m.id),
            event: Event::Message(Box::new(InboundMessage {
                origin: origin.clone(),
                contact,
                message: m,
            })),
        });
    }
    for s in v.statuses {
        let id = ContactId::from_parts(s.recipient_id.as_deref(), s.recipient_user_id.as_deref());
        let dedup = pseudo.tag("dedup-status", &format!("{}\0{}", s.id, s.status.as_str()));
        let queue = match id {
            Some(id) => Queue::Contact(pseudo.contact_key(&id)),
            None => Queue::System,
        };
        out.push(Routed {
            queue,
            dedup,
            event: Event::Status(StatusUpdate {
                origin: origin.clone(),
                status: s,
            }),
        });
    }
}

/// The de-duplication key of a quarantined body: its content hash.
pub fn quarantine_dedup(pseudo: &Pseudonymizer, body: &[u8]) -> String {
    pseudo.tag("dedup-quarantine", &content_hash(&[body]))
}
