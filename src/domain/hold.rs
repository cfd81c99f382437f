//! Legal holds and disclosures to authorities, as pure rules.
//!
//! A contact on hold (a [`Hold`]: why, under which reference, since when,
//! placed by whom) keeps their data: an erasure asked meanwhile waits
//! ([`WaitingErasure`]) and is carried out when the hold is lifted, and
//! the retention purge passes them by. A [`Disclosure`] records what was
//! handed to an authority, to whom, on which legal basis and when; it
//! shows in the contact's export unless the law forbids telling them yet
//! ([`Disclosure::told_at`]).
//!
//! The records live in the store's small records, one per held contact
//! (kind [`hold_kind`]) and one list per contact disclosed about (kind
//! [`disclosure_kind`]), sealed under the master keys.

use serde::{Deserialize, Serialize};

use super::BusinessId;

/// Most characters of a hold's reason or a disclosure's description.
pub const TEXT_MAX: usize = 2000;
/// Most characters of a reference, an authority's name or a legal basis.
pub const SHORT_MAX: usize = 300;
/// Most disclosures kept about one contact.
pub const DISCLOSURES_MAX: usize = 500;

/// What the customer is told when they confirm DELETE MY DATA while their
/// data is under a legal hold.
pub const HELD_ERASURE_TEXT: &str = "We can't delete your data yet: we must keep it for a legal \
reason. We have recorded your request and will delete your data as soon as we are allowed to.";

/// A legal hold on a contact's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Why the data must be kept (e.g. "tax audit", "court order").
    pub reason: String,
    /// The case's or order's reference.
    pub reference: String,
    /// When it was placed (Unix s).
    pub since: u64,
    /// Who placed it (the operator's audit name).
    pub by: String,
    /// The erasures asked while it holds, oldest first.
    #[serde(default)]
    pub waiting: Vec<WaitingErasure>,
}

/// An erasure asked while the contact is held: carried out on the lift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingErasure {
    /// When it was asked (Unix s).
    pub at: u64,
    /// Who asked.
    pub asked_by: Asker,
}

/// Who asked for an erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Asker {
    /// The customer, with DELETE MY DATA by chat.
    Customer,
    /// The support team: the caller (audit name) and the request's
    /// reference, if any.
    Support {
        caller: String,
        #[serde(default)]
        reference: Option<String>,
    },
}

impl Asker {
    /// Who asked, as the audit detail says it.
    pub fn describe(&self) -> String {
        match self {
            Asker::Customer => "asked by the customer by chat".to_owned(),
            Asker::Support {
                caller,
                reference: Some(r),
            } => format!("asked through the support team ({caller}), request {r}"),
            Asker::Support { caller, .. } => {
                format!("asked through the support team ({caller})")
            }
        }
    }
}

impl Hold {
    /// The hold after an erasure asked at `at` by `asked_by`: one waiting
    /// per asker is enough (the customer asking twice changes nothing).
    pub fn with_waiting(mut self, at: u64, asked_by: Asker) -> Hold {
        if !self.waiting.iter().any(|w| w.asked_by == asked_by) {
            self.waiting.push(WaitingErasure { at, asked_by });
        }
        self
    }
}

/// A disclosure of a contact's data to an authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disclosure {
    /// Its id (a UUID).
    pub id: String,
    /// What was disclosed (the data, described).
    pub what: String,
    /// To whom: the authority.
    pub to: String,
    /// The legal basis (the law or order that required it).
    pub legal_basis: String,
    /// When it was disclosed (Unix s, midnight UTC for a day).
    pub date: u64,
    /// When it was recorded (Unix s).
    pub recorded_at: u64,
    /// Who recorded it (the operator's audit name).
    pub by: String,
    /// Until when the law forbids telling the customer (Unix s); `None`:
    /// they may be told.
    #[serde(default)]
    pub secret_until: Option<u64>,
}

impl Disclosure {
    /// Whether the customer may be told of it at `now` (their export
    /// shows it).
    pub fn told_at(&self, now: u64) -> bool {
        self.secret_until.is_none_or(|until| now >= until)
    }
}

