//! The embedded backend: one redb file (`<store.path>/whatsify.redb`), no
//! server, one process.
//!
//! Tables (the same content as the Redis keys):
//!
//! | table | key → value | lifetime |
//! |---|---|---|
//! | `seen` | `"<queue>/<dedup>"` → expiry (Unix s) | 8 days, checked on read |
//! | `seen_expiry` | `(expiry, "<queue>/<dedup>")` → () | swept with `seen` once expired |
//! | `inbox` | `("<queue>", seq)` → sealed event | until processed by a worker |
//! | `seq` | `"<queue>"` → next sequence number | with its queue |
//! | `ready` | contact key → first arrival (Unix ms; read in random order) | until the inbox is drained |
//! | `outbox_ready` | contact key → first job (Unix ms) | until the outbox is drained |
//! | `timers`, `timer_of` | `(due, contact)` → (), and contact → due | until the timer fires or is cancelled |
//! | `sessions`, `session_expiry` | contact key → sealed session, and contact key → when it expires | `flows.session_ttl` after the last write (purged hourly) |
//! | `outbox_head` | contact key → retry state of the outbox's first job | until that job is finished |
//! | `outbox_due`, `outbox_due_of` | `(due, contact)` → (), and contact → due: outboxes that wait | until the outbox is released |
//! | `deliveries` | `(contact, job id)` → delivery record (JSON; state, never content) | 30 days after the record's time (purged hourly) |
//! | `wamids` | `(contact, wamid hash)` → job id | with its record |
//! | `dead`, `dead_index` | `("d:<contact>", seq)` → sealed dead letter, and contact → time of the last one | 30 days after the contact's last one (purged hourly) |
//! | `consent` | `("k:<contact>", seq)` → consent ledger entry (JSON) | kept: it is the evidence of consent |
//! | `windows` | `(contact, phone_number_id)` → the customer's last message time (Unix s) | 2 days after it (purged hourly) |
//! | `history` | `("h:<contact>", seq)` → (time in Unix ms, sealed message history entry) | `privacy.retention_days` (purged by the retention job) |
//! | `history_age` | `(time, "h:<contact>", seq)` → (): the history by age, for the retention purge | with its entry |
//! | `links`, `aliases` | alias contact key → canonical contact key (see `store::links`; keyed hashes only), and `(canonical, alias)` → (): one customer known by a number and a business-scoped user id | kept until the contact is erased |
//! | `suppressed` | pseudonymous key of an erased contact → when (Unix s) | kept: their opt-out survives |
//! | `audit` | sequence number → audit entry (JSON: time, kind, pseudonymous contact, actor, chain hashes; no content) | kept: it is the audit trail |
//! | `audit_head` | `"head"` → (sequence number, hash) of the last entry appended, so a cut-off tail shows (a store from before it starts from its last entry); `"indexed_from"` → (the first entry the request index saw, 1 once complete; "") | kept |
//! | `audit_requests`, `audit_requests_closed` | the request index (see `store::audit_index`): `(group, seq)` → (op `r`/`c`, entry JSON) of open requests; seq → entry JSON of closed ones | an open group until closed or lapsed; the newest 1,000 closed entries |
//! | `profiles` | contact key → (expiry, sealed profile) | `privacy.retention_days` after the last write (not read past its expiry; purged hourly) |
//! | `data_keys` | contact key → (expiry, wrapped data key) | `privacy.retention_days` + 2 days after the contact's last message (likewise) |
//! | `data_keys_rewrapped` | contact key → (expiry, the data key's previous wrapping): a claim taken before a rewrap still commits | [`super::REWRAPPED_KEEP`] after the rewrap (likewise); erased with the contact |
//! | `stats` | `(day, counter)` → amount: the anonymous daily statistics | 400 days |
//! | `pins` | name → value: the store's identity (the id of the pseudonym key its contacts are named under) | kept |
//! | `campaigns` | campaign id → (creation time in Unix ms, status, definition JSON) | 400 days after its creation ([`super::CAMPAIGN_TTL`]; purged hourly) |
//! | `campaign_index` | `(creation time in Unix ms, campaign id)` → (): campaigns oldest first | with its campaign |
//! | `campaign_audience` | `(campaign id, seq)` → sealed audience entry, taken from the front | until dispatched, or with its campaign |
//! | `campaign_counts` | `(campaign id, counter)` → amount (`queued`, `sent`, `skipped:<reason>`, …; may go back to 0) | with its campaign |
//! | `campaign_marks` | `(contact, campaign id)` → (expiry, Unix s; `q` queued, `s` skipped, `d` done): the contact had its turn | as long as the contact's data key (not read past its expiry; purged hourly); erased with the contact |
//! | `last_campaign` | contact → (expiry, campaign id): the campaign whose message was last sent to the contact, to which an opt-out is attributed (once) | 24 hours after that message (likewise) |
//!
//! redb is copy-on-write: a removed value's bytes stay in the file's free
//! pages until they are reused. Message content is only ever stored
//! sealed, so what lingers is ciphertext; an erased contact's data key is
//! among what lingers, and with the master key it could open it. Keep the
//! store's folder as protected as the master key.
//!
//! Rate limits, breakers and campaign leases live in memory, like leases:
//! one process.
//!
//! The outbox shares the `inbox` table under the queue name `o:<contact>`.
//! Leases live in memory: one process owns the file, and a restart frees
//! them all.
//!
//! Writes go through one writer thread that gathers concurrent requests
//! into a single transaction (group commit): each commit is durable
//! (fsync) before any of its callers is answered, and the cost of the fsync
//! is shared by everyone waiting.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

use super::{
    Appended, Breaker, Claim, Commit, Committed, ConsentChange, DEDUP_TTL, DeadLetter, Delivery,
    Finish, InboxEntry, Lane, Queue, RateGrant, Store, StoreError, StoredEntry, now_secs, stats,
};
use crate::domain::ContactKey;

mod audience;
mod audit;
mod history;
mod links;

const SEEN: TableDefinition<&str, u64> = TableDefinition::new("seen");
const INBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
const SEEN_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("seen_expiry");
const SEQ: TableDefinition<&str, u64> = TableDefinition::new("seq");
const READY: TableDefinition<&str, u64> = TableDefinition::new("ready");
const OUTBOX_READY: TableDefinition<&str, u64> = TableDefinition::new("outbox_ready");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// contact → when its session expires (Unix s): `flows.session_ttl` after
/// the last write.
const SESSION_EXPIRY: TableDefinition<&str, u64> = TableDefinition::new("session_expiry");
const TIMERS: TableDefinition<(u64, &str), ()> = TableDefinition::new("timers");
const TIMER_OF: TableDefinition<&str, u64> = TableDefinition::new("timer_of");
const OUTBOX_HEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox_head");
const OUTBOX_DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("outbox_due");
const OUTBOX_DUE_OF: TableDefinition<&str, u64> = TableDefinition::new("outbox_due_of");
const DELIVERIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("deliveries");
const WAMIDS: TableDefinition<(&str, &str), &str> = TableDefinition::new("wamids");
const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead");
const DEAD_INDEX: TableDefinition<&str, u64> = TableDefinition::new("dead_index");
const WINDOWS: TableDefinition<(&str, &str), u64> = TableDefinition::new("windows");
const CONSENT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("consent");
const PROFILES: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("profiles");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const HISTORY: TableDefinition<(&str, u64), (u64, &[u8])> = TableDefinition::new("history");
const SUPPRESSED: TableDefinition<&str, u64> = TableDefinition::new("suppressed");
const HISTORY_AGE: TableDefinition<(u64, &str, u64), ()> = TableDefinition::new("history_age");
/// name → value: the store's pins (see [`Store::pin`]).
const PINS: TableDefinition<&str, &str> = TableDefinition::new("pins");
/// (day, counter) → amount: the anonymous daily statistics.
const STATS: TableDefinition<(&str, &str), u64> = TableDefinition::new("stats");
/// contact → (expiry, Unix s; wrapped data key).
const DATA_KEYS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("data_keys");
/// contact → (expiry, Unix s; the data key's previous wrapping), for
/// [`super::REWRAPPED_KEEP`] after a rewrap.
const REWRAPPED: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("data_keys_rewrapped");
/// campaign id → (creation time, Unix ms; status; definition JSON).
const CAMPAIGNS: TableDefinition<&str, (u64, &str, &[u8])> = TableDefinition::new("campaigns");
/// (creation time, Unix ms; campaign id) → (): the campaigns in order.
const CAMPAIGN_INDEX: TableDefinition<(u64, &str), ()> = TableDefinition::new("campaign_index");
/// (campaign id, seq) → sealed audience entry; dispatched from the front,
/// so the entries left are contiguous.
const CAMPAIGN_AUDIENCE: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("campaign_audience");
/// (campaign id, counter) → amount.
const CAMPAIGN_COUNTS: TableDefinition<(&str, &str), i64> = TableDefinition::new("campaign_counts");
/// (contact, campaign id) → (expiry, Unix s; mark): the contact's turn in
/// a campaign (see [`MARK_QUEUED`]).
const CAMPAIGN_MARKS: TableDefinition<(&str, &str), (u64, &str)> =
    TableDefinition::new("campaign_marks");
/// contact → (expiry, Unix s; campaign id): the campaign whose message the
/// contact was last sent, for a day.
const LAST_CAMPAIGN: TableDefinition<&str, (u64, &str)> = TableDefinition::new("last_campaign");

/// A campaign mark: the contact's job is queued (no record yet).
const MARK_QUEUED: &str = "q";
/// A campaign mark: the contact was skipped.
const MARK_SKIPPED: &str = "s";
/// A campaign mark: the contact's job has a delivery record.
const MARK_DONE: &str = "d";
/// How long an opt-out is attributed to the campaign whose message came
/// last (as on Redis).
const LAST_CAMPAIGN_KEEP: u64 = 86_400;

/// Campaign leases: campaign id → (owner, expiry).
type CampaignLeases = Arc<Mutex<HashMap<String, (String, Instant)>>>;

/// Lease holders: (lane, contact) → (token, expiry).
type Leases = Arc<Mutex<HashMap<(Lane, String), (String, Instant)>>>;

/// Most requests folded into one transaction.
const MAX_GROUP: usize = 512;
/// Most expired de-duplication marks removed per transaction.
const MAX_SWEEP: usize = 1_000;

type Reply = oneshot::Sender<Result<Vec<Appended>, StoreError>>;

type Done = Box<dyn FnOnce(bool) + Send>;
type Work = Box<dyn FnOnce(&redb::WriteTransaction) -> (bool, Done) + Send>;

/// Work for the writer thread.
enum Job {
    Append(Vec<InboxEntry>, Reply),
    /// Answers once the writer can take work (for `/readyz`).
    Ping(oneshot::Sender<()>),
    /// Anything else that writes: run in its own transaction.
    /// Runs in the group's transaction; returns what to do once the
    /// transaction is committed (`true`) or abandoned (`false`).
    Other(Work),
}

/// The embedded store; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: mpsc::Sender<Job>,
    leases: Leases,
    /// Rate limits: key → theoretical arrival time (Unix µs).
    rates: Arc<Mutex<HashMap<String, u64>>>,
    breakers: Arc<Mutex<HashMap<String, Breaker>>>,
    /// Console sessions: key → (expires at, sealed record). In memory: one
    /// process owns the database file, and a restart asks operators to
    /// sign in again.
    console: Arc<Mutex<ConsoleSessions>>,
    /// Who dispatches each campaign (see [`Store::campaign_lease`]).
    campaign_leases: CampaignLeases,
}

