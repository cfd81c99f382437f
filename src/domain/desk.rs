//! The privacy desk: a request that reached the support team by email,
//! phone or letter (access, rectification, erasure, objection,
//! restriction), logged so that it is answered within the legal deadline
//! and each act on it is on record. Kept in the store's records (kind
//! [`kind`], id the request's id, sealed). It holds no personal data: the
//! contact is their pseudonymous key, and the reference is the support
//! team's ticket or letter number.

use serde::{Deserialize, Serialize};

use super::BusinessId;

/// What the customer asked for (GDPR Art. 15 to 18 and 21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Access,
    Rectification,
    Erasure,
    Objection,
    Restriction,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Access,
        Kind::Rectification,
        Kind::Erasure,
        Kind::Objection,
        Kind::Restriction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Access => "access",
            Kind::Rectification => "rectification",
            Kind::Erasure => "erasure",
            Kind::Objection => "objection",
            Kind::Restriction => "restriction",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How the request reached the support team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Phone,
    Letter,
    Other,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Email,
        Channel::Phone,
        Channel::Letter,
        Channel::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Phone => "phone",
            Channel::Letter => "letter",
            Channel::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Logged, not yet answered.
    Open,
    /// Carried out and closed.
    Done,
    /// Closed without carrying it out (the outcome says why).
    Refused,
    /// An erasure waiting on a legal hold on the contact's data.
    Held,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Done => "done",
            State::Refused => "refused",
            State::Held => "waiting on a legal hold",
        }
    }

    /// Whether the request is still owed an answer.
    pub fn is_open(self) -> bool {
        matches!(self, State::Open | State::Held)
    }
}

/// One act on a request: when, who (as the audit log names them), what
/// (no personal data: field names, not values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Act {
    pub at: u64,
    pub by: String,
    pub what: String,
}

/// A request the support team logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskRequest {
    pub id: String,
    pub kind: Kind,
    /// The contact's pseudonymous key (never their number).
    pub contact: String,
    pub channel: Channel,
    /// The support team's ticket, call or letter reference.
    pub reference: String,
    /// When the request reached the support team (`YYYY-MM-DD`).
    pub received: String,
    /// When the answer is due at the latest (`YYYY-MM-DD`).
    pub deadline: String,
    pub state: State,
    /// How it ended (`done`, or the reason it was refused).
    #[serde(default)]
    pub outcome: Option<String>,
    pub history: Vec<Act>,
}

/// What the support team gives to log a request, as written.
#[derive(Debug, Clone, Default)]
pub struct Draft<'a> {
    pub kind: &'a str,
    pub channel: &'a str,
    pub reference: &'a str,
    pub received: &'a str,
}

/// The default legal deadline, in days (GDPR: one month).
pub const DEFAULT_DEADLINE_DAYS: u32 = 30;
/// The longest deadline a business may set (GDPR: extended by two months
/// at most, given reasons; 90 days bounds it).
pub const MAX_DEADLINE_DAYS: u32 = 90;
/// The longest reference accepted.
pub const REFERENCE_MAX: usize = 100;
/// The longest outcome text accepted.
pub const OUTCOME_MAX: usize = 500;

/// The records' kind of `business`'s desk.
pub fn kind(business: &BusinessId) -> String {
    format!("desk:{}", business.as_str())
}