/// A hold as asked (before validation).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HoldRequest {
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
}

/// A disclosure as asked (before validation); dates are `YYYY-MM-DD`
/// (UTC) or Unix seconds.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DisclosureRequest {
    #[serde(default)]
    pub what: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub legal_basis: Option<String>,
    #[serde(default)]
    pub date: Option<serde_json::Value>,
    #[serde(default)]
    pub secret_until: Option<serde_json::Value>,
}

/// Why a hold or disclosure asked for is refused: a message for the
/// caller (it never repeats the text given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A required text, trimmed, at most `max` characters.
fn required(value: Option<&str>, field: &str, max: usize) -> Result<String, Invalid> {
    let v = value.map(str::trim).unwrap_or_default();
    if v.is_empty() {
        return Err(Invalid(format!("{field} is required")));
    }
    if v.chars().count() > max {
        return Err(Invalid(format!("{field} is longer than {max} characters")));
    }
    Ok(v.to_owned())
}

impl HoldRequest {
    /// The hold placed at `now` by `by`, or why not.
    pub fn hold(&self, now: u64, by: &str) -> Result<Hold, Invalid> {
        Ok(Hold {
            reason: required(self.reason.as_deref(), "reason", TEXT_MAX)?,
            reference: required(self.reference.as_deref(), "reference", SHORT_MAX)?,
            since: now,
            by: by.to_owned(),
            waiting: Vec::new(),
        })
    }
}

impl DisclosureRequest {
    /// The disclosure recorded at `now` by `by` under `id`, or why not.
    /// Its date may not be in the future; a `secret_until` must come
    /// after it.
    pub fn disclosure(&self, id: String, now: u64, by: &str) -> Result<Disclosure, Invalid> {
        let what = required(self.what.as_deref(), "what", TEXT_MAX)?;
        let to = required(self.to.as_deref(), "to", SHORT_MAX)?;
        let legal_basis = required(self.legal_basis.as_deref(), "legal_basis", SHORT_MAX)?;
        let date = match &self.date {
            None | Some(serde_json::Value::Null) => {
                return Err(Invalid("date is required".into()));
            }
            Some(v) => parse_date(v, "date")?,
        };
        if date > now {
            return Err(Invalid("date is in the future".into()));
        }
        let secret_until = match &self.secret_until {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(parse_date(v, "secret_until")?),
        };
        if secret_until.is_some_and(|u| u <= date) {
            return Err(Invalid("secret_until must come after the date".into()));
        }
        Ok(Disclosure {
            id,
            what,
            to,
            legal_basis,
            date,
            recorded_at: now,
            by: by.to_owned(),
            secret_until,
        })
    }
}

/// A date given as `YYYY-MM-DD` (UTC, its midnight) or Unix seconds.
pub fn parse_date(value: &serde_json::Value, field: &str) -> Result<u64, Invalid> {
    let wrong = || {
        Invalid(format!(
            "{field} must be a day written YYYY-MM-DD or Unix seconds"
        ))
    };
    match value {
        serde_json::Value::Number(n) => n.as_u64().ok_or_else(wrong),
        serde_json::Value::String(s) if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() => {
            s.parse().map_err(|_| wrong())
        }
        serde_json::Value::String(s) => day(s).map(|d| d * 86_400).ok_or_else(wrong),
        _ => Err(wrong()),
    }
}

/// The days since 1970-01-01 of a day written YYYY-MM-DD (`None` for one
/// that does not exist, or before 1970).
fn day(text: &str) -> Option<u64> {
    super::desk::unix_midnight(super::desk::parse_date(text)?).map(|s| s / 86_400)
}

/// The records' kind of `business`'s legal holds (id: the contact key).
pub fn hold_kind(business: &BusinessId) -> String {
    format!("hold:{}", business.as_str())
}

