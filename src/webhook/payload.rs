//! The typed model of Meta's WhatsApp Cloud API webhook payload.
//!
//! Written from Meta's webhook reference (see `../shared/META.md` and
//! `fixtures/README.md`). The model is tolerant: unknown fields are ignored,
//! an unknown `field` is kept as [`Change::Unknown`] with its raw JSON, a
//! change whose value does not fit our model is kept as
//! [`Change::Unreadable`], and an unknown message type is kept as
//! [`MessageKind::Unknown`] with its object. Nothing Meta sends is dropped.
//!
//! Serialising a value gives back Meta's shape, so the inbox can store it
//! and later stages read it with the same types.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

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

/// JSON exactly as Meta sent it, with its typed view parsed on demand.
///
/// Items are kept raw so that the inbox stores everything Meta sent, keys
/// and subtypes we do not model included; `Debug` shows only the size.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct Raw<T> {
    json: Box<RawValue>,
    #[serde(skip)]
    typed: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + Serialize> Raw<T> {
    /// The typed view.
    pub fn parse(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.json.get())
    }

    /// Wraps a value we built ourselves.
    pub fn from_typed(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Raw {
            json: serde_json::value::to_raw_value(value)?,
            typed: PhantomData,
        })
    }
}

impl<T> Raw<T> {
    /// The JSON text as sent.
    pub fn get(&self) -> &str {
        self.json.get()
    }

    /// The JSON, untyped.
    pub fn into_json(self) -> Box<RawValue> {
        self.json
    }
}

impl<T> fmt::Debug for Raw<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Raw({} bytes)", self.json.get().len())
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

/// A customer as Meta describes them in `contacts[]`.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// Business-scoped user id (BSUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_key_hash: Option<String>,
}

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// An error object as Meta sends it in webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<ErrorData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// Unix seconds; Meta sends them as strings, sometimes as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnixTime(pub i64);

impl<'de> Deserialize<'de> for UnixTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            N(i64),
            S(String),
        }
        match Either::deserialize(d)? {
            Either::N(n) => Ok(UnixTime(n)),
            Either::S(s) => s
                .trim()
                .parse()
                .map(UnixTime)
                .map_err(|_| serde::de::Error::custom("timestamp is not a number of seconds")),
        }
    }
}

impl Serialize for UnixTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

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

macro_rules! optional_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }
    };
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Text {
    pub body: String,
}

