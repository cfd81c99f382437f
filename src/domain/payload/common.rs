//! What messages, statuses and preferences share: the customer as Meta
//! describes them, Meta's error object, and timestamps.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

optional_fields! {
    /// A customer as Meta describes them in `contacts[]`.
    pub struct Contact {
        profile: Profile,
        wa_id: String,
        /// Business-scoped user id (BSUID).
        user_id: String,
        identity_key_hash: String,
    }
}

optional_fields! {
    pub struct Profile {
        name: String,
        username: String,
    }
}

optional_fields! {
    /// An error object as Meta sends it in webhooks.
    #[derive(Debug)]
    pub struct MetaError {
        code: i64,
        title: String,
        message: String,
        error_data: ErrorData,
        details: String,
        href: String,
    }
}

optional_fields! {
    #[derive(Debug)]
    pub struct ErrorData {
        details: String,
    }
}

opaque_debug!(Contact, Profile);

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