/// The records' kind of `business`'s disclosures (id: the contact key; a
/// record is the contact's list).
pub fn disclosure_kind(business: &BusinessId) -> String {
    format!("disclosure:{}", business.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn asked(what: &str, date: serde_json::Value) -> DisclosureRequest {
        DisclosureRequest {
            what: Some(what.into()),
            to: Some("Police".into()),
            legal_basis: Some("Court order 12/2026".into()),
            date: Some(date),
            secret_until: None,
        }
    }

    #[test]
    fn a_hold_needs_a_reason_and_a_reference_of_bounded_length() {
        let ok = HoldRequest {
            reason: Some("  tax audit ".into()),
            reference: Some("T-1".into()),
        };
        let hold = ok.hold(5, "operator:a").expect("valid");
        assert_eq!((hold.reason.as_str(), hold.since), ("tax audit", 5));
        let none = HoldRequest {
            reason: None,
            reference: Some("T-1".into()),
        };
        assert_eq!(
            none.hold(5, "x").expect_err("refused").0,
            "reason is required"
        );
        let long = HoldRequest {
            reason: Some("r".into()),
            reference: Some("x".repeat(SHORT_MAX + 1)),
        };
        assert!(
            long.hold(5, "x")
                .expect_err("refused")
                .0
                .contains("longer than")
        );
    }

    #[test]
    fn dates_are_days_or_unix_seconds_and_impossible_days_are_refused() {
        assert_eq!(parse_date(&json!("1970-01-02"), "date"), Ok(86_400));
        assert_eq!(parse_date(&json!(1_700_000_000), "date"), Ok(1_700_000_000));
        assert_eq!(parse_date(&json!("1700000000"), "date"), Ok(1_700_000_000));
        assert_eq!(
            parse_date(&json!("2024-02-29"), "d").map(|s| s % 86_400),
            Ok(0)
        );
        for bad in [
            json!("2023-02-29"),
            json!("2026-13-01"),
            json!("soon"),
            json!(-1),
        ] {
            let e = parse_date(&bad, "date").expect_err("refused");
            assert!(e.0.contains("YYYY-MM-DD"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_disclosure_is_told_unless_secret_until_a_later_day() {
        let now = 100 * 86_400;
        let d = asked("chat history", json!(now - 10))
            .disclosure("id".into(), now, "root")
            .expect("valid");
        assert!(d.told_at(now));
        let mut secret = asked("chat history", json!("1970-03-01"));
        secret.secret_until = Some(json!("1970-06-01"));
        let d = secret.disclosure("id".into(), now, "root").expect("valid");
        assert!(!d.told_at(now));
        assert!(d.told_at(d.secret_until.expect("set")));
    }

    #[test]
    fn a_disclosure_needs_every_field_a_past_date_and_a_later_secrecy() {
        let now = 100 * 86_400;
        let mut r = asked("x", json!(now + 1));
        assert_eq!(
            r.disclosure("i".into(), now, "r").expect_err("refused").0,
            "date is in the future"
        );
        r.date = None;
        assert_eq!(
            r.disclosure("i".into(), now, "r").expect_err("refused").0,
            "date is required"
        );
        let mut r = asked("x", json!(now));
        r.secret_until = Some(json!(now - 1));
        assert!(
            r.disclosure("i".into(), now, "r")
                .expect_err("refused")
                .0
                .contains("after")
        );
        let mut r = asked("x", json!(now));
        r.to = Some("  ".into());
        assert_eq!(
            r.disclosure("i".into(), now, "r").expect_err("refused").0,
            "to is required"
        );
    }

    #[test]
    fn an_erasure_waits_once_per_asker() {
        let hold = HoldRequest {
            reason: Some("r".into()),
            reference: Some("x".into()),
        }
        .hold(1, "root")
        .expect("valid")
        .with_waiting(2, Asker::Customer)
        .with_waiting(3, Asker::Customer);
        assert_eq!(hold.waiting.len(), 1);
        let b = BusinessId::parse("cafe").expect("id");
        assert_eq!(
            (hold_kind(&b), disclosure_kind(&b)),
            ("hold:cafe".into(), "disclosure:cafe".into())
        );
        assert!(Asker::Customer.describe().contains("customer"));
    }
}
