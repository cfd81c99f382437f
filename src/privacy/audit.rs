//! The audit log: an append-only record of every privacy event (consent
//! changes, policy notices, admin access to a contact, and the requests
//! of the privacy features to come), with the time, the pseudonymous
//! contact id, the actor and no content.
//!
//! Entries are chained: each carries the hash of the one before it and
//! its own hash, an HMAC-SHA256 (under a key derived from the master key)
//! over the previous hash, its sequence number and its content. Removing,
//! reordering or altering an entry breaks the chain at that point, and
//! without the key nobody can forge a chain that verifies.

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::domain::consent::POLICY_NOTICE;

use crate::config::Key32;
use crate::domain::audit::{Actor, AuditEvent, Entry, GENESIS};
use crate::store::{Store, StoreError};

type HmacSha256 = Hmac<Sha256>;

/// How long a request may stay open before it is flagged (GDPR allows a
/// month, CCPA 45 days; we hold ourselves to a week).
pub const OPEN_REQUEST_FLAG_SECS: u64 = 7 * 24 * 3600;

/// Computes and checks the chain's hashes.
#[derive(Clone)]
pub struct Chain {
    key: Key32,
}

impl Chain {
    /// Under a key derived from `key` (the pseudonym key: it stays the same
    /// when the master key is rotated).
    pub fn new(key: &Key32) -> Chain {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(key.expose())
            .expect("HMAC takes keys of any length");
        m.update(b"whatsify audit chain v1");
        let mut key = [0u8; 32];
        key.copy_from_slice(&m.finalize().into_bytes());
        Chain {
            key: Key32::new(key),
        }
    }

    /// The hash of `event` as entry `seq` after `prev`.
    pub fn hash(&self, seq: u64, prev: &str, event: &AuditEvent) -> String {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(self.key.expose())
            .expect("HMAC takes keys of any length");
        m.update(prev.as_bytes());
        m.update(b"\n");
        m.update(seq.to_string().as_bytes());
        m.update(b"\n");
        // serde_json writes struct fields in declaration order: stable.
        m.update(&serde_json::to_vec(event).unwrap_or_default());
        hex::encode(m.finalize().into_bytes())
    }

    /// The entry that follows (`seq`, `prev`).
    pub fn link(&self, seq: u64, prev: &str, event: AuditEvent) -> Entry {
        let hash = self.hash(seq, prev, &event);
        Entry {
            seq,
            event,
            prev: prev.to_owned(),
            hash,
        }
    }

    /// Checks a whole log, oldest first: `Err(seq)` names the first entry
    /// where it is broken (removed, reordered, altered or forged).
    pub fn verify(&self, entries: &[Entry]) -> Result<(), u64> {
        let mut prev = GENESIS.to_owned();
        for (expected, e) in (1..).zip(entries) {
            if e.seq != expected || e.prev != prev || e.hash != self.hash(e.seq, &e.prev, &e.event)
            {
                return Err(e.seq);
            }
            prev.clone_from(&e.hash);
        }
        Ok(())
    }
}

