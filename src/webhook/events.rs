//! Splits a verified delivery into inbox events, each routed to its queue
//! with a de-duplication key.
//!
//! A delivery is handled whole: every entry, change, message, status and
//! preference becomes an event. Messages are keyed by their wamid, statuses
//! by (wamid, status), preferences by (contact, category, value, time), and
//! account-level or unknown changes by a hash of their content.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::config::businesses::Directory;
use crate::crypto::pseudonym::Pseudonymizer;
use crate::domain::inbound::{
    Arrival, InboundMessage, InboxEvent, PreferenceChange, StatusUpdate, SystemEvent,
};
use crate::domain::payload::{
    Change, Contact, Message, MessagesValue, Metadata, Notification, Raw, Status, UnixTime,
    UserPreference, UserPreferencesValue,
};
use crate::domain::{BusinessId, ContactId, ContactKey, UserId, WaId};
use crate::offboard::removed::Gone;
use crate::store::Queue;

/// An event with its queue and de-duplication key.
#[derive(Debug, Clone)]
pub struct Routed {
    pub queue: Queue,
    pub dedup: String,
    pub event: InboxEvent,
    /// The keys of the ids the event names (a contact's only): the queue
    /// is the number's key when there is one, until the webhook resolves
    /// them through the contact links ([`crate::store::links`]).
    pub ids: Ids,
}

/// The pseudonymous keys of a customer's ids, as one event gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    /// Their number's (wa_id).
    pub wa: Option<ContactKey>,
    /// Their business-scoped user id's.
    pub user: Option<ContactKey>,
}

impl Ids {
    fn of(
        pseudo: &Pseudonymizer,
        business: &BusinessId,
        wa_id: Option<&str>,
        user_id: Option<&str>,
    ) -> Ids {
        Ids {
            wa: wa_id
                .and_then(WaId::parse)
                .map(|w| pseudo.contact_key_in(business, &ContactId::WaId(w))),
            user: user_id
                .and_then(UserId::parse)
                .map(|u| pseudo.contact_key_in(business, &ContactId::UserId(u))),
        }
    }
}

fn content_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Splits a delivery into routed events, in the order Meta listed them.
/// Each change goes to the business that owns its phone number id, its
/// customers keyed as that business's contacts; a change for a number no
/// business owns is kept whole in the system queue (kind
/// `unknown_number`), read by nobody's flows. A change for a business
/// being removed (`removed`) is counted and dropped.
pub fn split(
    n: Notification,
    pseudo: &Pseudonymizer,
    directory: &Directory,
    removed: &Gone,
    received_at: u64,
) -> Vec<Routed> {
    let mut out = Vec::new();
    for entry in n.entry {
        let mut s = Splitter {
            pseudo,
            business: BusinessId::default_business(),
            waba: &entry.id,
            time: entry.time,
            received_at,
            out: &mut out,
        };
        for change in entry.changes {
            match change {
                Change::Messages(v) => match directory.of_number(&v.metadata.phone_number_id) {
                    b if removed.covers(b.map(|b| b.id.as_str()), &v.metadata.phone_number_id) => {
                        discarded("messages")
                    }
                    Some(b) => {
                        s.business = b.id.clone();
                        s.messages(*v)
                    }
                    None => s.unknown_number("messages", messages_json(*v)),
                },
                Change::UserPreferences(v) => {
                    match directory.of_number(&v.metadata.phone_number_id) {
                        b if removed
                            .covers(b.map(|b| b.id.as_str()), &v.metadata.phone_number_id) =>
                        {
                            discarded("user_preferences")
                        }
                        Some(b) => {
                            s.business = b.id.clone();
                            s.preferences(v)
                        }
                        None => s.unknown_number("user_preferences", preferences_json(v)),
                    }
                }
                Change::Unknown { field, value } => s.system(&field, "value", value, None),
                Change::Unreadable {
                    field,
                    value,
                    error,
                } => s.system(&field, "value", value, Some(format!("unreadable: {error}"))),
            }
        }
    }
    out
}

/// A change for a business being removed: answered 200 like any other,
/// counted, and not kept (nothing of it may stay).
fn discarded(field: &str) {
    crate::metrics::global()
        .webhook_requests
        .with_label_values(&["business_removed"])
        .inc();
    tracing::info!(field, "webhook: a change for a removed business; discarded");
}

