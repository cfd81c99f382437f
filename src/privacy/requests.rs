//! Bounds on what a customer's repeated privacy requests add to records
//! kept for years (the audit log) or cost (a copy of their data built and
//! uploaded): pure rules, applied by the worker.
//!
//! - MY DATA (typed, or a flow's `export` action): one copy per
//!   [`AGAIN_AFTER`]; asked again sooner, the customer is told the copy
//!   they got stands and when they can have a new one, and nothing is
//!   queued or audited.
//! - DELETE MY DATA: the buttons are sent every time, but an unconfirmed
//!   request is audited at most once per [`AGAIN_AFTER`] (with its
//!   decline); a confirmed one always is, with its request.

use crate::domain::profile::EraseAudit;

/// How long a request is answered from the last one instead of anew.
pub const AGAIN_AFTER: u64 = 24 * 3600;

/// Whether a new copy of the customer's data may be made now, the last
/// having been asked for at `last` (Unix s).
pub fn export_allowed(last: Option<u64>, now: u64) -> bool {
    last.is_none_or(|t| now >= t + AGAIN_AFTER)
}

/// The audit entries of an erasure request's course in one step, given
/// when the request waiting for an answer was made before and after the
/// step (`asked`) and whether the step confirmed an erasure; updates
/// `marks`. A confirmed erasure is always audited with its request.
pub fn erasure_events(
    asked: (Option<u64>, Option<u64>),
    confirmed: bool,
    marks: &mut EraseAudit,
    now: u64,
) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    match asked {
        (None, Some(_)) if !confirmed => {
            if marks.at.is_none_or(|t| now >= t + AGAIN_AFTER) {
                kinds.push("erasure_request");
                marks.at = Some(now);
                marks.pending = true;
            } else {
                marks.pending = false;
            }
        }
        (Some(_), None) if !confirmed => {
            if marks.pending {
                kinds.push("erasure_declined");
            }
            marks.pending = false;
        }
        _ => {}
    }
    if confirmed {
        if asked.0.is_some() && !marks.pending {
            kinds.push("erasure_request");
        }
        kinds.push("erasure_confirmed");
        marks.pending = false;
    }
    kinds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_a_day() {
        assert!(export_allowed(None, 5));
        assert!(!export_allowed(Some(100), 100 + AGAIN_AFTER - 1));
        assert!(export_allowed(Some(100), 100 + AGAIN_AFTER));
    }

    #[test]
    fn unconfirmed_erasure_requests_are_audited_once_a_day() {
        let mut m = EraseAudit::default();
        let t = 1_000;
        assert_eq!(
            erasure_events((None, Some(t)), false, &mut m, t),
            ["erasure_request"]
        );
        // Asked again while waiting: nothing new.
        assert!(erasure_events((Some(t), Some(t + 5)), false, &mut m, t + 5).is_empty());
        assert_eq!(
            erasure_events((Some(t + 5), None), false, &mut m, t + 9),
            ["erasure_declined"]
        );
        // The same day, asked and declined over and over: nothing.
        for i in 0..10 {
            let at = t + 100 + i * 10;
            assert!(erasure_events((None, Some(at)), false, &mut m, at).is_empty());
            assert!(erasure_events((Some(at), None), false, &mut m, at + 1).is_empty());
        }
        // Confirmed: the request is audited with the confirmation.
        let at = t + 500;
        erasure_events((None, Some(at)), false, &mut m, at);
        assert_eq!(
            erasure_events((Some(at), None), true, &mut m, at + 1),
            ["erasure_request", "erasure_confirmed"]
        );
        // A day later, a request is audited again.
        let later = t + AGAIN_AFTER;
        assert_eq!(
            erasure_events((None, Some(later)), false, &mut m, later),
            ["erasure_request"]
        );
        assert_eq!(
            erasure_events((Some(later), None), true, &mut m, later + 1),
            ["erasure_confirmed"]
        );
    }
}
