//! Reading the audit log a page at a time, newest first, checking its
//! hash chain as it goes (for `GET /admin/audit` and the console).
//!
//! A page is checked on its own: each entry's hash, each entry's link to
//! the one before it, and the oldest entry's link to the entry just below
//! the page. The first page starts at the stored head (read first), so a
//! cut-off or altered tail shows; a later page starts from a cursor that
//! carries the hash the entry below the previous page must have, so pages
//! read one after the other check the chain from the head down. The whole
//! log can be checked the same way in a stream of pages ([`verify_all`]).
//! Open requests come from the store's request index, not from the log.

use serde::Serialize;

use super::audit::{Chain, Request};
use crate::domain::audit::{Entry, GENESIS};
use crate::store::{Store, StoreError};

/// The most entries one answer reads and checks, whatever the filters.
pub const SCAN_MAX: u64 = 10_000;
/// Entries read from the store at a time.
const CHUNK: usize = 1000;

/// Where a page starts: just below `before`, whose predecessor must have
/// `hash`. Written `<before>-<hash>`; opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    before: u64,
    hash: String,
}

impl Cursor {
    pub fn parse(s: &str) -> Option<Cursor> {
        let (before, hash) = s.split_once('-')?;
        let before: u64 = before.parse().ok()?;
        let hex = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        (before >= 2 && hex).then(|| Cursor {
            before,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.before, self.hash)
    }
}

/// Which entries a page shows (all of them are checked).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The pseudonymous contact id.
    pub contact: Option<String>,
    pub kind: Option<String>,
    /// From and to (Unix s, inclusive).
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// Only the entries of this business (those that name none are the
    /// `default` business's).
    pub business: Option<crate::domain::BusinessId>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.contact.is_none()
            && self.kind.is_none()
            && self.from.is_none()
            && self.to.is_none()
            && self.business.is_none()
    }

    fn matches(&self, e: &Entry) -> bool {
        self.business
            .as_ref()
            .is_none_or(|b| e.event.business_id() == *b)
            && self
                .contact
                .as_ref()
                .is_none_or(|k| e.event.contact.as_deref() == Some(k.as_str()))
            && self.kind.as_ref().is_none_or(|k| &e.event.kind == k)
            && self.from.is_none_or(|t| e.event.at >= t)
            && self.to.is_none_or(|t| e.event.at <= t)
    }
}

/// What was checked of the chain, and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Nothing checked was removed, reordered, altered or cut off.
    pub intact: bool,
    /// How many entries were checked (hash and link each).
    pub verified_entries: u64,
    /// The newest and oldest sequence numbers checked.
    pub verified_to: Option<u64>,
    pub verified_from: Option<u64>,
    /// The first place (in log order) where the chain is broken.
    pub broken_at: Option<u64>,
    /// The oldest entry checked links to the stored entry below it (or is
    /// the first entry, after the genesis hash).
    pub links_to_older: bool,
    /// The newest entry checked is the stored head (first pages and
    /// whole-log checks); `None` for a later page.
    pub head_matches: Option<bool>,
    /// The head's sequence number: how many entries the log has.
    pub log_entries: u64,
    /// Every entry from the head down to the first was checked.
    pub complete: bool,
}

/// Checks entries met newest first.
struct Walk<'a> {
    chain: &'a Chain,
    /// The seq and hash the next (older) entry must have, and the entry
    /// that named them (`None`: the head or a cursor).
    expect: (u64, String),
    named_by: Option<u64>,
    broken_at: Option<u64>,
    verified: u64,
    newest: Option<u64>,
    oldest: Option<u64>,
}