/// Appends `event` to the store's log, retrying when another writer
/// appended first.
pub async fn record(store: &dyn Store, chain: &Chain, event: AuditEvent) -> Result<(), StoreError> {
    for attempt in 0..50u32 {
        let (seq, prev) = store.audit_head().await?;
        let entry = chain.link(seq + 1, &prev, event.clone());
        if store.audit_append(&entry).await? {
            return Ok(());
        }
        // Another writer got there first: back off a little, at random, so
        // that contending writers spread out.
        let ceiling = 1u64 << attempt.min(6);
        let ms = rand::random_range(0..=ceiling);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    Err(StoreError::Unavailable(
        "the audit log is too busy to append to".into(),
    ))
}

/// Records `event`, logging (not failing) when the store is unavailable:
/// for callers whose own write already succeeded.
pub async fn note(store: &dyn Store, chain: &Chain, event: AuditEvent) {
    let kind = event.kind.clone();
    if let Err(e) = record(store, chain, event).await {
        tracing::error!(error = %e, kind, "audit entry not written");
    }
}

/// The audit event of a consent change (or a policy notice) recorded for
/// `contact`.
pub fn of_consent(contact: &str, change: &crate::domain::consent::ConsentChange) -> AuditEvent {
    let (kind, actor) = if change.purpose == POLICY_NOTICE {
        ("policy_notice", Actor::System)
    } else if change.source == crate::privacy::consent::ADMIN_SOURCE {
        // Recorded by the support team, for the customer.
        let kind = if change.granted {
            "consent_given"
        } else {
            "consent_withdrawn"
        };
        (kind, Actor::Admin)
    } else if change.granted {
        ("consent_given", Actor::Customer)
    } else if change.source.starts_with("meta:") {
        // Meta told us (131050); the customer acted on WhatsApp's side.
        ("consent_withdrawn", Actor::System)
    } else {
        ("consent_withdrawn", Actor::Customer)
    };
    AuditEvent {
        at: change.at,
        kind: kind.to_owned(),
        contact: Some(contact.to_owned()),
        actor,
        detail: Some(format!(
            "{}, {}, policy {}",
            change.purpose, change.source, change.policy_version
        )),
        business: change.business.clone(),
        by: None,
    }
}

/// The legal deadline to answer a privacy request: GDPR allows one month
/// (Art. 12(3)), CCPA 45 days; we count the stricter, as 30 days.
pub const REQUEST_DEADLINE_SECS: u64 = 30 * 24 * 3600;

/// A privacy request (`export_request`, `erasure_request`, …) and what
/// became of it, read from the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    /// The request entry's sequence number.
    pub seq: u64,
    /// `export`, `erasure`, …
    pub what: String,
    pub contact: Option<String>,
    pub actor: Actor,
    pub at: u64,
    /// `open`, `confirmed` (the customer confirmed; the work is queued),
    /// `completed`, `declined`, or `lapsed` (an erasure the customer did
    /// not confirm in time: nothing was erased, nothing is owed).
    pub state: &'static str,
    /// When it was completed or declined.
    pub closed_at: Option<u64>,
    /// The business it was made to (`None`: `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business: Option<crate::domain::BusinessId>,
}

impl Request {
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }
}

/// Every request in `entries` (in log order), each closed by the first
/// later `_completed` or `_declined` entry of the same kind for the same
/// contact (one completion answers every request open before it). An
/// erasure request still unconfirmed `erase_window` seconds after it was
/// made has lapsed at `now`: the customer was asked to confirm and did
/// not.
pub fn requests(entries: &[Entry], now: u64, erase_window: u64) -> Vec<Request> {
    let mut out: Vec<Request> = Vec::new();
    // (what, contact) → the indexes in `out` still open.
    let mut open: std::collections::HashMap<(String, Option<String>), Vec<usize>> =
        Default::default();
    for e in entries {
        let kind = e.event.kind.as_str();
        if let Some(what) = kind.strip_suffix("_request") {
            open.entry((what.to_owned(), e.event.contact.clone()))
                .or_default()
                .push(out.len());
            out.push(Request {
                seq: e.seq,
                what: what.to_owned(),
                contact: e.event.contact.clone(),
                actor: e.event.actor,
                at: e.event.at,
                state: "open",
                closed_at: None,
                business: e.event.business.clone(),
            });
            continue;
        }
        let (what, state) = if let Some(w) = kind.strip_suffix("_completed") {
            (w, "completed")
        } else if let Some(w) = kind.strip_suffix("_declined") {
            (w, "declined")
        } else if let Some(w) = kind.strip_suffix("_confirmed") {
            (w, "confirmed")
        } else {
            continue;
        };
        let key = (what.to_owned(), e.event.contact.clone());
        let Some(waiting) = open.get_mut(&key) else {
            continue;
        };
        for &i in waiting.iter() {
            out[i].state = state;
        }
        if state != "confirmed" {
            for i in waiting.drain(..) {
                out[i].closed_at = Some(e.event.at);
            }
        }
    }
    for r in &mut out {
        if r.what == "erasure" && r.state == "open" && now >= r.at + erase_window {
            r.state = "lapsed";
            r.closed_at = Some(r.at + erase_window);
        }
    }
    out
}

