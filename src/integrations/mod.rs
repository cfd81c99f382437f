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

pub mod delivery;
pub mod signing;

use std::collections::BTreeMap;

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::Value;

// Defined with the settings that name them (`[[integrations.webhooks]]`).
pub use crate::config::integrations::{EventKind, Field, Subscriber};
use crate::domain::ContactKey;

/// One thing that happened to one contact, with everything it could tell
/// a subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct HookEvent {
    /// Unique and stable: the same event emitted twice (a step redone
    /// after a crash) is queued once. Sent as `webhook-id`, the same on
    /// every retry, so a receiver can drop a repeat.
    pub id: String,
    pub kind: EventKind,
    pub contact: ContactKey,
    /// When it happened (Unix s).
    pub at: u64,
    pub data: BTreeMap<Field, Value>,
}

impl HookEvent {
    pub fn new(id: String, kind: EventKind, contact: ContactKey, at: u64) -> Self {
        HookEvent {
            id,
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
    pub fn payload(&self, event: &HookEvent) -> Option<Payload> {
        if !self.wants(event.kind) {
            return None;
        }
        self.payload_anyway(event)
    }

    /// [`Subscriber::payload`] whatever its `events` list says (still only
    /// the fields it may have).
    pub fn payload_anyway(&self, event: &HookEvent) -> Option<Payload> {
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

/// `body` (as queued) with only the fields `fields` allows now: a field
/// taken off a receiver's list while events were queued is not sent.
/// Answers the body and the names of the fields it keeps.
pub fn refilter(body: &str, fields: &[Field]) -> Option<(String, Vec<String>)> {
    let mut v: Value = serde_json::from_str(body).ok()?;
    let data = v.get_mut("data")?.as_object_mut()?;
    data.retain(|k, _| k == "contact_id" || fields.iter().any(|f| f.name() == k));
    let kept = data
        .keys()
        .filter(|k| *k != "contact_id")
        .cloned()
        .collect();
    Some((serde_json::to_string(&v).ok()?, kept))
}

/// How long an event is retried before it becomes a dead letter.
pub const DELIVERY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// How long a receiver may take to answer one delivery.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The configured receivers and the client that posts to them.
#[derive(Clone, Default)]
pub struct Hooks {
    receivers: Arc<Vec<Arc<Subscriber>>>,
    /// `None` only if no client could be built (then every delivery is
    /// refused and retried, and the start-up log says why).
    client: Option<reqwest::Client>,
}

/// Why a delivery did not go through (no personal data: the receiver's
/// name and an HTTP status or error kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl Hooks {
    pub fn new(receivers: Vec<Arc<Subscriber>>) -> Self {
        // No redirects: signed personal data goes to the configured URL
        // and nowhere else.
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .inspect_err(|e| tracing::error!(error = %e, "integrations: no HTTP client; nothing will be delivered"))
            .ok();
        Hooks {
            receivers: Arc::new(receivers),
            client,
        }
    }

    pub fn receiver(&self, name: &str) -> Option<&Arc<Subscriber>> {
        self.receivers.iter().find(|r| r.name == name)
    }

    pub fn receivers(&self) -> &[Arc<Subscriber>] {
        &self.receivers
    }

    /// The queue of one receiver's events about one contact: an outbox of
    /// its own (ordered, leased, retried like the contact's messages, and
    /// never holding up the contact's replies or another receiver).
    pub fn queue_of(
        pseudonymizer: &crate::crypto::pseudonym::Pseudonymizer,
        receiver: &str,
        contact: &ContactKey,
    ) -> Option<ContactKey> {
        ContactKey::parse(&pseudonymizer.tag("hook", &format!("{receiver}\0{contact}")))
    }

    /// Posts one delivery, signed; `Ok` when the receiver answered 2xx.
    pub async fn post(
        &self,
        receiver: &Subscriber,
        id: &str,
        body: &[u8],
        now: u64,
    ) -> Result<(), Refused> {
        let Some(client) = &self.client else {
            return Err(Refused(format!("{}: no HTTP client", receiver.name)));
        };
        let signature = signing::signature(receiver.key.expose_secret(), id, now, body);
        let answer = client
            .post(receiver.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(Refused(format!(
                "{} answered {}",
                receiver.name,
                r.status().as_u16()
            ))),
            Err(e) if e.is_timeout() => {
                Err(Refused(format!("{} did not answer in time", receiver.name)))
            }
            Err(e) if e.is_connect() => {
                Err(Refused(format!("{} could not be reached", receiver.name)))
            }
            Err(_) => Err(Refused(format!("{}: the request failed", receiver.name))),
        }
    }

    /// Tells the receivers that serve `business` (those bound to it and
    /// the service's own) that it was taken off the system: a
    /// `business.removed` delivery, `{"business": id}`, signed like every
    /// other, tried up to three times. Answers the receivers that took it.
    /// Not queued: the business's queues are being deleted.
    pub async fn tell_removed(&self, business: &str, now: u64) -> Vec<String> {
        let timestamp = time::OffsetDateTime::from_unix_timestamp(now as i64)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let id = format!("business.removed.{business}");
        let body = serde_json::json!({
            "type": "business.removed",
            "timestamp": timestamp,
            "data": { "business": business },
        })
        .to_string();
        let mut told = Vec::new();
        for receiver in self.receivers.iter().filter(|r| r.serves(Some(business))) {
            for attempt in 0..3u64 {
                match self.post(receiver, &id, body.as_bytes(), now).await {
                    Ok(()) => {
                        told.push(receiver.name.clone());
                        break;
                    }
                    Err(Refused(why)) => {
                        tracing::warn!(why, attempt, "integrations: business.removed not taken");
                        tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                    }
                }
            }
        }
        told
    }

    /// Queues `event` for every receiver that takes it, and for the
    /// receivers in `also` whatever their `events` list (an erasure or a
    /// rectification reaches everyone who got data about the contact, GDPR
    /// Art. 19). Each receiver has its own queue for the contact, sealed
    /// under that queue's data key: durable once this returns, and queued
    /// once per event id however often it is called. Answers the receivers
    /// it was queued for.
    pub async fn emit(
        &self,
        store: &dyn crate::store::Store,
        keyring: &crate::crypto::keyring::Keyring,
        pseudonymizer: &crate::crypto::pseudonym::Pseudonymizer,
        event: &HookEvent,
        also: &std::collections::BTreeSet<String>,
    ) -> Result<Vec<String>, crate::store::StoreError> {
        use crate::store::{Appended, EntryKey, InboxEntry, Queue, StoreError};
        let mut queued = Vec::new();
        // Receivers bound to a business get only its contacts' events.
        let owner = if self.receivers.iter().any(|r| r.business.is_some()) {
            store.owner(&event.contact).await?
        } else {
            None
        };
        for receiver in self.receivers.iter() {
            if !receiver.serves(owner.as_deref()) {
                continue;
            }
            let payload = if also.contains(&receiver.name) {
                receiver.payload_anyway(event)
            } else {
                receiver.payload(event)
            };
            let Some(payload) = payload else {
                continue;
            };
            let Some(queue) = Self::queue_of(pseudonymizer, &receiver.name, &event.contact) else {
                continue;
            };
            let job = crate::domain::outbound::Job {
                id: format!("hook:{}", event.id),
                phone_number_id: String::new(),
                to: crate::domain::outbound::Recipient::UserId(String::new()),
                message: crate::domain::outbound::Message::Hook {
                    receiver: receiver.name.clone(),
                    event: event.kind.name().to_owned(),
                    contact: event.contact.as_str().to_owned(),
                    body: String::from_utf8_lossy(&payload.body).into_owned(),
                    fields: payload.fields.iter().map(|f| (*f).to_owned()).collect(),
                },
                created_at: event.at,
                origin: crate::domain::outbound::Origin::Business,
                window_at: None,
                purpose: None,
            };
            let plain = serde_json::to_vec(&job).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let context = Queue::Outbox(queue.clone()).name().into_bytes();
            let ttl = DELIVERY_WINDOW + Duration::from_secs(2 * 86_400);
            let mut appended = Appended::KeyMismatch;
            for _ in 0..3 {
                let (sealer, key) = match store.data_key(&queue).await? {
                    Some(wrapped) => (
                        keyring
                            .unwrap(&queue, &wrapped)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        EntryKey {
                            wrapped,
                            fresh: false,
                            ttl,
                        },
                    ),
                    None => {
                        let (sealer, wrapped) = keyring
                            .new_data_key(&queue)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        (
                            sealer,
                            EntryKey {
                                wrapped,
                                fresh: true,
                                ttl,
                            },
                        )
                    }
                };
                let sealed = sealer
                    .seal(&plain, &context)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                appended = store
                    .append(vec![InboxEntry {
                        queue: Queue::Outbox(queue.clone()),
                        dedup: format!("{}/{}", receiver.name, event.id),
                        sealed,
                        consent: None,
                        refused: None,
                        key: Some(key),
                    }])
                    .await?
                    .first()
                    .copied()
                    .unwrap_or(Appended::KeyMismatch);
                if appended != Appended::KeyMismatch {
                    break;
                }
            }
            if appended == Appended::KeyMismatch {
                return Err(StoreError::Unavailable(
                    "a receiver queue's data key kept changing".into(),
                ));
            }
            queued.push(receiver.name.clone());
        }
        Ok(queued)
    }
}

/// How often one customer's forwarded messages (`message.received`, sent
/// while they are handed off) are audited per receiver: each delivery is
/// still recorded as a delivery, but the audit log, which is kept, gets one
/// `data_shared` line per receiver and customer in this time, so a customer
/// cannot grow it by writing.
pub const MESSAGE_SHARE_AUDIT_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether a delivery of `event` about `contact` to `receiver` gets its own
/// audit line: always, but for `message.received`, once per
/// [`MESSAGE_SHARE_AUDIT_EVERY`] (when the store cannot say, it does).
pub async fn audit_share(
    store: &dyn crate::store::Store,
    receiver: &str,
    event: &str,
    contact: &str,
) -> bool {
    if event != EventKind::MessageReceived.name() {
        return true;
    }
    let every = MESSAGE_SHARE_AUDIT_EVERY.as_micros() as u64;
    let key = format!("audit-share:{receiver}:{contact}");
    store
        .take_rate(&key, every, 1, 1)
        .await
        .map_or(true, |grant| grant.granted > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subscriber(events: &[EventKind], fields: &[Field]) -> Subscriber {
        Subscriber {
            name: "crm".into(),
            url: "https://crm.example/hooks".parse().expect("url"),
            key: secrecy::SecretBox::new(Box::new(vec![7; 32])),
            events: events.to_vec(),
            fields: fields.to_vec(),
            business: None,
        }
    }

    fn contact() -> ContactKey {
        ContactKey::parse("0123456789abcdef0123456789abcdef").expect("key")
    }

    #[test]
    fn a_field_taken_off_the_list_is_dropped_from_a_queued_body() {
        let body = r#"{"type":"message.received","timestamp":"t","data":{"contact_id":"ab","name":"Ana","text":"my card 4242"}}"#;
        let (kept, fields) = refilter(body, &[Field::Name]).expect("json");
        assert!(!kept.contains("4242"), "{kept}");
        let v: Value = serde_json::from_str(&kept).expect("json");
        assert_eq!(v["data"], json!({"contact_id": "ab", "name": "Ana"}));
        assert_eq!(v["type"], "message.received");
        assert_eq!(fields, ["name"]);
        assert!(refilter("not json", &[]).is_none());
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
        let event = HookEvent::new(
            "msg_1".into(),
            EventKind::MessageReceived,
            contact(),
            1_764_000_000,
        )
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