optional_fields! {
    /// Image, audio, video, document or sticker. `id` resolves to a download
    /// URL through the Graph API; `url` is sent directly on newer payloads.
    pub struct Media {
        id: String,
        mime_type: String,
        sha256: String,
        caption: String,
        filename: String,
        voice: bool,
        animated: bool,
        url: String,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

optional_fields! {
    /// A contact card the customer shared.
    pub struct SharedContact {
        name: ContactName,
        phones: Vec<ContactPhone>,
        emails: Vec<ContactEmail>,
        org: ContactOrg,
        addresses: Vec<ContactAddress>,
        urls: Vec<ContactUrl>,
        birthday: String,
    }
}

optional_fields! {
    pub struct ContactName {
        formatted_name: String,
        first_name: String,
        last_name: String,
        middle_name: String,
        suffix: String,
        prefix: String,
    }
}

optional_fields! {
    pub struct ContactPhone {
        phone: String,
        wa_id: String,
        #[serde(rename = "type")]
        kind: String,
    }
}

optional_fields! {
    pub struct ContactEmail {
        email: String,
        #[serde(rename = "type")]
        kind: String,
    }
}

optional_fields! {
    pub struct ContactOrg {
        company: String,
        department: String,
        title: String,
    }
}

optional_fields! {
    pub struct ContactAddress {
        street: String,
        city: String,
        state: String,
        zip: String,
        country: String,
        country_code: String,
        #[serde(rename = "type")]
        kind: String,
    }
}

optional_fields! {
    pub struct ContactUrl {
        url: String,
        #[serde(rename = "type")]
        kind: String,
    }
}

/// A reply to an interactive message we sent (button, list, WhatsApp Flow).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Interactive {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button_reply: Option<ReplyChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_reply: Option<ReplyChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfm_reply: Option<NfmReply>,
    /// Subtypes we do not model (their object is kept here).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Interactive {
    /// The id of the button or list row the customer chose.
    pub fn reply_id(&self) -> Option<&str> {
        self.button_reply
            .as_ref()
            .or(self.list_reply.as_ref())
            .map(|c| c.id.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplyChoice {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A WhatsApp Flow's answer; `response_json` is a string holding JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NfmReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub response_json: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ButtonTap {
    #[serde(default)]
    pub payload: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reaction {
    pub message_id: String,
    /// Empty or absent when the customer removed the reaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub catalog_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default)]
    pub product_items: Vec<ProductItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductItem {
    pub product_retailer_id: String,
    pub quantity: NumberLike,
    pub item_price: NumberLike,
    pub currency: String,
}

/// A number Meta may send as a JSON number or as a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NumberLike {
    Int(i64),
    Float(f64),
    Text(String),
}

optional_fields! {
    /// A system message, e.g. the customer changed their number.
    pub struct System {
        body: String,
        wa_id: String,
        #[serde(rename = "type")]
        kind: String,
        customer: String,
        identity: String,
        new_wa_id: String,
    }
}

optional_fields! {
    pub struct Unsupported {
        #[serde(rename = "type")]
        kind: String,
    }
}

optional_fields! {
    /// What a message replies to, or that it was forwarded.
    pub struct Context {
        from: String,
        id: String,
        forwarded: bool,
        frequently_forwarded: bool,
        referred_product: ReferredProduct,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReferredProduct {
    pub catalog_id: String,
    pub product_retailer_id: String,
}

optional_fields! {
    /// The Click-to-WhatsApp ad the customer came from.
    pub struct Referral {
        source_url: String,
        source_id: String,
        source_type: String,
        body: String,
        headline: String,
        media_type: String,
        image_url: String,
        video_url: String,
        thumbnail_url: String,
        ctwa_clid: String,
        welcome_message: WelcomeMessage,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WelcomeMessage {
    pub text: String,
}

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

// Personal data: `Debug` names the type and hides the content, so a stray
// `?value` in a log line or a panic message cannot leak it.
macro_rules! opaque_debug {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($t), " { .. }"))
            }
        }
    )*};
}
opaque_debug!(
    Message,
    MessageKind,
    Contact,
    Profile,
    Status,
    UserPreference
);

/// Parses a body (already verified) into a [`Notification`].
pub fn parse(body: &[u8]) -> Result<Notification, serde_json::Error> {
    serde_json::from_slice(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_message(msg: &str) -> Message {
        let body = format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"metadata":{{"display_phone_number":"1","phone_number_id":"2"}},"messages":[{msg}]}}}}]}}]}}"#
        );
        let n = parse(body.as_bytes()).expect("parses");
        match n.entry[0].changes[0].clone() {
            Change::Messages(v) => v.messages[0].parse().expect("typed"),
            other => panic!("not a messages change: {other:?}"),
        }
    }

    #[test]
    fn an_unknown_message_type_is_kept_with_its_object() {
        let m = one_message(
            r#"{"from":"1","id":"w1","timestamp":"5","type":"poll_vote","poll_vote":{"option":"a"}}"#,
        );
        match m.kind {
            MessageKind::Unknown { type_name, body } => {
                assert_eq!(type_name, "poll_vote");
                assert_eq!(body, Some(serde_json::json!({"option":"a"})));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_we_do_not_model_are_kept() {
        let m = one_message(
            r#"{"from":"1","id":"w1","timestamp":"5","type":"text","text":{"body":"hi"},"from_parent_user_id":"US.ENT.1"}"#,
        );
        assert_eq!(
            m.extra.get("from_parent_user_id"),
            Some(&serde_json::json!("US.ENT.1"))
        );
        let v = serde_json::to_value(&m).expect("serialises");
        assert_eq!(v["from_parent_user_id"], "US.ENT.1");
    }

    #[test]
    fn a_message_serialises_back_to_metas_shape() {
        let m = one_message(
            r#"{"from":"1","id":"w1","timestamp":"5","type":"text","text":{"body":"hi"},"context":{"forwarded":true}}"#,
        );
        let v = serde_json::to_value(&m).expect("serialises");
        assert_eq!(v["type"], "text");
        assert_eq!(v["text"]["body"], "hi");
        assert_eq!(v["timestamp"], "5");
        let back: Message = serde_json::from_value(v).expect("round trip");
        assert!(matches!(back.kind, MessageKind::Text(t) if t.body == "hi"));
    }

    #[test]
    fn a_messages_change_we_cannot_read_is_kept_as_unreadable() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":42,"messages":[]}}]}]}"#;
        let n = parse(body).expect("envelope parses");
        assert!(
            matches!(&n.entry[0].changes[0], Change::Unreadable { field, .. } if field == "messages")
        );
    }

    #[test]
    fn timestamps_may_be_strings_or_numbers() {
        let a: UnixTime = serde_json::from_str("\"1764400000\"").expect("string");
        let b: UnixTime = serde_json::from_str("1764400000").expect("number");
        assert_eq!(a, b);
        assert!(serde_json::from_str::<UnixTime>("\"soon\"").is_err());
    }
}
