//! The current state of a consent, read from the contact's ledger.
//!
//! The ledger is append-only evidence; the state of a purpose is its
//! latest entry by the time of the customer's action (`at`: the message
//! time Meta reports, in seconds). Within one second the order of two
//! actions is not known for sure (a STOP is written when it arrives, a
//! flow's opt-in when the flow runs), so a withdrawal in that second wins:
//! in doubt, no marketing. Marketing consent is absent (no) until given
//! explicitly.

use crate::domain::consent::{ConsentChange, Decision, MARKETING, decide, state};

/// The source of consent recorded by the support team
/// (`POST /admin/contacts/{id}/consent`).
pub const ADMIN_SOURCE: &str = "admin";
/// The entries of `new` that are recorded, each judged after the ledger
/// and the ones kept before it (see [`decide`]).
pub fn changes_only(ledger: &[ConsentChange], new: &[ConsentChange]) -> Vec<ConsentChange> {
    let mut all = ledger.to_vec();
    let mut kept = Vec::new();
    for c in new {
        if decide(&all, c) == Decision::Record {
            all.push(c.clone());
            kept.push(c.clone());
        }
    }
    kept
}

/// Whether the ledger holds `change`, recorded at ingress (which records
/// only what changes something): matched by its evidence (a keyed hash of
/// the message), or for WhatsApp's Stop/Resume, whose evidence is the
/// webhook event's key, by its time.
pub fn on_record(ledger: &[ConsentChange], change: &ConsentChange) -> bool {
    ledger.iter().any(|l| {
        l.purpose == change.purpose
            && l.granted == change.granted
            && l.source == change.source
            && match (&change.evidence, change.source.as_str()) {
                (_, "whatsapp:user_preferences") => l.at == change.at,
                (Some(e), _) => l.evidence.as_ref() == Some(e),
                (None, _) => true,
            }
    })
}

/// Is `purpose` granted now?
pub fn granted(ledger: &[ConsentChange], purpose: &str) -> bool {
    state(ledger, purpose).is_some_and(|c| c.granted)
}

/// Why `purpose` is not granted now; `None` when it is granted.
pub fn refusal(ledger: &[ConsentChange], purpose: &str) -> Option<crate::domain::consent::Refusal> {
    use crate::domain::consent::Refusal;
    match state(ledger, purpose) {
        Some(c) if c.granted => None,
        Some(_) => Some(Refusal::OptedOut),
        None => Some(Refusal::NoConsent),
    }
}

