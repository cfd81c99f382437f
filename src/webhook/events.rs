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
    Change, Contact, Message, MessagesValue, MetaError, Metadata, Notification, Status,
    UserPreference, UserPreferencesValue,
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

fn raw_json<T: Serialize>(v: &T) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(v).ok()
}

/// Splits a delivery into routed events, in the order Meta listed them.
pub fn split(n: Notification, pseudo: &Pseudonymizer, received_at: u64) -> Vec<Routed> {
    let mut out = Vec::new();
    for entry in n.entry {
        let mut s = Splitter {
            pseudo,
            waba: &entry.id,
            received_at,
            out: &mut out,
        };
        for change in entry.changes {
            match change {
                Change::Messages(v) => s.messages(*v),
                Change::UserPreferences(v) => s.preferences(v),
                Change::Unknown { field, value } => s.system(&field, Vec::new(), Some(value), None),
                Change::Unreadable {
                    field,
                    value,
                    error,
                } => s.system(
                    &field,
                    Vec::new(),
                    Some(value),
                    Some(format!("unreadable: {error}")),
                ),
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

/// Routes the changes of one entry (one WhatsApp Business Account).
struct Splitter<'a> {
    pseudo: &'a Pseudonymizer,
    waba: &'a str,
    received_at: u64,
    out: &'a mut Vec<Routed>,
}

impl Splitter<'_> {
    fn origin(&self, metadata: &Metadata) -> Origin {
        Origin {
            waba_id: self.waba.to_owned(),
            phone_number_id: metadata.phone_number_id.clone(),
            display_phone_number: metadata.display_phone_number.clone(),
            received_at: self.received_at,
        }
    }

    /// An event for the system queue, keyed by its content.
    fn system(
        &mut self,
        field: &str,
        errors: Vec<MetaError>,
        value: Option<Box<RawValue>>,
        note: Option<String>,
    ) {
        let errors_json = serde_json::to_string(&errors).unwrap_or_default();
        let raw = value.as_ref().map(|v| v.get()).unwrap_or("");
        let dedup = self.pseudo.tag(
            "dedup-system",
            &content_hash(&[
                self.waba.as_bytes(),
                field.as_bytes(),
                errors_json.as_bytes(),
                raw.as_bytes(),
            ]),
        );
        self.out.push(Routed {
            queue: Queue::System,
            dedup,
            event: Event::System(SystemEvent {
                waba_id: self.waba.to_owned(),
                field: field.to_owned(),
                received_at: self.received_at,
                errors,
                value,
                note,
            }),
        });
    }

    /// An item that names no valid contact: kept in the system queue.
    fn unroutable<T: Serialize>(&mut self, field: &str, item: &T, note: &str) {
        self.system(field, Vec::new(), raw_json(item), Some(note.to_owned()));
    }

    fn preferences(&mut self, v: UserPreferencesValue) {
        let origin = self.origin(&v.metadata);
        for p in v.user_preferences {
            let Some(id) = ContactId::from_parts(p.wa_id.as_deref(), p.user_id.as_deref()) else {
                self.unroutable(
                    "user_preferences",
                    &p,
                    "preference without a valid contact id",
                );
                continue;
            };
            let contact = find_contact(&v.contacts, p.wa_id.as_deref(), p.user_id.as_deref());
            let material = format!(
                "{}\0{}\0{}\0{}",
                id.canonical(),
                p.category,
                p.value,
                p.timestamp.0
            );
            self.out.push(Routed {
                queue: Queue::Contact(self.pseudo.contact_key(&id)),
                dedup: self.pseudo.tag("dedup-preference", &material),
                event: Event::Preference(PreferenceChange {
                    origin: origin.clone(),
                    contact,
                    preference: p,
                }),
            });
        }
    }

    fn messages(&mut self, v: MessagesValue) {
        let origin = self.origin(&v.metadata);
        if !v.errors.is_empty() {
            self.system("messages", v.errors, None, None);
        }
        for m in v.messages {
            let mut contact =
                find_contact(&v.contacts, m.from.as_deref(), m.from_user_id.as_deref());
            if contact.wa_id.is_none() && contact.user_id.is_none() && v.contacts.len() == 1 {
                contact = v.contacts[0].clone();
            }
            let id = ContactId::from_parts(
                m.from.as_deref().or(contact.wa_id.as_deref()),
                m.from_user_id.as_deref().or(contact.user_id.as_deref()),
            );
            let Some(id) = id else {
                self.unroutable("messages", &m, "message without a valid sender id");
                continue;
            };
            self.out.push(Routed {
                queue: Queue::Contact(self.pseudo.contact_key(&id)),
                dedup: self.pseudo.tag("dedup-message", &m.id),
                event: Event::Message(Box::new(InboundMessage {
                    origin: origin.clone(),
                    contact,
                    message: m,
                })),
            });
        }
        for st in v.statuses {
            let id =
                ContactId::from_parts(st.recipient_id.as_deref(), st.recipient_user_id.as_deref());
            let material = format!("{}\0{}", st.id, st.status.as_str());
            self.out.push(Routed {
                queue: match id {
                    Some(id) => Queue::Contact(self.pseudo.contact_key(&id)),
                    None => Queue::System,
                },
                dedup: self.pseudo.tag("dedup-status", &material),
                event: Event::Status(StatusUpdate {
                    origin: origin.clone(),
                    status: st,
                }),
            });
        }
    }
}

/// The de-duplication key of a quarantined body: its content hash.
pub fn quarantine_dedup(pseudo: &Pseudonymizer, body: &[u8]) -> String {
    pseudo.tag("dedup-quarantine", &content_hash(&[body]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Key32;

    fn routed(value: &str) -> Vec<Routed> {
        let body = format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{value}}}]}}]}}"#
        );
        let n = crate::webhook::payload::parse(body.as_bytes()).expect("parses");
        split(n, &Pseudonymizer::new(&Key32::new([1; 32]), None), 7)
    }

    const META: &str = r#""metadata":{"display_phone_number":"1","phone_number_id":"2"}"#;

    #[test]
    fn a_message_without_a_valid_sender_is_kept_in_the_system_queue() {
        let r = routed(&format!(
            r#"{{{META},"messages":[{{"from":"not a number","id":"w1","timestamp":"5","type":"text","text":{{"body":"hi"}}}}]}}"#
        ));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].queue, Queue::System);
        let Event::System(s) = &r[0].event else {
            panic!("not system")
        };
        assert!(s.value.as_ref().is_some_and(|v| v.get().contains("\"hi\"")));
    }

    #[test]
    fn a_sender_named_only_in_the_single_contact_is_found_there() {
        let r = routed(&format!(
            r#"{{{META},"contacts":[{{"user_id":"US.123456789"}}],"messages":[{{"id":"w1","timestamp":"5","type":"text","text":{{"body":"hi"}}}}]}}"#
        ));
        assert!(matches!(r[0].queue, Queue::Contact(_)));
    }

    #[test]
    fn the_same_message_id_gives_the_same_key_and_statuses_differ_by_state() {
        let msg = |id: &str| {
            routed(&format!(
                r#"{{{META},"messages":[{{"from":"16505550101","id":"{id}","timestamp":"5","type":"text","text":{{"body":"x"}}}}]}}"#
            ))[0]
                .dedup
                .clone()
        };
        assert_eq!(msg("w1"), msg("w1"));
        assert_ne!(msg("w1"), msg("w2"));
        let st = |state: &str| {
            routed(&format!(
                r#"{{{META},"statuses":[{{"id":"w9","status":"{state}","timestamp":"5","recipient_id":"16505550101"}}]}}"#
            ))[0]
                .dedup
                .clone()
        };
        assert_eq!(st("read"), st("read"));
        assert_ne!(st("read"), st("delivered"));
    }
}