/// Console sessions: store key → (expires at, sealed record).
type ConsoleSessions = HashMap<String, (u64, Vec<u8>)>;

/// Console sessions kept at most (the soonest to expire go first).
const CONSOLE_SESSIONS_MAX: usize = 1000;

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Sets (or with `None` clears) a contact's timer in a pair of tables.
fn set_timer(
    txn: &redb::WriteTransaction,
    timers: TableDefinition<(u64, &str), ()>,
    timer_of: TableDefinition<&str, u64>,
    key: &str,
    at: Option<u64>,
) -> Result<(), StoreError> {
    let mut timers = txn.open_table(timers).map_err(corrupt)?;
    let mut timer_of = txn.open_table(timer_of).map_err(corrupt)?;
    if let Some(old) = timer_of.remove(key).map_err(corrupt)? {
        timers.remove((old.value(), key)).map_err(corrupt)?;
    }
    if let Some(at) = at {
        timers.insert((at, key), ()).map_err(corrupt)?;
        timer_of.insert(key, at).map_err(corrupt)?;
    }
    Ok(())
}

/// Appends entries to a contact's consent ledger.
/// The audit log's last (sequence number, hash).
fn audit_last(table: &impl ReadableTable<u64, &'static [u8]>) -> Result<(u64, String), StoreError> {
    match table.last().map_err(corrupt)? {
        Some((k, v)) => {
            let e: crate::privacy::audit::Entry =
                serde_json::from_slice(v.value()).map_err(corrupt)?;
            Ok((k.value(), e.hash))
        }
        None => Ok((0, crate::privacy::audit::GENESIS.to_owned())),
    }
}

/// The value of an `(expiry, value)` row, unless it is past its expiry
/// at `now` (Unix s).
fn unexpired((until, bytes): (u64, &[u8]), now: u64) -> Option<Vec<u8>> {
    (until > now).then(|| bytes.to_vec())
}

/// An `(expiry, value)` row of `table`, unless it is past its expiry.
fn read_unexpired(
    txn: &redb::ReadTransaction,
    table: TableDefinition<&str, (u64, &[u8])>,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let table = txn.open_table(table).map_err(corrupt)?;
    let v = table.get(key).map_err(corrupt)?;
    Ok(v.and_then(|v| unexpired(v.value(), now_secs())))
}

/// A contact's wrapped data key, unless it is past its expiry.
fn read_data_key(txn: &redb::ReadTransaction, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    read_unexpired(txn, DATA_KEYS, key)
}

/// The contact's stored data key (its expiry and wrapping) when a claim
/// that read `wrapped` may still write under it: it is the stored
/// wrapping, or the one a rewrap replaced lately. `None` when the key
/// went (erased) or is another.
fn key_in_force(
    txn: &redb::WriteTransaction,
    contact: &str,
    wrapped: &[u8],
) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    let Some((until, current)) = txn
        .open_table(DATA_KEYS)
        .map_err(corrupt)?
        .get(contact)
        .map_err(corrupt)?
        .map(|v| (v.value().0, v.value().1.to_vec()))
    else {
        return Ok(None);
    };
    if current == wrapped {
        return Ok(Some((until, current)));
    }
    let was = txn
        .open_table(REWRAPPED)
        .map_err(corrupt)?
        .get(contact)
        .map_err(corrupt)?
        .and_then(|v| unexpired(v.value(), now_secs()));
    Ok((was.as_deref() == Some(wrapped)).then_some((until, current)))
}

/// A contact's sealed profile, unless it is past its expiry.
fn read_profile(txn: &redb::ReadTransaction, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    read_unexpired(txn, PROFILES, key)
}

/// How long delivery records and dead letters are kept (as on Redis).
const RECORDS_KEEP: u64 = 30 * 86_400;
/// How long a window (the customer's last message time) is kept.
const WINDOW_KEEP: u64 = 2 * 86_400;
/// The most records one purge pass removes per table (the next pass, an
/// hour later, goes on).
const PURGE_BATCH: usize = 50_000;

/// Keys of `table` whose value says they are past their time.
fn expired<V: redb::Value + 'static>(
    table: &impl ReadableTable<&'static str, V>,
    gone: impl Fn(V::SelfType<'_>) -> bool,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for item in table.iter().map_err(corrupt)? {
        let (k, v) = item.map_err(corrupt)?;
        if gone(v.value()) {
            out.push(k.value().to_owned());
            if out.len() >= PURGE_BATCH {
                break;
            }
        }
    }
    Ok(out)
}

/// See [`Store::purge_expired`].
fn purge_expired(txn: &redb::WriteTransaction, now: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    // Delivery records (and their wamid links) 30 days after their time.
    {
        let mut deliveries = txn.open_table(DELIVERIES).map_err(corrupt)?;
        let mut old: Vec<(String, String)> = Vec::new();
        for item in deliveries.iter().map_err(corrupt)? {
            let (k, v) = item.map_err(corrupt)?;
            let at = serde_json::from_slice::<Delivery>(v.value()).map_or(0, |d| d.at);
            if at + RECORDS_KEEP <= now {
                let (c, job) = k.value();
                old.push((c.to_owned(), job.to_owned()));
                if old.len() >= PURGE_BATCH {
                    break;
                }
            }
        }
        let mut wamids = txn.open_table(WAMIDS).map_err(corrupt)?;
        let mut links: Vec<(String, String)> = Vec::new();
        for (c, job) in &old {
            deliveries
                .remove((c.as_str(), job.as_str()))
                .map_err(corrupt)?;
            let after = format!("{c}\0");
            for item in wamids
                .range((c.as_str(), "")..(after.as_str(), ""))
                .map_err(corrupt)?
            {
                let (k, v) = item.map_err(corrupt)?;
                if v.value() == job {
                    links.push((c.clone(), k.value().1.to_owned()));
                }
            }
        }
        for (c, w) in &links {
            wamids.remove((c.as_str(), w.as_str())).map_err(corrupt)?;
        }
        removed += old.len();
    }
    // Dead letters: all of a contact's, 30 days after its last one.
    {
        let mut index = txn.open_table(DEAD_INDEX).map_err(corrupt)?;
        let old: Vec<String> = {
            let mut v = Vec::new();
            for item in index.iter().map_err(corrupt)? {
                let (k, at) = item.map_err(corrupt)?;
                if at.value() + RECORDS_KEEP <= now {
                    v.push(k.value().to_owned());
                }
            }
            v
        };
        let mut dead = txn.open_table(DEAD).map_err(corrupt)?;
        let mut seq = txn.open_table(SEQ).map_err(corrupt)?;
        for c in &old {
            let q = format!("d:{c}");
            dead.retain_in((q.as_str(), 0)..=(q.as_str(), u64::MAX), |_, _| false)
                .map_err(corrupt)?;
            seq.remove(q.as_str()).map_err(corrupt)?;
            index.remove(c.as_str()).map_err(corrupt)?;
        }
        removed += old.len();
    }
    // Windows two days after the customer's last message.
    {
        let mut windows = txn.open_table(WINDOWS).map_err(corrupt)?;
        let mut old: Vec<(String, String)> = Vec::new();
        for item in windows.iter().map_err(corrupt)? {
            let (k, at) = item.map_err(corrupt)?;
            if at.value() + WINDOW_KEEP <= now {
                let (c, n) = k.value();
                old.push((c.to_owned(), n.to_owned()));
            }
        }
        for (c, n) in &old {
            windows.remove((c.as_str(), n.as_str())).map_err(corrupt)?;
        }
        removed += old.len();
    }
    // Profiles and data keys past their expiry; sessions idle past theirs.
    for table in [PROFILES, DATA_KEYS, REWRAPPED] {
        let mut t = txn.open_table(table).map_err(corrupt)?;
        let old: Vec<String> = expired(&t, |v| v.0 <= now)?;
        for k in &old {
            t.remove(k.as_str()).map_err(corrupt)?;
        }
        removed += old.len();
    }
    {
        let mut expiry = txn.open_table(SESSION_EXPIRY).map_err(corrupt)?;
        let old: Vec<String> = expired(&expiry, |v| v <= now)?;
        let mut sessions = txn.open_table(SESSIONS).map_err(corrupt)?;
        for k in &old {
            sessions.remove(k.as_str()).map_err(corrupt)?;
            expiry.remove(k.as_str()).map_err(corrupt)?;
        }
        removed += old.len();
    }
    // Campaign marks and last campaigns past their expiry.
    {
        let mut marks = txn.open_table(CAMPAIGN_MARKS).map_err(corrupt)?;
        let mut old: Vec<(String, String)> = Vec::new();
        for item in marks.iter().map_err(corrupt)? {
            let (k, v) = item.map_err(corrupt)?;
            if v.value().0 <= now {
                let (c, id) = k.value();
                old.push((c.to_owned(), id.to_owned()));
                if old.len() >= PURGE_BATCH {
                    break;
                }
            }
        }
        for (c, id) in &old {
            marks.remove((c.as_str(), id.as_str())).map_err(corrupt)?;
        }
        removed += old.len();
        let mut last = txn.open_table(LAST_CAMPAIGN).map_err(corrupt)?;
        let old: Vec<String> = expired(&last, |v| v.0 <= now)?;
        for k in &old {
            last.remove(k.as_str()).map_err(corrupt)?;
        }
        removed += old.len();
    }
    // Campaigns (their audience left and their counters) 400 days after
    // their creation.
    {
        let cutoff_ms = now.saturating_sub(super::CAMPAIGN_TTL.as_secs()) * 1000;
        let mut index = txn.open_table(CAMPAIGN_INDEX).map_err(corrupt)?;
        let mut old: Vec<(u64, String)> = Vec::new();
        for item in index
            .range((0, "")..(cutoff_ms + 1, ""))
            .map_err(corrupt)?
            .take(PURGE_BATCH)
        {
            let (k, _) = item.map_err(corrupt)?;
            let (at, id) = k.value();
            old.push((at, id.to_owned()));
        }
        let mut campaigns = txn.open_table(CAMPAIGNS).map_err(corrupt)?;
        let mut audience = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
        let mut members = txn
            .open_table(audience::CAMPAIGN_MEMBERS)
            .map_err(corrupt)?;
        let mut counts = txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
        for (at, id) in &old {
            let id = id.as_str();
            index.remove((*at, id)).map_err(corrupt)?;
            campaigns.remove(id).map_err(corrupt)?;
            audience
                .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                .map_err(corrupt)?;
            audience::forget_all(&mut members, id)?;
            let after = format!("{id}\0");
            counts
                .retain_in((id, "")..(after.as_str(), ""), |_, _| false)
                .map_err(corrupt)?;
        }
        removed += old.len();
    }
    // Statistics older than they are kept.
    {
        let oldest = stats::day(now.saturating_sub(stats::KEEP_DAYS * 86_400));
        let mut t = txn.open_table(STATS).map_err(corrupt)?;
        let mut old: Vec<(String, String)> = Vec::new();
        for item in t.range(("", "")..(oldest.as_str(), "")).map_err(corrupt)? {
            let (k, _) = item.map_err(corrupt)?;
            let (d, n) = k.value();
            old.push((d.to_owned(), n.to_owned()));
        }
        for (d, n) in &old {
            t.remove((d.as_str(), n.as_str())).map_err(corrupt)?;
        }
        removed += old.len();
    }
    Ok(removed)
}