/// The consent an inbound event gives or withdraws by itself, before any
/// flow: STOP, START and their variants typed, the "Stop promotions"
/// quick reply, and WhatsApp's own marketing Stop/Resume. Recorded at
/// ingress, in the same write as the event (see
/// [`crate::store::InboxEntry::consent`]), under the policy version of
/// the business the customer wrote to (`None`: `default`).
pub fn of_event(
    event: &crate::domain::inbound::InboxEvent,
    dedup: &str,
    pseudonymizer: &crate::crypto::pseudonym::Pseudonymizer,
    (policy_version, business): (&str, Option<&crate::domain::BusinessId>),
    extra: &crate::privacy::keywords::Extra,
) -> Option<ConsentChange> {
    use crate::domain::inbound::InboxEvent;
    use crate::domain::inbound::Input;
    use crate::privacy::keywords::{Command, classify, classify_choice};
    let (granted, at, source, evidence) = match event {
        InboxEvent::Message(m) => {
            let message = m.message.parse().ok()?;
            let (command, source) = match crate::domain::inbound::input_of(&message) {
                Input::Text(t) => (classify(&t, extra)?, "keyword"),
                Input::Choice { id, title } => (classify_choice(&id, &title, extra)?, "button"),
                _ => return None,
            };
            let granted = match command {
                Command::OptOut => false,
                Command::OptIn => true,
                Command::Help | Command::Export | Command::Erase => return None,
            };
            let at = message.timestamp.0.max(0) as u64;
            (granted, at, source, pseudonymizer.tag("wamid", &message.id))
        }
        InboxEvent::Preference(p) => {
            let pref = p.preference.parse().ok()?;
            if pref.category != "marketing_messages"
                || !matches!(pref.value.as_str(), "stop" | "resume")
            {
                return None;
            }
            let at = pref.timestamp.0.max(0) as u64;
            (
                pref.value == "resume",
                at,
                "whatsapp:user_preferences",
                dedup.to_owned(),
            )
        }
        _ => return None,
    };
    Some(ConsentChange {
        purpose: MARKETING.to_owned(),
        granted,
        at,
        source: source.to_owned(),
        policy_version: policy_version.to_owned(),
        evidence: Some(evidence),
        business: business.and_then(crate::domain::BusinessId::tag),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::consent::{GRANT_WINDOW_SECS, GRANTS_PER_DAY, POLICY_NOTICE, changes};

    fn entry(granted: bool, at: u64) -> ConsentChange {
        ConsentChange {
            purpose: MARKETING.into(),
            granted,
            at,
            source: "keyword".into(),
            policy_version: "1".into(),
            evidence: None,
            business: None,
        }
    }

    #[test]
    fn a_repeated_choice_changes_nothing() {
        assert!(changes(&[], &entry(false, 5)), "a first STOP is recorded");
        assert!(!changes(&[entry(false, 5)], &entry(false, 9)));
        assert!(changes(&[entry(false, 5)], &entry(true, 9)));
        assert!(!changes(
            &[entry(false, 5), entry(true, 9)],
            &entry(true, 12)
        ));
        // A START in the second of a STOP loses to it; its repeat adds nothing.
        assert!(changes(&[entry(false, 5)], &entry(true, 5)));
        assert!(!changes(
            &[entry(false, 5), entry(true, 5)],
            &entry(true, 5)
        ));
        let kept = changes_only(&[], &[entry(true, 5), entry(true, 6), entry(false, 7)]);
        assert_eq!(kept, [entry(true, 5), entry(false, 7)]);
        let notice = ConsentChange {
            purpose: POLICY_NOTICE.into(),
            ..entry(true, 5)
        };
        assert!(changes(std::slice::from_ref(&notice), &notice));
    }

    #[test]
    fn grants_are_bounded_and_withdrawals_never_are() {
        let mut ledger = Vec::new();
        let mut refused = 0;
        // STOP and START alternating, a second apart, ten times.
        for i in 0..10u64 {
            let stop = entry(false, 100 + 2 * i);
            let decision = decide(&ledger, &stop);
            if i as usize <= GRANTS_PER_DAY {
                assert_eq!(decision, Decision::Record, "STOP {i}");
                ledger.push(stop);
            } else {
                // A refused grant left it withdrawn: the STOP is honoured
                // (it is the state) and changes nothing.
                assert_eq!(decision, Decision::Same, "STOP {i}");
            }
            let start = entry(true, 101 + 2 * i);
            match decide(&ledger, &start) {
                Decision::Record => ledger.push(start),
                Decision::Refused => refused += 1,
                Decision::Same => panic!("START {i} after a STOP changes the state"),
            }
        }
        assert_eq!(refused, 10 - GRANTS_PER_DAY);
        assert_eq!(ledger.len(), 2 * GRANTS_PER_DAY + 1);
        assert!(!granted(&ledger, MARKETING));
        // A day after the first grants, one may be given again.
        let tomorrow = entry(true, 100 + GRANT_WINDOW_SECS);
        assert_eq!(
            decide(&ledger, &tomorrow),
            Decision::Refused,
            "the window is open"
        );
        let later = entry(true, 106 + GRANT_WINDOW_SECS);
        assert_eq!(decide(&ledger, &later), Decision::Record);
        // Another purpose has its own count; a policy notice is no grant.
        let other = ConsentChange {
            purpose: "other".into(),
            ..entry(true, 120)
        };
        assert_eq!(decide(&ledger, &other), Decision::Record);
        let notice = ConsentChange {
            purpose: POLICY_NOTICE.into(),
            ..entry(true, 120)
        };
        assert_eq!(decide(&ledger, &notice), Decision::Record);
        let kept = changes_only(
            &[],
            &[
                entry(true, 1),
                entry(false, 2),
                entry(true, 3),
                entry(false, 4),
                entry(true, 5),
                entry(false, 6),
                entry(true, 7),
                entry(false, 8),
            ],
        );
        // Three grants and the three withdrawals after them; the fourth
        // grant is refused, so the STOP after it changes nothing.
        assert_eq!(kept.len(), 2 * GRANTS_PER_DAY);
        assert!(!kept.last().is_some_and(|c| c.granted));
    }

    #[test]
    fn marketing_is_not_granted_until_given() {
        assert!(!granted(&[], MARKETING));
        assert!(granted(&[entry(true, 5)], MARKETING));
        assert!(!granted(&[entry(true, 5)], "other"));
    }

    #[test]
    fn the_latest_action_wins_and_in_one_second_a_withdrawal_does() {
        assert!(!granted(
            &[entry(false, 5), entry(true, 5), entry(false, 5)],
            MARKETING
        ));
        assert!(granted(&[entry(false, 5), entry(true, 6)], MARKETING));
        // Written late (a flow's opt-in) but for an earlier action.
        assert!(!granted(&[entry(false, 9), entry(true, 8)], MARKETING));
        // A STOP written at ingress before a flow's opt-in of the same
        // second, written later: no marketing.
        assert!(!granted(&[entry(false, 7), entry(true, 7)], MARKETING));
    }
}
