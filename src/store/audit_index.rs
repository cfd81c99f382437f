//! The audit log's request index, so that open privacy requests are found
//! without reading the log.
//!
//! Each backend keeps it in the same atomic write as the append (see
//! [`super::Store::audit_append`]). Requests are grouped by what was asked
//! and for whom (`export|<contact>`): a `*_request` entry opens (or joins)
//! its group, a `*_confirmed` entry joins an open group, and a
//! `*_completed` or `*_declined` entry closes it: the group's entries and
//! the closing one move to the closed entries, of which the newest
//! [`CLOSED_KEEP`] are kept. An erasure the customer never confirmed is
//! moved there by [`super::Store::audit_request_lapsed`] once its window
//! has passed. `privacy::audit::requests` pairs the entries.

use crate::domain::audit::Entry;

/// How many entries of closed requests are kept (the newest).
pub const CLOSED_KEEP: usize = 1000;

/// What an appended entry does to the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A `*_request`: opens its group, or joins it.
    Open,
    /// A `*_confirmed`: joins its group when it is open.
    Confirm,
    /// A `*_completed` or `*_declined`: closes its group.
    Close,
}

impl Op {
    /// The one-letter tag the backends store with a group's entries.
    pub fn tag(self) -> &'static str {
        match self {
            Op::Open => "r",
            Op::Confirm => "c",
            Op::Close => "x",
        }
    }
}

/// What appending `entry` does to the index, and its group's name
/// (`what|contact`); `None` for an entry that is no part of a request.
pub fn op_of(entry: &Entry) -> Option<(Op, String)> {
    let kind = entry.event.kind.as_str();
    let (op, what) = if let Some(w) = kind.strip_suffix("_request") {
        (Op::Open, w)
    } else if let Some(w) = kind.strip_suffix("_confirmed") {
        (Op::Confirm, w)
    } else if let Some(w) = kind
        .strip_suffix("_completed")
        .or_else(|| kind.strip_suffix("_declined"))
    {
        (Op::Close, w)
    } else {
        return None;
    };
    let contact = entry.event.contact.as_deref().unwrap_or("");
    Some((op, format!("{what}|{contact}")))
}

/// The index as read: each part oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests {
    /// The entries of the open groups (requests and confirmations).
    pub open: Vec<Entry>,
    /// The newest entries of closed groups (requests, confirmations and
    /// what closed them; a lapsed request alone).
    pub closed: Vec<Entry>,
    /// The index covers the whole log; false for a log written before the
    /// index was kept, until it is rebuilt ([`Replay`]).
    pub complete: bool,
}

/// The index rebuilt by replaying the log in order, as the appends would
/// have kept it; written with [`super::Store::audit_requests_reset`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Group → its entries (op, entry), oldest first.
    pub open: std::collections::BTreeMap<String, Vec<(Op, Entry)>>,
    /// Seq → entry, the newest [`CLOSED_KEEP`].
    pub closed: std::collections::BTreeMap<u64, Entry>,
}

impl Replay {
    /// What appending `entry` does to the index.
    pub fn apply(&mut self, entry: &Entry) {
        let Some((op, group)) = op_of(entry) else {
            return;
        };
        match op {
            Op::Open => self
                .open
                .entry(group)
                .or_default()
                .push((op, entry.clone())),
            Op::Confirm => {
                if let Some(g) = self.open.get_mut(&group) {
                    g.push((op, entry.clone()));
                }
            }
            Op::Close => {
                if let Some(g) = self.open.remove(&group) {
                    for (_, e) in g {
                        self.closed.insert(e.seq, e);
                    }
                    self.closed.insert(entry.seq, entry.clone());
                    while self.closed.len() > CLOSED_KEEP {
                        self.closed.pop_first();
                    }
                }
            }
        }
    }
}

impl Requests {
    /// Both parts, in log order.
    pub fn all(&self) -> Vec<Entry> {
        let mut all: Vec<Entry> = self.open.iter().chain(&self.closed).cloned().collect();
        all.sort_by_key(|e| e.seq);
        all.dedup_by_key(|e| e.seq);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{Actor, AuditEvent, Entry};

    fn entry(kind: &str, contact: Option<&str>) -> Entry {
        Entry {
            seq: 1,
            event: AuditEvent {
                at: 1,
                kind: kind.into(),
                contact: contact.map(str::to_owned),
                actor: Actor::Customer,
                detail: None,
                business: None,
                by: None,
            },
            prev: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn requests_their_confirmations_and_closings_are_grouped_by_what_and_contact() {
        let op = |k: &str, c| op_of(&entry(k, c));
        assert_eq!(
            op("export_request", Some("ab")),
            Some((Op::Open, "export|ab".into()))
        );
        assert_eq!(
            op("erasure_confirmed", Some("ab")),
            Some((Op::Confirm, "erasure|ab".into()))
        );
        assert_eq!(
            op("erasure_declined", Some("ab")),
            Some((Op::Close, "erasure|ab".into()))
        );
        assert_eq!(
            op("export_completed", None),
            Some((Op::Close, "export|".into()))
        );
        assert_eq!(op("consent_given", Some("ab")), None);
        assert_eq!(op("admin_access", Some("ab")), None);
    }
}