/// A calendar date written `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<time::Date> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// `date` written `YYYY-MM-DD`.
pub fn format_date(date: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The Unix time of the start (UTC) of `date`; `None` before 1970.
pub fn unix_midnight(date: time::Date) -> Option<u64> {
    u64::try_from(date.midnight().assume_utc().unix_timestamp()).ok()
}

/// The day of the Unix time `at` (UTC).
pub fn day_of(at: u64) -> time::Date {
    let secs = i64::try_from(at).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map_or(time::Date::MIN, time::OffsetDateTime::date)
}

/// The deadline of a request received on `received`, `days` later.
pub fn deadline(received: time::Date, days: u32) -> time::Date {
    received
        .checked_add(time::Duration::days(i64::from(days)))
        .unwrap_or(time::Date::MAX)
}

/// Whether a printable one-line text of at most `max` characters.
fn printable(s: &str, max: usize) -> bool {
    s.chars().count() <= max && !s.chars().any(char::is_control)
}

/// Checks `draft` and makes the request `id` about `contact`, received
/// on the day it names, due `days` later; `now` is the time it is logged
/// (a date after its day is refused). The error says what to fix.
pub fn log(
    draft: &Draft<'_>,
    (id, contact): (&str, &str),
    days: u32,
    (now, by): (u64, &str),
) -> Result<DeskRequest, String> {
    let kind = Kind::parse(draft.kind).ok_or_else(|| {
        format!(
            "kind must be one of access, rectification, erasure, objection, restriction (not {:?})",
            short(draft.kind)
        )
    })?;
    let channel = Channel::parse(draft.channel)
        .ok_or("channel must be one of email, phone, letter, other")?;
    let reference = draft.reference.trim();
    if reference.is_empty() {
        return Err("reference is missing: give the ticket, call or letter reference".into());
    }
    if !printable(reference, REFERENCE_MAX) {
        return Err(format!(
            "reference must be at most {REFERENCE_MAX} printable characters (a ticket or letter reference, no personal data)"
        ));
    }
    let received = parse_date(draft.received.trim())
        .ok_or("received must be a date written YYYY-MM-DD (the day the request reached you)")?;
    if received > day_of(now) {
        return Err("received is in the future: give the day the request reached you".into());
    }
    Ok(DeskRequest {
        id: id.to_owned(),
        kind,
        contact: contact.to_owned(),
        channel,
        reference: reference.to_owned(),
        received: format_date(received),
        deadline: format_date(deadline(received, days)),
        state: State::Open,
        outcome: None,
        history: vec![Act {
            at: now,
            by: by.to_owned(),
            what: format!("logged ({} by {})", kind.as_str(), channel.as_str()),
        }],
    })
}

/// A value shown back in an error: the first characters only.
fn short(s: &str) -> String {
    s.chars().take(20).collect()
}

/// Checks the outcome of closing a request: `done`, or `refused: <why>`.
/// Answers the state it closes in and the outcome kept.
pub fn outcome(text: &str) -> Result<(State, String), String> {
    let text = text.trim();
    if text.is_empty() || !printable(text, OUTCOME_MAX) {
        return Err(format!(
            "outcome must be \"done\" or \"refused: <the reason>\" (at most {OUTCOME_MAX} printable characters)"
        ));
    }
    match text.strip_prefix("refused") {
        Some(reason) => {
            let reason = reason.trim_start_matches([':', ' ']).trim();
            if reason.is_empty() {
                return Err("a refusal needs its reason: \"refused: <the reason>\"".into());
            }
            Ok((State::Refused, format!("refused: {reason}")))
        }
        None => Ok((State::Done, text.to_owned())),
    }
}

impl DeskRequest {
    /// Records an act.
    pub fn act(&mut self, at: u64, by: &str, what: impl Into<String>) {
        self.history.push(Act {
            at,
            by: by.to_owned(),
            what: what.into(),
        });
    }

    /// Closes the request in `state` with `outcome`.
    pub fn close(&mut self, state: State, outcome: String, (at, by): (u64, &str)) {
        self.act(at, by, format!("closed: {outcome}"));
        self.state = state;
        self.outcome = Some(outcome);
    }

    /// Whether the deadline has passed on the day of `now` while it is
    /// still open.
    pub fn overdue(&self, now: u64) -> bool {
        self.state.is_open() && parse_date(&self.deadline).is_some_and(|d| day_of(now) > d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_780_000_000; // 2026-05-28

    fn draft<'a>(kind: &'a str, reference: &'a str, received: &'a str) -> Draft<'a> {
        Draft {
            kind,
            channel: "email",
            reference,
            received,
        }
    }

    #[test]
    fn a_request_is_due_the_days_after_it_was_received() {
        let r = log(
            &draft("erasure", " T-1 ", "2026-05-20"),
            ("d1", "k"),
            30,
            (NOW, "op"),
        )
        .expect("ok");
        assert_eq!(r.reference, "T-1");
        assert_eq!(r.deadline, "2026-06-19");
        assert_eq!(r.state, State::Open);
        assert!(!r.overdue(NOW));
        assert!(r.overdue(NOW + 40 * 86_400));
        let b = BusinessId::parse("cafe").expect("id");
        assert_eq!(kind(&b), "desk:cafe");
    }

    #[test]
    fn bad_requests_are_refused_with_what_to_fix() {
        let at = ("d", "k");
        let e = |d: Draft<'_>| log(&d, at, 30, (NOW, "op")).expect_err("refused");
        assert!(e(draft("deletion", "T", "2026-05-20")).contains("kind must be one of"));
        assert!(e(draft("access", "  ", "2026-05-20")).contains("reference is missing"));
        assert!(e(draft("access", "T", "20/05/2026")).contains("YYYY-MM-DD"));
        assert!(e(draft("access", "T", "2026-02-30")).contains("YYYY-MM-DD"));
        assert!(e(draft("access", "T", "2026-05-29")).contains("future"));
        let mut d = draft("access", "T", "2026-05-20");
        d.channel = "fax";
        assert!(e(d).contains("channel"));
    }

    proptest::proptest! {
        /// Whatever is given as a date, reference or kind, logging answers
        /// a request or a reason (never a panic), and a date it takes is
        /// written back as given.
        #[test]
        fn any_draft_is_logged_or_refused_and_dates_round_trip(
            kind in "\\PC{0,16}",
            reference in "\\PC{0,120}",
            received in "[0-9-]{0,12}",
            day in 0u64..40_000,
        ) {
            let draft = Draft { kind: &kind, channel: "phone", reference: &reference, received: &received };
            let _ = log(&draft, ("d", "k"), 30, (NOW, "op"));
            let date = format_date(day_of(day * 86_400));
            proptest::prop_assert_eq!(parse_date(&date).map(format_date), Some(date));
        }
    }

    #[test]
    fn a_refusal_needs_a_reason() {
        assert_eq!(outcome("done").expect("ok").0, State::Done);
        let (s, o) = outcome("refused: identity not confirmed").expect("ok");
        assert_eq!(
            (s, o.as_str()),
            (State::Refused, "refused: identity not confirmed")
        );
        assert!(outcome("refused").is_err());
        assert!(outcome("").is_err());
    }
}
