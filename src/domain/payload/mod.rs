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
//!
//! - `envelope`: the POST body down to each change's value;
//! - `raw`: items kept as sent, parsed on demand;
//! - `common`: what messages, statuses and preferences share (the
//!   customer, errors, timestamps);
//! - `message`: an inbound message and its `type`;
//! - `content`: what each type of message carries;
//! - `status`: statuses of our messages, and the customer's preferences.

/// A struct whose fields are all optional: absent when not sent, left out
/// when serialised.
macro_rules! optional_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Default, Serialize, Deserialize)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }
    };
}

// Personal data: `Debug` names the type and hides the content, so a stray
// `?value` in a log line or a panic message cannot leak it.
macro_rules! opaque_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), " { .. }"))
            }
        }
    )*};
}

mod common;
mod content;
mod envelope;
mod message;
mod raw;
mod status;

pub use common::{Contact, ErrorData, MetaError, Profile, UnixTime};
pub use content::{
    ButtonTap, ContactAddress, ContactEmail, ContactName, ContactOrg, ContactPhone, ContactUrl,
    Context, Interactive, Location, Media, NfmReply, NumberLike, Order, ProductItem, Reaction,
    Referral, ReferredProduct, ReplyChoice, SharedContact, System, Text, Unsupported,
    WelcomeMessage,
};
pub use envelope::{Change, Entry, MessagesValue, Metadata, Notification, UserPreferencesValue};
pub use message::{Message, MessageKind};
pub use raw::Raw;
pub use status::{Conversation, ConversationOrigin, Pricing, Status, StatusKind, UserPreference};

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