impl<'a> Walk<'a> {
    fn new(chain: &'a Chain, expect: (u64, String)) -> Walk<'a> {
        Walk {
            chain,
            expect,
            named_by: None,
            broken_at: None,
            verified: 0,
            newest: None,
            oldest: None,
        }
    }

    fn broken(&mut self, seq: u64) {
        self.broken_at = Some(self.broken_at.map_or(seq, |b| b.min(seq)));
    }

    /// The entry expected is missing (`found` came instead, if anything):
    /// the entry that named it does not link; when the head or a cursor
    /// named it, the oldest entry missing is where the chain breaks.
    fn missing(&mut self, found: Option<u64>) {
        let at = self.named_by.unwrap_or(found.map_or(1, |s| s + 1));
        self.broken(at);
    }

    fn step(&mut self, e: &Entry) {
        let (seq, hash) = &self.expect;
        if e.seq < *seq {
            self.missing(Some(e.seq));
        } else if e.seq != *seq || e.hash != *hash {
            self.broken(e.seq);
        }
        if e.hash != self.chain.hash(e.seq, &e.prev, &e.event) || (e.seq == 1 && e.prev != GENESIS)
        {
            self.broken(e.seq);
        }
        self.expect = (e.seq.saturating_sub(1), e.prev.clone());
        self.named_by = Some(e.seq);
        self.verified += 1;
        self.newest.get_or_insert(e.seq);
        self.oldest = Some(e.seq);
    }

    /// Whether what was checked links to `older`, the next entry down (read,
    /// not checked); at the first entry, it linked to the genesis hash.
    fn links_to(&mut self, older: Option<&Entry>) -> bool {
        if self.expect.0 == 0 {
            return true;
        }
        match older {
            Some(o) if o.seq == self.expect.0 && o.hash == self.expect.1 => true,
            other => {
                self.missing(other.map(|o| o.seq));
                false
            }
        }
    }

    fn check(&self, links_to_older: bool, head_matches: Option<bool>, log_entries: u64) -> Check {
        Check {
            intact: self.broken_at.is_none(),
            verified_entries: self.verified,
            verified_to: self.newest,
            verified_from: self.oldest,
            broken_at: self.broken_at,
            links_to_older,
            head_matches,
            log_entries,
            complete: self.expect.0 == 0 && head_matches.is_some(),
        }
    }
}

/// One page of the log, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    /// The entries that match the filter.
    pub entries: Vec<Entry>,
    /// Where the next (older) page starts, while older entries remain.
    pub next: Option<Cursor>,
    pub chain: Check,
}

/// Up to `limit` entries matching `filter`, newest first, from the head or
/// from `cursor`; reads and checks at most [`SCAN_MAX`] entries, so a rare
/// filter may answer fewer with a `next` cursor to go on from.
pub async fn page(
    store: &dyn Store,
    chain: &Chain,
    cursor: Option<&Cursor>,
    filter: &Filter,
    limit: usize,
) -> Result<Page, StoreError> {
    let head = store.audit_head().await?;
    let (mut before, expect) = match cursor {
        None => (head.0 + 1, head.clone()),
        Some(c) => (c.before, (c.before - 1, c.hash.clone())),
    };
    let mut walk = Walk::new(chain, expect);
    let mut first: Option<(u64, String)> = None;
    let mut shown = Vec::new();
    let mut older: Option<Entry> = None;
    let chunk = if filter.is_empty() {
        limit.saturating_add(1).min(CHUNK)
    } else {
        CHUNK
    };
    'read: while before > 1 {
        let entries = store.audit_page(Some(before), chunk).await?;
        if entries.is_empty() {
            break;
        }
        for e in entries {
            if shown.len() >= limit || walk.verified >= SCAN_MAX {
                older = Some(e);
                break 'read;
            }
            walk.step(&e);
            first.get_or_insert_with(|| (e.seq, e.hash.clone()));
            before = e.seq;
            if filter.matches(&e) {
                shown.push(e);
            }
        }
    }
    if older.is_none() && walk.expect.0 > 0 {
        older = store.audit_page(Some(before), 1).await?.pop();
    }
    let links = walk.links_to(older.as_ref());
    let head_matches = cursor
        .is_none()
        .then(|| first.as_ref().map_or(head.0 == 0, |f| *f == head));
    let next = (walk.expect.0 > 0 && older.is_some()).then(|| Cursor {
        before,
        hash: walk.expect.1.clone(),
    });
    Ok(Page {
        entries: shown,
        next,
        chain: walk.check(links, head_matches, head.0),
    })
}

/// Checks the whole log from the stored head down to its first entry, a
/// chunk at a time (nothing is kept but the link to the next one).
pub async fn verify_all(store: &dyn Store, chain: &Chain) -> Result<Check, StoreError> {
    let head = store.audit_head().await?;
    let mut walk = Walk::new(chain, head.clone());
    let mut head_matches = head.0 == 0;
    let mut before = head.0 + 1;
    while before > 1 {
        let entries = store.audit_page(Some(before), CHUNK).await?;
        let Some(last) = entries.last() else {
            break;
        };
        before = last.seq;
        for e in &entries {
            if walk.newest.is_none() {
                head_matches = (e.seq, &e.hash) == (head.0, &head.1);
            }
            walk.step(e);
        }
    }
    let links = walk.links_to(None);
    Ok(walk.check(links, Some(head_matches), head.0))
}