/// Adds anonymous counters to today's statistics.
fn count(txn: &redb::WriteTransaction, counts: &[(String, u64)]) -> Result<(), StoreError> {
    if counts.is_empty() {
        return Ok(());
    }
    let day = stats::today();
    let mut t = txn.open_table(STATS).map_err(corrupt)?;
    for (name, n) in counts {
        let cur = t
            .get((day.as_str(), name.as_str()))
            .map_err(corrupt)?
            .map_or(0, |v| v.value());
        t.insert((day.as_str(), name.as_str()), cur + n)
            .map_err(corrupt)?;
    }
    Ok(())
}

fn append_consent(
    txn: &redb::WriteTransaction,
    contact: &str,
    changes: &[ConsentChange],
) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let q = format!("k:{contact}");
    let mut seqs = txn.open_table(SEQ).map_err(corrupt)?;
    let mut n = seqs
        .get(q.as_str())
        .map_err(corrupt)?
        .map(|v| v.value())
        .unwrap_or(0);
    let mut table = txn.open_table(CONSENT).map_err(corrupt)?;
    for c in changes {
        let bytes = serde_json::to_vec(c).map_err(corrupt)?;
        table
            .insert((q.as_str(), n), bytes.as_slice())
            .map_err(corrupt)?;
        n += 1;
    }
    seqs.insert(q.as_str(), n).map_err(corrupt)?;
    Ok(())
}

/// Merges a delivery record (see [`Delivery::merge`]).
fn merge_delivery(
    txn: &redb::WriteTransaction,
    contact: &str,
    update: &Delivery,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(DELIVERIES).map_err(corrupt)?;
    let mut wamids = txn.open_table(WAMIDS).map_err(corrupt)?;
    let job = if update.job.is_empty() {
        let Some(w) = &update.wamid else {
            return Ok(());
        };
        match wamids.get((contact, w.as_str())).map_err(corrupt)? {
            Some(j) => j.value().to_owned(),
            None => return Ok(()),
        }
    } else {
        update.job.clone()
    };
    let current: Option<Delivery> = table
        .get((contact, job.as_str()))
        .map_err(corrupt)?
        .and_then(|v| serde_json::from_slice(v.value()).ok());
    let record = match current.clone() {
        Some(mut cur) => {
            if !cur.merge(update) {
                return Ok(());
            }
            cur
        }
        None => Delivery {
            job: job.clone(),
            ..update.clone()
        },
    };
    let bytes = serde_json::to_vec(&record).map_err(corrupt)?;
    table
        .insert((contact, job.as_str()), bytes.as_slice())
        .map_err(corrupt)?;
    if let Some(w) = &update.wamid {
        wamids
            .insert((contact, w.as_str()), job.as_str())
            .map_err(corrupt)?;
    }
    if let Some(cid) = super::campaign_of_job(&job) {
        tally_campaign(txn, contact, cid, current.as_ref(), update, now_secs())?;
    }
    Ok(())
}

/// A campaign job's delivery record changed from `old` (`None`: it had
/// none) with `update`: moves the campaign's counters (see
/// [`super::campaign_tally`]), marks the contact's turn done once its job
/// has a record, and once the message went out remembers the campaign as
/// the contact's last for a day (an opt-out then counts for it).
fn tally_campaign(
    txn: &redb::WriteTransaction,
    contact: &str,
    cid: &str,
    old: Option<&Delivery>,
    update: &Delivery,
    now: u64,
) -> Result<(), StoreError> {
    let deltas = super::campaign_tally(old, update);
    {
        let mut counts = txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
        for (name, delta) in &deltas {
            add_count(&mut counts, cid, name, *delta).map_err(corrupt)?;
        }
    }
    if old.is_none() {
        let mut marks = txn.open_table(CAMPAIGN_MARKS).map_err(corrupt)?;
        let queued = marks.get((contact, cid)).map_err(corrupt)?.and_then(|v| {
            let (until, mark) = v.value();
            (mark == MARK_QUEUED).then_some(until)
        });
        if let Some(until) = queued {
            marks
                .insert((contact, cid), (until, MARK_DONE))
                .map_err(corrupt)?;
        }
    }
    if deltas.iter().any(|(name, _)| name == "sent") {
        txn.open_table(LAST_CAMPAIGN)
            .map_err(corrupt)?
            .insert(contact, (now + LAST_CAMPAIGN_KEEP, cid))
            .map_err(corrupt)?;
    }
    Ok(())
}

/// Adds `delta` to a campaign's counter (a counter back at 0 is kept, as
/// on Redis).
fn add_count(
    counts: &mut redb::Table<(&str, &str), i64>,
    cid: &str,
    name: &str,
    delta: i64,
) -> Result<(), redb::StorageError> {
    let cur = counts.get((cid, name))?.map_or(0, |v| v.value());
    counts.insert((cid, name), cur + delta)?;
    Ok(())
}