/// Requests (`*_request`) still open `OPEN_REQUEST_FLAG_SECS` after they
/// were made, at `now`: their sequence numbers.
pub fn overdue(entries: &[Entry], now: u64, erase_window: u64) -> Vec<u64> {
    overdue_of(&requests(entries, now, erase_window), now)
}

/// The sequence numbers of `requests` still open `OPEN_REQUEST_FLAG_SECS`
/// after they were made, at `now`.
pub fn overdue_of(requests: &[Request], now: u64) -> Vec<u64> {
    requests
        .iter()
        .filter(|r| r.is_open() && now >= r.at + OPEN_REQUEST_FLAG_SECS)
        .map(|r| r.seq)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, at: u64) -> AuditEvent {
        AuditEvent {
            at,
            kind: kind.into(),
            contact: Some("c1".into()),
            actor: Actor::Customer,
            detail: None,
            business: None,
            by: None,
        }
    }

    /// Two entries as a release before businesses stored them (their
    /// hashes computed apart from this code, over the JSON as written).
    const OLD_LOG: [&str; 2] = [
        r#"{"seq":1,"at":1700000000,"kind":"consent_given","contact":"0123456789abcdef0123456789abcdef","actor":"customer","detail":"marketing, keyword, policy 1","prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":"4b0b73afefeb252fde63ffad8e3901118e909de404199b63dcd81fce6f4913a5"}"#,
        r#"{"seq":2,"at":1700000060,"kind":"admin_auth_failed","actor":"admin","prev":"4b0b73afefeb252fde63ffad8e3901118e909de404199b63dcd81fce6f4913a5","hash":"374e8448bc9fe7349c83d9dccedb9ef3135c3e83420b1477a5f66c4e8e714e6d"}"#,
    ];

    #[test]
    fn entries_written_before_businesses_still_verify_and_belong_to_default() {
        let chain = Chain::new(&crate::config::Key32::new([7; 32]));
        let old: Vec<Entry> = OLD_LOG
            .iter()
            .map(|e| serde_json::from_str(e).expect("entry"))
            .collect();
        assert_eq!(chain.verify(&old), Ok(()));
        for (e, text) in old.iter().zip(OLD_LOG) {
            assert_eq!(serde_json::to_string(e).ok().as_deref(), Some(text));
            assert!(e.event.business_id().is_default());
        }
        // An entry of another business names it, and is chained the same.
        let cafe = crate::domain::BusinessId::parse("cafe");
        let mut next = event("admin_access", 1700000120);
        next.business = cafe.clone();
        let mut all = old.clone();
        all.push(chain.link(3, &old[1].hash, next));
        assert_eq!(chain.verify(&all), Ok(()));
        assert_eq!(Some(all[2].event.business_id()), cafe);
        let mut moved = all.clone();
        moved[2].event.business = None;
        assert_eq!(chain.verify(&moved), Err(3), "the business is in the hash");
    }

    fn log(chain: &Chain, kinds: &[(&str, u64)]) -> Vec<Entry> {
        let mut prev = GENESIS.to_owned();
        kinds
            .iter()
            .enumerate()
            .map(|(i, (k, at))| {
                let e = chain.link(i as u64 + 1, &prev, event(k, *at));
                prev.clone_from(&e.hash);
                e
            })
            .collect()
    }

    #[test]
    fn a_removed_altered_or_forged_entry_breaks_the_chain_where_it_was() {
        let chain = Chain::new(&Key32::new([7; 32]));
        let entries = log(&chain, &[("a", 1), ("b", 2), ("c", 3), ("d", 4)]);
        assert_eq!(chain.verify(&entries), Ok(()));

        let mut removed = entries.clone();
        removed.remove(1);
        assert_eq!(chain.verify(&removed), Err(3));

        let mut altered = entries.clone();
        altered[2].event.kind = "nothing_happened".into();
        assert_eq!(chain.verify(&altered), Err(3));

        let mut dropped_last = entries.clone();
        dropped_last.pop();
        assert_eq!(
            chain.verify(&dropped_last),
            Ok(()),
            "a shorter log verifies"
        );

        // Recomputed without the key: does not verify.
        let forger = Chain::new(&Key32::new([8; 32]));
        let forged = log(&forger, &[("a", 1), ("b", 2)]);
        assert_eq!(chain.verify(&forged), Err(1));
    }

    #[test]
    fn a_request_open_for_a_week_is_flagged_until_it_is_closed() {
        let chain = Chain::new(&Key32::new([7; 32]));
        let week = OPEN_REQUEST_FLAG_SECS;
        let open = log(&chain, &[("export_request", 100)]);
        assert!(overdue(&open, 100 + week - 1, 600).is_empty());
        assert_eq!(overdue(&open, 100 + week, 600), [1]);
        let closed = log(
            &chain,
            &[("export_request", 100), ("export_completed", 200)],
        );
        assert!(overdue(&closed, 100 + 2 * week, 600).is_empty());
    }

    #[test]
    fn requests_carry_their_state_and_are_closed_per_contact_and_kind() {
        let chain = Chain::new(&Key32::new([7; 32]));
        let mut entries = log(
            &chain,
            &[
                ("export_request", 10),
                ("erasure_request", 20),
                ("erasure_confirmed", 25),
                ("export_completed", 30),
                ("export_request", 40),
                ("consent_given", 50),
            ],
        );
        // Another contact's completion closes nothing of c1's.
        entries.push(chain.link(
            7,
            &entries[5].hash,
            AuditEvent {
                at: 60,
                kind: "export_completed".into(),
                contact: Some("c2".into()),
                actor: Actor::System,
                detail: None,
                business: None,
                by: None,
            },
        ));
        let r = requests(&entries, 100, 600);
        let seen: Vec<(u64, &str, &str, Option<u64>)> = r
            .iter()
            .map(|r| (r.seq, r.what.as_str(), r.state, r.closed_at))
            .collect();
        assert_eq!(
            seen,
            [
                (1, "export", "completed", Some(30)),
                (2, "erasure", "confirmed", None),
                (5, "export", "open", None),
            ]
        );
        let week = OPEN_REQUEST_FLAG_SECS;
        assert_eq!(overdue(&entries, 40 + week, 600), [2, 5]);
        let declined = log(&chain, &[("erasure_request", 1), ("erasure_declined", 2)]);
        assert_eq!(requests(&declined, 3, 600)[0].state, "declined");
        assert!(!requests(&declined, 3, 600)[0].is_open());
        // An erasure never confirmed lapses when the window closes; a
        // confirmed one stays open until it is done.
        let unconfirmed = log(&chain, &[("erasure_request", 1)]);
        assert_eq!(requests(&unconfirmed, 600, 600)[0].state, "open");
        let lapsed = &requests(&unconfirmed, 601, 600)[0];
        assert_eq!((lapsed.state, lapsed.closed_at), ("lapsed", Some(601)));
        assert!(overdue(&unconfirmed, 1 + week, 600).is_empty());
        let confirmed = log(&chain, &[("erasure_request", 1), ("erasure_confirmed", 2)]);
        assert_eq!(requests(&confirmed, 1 + week, 600)[0].state, "confirmed");
        assert_eq!(overdue(&confirmed, 1 + week, 600), [1]);
    }
}
