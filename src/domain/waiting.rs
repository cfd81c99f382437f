//! The agents' inbox: a handed-off conversation waiting for a person, as
//! the store's records keep it (kind [`kind`], id the contact key,
//! sealed). It holds no personal data of the customer: their number and
//! name are read from the profile when the inbox is listed. The inbox
//! worker writes it when a flow hands the conversation off and removes it
//! when the handoff closes; an agent takes it with a compare-and-swap.

use serde::{Deserialize, Serialize};

use super::BusinessId;

/// A conversation waiting for (or being worked by) an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// Since when it waits: when the flow handed it off (Unix s).
    pub since: u64,
    /// When the customer last wrote (Unix s): the 24-hour window.
    #[serde(default)]
    pub last_inbound: Option<u64>,
    /// The agent who took it, if one did.
    #[serde(default)]
    pub taken: Option<Taken>,
    /// When a message last went either way (Unix s): a change the live
    /// list shows.
    #[serde(default)]
    pub last_activity: u64,
}

/// Who took a conversation, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    /// The operator's id (`root` for the break-glass admin token).
    pub by: String,
    pub at: u64,
}

/// How long after the customer's last message a free-form reply may go.
pub const WINDOW_SECS: u64 = 24 * 3600;

impl Waiting {
    /// Until when the 24-hour window is open (`None`: the customer has not
    /// written since we know of).
    pub fn window_until(&self) -> Option<u64> {
        self.last_inbound.map(|at| at + WINDOW_SECS)
    }

    /// The record after a step at `now` in which the customer wrote at
    /// `at` (if they did): later times win.
    pub fn moved(mut self, at: Option<u64>, now: u64) -> Waiting {
        self.last_inbound = self.last_inbound.max(at);
        self.last_activity = self.last_activity.max(now);
        self
    }
}

/// The records' kind of `business`'s inbox.
pub fn kind(business: &BusinessId) -> String {
    format!("inbox:{}", business.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_closes_a_day_after_the_last_message_and_a_later_one_wins() {
        let w = Waiting {
            since: 10,
            last_inbound: Some(100),
            taken: None,
            last_activity: 100,
        };
        assert_eq!(w.window_until(), Some(100 + WINDOW_SECS));
        assert_eq!(w.clone().moved(Some(50), 60).last_inbound, Some(100));
        assert_eq!(w.clone().moved(Some(50), 60).last_activity, 100);
        let later = w.moved(Some(200), 300);
        assert_eq!((later.last_inbound, later.last_activity), (Some(200), 300));
        let b = BusinessId::parse("cafe").expect("id");
        assert_eq!(kind(&b), "inbox:cafe");
    }
}