/// A marketing opt-out of `contact` at `now`: counts for the campaign
/// whose message the contact was sent within the last day, once (the
/// campaign is forgotten).
fn attribute_opt_out(
    last: &mut redb::Table<&str, (u64, &str)>,
    counts: &mut redb::Table<(&str, &str), i64>,
    contact: &str,
    now: u64,
) -> Result<(), redb::StorageError> {
    let cid = last.get(contact)?.and_then(|v| {
        let (until, cid) = v.value();
        (until > now).then(|| cid.to_owned())
    });
    if let Some(cid) = cid {
        add_count(counts, &cid, stats::OPT_OUTS, 1)?;
        last.remove(contact)?;
    }
    Ok(())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in the folder `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // The folder 0700, its files 0600 (tightened if looser).
        super::private_files::private_dir(path).map_err(StoreError::Unavailable)?;
        let file = path.join("whatsify.redb");
        super::private_files::private_file(&file).map_err(StoreError::Unavailable)?;
        super::private_files::private_files_in(path).map_err(StoreError::Unavailable)?;
        let db = Database::create(file).map_err(|e| {
            StoreError::Unavailable(format!("cannot open store in {}: {e}", path.display()))
        })?;
        {
            let txn = db.begin_write().map_err(corrupt)?;
            txn.open_table(SEEN).map_err(corrupt)?;
            txn.open_table(SEEN_EXPIRY).map_err(corrupt)?;
            txn.open_table(INBOX).map_err(corrupt)?;
            txn.open_table(SEQ).map_err(corrupt)?;
            txn.open_table(READY).map_err(corrupt)?;
            txn.open_table(OUTBOX_READY).map_err(corrupt)?;
            txn.open_table(SESSIONS).map_err(corrupt)?;
            txn.open_table(TIMERS).map_err(corrupt)?;
            txn.open_table(TIMER_OF).map_err(corrupt)?;
            txn.open_table(OUTBOX_HEAD).map_err(corrupt)?;
            txn.open_table(OUTBOX_DUE).map_err(corrupt)?;
            txn.open_table(OUTBOX_DUE_OF).map_err(corrupt)?;
            txn.open_table(DELIVERIES).map_err(corrupt)?;
            txn.open_table(WAMIDS).map_err(corrupt)?;
            txn.open_table(DEAD).map_err(corrupt)?;
            txn.open_table(DEAD_INDEX).map_err(corrupt)?;
            txn.open_table(WINDOWS).map_err(corrupt)?;
            txn.open_table(CONSENT).map_err(corrupt)?;
            txn.open_table(PROFILES).map_err(corrupt)?;
            txn.open_table(AUDIT).map_err(corrupt)?;
            txn.open_table(HISTORY).map_err(corrupt)?;
            txn.open_table(SUPPRESSED).map_err(corrupt)?;
            txn.open_table(HISTORY_AGE).map_err(corrupt)?;
            txn.open_table(DATA_KEYS).map_err(corrupt)?;
            txn.open_table(REWRAPPED).map_err(corrupt)?;
            txn.open_table(STATS).map_err(corrupt)?;
            txn.open_table(SESSION_EXPIRY).map_err(corrupt)?;
            txn.open_table(PINS).map_err(corrupt)?;
            txn.open_table(CAMPAIGNS).map_err(corrupt)?;
            txn.open_table(CAMPAIGN_INDEX).map_err(corrupt)?;
            txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
            txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
            txn.open_table(CAMPAIGN_MARKS).map_err(corrupt)?;
            txn.open_table(LAST_CAMPAIGN).map_err(corrupt)?;
            audit::create_tables(&txn)?;
            links::create_tables(&txn)?;
            txn.open_table(audience::CAMPAIGN_MEMBERS)
                .map_err(corrupt)?;
            audience::index_older_audiences(&txn)?;
            txn.commit().map_err(corrupt)?;
        }
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let wdb = db.clone();
        std::thread::Builder::new()
            .name("whatsify-redb-writer".into())
            .spawn(move || writer_loop(&wdb, rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer: {e}")))?;
        Ok(EmbeddedStore {
            db,
            writer: tx,
            leases: Arc::new(Mutex::new(HashMap::new())),
            rates: Arc::new(Mutex::new(HashMap::new())),
            breakers: Arc::new(Mutex::new(HashMap::new())),
            console: Arc::new(Mutex::new(HashMap::new())),
            campaign_leases: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

impl EmbeddedStore {
    /// Runs `f` in a write transaction on the writer thread.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let stopped = || StoreError::Unavailable("store writer stopped".into());
        let (tx, rx) = oneshot::channel();
        let job = Job::Other(Box::new(move |txn: &redb::WriteTransaction| {
            let result = f(txn);
            let ok = result.is_ok();
            let finish: Done = Box::new(move |committed: bool| {
                let _ = tx.send(match result {
                    Ok(v) if committed => Ok(v),
                    Ok(_) => Err(StoreError::Unavailable("store transaction failed".into())),
                    Err(e) => Err(e),
                });
            });
            (ok, finish)
        }));
        self.writer.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    fn holds(leases: &Leases, claim: &Claim) -> bool {
        let map = leases.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(claim.lane, claim.contact.as_str().to_owned()))
            .is_some_and(|(owner, until)| *owner == claim.owner && *until > Instant::now())
    }

    /// A sender is done with a contact: its outbox timer is cleared and,
    /// when nothing is queued, its ready mark.
    fn unready_outbox(txn: &redb::WriteTransaction, c: &Claim) -> Result<(), StoreError> {
        set_timer(txn, OUTBOX_DUE, OUTBOX_DUE_OF, c.contact.as_str(), None)?;
        let q = Queue::Outbox(c.contact.clone()).name();
        let inbox = txn.open_table(INBOX).map_err(corrupt)?;
        if queue_is_empty(&inbox, &q)? {
            txn.open_table(OUTBOX_READY)
                .map_err(corrupt)?
                .remove(c.contact.as_str())
                .map_err(corrupt)?;
        }
        Ok(())
    }

    fn unlease(leases: &Leases, claim: &Claim) {
        let mut map = leases.lock().unwrap_or_else(|p| p.into_inner());
        let key = (claim.lane, claim.contact.as_str().to_owned());
        if map
            .get(&key)
            .is_some_and(|(owner, _)| *owner == claim.owner)
        {
            map.remove(&key);
        }
    }
}

/// The first and last sequence numbers of a campaign's audience left
/// (`None`: nothing is left). Entries are taken from the front only, so
/// those between are all there.
fn audience_bounds(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    id: &str,
) -> Result<Option<(u64, u64)>, StoreError> {
    let mut range = table.range((id, 0)..=(id, u64::MAX)).map_err(corrupt)?;
    let Some(first) = range.next() else {
        return Ok(None);
    };
    let first = first.map_err(corrupt)?.0.value().1;
    let last = match range.next_back() {
        Some(item) => item.map_err(corrupt)?.0.value().1,
        None => first,
    };
    Ok(Some((first, last)))
}

/// The table of a lane's ready contacts.
fn ready_table(lane: Lane) -> TableDefinition<'static, &'static str, u64> {
    match lane {
        Lane::Inbox => READY,
        Lane::Outbox => OUTBOX_READY,
    }
}

/// A campaign as stored, if there is one.
fn read_campaign(
    table: &impl ReadableTable<&'static str, (u64, &'static str, &'static [u8])>,
    id: &str,
) -> Result<Option<super::StoredCampaign>, StoreError> {
    Ok(table.get(id).map_err(corrupt)?.map(|v| {
        let (_, status, record) = v.value();
        super::StoredCampaign {
            id: id.to_owned(),
            record: record.to_vec(),
            status: status.to_owned(),
        }
    }))
}

fn seq_of(id: &str) -> Result<u64, StoreError> {
    id.parse()
        .map_err(|_| StoreError::Corrupt(format!("not an entry id: {id}")))
}

fn queue_is_empty(
    table: &redb::Table<(&str, u64), &[u8]>,
    queue: &str,
) -> Result<bool, StoreError> {
    Ok(table
        .range((queue, 0)..=(queue, u64::MAX))
        .map_err(corrupt)?
        .next()
        .is_none())
}

fn writer_loop(db: &Database, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut appends = Vec::new();
        let mut others = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Append(entries, reply) => appends.push((entries, reply)),
                Job::Ping(reply) => {
                    let _ = reply.send(());
                }
                Job::Other(work) => others.push(work),
            }
            if appends.len() + others.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if appends.is_empty() && others.is_empty() {
            continue;
        }
        // One transaction, one fsync, for everything gathered.
        let batches: Vec<&[InboxEntry]> = appends.iter().map(|(e, _)| e.as_slice()).collect();
        let mut finishers = Vec::with_capacity(others.len());
        let outcome = db.begin_write().map_err(redb::Error::from).and_then(|txn| {
            let results = apply_appends(&txn, &batches, now_secs())?;
            let mut all_ok = true;
            for work in others {
                let (ok, finish) = work(&txn);
                all_ok &= ok;
                finishers.push(finish);
            }
            if all_ok {
                txn.commit()?;
                Ok(results)
            } else {
                // A failed piece of work must not leave half its writes.
                Err(redb::Error::Corrupted(
                    "a write in the group failed; abandoned".into(),
                ))
            }
        });
        let committed = outcome.is_ok();
        match outcome {
            Ok(results) => {
                for ((_, reply), result) in appends.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                for (_, reply) in appends {
                    let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
        for finish in finishers {
            finish(committed);
        }
    }
}

#[cfg(test)]
fn write_group(
    db: &Database,
    batches: &[&[InboxEntry]],
    now: u64,
) -> Result<Vec<Vec<Appended>>, redb::Error> {
    let txn = db.begin_write()?;
    let results = apply_appends(&txn, batches, now)?;
    txn.commit()?;
    Ok(results)
}

fn apply_appends(
    txn: &redb::WriteTransaction,
    batches: &[&[InboxEntry]],
    now: u64,
) -> Result<Vec<Vec<Appended>>, redb::Error> {
    let mut results = Vec::with_capacity(batches.len());
    {
        let mut seen = txn.open_table(SEEN)?;
        let mut expiry = txn.open_table(SEEN_EXPIRY)?;
        sweep_expired(&mut seen, &mut expiry, now)?;
        let mut inbox = txn.open_table(INBOX)?;
        let mut seq = txn.open_table(SEQ)?;
        let mut ready = txn.open_table(READY)?;
        let mut outbox_ready = txn.open_table(OUTBOX_READY)?;
        let mut consent = txn.open_table(CONSENT)?;
        let mut data_keys = txn.open_table(DATA_KEYS)?;
        let mut counters = txn.open_table(STATS)?;
        let mut last_campaign = txn.open_table(LAST_CAMPAIGN)?;
        let mut campaign_counts = txn.open_table(CAMPAIGN_COUNTS)?;
        for entries in batches {
            let mut out = Vec::with_capacity(entries.len());
            for e in *entries {
                if let (Queue::Contact(k) | Queue::Outbox(k), Some(key)) = (&e.queue, &e.key) {
                    let stored = data_keys
                        .get(k.as_str())?
                        .and_then(|v| unexpired(v.value(), now));
                    let fits = match &stored {
                        Some(w) => *w == key.wrapped,
                        None => key.fresh,
                    };
                    if !fits {
                        out.push(Appended::KeyMismatch);
                        continue;
                    }
                }
                let queue = e.queue.name();
                let seen_key = format!("{queue}/{}", e.dedup);
                let fresh = match seen.get(seen_key.as_str())? {
                    Some(expiry) => expiry.value() <= now,
                    None => true,
                };
                if !fresh {
                    out.push(Appended::Duplicate);
                    continue;
                }
                let until = now + DEDUP_TTL.as_secs();
                if let Some(old) = seen.insert(seen_key.as_str(), until)? {
                    expiry.remove((old.value(), seen_key.as_str()))?;
                }
                expiry.insert((until, seen_key.as_str()), ())?;
                // A key is stored (or kept longer) only with a new entry.
                if let (Queue::Contact(k) | Queue::Outbox(k), Some(key)) = (&e.queue, &e.key) {
                    let until = now + key.ttl.as_secs().max(1);
                    data_keys.insert(k.as_str(), (until, key.wrapped.as_slice()))?;
                }
                // Whether the consent it carries is recorded (decided
                // before the entry is stored: a refused grant stores the
                // entry as it reads then).
                let decision = match (&e.queue, &e.consent) {
                    (Queue::Contact(k), Some(change)) => {
                        let q = format!("k:{k}");
                        let mut ledger = Vec::new();
                        for item in consent.range((q.as_str(), 0)..=(q.as_str(), u64::MAX))? {
                            let (_, v) = item?;
                            ledger.extend(serde_json::from_slice::<ConsentChange>(v.value()).ok());
                        }
                        crate::privacy::consent::decide(&ledger, change)
                    }
                    _ => crate::privacy::consent::Decision::Record,
                };
                let sealed = match (decision, &e.refused) {
                    (crate::privacy::consent::Decision::Refused, Some(r)) => r.as_slice(),
                    _ => e.sealed.as_slice(),
                };
                let n = seq.get(queue.as_str())?.map(|v| v.value()).unwrap_or(0);
                seq.insert(queue.as_str(), n + 1)?;
                inbox.insert((queue.as_str(), n), sealed)?;
                if let Queue::Contact(k) = &e.queue
                    && ready.get(k.as_str())?.is_none()
                {
                    ready.insert(k.as_str(), now * 1000)?;
                }
                // A job appended straight to an outbox (an integration
                // event): its senders find it ready.
                if let Queue::Outbox(k) = &e.queue
                    && outbox_ready.get(k.as_str())?.is_none()
                {
                    outbox_ready.insert(k.as_str(), now * 1000)?;
                }
                if let (Queue::Contact(k), Some(change)) = (&e.queue, &e.consent) {
                    // The same ledger as append_consent writes.
                    let bytes = serde_json::to_vec(change)
                        .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
                    let q = format!("k:{k}");
                    match decision {
                        crate::privacy::consent::Decision::Record => {}
                        crate::privacy::consent::Decision::Same => {
                            // A second STOP: nothing to record or count.
                            out.push(Appended::NewSameConsent);
                            continue;
                        }
                        crate::privacy::consent::Decision::Refused => {
                            out.push(Appended::NewGrantRefused);
                            continue;
                        }
                    }
                    let n = seq.get(q.as_str())?.map(|v| v.value()).unwrap_or(0);
                    consent.insert((q.as_str(), n), bytes.as_slice())?;
                    seq.insert(q.as_str(), n + 1)?;
                    if let Some(name) = stats::of_consent(change) {
                        let day = stats::day(now);
                        let cur = counters.get((day.as_str(), name))?.map_or(0, |v| v.value());
                        counters.insert((day.as_str(), name), cur + 1)?;
                        if name == stats::OPT_OUTS {
                            attribute_opt_out(
                                &mut last_campaign,
                                &mut campaign_counts,
                                k.as_str(),
                                now,
                            )?;
                        }
                    }
                }
                out.push(Appended::New);
            }
            results.push(out);
        }
    }
    Ok(results)
}

/// Forgets de-duplication marks whose time is up, oldest first.
fn sweep_expired(
    seen: &mut redb::Table<&str, u64>,
    expiry: &mut redb::Table<(u64, &str), ()>,
    now: u64,
) -> Result<(), redb::Error> {
    let mut due = Vec::new();
    for item in expiry.range((0, "")..(now + 1, ""))?.take(MAX_SWEEP) {
        let (k, _) = item?;
        let (at, key) = k.value();
        due.push((at, key.to_owned()));
    }
    for (at, key) in due {
        expiry.remove((at, key.as_str()))?;
        if seen.get(key.as_str())?.is_some_and(|v| v.value() <= now) {
            seen.remove(key.as_str())?;
        }
    }
    Ok(())
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn append(&self, entries: Vec<InboxEntry>) -> Result<Vec<Appended>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(Job::Append(entries, tx))
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?
    }

    async fn read(&self, queue: &Queue, limit: usize) -> Result<Vec<StoredEntry>, StoreError> {
        let name = queue.name();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(INBOX).map_err(corrupt)?;
            let range = table
                .range((name.as_str(), 0)..=(name.as_str(), u64::MAX))
                .map_err(corrupt)?;
            let mut out = Vec::new();
            for item in range.take(limit) {
                let (k, v) = item.map_err(corrupt)?;
                out.push(StoredEntry {
                    id: format!("{:020}", k.value().1),
                    sealed: v.value().to_vec(),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn ready_contacts(
        &self,
        lane: Lane,
        limit: usize,
    ) -> Result<Vec<ContactKey>, StoreError> {
        // A random sample in O(limit): contact keys are uniformly spread
        // hex pseudonyms, so reading on from a random key and wrapping
        // around is fair to every contact (a full scan sorted by arrival
        // cost every poll of every worker and sender the whole table).
        let start = hex::encode(rand::random::<[u8; 16]>());
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(ready_table(lane)).map_err(corrupt)?;
            let mut out = Vec::with_capacity(limit);
            for item in table.range(start.as_str()..).map_err(corrupt)?.take(limit) {
                let (k, _) = item.map_err(corrupt)?;
                out.extend(ContactKey::parse(k.value()));
            }
            if out.len() < limit {
                let rest = limit - out.len();
                for item in table.range(..start.as_str()).map_err(corrupt)?.take(rest) {
                    let (k, _) = item.map_err(corrupt)?;
                    out.extend(ContactKey::parse(k.value()));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let stopped = || StoreError::Unavailable("store writer stopped".into());
        let (tx, rx) = oneshot::channel();
        self.writer.send(Job::Ping(tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?;
        self.blocking(|db| {
            let txn = db.begin_read().map_err(corrupt)?;
            txn.open_table(SEQ).map_err(corrupt)?;
            Ok(())
        })
        .await
    }

    async fn renew(
        &self,
        held: &[super::lease::Held],
        lease: Duration,
    ) -> Result<Vec<bool>, StoreError> {
        let mut map = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        Ok(held
            .iter()
            .map(|h| {
                let key = (h.lane, h.contact.as_str().to_owned());
                match map.get_mut(&key) {
                    Some((owner, until)) if *owner == h.owner && *until > now => {
                        *until = now + lease;
                        true
                    }
                    _ => false,
                }
            })
            .collect())
    }

    async fn claim(
        &self,
        lane: Lane,
        contact: &ContactKey,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Option<Claim>, StoreError> {
        {
            let mut map = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            let key = (lane, contact.as_str().to_owned());
            let now = Instant::now();
            if map.get(&key).is_some_and(|(_, until)| *until > now) {
                return Ok(None);
            }
            map.insert(key, (owner.to_owned(), now + lease));
        }
        let queue = match lane {
            Lane::Inbox => Queue::Contact(contact.clone()),
            Lane::Outbox => Queue::Outbox(contact.clone()),
        };
        let entries = self.read(&queue, limit).await?;
        let key = contact.as_str().to_owned();
        let (state, profile, data_key) = self
            .blocking(move |db| {
                let txn = db.begin_read().map_err(corrupt)?;
                let t = txn
                    .open_table(match lane {
                        Lane::Inbox => SESSIONS,
                        Lane::Outbox => OUTBOX_HEAD,
                    })
                    .map_err(corrupt)?;
                let state = t
                    .get(key.as_str())
                    .map_err(corrupt)?
                    .map(|v| v.value().to_vec());
                let profile = match lane {
                    Lane::Inbox => read_profile(&txn, &key)?,
                    Lane::Outbox => None,
                };
                Ok((state, profile, read_data_key(&txn, &key)?))
            })
            .await?;
        let (session, head) = match lane {
            Lane::Inbox => (state, None),
            Lane::Outbox => (None, state),
        };
        Ok(Some(Claim {
            lane,
            contact: contact.clone(),
            owner: owner.to_owned(),
            entries,
            session,
            head,
            profile,
            data_key,
        }))
    }

    async fn commit(&self, claim: &Claim, commit: Commit) -> Result<Committed, StoreError> {
        let leases = self.leases.clone();
        let c = claim.clone();
        let now_ms = super::now_ms();
        let result = self
            .write(move |txn| {
                // Checked on the writer thread, in the transaction's turn.
                if !Self::holds(&leases, &c) {
                    return Ok(Committed::LeaseLost);
                }
                let key = c.contact.as_str();
                // Sealed under a data key that is no longer the contact's
                // (erased meanwhile): nothing is written.
                if let Some(wrapped) = &c.data_key {
                    let Some((until, current)) = key_in_force(txn, key, wrapped)? else {
                        return Ok(Committed::LeaseLost);
                    };
                    let keep = now_secs() + commit.profile_ttl.as_secs() + 2 * 86_400;
                    txn.open_table(DATA_KEYS)
                        .map_err(corrupt)?
                        .insert(key, (until.max(keep), current.as_slice()))
                        .map_err(corrupt)?;
                }
                let inbox_q = Queue::Contact(c.contact.clone()).name();
                let outbox_q = Queue::Outbox(c.contact.clone()).name();
                let mut inbox = txn.open_table(INBOX).map_err(corrupt)?;
                for id in &commit.acked {
                    inbox
                        .remove((inbox_q.as_str(), seq_of(id)?))
                        .map_err(corrupt)?;
                }
                let mut sessions = txn.open_table(SESSIONS).map_err(corrupt)?;
                let mut session_expiry = txn.open_table(SESSION_EXPIRY).map_err(corrupt)?;
                match &commit.session {
                    Some(bytes) => {
                        sessions.insert(key, bytes.as_slice()).map_err(corrupt)?;
                        session_expiry
                            .insert(key, now_secs() + commit.session_ttl.as_secs().max(1))
                            .map_err(corrupt)?;
                    }
                    None => {
                        sessions.remove(key).map_err(corrupt)?;
                        session_expiry.remove(key).map_err(corrupt)?;
                    }
                }
                if !commit.outbox.is_empty() {
                    let mut seq = txn.open_table(SEQ).map_err(corrupt)?;
                    let mut n = seq
                        .get(outbox_q.as_str())
                        .map_err(corrupt)?
                        .map(|v| v.value())
                        .unwrap_or(0);
                    for job in &commit.outbox {
                        inbox
                            .insert((outbox_q.as_str(), n), job.as_slice())
                            .map_err(corrupt)?;
                        n += 1;
                    }
                    seq.insert(outbox_q.as_str(), n).map_err(corrupt)?;
                    let mut ready = txn.open_table(OUTBOX_READY).map_err(corrupt)?;
                    if ready.get(key).map_err(corrupt)?.is_none() {
                        ready.insert(key, now_ms).map_err(corrupt)?;
                    }
                }
                set_timer(txn, TIMERS, TIMER_OF, key, commit.wake_at)?;
                if !commit.history.is_empty() {
                    let q = format!("h:{key}");
                    let mut seq = txn.open_table(SEQ).map_err(corrupt)?;
                    let mut n = seq
                        .get(q.as_str())
                        .map_err(corrupt)?
                        .map(|v| v.value())
                        .unwrap_or(0);
                    let mut history = txn.open_table(HISTORY).map_err(corrupt)?;
                    let mut age = txn.open_table(HISTORY_AGE).map_err(corrupt)?;
                    for item in &commit.history {
                        history
                            .insert((q.as_str(), n), (now_ms, item.as_slice()))
                            .map_err(corrupt)?;
                        age.insert((now_ms, q.as_str(), n), ()).map_err(corrupt)?;
                        n += 1;
                    }
                    seq.insert(q.as_str(), n).map_err(corrupt)?;
                }
                if let Some(profile) = &commit.profile {
                    let until = now_ms / 1000 + commit.profile_ttl.as_secs().max(1);
                    txn.open_table(PROFILES)
                        .map_err(corrupt)?
                        .insert(key, (until, profile.as_slice()))
                        .map_err(corrupt)?;
                }
                if let Some((number, at)) = &commit.window {
                    let mut windows = txn.open_table(WINDOWS).map_err(corrupt)?;
                    let cur = windows
                        .get((key, number.as_str()))
                        .map_err(corrupt)?
                        .map(|v| v.value())
                        .unwrap_or(0);
                    if *at > cur {
                        windows
                            .insert((key, number.as_str()), *at)
                            .map_err(corrupt)?;
                    }
                }
                for d in &commit.deliveries {
                    merge_delivery(txn, key, d)?;
                }
                append_consent(txn, key, &commit.consent)?;
                count(
                    txn,
                    &stats::with_consent(&commit.stats, commit.consent.iter()),
                )?;
                if commit
                    .consent
                    .iter()
                    .any(|c| stats::of_consent(c) == Some(stats::OPT_OUTS))
                {
                    let mut last = txn.open_table(LAST_CAMPAIGN).map_err(corrupt)?;
                    let mut counts = txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
                    attribute_opt_out(&mut last, &mut counts, key, now_secs()).map_err(corrupt)?;
                }
                let left = inbox
                    .range((inbox_q.as_str(), 0)..=(inbox_q.as_str(), u64::MAX))
                    .map_err(corrupt)?
                    .count() as u64;
                if left == 0 {
                    txn.open_table(READY)
                        .map_err(corrupt)?
                        .remove(key)
                        .map_err(corrupt)?;
                }
                Ok(Committed::Done { inbox_left: left })
            })
            .await;
        Self::unlease(&self.leases, claim);
        result
    }

    async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        self.blocking(|db| audit::head(&db.begin_read().map_err(corrupt)?))
            .await
    }

    async fn audit_append(&self, entry: &crate::privacy::audit::Entry) -> Result<bool, StoreError> {
        self.audit_append_run(std::slice::from_ref(entry)).await
    }

    async fn audit_entries(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<crate::privacy::audit::Entry>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(AUDIT).map_err(corrupt)?;
            let mut out = Vec::new();
            for item in table.range(from..).map_err(corrupt)?.take(limit) {
                let (_, v) = item.map_err(corrupt)?;
                out.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
            }
            Ok(out)
        })
        .await
    }

    async fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<crate::privacy::audit::Entry>, StoreError> {
        self.blocking(move |db| audit::page(&db.begin_read().map_err(corrupt)?, before, limit))
            .await
    }

    async fn audit_append_run(
        &self,
        entries: &[crate::privacy::audit::Entry],
    ) -> Result<bool, StoreError> {
        let entries = entries.to_vec();
        self.write(move |txn| audit::append_run(txn, &entries))
            .await
    }

    async fn audit_requests(&self) -> Result<super::audit_index::Requests, StoreError> {
        self.blocking(|db| audit::requests(&db.begin_read().map_err(corrupt)?))
            .await
    }

    async fn audit_request_lapsed(
        &self,
        request: &crate::privacy::audit::Entry,
    ) -> Result<bool, StoreError> {
        let request = request.clone();
        self.write(move |txn| audit::lapse(txn, &request)).await
    }

    async fn audit_requests_reset(
        &self,
        through: u64,
        index: &super::audit_index::Replay,
    ) -> Result<bool, StoreError> {
        let index = index.clone();
        self.write(move |txn| audit::reset(txn, through, &index))
            .await
    }

    async fn erase(&self, contact: &ContactKey, at: u64) -> Result<(), StoreError> {
        let k = contact.as_str().to_owned();
        self.write(move |txn| {
            let k = k.as_str();
            let after = format!("{k}\0");
            let c =
                ContactKey::parse(k).ok_or_else(|| StoreError::Corrupt("contact key".into()))?;
            // Queues and numbered logs: (name, seq) keys, and their counters.
            let inbox_q = Queue::Contact(c.clone()).name();
            let outbox_q = Queue::Outbox(c.clone()).name();
            {
                let mut inbox = txn.open_table(INBOX).map_err(corrupt)?;
                for q in [&inbox_q, &outbox_q] {
                    inbox
                        .retain_in((q.as_str(), 0)..=(q.as_str(), u64::MAX), |_, _| false)
                        .map_err(corrupt)?;
                }
            }
            let history_q = format!("h:{k}");
            let consent_q = format!("k:{k}");
            let dead_q = format!("d:{k}");
            {
                let mut history = txn.open_table(HISTORY).map_err(corrupt)?;
                let mut age = txn.open_table(HISTORY_AGE).map_err(corrupt)?;
                let mut stamps = Vec::new();
                for item in history
                    .range((history_q.as_str(), 0)..=(history_q.as_str(), u64::MAX))
                    .map_err(corrupt)?
                {
                    let (key, value) = item.map_err(corrupt)?;
                    stamps.push((value.value().0, key.value().1));
                }
                for (at, seq) in stamps {
                    age.remove((at, history_q.as_str(), seq)).map_err(corrupt)?;
                }
                history
                    .retain_in(
                        (history_q.as_str(), 0)..=(history_q.as_str(), u64::MAX),
                        |_, _| false,
                    )
                    .map_err(corrupt)?;
            }
            txn.open_table(CONSENT)
                .map_err(corrupt)?
                .retain_in(
                    (consent_q.as_str(), 0)..=(consent_q.as_str(), u64::MAX),
                    |_, _| false,
                )
                .map_err(corrupt)?;
            txn.open_table(DEAD)
                .map_err(corrupt)?
                .retain_in(
                    (dead_q.as_str(), 0)..=(dead_q.as_str(), u64::MAX),
                    |_, _| false,
                )
                .map_err(corrupt)?;
            {
                let mut seq = txn.open_table(SEQ).map_err(corrupt)?;
                for q in [&inbox_q, &outbox_q, &history_q, &consent_q, &dead_q] {
                    seq.remove(q.as_str()).map_err(corrupt)?;
                }
            }
            // (contact, …) keys.
            txn.open_table(DELIVERIES)
                .map_err(corrupt)?
                .retain_in((k, "")..(after.as_str(), ""), |_, _| false)
                .map_err(corrupt)?;
            txn.open_table(WAMIDS)
                .map_err(corrupt)?
                .retain_in((k, "")..(after.as_str(), ""), |_, _| false)
                .map_err(corrupt)?;
            txn.open_table(WINDOWS)
                .map_err(corrupt)?
                .retain_in((k, "")..(after.as_str(), ""), |_, _| false)
                .map_err(corrupt)?;
            // A campaign job still queued will not go: it counts as skipped.
            {
                let now = now_secs();
                let mut marks = txn.open_table(CAMPAIGN_MARKS).map_err(corrupt)?;
                let mut queued = Vec::new();
                for item in marks
                    .range((k, "")..(after.as_str(), ""))
                    .map_err(corrupt)?
                {
                    let (key, value) = item.map_err(corrupt)?;
                    let (until, mark) = value.value();
                    if mark == MARK_QUEUED && until > now {
                        queued.push(key.value().1.to_owned());
                    }
                }
                let mut counts = txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
                for cid in &queued {
                    add_count(&mut counts, cid, "queued", -1).map_err(corrupt)?;
                    add_count(&mut counts, cid, "skipped:suppressed", 1).map_err(corrupt)?;
                }
                marks
                    .retain_in((k, "")..(after.as_str(), ""), |_, _| false)
                    .map_err(corrupt)?;
                // Their entries in campaigns not dispatched yet (their
                // number, sealed) go too, by key: counted as skipped.
                let active: Vec<String> = {
                    let campaigns = txn.open_table(CAMPAIGNS).map_err(corrupt)?;
                    let mut ids = Vec::new();
                    for item in campaigns.iter().map_err(corrupt)? {
                        let (id, value) = item.map_err(corrupt)?;
                        if crate::campaign::is_active(value.value().1) {
                            ids.push(id.value().to_owned());
                        }
                    }
                    ids
                };
                let mut audience = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
                let mut members = txn
                    .open_table(audience::CAMPAIGN_MEMBERS)
                    .map_err(corrupt)?;
                for cid in &active {
                    if audience::unlist(&mut audience, &mut members, cid, k)? {
                        add_count(&mut counts, cid, "skipped:suppressed", 1).map_err(corrupt)?;
                        add_count(&mut counts, cid, "dispatched", 1).map_err(corrupt)?;
                    }
                }
            }
            txn.open_table(LAST_CAMPAIGN)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            // Contact keys.
            txn.open_table(SESSIONS)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(PROFILES)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(DATA_KEYS)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(REWRAPPED)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(SESSION_EXPIRY)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(OUTBOX_HEAD)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(DEAD_INDEX)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(READY)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            txn.open_table(OUTBOX_READY)
                .map_err(corrupt)?
                .remove(k)
                .map_err(corrupt)?;
            set_timer(txn, TIMERS, TIMER_OF, k, None)?;
            set_timer(txn, OUTBOX_DUE, OUTBOX_DUE_OF, k, None)?;
            txn.open_table(SUPPRESSED)
                .map_err(corrupt)?
                .insert(k, at)
                .map_err(corrupt)?;
            count(txn, &[(stats::ERASURES.to_owned(), 1)])?;
            Ok(())
        })
        .await?;
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.retain(|(_, key), _| key != contact.as_str());
        Ok(())
    }

    async fn purge_expired(&self, now: u64) -> Result<usize, StoreError> {
        self.write(move |txn| purge_expired(txn, now)).await
    }

    async fn purge_history(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let mut age = txn.open_table(HISTORY_AGE).map_err(corrupt)?;
            let mut history = txn.open_table(HISTORY).map_err(corrupt)?;
            let mut old = Vec::new();
            for item in age
                .range((0, "", 0)..(before_ms, "", 0))
                .map_err(corrupt)?
                .take(limit.saturating_mul(100))
            {
                let (key, _) = item.map_err(corrupt)?;
                let (at, q, seq) = key.value();
                old.push((at, q.to_owned(), seq));
            }
            let mut contacts = std::collections::HashSet::new();
            for (at, q, seq) in &old {
                history.remove((q.as_str(), *seq)).map_err(corrupt)?;
                age.remove((*at, q.as_str(), *seq)).map_err(corrupt)?;
                contacts.insert(q.clone());
            }
            Ok(contacts.len())
        })
        .await
    }

    async fn stats(&self, days: &[String]) -> Result<super::DailyStats, StoreError> {
        let days = days.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(STATS).map_err(corrupt)?;
            let mut out = std::collections::BTreeMap::new();
            for day in &days {
                let mut totals = std::collections::BTreeMap::new();
                for item in t
                    .range((day.as_str(), "")..(format!("{day}\0").as_str(), ""))
                    .map_err(corrupt)?
                {
                    let (k, v) = item.map_err(corrupt)?;
                    totals.insert(k.value().1.to_owned(), v.value());
                }
                if !totals.is_empty() {
                    out.insert(day.clone(), totals);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn pin(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |txn| {
            let mut t = txn.open_table(PINS).map_err(corrupt)?;
            if let Some(cur) = t.get(name.as_str()).map_err(corrupt)? {
                return Ok(cur.value().to_owned());
            }
            t.insert(name.as_str(), value.as_str()).map_err(corrupt)?;
            Ok(value)
        })
        .await
    }

    async fn append_consent(
        &self,
        contact: &ContactKey,
        change: ConsentChange,
    ) -> Result<(), StoreError> {
        let key = contact.as_str().to_owned();
        self.write(move |txn| {
            append_consent(txn, &key, std::slice::from_ref(&change))?;
            count(txn, &stats::with_consent(&[], std::iter::once(&change)))
        })
        .await
    }

    async fn data_key(&self, contact: &ContactKey) -> Result<Option<Vec<u8>>, StoreError> {
        let key = contact.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            read_data_key(&txn, &key)
        })
        .await
    }

    async fn create_data_key(
        &self,
        contact: &ContactKey,
        wrapped: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, StoreError> {
        let key = contact.as_str().to_owned();
        self.write(move |txn| {
            let mut t = txn.open_table(DATA_KEYS).map_err(corrupt)?;
            let now = now_secs();
            let stored = t
                .get(key.as_str())
                .map_err(corrupt)?
                .and_then(|v| unexpired(v.value(), now));
            if let Some(w) = stored {
                return Ok(w);
            }
            t.insert(
                key.as_str(),
                (now + ttl.as_secs().max(1), wrapped.as_slice()),
            )
            .map_err(corrupt)?;
            Ok(wrapped)
        })
        .await
    }

    async fn data_keys(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(ContactKey, Vec<u8>)>, Option<String>), StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(DATA_KEYS).map_err(corrupt)?;
            let now = now_secs();
            let mut out = Vec::new();
            let mut last = None;
            let range = match &cursor {
                Some(c) => t.range::<&str>((
                    std::ops::Bound::Excluded(c.as_str()),
                    std::ops::Bound::Unbounded,
                )),
                None => t.range::<&str>(..),
            }
            .map_err(corrupt)?;
            for item in range.take(limit.max(1)) {
                let (k, v) = item.map_err(corrupt)?;
                let (until, bytes) = v.value();
                last = Some(k.value().to_owned());
                if until > now
                    && let Some(c) = ContactKey::parse(k.value())
                {
                    out.push((c, bytes.to_vec()));
                }
            }
            Ok((out, last))
        })
        .await
    }

    async fn replace_data_key(
        &self,
        contact: &ContactKey,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let key = contact.as_str().to_owned();
        let (old, new) = (old.to_vec(), new.to_vec());
        self.write(move |txn| {
            let mut t = txn.open_table(DATA_KEYS).map_err(corrupt)?;
            let until = match t.get(key.as_str()).map_err(corrupt)? {
                Some(v) if v.value().1 == old.as_slice() => v.value().0,
                _ => return Ok(false),
            };
            t.insert(key.as_str(), (until, new.as_slice()))
                .map_err(corrupt)?;
            txn.open_table(REWRAPPED)
                .map_err(corrupt)?
                .insert(
                    key.as_str(),
                    (now_secs() + super::REWRAPPED_KEEP.as_secs(), old.as_slice()),
                )
                .map_err(corrupt)?;
            Ok(true)
        })
        .await
    }

    async fn suppressed(&self, contact: &ContactKey) -> Result<Option<u64>, StoreError> {
        let key = contact.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(SUPPRESSED).map_err(corrupt)?;
            Ok(t.get(key.as_str()).map_err(corrupt)?.map(|v| v.value()))
        })
        .await
    }

    async fn session(&self, contact: &ContactKey) -> Result<Option<Vec<u8>>, StoreError> {
        let key = contact.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(SESSIONS).map_err(corrupt)?;
            Ok(table
                .get(key.as_str())
                .map_err(corrupt)?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn history(
        &self,
        contact: &ContactKey,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.history_range(contact, false, limit).await
    }

    async fn recent_history(
        &self,
        contact: &ContactKey,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = self.history_range(contact, true, limit).await?;
        out.reverse();
        Ok(out)
    }

    async fn profile(&self, contact: &ContactKey) -> Result<Option<Vec<u8>>, StoreError> {
        let key = contact.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            read_profile(&txn, &key)
        })
        .await
    }

    async fn due_timers(
        &self,
        lane: Lane,
        now: u64,
        limit: usize,
    ) -> Result<Vec<ContactKey>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn
                .open_table(match lane {
                    Lane::Inbox => TIMERS,
                    Lane::Outbox => OUTBOX_DUE,
                })
                .map_err(corrupt)?;
            let mut out = Vec::new();
            for item in t
                .range((0, "")..(now + 1, ""))
                .map_err(corrupt)?
                .take(limit)
            {
                let (k, _) = item.map_err(corrupt)?;
                if let Some(c) = ContactKey::parse(k.value().1) {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn finish(&self, claim: &Claim, id: &str, finish: Finish) -> Result<bool, StoreError> {
        let leases = self.leases.clone();
        let c = claim.clone();
        let mut seqs = vec![seq_of(id)?];
        for other in &finish.also {
            seqs.push(seq_of(other)?);
        }
        let held = self
            .write(move |txn| {
                let key = c.contact.as_str();
                if let Some(wrapped) = &c.data_key
                    && key_in_force(txn, key, wrapped)?.is_none()
                {
                    // The contact was erased meanwhile: nothing to write.
                    return Ok(false);
                }
                let q = Queue::Outbox(c.contact.clone()).name();
                {
                    let mut inbox = txn.open_table(INBOX).map_err(corrupt)?;
                    for seq in &seqs {
                        inbox.remove((q.as_str(), *seq)).map_err(corrupt)?;
                    }
                }
                txn.open_table(OUTBOX_HEAD)
                    .map_err(corrupt)?
                    .remove(key)
                    .map_err(corrupt)?;
                merge_delivery(txn, key, &finish.record)?;
                append_consent(txn, key, finish.consent.as_slice())?;
                count(
                    txn,
                    &stats::with_consent(&finish.stats, finish.consent.iter()),
                )?;
                if let Some(letter) = &finish.dead_letter {
                    let dq = format!("d:{key}");
                    let mut seqs = txn.open_table(SEQ).map_err(corrupt)?;
                    let n = seqs
                        .get(dq.as_str())
                        .map_err(corrupt)?
                        .map(|v| v.value())
                        .unwrap_or(0);
                    seqs.insert(dq.as_str(), n + 1).map_err(corrupt)?;
                    txn.open_table(DEAD)
                        .map_err(corrupt)?
                        .insert((dq.as_str(), n), letter.as_slice())
                        .map_err(corrupt)?;
                    txn.open_table(DEAD_INDEX)
                        .map_err(corrupt)?
                        .insert(key, now_secs())
                        .map_err(corrupt)?;
                }
                let held = Self::holds(&leases, &c);
                if held && finish.release {
                    Self::unready_outbox(txn, &c)?;
                }
                Ok(held)
            })
            .await?;
        if held && finish.release {
            Self::unlease(&self.leases, claim);
        }
        Ok(held)
    }

    async fn defer(
        &self,
        claim: &Claim,
        head: Option<Vec<u8>>,
        until: u64,
    ) -> Result<(), StoreError> {
        let leases = self.leases.clone();
        let c = claim.clone();
        self.write(move |txn| {
            if !Self::holds(&leases, &c) {
                return Ok(());
            }
            let key = c.contact.as_str();
            if let Some(h) = &head {
                txn.open_table(OUTBOX_HEAD)
                    .map_err(corrupt)?
                    .insert(key, h.as_slice())
                    .map_err(corrupt)?;
            }
            set_timer(txn, OUTBOX_DUE, OUTBOX_DUE_OF, key, Some(until))?;
            txn.open_table(OUTBOX_READY)
                .map_err(corrupt)?
                .remove(key)
                .map_err(corrupt)?;
            Ok(())
        })
        .await?;
        Self::unlease(&self.leases, claim);
        Ok(())
    }

    async fn set_head(&self, claim: &Claim, head: Vec<u8>) -> Result<bool, StoreError> {
        let leases = self.leases.clone();
        let c = claim.clone();
        self.write(move |txn| {
            // Checked on the writer thread, in the transaction's turn.
            if !Self::holds(&leases, &c) {
                return Ok(false);
            }
            txn.open_table(OUTBOX_HEAD)
                .map_err(corrupt)?
                .insert(c.contact.as_str(), head.as_slice())
                .map_err(corrupt)?;
            Ok(true)
        })
        .await
    }

    async fn backlog(&self, lane: Lane) -> Result<(u64, Option<u64>), StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(ready_table(lane)).map_err(corrupt)?;
            let mut count = 0;
            let mut oldest: Option<u64> = None;
            for item in table.iter().map_err(corrupt)? {
                let (_, since) = item.map_err(corrupt)?;
                count += 1;
                oldest = Some(oldest.map_or(since.value(), |o| o.min(since.value())));
            }
            if lane == Lane::Outbox {
                // Outboxes that wait (backoff, rate, a paused number).
                count += txn
                    .open_table(OUTBOX_DUE_OF)
                    .map_err(corrupt)?
                    .len()
                    .map_err(corrupt)?;
            }
            Ok((count, oldest))
        })
        .await
    }

    async fn wake_deferred(&self) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut all = Vec::new();
            {
                let of = txn.open_table(OUTBOX_DUE_OF).map_err(corrupt)?;
                for item in of.iter().map_err(corrupt)? {
                    let (k, _) = item.map_err(corrupt)?;
                    all.push(k.value().to_owned());
                }
            }
            for key in all {
                set_timer(txn, OUTBOX_DUE, OUTBOX_DUE_OF, &key, Some(0))?;
            }
            Ok(())
        })
        .await
    }

    async fn deliveries(&self, contact: &ContactKey) -> Result<Vec<Delivery>, StoreError> {
        let key = contact.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(DELIVERIES).map_err(corrupt)?;
            let mut out: Vec<Delivery> = Vec::new();
            for item in t.range((key.as_str(), "")..).map_err(corrupt)? {
                let (k, v) = item.map_err(corrupt)?;
                if k.value().0 != key {
                    break;
                }
                if let Ok(d) = serde_json::from_slice(v.value()) {
                    out.push(d);
                }
            }
            out.sort_by(|a, b| (a.at, &a.job).cmp(&(b.at, &b.job)));
            Ok(out)
        })
        .await
    }

    async fn consent(&self, contact: &ContactKey) -> Result<Vec<ConsentChange>, StoreError> {
        let q = format!("k:{contact}");
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(CONSENT).map_err(corrupt)?;
            let mut out = Vec::new();
            for item in t
                .range((q.as_str(), 0)..=(q.as_str(), u64::MAX))
                .map_err(corrupt)?
            {
                let (_, v) = item.map_err(corrupt)?;
                if let Ok(c) = serde_json::from_slice(v.value()) {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn windows(&self, contact: &ContactKey) -> Result<Vec<(String, u64)>, StoreError> {
        let key = contact.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let t = txn.open_table(WINDOWS).map_err(corrupt)?;
            let mut out = Vec::new();
            for item in t.range((key.as_str(), "")..).map_err(corrupt)? {
                let (k, v) = item.map_err(corrupt)?;
                if k.value().0 != key {
                    break;
                }
                out.push((k.value().1.to_owned(), v.value()));
            }
            Ok(out)
        })
        .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let index = txn.open_table(DEAD_INDEX).map_err(corrupt)?;
            let dead = txn.open_table(DEAD).map_err(corrupt)?;
            let mut contacts = Vec::new();
            for item in index.iter().map_err(corrupt)? {
                let (k, v) = item.map_err(corrupt)?;
                contacts.push((v.value(), k.value().to_owned()));
            }
            contacts.sort();
            let mut out = Vec::new();
            for (_, key) in contacts {
                let Some(contact) = ContactKey::parse(&key) else {
                    continue;
                };
                let dq = format!("d:{key}");
                for item in dead
                    .range((dq.as_str(), 0)..=(dq.as_str(), u64::MAX))
                    .map_err(corrupt)?
                    .take(limit - out.len())
                {
                    let (k, v) = item.map_err(corrupt)?;
                    out.push(DeadLetter {
                        contact: contact.clone(),
                        entry: StoredEntry {
                            id: format!("{:020}", k.value().1),
                            sealed: v.value().to_vec(),
                        },
                    });
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn take_rate(
        &self,
        key: &str,
        interval_us: u64,
        burst: u32,
        want: u32,
    ) -> Result<RateGrant, StoreError> {
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_us();
        let interval = interval_us.max(1);
        let tat = rates.get(key).copied().unwrap_or(0).max(now);
        let burst = u64::from(burst.max(1));
        let free = (now + burst * interval).saturating_sub(tat) / interval;
        if free == 0 {
            return Ok(RateGrant {
                granted: 0,
                wait_ms: (tat - now - (burst - 1) * interval).div_ceil(1000),
            });
        }
        let granted = free.min(u64::from(want.max(1)));
        rates.insert(key.to_owned(), tat + granted * interval);
        Ok(RateGrant {
            granted: granted as u32,
            wait_ms: 0,
        })
    }

    async fn hold_rate(&self, key: &str, ms: u64) -> Result<(), StoreError> {
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let until = now_us() + ms * 1000;
        let tat = rates.entry(key.to_owned()).or_insert(0);
        *tat = (*tat).max(until);
        Ok(())
    }

    async fn open_breaker(&self, number: &str, breaker: Breaker) -> Result<(), StoreError> {
        let mut b = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        b.entry(number.to_owned()).or_insert(breaker);
        Ok(())
    }

    async fn close_breaker(&self, number: Option<&str>) -> Result<(), StoreError> {
        let mut b = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        match number {
            Some(n) => {
                b.remove(n);
            }
            None => b.clear(),
        }
        Ok(())
    }

    async fn breakers(&self) -> Result<Vec<(String, Breaker)>, StoreError> {
        let b = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, Breaker)> =
            b.iter().map(|(n, b)| (n.clone(), b.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn put_console_session(
        &self,
        key: &str,
        record: Vec<u8>,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let mut m = self.console.lock().unwrap_or_else(|p| p.into_inner());
        let now = crate::store::now_secs();
        m.retain(|_, (at, _)| *at > now);
        if m.len() >= CONSOLE_SESSIONS_MAX
            && !m.contains_key(key)
            && let Some(oldest) = m
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            m.remove(&oldest);
        }
        m.insert(key.to_owned(), (expires_at, record));
        Ok(())
    }

    async fn console_session(&self, key: &str, now: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let m = self.console.lock().unwrap_or_else(|p| p.into_inner());
        Ok(m.get(key)
            .filter(|(at, _)| *at > now)
            .map(|(_, r)| r.clone()))
    }

    async fn end_console_sessions(&self) -> Result<(), StoreError> {
        self.console
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }

    async fn end_console_session(&self, key: &str) -> Result<(), StoreError> {
        self.console
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        Ok(())
    }

    async fn take_probe(&self, number: &str, now: u64, next: u64) -> Result<bool, StoreError> {
        let mut b = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        match b.get_mut(number) {
            Some(br) if br.probe_at <= now => {
                br.probe_at = next;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn create_campaign(
        &self,
        id: &str,
        record: &[u8],
        audience: Vec<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let (id, record) = (id.to_owned(), record.to_vec());
        let created = super::now_ms();
        self.write(move |txn| {
            let id = id.as_str();
            let mut campaigns = txn.open_table(CAMPAIGNS).map_err(corrupt)?;
            let mut index = txn.open_table(CAMPAIGN_INDEX).map_err(corrupt)?;
            // Created again (as on Redis: the record replaced, the audience
            // added to): it moves to its new place in the order.
            let before = campaigns.get(id).map_err(corrupt)?.map(|v| v.value().0);
            if let Some(at) = before {
                index.remove((at, id)).map_err(corrupt)?;
            }
            let mut table = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
            let mut members = txn
                .open_table(audience::CAMPAIGN_MEMBERS)
                .map_err(corrupt)?;
            let mut next = audience_bounds(&table, id)?.map_or(0, |(_, last)| last + 1);
            for entry in &audience {
                if audience::add(&mut table, &mut members, id, next, entry)? {
                    next += 1;
                }
            }
            campaigns
                .insert(id, (created, crate::campaign::SCHEDULED, record.as_slice()))
                .map_err(corrupt)?;
            index.insert((created, id), ()).map_err(corrupt)?;
            Ok(())
        })
        .await
    }

    async fn campaigns(&self) -> Result<Vec<super::StoredCampaign>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let index = txn.open_table(CAMPAIGN_INDEX).map_err(corrupt)?;
            let campaigns = txn.open_table(CAMPAIGNS).map_err(corrupt)?;
            let mut out = Vec::new();
            for item in index.iter().map_err(corrupt)? {
                let (k, _) = item.map_err(corrupt)?;
                let id = k.value().1;
                if let Some(c) = read_campaign(&campaigns, id)? {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn campaign(&self, id: &str) -> Result<Option<super::StoredCampaign>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let campaigns = txn.open_table(CAMPAIGNS).map_err(corrupt)?;
            read_campaign(&campaigns, &id)
        })
        .await
    }

    async fn set_campaign_status(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let from: Vec<String> = from.iter().map(|f| (*f).to_owned()).collect();
        let to = to.to_owned();
        self.write(move |txn| {
            let mut campaigns = txn.open_table(CAMPAIGNS).map_err(corrupt)?;
            let cur = campaigns.get(id.as_str()).map_err(corrupt)?.map(|v| {
                let (at, status, record) = v.value();
                (at, status.to_owned(), record.to_vec())
            });
            let Some((at, status, record)) = cur else {
                return Ok(false);
            };
            if !from.contains(&status) {
                return Ok(false);
            }
            campaigns
                .insert(id.as_str(), (at, to.as_str(), record.as_slice()))
                .map_err(corrupt)?;
            if to == crate::campaign::CANCELLED {
                // What was not dispatched will never be: its numbers go.
                let mut audience = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
                let mut left = Vec::new();
                for item in audience
                    .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))
                    .map_err(corrupt)?
                {
                    left.push(item.map_err(corrupt)?.0.value().1);
                }
                for n in left {
                    audience.remove((id.as_str(), n)).map_err(corrupt)?;
                }
                let mut members = txn
                    .open_table(audience::CAMPAIGN_MEMBERS)
                    .map_err(corrupt)?;
                audience::forget_all(&mut members, &id)?;
            }
            Ok(true)
        })
        .await
    }

    async fn campaign_lease(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let mut map = self
            .campaign_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map
            .get(id)
            .is_some_and(|(holder, until)| *until > now && holder != owner)
        {
            return Ok(false);
        }
        map.insert(id.to_owned(), (owner.to_owned(), now + lease));
        Ok(true)
    }

    async fn campaign_audience(&self, id: &str, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
            let mut out = Vec::new();
            for item in table
                .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))
                .map_err(corrupt)?
                .take(limit)
            {
                let (_, v) = item.map_err(corrupt)?;
                out.push(v.value().to_vec());
            }
            Ok(out)
        })
        .await
    }

    async fn campaign_dispatch(
        &self,
        id: &str,
        owner: &str,
        sends: Vec<super::CampaignSend>,
        consumed: usize,
        now_ms: u64,
    ) -> Result<(Vec<super::Dispatched>, u64), StoreError> {
        use super::Dispatched;
        // Only the lease's holder drops audience entries.
        let held = self
            .campaign_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .is_some_and(|(holder, until)| holder == owner && *until > Instant::now());
        let id = id.to_owned();
        self.write(move |txn| {
            let id = id.as_str();
            let now = now_secs();
            let mut marks = txn.open_table(CAMPAIGN_MARKS).map_err(corrupt)?;
            let mut counts = txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
            let mut keys = txn.open_table(DATA_KEYS).map_err(corrupt)?;
            let mut inbox = txn.open_table(INBOX).map_err(corrupt)?;
            let mut seq = txn.open_table(SEQ).map_err(corrupt)?;
            let mut ready = txn.open_table(OUTBOX_READY).map_err(corrupt)?;
            let mut done = Vec::with_capacity(sends.len());
            for send in &sends {
                let contact = send.contact.as_str();
                let had_turn = marks
                    .get((contact, id))
                    .map_err(corrupt)?
                    .is_some_and(|v| v.value().0 > now);
                if had_turn {
                    done.push(Dispatched::Already);
                    continue;
                }
                let until = now + send.ttl.as_secs().max(1);
                match &send.job {
                    Ok(job) => {
                        // The data key check of `append`; a job must name
                        // the key it is sealed under.
                        let Some(key) = &send.key else {
                            done.push(Dispatched::KeyMismatch);
                            continue;
                        };
                        let stored = keys
                            .get(contact)
                            .map_err(corrupt)?
                            .and_then(|v| unexpired(v.value(), now));
                        match stored {
                            // A campaign does not lengthen the key's
                            // life: it is counted from the contact's last
                            // message (`privacy.retention_days`).
                            Some(w) if w == key.wrapped => {}
                            // Kept as long as the marks (`send.ttl`, as
                            // on Redis).
                            None if key.fresh => {
                                keys.insert(contact, (until, key.wrapped.as_slice()))
                                    .map_err(corrupt)?;
                            }
                            _ => {
                                done.push(Dispatched::KeyMismatch);
                                continue;
                            }
                        }
                        // Queued as `commit` queues outbox jobs.
                        let q = Queue::Outbox(send.contact.clone()).name();
                        let n = seq
                            .get(q.as_str())
                            .map_err(corrupt)?
                            .map_or(0, |v| v.value());
                        inbox
                            .insert((q.as_str(), n), job.as_slice())
                            .map_err(corrupt)?;
                        seq.insert(q.as_str(), n + 1).map_err(corrupt)?;
                        if ready.get(contact).map_err(corrupt)?.is_none() {
                            ready.insert(contact, now_ms).map_err(corrupt)?;
                        }
                        marks
                            .insert((contact, id), (until, MARK_QUEUED))
                            .map_err(corrupt)?;
                        add_count(&mut counts, id, "queued", 1).map_err(corrupt)?;
                    }
                    Err(reason) => {
                        marks
                            .insert((contact, id), (until, MARK_SKIPPED))
                            .map_err(corrupt)?;
                        add_count(&mut counts, id, &format!("skipped:{reason}"), 1)
                            .map_err(corrupt)?;
                    }
                }
                add_count(&mut counts, id, "dispatched", 1).map_err(corrupt)?;
                done.push(Dispatched::Done);
            }
            let mut audience = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
            if held && consumed > 0 && !done.contains(&Dispatched::KeyMismatch) {
                let mut members = txn
                    .open_table(audience::CAMPAIGN_MEMBERS)
                    .map_err(corrupt)?;
                let mut front = Vec::with_capacity(consumed);
                for item in audience
                    .range((id, 0)..=(id, u64::MAX))
                    .map_err(corrupt)?
                    .take(consumed)
                {
                    let (k, v) = item.map_err(corrupt)?;
                    front.push((k.value().1, v.value().to_vec()));
                }
                for (n, entry) in front {
                    audience.remove((id, n)).map_err(corrupt)?;
                    audience::forget(&mut members, id, &entry)?;
                }
            }
            let left = audience_bounds(&audience, id)?.map_or(0, |(first, last)| last - first + 1);
            Ok((done, left))
        })
        .await
    }

    async fn campaign_left(&self, id: &str) -> Result<u64, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(CAMPAIGN_AUDIENCE).map_err(corrupt)?;
            Ok(audience_bounds(&table, &id)?.map_or(0, |(first, last)| last - first + 1))
        })
        .await
    }

    async fn campaign_counts(
        &self,
        id: &str,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let table = txn.open_table(CAMPAIGN_COUNTS).map_err(corrupt)?;
            let after = format!("{id}\0");
            let mut out = std::collections::BTreeMap::new();
            for item in table
                .range((id.as_str(), "")..(after.as_str(), ""))
                .map_err(corrupt)?
            {
                let (k, v) = item.map_err(corrupt)?;
                out.insert(k.value().1.to_owned(), v.value());
            }
            Ok(out)
        })
        .await
    }

    async fn resolve_contacts(
        &self,
        keys: &[ContactKey],
    ) -> Result<Vec<super::Resolved>, StoreError> {
        self.resolve_links(keys).await
    }

    async fn link_contacts(
        &self,
        links: &[(ContactKey, ContactKey)],
    ) -> Result<Vec<ContactKey>, StoreError> {
        self.add_links(links).await
    }

    async fn aliases(&self, canonical: &ContactKey) -> Result<Vec<ContactKey>, StoreError> {
        self.aliases_of(canonical).await
    }

    async fn unlink(&self, canonical: &ContactKey) -> Result<(), StoreError> {
        self.drop_links(canonical).await
    }

    async fn briefs(&self, contacts: &[ContactKey]) -> Result<Vec<super::Brief>, StoreError> {
        let contacts = contacts.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(corrupt)?;
            let now = now_secs();
            let keys = txn.open_table(DATA_KEYS).map_err(corrupt)?;
            let profiles = txn.open_table(PROFILES).map_err(corrupt)?;
            let sessions = txn.open_table(SESSIONS).map_err(corrupt)?;
            let session_expiry = txn.open_table(SESSION_EXPIRY).map_err(corrupt)?;
            let ledger = txn.open_table(CONSENT).map_err(corrupt)?;
            let suppressed = txn.open_table(SUPPRESSED).map_err(corrupt)?;
            let mut out = Vec::with_capacity(contacts.len());
            for c in &contacts {
                let k = c.as_str();
                let live_session = session_expiry
                    .get(k)
                    .map_err(corrupt)?
                    .is_none_or(|v| v.value() > now);
                let session = if live_session {
                    sessions
                        .get(k)
                        .map_err(corrupt)?
                        .map(|v| v.value().to_vec())
                } else {
                    None
                };
                let q = format!("k:{k}");
                let mut consent = Vec::new();
                for item in ledger
                    .range((q.as_str(), 0)..=(q.as_str(), u64::MAX))
                    .map_err(corrupt)?
                {
                    let (_, v) = item.map_err(corrupt)?;
                    if let Ok(change) = serde_json::from_slice(v.value()) {
                        consent.push(change);
                    }
                }
                out.push(super::Brief {
                    data_key: keys
                        .get(k)
                        .map_err(corrupt)?
                        .and_then(|v| unexpired(v.value(), now)),
                    profile: profiles
                        .get(k)
                        .map_err(corrupt)?
                        .and_then(|v| unexpired(v.value(), now)),
                    session,
                    consent,
                    suppressed: suppressed.get(k).map_err(corrupt)?.map(|v| v.value()),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        if claim.lane == Lane::Outbox {
            let c = claim.clone();
            self.write(move |txn| Self::unready_outbox(txn, &c)).await?;
        }
        Self::unlease(&self.leases, claim);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    #[test]
    fn a_mark_is_forgotten_and_swept_once_its_time_is_up() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path()).expect("opens");
        let entry = InboxEntry {
            queue: Queue::System,
            dedup: "k".into(),
            sealed: b"x".to_vec(),
            consent: None,
            refused: None,
            key: None,
        };
        let batch: &[InboxEntry] = std::slice::from_ref(&entry);
        let t0 = 1_000_000;
        let ttl = DEDUP_TTL.as_secs();
        let once = |now| write_group(&store.db, &[batch], now).expect("write")[0][0];
        assert_eq!(once(t0), Appended::New);
        assert_eq!(once(t0 + ttl - 1), Appended::Duplicate);
        let marks = || {
            let txn = store.db.begin_read().expect("read");
            let a = txn.open_table(SEEN).expect("seen").len().expect("len");
            let b = txn
                .open_table(SEEN_EXPIRY)
                .expect("expiry")
                .len()
                .expect("len");
            (a, b)
        };
        assert_eq!(marks(), (1, 1));
        // Past the TTL the same key is new again, and the old mark is gone.
        assert_eq!(once(t0 + ttl + 1), Appended::New);
        assert_eq!(marks(), (1, 1));
        // A write long after sweeps marks nobody refreshed.
        let other = InboxEntry {
            dedup: "other".into(),
            ..entry.clone()
        };
        write_group(&store.db, &[std::slice::from_ref(&other)], t0 + 3 * ttl).expect("write");
        assert_eq!(marks(), (1, 1), "only the fresh mark remains");
    }
}
