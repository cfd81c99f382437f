//! Identifiers that cross module boundaries, built only by parsing.
//!
//! A customer is known to us by their WhatsApp id (`wa_id`, a phone number
//! in digits) or, when they use a username and Meta withholds the number,
//! by the business-scoped user id (`user_id`, e.g. `US.1349…`). Neither
//! ever appears in logs: their `Debug` is redacted, and stores and logs use
//! the pseudonymous [`ContactKey`] instead.

pub mod audit;
pub mod campaign;
pub mod consent;
pub mod desk;
pub mod hold;
pub mod inbound;
pub mod operator;
pub mod outbound;
pub mod payload;
pub mod profile;
pub mod text;
pub mod waiting;

use std::fmt;

/// A WhatsApp id: the customer's phone number in digits, no `+`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WaId(String);

impl WaId {
    pub fn parse(s: &str) -> Option<WaId> {
        let ok = (5..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| WaId(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A business-scoped user id (BSUID): an ISO country code, a dot, and up to
/// 128 alphanumeric characters (`US.ENT.…` for managed businesses).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn parse(s: &str) -> Option<UserId> {
        let ok = (4..=160).contains(&s.len())
            && s.contains('.')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
        ok.then(|| UserId(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who a customer is: by phone number when Meta gives one, else by BSUID.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum ContactId {
    WaId(WaId),
    UserId(UserId),
}

impl ContactId {
    /// The wa_id when present and valid, otherwise the user_id.
    pub fn from_parts(wa_id: Option<&str>, user_id: Option<&str>) -> Option<ContactId> {
        wa_id
            .and_then(WaId::parse)
            .map(ContactId::WaId)
            .or_else(|| user_id.and_then(UserId::parse).map(ContactId::UserId))
    }

    /// A string that is unique across both kinds of id (input to hashing).
    pub fn canonical(&self) -> String {
        match self {
            ContactId::WaId(w) => format!("wa:{}", w.0),
            ContactId::UserId(u) => format!("user:{}", u.0),
        }
    }
}

macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}([REDACTED])", stringify!($t))
            }
        }
    )*};
}
redacted_debug!(WaId, UserId, ContactId);

/// The pseudonymous id of a contact: a keyed hash of its [`ContactId`],
/// 32 lowercase hex characters. Safe to log and to use in storage keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContactKey(String);

impl ContactKey {
    /// Parses the hex form (as found in store keys).
    pub fn parse(s: &str) -> Option<ContactKey> {
        let ok = s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| ContactKey(s.to_owned()))
    }
    pub(crate) fn from_hash(bytes: &[u8; 16]) -> ContactKey {
        ContactKey(hex::encode(bytes))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client business's id, as its settings name it: 1 to 32 of `a-z`,
/// `0-9` and `-`. Safe to log, to use in storage keys, routes and metric
/// labels (it is neither a name nor a number).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct BusinessId(String);

impl TryFrom<String> for BusinessId {
    type Error = String;
    fn try_from(s: String) -> Result<BusinessId, String> {
        BusinessId::parse(&s).ok_or_else(|| format!("{s:?} is not a business id"))
    }
}

impl From<BusinessId> for String {
    fn from(b: BusinessId) -> String {
        b.0
    }
}

impl BusinessId {
    /// The business a deployment without `[[businesses]]` serves.
    pub const DEFAULT: &str = "default";

    pub fn parse(s: &str) -> Option<BusinessId> {
        let ok = (1..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ok.then(|| BusinessId(s.to_owned()))
    }

    /// The id of [`BusinessId::DEFAULT`].
    pub fn default_business() -> BusinessId {
        BusinessId(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the business a deployment without `[[businesses]]`
    /// serves (whose contacts keep the keys of earlier releases).
    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    /// The business as records written for it name it: `None` for the
    /// `default` business (so that they read as earlier releases wrote
    /// them), else its id.
    pub fn tag(&self) -> Option<BusinessId> {
        (!self.is_default()).then(|| self.clone())
    }

    /// The business a record names ([`BusinessId::tag`]): `None` is the
    /// `default` business.
    pub fn of_tag(tag: Option<&BusinessId>) -> BusinessId {
        tag.cloned().unwrap_or_else(BusinessId::default_business)
    }
}

impl fmt::Display for BusinessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_ids_are_short_lowercase_words() {
        for good in ["default", "acme", "shoe-shop-2", "a", &"x".repeat(32)] {
            assert!(BusinessId::parse(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "shoe shop",
            "shop_2",
            "ünï",
            &"x".repeat(33),
            "a/b",
        ] {
            assert!(BusinessId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_phone_number_is_preferred_over_the_business_scoped_id() {
        let id = ContactId::from_parts(Some("16505550101"), Some("US.1349120865"));
        assert_eq!(id.map(|c| c.canonical()), Some("wa:16505550101".into()));
    }

    #[test]
    fn a_contact_without_a_phone_number_is_known_by_user_id() {
        let id = ContactId::from_parts(None, Some("US.13491208655302741918"));
        assert_eq!(
            id.map(|c| c.canonical()),
            Some("user:US.13491208655302741918".into())
        );
    }

    #[test]
    fn garbage_ids_are_not_contacts() {
        assert!(ContactId::from_parts(Some("+1 650"), Some("no dot here")).is_none());
        assert!(ContactId::from_parts(None, None).is_none());
    }

    #[test]
    fn debug_output_never_shows_the_number() {
        let id = ContactId::from_parts(Some("16505550101"), None).expect("id");
        assert!(!format!("{id:?}").contains("16505550101"));
    }
}