/// The typed `contacts[]` entries that parse (the others are kept apart).
fn typed_contacts(contacts: &[Raw<Contact>]) -> Vec<(Contact, &Raw<Contact>)> {
    contacts
        .iter()
        .filter_map(|raw| raw.parse().ok().map(|c| (c, raw)))
        .collect()
}

/// The `contacts[]` entry for a sender, or one made of the ids we have.
fn find_contact(
    contacts: &[(Contact, &Raw<Contact>)],
    wa_id: Option<&str>,
    user_id: Option<&str>,
) -> Option<(Contact, Raw<Contact>)> {
    contacts
        .iter()
        .find(|(c, _)| {
            (wa_id.is_some() && c.wa_id.as_deref() == wa_id)
                || (user_id.is_some() && c.user_id.as_deref() == user_id)
        })
        .map(|(c, raw)| (c.clone(), (*raw).clone()))
}

fn made_up_contact(wa_id: Option<&str>, user_id: Option<&str>) -> Raw<Contact> {
    let contact = Contact {
        wa_id: wa_id.map(str::to_owned),
        user_id: user_id.map(str::to_owned),
        ..Contact::default()
    };
    Raw::from_typed(&contact).unwrap_or_else(|_| unreachable!("a Contact always serialises"))
}

/// A change value as JSON again: its metadata, its lists as Meta sent
/// them, and the keys we do not model.
fn value_json(
    metadata: &Metadata,
    lists: Vec<(&str, Vec<Box<RawValue>>)>,
    other: BTreeMap<String, Box<RawValue>>,
) -> Option<Box<RawValue>> {
    let mut map: BTreeMap<String, Box<RawValue>> = other;
    map.insert(
        "metadata".into(),
        serde_json::value::to_raw_value(metadata).ok()?,
    );
    for (key, items) in lists {
        map.insert(key.into(), serde_json::value::to_raw_value(&items).ok()?);
    }
    serde_json::value::to_raw_value(&map).ok()
}

fn raws<T>(items: Vec<Raw<T>>) -> Vec<Box<RawValue>> {
    items.into_iter().map(Raw::into_json).collect()
}

fn messages_json(v: MessagesValue) -> Option<Box<RawValue>> {
    let lists = vec![
        ("contacts", raws(v.contacts)),
        ("messages", raws(v.messages)),
        ("statuses", raws(v.statuses)),
        ("errors", raws(v.errors)),
    ];
    value_json(&v.metadata, lists, v.other)
}

fn preferences_json(v: UserPreferencesValue) -> Option<Box<RawValue>> {
    let lists = vec![
        ("contacts", raws(v.contacts)),
        ("user_preferences", raws(v.user_preferences)),
    ];
    value_json(&v.metadata, lists, v.other)
}

/// Routes the changes of one entry (one WhatsApp Business Account).
struct Splitter<'a> {
    pseudo: &'a Pseudonymizer,
    /// The business of the change being split.
    business: BusinessId,
    waba: &'a str,
    time: Option<UnixTime>,
    received_at: u64,
    out: &'a mut Vec<Routed>,
}

