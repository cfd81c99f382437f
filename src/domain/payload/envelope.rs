//! The POST body as Meta sends it: entries of changes, each change read
//! by its `field` into a typed value, or kept raw when unknown or unreadable.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::{Contact, Message, MetaError, Raw, Status, UnixTime, UserPreference};

/// The whole POST body.
#[derive(Debug, Clone, Deserialize)]
pub struct Notification {
    pub object: String,
    #[serde(default)]
    pub entry: Vec<Entry>,
}

/// One WhatsApp Business Account's part of a delivery.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    /// The WhatsApp Business Account id.
    pub id: String,
    /// Sent on some fields (template updates, account updates).
    #[serde(default)]
    pub time: Option<UnixTime>,
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// One change: what `field` says, with its value.
#[derive(Debug, Clone)]
pub enum Change {
    Messages(Box<MessagesValue>),
    UserPreferences(UserPreferencesValue),
    /// A field we do not handle (template updates, account updates, …).
    Unknown {
        field: String,
        value: Box<RawValue>,
    },
    /// A known field whose value did not fit our model.
    Unreadable {
        field: String,
        value: Box<RawValue>,
        error: String,
    },
}

#[derive(Deserialize)]
struct RawChange {
    field: String,
    value: Box<RawValue>,
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let RawChange { field, value } = RawChange::deserialize(d)?;
        let unreadable =
            |e: serde_json::Error, field: String, value: Box<RawValue>| Change::Unreadable {
                field,
                value,
                error: e.to_string(),
            };
        Ok(match field.as_str() {
            "messages" => match serde_json::from_str::<MessagesValue>(value.get()) {
                Ok(v) => Change::Messages(Box::new(v)),
                Err(e) => unreadable(e, field, value),
            },
            "user_preferences" => match serde_json::from_str(value.get()) {
                Ok(v) => Change::UserPreferences(v),
                Err(e) => unreadable(e, field, value),
            },
            _ => Change::Unknown { field, value },
        })
    }
}

/// The business phone number a change concerns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    pub display_phone_number: String,
    pub phone_number_id: String,
}

/// The value of a `messages` change: inbound messages, statuses of our
/// outbound messages, or errors. Items are parsed one at a time (one bad
/// message does not make its neighbours unreadable); keys we do not model
/// are kept in `other`.
#[derive(Debug, Clone)]
pub struct MessagesValue {
    pub metadata: Metadata,
    pub contacts: Vec<Raw<Contact>>,
    pub messages: Vec<Raw<Message>>,
    pub statuses: Vec<Raw<Status>>,
    pub errors: Vec<Raw<MetaError>>,
    pub other: BTreeMap<String, Box<RawValue>>,
}

fn take_list<T, E: serde::de::Error>(
    map: &mut BTreeMap<String, Box<RawValue>>,
    key: &str,
) -> Result<Vec<Raw<T>>, E> {
    match map.remove(key) {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_str(v.get()).map_err(|e| E::custom(format!("{key}: {e}"))),
    }
}

fn take_metadata<E: serde::de::Error>(
    map: &mut BTreeMap<String, Box<RawValue>>,
) -> Result<Metadata, E> {
    let v = map
        .remove("metadata")
        .ok_or_else(|| E::missing_field("metadata"))?;
    serde_json::from_str(v.get()).map_err(|e| E::custom(format!("metadata: {e}")))
}

impl<'de> Deserialize<'de> for MessagesValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = BTreeMap::<String, Box<RawValue>>::deserialize(d)?;
        map.remove("messaging_product");
        Ok(MessagesValue {
            metadata: take_metadata(&mut map)?,
            contacts: take_list(&mut map, "contacts")?,
            messages: take_list(&mut map, "messages")?,
            statuses: take_list(&mut map, "statuses")?,
            errors: take_list(&mut map, "errors")?,
            other: map,
        })
    }
}

/// The value of a `user_preferences` change.
#[derive(Debug, Clone)]
pub struct UserPreferencesValue {
    pub metadata: Metadata,
    pub contacts: Vec<Raw<Contact>>,
    pub user_preferences: Vec<Raw<UserPreference>>,
    pub other: BTreeMap<String, Box<RawValue>>,
}

impl<'de> Deserialize<'de> for UserPreferencesValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = BTreeMap::<String, Box<RawValue>>::deserialize(d)?;
        map.remove("messaging_product");
        Ok(UserPreferencesValue {
            metadata: take_metadata(&mut map)?,
            contacts: take_list(&mut map, "contacts")?,
            user_preferences: take_list(&mut map, "user_preferences")?,
            other: map,
        })
    }
}