/// How long past its window a lapsed erasure request stays among the open
/// ones of the index (a confirmation cannot come that late, whatever the
/// clocks of the instances say).
const LAPSE_GRACE: u64 = 86_400;

/// Every request in the store's request index (open ones, and the most
/// recently closed), in log order, as at `now`. An erasure request that
/// lapsed a day ago is moved out of the open ones on the way.
pub async fn requests(
    store: &dyn Store,
    now: u64,
    erase_window: u64,
) -> Result<Vec<Request>, StoreError> {
    let mut index = store.audit_requests().await?;
    if !index.complete {
        rebuild(store).await?;
        index = store.audit_requests().await?;
    }
    let all = super::audit::requests(&index.all(), now, erase_window);
    let gone = |r: &&Request| r.state == "lapsed" && now >= r.at + erase_window + LAPSE_GRACE;
    for r in all.iter().filter(gone) {
        if let Some(e) = index.open.iter().find(|e| e.seq == r.seq) {
            store.audit_request_lapsed(e).await?;
        }
    }
    Ok(all)
}

/// Rebuilds the request index of a log written before it was kept: reads
/// the log once, oldest first, a chunk at a time, and writes the index
/// unless the log moved meanwhile (then again, a few times).
async fn rebuild(store: &dyn Store) -> Result<(), StoreError> {
    for _ in 0..5 {
        let (through, _) = store.audit_head().await?;
        tracing::info!(through, "rebuilding the audit log's request index");
        let mut replay = crate::store::audit_index::Replay::default();
        let mut from = 1;
        while from <= through {
            let entries = store.audit_entries(from, CHUNK).await?;
            let Some(last) = entries.last() else {
                break;
            };
            from = last.seq + 1;
            for e in entries.iter().filter(|e| e.seq <= through) {
                replay.apply(e);
            }
        }
        if store.audit_requests_reset(through, &replay).await? {
            return Ok(());
        }
    }
    tracing::warn!("the audit log moved while its request index was rebuilt; trying later");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{Actor, AuditEvent};

    #[test]
    fn a_cursor_reads_back_as_written_and_nothing_else_is_one() {
        let c = Cursor {
            before: 42,
            hash: "ab".repeat(32),
        };
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        for bad in ["", "42", "42-", "x-ab", "1-", "42-abc", "-1-ab"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
        assert_eq!(Cursor::parse(&format!("1-{}", "ab".repeat(32))), None);
    }

    /// Walks `entries` newest first from `head`: where it broke, and
    /// whether the oldest links down (to nothing: the first entry).
    fn walk(chain: &Chain, head: (u64, String), entries: &[Entry]) -> (Option<u64>, bool) {
        let mut w = Walk::new(chain, head);
        for e in entries.iter().rev() {
            w.step(e);
        }
        let links = w.links_to(None);
        (w.broken_at, links)
    }

    #[test]
    fn a_walk_from_the_head_finds_removed_altered_and_cut_off_entries() {
        use crate::config::Key32;

        let chain = Chain::new(&Key32::new([7; 32]));
        let mut prev = GENESIS.to_owned();
        let log: Vec<Entry> = (1..=5)
            .map(|seq| {
                let event = AuditEvent {
                    at: seq,
                    kind: "k".into(),
                    contact: None,
                    actor: Actor::System,
                    detail: None,
                    business: None,
                    by: None,
                };
                let e = chain.link(seq, &prev, event);
                prev.clone_from(&e.hash);
                e
            })
            .collect();
        let head = (5, log[4].hash.clone());
        assert_eq!(walk(&chain, head.clone(), &log), (None, true));

        let mut removed = log.clone();
        removed.remove(2);
        assert_eq!(walk(&chain, head.clone(), &removed).0, Some(4));
        let mut altered = log.clone();
        altered[1].event.kind = "nothing".into();
        assert_eq!(walk(&chain, head.clone(), &altered).0, Some(2));
        let cut = &log[..3];
        assert_eq!(walk(&chain, head.clone(), cut).0, Some(4), "the tail");
        let first_gone = &log[1..];
        assert_eq!(walk(&chain, head.clone(), first_gone), (Some(2), false));
        assert_eq!(walk(&chain, head, &[]).0, Some(1), "all gone");
    }
}