impl Splitter<'_> {
    fn origin(&self, metadata: &Metadata) -> Arrival {
        Arrival {
            waba_id: self.waba.to_owned(),
            phone_number_id: metadata.phone_number_id.clone(),
            display_phone_number: metadata.display_phone_number.clone(),
            received_at: self.received_at,
        }
    }

    /// An event for the system queue. Such events carry no id of Meta's, so
    /// they are de-duplicated by content (and the entry's time when Meta
    /// gives one): identical ones within 8 days are kept once.
    fn system(&mut self, field: &str, kind: &str, value: Box<RawValue>, note: Option<String>) {
        let time = self.time.map(|t| t.0.to_string()).unwrap_or_default();
        let dedup = self.pseudo.tag(
            "dedup-system",
            &content_hash(&[
                self.waba.as_bytes(),
                time.as_bytes(),
                field.as_bytes(),
                kind.as_bytes(),
                value.get().as_bytes(),
            ]),
        );
        self.out.push(Routed {
            queue: Queue::System,
            dedup,
            event: InboxEvent::System(SystemEvent {
                waba_id: self.waba.to_owned(),
                field: field.to_owned(),
                received_at: self.received_at,
                kind: kind.to_owned(),
                value: Some(value),
                note,
            }),
            ids: Ids::default(),
        });
    }

    /// A change for a phone number id no business owns: kept whole in the
    /// system queue, counted, answered 200 like any other.
    fn unknown_number(&mut self, field: &str, value: Option<Box<RawValue>>) {
        crate::metrics::global()
            .webhook_requests
            .with_label_values(&["unknown_number"])
            .inc();
        tracing::warn!(
            field,
            "webhook: a change for a phone number id no business owns; kept in the system queue"
        );
        if let Some(value) = value {
            self.system(
                field,
                "unknown_number",
                value,
                Some("no business owns this phone number id".into()),
            );
        }
    }

    /// An item we cannot route or read: kept whole in the system queue.
    fn unroutable<T>(&mut self, field: &str, item: Raw<T>, note: String) {
        self.system(field, "item", item.into_json(), Some(note));
    }

    /// Keys of a change value we do not model: kept together.
    fn other_keys(&mut self, field: &str, other: &BTreeMap<String, Box<RawValue>>) {
        if other.is_empty() {
            return;
        }
        if let Ok(value) = serde_json::value::to_raw_value(other) {
            self.system(field, "other_keys", value, None);
        }
    }

    fn preferences(&mut self, v: UserPreferencesValue) {
        let origin = self.origin(&v.metadata);
        self.other_keys("user_preferences", &v.other);
        let contacts = typed_contacts(&v.contacts);
        for raw in v.user_preferences {
            let p: UserPreference = match raw.parse() {
                Ok(p) => p,
                Err(e) => {
                    self.unroutable("user_preferences", raw, format!("unreadable: {e}"));
                    continue;
                }
            };
            let Some(id) = ContactId::from_parts(p.wa_id.as_deref(), p.user_id.as_deref()) else {
                self.unroutable("user_preferences", raw, "no valid contact id".into());
                continue;
            };
            let found = find_contact(&contacts, p.wa_id.as_deref(), p.user_id.as_deref());
            let ids = Ids::of(
                self.pseudo,
                &self.business,
                p.wa_id
                    .as_deref()
                    .or(found.as_ref().and_then(|(c, _)| c.wa_id.as_deref())),
                p.user_id
                    .as_deref()
                    .or(found.as_ref().and_then(|(c, _)| c.user_id.as_deref())),
            );
            let contact = found
                .map(|(_, raw)| raw)
                .unwrap_or_else(|| made_up_contact(p.wa_id.as_deref(), p.user_id.as_deref()));
            let material = format!(
                "{}\0{}\0{}\0{}",
                id.canonical(),
                p.category,
                p.value,
                p.timestamp.0
            );
            self.out.push(Routed {
                queue: Queue::Contact(self.pseudo.contact_key_in(&self.business, &id)),
                dedup: self.pseudo.tag("dedup-preference", &material),
                event: InboxEvent::Preference(PreferenceChange {
                    origin: origin.clone(),
                    contact,
                    preference: raw,
                    grant_refused: false,
                }),
                ids,
            });
        }
    }

    fn messages(&mut self, v: MessagesValue) {
        let origin = self.origin(&v.metadata);
        self.other_keys("messages", &v.other);
        if !v.errors.is_empty()
            && let Ok(errors) = serde_json::value::to_raw_value(&v.errors)
        {
            self.system("messages", "errors", errors, None);
        }
        let contacts = typed_contacts(&v.contacts);
        if contacts.len() < v.contacts.len() {
            for raw in v.contacts.iter().filter(|r| r.parse().is_err()) {
                self.unroutable("messages", raw.clone(), "unreadable contact".into());
            }
        }
        for raw in v.messages {
            let m: Message = match raw.parse() {
                Ok(m) => m,
                Err(e) => {
                    self.unroutable("messages", raw, format!("unreadable message: {e}"));
                    continue;
                }
            };
            let mut found = find_contact(&contacts, m.from.as_deref(), m.from_user_id.as_deref());
            if found.is_none()
                && m.from.is_none()
                && m.from_user_id.is_none()
                && contacts.len() == 1
            {
                found = Some((contacts[0].0.clone(), contacts[0].1.clone()));
            }
            let (wa_id, user_id) = match &found {
                Some((c, _)) => (
                    m.from.as_deref().or(c.wa_id.as_deref()),
                    m.from_user_id.as_deref().or(c.user_id.as_deref()),
                ),
                None => (m.from.as_deref(), m.from_user_id.as_deref()),
            };
            let Some(id) = ContactId::from_parts(wa_id, user_id) else {
                self.unroutable("messages", raw, "message without a valid sender id".into());
                continue;
            };
            let ids = Ids::of(self.pseudo, &self.business, wa_id, user_id);
            let contact = match found {
                Some((_, raw)) => raw,
                None => made_up_contact(wa_id, user_id),
            };
            self.out.push(Routed {
                queue: Queue::Contact(self.pseudo.contact_key_in(&self.business, &id)),
                dedup: self.pseudo.tag("dedup-message", &m.id),
                event: InboxEvent::Message(Box::new(InboundMessage {
                    origin: origin.clone(),
                    contact,
                    message: raw,
                    consent: None,
                    grant_refused: false,
                })),
                ids,
            });
        }
        for raw in v.statuses {
            let st: Status = match raw.parse() {
                Ok(st) => st,
                Err(e) => {
                    self.unroutable("messages", raw, format!("unreadable status: {e}"));
                    continue;
                }
            };
            let id =
                ContactId::from_parts(st.recipient_id.as_deref(), st.recipient_user_id.as_deref());
            let material = format!("{}\0{}", st.id, st.status.as_str());
            self.out.push(Routed {
                queue: match id {
                    Some(id) => Queue::Contact(self.pseudo.contact_key_in(&self.business, &id)),
                    None => Queue::System,
                },
                dedup: self.pseudo.tag("dedup-status", &material),
                event: InboxEvent::Status(StatusUpdate {
                    origin: origin.clone(),
                    status: raw,
                }),
                ids: Ids::of(
                    self.pseudo,
                    &self.business,
                    st.recipient_id.as_deref(),
                    st.recipient_user_id.as_deref(),
                ),
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
        let n = crate::domain::payload::parse(body.as_bytes()).expect("parses");
        let one = Directory::default_only();
        split(
            n,
            &Pseudonymizer::new(&Key32::new([1; 32]), None),
            &one,
            &Gone::default(),
            7,
        )
    }

    const META: &str = r#""metadata":{"display_phone_number":"1","phone_number_id":"2"}"#;

    #[test]
    fn a_message_without_a_valid_sender_is_kept_in_the_system_queue() {
        let r = routed(&format!(
            r#"{{{META},"messages":[{{"from":"not a number","id":"w1","timestamp":"5","type":"text","text":{{"body":"hi"}}}}]}}"#
        ));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].queue, Queue::System);
        let InboxEvent::System(s) = &r[0].event else {
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

    #[test]
    fn one_unreadable_message_does_not_take_its_neighbours_with_it() {
        let r = routed(&format!(
            r#"{{{META},"messages":[{{"from":"16505550101","id":"w1","type":"text","text":{{"body":"no time"}}}},{{"from":"16505550102","id":"w2","timestamp":"5","type":"text","text":{{"body":"fine"}}}}],"statuses":[{{"status":"read"}}]}}"#
        ));
        let labels: Vec<(&str, bool)> = r
            .iter()
            .map(|x| (x.event.label(), x.queue == Queue::System))
            .collect();
        assert_eq!(
            labels,
            [("system", true), ("message", false), ("system", true)],
            "the bad message and the bad status are kept apart, the good message is routed"
        );
    }

    #[test]
    fn everything_meta_sends_is_kept_even_what_we_do_not_model() {
        let r = routed(&format!(
            r#"{{{META},"calls":[{{"id":"c1"}}],"contacts":[{{"wa_id":"16505550101","future":1}}],"messages":[{{"from":"16505550101","id":"w1","timestamp":"5","type":"interactive","interactive":{{"type":"call_permission_reply","call_permission_reply":{{"response":"accept"}}}},"context":{{"from_user_id":"US.1"}}}}],"errors":[{{"title":"no code"}}]}}"#
        ));
        let kinds: Vec<String> = r
            .iter()
            .map(|x| match &x.event {
                InboxEvent::System(s) => format!("system:{}", s.kind),
                other => other.label().to_owned(),
            })
            .collect();
        assert_eq!(kinds, ["system:other_keys", "system:errors", "message"]);
        let InboxEvent::System(other) = &r[0].event else {
            panic!("not system")
        };
        assert!(
            other
                .value
                .as_ref()
                .is_some_and(|v| v.get().contains("\"c1\""))
        );
        let InboxEvent::Message(m) = &r[2].event else {
            panic!("not a message")
        };
        let stored = serde_json::to_string(&**m).expect("json");
        for kept in ["call_permission_reply", "accept", "from_user_id", "future"] {
            assert!(stored.contains(kept), "{kept} lost: {stored}");
        }
        let typed = m.message.parse().expect("typed view");
        assert_eq!(typed.kind.type_name(), "interactive");
    }
}
